//! Idle connections: sessions that said EHLO (plain, or again after STARTTLS, or through a
//! chain of bundled plugins that counts every connection) and now wait cost the relay under
//! 50 KiB of anonymous memory each (RssAnon of `wasmrelay serve`, read from /proc before and
//! after). An idle client is the cheapest attack there is, and a busy MX
//! holds thousands of them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use wasmrelay_test_support::{test_certificate, Relay};

use super::{config, WAIT};

const CONNECTIONS: usize = 2000;
const MAX_KIB_PER_CONNECTION: u64 = 50;

#[test]
fn idle_sessions_after_ehlo_cost_under_50_kib_each() {
    let dir = tempfile::tempdir().unwrap();
    let Some(relay) = relay(dir.path(), "") else {
        return;
    };
    let addr = relay.addr();
    check_idle_memory(&relay, || idle_session(addr));
}

#[test]
fn idle_sessions_after_starttls_cost_under_50_kib_each() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = test_certificate(dir.path());
    let tls = format!("tls_cert = {cert:?}\ntls_key = {key:?}\n");
    let Some(relay) = relay(dir.path(), &tls) else {
        return;
    };
    let addr = relay.addr();
    let client = client_config(&cert);
    check_idle_memory(&relay, || idle_tls_session(addr, &client));
}

/// The bundled plugins with rules at every session stage, `rate-limit` counting each open
/// connection at `connect` (until `closed`). A plugin instance is about 50 KiB: an idle
/// session may not hold one.
#[test]
fn idle_sessions_through_the_bundled_plugins_cost_under_50_kib_each() {
    let dir = tempfile::tempdir().unwrap();
    let Some(relay) = relay_with(
        dir.path(),
        "",
        r#"
[[plugins]]
builtin = "rate-limit"
[plugins.config]
rules = [
    { name = "flood", count = "connections", key = "ip", rate = "100000/s" },
    { name = "open", count = "concurrent", key = "ip", max = 100000 },
    { name = "per-sender", count = "messages", key = "sender", rate = "10000/s" },
]

[[plugins]]
builtin = "filter"
[[plugins.config.rules]]
name = "executables"
attachment_extensions = ["exe"]

[[plugins]]
builtin = "router"
[plugins.config]
classify = [{ header = "X-Stream" }]
"#,
    ) else {
        return;
    };
    let addr = relay.addr();
    check_idle_memory(&relay, || idle_session(addr));
}

/// A relay that admits `CONNECTIONS` and more from loopback, with `listener` added to its
/// listener's table; `None` (the test skips) when this process cannot hold that many
/// connections open.
fn relay(dir: &Path, listener: &str) -> Option<Relay> {
    relay_with(dir, listener, "")
}

/// [`relay`] with `tables` added to the config's top level (plugins).
fn relay_with(dir: &Path, listener: &str, tables: &str) -> Option<Relay> {
    // Our end of each connection is a descriptor here (for the three tests at once: they run
    // in parallel), and the relay (our child) inherits the limit for its end.
    let needed = 3 * CONNECTIONS as u64 + 512;
    if let Err(why) = raise_open_files(needed) {
        eprintln!("skipped: {CONNECTIONS} idle connections need {needed} open files: {why}");
        return None;
    }
    let cap = CONNECTIONS + 100;
    let limits = format!("[limits]\nmax_connections = {cap}\nmax_connections_per_ip = {cap}\n");
    let key = "allow_plaintext_auth = true\n";
    let text = config("127.0.0.1:0", &limits).replacen(key, &format!("{key}{listener}"), 1);
    assert!(
        text.contains(listener),
        "no listener table to add to:\n{text}"
    );
    Some(Relay::start(dir, &format!("{text}\n{tables}")))
}

/// Opens `CONNECTIONS` sessions with `open` and checks the relay's RssAnon grew by less than
/// `MAX_KIB_PER_CONNECTION` for each; then that every session still answers.
fn check_idle_memory<S: Read + Write>(relay: &Relay, mut open: impl FnMut() -> S) {
    // Warm up what a first session allocates once per process or worker thread (runtime,
    // TLS config, log formatting, allocator arenas), so the baseline holds it already.
    for _ in 0..100 {
        let mut s = open();
        s.write_all(b"QUIT\r\n").unwrap();
        assert_eq!(reply(&mut BufReader::new(&mut s)), 221);
    }
    let pid = relay.pid();
    let before = settled_rss_anon(pid);
    let mut sessions: Vec<S> = (0..CONNECTIONS).map(|_| open()).collect();
    let after = settled_rss_anon(pid);
    let per_connection = after.saturating_sub(before) * 1024 / CONNECTIONS as u64;
    eprintln!(
        "{CONNECTIONS} idle sessions: RssAnon {before} KiB -> {after} KiB, \
         {per_connection} bytes per connection"
    );
    assert!(
        per_connection < MAX_KIB_PER_CONNECTION * 1024,
        "{per_connection} bytes of anonymous memory per idle connection \
         (RssAnon {before} -> {after} KiB for {CONNECTIONS} sessions)"
    );
    // Every session is still there and still answers: the relay did not shed them to get a
    // low figure.
    for s in &mut sessions {
        s.write_all(b"NOOP\r\n").unwrap();
        assert_eq!(reply(&mut BufReader::new(s)), 250);
    }
}

/// A session past its greeting and EHLO, with the relay's reply read: the relay waits for the
/// next command.
fn idle_session(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect_timeout(&addr, WAIT).expect("connect to the relay");
    s.set_read_timeout(Some(WAIT)).unwrap();
    assert_eq!(reply(&mut BufReader::new(&mut s)), 220);
    s.write_all(b"EHLO idle.client.test\r\n").unwrap();
    assert_eq!(reply(&mut BufReader::new(&mut s)), 250);
    s
}

/// A session past STARTTLS and its second EHLO, verified against the test certificate.
fn idle_tls_session(
    addr: SocketAddr,
    client: &Arc<ClientConfig>,
) -> StreamOwned<ClientConnection, TcpStream> {
    let mut s = idle_session(addr);
    s.write_all(b"STARTTLS\r\n").unwrap();
    assert_eq!(reply(&mut BufReader::new(&mut s)), 220);
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(client.clone(), name).expect("a TLS client");
    let mut tls = StreamOwned::new(conn, s);
    tls.write_all(b"EHLO idle.client.test\r\n").unwrap();
    assert_eq!(reply(&mut BufReader::new(&mut tls)), 250);
    tls
}

/// A TLS client that trusts the test certificate at `cert` alone.
fn client_config(cert: &Path) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(cert).expect("the test certificate"))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// The code of one (possibly multi-line) reply. Reads nothing past it: the relay sends one
/// reply per command and the caller sends no pipelined commands.
fn reply(r: &mut impl BufRead) -> u16 {
    let mut line = String::new();
    loop {
        line.clear();
        let n = r.read_line(&mut line).expect("read a reply");
        assert!(n > 0, "the relay closed the connection");
        if line.as_bytes().get(3) != Some(&b'-') {
            return line[..3].parse().expect("a reply code");
        }
    }
}

/// The relay's RssAnon in KiB once two readings 200 ms apart agree within 1% (sessions may
/// still be settling when the last reply arrives), or the last reading after 20 s.
fn settled_rss_anon(pid: u32) -> u64 {
    let deadline = Instant::now() + WAIT;
    let mut last = rss_anon(pid);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = rss_anon(pid);
        if now.abs_diff(last) * 100 <= last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

fn rss_anon(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the relay runs");
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssAnon in /proc/PID/status")
}

/// Raises this process's soft limit on open files to at least `needed` (up to the hard limit).
fn raise_open_files(needed: u64) -> Result<(), String> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and has no other preconditions.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    if limit.rlim_cur >= needed {
        return Ok(());
    }
    if limit.rlim_max < needed {
        return Err(format!("the hard limit is {}", limit.rlim_max));
    }
    limit.rlim_cur = needed;
    // SAFETY: setrlimit reads the struct we pass; raising the soft limit up to the hard one
    // is always permitted.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    Ok(())
}
