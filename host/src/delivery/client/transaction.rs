//! One mail transaction on an open session: MAIL, RCPT, DATA (pipelined when offered),
//! with the per-recipient outcome of every reply.

use wasmrelay_codec::data::DataEncoder;
use wasmrelay_codec::reply::{Enhanced, Reply};
use wasmrelay_codec::xtext;

use super::{reply_failure, ClientError, SmtpClient};
use crate::delivery::{Failure, Outcome};

/// One recipient of a transaction, with its RFC 3461 parameters.
#[derive(Debug, Clone)]
pub struct TxRecipient<'a> {
    pub address: &'a str,
    pub notify: &'a [String],
    pub orcpt: Option<&'a str>,
}

/// One message transaction.
#[derive(Debug, Clone)]
pub struct Transaction<'a> {
    /// Envelope sender; empty for the null sender `<>`.
    pub mail_from: &'a str,
    pub recipients: Vec<TxRecipient<'a>>,
    /// Sent right before `message`: a `DKIM-Signature:` field, or nothing.
    pub prefix: &'a [u8],
    /// The message as spooled; encoded for the wire block by block while sending, so a large
    /// message is never copied whole.
    pub message: &'a [u8],
    pub eight_bit: bool,
    pub smtputf8: bool,
    pub ret_headers_only: bool,
    pub envid: Option<&'a str>,
}

/// How much of the message is encoded and written at a time.
const DATA_BLOCK: usize = 64 * 1024;

impl Transaction<'_> {
    /// The message size as RFC 1870 counts it (before dot-stuffing), for SIZE.
    fn size(&self) -> usize {
        self.prefix.len() + self.message.len()
    }

    /// RFC 6531: the envelope carries non-ASCII addresses, or the client asked for SMTPUTF8.
    fn needs_smtputf8(&self) -> bool {
        self.smtputf8
            || !self.mail_from.is_ascii()
            || self.recipients.iter().any(|r| !r.address.is_ascii())
    }
}

impl SmtpClient {
    /// Runs one transaction. `Ok` carries one outcome per recipient, in order; `Err` means the
    /// session broke and no recipient of this transaction can be counted as delivered.
    pub async fn send(&mut self, tx: &Transaction<'_>) -> Result<Vec<Outcome>, ClientError> {
        self.transactions += 1;
        let n = tx.recipients.len();
        let all = |f: Failure| vec![Outcome::failed(f); n];
        if let Some(f) = self.precheck(tx) {
            return Ok(all(f));
        }
        let mail = self.mail_command(tx, tx.size());
        let rcpts: Vec<String> = tx.recipients.iter().map(|r| self.rcpt_command(r)).collect();

        let mut outcomes: Vec<Option<Outcome>> = vec![None; n];
        let mail_reply;
        let mut accepted = 0;
        if self.caps.pipelining {
            let mut batch = mail.clone();
            for r in &rcpts {
                batch.push_str(r);
            }
            batch.push_str("DATA\r\n");
            self.write(&batch, "MAIL").await?;
            mail_reply = self.read_reply(self.timeouts.command, "MAIL").await?;
            for (i, _) in rcpts.iter().enumerate() {
                let r = self.read_reply(self.timeouts.command, "RCPT").await?;
                if mail_reply.code == 250 {
                    accepted += self.record_rcpt(&mut outcomes[i], r);
                }
            }
            let data_reply = self.read_reply(self.timeouts.data_init, "DATA").await?;
            if mail_reply.code != 250 {
                if data_reply.code == 354 {
                    self.finish_empty_data().await?;
                }
                return Ok(all(reply_failure(&self.remote, &mail_reply)));
            }
            if accepted == 0 {
                if data_reply.code == 354 {
                    self.finish_empty_data().await?;
                }
                return Ok(outcomes.into_iter().map(Option::unwrap).collect());
            }
            if data_reply.code != 354 {
                return Ok(self.fill(outcomes, &data_reply));
            }
        } else {
            self.write(&mail, "MAIL").await?;
            mail_reply = self.read_reply(self.timeouts.command, "MAIL").await?;
            if mail_reply.code != 250 {
                return Ok(all(reply_failure(&self.remote, &mail_reply)));
            }
            for (i, cmd) in rcpts.iter().enumerate() {
                self.write(cmd, "RCPT").await?;
                let r = self.read_reply(self.timeouts.command, "RCPT").await?;
                accepted += self.record_rcpt(&mut outcomes[i], r);
            }
            if accepted == 0 {
                return Ok(outcomes.into_iter().map(Option::unwrap).collect());
            }
            self.write("DATA\r\n", "DATA").await?;
            let data_reply = self.read_reply(self.timeouts.data_init, "DATA").await?;
            if data_reply.code != 354 {
                return Ok(self.fill(outcomes, &data_reply));
            }
        }

        let mut encoder = DataEncoder::new();
        let mut block = Vec::with_capacity(DATA_BLOCK + DATA_BLOCK / 8);
        for piece in std::iter::once(tx.prefix).chain(tx.message.chunks(DATA_BLOCK)) {
            block.clear();
            encoder.encode(piece, &mut block);
            self.write_timed(&block, self.timeouts.data_block, "message data")
                .await?;
        }
        block.clear();
        encoder.finish(&mut block);
        self.write_timed(&block, self.timeouts.data_block, "message data")
            .await?;
        self.flush(self.timeouts.data_block).await?;
        let done = self
            .read_reply(self.timeouts.data_final, "end of data")
            .await?;
        Ok(self.fill(outcomes, &done))
    }

    /// Refusals decided from the EHLO answer alone, before any command is sent.
    fn precheck(&self, tx: &Transaction<'_>) -> Option<Failure> {
        let local = |status, why: String| Failure {
            remote: Some(self.remote.clone()),
            ..Failure::local(status, why)
        };
        if let Some(limit) = self.caps.size.filter(|&l| l > 0) {
            if tx.size() as u64 > limit {
                return Some(local(
                    Enhanced(5, 3, 4),
                    format!(
                        "message size {} exceeds the server's limit {limit}",
                        tx.size()
                    ),
                ));
            }
        }
        if tx.eight_bit && !self.caps.eight_bit_mime {
            return Some(local(
                Enhanced(5, 6, 3),
                "8-bit message, and the server does not offer 8BITMIME".into(),
            ));
        }
        // Addresses reach the wire inside commands: never let one carry a line break.
        let unsafe_addr = |a: &str| a.chars().any(|c| c.is_control() || c == '<' || c == '>');
        if unsafe_addr(tx.mail_from) || tx.recipients.iter().any(|r| unsafe_addr(r.address)) {
            return Some(local(
                Enhanced(5, 1, 3),
                "envelope address with control or bracket characters".into(),
            ));
        }
        if tx.needs_smtputf8() && !self.caps.smtputf8 {
            return Some(local(
                Enhanced(5, 6, 7),
                "internationalized addresses, and the server does not offer SMTPUTF8".into(),
            ));
        }
        None
    }

    fn mail_command(&self, tx: &Transaction<'_>, size: usize) -> String {
        let mut cmd = format!("MAIL FROM:<{}>", tx.mail_from);
        if self.caps.size.is_some() {
            cmd.push_str(&format!(" SIZE={size}"));
        }
        if tx.eight_bit && self.caps.eight_bit_mime {
            cmd.push_str(" BODY=8BITMIME");
        }
        if self.caps.smtputf8 && tx.needs_smtputf8() {
            cmd.push_str(" SMTPUTF8");
        }
        if self.caps.dsn {
            if tx.ret_headers_only {
                cmd.push_str(" RET=HDRS");
            }
            if let Some(envid) = tx.envid {
                cmd.push_str(&format!(" ENVID={}", xtext::encode(envid)));
            }
        }
        cmd.push_str("\r\n");
        cmd
    }

    fn rcpt_command(&self, r: &TxRecipient<'_>) -> String {
        let mut cmd = format!("RCPT TO:<{}>", r.address);
        if self.caps.dsn {
            if !r.notify.is_empty() {
                cmd.push_str(&format!(" NOTIFY={}", r.notify.join(",")));
            }
            if let Some(orcpt) = r.orcpt {
                // The spool keeps ORCPT as the client sent it, already xtext (RFC 3461 §4.2):
                // relayed as is. Encoding it again would turn `+2B` into `+2B2B`.
                let value = match orcpt.split_once(';') {
                    Some((kind, addr)) if xtext::is_valid(kind) && xtext::is_valid(addr) => {
                        orcpt.to_string()
                    }
                    Some((kind, addr)) => {
                        format!("{};{}", xtext::encode(kind), xtext::encode(addr))
                    }
                    None => format!("rfc822;{}", xtext::encode(orcpt)),
                };
                cmd.push_str(&format!(" ORCPT={value}"));
            }
        }
        cmd.push_str("\r\n");
        cmd
    }

    /// Records a RCPT reply; returns 1 if the recipient was accepted.
    fn record_rcpt(&self, slot: &mut Option<Outcome>, reply: Reply) -> usize {
        if reply.code == 250 || reply.code == 251 {
            1
        } else {
            *slot = Some(Outcome::failed(reply_failure(&self.remote, &reply)));
            0
        }
    }

    /// Gives every accepted recipient (those without an outcome yet) the outcome of `reply`.
    fn fill(&self, outcomes: Vec<Option<Outcome>>, reply: &Reply) -> Vec<Outcome> {
        outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    if reply.code == 250 {
                        Outcome::Delivered {
                            remote: self.remote.clone(),
                            reply: reply.clone(),
                        }
                    } else {
                        Outcome::failed(reply_failure(&self.remote, reply))
                    }
                })
            })
            .collect()
    }

    /// A server that answered DATA with 354 although nothing was accepted gets an empty body.
    async fn finish_empty_data(&mut self) -> Result<(), ClientError> {
        self.write(".\r\n", "end of data").await?;
        self.read_reply(self.timeouts.data_final, "end of data")
            .await?;
        Ok(())
    }
}
