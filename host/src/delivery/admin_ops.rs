//! Operator actions on one queued message: hold, release, delete. The queue runner runs
//! each as a task of its own in the message's slot, like a delivery attempt, so an action
//! never races an attempt of the same message (an attempt in flight finishes first) and the
//! runner's timetable follows what it did: a held or deleted message is forgotten, a
//! released one is scheduled by its recipients' retry times again.

use std::collections::{HashMap, VecDeque};

use tokio::sync::oneshot;

use super::attempt::next_due_ms;
use super::runner::{Command, QueueHandle, Shared};
use crate::spool::{MessageId, SpoolError};

/// What an operator does to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueOp {
    /// Keep the message, but attempt none of its recipients until released.
    Hold,
    /// Undo `Hold`: recipients are attempted when their retry time comes (at once if it
    /// passed while the message was held).
    Release,
    /// Remove the message from the spool without delivering or bouncing it.
    Delete,
}

impl QueueOp {
    pub const ALL: [QueueOp; 3] = [QueueOp::Hold, QueueOp::Release, QueueOp::Delete];

    /// The action called `name` (`hold`, `release`, `delete`).
    pub fn from_name(name: &str) -> Option<QueueOp> {
        QueueOp::ALL.into_iter().find(|op| op.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            QueueOp::Hold => "hold",
            QueueOp::Release => "release",
            QueueOp::Delete => "delete",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueOpError {
    #[error("no queued message {0}")]
    NotFound(MessageId),
    #[error(transparent)]
    Spool(SpoolError),
    #[error("the queue runner has stopped")]
    Stopped,
}

impl From<SpoolError> for QueueOpError {
    fn from(e: SpoolError) -> Self {
        match e {
            SpoolError::NotFound(id) => QueueOpError::NotFound(id),
            e => QueueOpError::Spool(e),
        }
    }
}

/// Where the runner sends an action's result.
pub(crate) type OpReply = oneshot::Sender<Result<(), QueueOpError>>;

impl QueueHandle {
    /// Holds message `id`: no recipient of it is attempted until [`release`](Self::release).
    /// A flush does not release it; a bounce still bounces it.
    pub async fn hold(&self, id: MessageId) -> Result<(), QueueOpError> {
        self.op(id, QueueOp::Hold).await
    }

    pub async fn release(&self, id: MessageId) -> Result<(), QueueOpError> {
        self.op(id, QueueOp::Release).await
    }

    /// Removes message `id` from the spool and from the runner's timetable.
    pub async fn delete(&self, id: MessageId) -> Result<(), QueueOpError> {
        self.op(id, QueueOp::Delete).await
    }

    /// Runs `op` on `id` in the runner and waits for its result.
    pub async fn op(&self, id: MessageId, op: QueueOp) -> Result<(), QueueOpError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Op(id, op, reply));
        answer.await.unwrap_or(Err(QueueOpError::Stopped))
    }
}

/// Actions waiting for the attempt (or action) in flight on their message to finish.
#[derive(Default)]
pub(crate) struct Waiting {
    ops: HashMap<MessageId, VecDeque<(QueueOp, OpReply)>>,
}

impl Waiting {
    pub fn contains(&self, id: &MessageId) -> bool {
        self.ops.contains_key(id)
    }

    pub fn push(&mut self, id: MessageId, op: QueueOp, reply: OpReply) {
        self.ops.entry(id).or_default().push_back((op, reply));
    }

    /// The next action waiting on `id`, if any.
    pub fn next(&mut self, id: &MessageId) -> Option<(QueueOp, OpReply)> {
        let queue = self.ops.get_mut(id)?;
        let next = queue.pop_front();
        if queue.is_empty() {
            self.ops.remove(id);
        }
        next
    }
}

/// Runs `op` on message `id`, answers `reply`, and returns when the message is next due
/// (`None`: held, deleted or gone).
pub(crate) async fn run(
    shared: &Shared,
    id: &MessageId,
    op: QueueOp,
    reply: OpReply,
) -> Option<u64> {
    let (result, next) = match op {
        QueueOp::Hold => set_held(shared, id, true).await,
        QueueOp::Release => set_held(shared, id, false).await,
        QueueOp::Delete => (delete(shared, id).await, None),
    };
    match &result {
        Ok(()) => tracing::info!(%id, op = op.name(), "queue: message changed by an operator"),
        Err(e) => tracing::warn!(%id, op = op.name(), error = %e, "queue: operator action failed"),
    }
    let _ = reply.send(result);
    next
}

async fn set_held(
    shared: &Shared,
    id: &MessageId,
    held: bool,
) -> (Result<(), QueueOpError>, Option<u64>) {
    // A state the spool refused earlier is newer than the spool's: build on it, and write it
    // with the flag.
    let unsaved = shared.take_unsaved(id);
    let mut env = match unsaved.clone() {
        Some(env) => env,
        None => match shared.spool.envelope(id).await {
            Ok(env) => env,
            Err(e) => return (Err(e.into()), None),
        },
    };
    let was = env.held;
    env.held = held;
    // Due at once when nobody is pending, so the runner removes the message.
    let due = |env: &crate::spool::Envelope| (!env.held).then(|| next_due_ms(env).unwrap_or(0));
    if was == held && unsaved.is_none() {
        return (Ok(()), due(&env));
    }
    match shared.spool.update(&env).await {
        Ok(()) => (Ok(()), due(&env)),
        Err(e) => {
            if let Some(unsaved) = unsaved {
                shared.keep_unsaved(unsaved);
            }
            env.held = was;
            (Err(e.into()), due(&env))
        }
    }
}

async fn delete(shared: &Shared, id: &MessageId) -> Result<(), QueueOpError> {
    shared.spool.envelope(id).await?;
    shared.take_unsaved(id);
    shared.spool.remove(id).await?;
    Ok(())
}
