//! The relay's own message events, built from the values the session and delivery already
//! hold, so each place that emits one does it in one line.

use std::net::IpAddr;

use serde_json::Value;
use wasmrelay_codec::reply::Reply;

use super::{rfc3339_ms, Event, Events};
use crate::delivery::Failure;
use crate::plugins::{Hook, RouteDecision};
use crate::spool::{Envelope, MessageId, Recipient};

/// A refused sender, recipient or message, as the session knows it.
#[derive(Debug, Clone, Copy)]
pub struct Rejection<'a> {
    /// The stage that refused (`connect` … `data`), named like the hooks.
    pub stage: Hook,
    /// What the client was told.
    pub reply: &'a Reply,
    pub client_ip: IpAddr,
    pub listener: &'a str,
    /// The reverse path, once MAIL FROM was accepted (`""` for the null sender).
    pub from: Option<&'a str>,
    /// The recipient refused at `rcpt`.
    pub recipient: Option<&'a str>,
    /// At `data`: the id the message would have been queued under (the one in its
    /// `Received:` header).
    pub queue_id: Option<&'a str>,
    /// The plugin whose verdict this was, and its hook; `None` when the relay refused.
    pub decided_by: Option<(&'a str, Hook)>,
}

impl Events {
    /// The message is spooled and its `250` is on the way.
    pub fn received(&self, env: &Envelope) {
        if !self.is_on() {
            return;
        }
        self.emit(
            Event::new("received")
                .queue_id(&env.id)
                .field("from", env.mail_from.as_deref().unwrap_or(""))
                .field("rcpts", env.recipients.len())
                .field("size", env.size)
                .field("client_ip", env.client.ip.to_string())
                .field("helo", env.client.helo.as_str())
                .field("listener", env.listener.as_str())
                .field_opt("auth_user", env.client.auth_user.as_deref())
                .field("tls", env.client.tls),
        );
    }

    /// A message entered the queue: one received, or a DSN the relay wrote about `dsn_for`.
    pub fn queued(&self, env: &Envelope, dsn_for: Option<&MessageId>) {
        if !self.is_on() {
            return;
        }
        let recipients: Vec<&str> = env.recipients.iter().map(|r| r.address.as_str()).collect();
        self.emit(
            Event::new("queued")
                .queue_id(&env.id)
                .field("from", env.mail_from.as_deref().unwrap_or(""))
                .field("recipients", recipients)
                .field("size", env.size)
                .field_opt("dsn_for", dsn_for.map(|id| id.to_string())),
        );
    }

    pub fn rejected(&self, r: Rejection<'_>) {
        if !self.is_on() {
            return;
        }
        let mut event = Event::new("rejected")
            .decided_by(r.decided_by)
            .field("stage", r.stage.name())
            .field("code", r.reply.code)
            .field_opt("status", r.reply.enhanced.map(|e| e.to_string()))
            .field("reply", r.reply.lines.join(" "))
            .field("client_ip", r.client_ip.to_canonical().to_string())
            .field("listener", r.listener)
            .field_opt("from", r.from);
        event.queue_id = r.queue_id.map(str::to_string);
        event.recipient = r.recipient.map(str::to_string);
        self.emit(event);
    }

    /// The next hop accepted `rcpt` (its status already recorded).
    /// `reply` is only formatted when the log is on: this runs for every recipient.
    pub fn delivered(
        &self,
        id: &MessageId,
        rcpt: &Recipient,
        remote: &str,
        reply: &dyn std::fmt::Display,
    ) {
        if !self.is_on() {
            return;
        }
        self.emit(
            Event::new("delivered")
                .queue_id(id)
                .recipient(rcpt.address.as_str())
                .field("remote", remote)
                .field("reply", reply.to_string())
                .field("attempts", rcpt.attempts + 1),
        );
    }

    /// A temporary failure for `rcpt`, after its attempt count and next attempt were set.
    pub fn deferred(&self, id: &MessageId, rcpt: &Recipient, failure: &Failure) {
        if !self.is_on() {
            return;
        }
        let retry_at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(rcpt.next_attempt);
        self.emit(
            failure_event("deferred", id, rcpt, failure)
                .field("attempts", rcpt.attempts)
                .field("retry_at", rfc3339_ms(retry_at)),
        );
    }

    /// `rcpt` failed for good: a 5xx, its time in the queue expired, or `queue bounce`.
    pub fn bounced(&self, id: &MessageId, rcpt: &Recipient, failure: &Failure) {
        if !self.is_on() {
            return;
        }
        self.emit(failure_event("bounced", id, rcpt, failure));
    }

    /// What the route hook decided for one domain's `recipients`: `held` and `dropped` are
    /// events of their own (with the plugin's reason); other routes show in what delivery
    /// then does.
    pub fn routed(
        &self,
        id: &MessageId,
        domain: &str,
        recipients: &[String],
        decision: &RouteDecision,
        decided_by: Option<(&str, Hook)>,
    ) {
        let (name, reason) = match decision {
            RouteDecision::Hold(reason) => ("held", reason),
            RouteDecision::Drop(reason) => ("dropped", reason),
            _ => return,
        };
        if !self.is_on() {
            return;
        }
        for rcpt in recipients {
            self.emit(
                Event::new(name)
                    .queue_id(id)
                    .recipient(rcpt.as_str())
                    .decided_by(decided_by)
                    .field("reason", reason.as_str())
                    .field("domain", domain),
            );
        }
    }
}

fn failure_event(name: &'static str, id: &MessageId, rcpt: &Recipient, f: &Failure) -> Event {
    Event::new(name)
        .queue_id(id)
        .recipient(rcpt.address.as_str())
        .field("status", f.status.to_string())
        .field("reply", f.reason.to_string())
        .field_opt("remote", f.remote.as_deref().map(Value::from))
        .field("class", f.class().as_str())
}

#[cfg(test)]
mod tests {
    use wasmrelay_codec::reply::Enhanced;

    use super::*;
    use crate::spool::{ClientInfo, RecipientStatus};

    fn envelope() -> Envelope {
        Envelope {
            id: MessageId("q1".into()),
            received_at: 0,
            mail_from: Some("a@example.org".into()),
            recipients: vec![
                Recipient::pending("x@example.com".into()),
                Recipient::pending("y@example.com".into()),
            ],
            client: ClientInfo {
                ip: "192.0.2.7".parse().unwrap(),
                helo: "client.test".into(),
                auth_user: Some("app".into()),
                tls: true,
                origin: Default::default(),
            },
            eight_bit: false,
            smtputf8: false,
            ret_headers_only: false,
            envid: None,
            size: 1234,
            listener: "mx".into(),
            annotations: vec![],
            held: false,
            trace: None,
        }
    }

    /// Emits through a real channel and returns what the writer would write.
    async fn lines(emit: impl FnOnce(&Events)) -> Vec<serde_json::Value> {
        let (events, mut rx) = Events::channel(64, 1 << 20);
        emit(&events);
        drop(events);
        let mut out = Vec::new();
        while let Some(super::super::Msg::Event(e, _)) = rx.recv().await {
            let mut line = Vec::new();
            e.write_line(&mut line);
            out.push(serde_json::from_slice(&line).unwrap());
        }
        out
    }

    fn without_time(v: &serde_json::Value) -> serde_json::Value {
        let mut v = v.clone();
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
        v.as_object_mut().unwrap().remove("time");
        v
    }

    #[tokio::test]
    async fn received_and_queued() {
        let env = envelope();
        let got = lines(|e| {
            e.received(&env);
            e.queued(&env, None);
            e.queued(&env, Some(&MessageId("orig".into())));
        })
        .await;
        assert_eq!(
            without_time(&got[0]),
            serde_json::json!({"event": "received", "queue_id": "q1", "from": "a@example.org",
                "rcpts": 2, "size": 1234, "client_ip": "192.0.2.7", "helo": "client.test",
                "listener": "mx", "auth_user": "app", "tls": true})
        );
        assert_eq!(
            without_time(&got[1]),
            serde_json::json!({"event": "queued", "queue_id": "q1", "from": "a@example.org",
                "recipients": ["x@example.com", "y@example.com"], "size": 1234})
        );
        assert_eq!(got[2]["dsn_for"], "orig");
    }

    #[tokio::test]
    async fn rejected_by_a_plugin_and_by_the_relay() {
        let reply = Reply::new(550, Enhanced(5, 1, 1), "mailbox unavailable");
        let ip: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        let base = Rejection {
            stage: Hook::Rcpt,
            reply: &reply,
            client_ip: ip,
            listener: "mx",
            from: Some(""),
            recipient: Some("blocked@example.com"),
            queue_id: None,
            decided_by: Some(("policy", Hook::Rcpt)),
        };
        let size = Reply::new(552, Enhanced(5, 3, 4), "too big");
        let got = lines(|e| {
            e.rejected(base);
            e.rejected(Rejection {
                stage: Hook::MailFrom,
                reply: &size,
                from: None,
                recipient: None,
                decided_by: None,
                ..base
            });
        })
        .await;
        assert_eq!(
            without_time(&got[0]),
            serde_json::json!({"event": "rejected", "recipient": "blocked@example.com",
                "plugin": "policy", "hook": "rcpt", "stage": "rcpt", "code": 550,
                "status": "5.1.1", "reply": "mailbox unavailable", "client_ip": "192.0.2.7",
                "listener": "mx", "from": ""})
        );
        assert_eq!(
            without_time(&got[1]),
            serde_json::json!({"event": "rejected", "stage": "mail-from", "code": 552,
                "status": "5.3.4", "reply": "too big", "client_ip": "192.0.2.7",
                "listener": "mx"})
        );
    }

    #[tokio::test]
    async fn delivery_outcomes_per_recipient() {
        let env = envelope();
        let mut r = env.recipients[0].clone();
        r.attempts = 1;
        r.next_attempt = 1_795_338_900;
        let f = Failure::remote_reply(
            "sink.test",
            &wasmrelay_codec::reply::Reply::new(451, Enhanced(4, 3, 0), "try again later"),
        );
        let gone = Failure::local(Enhanced(5, 0, 0), "bounced by the relay operator");
        let got = lines(|e| {
            e.deferred(&env.id, &r, &f);
            r.status = RecipientStatus::Delivered;
            e.delivered(&env.id, &r, "sink.test", &"250 2.0.0 OK");
            e.bounced(&env.id, &env.recipients[1], &gone);
        })
        .await;
        assert_eq!(
            without_time(&got[0]),
            serde_json::json!({"event": "deferred", "queue_id": "q1",
                "recipient": "x@example.com", "status": "4.3.0",
                "reply": f.reason.to_string(), "remote": "sink.test", "class": "soft", "attempts": 1,
                "retry_at": "2026-11-22T09:15:00.000Z"})
        );
        assert_eq!(
            without_time(&got[1]),
            serde_json::json!({"event": "delivered", "queue_id": "q1",
                "recipient": "x@example.com", "remote": "sink.test", "reply": "250 2.0.0 OK",
                "attempts": 2})
        );
        assert_eq!(
            without_time(&got[2]),
            serde_json::json!({"event": "bounced", "queue_id": "q1",
                "recipient": "y@example.com", "status": "5.0.0",
                "reply": "bounced by the relay operator", "class": "hard"})
        );
    }

    #[tokio::test]
    async fn held_and_dropped_name_the_plugin_and_its_reason() {
        let id = MessageId("q1".into());
        let rcpts = vec!["a@hold.test".to_string(), "b@hold.test".to_string()];
        let by = Some(("router", Hook::Route));
        let got = lines(|e| {
            e.routed(
                &id,
                "hold.test",
                &rcpts,
                &RouteDecision::Hold("quarantined".into()),
                by,
            );
            e.routed(
                &id,
                "drop.test",
                &rcpts[..1],
                &RouteDecision::Drop("spam".into()),
                by,
            );
            e.routed(
                &id,
                "x.test",
                &rcpts,
                &RouteDecision::Pool("bulk".into()),
                by,
            );
        })
        .await;
        let names: Vec<&str> = got.iter().map(|v| v["event"].as_str().unwrap()).collect();
        assert_eq!(names, ["held", "held", "dropped"]);
        assert_eq!(
            without_time(&got[1]),
            serde_json::json!({"event": "held", "queue_id": "q1", "recipient": "b@hold.test",
                "plugin": "router", "hook": "route", "reason": "quarantined",
                "domain": "hold.test"})
        );
        assert_eq!(got[2]["reason"], "spam");
    }

    #[tokio::test]
    async fn nothing_is_built_when_the_log_is_off() {
        let off = Events::off();
        off.received(&envelope());
        off.flush().await;
        assert_eq!(off.lost(), 0);
        assert!(!off.is_on());
    }
}
