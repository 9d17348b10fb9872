//! Mail loops: a message that has been round too many relays is refused at DATA/BDAT, and
//! delivery never hands a message to this relay itself (an address literal of ours, a smart
//! host with our name), bouncing it with a reason instead of circling forever.

use std::time::Duration;

use wasmrelay_test_support::{wait_for, Downstream, RawSink, ReservedPort};

use super::*;

/// Sends a message with N `Received:` fields by DATA and by BDAT; prints both final replies.
const HOPS: &str = r#"
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
headers = "".join("Received: from hop%d.test by hop%d.test; Sun, 22 Nov 2026 10:00:00 +0000\r\n" % (i, i + 1) for i in range(n))
message = (headers + "From: a@origin.test\r\nSubject: hops\r\n\r\nbody\r\n").encode()
s = socket.create_connection((host, port), timeout=20)
f = s.makefile("rb")
def reply():
    out = b""
    while True:
        line = f.readline()
        out += line
        if len(line) < 4 or line[3:4] != b"-":
            return out.decode().strip().splitlines()[-1]
def cmd(line):
    s.sendall(line.encode() + b"\r\n")
    return reply()
reply()
cmd("EHLO client.test")
cmd("MAIL FROM:<a@origin.test>")
cmd("RCPT TO:<user@local.test>")
cmd("DATA")
s.sendall(message + b".\r\n")
print("DATA", reply())
cmd("MAIL FROM:<a@origin.test>")
cmd("RCPT TO:<user@local.test>")
s.sendall(b"BDAT %d LAST\r\n" % len(message) + message)
print("BDAT", reply())
cmd("QUIT")
"#;

fn hops(relay: SocketAddr, n: usize) -> String {
    let out = python(
        HOPS,
        &[
            &relay.ip().to_string(),
            &relay.port().to_string(),
            &n.to_string(),
        ],
    );
    assert_success("hops", &out);
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn too_many_received_fields_are_refused_with_554_5_4_6() {
    let dir = tempfile::tempdir().unwrap();
    let dead = ClosedPort::new();
    let relay = start_relay(
        dir.path(),
        &format!(
            "[relay]\nlocal_domains = [\"local.test\"]\n{}",
            dead_route(&dead)
        ),
    );
    // 49 upstream hops plus ours is the default limit of 50: accepted.
    let at_limit = hops(relay.addr(), 49);
    for verb in ["DATA", "BDAT"] {
        assert!(
            at_limit.contains(&format!("{verb} 250 ")),
            "{verb} at the limit: {at_limit}"
        );
    }
    let looping = hops(relay.addr(), 50);
    for verb in ["DATA", "BDAT"] {
        assert!(
            looping.contains(&format!("{verb} 554 5.4.6 ")),
            "{verb} past the limit: {looping}"
        );
    }
    assert_eq!(relay.queued().len(), 2, "only the two at the limit");
}

/// A relay for trusted loopback clients with a route for `origin.test` (where bounces go) to
/// a next hop, and `extra(port)` in its config, `port` being the relay's own: held for it
/// until it listens there, so that the config can name it.
struct Looping {
    relay: Relay,
    next_hop: RawSink,
    _dir: tempfile::TempDir,
}

impl Looping {
    fn start(extra: impl FnOnce(u16) -> String) -> Looping {
        let dir = tempfile::tempdir().unwrap();
        let next_hop = RawSink::start();
        let own = ReservedPort::new();
        let text = config(
            &own.addr().to_string(),
            &format!(
                "[relay]\nrelay_networks = [\"127.0.0.0/8\"]\n{}{}",
                route(&["origin.test"], "127.0.0.1", next_hop.port()),
                extra(own.port())
            ),
        );
        let relay = Relay::start(dir.path(), &text);
        assert_eq!(relay.addr(), own.addr());
        Looping {
            relay,
            next_hop,
            _dir: dir,
        }
    }

    /// Sends from `a@origin.test` to `to` and returns the bounce the sender gets, after
    /// checking it is one for a loop.
    fn bounce(&self, to: &str) -> String {
        send(
            self.relay.addr(),
            &Mail {
                from: "a@origin.test",
                to: &[to],
                message: "From: a@origin.test\r\nSubject: loop\r\n\r\nround and round\r\n",
                ..Default::default()
            },
        );
        let dsn = &self.next_hop.wait_for(1, Duration::from_secs(30))[0];
        assert_eq!(dsn.rcpt_tos, ["a@origin.test"]);
        assert_eq!(dsn.mail_from, "");
        let text = dsn.text();
        assert!(text.contains("Status: 5.4.6"), "{text}");
        text
    }

    /// Messages the relay's sessions accepted (DSNs are not).
    fn accepted(&self) -> usize {
        self.relay
            .log()
            .lines()
            .filter(|l| l.contains(": client=") && l.ends_with("status=queued"))
            .count()
    }
}

#[test]
fn an_address_literal_of_ours_bounces_instead_of_looping() {
    // MX delivery goes to the relay's own port, so `[127.0.0.1]` is this relay.
    let l = Looping::start(|port| format!("[delivery]\nmx_port = {port}\n"));
    let text = l.bounce("bob@[127.0.0.1]");
    assert!(text.contains("loops back to myself"), "{text}");
    // A bounce to an address literal of ours follows the same rule: refused, not delivered
    // to ourselves (and a bounce of a bounce is never sent).
    send(
        l.relay.addr(),
        &Mail {
            from: "a@[127.0.0.1]",
            to: &["bob@[127.0.0.1]"],
            message: "From: a@origin.test\r\nSubject: literal sender\r\n\r\nagain\r\n",
            ..Default::default()
        },
    );
    wait_for("the spool to empty", Duration::from_secs(30), || {
        l.relay.queued().is_empty() && l.relay.log().matches("loops back to myself").count() >= 3
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(l.accepted(), 2, "{}", l.relay.log());
    assert_eq!(l.next_hop.messages().len(), 1);
    assert!(l.relay.queued().is_empty());
}

#[test]
fn a_smart_host_with_our_own_name_bounces_instead_of_looping() {
    // `relay.test` does not resolve at all (no DNS answers): the name alone says it is us.
    let l = Looping::start(|port| route(&["loop.test"], "RELAY.test.", port));
    let text = l.bounce("bob@loop.test");
    assert!(text.contains("RELAY.test.:"), "{text}");
    wait_for("the spool to empty", Duration::from_secs(10), || {
        l.relay.queued().is_empty()
    });
    assert_eq!(l.accepted(), 1, "{}", l.relay.log());
}
