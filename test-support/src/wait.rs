//! Waiting on a condition with a deadline: tests never sleep for a guessed time and hope.

use std::future::Future;
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(20);

/// Waits until `cond` holds; panics with `what` once `timeout` has passed without it.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(POLL);
    }
}

/// In async tests: waits until `probe` yields a value and returns it; panics with `what` once
/// `timeout` has passed without one. The runtime keeps running while it waits.
pub async fn wait_for_async<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_once_the_condition_holds() {
        let mut n = 0;
        wait_for("three polls", Duration::from_secs(5), || {
            n += 1;
            n == 3
        });
        assert_eq!(n, 3);
    }

    #[test]
    #[should_panic(expected = "timed out after 50ms waiting for never")]
    fn panics_with_what_it_waited_for() {
        wait_for("never", Duration::from_millis(50), || false);
    }

    #[tokio::test]
    async fn async_wait_returns_the_value() {
        let mut n = 0;
        let got = wait_for_async("a value", Duration::from_secs(5), || {
            n += 1;
            let ready = (n == 2).then_some(n);
            async move { ready }
        })
        .await;
        assert_eq!(got, 2);
    }
}
