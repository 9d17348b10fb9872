//! `wants` declarations in the chain: the bundled tracker declares `recipient-copy:
//! text/html`, so a copy of mail without HTML neither instantiates nor calls it, while HTML
//! mail is tracked as before; the bundled router declares the headers its `data` hook reads;
//! the bundled rate-limit declares the recipient count from which its caps can refuse.

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

/// Delivers `message` to one recipient through `batch` and checks the tracker rewrote it.
async fn assert_tracked(batch: &mut DeliveryPlugins, env: &Arc<EnvelopeInfo>, message: &str) {
    let message = MessageBytes::from(message.as_bytes());
    let (verdict, edited) = batch
        .recipient_copy(|| env.clone(), || rcpt("a@example.com"), &message)
        .await;
    assert_eq!(verdict, Verdict::Continue);
    let copy = String::from_utf8(edited.expect("the tracker edits the copy")).unwrap();
    assert!(copy.contains("https://t.example.com/"), "{copy}");
}

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
    assert_tracked(&mut batch, &env, HTML).await;
    assert_eq!(host.metrics()[0].calls, 1);

    // HTML that is not multipart is found from the header fields alone.
    let single = "From: news@example.org\r\nContent-Type: Text/HTML; charset=utf-8\r\n\r\n\
<html><body><a href=\"https://example.org/b\">b</a></body></html>\r\n";
    assert_tracked(&mut host.delivery(), &env, single).await;
    assert_eq!(host.metrics()[0].calls, 2);
}

fn router() -> PluginConfig {
    let text = r#"
builtin = "router"
[config]
classify_untrusted = true
remove_headers = ["X-Stream"]
classify = [
  { header = "X-Stream" },
  { header = "Precedence", equals = ["bulk"], stream = "newsletter" },
]
"#;
    toml::from_str(text).unwrap()
}

/// The bundled router declares (`host.want-headers`, while `hooks()` is asked at load) the
/// headers its `data` hook reads or removes: a message with none of them is neither
/// instantiated for nor called, and one with any of them is classified and cleaned as before.
#[tokio::test]
async fn the_router_sees_only_messages_with_the_headers_it_declared() {
    let host = load(&[router()]).await;
    let declared: Vec<String> = ["x-stream", "precedence"].map(String::from).into();
    assert_eq!(
        host.plugins[0].wants.headers(Hook::Data),
        Some(&declared[..])
    );
    let probe = host.metrics()[0].instantiations;
    let c = super::tests::conn("192.0.2.1");
    let mut session = host.session();

    let mut t = super::tests::tx("a@example.org");
    let mut plain = TEXT.as_bytes().to_vec();
    assert_eq!(
        session.data(&c, &mut t, &mut plain).await,
        Verdict::Continue
    );
    assert_eq!(plain, TEXT.as_bytes(), "left as it was");
    assert!(t.annotations.is_empty());
    let m = &host.metrics()[0];
    assert_eq!((m.instantiations - probe, m.calls), (0, 0), "not called");

    // Header names match whatever their case, as `message.header` does.
    let mut t = super::tests::tx("a@example.org");
    let mut bulk = b"precedence: Bulk\r\nSubject: hi\r\n\r\nbody\r\n".to_vec();
    assert_eq!(session.data(&c, &mut t, &mut bulk).await, Verdict::Continue);
    assert_eq!(t.annotations, [("stream".into(), "newsletter".into())]);
    assert_eq!(host.metrics()[0].calls, 1);

    let mut t = super::tests::tx("a@example.org");
    let mut tagged = b"X-Stream: receipts\r\nSubject: hi\r\n\r\nbody\r\n".to_vec();
    assert_eq!(
        session.data(&c, &mut t, &mut tagged).await,
        Verdict::Continue
    );
    assert_eq!(t.annotations, [("stream".into(), "receipts".into())]);
    assert_eq!(
        tagged, b"Subject: hi\r\n\r\nbody\r\n",
        "the internal header removed"
    );
    assert_eq!(host.metrics()[0].calls, 2);
}

/// `host.want-headers` and `host.want-recipient-count` outside the probe's `hooks()` declare
/// nothing and say so; inside, each refuses the hooks it does not apply to.
#[tokio::test]
async fn a_declaration_outside_hooks_is_refused() {
    use crate::plugins::bindings::wasmrelay::plugin::host::{Hook as WitHook, Host};
    let host = load(&[router()]).await;
    let meta = host.plugins[0].meta.clone();
    let mut state = crate::plugins::state::StoreState::new(meta, host.caps.clone());
    state.arm();
    let e = state
        .want_headers(WitHook::Data, vec!["X-Other".into()])
        .unwrap()
        .unwrap_err();
    assert!(e.contains("only while the host asks hooks()"), "{e}");
    state.declaring = Some(Default::default());
    state
        .want_headers(WitHook::Data, vec!["X-Other".into()])
        .unwrap()
        .unwrap();
    let e = state
        .want_headers(WitHook::Rcpt, vec!["X-Other".into()])
        .unwrap()
        .unwrap_err();
    assert!(e.contains("only data and recipient-copy"), "{e}");

    state.declaring = None;
    let e = state
        .want_recipient_count(WitHook::Rcpt, 5)
        .unwrap()
        .unwrap_err();
    assert!(e.contains("only while the host asks hooks()"), "{e}");
    state.declaring = Some(Default::default());
    state
        .want_recipient_count(WitHook::Rcpt, 5)
        .unwrap()
        .unwrap();
    let e = state
        .want_recipient_count(WitHook::MailFrom, 5)
        .unwrap()
        .unwrap_err();
    assert!(e.contains("only rcpt and data"), "{e}");
}

fn rate_limit_capping_recipients_at(cap: u32) -> PluginConfig {
    let text = format!(
        "builtin = \"rate-limit\"\n[config]\nrules = [{{ name = \"rcpts\", count = \"recipients\", \
         key = \"ip\", per_message = {cap} }}]\n"
    );
    toml::from_str(&text).unwrap()
}

/// The bundled rate-limit, with only a per-message recipient cap, declares that its `rcpt`
/// hook can refuse nothing before the cap: the first recipients make no call (nor
/// instance), and the one over the cap is refused by the plugin as before.
#[tokio::test]
async fn the_rate_limit_is_called_at_rcpt_only_from_its_cap() {
    let host = load(&[rate_limit_capping_recipients_at(2)]).await;
    assert_eq!(host.plugins[0].wants.min_recipients(Hook::Rcpt), 2);
    assert_eq!(host.plugins[0].wants.min_recipients(Hook::Data), 0);
    let probe = host.metrics()[0].instantiations;
    let c = super::tests::conn("192.0.2.1");
    let mut session = host.session();
    let mut t = super::tests::tx("a@example.org");
    for to in ["a@example.com", "b@example.com"] {
        assert_eq!(
            session.rcpt(&c, &mut t, to).await,
            Verdict::Continue,
            "{to}"
        );
        t.recipients.push(to.into());
    }
    let m = &host.metrics()[0];
    assert_eq!((m.instantiations - probe, m.calls), (0, 0), "not called");
    let third = session.rcpt(&c, &mut t, "c@example.com").await;
    let Verdict::Tempfail(reply) = third else {
        panic!("the third recipient passed the cap of 2: {third:?}");
    };
    assert!(reply.to_string().contains("too many recipients"), "{reply}");
    assert_eq!(host.metrics()[0].calls, 1);
}

/// A `data` declaration counts the transaction's recipients at the plugin's turn.
#[tokio::test]
async fn a_data_hook_limited_to_two_recipients_skips_mail_to_one() {
    let mut host = load(&[router()]).await;
    let mut declared = super::wants::Declared::default();
    declared
        .declare_headers(Hook::Data, &["X-Stream".to_string()])
        .unwrap();
    declared.declare_recipients(Hook::Data, 2).unwrap();
    let plugin = &mut Arc::get_mut(&mut host).expect("no session yet").plugins[0];
    plugin.wants = plugin.wants.clone().with_declared(declared);
    let c = super::tests::conn("192.0.2.1");
    let mut session = host.session();
    let tagged = b"X-Stream: receipts\r\nSubject: hi\r\n\r\nbody\r\n";
    for (recipients, calls) in [(1, 0), (2, 1), (3, 2)] {
        let mut t = super::tests::tx("a@example.org");
        t.recipients = (0..recipients)
            .map(|i| format!("r{i}@example.com"))
            .collect();
        let mut msg = tagged.to_vec();
        assert_eq!(session.data(&c, &mut t, &mut msg).await, Verdict::Continue);
        assert_eq!(host.metrics()[0].calls, calls, "{recipients} recipients");
        let removed = !msg.starts_with(b"X-Stream");
        assert_eq!(removed, recipients >= 2, "{recipients} recipients");
    }
}

/// The declaration is checked against the message as the chain has it at the plugin's turn:
/// a header an earlier plugin adds brings the router in.
#[tokio::test]
async fn a_header_added_earlier_in_the_chain_counts() {
    let removes_policy_header: PluginConfig =
        toml::from_str("builtin = \"router\"\n[config]\nremove_headers = [\"X-Policy\"]\n")
            .unwrap();
    let host = load(&[super::tests::plugin("policy", ""), removes_policy_header]).await;
    let c = super::tests::conn("192.0.2.1");
    let mut t = super::tests::tx("a@example.org");
    let mut msg = TEXT.as_bytes().to_vec();
    assert_eq!(
        host.session().data(&c, &mut t, &mut msg).await,
        Verdict::Continue
    );
    let text = String::from_utf8(msg).unwrap();
    assert!(text.starts_with("X-Seen-By: policy\r\n"), "{text}");
    assert!(
        !text.contains("X-Policy"),
        "the router removed what the policy plugin added: {text}"
    );
    assert_eq!(host.metrics()[1].calls, 1, "the router was called");
}

/// A host with the `listed-rcpt` test plugin declaring `lists`, the lists `vip` (which it
/// may read, with `boss@example.com` and `declare@example.com` on it) and `secret` (which it
/// may not).
async fn listed_host(lists: &str) -> Arc<PluginHost> {
    let backend = Arc::new(crate::state::InProcessBackend::new());
    for member in ["boss@example.com", "declare@example.com"] {
        backend.list_add("vip", member, None, 10).await.unwrap();
    }
    backend
        .list_add("secret", "other@example.com", None, 10)
        .await
        .unwrap();
    let declared = |name: &str, readers: &[&str]| crate::config::lists::ListConfig {
        name: name.into(),
        readers: readers.iter().map(|r| r.to_string()).collect(),
        ..Default::default()
    };
    let options = PluginHostOptions {
        backend,
        lists: vec![declared("vip", &["listed-rcpt"]), declared("secret", &[])],
        ..super::tests::opts()
    };
    let config = super::tests::plugin("listed-rcpt", &format!("config = {{ lists = {lists} }}"));
    PluginHost::load(&[config], options).await.unwrap()
}

async fn rcpt_answer(host: &Arc<PluginHost>, recipient: &str) -> String {
    let c = super::tests::conn("192.0.2.1");
    let mut t = super::tests::tx("a@example.org");
    match host.session().rcpt(&c, &mut t, recipient).await {
        Verdict::Continue => "not called".into(),
        Verdict::Reject(r) => r.lines.join(" "),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn rcpt_is_called_only_for_recipients_on_a_declared_list() {
    let host = listed_host(r#"["vip"]"#).await;
    assert_eq!(rcpt_answer(&host, "other@example.com").await, "not called");
    // Looked up as plugins write addresses into lists: lower-cased, without brackets.
    assert_eq!(
        rcpt_answer(&host, "Boss@Example.COM").await,
        "called for Boss@Example.COM"
    );
    assert_eq!(
        rcpt_answer(&host, "declare@example.com").await,
        "want-listed-recipients counts only while the host asks hooks() at load"
    );
}

#[tokio::test]
async fn a_list_the_plugin_may_not_read_is_refused_and_every_recipient_called() {
    for lists in [r#"["secret"]"#, r#"["nonesuch"]"#] {
        let host = listed_host(lists).await;
        assert!(host.plugins[0].wants.rcpt_lists().is_empty(), "{lists}");
        assert_eq!(
            rcpt_answer(&host, "someone@example.com").await,
            "called for someone@example.com",
            "{lists}"
        );
    }
}
