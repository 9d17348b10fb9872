//! Memory per session does not grow with message size: 50 clients each send a 25 MB message,
//! all held in the middle of DATA at once, while the relay's memory is sampled from
//! `/proc/<pid>/status`. What the relay holds itself (`RssAnon`) must stay under
//! [`RSS_ANON_BOUND`]; buffering the messages would take 1.25 GB. Large messages live in
//! files (spill files, then the spool) whose mapped pages are page cache, reported apart
//! (`VmRSS` counts them too). Every message then gets its `250` and reaches the next hop
//! byte for byte (a SHA-256 of each body, taken by the client as it sends and by the next hop
//! as it receives). While the messages are spooled and delivered the same bound holds:
//! delivery sends from a mapping of the spool's segment, not from a copy. A large message edited on its way (our `Authentication-Results:`, a
//! plugin's header edits, the long-line repair) arrives with every edit and its content whole.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmrelay_test_support::{test_plugin, wait_for, Downstream, RawSink};

use super::*;

/// Concurrent sessions.
const SESSIONS: usize = 50;
/// Size of each message, about: whole blocks of 257 lines of 998 octets.
const MESSAGE_SIZE: usize = 25_000_000;
/// What the relay may hold itself with every session in the middle of its message. The
/// relay measured about 20–30 MiB here; buffering would be 50 × 25 MB.
const RSS_ANON_BOUND: u64 = 200 * 1024 * 1024;
/// How long the whole transfer may take on a loaded machine before the test gives up.
const TRANSFER: Duration = Duration::from_secs(120);

/// The clients, one thread each on a raw socket: every session sends all of its message but
/// the last block, then waits; once all are there, the script prints `IN-FLIGHT` and waits
/// for a line on stdin; then every session ends its message and prints
/// `RESULT <subject> <sha256 of the body> <reply>`. Bodies differ per message (a numbered
/// line before each block) and no line starts with a dot.
const CLIENTS: &str = r#"
import hashlib, socket, sys, threading
port, count, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
LINE = 998
BLOCK = b"".join((b"%05d " % n + b"abcdefghijklmnopqrstuvwxyz0123456789" * 28)[:LINE - 2] + b"\r\n" for n in range(256))
blocks = -(-size // (len(BLOCK) + LINE))
barrier = threading.Barrier(count + 1, timeout=240)
go = threading.Event()
results, errors = {}, []

def unit(i, k):
    return (b"message %03d block %05d " % (i, k)).ljust(LINE - 2, b"-") + b"\r\n" + BLOCK

def session(i):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=240)
        f = s.makefile("rb")
        def expect(code):
            while True:
                line = f.readline()
                if not line:
                    raise RuntimeError("session %d: connection closed" % i)
                if line[3:4] != b"-":
                    if not line.startswith(code):
                        raise RuntimeError("session %d: %r" % (i, line))
                    return line.decode().strip()
        expect(b"220")
        for cmd, code in [(b"EHLO client.test", b"250"), (b"MAIL FROM:<sender@client.test>", b"250"),
                          (b"RCPT TO:<rcpt@dest.test>", b"250"), (b"DATA", b"354")]:
            s.sendall(cmd + b"\r\n")
            expect(code)
        s.sendall(b"From: sender@client.test\r\nTo: rcpt@dest.test\r\nSubject: stream-%03d\r\n"
                  b"Message-ID: <stream-%03d@client.test>\r\n\r\n" % (i, i))
        body = hashlib.sha256()
        for k in range(blocks - 1):
            chunk = unit(i, k)
            body.update(chunk)
            s.sendall(chunk)
        barrier.wait()
        go.wait()
        chunk = unit(i, blocks - 1)
        body.update(chunk)
        s.sendall(chunk + b".\r\n")
        reply = expect(b"250")
        s.sendall(b"QUIT\r\n")
        s.close()
        results[i] = (body.hexdigest(), reply)
    except Exception as e:
        errors.append(repr(e))
        barrier.abort()

threads = [threading.Thread(target=session, args=(i,)) for i in range(count)]
for t in threads:
    t.start()
try:
    barrier.wait()
except threading.BrokenBarrierError:
    print("FAILED", errors, flush=True)
    sys.exit(1)
print("IN-FLIGHT", flush=True)
sys.stdin.readline()
go.set()
for t in threads:
    t.join()
for i, (digest, reply) in sorted(results.items()):
    print("RESULT stream-%03d %s %s" % (i, digest, reply), flush=True)
if errors or len(results) != count:
    print("FAILED", errors, flush=True)
    sys.exit(1)
"#;

/// The next hop: plain SMTP on a port it prints (`PORT <n>`), hashing each message body as it
/// streams in (nothing is kept) and appending `<subject> <sha256>` to the file in argv[1].
const NEXT_HOP: &str = r#"
import asyncio, hashlib, sys
out = open(sys.argv[1], "a")

async def read_data(reader):
    header, body, pending = bytearray(), None, b""
    while True:
        chunk = await reader.read(1 << 20)
        if not chunk:
            raise ConnectionError("end of stream in DATA")
        data = pending + chunk
        if body is None:
            header += data
            end = header.find(b"\r\n\r\n")
            if end < 0:
                pending = b""
                continue
            data, header, body = bytes(header[end + 4:]), bytes(header[:end + 2]), hashlib.sha256()
        stop = data.find(b"\r\n.\r\n")
        if stop >= 0:
            body.update(data[:stop + 2])
            break
        body.update(data[:-4])
        pending = data[-4:]
    subject = next((l[8:].strip().decode() for l in header.split(b"\r\n") if l[:8].lower() == b"subject:"), "")
    return subject, body.hexdigest()

async def session(reader, writer):
    writer.write(b"220 next-hop.test ESMTP\r\n")
    while True:
        line = await reader.readline()
        if not line:
            break
        verb = line[:4].upper()
        if verb in (b"EHLO", b"HELO"):
            writer.write(b"250-next-hop.test\r\n250 8BITMIME\r\n")
        elif verb == b"DATA":
            writer.write(b"354 go ahead\r\n")
            await writer.drain()
            subject, digest = await read_data(reader)
            out.write("%s %s\n" % (subject, digest))
            out.flush()
            writer.write(b"250 2.0.0 kept\r\n")
        elif verb == b"QUIT":
            writer.write(b"221 bye\r\n")
            await writer.drain()
            break
        else:
            writer.write(b"250 OK\r\n")
        await writer.drain()
    writer.close()

async def main():
    server = await asyncio.start_server(session, "127.0.0.1", 0)
    print("PORT", server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()

asyncio.run(main())
"#;

/// A child process, killed when the test ends however it ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

fn spawn_python(script: &str, args: &[&str]) -> (Guard, std::io::Lines<BufReader<ChildStdout>>) {
    let mut child = Guard(
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs"),
    );
    let stdout = child.0.stdout.take().expect("piped stdout");
    (child, BufReader::new(stdout).lines())
}

/// `RssAnon` and `VmRSS` of process `pid`, in bytes.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("relay status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("RssAnon:"), field("VmRSS:"))
}

/// Samples the memory of `pid` until `stop`; the largest of each.
fn sample_until(pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u64, u64)> {
    std::thread::spawn(move || {
        let mut max = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            let (anon, rss) = memory(pid);
            max = (max.0.max(anon), max.1.max(rss));
            std::thread::sleep(Duration::from_millis(20));
        }
        max
    })
}

/// On tmpfs when there is one: 2.5 GB of short-lived files need not reach a shared disk.
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().unwrap()
}

const MIB: u64 = 1024 * 1024;

#[test]
fn fifty_large_messages_in_flight_keep_the_relay_small() {
    let started = Instant::now();
    let dir = scratch_dir();
    let arrived = dir.path().join("arrived.txt");
    let (_next_hop, mut hop_out) = spawn_python(NEXT_HOP, &[arrived.to_str().unwrap()]);
    let port_line = hop_out.next().expect("the next hop starts").unwrap();
    let hop_port: u16 = port_line.strip_prefix("PORT ").unwrap().parse().unwrap();
    let relay = start_relay(
        dir.path(),
        &format!(
            "[relay]\nrelay_networks = [\"127.0.0.0/8\"]\n\
             [limits]\nmax_connections_per_ip = {}\n{}",
            SESSIONS * 2,
            route(&["*"], "127.0.0.1", hop_port)
        ),
    );
    let pid = relay.pid();
    let (baseline, _) = memory(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_until(pid, stop.clone());
    let (mut clients, mut lines) = spawn_python(
        CLIENTS,
        &[
            &relay.addr().port().to_string(),
            &SESSIONS.to_string(),
            &MESSAGE_SIZE.to_string(),
        ],
    );
    let line = lines.next().expect("the clients report").unwrap();
    assert_eq!(line, "IN-FLIGHT", "clients: {line}\n{}", relay.log());
    // Every session is in the middle of DATA with all but its last block sent: the moment
    // buffering would hold the most. Keep sampling a little while the relay drains its sockets.
    let (settle_anon, settle_rss) = (0..25).fold((0, 0), |max: (u64, u64), _| {
        std::thread::sleep(Duration::from_millis(40));
        let (anon, rss) = memory(pid);
        (max.0.max(anon), max.1.max(rss))
    });
    stop.store(true, Ordering::Relaxed);
    let (anon, rss) = sampler.join().unwrap();
    let (anon, rss) = (anon.max(settle_anon), rss.max(settle_rss));
    eprintln!(
        "{:?}: {SESSIONS} sessions × {MESSAGE_SIZE} octets in flight: RssAnon max {} MiB \
         (at start {} MiB), VmRSS max {} MiB; bound on RssAnon {} MiB",
        started.elapsed(),
        anon / MIB,
        baseline / MIB,
        rss / MIB,
        RSS_ANON_BOUND / MIB
    );
    assert!(
        anon < RSS_ANON_BOUND,
        "the relay held {} MiB of its own with {SESSIONS} messages in flight",
        anon / MIB
    );

    // Spooling and delivery too: both work from the files.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_until(pid, stop.clone());
    writeln!(clients.0.stdin.as_mut().unwrap(), "go").unwrap();
    let mut sent = HashMap::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let mut words = line.splitn(4, ' ');
        match (words.next(), words.next(), words.next(), words.next()) {
            (Some("RESULT"), Some(subject), Some(digest), Some(reply)) => {
                assert!(reply.starts_with("250"), "{subject}: {reply}");
                sent.insert(subject.to_string(), digest.to_string());
            }
            _ => panic!("clients: {line}\n{}", relay.log()),
        }
    }
    let status = clients.0.wait().unwrap();
    assert!(status.success(), "clients exited with {status}");
    assert_eq!(sent.len(), SESSIONS);
    eprintln!("{:?}: every message accepted", started.elapsed());

    let read_arrived = || -> HashMap<String, String> {
        std::fs::read_to_string(&arrived)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(s, d)| (s.to_string(), d.to_string()))
            .collect()
    };
    wait_for("every message at the next hop", TRANSFER, || {
        read_arrived().len() >= SESSIONS
    });
    stop.store(true, Ordering::Relaxed);
    let (anon, rss) = sampler.join().unwrap();
    assert_eq!(read_arrived(), sent, "bodies changed on the way");
    eprintln!(
        "{:?}: every message delivered; while spooling and delivering: RssAnon max {} MiB, \
         VmRSS max {} MiB",
        started.elapsed(),
        anon / MIB,
        rss / MIB
    );
    assert!(
        anon < RSS_ANON_BOUND,
        "the relay held {} MiB of its own while spooling and delivering {SESSIONS} messages",
        anon / MIB
    );
}

#[test]
fn a_large_message_takes_every_edit_on_its_way() {
    let dir = tempfile::tempdir().unwrap();
    let next_hop = RawSink::start();
    let plugin = format!(
        "[[plugins]]\npath = {:?}\nname = \"policy\"\non_error = \"tempfail\"\n",
        test_plugin("policy").display().to_string()
    );
    let relay = Relay::start(
        dir.path(),
        &config(
            "127.0.0.1:0",
            &format!(
                "[relay]\nlocal_domains = [\"x.test\"]\n{}{plugin}",
                route(&["*"], "127.0.0.1", next_hop.port())
            ),
        )
        .replace(
            "allow_plaintext_auth = true",
            "allow_plaintext_auth = true\ncheck_auth = \"all\"",
        ),
    );
    // From outside `relay_networks` to a local domain, so the forged results go. 1.5 MB of
    // HTML, one line of it far over 998 octets: well past the spill threshold.
    let row = "<tr><td>caf\u{e9}</td><td>0123456789</td></tr>\r\n";
    let html = format!(
        "<html><body><table>\r\n{}</table><p>{}</p></body></html>",
        row.repeat(30_000),
        "<b>minified</b>".repeat(500)
    );
    let message = format!(
        "From: app@shop.test\r\nTo: user@x.test\r\nSubject: large\r\nX-Remove-Me: yes\r\n\
         Authentication-Results: relay.test; spf=pass (forged)\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
         {html}\r\n"
    );
    assert!(message.len() > 1_000_000);
    let data = &super::long_lines::send_to_next_hop(&relay, &next_hop, &message);
    let head_end = data.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&data[..head_end]);
    assert!(head.starts_with("X-Seen-By: policy\r\n"), "{head}");
    assert!(head.contains("\r\nX-Policy: checked"), "{head}");
    assert!(!head.contains("X-Remove-Me"), "{head}");
    assert_eq!(
        head.matches("Authentication-Results: relay.test").count(),
        1,
        "ours replaces the forged one: {head}"
    );
    assert!(!head.contains("(forged)"), "{head}");
    super::long_lines::assert_html_within_998(dir.path(), data, &html);
    let incoming = relay.spool_dir().join("incoming");
    assert_eq!(std::fs::read_dir(&incoming).unwrap().count(), 0);
}
