//! A plugin built against `wasmrelay:plugin@0.2.0`, from a copy of the interface as it was
//! released (`wit/plugin.wit`, never to be edited): the host of any later `0.2.x` must load
//! it and run it unchanged. It uses imports of each kind: a `host` function, `context`
//! methods and `message` methods.
//! - `connect` logs the client's address;
//! - `rcpt` refuses `old@...` and annotates the transaction otherwise;
//! - `data` adds `X-Interface: 0.2.0` and the annotation it set.
wit_bindgen::generate!({ path: "wit", world: "plugin" });

use exports::wasmrelay::plugin::hooks::Guest;
use wasmrelay::plugin::host::{self, LogLevel};
use wasmrelay::plugin::types::{
    Context, DeliveryReport, EnhancedCode, Envelope, Hook, Message, Recipient, Reply,
    RouteDecision, Verdict,
};

struct Frozen;

impl Guest for Frozen {
    fn init(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn hooks() -> Vec<Hook> {
        vec![Hook::Connect, Hook::Rcpt, Hook::Data]
    }

    fn connect(ctx: &Context) -> Verdict {
        host::log(LogLevel::Info, &format!("client {}", ctx.remote_ip()));
        Verdict::Continue
    }

    fn helo(_ctx: &Context) -> Verdict {
        Verdict::Continue
    }

    fn auth(_ctx: &Context, _user: String) -> Verdict {
        Verdict::Continue
    }

    fn mail_from(_ctx: &Context, _sender: String) -> Verdict {
        Verdict::Continue
    }

    fn rcpt(ctx: &Context, recipient: String) -> Verdict {
        if recipient.starts_with("old@") {
            return Verdict::Reject(Reply {
                code: 550,
                enhanced: Some(EnhancedCode {
                    class: 5,
                    subject: 7,
                    detail: 1,
                }),
                text: "refused by a 0.2.0 plugin".into(),
            });
        }
        match ctx.set_annotation("interface", "0.2.0") {
            Ok(()) => Verdict::Continue,
            Err(e) => Verdict::Tempfail(Reply {
                code: 451,
                enhanced: None,
                text: e,
            }),
        }
    }

    fn data(ctx: &Context, msg: &Message) -> Verdict {
        let annotated = ctx
            .annotations()
            .into_iter()
            .find(|(k, _)| k == "interface")
            .map_or("none".to_string(), |(_, v)| v);
        msg.add_header("X-Interface", &format!("0.2.0, annotated {annotated}"));
        Verdict::Continue
    }

    fn queued(_ctx: &Context, _queue_id: String) {}

    fn closed(_ctx: &Context) {}

    fn route(_env: &Envelope, _domain: String, _recipients: Vec<String>) -> RouteDecision {
        RouteDecision::Continue
    }

    fn recipient_copy(_env: &Envelope, _rcpt: &Recipient, _msg: &Message) -> Verdict {
        Verdict::Continue
    }

    fn delivery_result(_env: &Envelope, _report: DeliveryReport) {}
}

export!(Frozen);
