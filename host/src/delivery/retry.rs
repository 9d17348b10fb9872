//! The retry schedule: exponential backoff with jitter, capped, until the max age.

use std::time::Duration;

use rand::RngExt;

use crate::config::delivery::RetryConfig;

/// The nominal wait after the `attempts`-th failed attempt (1-based), before jitter.
pub fn backoff(cfg: &RetryConfig, attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(64) as i32;
    let secs = cfg.initial_interval.as_secs_f64() * cfg.multiplier.powi(exp);
    let max = cfg.max_interval.as_secs_f64();
    Duration::from_secs_f64(if secs.is_finite() { secs.min(max) } else { max })
}

/// The wait after the `attempts`-th failure, spread by ±`jitter` so that messages deferred
/// together do not all come back in the same second.
pub fn next_delay(cfg: &RetryConfig, attempts: u32) -> Duration {
    let base = backoff(cfg, attempts).as_secs_f64();
    let spread = if cfg.jitter > 0.0 {
        rand::rng().random_range(-cfg.jitter..cfg.jitter)
    } else {
        0.0
    };
    Duration::from_secs_f64((base * (1.0 + spread)).max(0.0))
}

/// Whether the failure numbered `attempts` is the one that should trigger the single delay
/// notice: the first whose nominal elapsed time reaches `delay_notice_after`. Deriving it from
/// the attempt count keeps "exactly one notice" true across restarts without extra state.
pub fn delay_notice_due(cfg: &RetryConfig, attempts: u32) -> bool {
    let Some(after) = cfg.delay_notice_after else {
        return false;
    };
    let mut elapsed = Duration::ZERO;
    for n in 1..=attempts {
        let before = elapsed;
        elapsed += backoff(cfg, n);
        if elapsed >= after {
            return n == attempts && before < after;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RetryConfig {
        RetryConfig {
            initial_interval: Duration::from_secs(60),
            max_interval: Duration::from_secs(600),
            multiplier: 2.0,
            jitter: 0.2,
            max_age: Duration::from_secs(86400),
            delay_notice_after: Some(Duration::from_secs(400)),
        }
    }

    #[test]
    fn backoff_doubles_then_caps() {
        let c = cfg();
        let got: Vec<u64> = (1..=6).map(|n| backoff(&c, n).as_secs()).collect();
        assert_eq!(got, [60, 120, 240, 480, 600, 600]);
        assert_eq!(backoff(&c, 1000).as_secs(), 600);
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let c = cfg();
        for _ in 0..200 {
            let d = next_delay(&c, 2).as_secs_f64();
            assert!((96.0..=144.0).contains(&d), "{d}");
        }
    }

    #[test]
    fn one_delay_notice_at_the_crossing() {
        let c = cfg();
        // 60, 180, 420: the third failure crosses 400 s.
        let due: Vec<u32> = (1..10).filter(|&n| delay_notice_due(&c, n)).collect();
        assert_eq!(due, [3]);
        let off = RetryConfig {
            delay_notice_after: None,
            ..cfg()
        };
        assert!((1..10).all(|n| !delay_notice_due(&off, n)));
    }
}
