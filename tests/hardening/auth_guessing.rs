//! Password guessing: a client that fails AUTH again and again, each time on a new
//! connection (so the per-session error limit never sees it), is stopped across connections:
//! past the failure limit even the right password is refused with `454 4.7.0` and no
//! password is checked. Another client is not affected.

use super::*;

/// Tries each password on its own connection from `source`; prints one line per attempt:
/// the reply code of AUTH (235, 535, 454 ...).
const GUESS: &str = r#"
import smtplib, sys
host, port, source = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for password in sys.argv[4:]:
    s = smtplib.SMTP(host, port, source_address=(source, 0), timeout=30)
    s.ehlo("guesser.test")
    s.user, s.password = "alice", password
    try:
        s.auth("PLAIN", s.auth_plain)  # one mechanism: one attempt per connection
        print(235)
    except smtplib.SMTPAuthenticationError as e:
        print(e.smtp_code)
    except smtplib.SMTPException as e:
        print("error", e)
    s.close()
"#;

fn guess(relay: SocketAddr, source: &str, passwords: &[&str]) -> Vec<String> {
    let port = relay.port().to_string();
    let mut args = vec!["127.0.0.1", port.as_str(), source];
    args.extend_from_slice(passwords);
    let out = python(GUESS, &args);
    assert_success("guessing client", &out);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn repeated_failures_across_connections_block_auth_for_that_client() {
    let dir = tempfile::tempdir().unwrap();
    let relay = start_relay(
        dir.path(),
        "[limits]\nauth_failures = 3\nauth_failure_window = \"10m\"\n",
    );
    let codes = guess(
        relay.addr(),
        "127.0.0.3",
        &["wrong1", "wrong2", "wrong3", "alice-pw", "wrong4"],
    );
    assert_eq!(
        codes,
        ["535", "535", "535", "454", "454"],
        "{}",
        relay.log()
    );
    // Someone else, with the right password, is not punished for the guesser.
    assert_eq!(guess(relay.addr(), "127.0.0.4", &["alice-pw"]), ["235"]);
    let log = relay.log();
    assert!(
        log.contains("failures=3"),
        "the failure count is logged:\n{log}"
    );
}
