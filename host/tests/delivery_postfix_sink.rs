//! Delivery to Postfix's `smtp-sink` on loopback: a second, independent SMTP server. Its dump
//! files show the envelope as it arrived, so this checks the RFC 3461 DSN parameters
//! (RET, ENVID, NOTIFY, ORCPT) and BODY=8BITMIME pass through, and that the bytes arrive
//! intact (smtp-sink writes them with LF line ends after its own trace lines).

use std::time::Duration;

use wasmrelay_test_support::{envelope, fast_config, DeliveryQueue, Downstream, SmtpSink};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dsn_parameters_and_8bit_body_reach_smtp_sink() {
    let sink = SmtpSink::start(10);
    let config = fast_config(&format!(
        "[[routes]]\ndomains = [\"dest.test\"]\nhosts = [{{ host = \"127.0.0.1\", port = {}, tls = \"none\" }}]\n",
        sink.port()
    ));
    let queue = DeliveryQueue::start(&config).await;
    let msg =
        "From: a@origin.test\r\nSubject: caf\u{e9}\r\n\r\n.leading dot\r\nna\u{ef}ve body\r\n";
    let mut env = envelope(
        &queue.spool,
        Some("a@origin.test"),
        &["b@dest.test"],
        msg.as_bytes(),
    );
    env.eight_bit = true;
    env.ret_headers_only = true;
    env.envid = Some("ENV 42".into());
    env.recipients[0].notify = vec!["FAILURE".into(), "DELAY".into()];
    env.recipients[0].orcpt = Some("rfc822;b@dest.test".into());
    queue
        .spool
        .store(&env, msg.as_bytes().into())
        .await
        .unwrap();
    queue.handle.wake(env.id.clone());
    queue.wait_empty(Duration::from_secs(15)).await;

    let got = sink.wait_for_async(1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let mail_args = got[0].meta["mail_args"].as_str().unwrap();
    let rcpt_args = got[0].meta["rcpt_args"].as_array().unwrap();
    assert_eq!(rcpt_args.len(), 1, "{rcpt_args:?}");
    let rcpt_args = rcpt_args[0].as_str().unwrap();
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
    assert_eq!(
        got[0].text().trim_end_matches('\n'),
        msg.replace("\r\n", "\n").trim_end_matches('\n')
    );
    queue.stop().await;
}
