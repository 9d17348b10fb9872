//! DKIM signs only mail the relay can vouch for. An outsider who writes `From:` with our
//! signing domain to one of our local domains must not get our signature on it: that would
//! turn the relay into a DKIM-valid forgery service for every receiver behind it.

use std::process::Command;

use super::*;

/// dkimpy verification with the key record given on the command line (no DNS needed):
/// prints `ok`, `unsigned` or `bad`.
const VERIFY: &str = r#"
import sys, dkim
message = open(sys.argv[1], "rb").read()
record = sys.argv[2].encode()
if b"DKIM-Signature:" not in message:
    print("unsigned")
else:
    ok = dkim.DKIM(message).verify(dnsfunc=lambda name, timeout=5: record)
    print("ok" if ok else "bad")
"#;

fn verdict(dir: &Path, arrived: &Arrived, record: &str) -> String {
    let file = dir.join("arrived.eml");
    std::fs::write(&file, &arrived.data).unwrap();
    let out = python(VERIFY, &[file.to_str().unwrap(), record]);
    assert_success("dkimpy", &out);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The TXT record `dkim keygen` printed, its quoted strings joined.
fn keygen(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("s1.pem");
    let out = Command::new(binary())
        .args([
            "dkim",
            "keygen",
            "--domain",
            "signed.test",
            "--selector",
            "s1",
        ])
        .arg("--out")
        .arg(&key)
        .output()
        .unwrap();
    assert_success("dkim keygen", &out);
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text.lines().next().unwrap();
    let record: String = line
        .split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s)
        .collect();
    assert!(record.contains("p="), "{record}");
    (key, record)
}

#[test]
fn outsider_forgery_to_a_local_domain_arrives_unsigned() {
    let dir = tempfile::tempdir().unwrap();
    let (key, record) = keygen(dir.path());
    let next_hop = Downstream::start("127.0.0.1", &[]);
    let port = free_port();
    let config = write_config(
        dir.path(),
        port,
        &format!(
            r#"
[relay]
local_domains = ["local.test"]
relay_networks = ["127.0.0.2/32"]
{}
[[delivery.dkim]]
domain = "signed.test"
selector = "s1"
key = "{}"
"#,
            route(&["*"], "127.0.0.1", next_hop.port),
            key.display()
        ),
    );
    let _relay = RelayProcess::start(&config, &[port]);
    let message = |subject: &str| {
        format!(
            "From: The CEO <ceo@signed.test>\r\nTo: user@local.test\r\nSubject: {subject}\r\n\
             Date: Sun, 22 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{subject}@signed.test>\r\n\r\n\
             Please wire the money today.\r\n"
        )
    };
    let (forged, authed, trusted) = (message("forged"), message("authed"), message("trusted"));
    // The attacker: no AUTH, an address outside relay_networks, mail to our own domain.
    send(&Mail {
        port,
        from: "ceo@signed.test",
        to: &["user@local.test"],
        message: &forged,
        ..Default::default()
    });
    send(&Mail {
        port,
        from: "ceo@signed.test",
        to: &["user@local.test"],
        message: &authed,
        login: true,
        ..Default::default()
    });
    send(&Mail {
        port,
        from: "ceo@signed.test",
        to: &["user@local.test"],
        message: &trusted,
        source: Some("127.0.0.2"),
        ..Default::default()
    });
    let arrived = next_hop.wait_for(3, 30);
    let by_subject = |s: &str| {
        arrived
            .iter()
            .find(|a| a.text().contains(&format!("Subject: {s}\r\n")))
            .unwrap_or_else(|| panic!("{s} did not arrive"))
    };
    assert_eq!(
        verdict(dir.path(), by_subject("forged"), &record),
        "unsigned",
        "{}",
        by_subject("forged").text()
    );
    assert_eq!(verdict(dir.path(), by_subject("authed"), &record), "ok");
    assert_eq!(verdict(dir.path(), by_subject("trusted"), &record), "ok");
}
