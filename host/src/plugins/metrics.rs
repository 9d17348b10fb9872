//! Per-plugin counters: calls, instantiations and every kind of failure.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::error::FailureKind;

#[derive(Debug, Default)]
pub(crate) struct Stats {
    calls: AtomicU64,
    instantiations: AtomicU64,
    traps: AtomicU64,
    cpu: AtomicU64,
    wall_time: AtomicU64,
    memory: AtomicU64,
    capabilities: AtomicU64,
    malformed: AtomicU64,
    instantiate: AtomicU64,
}

impl Stats {
    pub(crate) fn call(&self) {
        self.calls.fetch_add(1, Relaxed);
    }

    pub(crate) fn instantiated(&self) {
        self.instantiations.fetch_add(1, Relaxed);
    }

    pub(crate) fn failure(&self, kind: &FailureKind) {
        let counter = match kind {
            FailureKind::Trap(_) => &self.traps,
            FailureKind::Cpu => &self.cpu,
            FailureKind::WallTime => &self.wall_time,
            FailureKind::Memory => &self.memory,
            FailureKind::Capabilities => &self.capabilities,
            FailureKind::Malformed(_) => &self.malformed,
            FailureKind::Instantiate(_) => &self.instantiate,
        };
        counter.fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self, name: &str) -> PluginMetrics {
        PluginMetrics {
            name: name.to_string(),
            calls: self.calls.load(Relaxed),
            instantiations: self.instantiations.load(Relaxed),
            traps: self.traps.load(Relaxed),
            cpu: self.cpu.load(Relaxed),
            wall_time: self.wall_time.load(Relaxed),
            memory: self.memory.load(Relaxed),
            capabilities: self.capabilities.load(Relaxed),
            malformed: self.malformed.load(Relaxed),
            instantiate: self.instantiate.load(Relaxed),
        }
    }
}

/// A snapshot of one plugin's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginMetrics {
    pub name: String,
    /// Hook calls that completed (a malformed return is counted here and under `malformed`).
    pub calls: u64,
    /// Instances created (first use in a session, or after a failure poisoned one).
    pub instantiations: u64,
    pub traps: u64,
    pub cpu: u64,
    pub wall_time: u64,
    pub memory: u64,
    pub capabilities: u64,
    pub malformed: u64,
    pub instantiate: u64,
}

impl PluginMetrics {
    /// Every failure, whatever its kind.
    pub fn errors(&self) -> u64 {
        self.traps
            + self.cpu
            + self.wall_time
            + self.memory
            + self.capabilities
            + self.malformed
            + self.instantiate
    }
}
