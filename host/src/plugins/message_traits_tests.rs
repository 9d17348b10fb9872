//! `host.want-messages-with` (0.2.8): a `data` hook limited to messages with one of the
//! traits its plugin declared is neither instantiated nor called for the others. The bundled
//! filter declares the traits its quickstart rules can match (an attachment, a checked
//! DMARC result), so an application's own text mail costs it no call, while an executable or
//! a DMARC failure is refused as before.

use super::message_traits::MessageTrait;
use super::tests::{load, plugin, tx};
use super::wants::Declared;
use super::*;

fn filter() -> PluginConfig {
    let text = r#"
builtin = "filter"
[[config.rules]]
name = "executables"
attachment_extensions = ["exe", "js"]
attachment_types = ["application/x-msdownload"]
[[config.rules]]
name = "dmarc-reject"
auth = "dmarc"
dmarc_policy = ["reject"]
"#;
    toml::from_str(text).unwrap()
}

/// A client that may relay (in `relay_networks` or authenticated), as the session tells
/// plugins.
fn trusted_conn() -> Arc<ConnectionInfo> {
    let mut c = ConnectionInfo::new(
        "s1",
        "10.0.0.5:40000".parse().unwrap(),
        "127.0.0.1:587".parse().unwrap(),
    );
    c.attributes = vec![("trusted", "yes")];
    Arc::new(c)
}

const TEXT: &str = "From: app@example.org\r\nTo: a@example.com\r\nSubject: receipt\r\n\r\n\
Thank you for your order.\r\n";

fn with_attachment(content_type: &str, disposition: &str) -> String {
    format!(
        "From: app@example.org\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
--b\r\nContent-Type: {content_type}\r\n{disposition}\r\nAAAA\r\n\
--b--\r\n"
    )
}

async fn data(
    host: &Arc<PluginHost>,
    conn: &Arc<ConnectionInfo>,
    t: &mut TransactionInfo,
    message: &str,
) -> Verdict {
    let mut bytes = message.as_bytes().to_vec();
    host.session().data(conn, t, &mut bytes).await
}

#[tokio::test]
async fn the_filter_is_called_only_for_messages_its_rules_can_match() {
    let host = load(&[filter()]).await;
    assert_eq!(
        host.plugins[0].wants.traits(Hook::Data),
        Some(&[MessageTrait::Attachment, MessageTrait::AuthResults][..]),
        "the bundled filter declares what its rules can match"
    );
    let probe = host.metrics()[0].instantiations;
    let app = trusted_conn();

    let plain_and_html = "From: app@example.org\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhi\r\n\
--b\r\nContent-Type: text/html\r\nContent-Disposition: inline\r\n\r\n<p>hi</p>\r\n--b--\r\n";
    for message in [TEXT, plain_and_html] {
        let verdict = data(&host, &app, &mut tx("app@example.org"), message).await;
        assert_eq!(verdict, Verdict::Continue);
    }
    let m = &host.metrics()[0];
    assert_eq!((m.instantiations - probe, m.calls), (0, 0), "not called");

    // An executable is refused as before, whoever sends it.
    let exe = with_attachment(
        "application/octet-stream; name=\"setup.exe\"",
        "Content-Disposition: attachment\r\n",
    );
    let verdict = data(&host, &app, &mut tx("app@example.org"), &exe).await;
    let Verdict::Reject(reply) = verdict else {
        panic!("the executable passed: {verdict:?}");
    };
    assert!(reply.to_string().contains("setup.exe"), "{reply}");
    assert_eq!(host.metrics()[0].calls, 1);

    // A part of a type blocked without a file name, and a harmless attachment: both called.
    let typed = with_attachment("application/x-msdownload", "");
    let verdict = data(&host, &app, &mut tx("app@example.org"), &typed).await;
    assert!(matches!(verdict, Verdict::Reject(_)), "{verdict:?}");
    let notes = with_attachment("text/plain; name=\"notes.txt\"", "");
    let verdict = data(&host, &app, &mut tx("app@example.org"), &notes).await;
    assert_eq!(verdict, Verdict::Continue);
    assert_eq!(host.metrics()[0].calls, 3);

    // A message that is one file, or one text part given as a file, is told from its header
    // fields alone; both are called.
    let pdf =
        "From: app@example.org\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\n\r\nJVBE\r\n";
    let txt = "From: app@example.org\r\nContent-Disposition: attachment\r\n\r\nhi\r\n";
    for message in [pdf, txt] {
        let verdict = data(&host, &app, &mut tx("app@example.org"), message).await;
        assert_eq!(verdict, Verdict::Continue);
    }
    assert_eq!(host.metrics()[0].calls, 5);

    // A nested message is an attachment: the filter looks inside it.
    let nested = with_attachment(
        "message/rfc822",
        "\r\nFrom: x@example.net\r\nContent-Type: application/octet-stream; name=\"a.js\"\r\n",
    );
    let verdict = data(&host, &app, &mut tx("app@example.org"), &nested).await;
    assert!(matches!(verdict, Verdict::Reject(_)), "{verdict:?}");
    assert_eq!(host.metrics()[0].calls, 6);

    // Mail the relay checked carries results: a DMARC failure under `p=reject` is refused.
    let mut checked = tx("ceo@bank.example");
    checked.auth_results = vec![AuthResult {
        method: "dmarc".into(),
        result: "fail".into(),
        domain: "bank.example".into(),
        detail: "header.from=bank.example policy.dmarc=reject".into(),
    }];
    let outside = super::tests::conn("192.0.2.9");
    let verdict = data(&host, &outside, &mut checked, TEXT).await;
    assert!(matches!(verdict, Verdict::Reject(_)), "{verdict:?}");
    assert_eq!(host.metrics()[0].calls, 7);
}

/// Messages sent as (from a trusted client, the message, whether the plugin is called).
type Sends<'a> = &'a [(bool, &'a str, bool)];

/// The traits of the client and of the message, each tried on the `policy` test plugin
/// (which marks every message it sees) with only that trait declared. `auth-results` with
/// results is in the filter's test above.
#[tokio::test]
async fn each_trait_lets_through_only_the_messages_that_have_it() {
    let cases: [(&str, Sends); 4] = [
        (
            "untrusted-client",
            &[(true, TEXT, false), (false, TEXT, true)],
        ),
        (
            "larger-than:100",
            &[
                (false, TEXT, false),
                (false, &with_padding(100), true),
                // 83 bytes with bare line ends, 104 as `message.size` counts them.
                (false, &format!("{}\nx\n", "a:b\n".repeat(20)), true),
            ],
        ),
        (
            "header:x-campaign",
            &[
                (false, TEXT, false),
                (false, "X-Campaign: spring\r\n\r\nhi\r\n", true),
            ],
        ),
        ("auth-results", &[(false, TEXT, false)]),
    ];
    for (name, messages) in cases {
        let mut host = load(&[plugin("policy", "")]).await;
        let mut declared = Declared::default();
        declared
            .declare_traits(Hook::Data, &[name.to_string()])
            .unwrap();
        let p = &mut Arc::get_mut(&mut host).expect("no session yet").plugins[0];
        p.wants = p.wants.clone().with_declared(declared);
        for (i, (trusted, message, called)) in messages.iter().enumerate() {
            let conn = if *trusted {
                trusted_conn()
            } else {
                super::tests::conn("192.0.2.9")
            };
            let before = host.metrics()[0].calls;
            let mut bytes = message.as_bytes().to_vec();
            let verdict = host
                .session()
                .data(&conn, &mut tx("a@example.org"), &mut bytes)
                .await;
            assert_eq!(verdict, Verdict::Continue);
            let seen = bytes.starts_with(b"X-Seen-By: policy");
            assert_eq!(
                (host.metrics()[0].calls - before == 1, seen),
                (*called, *called),
                "{name}, message {i}"
            );
        }
    }
}

fn with_padding(over: usize) -> String {
    format!("Subject: big\r\n\r\n{}\r\n", "x".repeat(over))
}

#[test]
fn declarations_add_up_and_a_refusal_leaves_every_message() {
    let mut d = Declared::default();
    let traits = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    d.declare_traits(Hook::Data, &traits(&["attachment"]))
        .unwrap();
    d.declare_traits(Hook::Data, &traits(&["auth-results", "attachment"]))
        .unwrap();
    let wants = wants::Wants::default().with_declared(d.clone());
    assert_eq!(
        wants.traits(Hook::Data),
        Some(&[MessageTrait::Attachment, MessageTrait::AuthResults][..])
    );

    let e = d
        .declare_traits(Hook::Data, &traits(&["attachment", "spam-score:5"]))
        .unwrap_err();
    assert!(e.contains("spam-score:5"), "{e}");
    let wants = wants::Wants::default().with_declared(d.clone());
    assert_eq!(
        wants.traits(Hook::Data),
        None,
        "every message after a refusal"
    );
    let e = d
        .declare_traits(Hook::Data, &traits(&["attachment"]))
        .unwrap_err();
    assert!(e.contains("earlier"), "{e}");
    assert_eq!(
        wants::Wants::default().with_declared(d).traits(Hook::Data),
        None
    );

    let mut d = Declared::default();
    let e = d
        .declare_traits(Hook::RecipientCopy, &traits(&["attachment"]))
        .unwrap_err();
    assert!(e.contains("only data"), "{e}");
    assert!(d.declare_traits(Hook::Data, &[]).is_err());
    let mut d = Declared::default();
    let many: Vec<String> = (0..17).map(|i| format!("larger-than:{i}")).collect();
    assert!(d
        .declare_traits(Hook::Data, &many)
        .unwrap_err()
        .contains("16"));
}

#[tokio::test]
async fn a_trait_declaration_outside_hooks_is_refused() {
    use crate::plugins::bindings::wasmrelay::plugin::host::{Hook as WitHook, Host};
    let host = load(&[filter()]).await;
    let meta = host.plugins[0].meta.clone();
    let mut state = crate::plugins::state::StoreState::new(meta, host.caps.clone());
    state.arm();
    let e = state
        .want_messages_with(WitHook::Data, vec!["attachment".into()])
        .unwrap()
        .unwrap_err();
    assert!(e.contains("only while the host asks hooks()"), "{e}");
    state.declaring = Some(Default::default());
    state
        .want_messages_with(WitHook::Data, vec!["attachment".into()])
        .unwrap()
        .unwrap();
}
