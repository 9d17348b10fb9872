//! The circuit in front of Redis: what keeps an outage from costing every state call its
//! full timeout, and from becoming a reconnect storm.
//!
//! Closed (Redis answers): calls go through. The first call that fails for want of Redis
//! (refused, dropped, timed out) opens the circuit for `retry_interval`: calls then fail at
//! once with `unavailable`. After the interval one call (the probe) goes through while the
//! others keep failing fast; its success closes the circuit, its failure (or its being
//! cancelled, say by the hook's wall time) opens it for another interval. So a fleet whose
//! Redis is down makes about one attempt per relay per interval, and a relay recovers by
//! itself within an interval of Redis coming back.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, info, warn};

#[derive(Debug, Clone, Copy)]
enum State {
    Closed,
    /// Failing fast until `until`; down since `since`.
    Open {
        until: Instant,
        since: Instant,
    },
    /// One call is trying Redis; down since `since`.
    Probing {
        since: Instant,
    },
}

/// Counters of the Redis backend, for metrics.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub calls: AtomicU64,
    pub failures: AtomicU64,
    pub timeouts: AtomicU64,
    pub fast_failures: AtomicU64,
    pub outages: AtomicU64,
    pub recoveries: AtomicU64,
    pub errors: AtomicU64,
}

/// A snapshot of the Redis backend's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RedisMetrics {
    /// State calls made.
    pub calls: u64,
    /// Calls that went to Redis and failed for want of it (refused, dropped, timed out).
    pub failures: u64,
    /// Of those, calls that got no answer within `command_timeout`.
    pub timeouts: u64,
    /// Calls refused at once while the circuit was open.
    pub fast_failures: u64,
    /// Times the circuit opened (Redis went away).
    pub outages: u64,
    /// Times it closed again (Redis came back).
    pub recoveries: u64,
    /// Calls Redis answered with an error (a script or server error, not an outage).
    pub errors: u64,
    /// Whether the circuit is open now.
    pub open: bool,
}

pub(super) struct Circuit {
    retry_interval: Duration,
    state: Mutex<State>,
    pub counters: Counters,
}

/// Leave to call Redis. A probe that is dropped unresolved counts as a failure, so a
/// cancelled probe cannot leave the circuit half-open for ever.
pub(super) struct Pass<'a> {
    circuit: &'a Circuit,
    probe: bool,
    resolved: bool,
}

impl Pass<'_> {
    /// Redis answered (even with an error reply): it is up.
    pub fn answered(mut self) {
        self.resolved = true;
        self.circuit.answered();
    }

    /// Redis did not answer.
    pub fn failed(mut self, why: &str) {
        self.resolved = true;
        self.circuit.failed(why);
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        if self.probe && !self.resolved {
            self.circuit.failed("probe cancelled");
        }
    }
}

impl Circuit {
    pub fn new(retry_interval: Duration) -> Circuit {
        Circuit {
            retry_interval,
            state: Mutex::new(State::Closed),
            counters: Counters::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Leave to call Redis, or how long until the next attempt.
    pub fn enter(&self) -> Result<Pass<'_>, Duration> {
        self.counters.calls.fetch_add(1, Relaxed);
        let now = Instant::now();
        let mut state = self.lock();
        let probe = match *state {
            State::Closed => false,
            State::Open { until, since } if now >= until => {
                *state = State::Probing { since };
                true
            }
            State::Open { until, .. } => {
                self.counters.fast_failures.fetch_add(1, Relaxed);
                return Err(until - now);
            }
            State::Probing { .. } => {
                self.counters.fast_failures.fetch_add(1, Relaxed);
                return Err(Duration::ZERO);
            }
        };
        Ok(Pass {
            circuit: self,
            probe,
            resolved: false,
        })
    }

    fn answered(&self) {
        let mut state = self.lock();
        if let State::Open { since, .. } | State::Probing { since } = *state {
            self.counters.recoveries.fetch_add(1, Relaxed);
            info!(
                down_for = ?since.elapsed(),
                "state backend: Redis answers again; shared state is back"
            );
        }
        *state = State::Closed;
    }

    fn failed(&self, why: &str) {
        self.counters.failures.fetch_add(1, Relaxed);
        let now = Instant::now();
        let mut state = self.lock();
        let since = match *state {
            State::Closed => {
                self.counters.outages.fetch_add(1, Relaxed);
                warn!(
                    error = why,
                    retry_in = ?self.retry_interval,
                    "state backend: Redis unavailable; state calls fail (plugins decide \
                     open or closed) until it answers"
                );
                now
            }
            State::Open { since, .. } | State::Probing { since } => {
                debug!(error = why, "state backend: Redis still unavailable");
                since
            }
        };
        *state = State::Open {
            until: now + self.retry_interval,
            since,
        };
    }

    pub fn metrics(&self) -> RedisMetrics {
        let c = &self.counters;
        RedisMetrics {
            calls: c.calls.load(Relaxed),
            failures: c.failures.load(Relaxed),
            timeouts: c.timeouts.load(Relaxed),
            fast_failures: c.fast_failures.load(Relaxed),
            outages: c.outages.load(Relaxed),
            recoveries: c.recoveries.load(Relaxed),
            errors: c.errors.load(Relaxed),
            open: !matches!(*self.lock(), State::Closed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn fails_fast_then_probes_once_per_interval_and_closes_on_success() {
        let c = Circuit::new(Duration::from_secs(1));
        c.enter().unwrap().failed("refused");
        assert!(c.metrics().open);
        assert_eq!(c.enter().err(), Some(Duration::from_secs(1)));
        tokio::time::advance(Duration::from_millis(1000)).await;
        let probe = c.enter().expect("one probe after the interval");
        assert!(c.enter().is_err(), "only one probe at a time");
        probe.failed("refused");
        assert!(c.enter().is_err(), "a failed probe opens it again");
        tokio::time::advance(Duration::from_secs(1)).await;
        c.enter().unwrap().answered();
        assert!(c.enter().is_ok() && c.enter().is_ok());
        let m = c.metrics();
        assert_eq!(
            (m.outages, m.recoveries, m.failures, m.fast_failures, m.open),
            (1, 1, 2, 3, false)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_probe_reopens_the_circuit() {
        let c = Circuit::new(Duration::from_secs(1));
        c.enter().unwrap().failed("timeout");
        tokio::time::advance(Duration::from_secs(1)).await;
        drop(c.enter().unwrap());
        assert!(c.enter().is_err(), "open again, not stuck probing");
        tokio::time::advance(Duration::from_secs(1)).await;
        c.enter().unwrap().answered();
        // A call dropped while closed changes nothing.
        drop(c.enter().unwrap());
        assert!(!c.metrics().open);
    }
}
