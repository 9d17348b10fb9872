//! Delivery through a smart-host route to a real downstream server (aiosmtpd on loopback):
//! bytes on arrival, DKIM checked by dkimpy, retry after 4xx, DSN after 5xx, connection
//! reuse, and resuming after a restart.

use std::time::Duration;

use serde_json::json;
use wasmrelay::config::delivery::DkimAlgorithm;
use wasmrelay::delivery::dkim::keygen;
use wasmrelay_test_support::{fast_config, Aiosmtpd, DeliveryQueue, DnsZone, Downstream};

fn route_to(sink: &Aiosmtpd, domains: &[&str], extra: &str) -> String {
    let domains: Vec<String> = domains.iter().map(|d| format!("{d:?}")).collect();
    format!(
        "{extra}\n[[routes]]\ndomains = [{}]\nhosts = [{{ host = \"127.0.0.1\", port = {}, tls = \"none\" }}]\n",
        domains.join(", "),
        sink.port()
    )
}

/// Removes a leading, possibly folded, `DKIM-Signature:` field.
fn strip_dkim(data: &[u8]) -> (&[u8], &[u8]) {
    assert!(
        data.starts_with(b"DKIM-Signature:"),
        "{}",
        String::from_utf8_lossy(data)
    );
    let mut i = 0;
    loop {
        let nl = data[i..].iter().position(|&b| b == b'\n').unwrap() + i + 1;
        i = nl;
        if data[i] != b' ' && data[i] != b'\t' {
            return (&data[..i], &data[i..]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_byte_for_byte_with_verified_dkim_signatures() {
    let keys = tempfile::tempdir().unwrap();
    let ed_key = keys.path().join("ed.pem");
    let rsa_key = keys.path().join("rsa.pem");
    let ed_txt = keygen("ed.test", "s1", DkimAlgorithm::Ed25519Sha256, &ed_key).unwrap();
    let rsa_txt = keygen("rsa.test", "s2", DkimAlgorithm::RsaSha256, &rsa_key).unwrap();
    // Publish the TXT records exactly as keygen printed them.
    let txt = |records: &str| -> String {
        let line = records.lines().next().unwrap();
        let quoted = &line[line.find('"').unwrap()..];
        quoted
            .split('"')
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, s)| s)
            .collect()
    };
    let dns = DnsZone::start(json!({
        "s1._domainkey.ed.test": [["TXT", txt(&ed_txt)]],
        "s2._domainkey.rsa.test": [["TXT", txt(&rsa_txt)]],
    }));
    let sink = Aiosmtpd::start();
    let extra = format!(
        "[[dkim]]\ndomain = \"ed.test\"\nselector = \"s1\"\nkey = {:?}\nalgorithm = \"ed25519-sha256\"\n\
         [[dkim]]\ndomain = \"rsa.test\"\nselector = \"s2\"\nkey = {:?}\n",
        ed_key, rsa_key
    );
    let config = fast_config(&route_to(&sink, &["dest.test"], &extra));
    let queue = DeliveryQueue::start(&config).await;

    let ed_msg: &[u8] = b"From: Alice <alice@ed.test>\r\nTo: bob@dest.test\r\nSubject: ed25519\r\n\
Date: Sun, 22 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@ed.test>\r\n\r\n\
Hello,\r\n.a line starting with a dot\r\n..two dots\r\n.\r\ntrailing  spaces  \r\n";
    let rsa_msg: &[u8] =
        b"From: carol@mail.rsa.test\r\nTo: bob@dest.test\r\nSubject: rsa\r\n\r\nbody\r\n";
    queue
        .submit(Some("alice@ed.test"), &["bob@dest.test"], ed_msg)
        .await;
    let got = sink.wait_for_async(1, Duration::from_secs(15)).await;
    queue
        .submit(Some("carol@mail.rsa.test"), &["bob@dest.test"], rsa_msg)
        .await;
    let got2 = sink.wait_for_async(2, Duration::from_secs(15)).await;
    queue.wait_empty(Duration::from_secs(5)).await;

    for (received, original, d) in [
        (&got[0], ed_msg, "d=ed.test"),
        (&got2[1], rsa_msg, "d=rsa.test"),
    ] {
        let (sig, rest) = strip_dkim(&received.data);
        assert_eq!(rest, original, "delivered bytes differ");
        assert!(String::from_utf8_lossy(sig).contains(d));
        assert_eq!(received.rcpt_tos, ["bob@dest.test"]);
        dns.verify_dkim(&received.data)
            .unwrap_or_else(|e| panic!("dkimpy rejected the signature: {e}"));
    }
    assert_eq!(got[0].mail_from, "alice@ed.test");
    queue.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tempfail_then_delivered_on_retry() {
    let sink = Aiosmtpd::builder().tempfail_data(1).start();
    let config = fast_config(&route_to(&sink, &["dest.test"], ""));
    let queue = DeliveryQueue::start(&config).await;
    let msg = b"From: a@origin.test\r\nSubject: retry\r\n\r\nagain\r\n";
    let env = queue
        .submit(Some("a@origin.test"), &["bob@dest.test"], msg)
        .await;
    // After the 451, the recipient is pending with one attempt recorded.
    let e = queue
        .wait_attempts(&env.id, 1, Duration::from_secs(10))
        .await;
    assert!(e.recipients[0]
        .last_reply
        .as_deref()
        .unwrap()
        .contains("451"));
    let got = sink.wait_for_async(1, Duration::from_secs(15)).await;
    assert_eq!(got[0].data, msg);
    queue.wait_empty(Duration::from_secs(5)).await;
    assert_eq!(sink.messages().len(), 1);
    queue.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failure_sends_a_dsn_to_the_sender() {
    let sink = Aiosmtpd::builder().reject_rcpt("nobody@").start();
    let config = fast_config(&route_to(&sink, &["dest.test", "origin.test"], ""));
    let queue = DeliveryQueue::start(&config).await;
    let msg = b"From: sender@origin.test\r\nSubject: report\r\nMessage-ID: <x@origin.test>\r\n\r\nsecret\r\n";
    queue
        .submit(
            Some("sender@origin.test"),
            &["ok@dest.test", "nobody@dest.test"],
            msg,
        )
        .await;
    let got = sink.wait_for_async(2, Duration::from_secs(15)).await;
    queue.wait_empty(Duration::from_secs(10)).await;
    assert_eq!(got.len(), 2, "{got:?}");
    let (orig, dsn): (Vec<_>, Vec<_>) = got.iter().partition(|m| !m.mail_from.is_empty());
    assert_eq!(
        orig.len(),
        1,
        "{:?}",
        got.iter().map(|m| m.meta.clone()).collect::<Vec<_>>()
    );
    assert_eq!(orig[0].rcpt_tos, ["ok@dest.test"]);
    assert_eq!(orig[0].data, msg);
    let dsn = dsn[0];
    assert_eq!(dsn.rcpt_tos, ["sender@origin.test"]);
    let text = dsn.text();
    for needle in [
        "Content-Type: multipart/report; report-type=delivery-status;",
        "Content-Type: message/delivery-status",
        "Final-Recipient: rfc822; nobody@dest.test",
        "Action: failed",
        "Status: 5.1.1",
        "Diagnostic-Code: smtp; 550 5.1.1",
        "Content-Type: message/rfc822",
        "Message-ID: <x@origin.test>",
    ] {
        assert!(text.contains(needle), "DSN lacks {needle:?}:\n{text}");
    }
    assert!(!text.contains("Final-Recipient: rfc822; ok@dest.test"));
    // The DSN itself goes out from the null sender, so it can never bounce back.
    assert_eq!(dsn.mail_from, "");
    queue.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_dsn_for_a_null_sender() {
    let sink = Aiosmtpd::builder().reject_rcpt("nobody@").start();
    let config = fast_config(&route_to(&sink, &["dest.test"], ""));
    let queue = DeliveryQueue::start(&config).await;
    queue
        .submit(None, &["nobody@dest.test"], b"Subject: x\r\n\r\ny\r\n")
        .await;
    queue.wait_empty(Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sink.messages().is_empty());
    queue.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_carries_several_messages() {
    let sink = Aiosmtpd::start();
    let config = fast_config(&route_to(&sink, &["dest.test"], "per_destination = 1"));
    let queue = DeliveryQueue::start(&config).await;
    for i in 0..3 {
        let msg = format!("Subject: {i}\r\n\r\nbody {i}\r\n");
        queue
            .submit(Some("a@origin.test"), &["b@dest.test"], msg.as_bytes())
            .await;
    }
    let got = sink.wait_for_async(3, Duration::from_secs(15)).await;
    let ports: Vec<_> = got.iter().map(|m| m.meta["peer_port"].clone()).collect();
    assert!(
        ports.windows(2).all(|w| w[0] == w[1]),
        "new connection per message: {ports:?}"
    );
    queue.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_mail_resumes_after_restart() {
    let sink = Aiosmtpd::builder().tempfail_data(1).start();
    let mut config = fast_config(&route_to(&sink, &["dest.test"], ""));
    config.retry.initial_interval = Duration::from_secs(2);
    config.retry.max_interval = Duration::from_secs(2);
    let queue = DeliveryQueue::start(&config).await;
    let msg = b"Subject: survive\r\n\r\nrestart\r\n";
    let env = queue
        .submit(Some("a@origin.test"), &["b@dest.test"], msg)
        .await;
    queue
        .wait_attempts(&env.id, 1, Duration::from_secs(10))
        .await;
    // Stop before the retry is due, and start a new runner on the same spool.
    let dir = queue.stop().await;
    assert!(sink.messages().is_empty());
    let queue = DeliveryQueue::start_in(&config, dir).await;
    let got = sink.wait_for_async(1, Duration::from_secs(15)).await;
    assert_eq!(got[0].data, msg);
    queue.wait_empty(Duration::from_secs(5)).await;
    queue.stop().await;
}

/// A route hook (what the plugin chain plugs in) overrides config routes per domain.
#[derive(Clone)]
struct HookRoutes {
    port: u16,
}

impl wasmrelay::delivery::Router for HookRoutes {
    fn batch(&self) -> Option<Box<dyn wasmrelay::delivery::DeliveryHooks>> {
        Some(Box::new(self.clone()))
    }
}

impl wasmrelay::delivery::DeliveryHooks for HookRoutes {
    fn route<'a>(
        &'a mut self,
        request: wasmrelay::delivery::RouteRequest<'a>,
    ) -> wasmrelay::delivery::route::BoxFuture<'a, Option<wasmrelay::delivery::Route>> {
        Box::pin(async move {
            match request.domain {
                "hooked.test" => Some(wasmrelay::delivery::Route::SmartHosts(vec![
                    wasmrelay::config::delivery::SmartHostConfig {
                        host: "127.0.0.1".into(),
                        port: self.port,
                        tls: wasmrelay::config::delivery::TlsPolicy::None,
                        ..Default::default()
                    },
                ])),
                "dropped.test" => Some(wasmrelay::delivery::Route::Drop("unwanted".into())),
                _ => None,
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_hook_comes_before_config_routes() {
    let hooked = Aiosmtpd::start();
    let configured = Aiosmtpd::start();
    // Config sends every test domain to `configured`; the hook takes hooked.test elsewhere.
    let config = fast_config(&route_to(&configured, &["*.test"], ""));
    let queue = DeliveryQueue::start_with_router(
        &config,
        std::sync::Arc::new(HookRoutes {
            port: hooked.port(),
        }),
    )
    .await;
    queue
        .submit(
            Some("a@origin.test"),
            &["x@hooked.test", "y@plain.test", "z@dropped.test"],
            b"Subject: hook\r\n\r\nx\r\n",
        )
        .await;
    queue.wait_empty(Duration::from_secs(15)).await;
    assert_eq!(hooked.messages()[0].rcpt_tos, ["x@hooked.test"]);
    let rest = configured.messages();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].rcpt_tos, ["y@plain.test"]);
    queue.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_notice_then_expiry_bounce() {
    let stuck = Aiosmtpd::builder().tempfail_data(1000).start();
    let senders = Aiosmtpd::start();
    let extra = format!(
        "[[routes]]\ndomains = [\"origin.test\"]\nhosts = [{{ host = \"127.0.0.1\", port = {}, tls = \"none\" }}]",
        senders.port()
    );
    let mut config = fast_config(&route_to(&stuck, &["dest.test"], &extra));
    config.retry.max_age = Duration::from_secs(3);
    config.retry.delay_notice_after = Some(Duration::from_millis(900));
    let queue = DeliveryQueue::start(&config).await;
    queue
        .submit(
            Some("a@origin.test"),
            &["b@dest.test"],
            b"Subject: slow\r\n\r\nx\r\n",
        )
        .await;
    let got = senders.wait_for_async(2, Duration::from_secs(20)).await;
    queue.wait_empty(Duration::from_secs(10)).await;
    let delayed = got[0].text();
    let failed = got[1].text();
    assert!(
        delayed.contains("Action: delayed\r\nStatus: 4.3.0"),
        "{delayed}"
    );
    assert!(delayed.contains("Will-Retry-Until:"), "{delayed}");
    assert!(
        failed.contains("Action: failed\r\nStatus: 4.4.7"),
        "{failed}"
    );
    assert!(failed.contains("delivery time expired"), "{failed}");
    assert_eq!(
        senders.messages().len(),
        2,
        "exactly one delay notice and one bounce"
    );
    queue.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_flush_retries_now_and_bounce_gives_up() {
    let flaky = Aiosmtpd::builder().tempfail_data(2).start();
    let senders = Aiosmtpd::start();
    let extra = format!(
        "[[routes]]\ndomains = [\"origin.test\"]\nhosts = [{{ host = \"127.0.0.1\", port = {}, tls = \"none\" }}]",
        senders.port()
    );
    let mut config = fast_config(&route_to(&flaky, &["dest.test"], &extra));
    // Without an operator, nothing would be retried within the test.
    config.retry.initial_interval = Duration::from_secs(3600);
    config.retry.max_interval = Duration::from_secs(3600);
    let queue = DeliveryQueue::start(&config).await;
    let first = queue
        .submit(
            Some("a@origin.test"),
            &["b@dest.test"],
            b"Subject: one\r\n\r\n1\r\n",
        )
        .await;
    let second = queue
        .submit(
            Some("a@origin.test"),
            &["c@dest.test"],
            b"Subject: two\r\n\r\n2\r\n",
        )
        .await;
    for env in [&first, &second] {
        queue
            .wait_attempts(&env.id, 1, Duration::from_secs(10))
            .await;
    }
    // `queue bounce` on the second: the sender gets a DSN at once.
    queue.handle.bounce(second.id.clone());
    let dsn = senders.wait_for_async(1, Duration::from_secs(10)).await;
    assert!(dsn[0]
        .text()
        .contains("Final-Recipient: rfc822; c@dest.test"));
    assert!(dsn[0].text().contains("bounced by the relay operator"));
    // `queue flush`: the first is retried now and accepted (the sink's 451s are used up).
    queue.handle.flush();
    let got = flaky.wait_for_async(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].rcpt_tos, ["b@dest.test"]);
    queue.wait_empty(Duration::from_secs(10)).await;
    queue.stop().await;
}
