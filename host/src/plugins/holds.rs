//! What the host gives back for plugins, so they need no hook and no memory to undo it:
//! counts held for a session (`host.counter-hold`, WIT 0.2.2), given back when the session
//! ends, however it ends, so a plugin that counts what is open (concurrent connections)
//! needs no `closed` hook and a plugin that fails later in the session still gives its
//! counts back; and charges made for a transaction's message (`host.rate-limit-for-message`
//! and `host.quota-add-for-message`, 0.2.7), given back when the transaction ends without
//! its message queued, so a limit on messages is charged at MAIL FROM with no `data` hook.

use std::sync::Mutex;
use std::time::Duration;

use crate::state::{QuotaWindow, StateBackend, StateResult};

/// Holds one plugin may take in one session, and charges in one transaction.
pub(crate) const MAX_PER_PLUGIN: usize = 32;

/// One held increment: the plugin-private key it went to and the counter's window, which the
/// decrement repeats so that it lands on the same window.
#[derive(Debug)]
pub(crate) struct Held {
    key: String,
    window: Duration,
}

/// One charge made for a transaction's message: what giving it back needs. The key is in
/// its plugin-private form.
#[derive(Debug)]
pub(crate) enum Charge {
    Rate {
        key: String,
        rate: u32,
        period: Duration,
        cost: u32,
    },
    Quota {
        key: String,
        amount: u64,
        window: QuotaWindow,
        window_start_ms: u64,
    },
}

impl Charge {
    fn key(&self) -> &str {
        match self {
            Charge::Rate { key, .. } | Charge::Quota { key, .. } => key,
        }
    }

    async fn give_back(&self, backend: &dyn StateBackend) -> StateResult<()> {
        match self {
            Charge::Rate {
                key,
                rate,
                period,
                cost,
            } => backend.rate_refund(key, *rate, *period, *cost).await,
            Charge::Quota {
                key,
                amount,
                window,
                window_start_ms,
            } => {
                backend
                    .quota_refund(key, *amount, *window, *window_start_ms)
                    .await
            }
        }
    }
}

/// The counts a session's plugins hold and the charges of its open transaction. Shared
/// with the store of each call (the session's calls run one at a time); a hold or a charge
/// is recorded only once the backend has made it.
#[derive(Debug, Default)]
pub(crate) struct SessionHolds {
    held: Mutex<Vec<Held>>,
    charges: Mutex<Vec<Charge>>,
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

    /// Forgets one hold on `key` that the caller has given back itself.
    pub(crate) fn forget(&self, key: &str) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = held.iter().rposition(|h| h.key == key) {
            held.remove(at);
        }
    }

    /// Everything held so far, which is no longer held.
    pub(crate) fn take(&self) -> Vec<Held> {
        std::mem::take(&mut *self.held.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether the plugin whose keys start with `prefix` may charge the transaction `more`
    /// times more.
    pub(crate) fn has_room_for_charges(&self, prefix: &str, more: usize) -> bool {
        let charges = self.charges.lock().unwrap_or_else(|e| e.into_inner());
        let made = charges
            .iter()
            .filter(|c| c.key().starts_with(prefix))
            .count();
        made + more <= MAX_PER_PLUGIN
    }

    pub(crate) fn charge(&self, charge: Charge) {
        let mut charges = self.charges.lock().unwrap_or_else(|e| e.into_inner());
        charges.push(charge);
    }

    /// The open transaction's charges, which are no longer the transaction's: to give back,
    /// or dropped once its message is queued (they stay charged).
    pub(crate) fn take_charges(&self) -> Vec<Charge> {
        std::mem::take(&mut *self.charges.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Gives back `charges`. A backend that does not answer leaves them to age out with their
/// rate or window; that is logged.
pub(crate) async fn give_back(backend: &dyn StateBackend, charges: Vec<Charge>) {
    for c in charges {
        if let Err(e) = c.give_back(backend).await {
            let plugin = c.key().split('\0').next().unwrap_or_default();
            tracing::warn!(plugin, error = %e,
                "cannot give back a charge for a message that was not queued; it ages out");
        }
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
