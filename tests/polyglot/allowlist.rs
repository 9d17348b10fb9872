//! examples/plugins/allowlist-c: an unlisted sender domain is refused at MAIL FROM, a listed
//! one (any case, and a subdomain when allowed) passes.

use super::*;

#[test]
fn refuses_an_unlisted_sender_domain() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Aiosmtpd::start();
    let entry = plugin(
        &build::allowlist(),
        "allowlist",
        "tempfail",
        r#"config = { domains = ["example.org", "Partner.TEST."], allow_subdomains = true }"#,
    );
    let (mut relay, addr) = start_relay(dir.path(), &sink, &entry);

    let (ok, out) = swaks_send(addr, "someone@elsewhere.test", "bob@example.com", &[]);
    assert!(!ok, "an unlisted domain is refused:\n{out}");
    assert!(out.contains("550 5.7.1 Sender domain not allowed"), "{out}");
    // A listed domain's look-alike is not a subdomain of it.
    let (ok, out) = swaks_send(addr, "someone@evilexample.org", "bob@example.com", &[]);
    assert!(!ok && out.contains("550 5.7.1"), "{out}");

    for sender in [
        "alice@example.org",
        "Alice@EXAMPLE.ORG",
        "bob@mail.partner.test",
    ] {
        let (ok, out) = swaks_send(addr, sender, "bob@example.com", &[]);
        assert!(ok, "{sender} is allowed:\n{out}");
    }
    let delivered = sink.wait_for(3, WAIT);
    assert_eq!(delivered.len(), 3, "{delivered:?}");
    assert!(relay.is_running());
}

#[test]
fn refuses_a_bad_config_naming_the_key() {
    for (config, key) in [
        ("{}", "`domains`"),
        (r#"{ domains = ["ex ample.org"] }"#, "`domains`"),
        (
            r#"{ domains = ["example.org"], allow_subdomains = "yes" }"#,
            "`allow_subdomains`",
        ),
    ] {
        let text = refused_config(&build::allowlist(), config);
        assert!(
            text.contains(key),
            "{config}: the error names {key}: {text}"
        );
    }
}
