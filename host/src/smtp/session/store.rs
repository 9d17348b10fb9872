//! Where a session puts an accepted message: the spool (serve) or a plain directory (sink).

use std::future::Future;
use std::pin::Pin;

use crate::smtp::incoming::{Spill, INCOMING_DIR, SPILL_THRESHOLD};
use crate::spool::{Arrival, Envelope, MessageBytes, MessageId, Spool, SpoolError};

pub type StoreFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SpoolError>> + Send + 'a>>;

/// Durable storage for accepted messages. `store` must not return `Ok` before the message is
/// on stable storage: the session answers `250` right after.
pub trait MessageStore: Send + Sync + 'static {
    fn new_id(&self) -> MessageId;
    fn store<'a>(&'a self, envelope: &'a Envelope, message: MessageBytes) -> StoreFuture<'a>;

    /// Where a message goes while it arrives: a store with a directory of its own moves
    /// large ones to files there ([`Spill::to_dir`]); [`Spill::memory`] keeps them whole in
    /// memory, for stores that only serve tests and tools.
    fn spill(&self) -> Spill;

    /// Says a message is being received (from DATA or the first BDAT until it is stored or
    /// refused), so that a spool with a commit delay may let other stores wait for it.
    fn announce(&self) -> Arrival {
        Arrival::none()
    }
}

impl MessageStore for Spool {
    fn new_id(&self) -> MessageId {
        Spool::new_id(self)
    }

    fn store<'a>(&'a self, envelope: &'a Envelope, message: MessageBytes) -> StoreFuture<'a> {
        Box::pin(Spool::store(self, envelope, message))
    }

    fn spill(&self) -> Spill {
        Spill::to_dir(self.dir().join(INCOMING_DIR), SPILL_THRESHOLD)
    }

    fn announce(&self) -> Arrival {
        Spool::announce(self)
    }
}
