//! STARTTLS and AUTH towards a smart host (aiosmtpd with a certificate made by the test):
//! `tls = "require"` with the explicit `tls_verify = false` opt-out delivers over TLS with
//! AUTH; with verification on, the self-signed certificate is refused and the mail waits.

mod support;

use support::{fast_config, Relay, Sink};

fn certificate(dir: &std::path::Path) -> (String, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    (
        cert_path.to_str().unwrap().into(),
        key_path.to_str().unwrap().into(),
    )
}

fn route(sink: &Sink, verify: bool, password: &str) -> String {
    format!(
        "[[routes]]\ndomains = [\"dest.test\"]\nhosts = [{{ host = \"localhost\", port = {}, \
         tls = \"require\", tls_verify = {verify}, auth = {{ user = \"relay\", password = \"{password}\" }} }}]\n",
        sink.port()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_and_auth_to_a_smart_host() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let sink = Sink::start(
        "127.0.0.1",
        0,
        &["--tls", &cert, &key, "--auth", "relay:s3cret"],
    );
    let config = fast_config(&route(&sink, false, "s3cret"));
    let relay = Relay::start(&config).await;
    let msg = b"From: a@origin.test\r\nSubject: tls\r\n\r\nover TLS\r\n";
    relay
        .submit(Some("a@origin.test"), &["b@dest.test"], msg)
        .await;
    let got = sink.wait_for(1, 15).await;
    assert_eq!(got[0].data, msg);
    assert_eq!(got[0].meta["tls"], true);
    assert_eq!(got[0].meta["auth"], true);
    relay.wait_empty(5).await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unverifiable_certificate_or_bad_password_defers() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let sink = Sink::start(
        "127.0.0.1",
        0,
        &["--tls", &cert, &key, "--auth", "relay:s3cret"],
    );
    for (verify, password, expect) in [
        (true, "s3cret", "TLS handshake failed"),
        (false, "wrong", "authentication"),
    ] {
        let config = fast_config(&route(&sink, verify, password));
        let relay = Relay::start(&config).await;
        let env = relay
            .submit(
                Some("a@origin.test"),
                &["b@dest.test"],
                b"Subject: x\r\n\r\ny\r\n",
            )
            .await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let reply = loop {
            let e = relay.spool.envelope(&env.id).await.unwrap();
            if e.recipients[0].attempts >= 1 {
                break e.recipients[0].last_reply.clone().unwrap();
            }
            assert!(std::time::Instant::now() < deadline, "no attempt recorded");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        assert!(reply.contains(expect), "{reply}");
        relay.stop().await;
    }
    assert!(sink.messages().is_empty());
}
