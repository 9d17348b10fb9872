//! Brakes on password guessing, shared by every session and kept across reloads.
//!
//! - Failures are counted per client (an IPv4 address or an IPv6 /64) across connections:
//!   past `auth_failures` within `auth_failure_window`, AUTH from that client is refused with
//!   `454 4.7.0` before any password is checked, until the window ends. A success does not
//!   clear the count (one valid account must not buy more guesses at the others).
//! - argon2 is slow and memory-hungry on purpose, so checks run on at most `auth_workers`
//!   blocking threads at once, with a bounded queue: a password storm waits its turn (or is
//!   told to come back) instead of filling tokio's blocking pool, which the spool's file work
//!   shares.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::server::client_key;
use crate::config::LimitsConfig;

/// Clients tracked at most; past it, expired entries are pruned, then the oldest dropped.
const MAX_TRACKED: usize = 65_536;
/// Checks waiting for a worker, per worker, before new ones are told to retry later.
const QUEUE_PER_WORKER: usize = 32;

/// Why a password was not checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// This client failed too often; AUTH is refused for this long.
    Blocked(Duration),
    /// Too many checks are already waiting.
    Busy,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    since: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    max_failures: u32,
    window: Duration,
}

pub struct AuthGuard {
    settings: Mutex<Settings>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
    workers: Arc<Semaphore>,
    max_queued: usize,
    queued: AtomicUsize,
}

impl AuthGuard {
    pub fn new(limits: &LimitsConfig) -> Arc<AuthGuard> {
        let workers = limits.auth_workers.max(1);
        Arc::new(AuthGuard {
            settings: Mutex::new(settings(limits)),
            failures: Mutex::new(HashMap::new()),
            workers: Arc::new(Semaphore::new(workers)),
            max_queued: workers * QUEUE_PER_WORKER,
            queued: AtomicUsize::new(0),
        })
    }

    /// Takes the failure limits of a reloaded config (the worker count stays until restart).
    pub fn reconfigure(&self, limits: &LimitsConfig) {
        *self.settings.lock().unwrap() = settings(limits);
    }

    /// How long AUTH stays refused for `ip`, if it does.
    pub fn blocked(&self, ip: IpAddr) -> Option<Duration> {
        let s = *self.settings.lock().unwrap();
        if s.max_failures == 0 {
            return None;
        }
        let failures = self.failures.lock().unwrap();
        let f = failures.get(&client_key(ip))?;
        let left = s.window.checked_sub(f.since.elapsed())?;
        (f.count >= s.max_failures).then_some(left)
    }

    /// Counts a failure for `ip`; returns the count in the current window.
    pub fn record_failure(&self, ip: IpAddr) -> u32 {
        let s = *self.settings.lock().unwrap();
        let mut failures = self.failures.lock().unwrap();
        let now = Instant::now();
        let key = client_key(ip);
        if failures.len() >= MAX_TRACKED && !failures.contains_key(&key) {
            failures.retain(|_, f| now.duration_since(f.since) < s.window);
            if failures.len() >= MAX_TRACKED {
                let oldest = failures
                    .iter()
                    .min_by_key(|(_, f)| f.since)
                    .map(|(k, _)| *k);
                if let Some(k) = oldest {
                    failures.remove(&k);
                }
            }
        }
        let entry = failures.entry(key).or_insert(Failures {
            count: 0,
            since: now,
        });
        if now.duration_since(entry.since) >= s.window {
            *entry = Failures {
                count: 0,
                since: now,
            };
        }
        entry.count = entry.count.saturating_add(1);
        entry.count
    }

    /// Runs `check` (an argon2 verification) on the bounded pool.
    pub async fn run<F>(&self, check: F) -> Result<bool, Refusal>
    where
        F: FnOnce() -> bool + Send + 'static,
    {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.max_queued {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Busy);
        }
        let permit = self.workers.clone().acquire_owned().await;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        let Ok(permit) = permit else {
            return Err(Refusal::Busy);
        };
        let ok = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            check()
        })
        .await
        .unwrap_or(false);
        Ok(ok)
    }
}

fn settings(limits: &LimitsConfig) -> Settings {
    Settings {
        max_failures: limits.auth_failures,
        window: limits.auth_failure_window,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(failures: u32, window: Duration, workers: usize) -> Arc<AuthGuard> {
        AuthGuard::new(&LimitsConfig {
            auth_failures: failures,
            auth_failure_window: window,
            auth_workers: workers,
            ..LimitsConfig::default()
        })
    }

    #[test]
    fn blocks_a_client_past_its_failures_and_counts_ipv6_by_64() {
        let g = guard(3, Duration::from_secs(600), 1);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(g.record_failure(a), 1);
        assert_eq!(g.record_failure(b), 2);
        assert!(g.blocked(a).is_none());
        assert_eq!(g.record_failure(a), 3);
        let left = g.blocked(b).expect("same /64 is blocked");
        assert!(left > Duration::from_secs(590));
        assert!(g.blocked(other).is_none());
    }

    #[test]
    fn a_window_ends_and_zero_turns_it_off() {
        let g = guard(1, Duration::from_millis(1), 1);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        g.record_failure(ip);
        std::thread::sleep(Duration::from_millis(5));
        assert!(g.blocked(ip).is_none(), "window over");
        assert_eq!(g.record_failure(ip), 1, "a new window starts");
        let off = guard(0, Duration::from_secs(60), 1);
        for _ in 0..100 {
            off.record_failure(ip);
        }
        assert!(off.blocked(ip).is_none());
    }

    #[test]
    fn tracking_is_bounded() {
        let g = guard(5, Duration::from_secs(600), 1);
        for i in 0..(MAX_TRACKED as u32 + 10) {
            g.record_failure(IpAddr::V4(i.into()));
        }
        assert!(g.failures.lock().unwrap().len() <= MAX_TRACKED);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checks_run_at_most_workers_at_once_and_a_full_queue_is_refused() {
        let g = guard(5, Duration::from_secs(600), 2);
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..(2 * QUEUE_PER_WORKER + 40) {
            let (g, running, peak) = (g.clone(), running.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                g.run(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    running.fetch_sub(1, Ordering::SeqCst);
                    true
                })
                .await
            }));
        }
        let mut busy = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(ok) => assert!(ok),
                Err(Refusal::Busy) => busy += 1,
                Err(e) => panic!("{e:?}"),
            }
        }
        assert!(peak.load(Ordering::SeqCst) <= 2, "at most two at once");
        assert!(busy > 0, "a queue past its bound refuses");
    }
}
