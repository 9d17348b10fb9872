//! DATA and BDAT: read the message, add our `Received:` header, spool it, and answer `250`
//! only once it is on disk. The content goes into an [`IncomingBuffer`], which keeps a large
//! message in a file of its own as it arrives; every step after the end of data reads it in
//! place and writes an edited message out the same way (see [`crate::smtp::incoming`]).

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{info, warn};
use wasmrelay_codec::command::{BodyType, DsnReturn, ReversePath};
use wasmrelay_codec::data::{ChunkChecker, DataError, DataLimits, DataReader, Sink};
use wasmrelay_codec::reply::{Enhanced, Reply};

use super::rejected::Refused;
use super::{Flow, Session, Transaction};
use crate::config::LongLines;
use crate::plugins::mime::long_lines;
use crate::plugins::Hook;
use crate::smtp::incoming::{self, IncomingBuffer};
use crate::spool::{unix_now, Arrival, ClientInfo, Envelope, MessageBytes, MessageId, Recipient};

/// A BDAT transfer in progress.
#[derive(Debug)]
pub(crate) struct ChunkState {
    checker: ChunkChecker,
    id: MessageId,
    message: IncomingBuffer,
    arrival: Arrival,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    fn data_limits(&self) -> DataLimits {
        // Under `long_lines = "encode"` a long line is repaired after the message is in.
        let max_line = match self.env.listener.long_lines {
            LongLines::Encode => usize::MAX,
            LongLines::Refuse => self.env.limits.max_text_line,
        };
        DataLimits {
            max_size: self.env.limits.max_message_size,
            max_line,
            normalize: self.env.listener.normalize_line_endings,
        }
    }

    /// Can the transaction take its message now? The reply to send if not.
    fn data_refusal(&self) -> Option<Reply> {
        match &self.txn {
            None => Some(Reply::new(503, Enhanced(5, 5, 1), "Need MAIL before DATA")),
            Some(t) if t.recipients.is_empty() => {
                Some(Reply::new(554, Enhanced(5, 5, 1), "No valid recipients"))
            }
            Some(_) => None,
        }
    }

    pub(super) async fn data(&mut self) -> Flow {
        if let Some(reply) = self.data_refusal() {
            return self.fail(reply);
        }
        if self.txn.as_ref().is_some_and(|t| t.chunks.is_some()) {
            return self.fail(Reply::new(
                503,
                Enhanced(5, 5, 1),
                "DATA not allowed after BDAT",
            ));
        }
        self.io.reply(&Reply::plain(
            354,
            "Start mail input; end with <CRLF>.<CRLF>",
        ));
        let mut reader = DataReader::new(self.data_limits());
        let arrival = self.env.store.announce();
        let (id, mut message) = self.start_message();
        let result = loop {
            if let Some(result) = reader.feed(self.io.buffer(), &mut message) {
                break result;
            }
            if !self.read_message_block().await {
                return Flow::Close;
            }
        };
        self.finish_message(id, message, result, arrival).await
    }

    /// Reads the next block of message content under the DATA block timeout. `false` ends the
    /// session: a message cut off before its end was never acknowledged and is dropped.
    async fn read_message_block(&mut self) -> bool {
        if self.io.flush().await.is_err() {
            return false;
        }
        let timeout = self.env.limits.data_block_timeout;
        match self.io.read_more(timeout).await {
            Ok(()) => true,
            Err(e) => {
                if let Some(reply) = e.reply() {
                    self.io.reply(&reply);
                }
                false
            }
        }
    }

    /// A fresh id and the message buffer, which starts with our `Received:` header so the
    /// body is read straight in behind it and never copied.
    fn start_message(&self) -> (MessageId, IncomingBuffer) {
        let id = self.env.store.new_id();
        let mut message = self.env.store.spill().buffer(&id);
        if let Some(txn) = &self.txn {
            message.put(self.received_header(&id, txn).as_bytes());
        }
        (id, message)
    }

    /// The answer when our own storage failed the message: `452`, recorded as a rejection.
    pub(super) fn no_storage(
        &mut self,
        id: &MessageId,
        txn: &Transaction,
        error: &dyn std::fmt::Display,
    ) -> Flow {
        warn!(error = %error, "spool write failed; message not accepted");
        let reply = incoming::no_storage_reply();
        self.rejected(Hook::Data, Refused::Message(id, txn), &reply, false);
        self.ok(reply)
    }

    /// `pieces` as the new content of message `id`: in memory, or a new spill file.
    pub(super) fn rewrite(
        &mut self,
        id: &MessageId,
        txn: &Transaction,
        pieces: &[&[u8]],
    ) -> Result<MessageBytes, Flow> {
        self.env
            .store
            .spill()
            .assemble(id, pieces)
            .map_err(|e| self.no_storage(id, txn, &e))
    }

    pub(super) async fn bdat(&mut self, size: u64, last: bool) -> Flow {
        // The chunk follows the command whatever we answer, so it is always consumed.
        let refusal = self.data_refusal();
        let mut chunk_state = match refusal {
            Some(_) => None,
            None => match self.txn.as_mut().and_then(|t| t.chunks.take()) {
                Some(state) => Some(state),
                None => {
                    let arrival = self.env.store.announce();
                    let (id, message) = self.start_message();
                    Some(ChunkState {
                        checker: ChunkChecker::new(self.data_limits()),
                        id,
                        message,
                        arrival,
                    })
                }
            },
        };
        let mut remaining = size;
        while remaining > 0 {
            if self.io.buffer().is_empty() && !self.read_message_block().await {
                return Flow::Close;
            }
            let take = remaining.min(self.io.buffer().len() as u64) as usize;
            let bytes = self.io.buffer().split_to(take);
            if let Some(state) = &mut chunk_state {
                state.checker.push(&bytes, &mut state.message);
            }
            remaining -= take as u64;
        }
        if let Some(reply) = refusal {
            return self.fail(reply);
        }
        let Some(mut state) = chunk_state else {
            return Flow::Continue;
        };
        if !last {
            if let Some(txn) = self.txn.as_mut() {
                txn.chunks = Some(state);
            }
            return self.ok(Reply::new(
                250,
                Enhanced(2, 0, 0),
                format!("{size} octets received"),
            ));
        }
        let result = state.checker.finish(&mut state.message);
        self.finish_message(state.id, state.message, result, state.arrival)
            .await
    }

    /// Ends the transaction either way; stores the message if it was read cleanly. What
    /// plugins charged for a message that was not queued is given back.
    async fn finish_message(
        &mut self,
        id: MessageId,
        message: IncomingBuffer,
        result: Result<(), DataError>,
        arrival: Arrival,
    ) -> Flow {
        let flow = self.store_message(id, message, result, arrival).await;
        if let Some(plugins) = self.plugins.as_mut() {
            plugins.transaction_ended().await;
        }
        flow
    }

    async fn store_message(
        &mut self,
        id: MessageId,
        message: IncomingBuffer,
        result: Result<(), DataError>,
        arrival: Arrival,
    ) -> Flow {
        let Some(mut txn) = self.txn.take() else {
            return self.fail(Reply::new(503, Enhanced(5, 5, 1), "No transaction"));
        };
        if let Err(e) = result {
            info!(error = %e, "message refused");
            return self.refuse(Hook::Data, Refused::Message(&id, &txn), e.reply());
        }
        let mut message = match message.finish() {
            Ok(message) => message,
            Err(e) if e.is_local() => return self.no_storage(&id, &txn, &e),
            Err(e) => {
                info!(error = %e, "message refused");
                return self.refuse(Hook::Data, Refused::Message(&id, &txn), e.reply());
            }
        };
        // Ours is the first field of `message`, so this counts the hop to us too.
        let hops = super::hops::received_count(&message);
        if hops > self.env.limits.max_hops {
            info!(hops, "message refused: too many hops");
            return self.fail(Reply::new(
                554,
                Enhanced(5, 4, 6),
                format!("Too many hops ({hops} Received: fields): mail loop?"),
            ));
        }
        let auth_results = match self.authenticate_message(&id, &txn, &mut message).await {
            Ok(results) => results,
            Err(flow) => return flow,
        };
        // After the checks, which must see what the sender signed.
        if self.env.listener.long_lines == LongLines::Encode && long_lines::has_long_line(&message)
        {
            let repaired = match long_lines::repair(&message) {
                Ok(pieces)
                    if pieces.iter().map(|p| p.len() as u64).sum::<u64>()
                        <= self.env.limits.max_message_size =>
                {
                    let pieces: Vec<&[u8]> = pieces.iter().map(|p| &p[..]).collect();
                    match self.rewrite(&id, &txn, &pieces) {
                        Ok(repaired) => repaired,
                        Err(flow) => return flow,
                    }
                }
                Ok(_) => {
                    let e = DataError::TooBig(self.env.limits.max_message_size);
                    return self.refuse(Hook::Data, Refused::Message(&id, &txn), e.reply());
                }
                Err(e) => {
                    info!(id = %id, error = %e, "message refused");
                    let reply = Reply::new(550, Enhanced(5, 6, 0), format!("Message refused: {e}"));
                    return self.refuse(Hook::Data, Refused::Message(&id, &txn), reply);
                }
            };
            info!(id = %id, "lines over 998 octets re-encoded");
            message = repaired;
        }
        if let Some(flow) = self
            .hook_data(&id, &mut txn, &mut message, auth_results)
            .await
        {
            info!(id = %id, "message refused by policy");
            return flow;
        }
        let envelope = Envelope {
            size: message.len() as u64,
            ..self.envelope(&id, &txn)
        };
        // Handed over: a batch waiting for this message now finds its store in the queue.
        drop(arrival);
        match self.env.store.store(&envelope, message).await {
            Ok(()) => {
                if let Some(plugins) = self.plugins.as_mut() {
                    plugins.message_queued();
                }
                info!(
                    target: crate::logging::MAIL,
                    queue_id = %id,
                    client = %envelope.client.ip.to_canonical(),
                    auth = envelope.client.auth_user.as_deref(),
                    from = envelope.mail_from.as_deref().unwrap_or(""),
                    size = envelope.size,
                    nrcpt = envelope.recipients.len(),
                    listener = envelope.listener.as_str(),
                    status = "queued",
                );
                self.env.events.received(&envelope);
                self.env.events.queued(&envelope, None);
                self.hook_queued(&mut txn, &id, envelope.size).await;
                self.ctx.junk = 0;
                self.ok(Reply::new(
                    250,
                    Enhanced(2, 0, 0),
                    format!("OK: queued as {id}"),
                ))
            }
            Err(e) => self.no_storage(&id, &txn, &e),
        }
    }

    fn envelope(&self, id: &MessageId, txn: &Transaction) -> Envelope {
        let recipients = txn
            .recipients
            .iter()
            .map(|(addr, params)| Recipient {
                notify: params.notify.clone().unwrap_or_default(),
                orcpt: params.orcpt.clone(),
                ..Recipient::pending(addr.mailbox())
            })
            .collect();
        Envelope {
            id: id.clone(),
            received_at: unix_now(),
            mail_from: match &txn.from {
                ReversePath::Null => None,
                ReversePath::Mailbox(a) => Some(a.mailbox()),
            },
            recipients,
            client: ClientInfo {
                ip: self.ctx.peer.ip().to_canonical(),
                helo: self.ctx.helo.clone().unwrap_or_default(),
                auth_user: self.ctx.auth_user.clone(),
                tls: self.ctx.tls.is_some(),
                origin: self.ctx.origin(),
            },
            eight_bit: txn.params.body == Some(BodyType::EightBitMime),
            smtputf8: txn.params.smtputf8,
            ret_headers_only: txn.params.ret == Some(DsnReturn::Headers),
            envid: txn.params.envid.clone(),
            size: 0,
            listener: self.ctx.listener.clone(),
            annotations: txn.annotations.clone(),
            held: false,
            trace: crate::telemetry::traceparent(id.as_str()),
        }
    }

    /// RFC 5321 §4.4 trace header, with the RFC 3848 protocol keyword.
    fn received_header(&self, id: &MessageId, txn: &Transaction) -> String {
        let protocol = match (
            self.ctx.esmtp,
            self.ctx.tls.is_some(),
            self.ctx.auth_user.is_some(),
        ) {
            (false, _, _) => "SMTP",
            (true, false, false) => "ESMTP",
            (true, true, false) => "ESMTPS",
            (true, false, true) => "ESMTPA",
            (true, true, true) => "ESMTPSA",
        };
        let helo = self.ctx.helo.as_deref().unwrap_or("unknown");
        let ip = self.ctx.peer.ip().to_canonical();
        let tls = self
            .ctx
            .tls
            .as_ref()
            .map(|t| format!(" ({t})"))
            .unwrap_or_default();
        let rcpt = match txn.recipients.as_slice() {
            [(only, _)] => format!("\r\n\tfor <{only}>"),
            _ => String::new(),
        };
        let date = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc2822)
            .unwrap_or_default();
        format!(
            "Received: from {helo} ([{ip}])\r\n\tby {host} (wasmrelay) with {protocol}{tls} id {id}{rcpt};\r\n\t{date}\r\n",
            host = self.env.hostname
        )
    }
}
