//! MAIL FROM.

use tokio::io::{AsyncRead, AsyncWrite};
use wasmrelay_codec::command::{MailParams, ReversePath};
use wasmrelay_codec::reply::{Enhanced, Reply};

use super::rejected::Refused;
use super::{Flow, Session, Transaction};
use crate::plugins::Hook;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) async fn mail(&mut self, from: ReversePath, params: MailParams) -> Flow {
        if self.ctx.helo.is_none() {
            return self.fail(Reply::new(503, Enhanced(5, 5, 1), "Send HELO/EHLO first"));
        }
        if self.txn.is_some() {
            return self.fail(Reply::new(
                503,
                Enhanced(5, 5, 1),
                "Sender already specified",
            ));
        }
        if self.env.listener.requires_auth() && self.ctx.auth_user.is_none() {
            return self.refuse(
                Hook::MailFrom,
                Refused::Session,
                Reply::new(530, Enhanced(5, 7, 0), "Authentication required"),
            );
        }
        if !self.ctx.esmtp && params != MailParams::default() {
            return self.fail(Reply::new(
                555,
                Enhanced(5, 5, 4),
                "MAIL parameters need EHLO",
            ));
        }
        if let Some(size) = params.size {
            if size > self.env.limits.max_message_size {
                return self.refuse(
                    Hook::MailFrom,
                    Refused::Session,
                    Reply::new(
                        552,
                        Enhanced(5, 3, 4),
                        format!(
                            "Message size exceeds fixed maximum of {} octets",
                            self.env.limits.max_message_size
                        ),
                    ),
                );
            }
        }
        if let ReversePath::Mailbox(addr) = &from {
            if !params.smtputf8 && !addr.is_ascii() {
                return self.refuse(
                    Hook::MailFrom,
                    Refused::Session,
                    Reply::new(553, Enhanced(5, 6, 7), "Non-ASCII address needs SMTPUTF8"),
                );
            }
        }
        let (annotations, sender) = match self.hook_mail(&from, &params).await {
            Ok(facts) => facts,
            Err(flow) => return flow,
        };
        self.txn = Some(Transaction {
            from,
            params,
            recipients: Vec::new(),
            mailboxes: Vec::new(),
            sender,
            annotations,
            chunks: None,
            span: tracing::Span::current(),
        });
        self.ok(Reply::new(250, Enhanced(2, 1, 0), "Sender OK"))
    }
}
