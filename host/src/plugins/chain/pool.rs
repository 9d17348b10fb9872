//! Warm instances of a `pooled` plugin, reused across sessions and delivery batches.
//!
//! State-reset contract (docs/plugins.md#instances): an instance serves one session at a time
//! and keeps its memory between sessions (what `init` built, caches). The host resets what
//! it owns before every call: CPU, wall and capability budgets, the call's scope for events,
//! and the resource handles (`context`, `message`, `envelope`, `recipient`), which live in
//! the store's table for one call only. An instance goes back to the pool only when its
//! session released it with every call returned normally: one that trapped, ran out of a
//! budget, returned nonsense or whose call was abandoned midway is dropped, alone. A plugin
//! that declared `session-memory: none` releases its instance after each call instead.

use std::sync::Mutex;

use super::Slot;

pub(crate) struct Pool {
    idle: Mutex<Vec<Slot>>,
    capacity: usize,
}

impl Pool {
    pub(crate) fn new(capacity: usize) -> Pool {
        Pool {
            idle: Mutex::new(Vec::with_capacity(capacity)),
            capacity,
        }
    }

    /// A warm instance, if one is idle.
    pub(super) fn take(&self) -> Option<Slot> {
        self.lock().pop()
    }

    /// Keeps a healthy, released instance for the next session; drops it when the pool is full.
    pub(super) fn give(&self, slot: Slot) {
        let mut idle = self.lock();
        if idle.len() < self.capacity {
            idle.push(slot);
        }
    }

    /// Drops every idle instance, giving their slots back to the engine; returns how many.
    pub(crate) fn clear(&self) -> usize {
        let idle = std::mem::take(&mut *self.lock());
        idle.len()
    }

    /// Idle instances now.
    pub(crate) fn idle(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        // A panic while holding the lock cannot leave the Vec half-changed: keep using it.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}
