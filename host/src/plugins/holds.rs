//! Counts plugins hold for a session (`host.counter-hold`, WIT 0.2.2): each is a counter
//! increment the host gives back when the session ends, however it ends, so a plugin that
//! counts what is open (concurrent connections) needs neither a `closed` hook nor a memory
//! of what it counted, and a plugin that fails later in the session still gives its counts
//! back.

use std::sync::Mutex;
use std::time::Duration;

use crate::state::StateBackend;

/// Holds one plugin may take in one session.
pub(crate) const MAX_PER_PLUGIN: usize = 32;

/// One held increment: the plugin-private key it went to and the counter's window, which the
/// decrement repeats so that it lands on the same window.
#[derive(Debug)]
pub(crate) struct Held {
    key: String,
    window: Duration,
}

/// The counts a session's plugins hold. Shared with the store of each call (the session's
/// calls run one at a time); a hold is recorded only once the backend has counted it.
#[derive(Debug, Default)]
pub(crate) struct SessionHolds {
    held: Mutex<Vec<Held>>,
}

impl SessionHolds {
    /// Whether the plugin whose keys start with `prefix` may hold one more.
    pub(crate) fn has_room(&self, prefix: &str) -> bool {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.iter().filter(|h| h.key.starts_with(prefix)).count() < MAX_PER_PLUGIN
    }

    pub(crate) fn add(&self, key: String, window: Duration) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.push(Held { key, window });
    }

    /// Everything held so far, which is no longer held.
    pub(crate) fn take(&self) -> Vec<Held> {
        std::mem::take(&mut *self.held.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Gives back `held`, one decrement each. A backend that does not answer leaves the count
/// to expire with its window; that is logged.
pub(crate) async fn release(backend: &dyn StateBackend, held: Vec<Held>) {
    for h in held {
        if let Err(e) = backend.counter_add(&h.key, -1, h.window).await {
            let plugin = h.key.split('\0').next().unwrap_or_default();
            tracing::warn!(plugin, error = %e,
                "cannot give back a held count; it expires with its window");
        }
    }
}
