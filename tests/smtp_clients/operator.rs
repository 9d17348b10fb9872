//! The operator's commands against the binary: `check-config` names every error by its key;
//! `queue list|show|delete` work while the relay runs.

use std::path::Path;
use std::process::Command;

use wasmrelay_test_support::{assert_success, binary, queued_id, Raw};

use super::setup;

#[test]
fn check_config_reports_every_error_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
[[listeners]]
address = "127.0.0.1:2525"
role = "submission"

[[listeners]]
address = "127.0.0.1:2525"
tls_cert = "missing.pem"

[relay]
local_domains = ["ok.example", "bad domain"]

[limits]
max_recipients = 10
max_command_line = 100

[[users]]
name = "bob"
password_hash = "plaintext"
"#,
    )
    .unwrap();
    let check = |path: &Path| {
        Command::new(binary())
            .args(["check-config", "--config"])
            .arg(path)
            .output()
            .unwrap()
    };
    let out = check(&path);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr);
    for key in [
        "listeners[0].tls_cert",
        "listeners[1].tls_key",
        "listeners[1].tls_cert",
        "listeners[1].address",
        "relay.local_domains[1]",
        "limits.max_recipients",
        "limits.max_command_line",
        "users[0].password_hash",
    ] {
        assert!(
            text.contains(&format!("{key}:")),
            "{key} missing from:\n{text}"
        );
    }

    std::fs::write(
        &path,
        "[[listeners]]\naddress = \"127.0.0.1:2525\"\nbogus = 1\n",
    )
    .unwrap();
    let out = check(&path);
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text.contains("listeners[0].bogus") && text.contains("unknown field"),
        "{text}"
    );

    let out = check(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/relay.toml"));
    assert_success("check-config on the quickstart", &out);

    // A plugin's own keys are checked by its `init`, as `serve` would run it.
    std::fs::write(
        &path,
        r#"
[[listeners]]
address = "127.0.0.1:2525"

[[plugins]]
builtin = "rate-limit"
config = { rules = [{ name = "r", count = "messages", key = "ip", rate = "10/min", bogus_rule_key = 1 }] }
"#,
    )
    .unwrap();
    let out = check(&path);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("plugins:") && text.contains("bogus_rule_key"),
        "{text}"
    );
    let syntax_only = Command::new(binary())
        .args(["check-config", "--no-plugins", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_success("check-config --no-plugins", &syntax_only);
}

#[test]
fn queue_list_show_delete_while_running() {
    let mut s = setup("");
    let mut c = Raw::connect(s.relay_addr());
    c.cmd("EHLO client.test", "250");
    let mut ids = Vec::new();
    for n in 0..2 {
        c.cmd("MAIL FROM:<app@example.org>", "250");
        c.cmd("RCPT TO:<bob@example.com>", "250");
        c.cmd("DATA", "354");
        ids.push(queued_id(
            &c.cmd(&format!("Subject: queued {n}\r\n\r\nbody\r\n."), "250"),
        ));
    }
    let queue = |args: &[&str]| {
        let out = s.relay.queue(args);
        assert_success(&format!("queue {args:?}"), &out);
        String::from_utf8(out.stdout).unwrap()
    };
    let list = queue(&["list"]);
    assert!(
        list.contains(&ids[0]) && list.contains(&ids[1]) && list.contains("2 message(s)"),
        "{list}"
    );
    assert!(
        list.contains("app@example.org") && list.contains("1/1 pending"),
        "{list}"
    );
    let show = queue(&["show", &ids[0], "--headers"]);
    assert!(
        show.contains("\"bob@example.com\"") && show.contains("Subject: queued 0"),
        "{show}"
    );
    queue(&["delete", &ids[0]]);
    let list = queue(&["list"]);
    assert!(!list.contains(&ids[0]) && list.contains(&ids[1]), "{list}");
    let left: Vec<_> = s.spooled().into_iter().map(|(e, _)| e.id.0).collect();
    assert_eq!(left, [ids[1].clone()]);
}
