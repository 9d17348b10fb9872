//! Real SMTP clients as the tests run them: Python's smtplib, swaks and curl.

use std::net::SocketAddr;
use std::process::{Command, Output};

/// Runs `python3 -c script args…` and returns its output.
pub fn python(script: &str, args: &[&str]) -> Output {
    Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 runs")
}

/// Panics with both output streams unless `out` is a success.
pub fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends `message` with smtplib's `sendmail` (EHLO `client.test`, no TLS); returns what
/// `sendmail` returned, the refused recipients, as a sorted Python list:
/// `[('a@b', (550, b'5.1.1 ...'))]`, or `[]` when every recipient was accepted.
pub fn smtplib_send(addr: SocketAddr, sender: &str, rcpts: &[&str], message: &str) -> String {
    const SEND: &str = r#"
import smtplib, sys
host, port, sender, rcpts, msg = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4].split(","), sys.argv[5]
with smtplib.SMTP(host, port, timeout=30) as s:
    s.ehlo("client.test")
    refused = s.sendmail(sender, rcpts, msg)
    print(sorted(refused.items()))
"#;
    let out = python(
        SEND,
        &[
            &addr.ip().to_string(),
            &addr.port().to_string(),
            sender,
            &rcpts.join(","),
            message,
        ],
    );
    assert_success("smtplib sendmail", &out);
    String::from_utf8(out.stdout)
        .expect("smtplib prints text")
        .trim()
        .to_string()
}

/// `swaks` aimed at `addr`; the caller adds the transaction and runs it.
pub fn swaks(addr: SocketAddr) -> Command {
    let mut cmd = Command::new("swaks");
    cmd.args(["--server", &addr.ip().to_string()])
        .args(["--port", &addr.port().to_string()]);
    cmd
}

/// `curl` speaking SMTP to `addr`, introducing itself as `helo`; the caller adds
/// `--mail-from`, `--mail-rcpt` and `--upload-file`.
pub fn curl_smtp(addr: SocketAddr, helo: &str) -> Command {
    let mut cmd = Command::new("curl");
    cmd.args(["--silent", "--show-error", "--url"])
        .arg(format!("smtp://{addr}/{helo}"));
    cmd
}
