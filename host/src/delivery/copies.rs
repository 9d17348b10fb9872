//! The render step of an attempt: what each recipient is sent. Everyone shares the spooled
//! message, DKIM-signed once (the signature field goes out in front of the spooled bytes, which
//! are never copied for it: a large message stays in its mapping), unless a plugin handles `recipient-copy`: then each recipient's
//! copy is rendered from the spooled bytes (the spool keeps them as they are, so a retry
//! renders again), and a copy that differs is signed on its own, after the edits. Only mail
//! the relay can vouch for (`client.origin` not an outsider) is signed at all.

use std::sync::Arc;

use tokio::sync::Mutex;

use super::plan::recipient_attempt;
use super::route::{CopyRequest, DeliveryHooks, Rendered};
use super::runner::Shared;
use crate::spool::{Envelope, MessageBytes};

/// One delivery batch's hooks, shared by the destination tasks of the attempt; calls take
/// turns.
pub(crate) type Batch = Arc<Mutex<Box<dyn DeliveryHooks>>>;

/// The message of one attempt, and how each recipient's copy comes from it.
pub(crate) struct Content {
    /// What every recipient whose copy is unchanged gets: this `DKIM-Signature:` field (empty
    /// when unsigned), then the spooled bytes.
    signature: Vec<u8>,
    common: MessageBytes,
    /// The spooled bytes as they are, and the hooks that render copies from them; `None`
    /// when no plugin handles `recipient-copy` (nothing is parsed or copied then).
    copies: Option<(MessageBytes, Batch)>,
}

impl Content {
    /// Signs the spooled `message` once for the recipients that share it; keeps it unsigned
    /// too when `copies` will render per-recipient copies from it.
    pub(crate) fn new(
        shared: &Shared,
        env: &Envelope,
        message: MessageBytes,
        copies: Option<Batch>,
    ) -> Content {
        let signature = signature(shared, env, &message).unwrap_or_default();
        Content {
            signature: signature.into_bytes(),
            copies: copies.map(|batch| (message.clone(), batch)),
            common: message,
        }
    }

    /// What every recipient whose copy is unchanged is sent: the signature field (empty when
    /// unsigned) and the spooled message, to be written one after the other.
    pub(crate) fn common(&self) -> (&[u8], &[u8]) {
        (&self.signature, &self.common)
    }

    /// Recipient `i`'s copy: unchanged, its own (signed), or refused by a plugin.
    pub(crate) async fn render(&self, shared: &Shared, env: &Envelope, i: usize) -> Rendered {
        let Some((original, batch)) = &self.copies else {
            return Rendered::Unchanged;
        };
        let request = CopyRequest {
            envelope: env,
            recipient: &env.recipients[i],
            attempt: recipient_attempt(env, i),
            message: original,
        };
        let rendered = batch.lock().await.recipient_copy(request).await;
        match rendered {
            Rendered::Edited(copy) if copy[..] != original[..] => {
                Rendered::Edited(sign(shared, env, &copy).unwrap_or(copy))
            }
            Rendered::Edited(_) => Rendered::Unchanged,
            other => other,
        }
    }
}

/// `message` with a `DKIM-Signature:` field in front (a recipient's own copy, already a copy).
fn sign(shared: &Shared, env: &Envelope, message: &[u8]) -> Option<Vec<u8>> {
    let field = signature(shared, env, message)?;
    let mut signed = Vec::with_capacity(field.len() + message.len());
    signed.extend_from_slice(field.as_bytes());
    signed.extend_from_slice(message);
    Some(signed)
}

/// The `DKIM-Signature:` field for `message`, or `None` when the relay cannot vouch for its
/// author (an outsider's mail: its `From:` is only a claim), no key covers it, or signing
/// failed (the message then goes out unsigned). Every copy passes here, so a plugin's edits
/// never get an outsider's mail signed either.
fn signature(shared: &Shared, env: &Envelope, message: &[u8]) -> Option<String> {
    if !env.client.may_sign() {
        return None;
    }
    match shared.dkim.signature(message, env.mail_from.as_deref()) {
        Ok(signed) => signed,
        Err(e) => {
            tracing::warn!(id = %env.id, error = %e, "DKIM signing failed; sending unsigned");
            None
        }
    }
}
