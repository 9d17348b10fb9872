//! `host.rate-limit-for-message` and `host.quota-add-for-message` (0.2.7): a charge made for
//! a transaction's message stays once the message is queued and is given back when the
//! transaction ends any other way, by a plugin with no hook to undo it.

use super::tests::{conn, load, plugin, tx};
use super::*;

/// What the plugin's rate and quota hold, asked from a session of its own.
async fn count(host: &Arc<PluginHost>) -> String {
    let c = conn("192.0.2.9");
    let mut t = tx("x@example.org");
    let mut s = host.session();
    match s.rcpt(&c, &mut t, "count@example.com").await {
        Verdict::Reject(r) => r.lines.join(" "),
        other => panic!("{other:?}"),
    }
}

/// Polls [`count`] until it says `want` (a dropped session gives back from a task of its
/// own).
async fn count_becomes(host: &Arc<PluginHost>, want: &str) {
    for _ in 0..200 {
        if count(host).await == want {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(count(host).await, want);
}

const NONE: &str = "rate left 3, quota 0";
const ONE: &str = "rate left 2, quota 1";

#[tokio::test]
async fn a_charge_stays_once_the_message_is_queued_and_is_given_back_otherwise() {
    let host = load(&[plugin("message-charge", "instances = \"pooled\"")]).await;
    let c = conn("192.0.2.1");
    let mut s = host.session();
    let mut t = tx("a@example.org");
    assert_eq!(s.mail_from(&c, &mut t).await, Verdict::Continue);
    assert_eq!(count(&host).await, ONE);
    // RSET (or a new EHLO, or a message refused at DATA) ends it: both charges come back.
    s.transaction_ended().await;
    assert_eq!(count(&host).await, NONE);
    // A transaction that ended unseen is given back before the next MAIL FROM is charged.
    assert_eq!(s.mail_from(&c, &mut t).await, Verdict::Continue);
    assert_eq!(s.mail_from(&c, &mut t).await, Verdict::Continue);
    assert_eq!(count(&host).await, ONE);
    // Queued: the charges stay, and ending the transaction after gives nothing back.
    s.message_queued();
    s.transaction_ended().await;
    assert_eq!(count(&host).await, ONE);
    // The quota refuses the next MAIL FROM after the rate charged it: the refusal gives the
    // rate's charge back too.
    match s.mail_from(&c, &mut t).await {
        Verdict::Tempfail(r) => assert_eq!(r.lines, ["quota: over"]),
        other => panic!("{other:?}"),
    }
    assert_eq!(count(&host).await, ONE);
}

#[tokio::test]
async fn an_open_transaction_is_given_back_when_the_session_ends_however_it_ends() {
    let host = load(&[plugin("message-charge", "instances = \"pooled\"")]).await;
    let c = conn("192.0.2.1");
    let mut closed = host.session();
    assert_eq!(
        closed.mail_from(&c, &mut tx("a@example.org")).await,
        Verdict::Continue
    );
    assert_eq!(count(&host).await, ONE);
    closed.closed(&c).await;
    assert_eq!(count(&host).await, NONE);
    // Dropped without `closed` (a session task that was cancelled).
    let mut dropped = host.session();
    assert_eq!(
        dropped.mail_from(&c, &mut tx("a@example.org")).await,
        Verdict::Continue
    );
    assert_eq!(count(&host).await, ONE);
    drop(dropped);
    count_becomes(&host, NONE).await;
}

#[tokio::test]
async fn charges_are_capped_per_transaction_and_refused_outside_one() {
    let host = load(&[plugin("message-charge", "instances = \"pooled\"")]).await;
    let c = conn("192.0.2.1");
    let mut s = host.session();
    match s.helo(&c).await {
        Verdict::Reject(r) => assert_eq!(
            r.lines,
            ["charges for a message are only available in mail-from, rcpt and data"]
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(count(&host).await, NONE);
    let mut t = tx("a@example.org");
    match s.rcpt(&c, &mut t, "many@example.com").await {
        Verdict::Reject(r) => {
            assert_eq!(r.lines, ["charged 32; then at most 32 charges per message"])
        }
        other => panic!("{other:?}"),
    }
    // Given back with the transaction, the next one has room again.
    s.transaction_ended().await;
    match s.rcpt(&c, &mut t, "many@example.com").await {
        Verdict::Reject(r) => {
            assert_eq!(r.lines, ["charged 32; then at most 32 charges per message"])
        }
        other => panic!("{other:?}"),
    }
}
