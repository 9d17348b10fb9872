//! Idle connections: 2,000 sessions that said EHLO and now wait cost the relay under 50 KiB of
//! anonymous memory each (RssAnon of `wasmrelay serve`, read from /proc before and after).
//! An idle client is the cheapest attack there is, and a busy MX holds thousands of them.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::{start_relay, WAIT};

const CONNECTIONS: usize = 2000;
const MAX_KIB_PER_CONNECTION: u64 = 50;

#[test]
fn idle_sessions_after_ehlo_cost_under_50_kib_each() {
    // Our end of each connection is a descriptor here, and the relay (our child) inherits the
    // limit for its end.
    let needed = CONNECTIONS as u64 + 512;
    if let Err(why) = raise_open_files(needed) {
        eprintln!("skipped: {CONNECTIONS} idle connections need {needed} open files: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cap = CONNECTIONS + 100;
    let relay = start_relay(
        dir.path(),
        &format!("[limits]\nmax_connections = {cap}\nmax_connections_per_ip = {cap}\n"),
    );
    let addr = relay.addr();
    // Warm up what a first session allocates once per process or worker thread (runtime,
    // log formatting, allocator arenas), so the baseline holds it already.
    for _ in 0..100 {
        let mut s = idle_session(addr);
        s.write_all(b"QUIT\r\n").unwrap();
        assert_eq!(reply(&mut BufReader::new(&mut s)), 221);
    }
    let pid = relay.pid();
    let before = settled_rss_anon(pid);
    let sessions: Vec<TcpStream> = (0..CONNECTIONS).map(|_| idle_session(addr)).collect();
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
    for mut s in sessions {
        s.write_all(b"NOOP\r\n").unwrap();
        assert_eq!(reply(&mut BufReader::new(&mut s)), 250);
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
