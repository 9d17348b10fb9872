//! The harness of wasmrelay's end-to-end and integration tests: real processes on loopback,
//! every port bound as `:0` and read back from the process that holds it.
//!
//! Layout:
//! - [`relay`]: the `wasmrelay serve` binary on a config in a temp dir; its listening
//!   addresses come from its own log, its log is kept, signals reach it, drop kills it.
//! - [`downstream`]: the servers the relay delivers to, one [`Downstream`] API over each:
//!   [`Aiosmtpd`] (Python, with failure and TLS/AUTH options), Postfix's [`SmtpSink`],
//!   [`WasmrelaySink`] (`wasmrelay sink`), and [`RawSink`] (the bare protocol, replies and
//!   AUTH under the test's control).
//! - [`dns`]: a loopback DNS zone (dnslib), and DKIM verification against it (dkimpy).
//! - [`clients`]: Python smtplib, swaks and curl runners; [`raw`]: a byte-exact SMTP client.
//! - [`delivery`]: the queue runner in process, over a spool in a temp dir.
//! - [`ports`]: a loopback port that refuses connections and stays ours, and one held for a
//!   server that starts later, where a config must name the port first.
//! - [`redis`]: a `redis-server` on a loopback port, killed, restarted or frozen at will.
//! - [`certs`], [`wait`]: test certificates; waiting on a condition with a deadline.
//! - [`metrics`]: the relay's metrics text, parsed by Python's `prometheus_client`;
//!   [`otlp`]: an OTLP/HTTP trace receiver (`opentelemetry-proto`).
//!
//! The Python helpers live in `scripts/`; `.ci/run` installs what they import.

pub mod certs;
pub mod clients;
pub mod delivery;
pub mod dns;
pub mod downstream;
pub mod events;
pub mod metrics;
pub mod otlp;
pub mod ports;
mod process;
pub mod raw;
pub mod redis;
pub mod relay;
pub mod wait;

pub use certs::test_certificate;
pub use clients::{assert_success, curl_smtp, python, smtplib_send, swaks};
pub use delivery::{envelope, fast_config, DeliveryQueue};
pub use dns::DnsZone;
pub use downstream::{Aiosmtpd, Delivered, Downstream, RawSink, SmtpSink, WasmrelaySink};
pub use events::event_log;
pub use metrics::{parse_metrics, MetricFamilies};
pub use otlp::{OtlpReceiver, ReceivedSpan};
pub use ports::{ClosedPort, ReservedPort, NO_DNS};
pub use process::is_root;
pub use raw::{queued_id, rcpt_reply, Raw};
pub use redis::RedisServer;
pub use relay::Relay;
pub use wait::{wait_for, wait_for_async};
pub use wasmrelay::plugins::test_plugins::component as test_plugin;

/// The `wasmrelay` binary of this build: `CARGO_BIN_EXE_wasmrelay` when Cargo set it for the
/// running test, else beside the test executable's `deps/` folder, where Cargo puts it.
pub fn binary() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("CARGO_BIN_EXE_wasmrelay") {
        return path.into();
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe
        .parent()
        .filter(|d| d.ends_with("deps"))
        .and_then(|d| d.parent())
        .expect("the test runs from Cargo's target/<profile>/deps");
    let path = dir.join("wasmrelay");
    assert!(
        path.is_file(),
        "no relay binary at {} (build it with the tests: cargo test -p wasmrelay)",
        path.display()
    );
    path
}

/// Where the Python helpers are.
pub(crate) fn script(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}
