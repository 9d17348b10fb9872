//! `wants` declarations in the chain: the bundled tracker declares `recipient-copy:
//! text/html`, so a copy of mail without HTML neither instantiates nor calls it, while HTML
//! mail is tracked as before.

use super::tests::load;
use super::*;
use crate::spool::MessageBytes;

fn tracker() -> PluginConfig {
    let text = r#"
builtin = "tracker"
config = { secret = "a-test-secret-that-is-long-enough-0123456789", base_url = "https://t.example.com/" }
"#;
    toml::from_str(text).unwrap()
}

fn envelope() -> Arc<EnvelopeInfo> {
    Arc::new(EnvelopeInfo {
        queue_id: "q1".into(),
        mail_from: "news@example.org".into(),
        attempt: 1,
        ..EnvelopeInfo::default()
    })
}

fn rcpt(address: &str) -> RecipientInfo {
    RecipientInfo {
        address: address.into(),
        ..RecipientInfo::default()
    }
}

const TEXT: &str = "From: news@example.org\r\nSubject: hi\r\n\r\nSee https://example.org/a\r\n";

const HTML: &str = "From: news@example.org\r\nSubject: hi\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nSee https://example.org/a\r\n\
--b\r\nContent-Type: text/html\r\n\r\n<html><body><a href=\"https://example.org/a\">a</a></body></html>\r\n\
--b--\r\n";

#[tokio::test]
async fn the_tracker_is_not_instantiated_for_mail_without_html() {
    let host = load(&[tracker()]).await;
    assert_eq!(
        host.plugins[0].wants.types(Hook::RecipientCopy),
        Some(&["text/html".to_string()][..]),
        "the bundled tracker declares what it wants"
    );
    let probe = host.metrics()[0].instantiations;
    let env = envelope();
    let mut batch = host.delivery();
    let message = MessageBytes::from(TEXT.as_bytes());
    for to in ["a@example.com", "b@example.com"] {
        let unasked =
            || -> Arc<EnvelopeInfo> { panic!("the envelope was built for a skipped copy") };
        let (verdict, edited) = batch.recipient_copy(unasked, || rcpt(to), &message).await;
        assert_eq!(
            (verdict, edited),
            (Verdict::Continue, None),
            "the copy is the message as spooled"
        );
    }
    let m = &host.metrics()[0];
    assert_eq!(
        (m.instantiations - probe, m.calls),
        (0, 0),
        "neither instantiated nor called"
    );

    // The same batch with another message (as `wasmrelay plugin test` does): the cached
    // answer was for the text message only.
    let message = MessageBytes::from(HTML.as_bytes());
    let (verdict, edited) = batch
        .recipient_copy(|| env.clone(), || rcpt("a@example.com"), &message)
        .await;
    assert_eq!(verdict, Verdict::Continue);
    let copy = String::from_utf8(edited.expect("the tracker edits the copy")).unwrap();
    assert!(copy.contains("https://t.example.com/"), "{copy}");
    assert_eq!(host.metrics()[0].calls, 1);
}
