//! Per-plugin counters: calls, instantiations, every kind of failure, and the verdict of
//! every hook call by hook.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::error::FailureKind;
use super::types::{Hook, RouteDecision, Verdict};

/// How one hook call ended, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VerdictKind {
    /// `continue`; also an informational hook (`queued`, `closed`, `delivery-result`) that
    /// returned, and a `route` with no opinion.
    Continue,
    /// `accept`; for `route`, any decision that sends, holds or drops.
    Accept,
    /// `reject`; for `route`, `bounce`.
    Reject,
    /// `tempfail`; for `route`, `defer`.
    Tempfail,
    Disconnect,
    /// The call failed (trap, limit, malformed return); the plugin's `on_error` applied.
    Error,
}

impl VerdictKind {
    pub const ALL: [VerdictKind; 6] = [
        VerdictKind::Continue,
        VerdictKind::Accept,
        VerdictKind::Reject,
        VerdictKind::Tempfail,
        VerdictKind::Disconnect,
        VerdictKind::Error,
    ];

    pub fn name(self) -> &'static str {
        match self {
            VerdictKind::Continue => "continue",
            VerdictKind::Accept => "accept",
            VerdictKind::Reject => "reject",
            VerdictKind::Tempfail => "tempfail",
            VerdictKind::Disconnect => "disconnect",
            VerdictKind::Error => "error",
        }
    }

    pub fn of(verdict: &Verdict) -> VerdictKind {
        match verdict {
            Verdict::Continue => VerdictKind::Continue,
            Verdict::Accept => VerdictKind::Accept,
            Verdict::Reject(_) => VerdictKind::Reject,
            Verdict::Tempfail(_) => VerdictKind::Tempfail,
            Verdict::Disconnect(_) => VerdictKind::Disconnect,
        }
    }

    pub fn of_route(decision: &RouteDecision) -> VerdictKind {
        match decision {
            RouteDecision::Continue => VerdictKind::Continue,
            RouteDecision::Pool(_)
            | RouteDecision::Mx(_)
            | RouteDecision::Hold(_)
            | RouteDecision::Drop(_) => VerdictKind::Accept,
            RouteDecision::Defer(_) => VerdictKind::Tempfail,
            RouteDecision::Bounce(_) => VerdictKind::Reject,
        }
    }
}

impl std::fmt::Display for VerdictKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

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
    /// By `Hook as usize`, then `VerdictKind as usize`.
    verdicts: [[AtomicU64; VerdictKind::ALL.len()]; Hook::ALL.len()],
}

impl Stats {
    /// Counts how one call of `hook` ended.
    pub(crate) fn verdict(&self, hook: Hook, kind: VerdictKind) {
        self.verdicts[hook as usize][kind as usize].fetch_add(1, Relaxed);
    }

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
            verdicts: Hook::ALL
                .into_iter()
                .flat_map(|hook| VerdictKind::ALL.map(|verdict| (hook, verdict)))
                .filter_map(|(hook, verdict)| {
                    let count = self.verdicts[hook as usize][verdict as usize].load(Relaxed);
                    (count > 0).then_some(VerdictCount {
                        hook,
                        verdict,
                        count,
                    })
                })
                .collect(),
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
    /// Hook calls by hook and verdict, in stage order; only counts above zero.
    pub verdicts: Vec<VerdictCount>,
}

/// How many calls of one hook ended with one verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerdictCount {
    pub hook: Hook,
    pub verdict: VerdictKind,
    pub count: u64,
}

impl PluginMetrics {
    /// Calls of `hook` that ended with `verdict`.
    pub fn verdicts_of(&self, hook: Hook, verdict: VerdictKind) -> u64 {
        self.verdicts
            .iter()
            .find(|c| c.hook == hook && c.verdict == verdict)
            .map_or(0, |c| c.count)
    }

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
