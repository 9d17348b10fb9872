//! Smaller holes: an `ipv6:` address literal in lower case, ORCPT relayed encoded twice, a
//! next hop's reply that made the reply parser cut a UTF-8 character in half, and who may
//! read the spool or use the control socket.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use wasmrelay_test_support::{is_root, wait_for, Downstream, RawSink};

use super::*;

fn trusted_relay(dir: &Path, extra: &str) -> Relay {
    start_relay(
        dir,
        &format!("[relay]\nrelay_networks = [\"127.0.0.0/8\"]\n{extra}"),
    )
}

fn route_to(next_hop: &RawSink) -> String {
    route(&["dest.test"], "127.0.0.1", next_hop.port())
}

#[test]
fn ipv6_address_literals_are_case_insensitive() {
    let dir = tempfile::tempdir().unwrap();
    let next_hop = RawSink::builder().host("::1".parse().unwrap()).start();
    let relay = trusted_relay(
        dir.path(),
        &format!("[delivery]\nmx_port = {}\n", next_hop.port()),
    );
    send(
        relay.addr(),
        &Mail {
            from: "a@origin.test",
            to: &["bob@[ipv6:::1]"],
            message: "From: a@origin.test\r\nSubject: v6\r\n\r\nhi\r\n",
            ..Default::default()
        },
    );
    let arrived = next_hop.wait_for(1, WAIT);
    assert_eq!(arrived[0].rcpt_tos, ["bob@[ipv6:::1]"], "{}", relay.log());
}

#[test]
fn orcpt_is_relayed_as_received_not_encoded_again() {
    let dir = tempfile::tempdir().unwrap();
    let next_hop = RawSink::start();
    let relay = trusted_relay(dir.path(), &route_to(&next_hop));
    let out = python(
        r#"
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=20)
s.ehlo("client.test")
s.sendmail("a@origin.test", ["bob@dest.test"], b"Subject: orcpt\r\n\r\nhi\r\n",
           rcpt_options=["NOTIFY=FAILURE", "ORCPT=rfc822;bob+2Bsales@dest.test"])
s.quit()
"#,
        &[
            &relay.addr().ip().to_string(),
            &relay.addr().port().to_string(),
        ],
    );
    assert_success("smtplib", &out);
    let arrived = next_hop.wait_for(1, WAIT);
    let line = arrived[0].meta["rcpt_lines"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        line.ends_with(" ORCPT=rfc822;bob+2Bsales@dest.test"),
        "{line}"
    );
}

#[test]
fn a_reply_that_splits_a_utf8_character_is_parsed_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    // Three NEL characters (Unicode whitespace, two bytes each) before the status code: the
    // old parser cut the line at the length of "2.0.0", inside the third one, and panicked.
    let next_hop = RawSink::builder()
        .data_reply("\u{85}\u{85}\u{85}2.0.0 queued")
        .start();
    let relay = trusted_relay(dir.path(), &route_to(&next_hop));
    send(
        relay.addr(),
        &Mail {
            from: "a@origin.test",
            to: &["bob@dest.test"],
            message: "From: a@origin.test\r\nSubject: nel\r\n\r\nhi\r\n",
            ..Default::default()
        },
    );
    next_hop.wait_for(1, WAIT);
    wait_for("the delivery to be recorded", WAIT, || {
        relay.queued().is_empty()
    });
    // Retries come every second here: a delivery recorded as failed would be sent again.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(next_hop.messages().len(), 1, "{}", relay.log());
    assert!(!relay.log().contains("panicked"), "{}", relay.log());
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn the_spool_is_private_and_the_control_socket_checks_its_peer() {
    let dir = tempfile::tempdir().unwrap();
    let dead = ClosedPort::new();
    let relay = trusted_relay(dir.path(), &dead_route(&dead));
    send(
        relay.addr(),
        &Mail {
            from: "a@origin.test",
            to: &["bob@dest.test"],
            message: "From: a@origin.test\r\nSubject: private\r\n\r\nhi\r\n",
            ..Default::default()
        },
    );
    let spool = relay.spool_dir();
    assert_eq!(spool, dir.path().join("spool"));
    assert_eq!(mode(&spool), 0o700);
    assert_eq!(mode(&spool.join("log")), 0o700);
    let files: Vec<PathBuf> = std::fs::read_dir(spool.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    for f in files.iter().chain([&spool.join("owner.lock")]) {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    let socket = spool.join("control.sock");
    assert_eq!(mode(&socket), 0o600);
    flush(&relay);

    // An operator loosens the modes by mistake: another local user still gets nowhere.
    if !is_root() {
        eprintln!("skipped the other-user part: needs root to become nobody");
        return;
    }
    for d in [dir.path(), &spool] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = python(
        r#"
import os, socket, sys
os.setgid(65534)
os.setuid(65534)
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"flush\n")
print(s.makefile().readline().strip())
"#,
        &[socket.to_str().unwrap()],
    );
    assert_success("control socket as nobody", &out);
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(answer.starts_with("error: permission denied"), "{answer}");
}
