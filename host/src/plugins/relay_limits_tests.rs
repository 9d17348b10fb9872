//! `host.want-calls-over-limits` (0.2.9) with the bundled rate-limit: the relay counts and
//! charges the limits it declared, on the keys the plugin would use, and calls the hook only
//! for a client over one of them, whose refusal is then the plugin's own.

use super::tests::{conn, load, tx};
use super::*;

fn rate_limit(rules: &str) -> PluginConfig {
    let text = format!("builtin = \"rate-limit\"\n[config]\nrules = [{rules}]\n");
    toml::from_str(&text).unwrap()
}

fn calls(host: &PluginHost) -> u64 {
    host.metrics()[0].calls
}

#[tokio::test]
async fn a_sender_under_its_rate_costs_no_call_and_the_plugin_refuses_one_over_it() {
    let host = load(&[rate_limit(
        r#"{ name = "open", count = "concurrent", key = "ip", max = 100 },
           { name = "per-sender", count = "messages", key = "sender", rate = "3/1h" }"#,
    )])
    .await;
    let wants = &host.plugins[0].wants;
    assert_eq!(wants.relay_limits(Hook::MailFrom).len(), 1);
    assert_eq!(wants.relay_limits(Hook::Connect).len(), 1);
    let c = conn("192.0.2.1");
    let mut s = host.session();
    assert_eq!(s.connect(&c).await, Verdict::Continue);
    assert_eq!(calls(&host), 0);
    // Three messages from one sender, spelled as the client likes: the relay charges the
    // key the plugin writes (list form), with no call.
    for sender in ["A@Example.org", "a@EXAMPLE.ORG", "a@example.org"] {
        assert_eq!(s.mail_from(&c, &mut tx(sender)).await, Verdict::Continue);
        s.message_queued();
    }
    assert_eq!(calls(&host), 0, "no call under the limits");
    // Another sender has its own key.
    assert_eq!(
        s.mail_from(&c, &mut tx("b@example.org")).await,
        Verdict::Continue
    );
    s.message_queued();
    // The fourth: the relay's check refuses, so the plugin is called, finds the three
    // charges the relay made on its key, and refuses with its own reply.
    match s.mail_from(&c, &mut tx("a@example.org")).await {
        Verdict::Tempfail(r) => {
            assert_eq!(r.code, 451);
            let text = r.lines.join(" ");
            assert!(text.contains("per-sender: 3/1h"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(calls(&host), 1);
}

#[tokio::test]
async fn a_relay_charge_is_given_back_when_the_transaction_ends_unqueued() {
    let host = load(&[rate_limit(
        r#"{ name = "per-sender", count = "messages", key = "sender", rate = "1/1h" }"#,
    )])
    .await;
    let c = conn("192.0.2.1");
    let mut s = host.session();
    // RSET, or a message refused at DATA: the charge comes back.
    assert_eq!(
        s.mail_from(&c, &mut tx("a@example.org")).await,
        Verdict::Continue
    );
    s.transaction_ended().await;
    // So the one message an hour is still there, and once queued it stays charged.
    assert_eq!(
        s.mail_from(&c, &mut tx("a@example.org")).await,
        Verdict::Continue
    );
    s.message_queued();
    assert_eq!(calls(&host), 0);
    assert!(matches!(
        s.mail_from(&c, &mut tx("a@example.org")).await,
        Verdict::Tempfail(_)
    ));
    assert_eq!(calls(&host), 1);
}

#[tokio::test]
async fn a_connection_rate_by_network_costs_no_connect_call_under_it() {
    let host = load(&[rate_limit(
        r#"{ name = "flood", count = "connections", key = "ip", rate = "2/1h", ipv4_prefix = 24 }"#,
    )])
    .await;
    assert_eq!(host.plugins[0].wants.relay_limits(Hook::Connect).len(), 1);
    for ip in ["192.0.2.1", "192.0.2.200"] {
        assert_eq!(host.session().connect(&conn(ip)).await, Verdict::Continue);
    }
    assert_eq!(calls(&host), 0);
    // The third from the same /24: the plugin, called, sees both on its key and refuses.
    match host.session().connect(&conn("192.0.2.77")).await {
        Verdict::Disconnect(r) => assert_eq!(r.code, 421),
        other => panic!("{other:?}"),
    }
    assert_eq!(calls(&host), 1);
    // Another network is under the rate.
    assert_eq!(
        host.session().connect(&conn("198.51.100.1")).await,
        Verdict::Continue
    );
    assert_eq!(calls(&host), 1);
}

#[tokio::test]
async fn connections_over_the_concurrent_max_are_refused_by_the_plugin() {
    let host = load(&[rate_limit(
        r#"{ name = "open", count = "concurrent", key = "ip", max = 2 }"#,
    )])
    .await;
    let c = conn("192.0.2.1");
    let (mut first, mut second) = (host.session(), host.session());
    assert_eq!(first.connect(&c).await, Verdict::Continue);
    assert_eq!(second.connect(&c).await, Verdict::Continue);
    assert_eq!(calls(&host), 0);
    // The third: the relay takes its count back and calls the plugin, which counts the two
    // the relay holds on its key, and its own, and refuses.
    let mut third = host.session();
    match third.connect(&c).await {
        Verdict::Disconnect(r) => assert_eq!(r.code, 421),
        other => panic!("{other:?}"),
    }
    assert_eq!(calls(&host), 1);
    third.closed(&c).await;
    // Another client is not counted with them; and once one closes, there is room again.
    assert_eq!(
        host.session().connect(&conn("192.0.2.2")).await,
        Verdict::Continue
    );
    first.closed(&c).await;
    let mut fourth = host.session();
    assert_eq!(fourth.connect(&c).await, Verdict::Continue);
    assert_eq!(calls(&host), 1);
    drop(second);
}

#[tokio::test]
async fn exemptions_and_quotas_keep_every_call() {
    let host = load(&[rate_limit(
        r#"{ name = "q", count = "messages", key = "sender", rate = "10/1h", quota = ["100/day"] },
           { name = "x", count = "connections", key = "ip", rate = "10/1h", exempt_networks = ["10.0.0.0/8"] }"#,
    )])
    .await;
    let wants = &host.plugins[0].wants;
    assert!(wants.relay_limits(Hook::MailFrom).is_empty());
    assert!(wants.relay_limits(Hook::Connect).is_empty());
}

#[tokio::test]
async fn a_user_exemption_keeps_mail_from_called_but_not_connect() {
    let text = r#"builtin = "rate-limit"
[config]
exempt_users = ["ops@example.org"]
rules = [
  { name = "open", count = "concurrent", key = "ip", max = 100 },
  { name = "per-sender", count = "messages", key = "sender", rate = "1/1h" },
]
"#;
    let host = load(&[toml::from_str(text).unwrap()]).await;
    let wants = &host.plugins[0].wants;
    assert_eq!(wants.relay_limits(Hook::Connect).len(), 1);
    assert!(wants.relay_limits(Hook::MailFrom).is_empty());
    // No one has authenticated at connect: the relay counts the connection itself.
    let c = conn("192.0.2.1");
    let mut s = host.session();
    assert_eq!(s.connect(&c).await, Verdict::Continue);
    assert_eq!(calls(&host), 0);
    // The exempt user sends past the sender's rate: only the hook can tell who is exempt.
    let mut ops = (*c).clone();
    ops.auth_user = Some("OPS@example.org".into());
    let ops = Arc::new(ops);
    for _ in 0..2 {
        assert_eq!(
            s.mail_from(&ops, &mut tx("a@example.org")).await,
            Verdict::Continue
        );
        s.message_queued();
    }
    assert_eq!(calls(&host), 2);
    // Anyone else is held to it.
    let mut other = host.session();
    assert_eq!(other.connect(&c).await, Verdict::Continue);
    assert_eq!(
        other.mail_from(&c, &mut tx("b@example.org")).await,
        Verdict::Continue
    );
    other.message_queued();
    assert!(matches!(
        other.mail_from(&c, &mut tx("b@example.org")).await,
        Verdict::Tempfail(_)
    ));
    assert_eq!(calls(&host), 4);
}
