//! EHLO, HELO and STARTTLS.

use tokio::io::{AsyncRead, AsyncWrite};
use wasmrelay_codec::reply::{Enhanced, Reply};

use super::{Flow, Session};

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) async fn ehlo(&mut self, domain: String, esmtp: bool) -> Flow {
        // A new EHLO/HELO is an implicit RSET (RFC 5321 §4.1.4).
        self.end_transaction().await;
        self.ctx.helo = Some(domain);
        self.ctx.esmtp = esmtp;
        if let Some(flow) = self.hook_helo().await {
            // Refused: the client has not greeted us, so MAIL stays out of sequence.
            self.ctx.helo = None;
            self.ctx.esmtp = false;
            return flow;
        }
        if !esmtp {
            return self.ok(Reply::plain(250, self.env.hostname.clone()));
        }
        let mut lines = vec![
            self.env.hostname.clone(),
            "PIPELINING".into(),
            format!("SIZE {}", self.env.limits.max_message_size),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
            "CHUNKING".into(),
            "DSN".into(),
        ];
        if self.env.tls.is_some() && self.ctx.tls.is_none() {
            lines.push("STARTTLS".into());
        }
        if self.auth_offered() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        lines.push("HELP".into());
        self.ok(Reply::multiline(250, lines))
    }

    pub(super) async fn starttls(&mut self) -> Flow {
        let Some(acceptor) = self.env.tls.clone() else {
            return self.fail(Reply::new(502, Enhanced(5, 5, 1), "STARTTLS not available"));
        };
        if self.ctx.tls.is_some() {
            return self.fail(Reply::new(503, Enhanced(5, 5, 1), "TLS already active"));
        }
        if !self.ctx.esmtp {
            return self.fail(Reply::new(503, Enhanced(5, 5, 1), "Send EHLO first"));
        }
        self.io
            .reply(&Reply::new(220, Enhanced(2, 0, 0), "Ready to start TLS"));
        if self.io.flush().await.is_err() {
            return Flow::Close;
        }
        if !self.handshake(&acceptor).await {
            return Flow::Close;
        }
        // Everything learnt before TLS is forgotten; the client must EHLO again (RFC 3207 §4.2).
        self.lines.reset();
        self.ctx.helo = None;
        self.ctx.esmtp = false;
        self.ctx.auth_user = None;
        self.end_transaction().await;
        Flow::Continue
    }
}
