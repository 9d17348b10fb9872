//! The relay binary on loopback, driven by real SMTP clients: Python smtplib (plain,
//! STARTTLS, implicit TLS, AUTH), swaks and curl; the smuggling matrix and open-relay probes
//! over the wire; connection caps; signals; the operator's commands.
//!
//! Run: `cargo test -p wasmrelay --test smtp_clients`

mod limits;
mod operator;
mod relay_policy;
mod signals;
mod smuggling;
mod tls_auth;

use std::net::SocketAddr;
use std::path::PathBuf;

use wasmrelay_test_support::{test_certificate, ClosedPort, Relay, NO_DNS};

/// The password of user `alice`.
const PASSWORD: &str = "s3cret pass";

/// A relay with three listeners (relay, submission with STARTTLS, smtps) and one user.
/// Fields drop in order: the relay stops before its directory goes.
struct Setup {
    relay: Relay,
    /// Where delivery goes: nowhere, so accepted messages stay queued for inspection.
    _dead: ClosedPort,
    cert: PathBuf,
    dir: tempfile::TempDir,
}

impl Setup {
    fn relay_addr(&self) -> SocketAddr {
        self.relay.listener("relay")
    }

    fn submission_addr(&self) -> SocketAddr {
        self.relay.listener("submission")
    }

    fn smtps_addr(&self) -> SocketAddr {
        self.relay.listener("smtps")
    }

    /// The spooled messages (envelope, bytes), read through the library; stops the relay.
    fn spooled(&mut self) -> Vec<(wasmrelay::spool::Envelope, Vec<u8>)> {
        self.relay.terminate();
        self.relay.spooled().0
    }
}

fn setup(extra: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = test_certificate(dir.path());
    let dead = ClosedPort::new();
    let hash = wasmrelay::smtp::session::hash_password(PASSWORD).unwrap();
    // Port 0 on three loopback addresses: the relay refuses two listeners on one address.
    let listener = |role: &str, ip: &str| {
        format!(
            "[[listeners]]\naddress = \"{ip}:0\"\nrole = \"{role}\"\nname = \"{role}\"\n\
             tls_cert = \"{}\"\ntls_key = \"{}\"\n",
            cert.display(),
            key.display()
        )
    };
    let config = format!(
        r#"
hostname = "relay.test"

{relay}
{submission}
{smtps}
[relay]
local_domains = ["example.com"]

[[users]]
name = "alice"
password_hash = "{hash}"

[spool]
dir = "spool"

# Delivery goes nowhere: a loopback port that refuses, and a resolver where nothing answers,
# so accepted messages stay queued for inspection and nothing leaves this machine.
[[delivery.routes]]
domains = ["*"]
hosts = [{{ host = "127.0.0.1", port = {dead_port}, tls = "none" }}]

[delivery.resolver]
nameservers = ["{NO_DNS}"]
{extra}
"#,
        relay = listener("relay", "127.0.0.1"),
        submission = listener("submission", "127.0.0.2"),
        smtps = listener("smtps", "127.0.0.3"),
        dead_port = dead.port(),
    );
    Setup {
        relay: Relay::start(dir.path(), &config),
        _dead: dead,
        cert,
        dir,
    }
}
