//! Clients that hold resources without moving mail: one that pipelines commands and never
//! reads the replies (the relay's writes block), one that floods NOOP/RSET/HELP/EHLO, and
//! stuck sessions at SIGTERM.

use std::process::Child;
use std::time::{Duration, Instant};

use super::*;

/// Pipelines NOOPs without ever reading a reply, with a small receive buffer so the relay's
/// replies back up quickly. Prints `cut <seconds>` when the relay drops the connection, or
/// `stuck` if it still holds it after `limit` seconds.
const NEVER_READS: &str = r#"
import socket, sys, time
port, limit = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", port))
s.settimeout(limit)
chunk = b"NOOP\r\n" * 10000
start = time.time()
try:
    s.sendall(b"EHLO client.test\r\n")
    while time.time() - start < limit:
        s.sendall(chunk)
    print("stuck", flush=True)
except socket.timeout:
    print("stuck", flush=True)
except OSError:
    print("cut %.1f" % (time.time() - start), flush=True)
"#;

fn spawn_python(script: &str, args: &[&str]) -> Child {
    Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

fn relay_with(dir: &Path, port: u16, limits: &str) -> RelayProcess {
    let config = write_config(
        dir,
        port,
        &format!(
            "[relay]\nlocal_domains = [\"local.test\"]\n\n[limits]\n{limits}\n{}",
            dead_route()
        ),
    );
    RelayProcess::start(&config, &[port])
}

#[test]
fn a_client_that_never_reads_is_cut_off_by_the_command_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // Floods are allowed here, so that only the write timeout can end the session.
    let _relay = relay_with(
        dir.path(),
        port,
        "command_timeout = \"2s\"\nmax_errors = 1000000\nmax_junk_commands = 1000000",
    );
    let out = python(NEVER_READS, &[&port.to_string(), "30"]);
    assert_success("never-reading client", &out);
    let verdict = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let secs: f64 = verdict
        .strip_prefix("cut ")
        .unwrap_or_else(|| panic!("the relay held the session: {verdict}"))
        .parse()
        .unwrap();
    assert!(secs < 20.0, "{verdict}");
    // The relay still serves.
    let mut c = Raw::connect(port);
    c.cmd("EHLO client.test", "250");
}

/// Sends `n` copies of a cycle of commands in one write, then reads until the relay closes.
/// Prints the number of 250 replies and the last reply.
const FLOOD: &str = r#"
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
cycle = [b"NOOP", b"RSET", b"HELP", b"EHLO client.test", b"VRFY someone"]
s = socket.create_connection(("127.0.0.1", port), timeout=20)
s.sendall(b"".join(cycle[i % len(cycle)] + b"\r\n" for i in range(n)))
data = b""
while True:
    got = s.recv(65536)
    if not got:
        break
    data += got
replies = [l for l in data.decode().split("\r\n") if l[3:4] == " "]
print(sum(1 for r in replies if r.startswith("250")), replies[-1])
"#;

#[test]
fn command_floods_count_toward_the_error_limit() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _relay = relay_with(
        dir.path(),
        port,
        "max_errors = 10\nmax_junk_commands = 100\ncommand_timeout = \"5s\"",
    );
    let out = python(FLOOD, &[&port.to_string(), "5000"]);
    assert_success("flood", &out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("421 4.7.0"), "{text}");
    let positive: usize = text.split_whitespace().next().unwrap().parse().unwrap();
    // 100 free junk commands, then 10 that count as errors: 110 answered, 3 in each cycle
    // of 5 with a 250 (HELP answers 214, VRFY 252).
    assert_eq!(positive, 66, "{text}");
    // A session that sends mail gets its allowance back after each accepted message.
    let mut c = Raw::connect(port);
    c.cmd("EHLO client.test", "250");
    for round in 0..3 {
        for _ in 0..90 {
            c.cmd("NOOP", "250");
        }
        c.cmd("MAIL FROM:<a@origin.test>", "250");
        c.cmd("RCPT TO:<user@local.test>", "250");
        c.cmd("DATA", "354");
        c.cmd(&format!("Subject: {round}\r\n\r\nhi\r\n."), "250");
    }
}

#[test]
fn sigterm_finishes_within_the_grace_period_despite_stuck_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut relay = relay_with(dir.path(), port, "shutdown_grace = \"2s\"");
    // A transaction that never ends: DATA trickled a byte at a time, well inside the data
    // block timeout.
    let mut trickle = spawn_python(
        r#"
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=60)
f = s.makefile("rb")
f.readline()
for line in [b"EHLO c.test", b"MAIL FROM:<a@origin.test>", b"RCPT TO:<user@local.test>", b"DATA"]:
    s.sendall(line + b"\r\n")
    while True:
        l = f.readline()
        if l[3:4] != b"-":
            break
print("in DATA", flush=True)
try:
    for _ in range(240):
        s.sendall(b"x")
        time.sleep(0.25)
except OSError:
    pass
"#,
        &[&port.to_string()],
    );
    let mut line = String::new();
    let mut trickle_out = BufReader::new(trickle.stdout.take().unwrap());
    trickle_out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "in DATA");
    let never_reads = spawn_python(NEVER_READS, &[&port.to_string(), "60"]);
    std::thread::sleep(Duration::from_secs(2));

    let start = Instant::now();
    Command::new("kill")
        .arg("-TERM")
        .arg(relay.child.id().to_string())
        .status()
        .unwrap();
    let status = loop {
        if let Some(status) = relay.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "relay still running 20 s after SIGTERM:\n{}",
            relay.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = start.elapsed();
    assert!(status.success(), "{status}");
    // 2 s of grace, plus delivery's own bounded stop.
    assert!(took < Duration::from_secs(12), "took {took:?}");
    assert!(relay.log().contains("grace period over"), "{}", relay.log());
    for mut child in [trickle, never_reads] {
        let _ = child.kill();
        let _ = child.wait();
    }
}
