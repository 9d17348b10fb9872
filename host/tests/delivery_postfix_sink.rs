//! Delivery to Postfix's `smtp-sink` on loopback: a second, independent SMTP server. Its dump
//! files show the envelope as it arrived, so this checks the RFC 3461 DSN parameters
//! (RET, ENVID, NOTIFY, ORCPT) and BODY=8BITMIME pass through, and that the bytes arrive
//! intact (smtp-sink writes them with LF line ends after its own trace lines).

mod support;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use support::{envelope, fast_config, Relay};

struct SmtpSink {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn smtp_sink() -> SmtpSink {
    let bin = ["/usr/sbin/smtp-sink", "/usr/lib/postfix/sbin/smtp-sink"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("Postfix smtp-sink is installed (apt-get install postfix)");
    let dir = tempfile::tempdir().unwrap();
    // smtp-sink drops privileges to -u; let that user write the dumps.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let template = format!("{}/%H%M%S.", dir.path().display());
    let child = Command::new(bin)
        .args(["-u", "nobody", "-d", &template])
        .arg(format!("127.0.0.1:{port}"))
        .arg("10")
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "smtp-sink did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    SmtpSink { child, port, dir }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dsn_parameters_and_8bit_body_reach_smtp_sink() {
    let sink = smtp_sink();
    let config = fast_config(&format!(
        "[[routes]]\ndomains = [\"dest.test\"]\nhosts = [{{ host = \"127.0.0.1\", port = {}, tls = \"none\" }}]\n",
        sink.port
    ));
    let relay = Relay::start(&config).await;
    let msg =
        "From: a@origin.test\r\nSubject: caf\u{e9}\r\n\r\n.leading dot\r\nna\u{ef}ve body\r\n";
    let mut env = envelope(
        &relay.spool,
        Some("a@origin.test"),
        &["b@dest.test"],
        msg.as_bytes(),
    );
    env.eight_bit = true;
    env.ret_headers_only = true;
    env.envid = Some("ENV 42".into());
    env.recipients[0].notify = vec!["FAILURE".into(), "DELAY".into()];
    env.recipients[0].orcpt = Some("rfc822;b@dest.test".into());
    relay.spool.store(&env, msg.as_bytes()).await.unwrap();
    relay.handle.wake(env.id.clone());
    relay.wait_empty(15).await;

    let deadline = Instant::now() + Duration::from_secs(5);
    let dump = loop {
        let files: Vec<_> = std::fs::read_dir(sink.dir.path())
            .unwrap()
            .flatten()
            .collect();
        if let Some(f) = files.first() {
            let bytes = std::fs::read(f.path()).unwrap();
            if bytes.ends_with(b"\n\n") {
                break String::from_utf8(bytes).unwrap();
            }
        }
        assert!(Instant::now() < deadline, "no dump from smtp-sink");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mail_args = dump
        .lines()
        .find(|l| l.starts_with("X-Mail-Args:"))
        .unwrap();
    let rcpt_args = dump
        .lines()
        .find(|l| l.starts_with("X-Rcpt-Args:"))
        .unwrap();
    for p in [
        "<a@origin.test>",
        "BODY=8BITMIME",
        "RET=HDRS",
        "ENVID=ENV+2042",
    ] {
        assert!(mail_args.contains(p), "{mail_args}");
    }
    for p in [
        "<b@dest.test>",
        "NOTIFY=FAILURE,DELAY",
        "ORCPT=rfc822;b@dest.test",
    ] {
        assert!(rcpt_args.contains(p), "{rcpt_args}");
    }
    // After smtp-sink's own Received: field comes our message, unchanged but for line ends.
    let body_start = dump.find("\nSubject:").map(|i| i + 1).unwrap();
    let from_start = dump.find("From: a@origin.test").unwrap();
    let ours = &dump[from_start.min(body_start)..];
    assert_eq!(
        ours.trim_end_matches('\n'),
        msg.replace("\r\n", "\n").trim_end_matches('\n')
    );
    relay.stop().await;
}
