//! Smart-host credentials go only over TLS whose certificate was verified. The attacker here
//! is whoever answers on the smart host's address with a certificate of their own (DNS
//! spoofing, a hijacked route): under opportunistic TLS the relay used to hand them the
//! password. A pooled connection opened without verification must not carry the mail of a
//! route that demands verification either.

use std::time::Duration;

use super::*;

fn attempted(dir: &Path, rcpt: &str) -> Option<wasmrelay::spool::Recipient> {
    queued(dir)
        .into_iter()
        .flat_map(|e| e.recipients)
        .find(|r| r.address == rcpt && r.attempts > 0)
}

#[test]
fn credentials_only_over_verified_tls_and_no_pooled_shortcut() {
    let dir = tempfile::tempdir().unwrap();
    // Self-signed: no public root vouches for it, as with an impostor.
    let (cert, key) = test_certificate(dir.path());
    let smart_host = Downstream::start(
        "127.0.0.1",
        &[
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--auth",
        ],
    );
    let port = free_port();
    let host = |extra: &str| {
        format!(
            "hosts = [{{ host = \"127.0.0.1\", port = {}, {extra} }}]",
            smart_host.port
        )
    };
    let config = write_config(
        dir.path(),
        port,
        &format!(
            r#"
[relay]
relay_networks = ["127.0.0.0/8"]

[delivery]
idle_timeout = "60s"

[[delivery.routes]]
domains = ["opportunistic.test"]
{}

[[delivery.routes]]
domains = ["optout.test"]
{}

[[delivery.routes]]
domains = ["strict.test"]
{}
"#,
            host("auth = { user = \"relay\", password = \"opportunistic-secret\" }"),
            host("tls = \"require\", tls_verify = false, auth = { user = \"relay\", password = \"shared-secret\" }"),
            host("tls = \"require\", auth = { user = \"relay\", password = \"shared-secret\" }"),
        ),
    );
    let relay = RelayProcess::start(&config, &[port]);
    let mail = |to: &str| {
        send(&Mail {
            port,
            from: "app@origin.test",
            to: &[to],
            message: &format!("From: app@origin.test\r\nTo: {to}\r\nSubject: {to}\r\n\r\nhi\r\n"),
            ..Default::default()
        })
    };

    // Opportunistic TLS with credentials: the certificate is checked, fails, and the
    // password stays home (no fallback to plaintext either).
    mail("user@opportunistic.test");
    wait_for(
        "an attempt to opportunistic.test",
        Duration::from_secs(20),
        || {
            attempted(dir.path(), "user@opportunistic.test").is_some()
                || !smart_host.auth_log().is_empty()
        },
    );
    let auth = smart_host.auth_log();
    assert!(
        auth.is_empty(),
        "password sent over unverified TLS: {auth:?}"
    );
    let r = attempted(dir.path(), "user@opportunistic.test").unwrap();
    assert!(
        r.last_reply.as_deref().unwrap_or("").contains("TLS"),
        "{r:?}"
    );

    // The explicit opt-out: credentials over unverified TLS, as configured.
    mail("user@optout.test");
    let arrived = smart_host.wait_for(1, 20);
    assert_eq!(arrived[0].rcpts(), ["user@optout.test"]);
    assert_eq!(arrived[0].meta["tls"], true);

    // Same host, same credentials, but verification required: the idle connection the
    // opt-out route left in the pool must not be reused for it.
    mail("user@strict.test");
    wait_for("an attempt to strict.test", Duration::from_secs(20), || {
        attempted(dir.path(), "user@strict.test").is_some()
    });
    std::thread::sleep(Duration::from_millis(500));
    let rcpts: Vec<Vec<String>> = smart_host.messages().iter().map(|m| m.rcpts()).collect();
    assert_eq!(rcpts, [["user@optout.test"]], "{}", relay.log());

    let auth = smart_host.auth_log();
    assert!(
        auth.iter().all(|a| a["password"] == "shared-secret"),
        "a password left over unverified TLS: {auth:?}"
    );
    assert_eq!(auth.len(), 1, "{auth:?}");
    assert_eq!(auth[0]["tls"], true);

    // The opt-out is allowed, and check-config says what it costs.
    let check = Command::new(binary())
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_success("check-config", &check);
    let warnings = String::from_utf8_lossy(&check.stderr);
    assert!(
        warnings.contains("warning: delivery.routes[1].hosts[0].tls_verify:"),
        "{warnings}"
    );
    assert_eq!(warnings.matches("warning:").count(), 1, "{warnings}");
}
