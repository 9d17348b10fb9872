//! STARTTLS and AUTH towards a smart host (aiosmtpd with a certificate made by the test):
//! `tls = "require"` with the explicit `tls_verify = false` opt-out delivers over TLS with
//! AUTH; with verification on, the self-signed certificate is refused and the mail waits.

use std::time::Duration;

use wasmrelay_test_support::{fast_config, test_certificate, Aiosmtpd, DeliveryQueue, Downstream};

/// A smart host that requires STARTTLS and AUTH as `relay:s3cret`, with a self-signed
/// certificate for localhost.
fn smart_host(dir: &std::path::Path) -> Aiosmtpd {
    let (cert, key) = test_certificate(dir);
    Aiosmtpd::builder()
        .tls(&cert, &key)
        .auth("relay", "s3cret")
        .start()
}

fn route(sink: &Aiosmtpd, verify: bool, password: &str) -> String {
    format!(
        "[[routes]]\ndomains = [\"dest.test\"]\nhosts = [{{ host = \"localhost\", port = {}, \
         tls = \"require\", tls_verify = {verify}, auth = {{ user = \"relay\", password = \"{password}\" }} }}]\n",
        sink.port()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_and_auth_to_a_smart_host() {
    let dir = tempfile::tempdir().unwrap();
    let sink = smart_host(dir.path());
    let config = fast_config(&route(&sink, false, "s3cret"));
    let queue = DeliveryQueue::start(&config).await;
    let msg = b"From: a@origin.test\r\nSubject: tls\r\n\r\nover TLS\r\n";
    queue
        .submit(Some("a@origin.test"), &["b@dest.test"], msg)
        .await;
    let got = sink.wait_for_async(1, Duration::from_secs(15)).await;
    assert_eq!(got[0].data, msg);
    assert_eq!(got[0].meta["tls"], true);
    assert_eq!(got[0].meta["auth"], true);
    queue.wait_empty(Duration::from_secs(5)).await;
    queue.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unverifiable_certificate_or_bad_password_defers() {
    let dir = tempfile::tempdir().unwrap();
    let sink = smart_host(dir.path());
    for (verify, password, expect) in [
        (true, "s3cret", "TLS handshake failed"),
        (false, "wrong", "authentication"),
    ] {
        let config = fast_config(&route(&sink, verify, password));
        let queue = DeliveryQueue::start(&config).await;
        let env = queue
            .submit(
                Some("a@origin.test"),
                &["b@dest.test"],
                b"Subject: x\r\n\r\ny\r\n",
            )
            .await;
        let e = queue
            .wait_attempts(&env.id, 1, Duration::from_secs(10))
            .await;
        let reply = e.recipients[0].last_reply.clone().unwrap();
        assert!(reply.contains(expect), "{reply}");
        queue.stop().await;
    }
    assert!(sink.messages().is_empty());
}
