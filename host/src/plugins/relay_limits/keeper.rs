//! Keeping one plugin's declared limits at one call: the counts taken first and taken back
//! if anything refuses, then the rates peeked and charged together.

use std::time::Duration;

use super::keys::{push_parts, Facts};
use super::{RelayCount, RelayLimit, RelayRate};
use crate::delivery::runner::now_ms;
use crate::plugins::holds::{Charge, SessionHolds};
use crate::plugins::state::MAX_KEY;
use crate::plugins::types::Hook;
use crate::state::StateBackend;

/// One plugin's limits at one call, with what keeping them needs.
pub(crate) struct Keeper<'a> {
    /// The plugin's name: its keys are private to it, as its own calls' keys are.
    pub plugin: &'a str,
    pub hook: Hook,
    pub facts: &'a Facts<'a>,
    pub backend: &'a dyn StateBackend,
    /// The session's holds and charges; none outside a session.
    pub holds: Option<&'a SessionHolds>,
}

impl Keeper<'_> {
    /// Counts and charges `limits`. True when every one allowed, so the call is not needed:
    /// the counts are held for the session, the rates charged (at `mail-from` for the
    /// message, recorded to be given back unless it is queued). False when one would refuse,
    /// the backend did not answer or a key is too long: what was counted is taken back,
    /// nothing more is charged, and the hook is to be called.
    pub(crate) async fn kept(&self, limits: &[RelayLimit]) -> bool {
        let mut counted = Vec::new();
        let within = self.within(limits, &mut counted).await;
        if let (false, Some(holds)) = (within, self.holds) {
            for (key, window) in counted {
                holds.forget(&key);
                if let Err(e) = self.backend.counter_add(&key, -1, window).await {
                    let plugin = self.plugin;
                    tracing::warn!(plugin, error = %e, "could not take back a connection count");
                }
            }
        }
        within
    }

    /// A buffer holding the start of a key in the plugin's private space: its name and a
    /// NUL, as its own calls' keys are.
    fn private(&self, capacity: usize) -> String {
        let mut key = String::with_capacity(self.prefix_len() + capacity);
        key.push_str(self.plugin);
        key.push('\0');
        key
    }

    fn prefix_len(&self) -> usize {
        self.plugin.len() + 1
    }

    /// Takes the counts (recorded in `counted` as they are made), then the rates.
    async fn within(&self, limits: &[RelayLimit], counted: &mut Vec<(String, Duration)>) -> bool {
        let mut rates = Vec::with_capacity(limits.len());
        for limit in limits {
            match limit {
                RelayLimit::Rate(r) => {
                    let mut key = self.private(r.key_start.len() + 48);
                    if r.write_key(&mut key, self.facts).is_none() {
                        continue;
                    }
                    if key.len() - self.prefix_len() > MAX_KEY {
                        return false;
                    }
                    rates.push((key, r));
                }
                RelayLimit::Concurrent(c) => {
                    if !self.count(c, counted).await {
                        return false;
                    }
                }
            }
        }
        self.charge_rates(&rates).await
    }

    /// Adds the connection to `c`'s current epoch, held for the session; whether the count
    /// with the previous epoch's stays within `c.max`.
    async fn count(&self, c: &RelayCount, counted: &mut Vec<(String, Duration)>) -> bool {
        let Some(holds) = self.holds else {
            return false;
        };
        let mut parts = String::with_capacity(48);
        if push_parts(&mut parts, &c.key, self.facts).is_none() {
            return true;
        }
        let epoch = now_ms() / c.epoch_ms().max(1);
        let key = |epoch| {
            let mut key = self.private(c.key_start.len() + 21 + parts.len());
            c.write_key(&mut key, epoch, &parts);
            key
        };
        let (now, before) = (key(epoch), key(epoch.saturating_sub(1)));
        if now.len().max(before.len()) - self.prefix_len() > MAX_KEY {
            return false;
        }
        if !holds.has_room(&now[..self.prefix_len()]) {
            return false;
        }
        let window = c.epoch.saturating_mul(2);
        let Ok(total) = self.backend.counter_add(&now, 1, window).await else {
            return false;
        };
        holds.add(now.clone(), window);
        counted.push((now, window));
        let Ok(earlier) = self.backend.counter_get(&before).await else {
            return false;
        };
        total.saturating_add(earlier.max(0)) <= i64::from(c.max)
    }

    /// Peeks every rate but the last, charges the last, then the others: none is charged
    /// when one refuses, short of a race with another session between a peek and its charge.
    async fn charge_rates(&self, rates: &[(String, &RelayRate)]) -> bool {
        let Some(((last_key, last), first)) = rates.split_last() else {
            return true;
        };
        let for_message = self.hook == Hook::MailFrom;
        if for_message {
            // Room for every charge, checked once: none are recorded yet.
            let prefix = &last_key[..self.prefix_len()];
            let room = self
                .holds
                .is_some_and(|h| h.has_room_for_charges(prefix, rates.len()));
            if !room {
                return false;
            }
        }
        let backend = self.backend;
        for (key, r) in first {
            match backend
                .rate_limit(key, r.rate, r.period, r.burst, r.burst + 1)
                .await
            {
                Ok(d) if !d.allowed && d.remaining >= 1 => {}
                _ => return false,
            }
        }
        for (key, r) in std::iter::once((last_key, last)).chain(first.iter().map(|(k, r)| (k, r))) {
            match backend.rate_limit(key, r.rate, r.period, r.burst, 1).await {
                Ok(d) if d.allowed => {}
                _ => return false,
            }
            if let (true, Some(holds)) = (for_message, self.holds) {
                holds.charge(Charge::Rate {
                    key: key.clone(),
                    rate: r.rate,
                    period: r.period,
                    cost: 1,
                });
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{facts, rate};
    use super::super::KeyPart;
    use super::*;
    use crate::state::memory::InProcessBackend;

    fn keeper<'a>(
        hook: Hook,
        facts: &'a Facts<'a>,
        backend: &'a InProcessBackend,
        holds: Option<&'a SessionHolds>,
    ) -> Keeper<'a> {
        Keeper {
            plugin: "p",
            hook,
            facts,
            backend,
            holds,
        }
    }

    /// Every rate allows: all are charged (for the message at `mail-from`). One refuses: no
    /// other is charged and the call is needed.
    #[tokio::test]
    async fn rates_are_charged_together_or_not_at_all() {
        let backend = InProcessBackend::new();
        let holds = SessionHolds::default();
        let f = facts("192.0.2.1", Some("a@b.org"), None);
        let per_ip = rate(
            Hook::MailFrom,
            vec![KeyPart::ClientNetwork { ipv4: 32, ipv6: 64 }],
            3,
        );
        let per_sender = rate(Hook::MailFrom, vec![KeyPart::Sender], 1);
        let rates = [
            RelayLimit::Rate(per_ip.unwrap()),
            RelayLimit::Rate(per_sender.unwrap()),
        ];
        let left = |key: &str| {
            let backend = &backend;
            let key = format!("p\0r1\x1fr\x1f{key}");
            async move {
                backend
                    .rate_limit(&key, 3, Duration::from_secs(3600), 3, 4)
                    .await
                    .unwrap()
                    .remaining
            }
        };
        assert!(
            keeper(Hook::MailFrom, &f, &backend, Some(&holds))
                .kept(&rates)
                .await
        );
        assert_eq!(
            (left("i9:192.0.2.1").await, holds.take_charges().len()),
            (2, 2)
        );
        // The sender's burst of one is spent: nothing charged, the per-ip rate included.
        assert!(
            !keeper(Hook::MailFrom, &f, &backend, Some(&holds))
                .kept(&rates)
                .await
        );
        assert_eq!(
            (left("i9:192.0.2.1").await, holds.take_charges().len()),
            (2, 0)
        );
        // At mail-from a session is needed to give a charge back; at connect nothing is.
        assert!(
            !keeper(Hook::MailFrom, &f, &backend, None)
                .kept(&rates[..1])
                .await
        );
        assert!(
            keeper(Hook::Connect, &f, &backend, None)
                .kept(&rates[..1])
                .await
        );
        assert_eq!(left("i9:192.0.2.1").await, 1);
    }

    /// A count within `max` stays held for the session; one over it is taken back (the
    /// hook, called, counts the connection itself), and so is one a rate then refuses.
    #[tokio::test]
    async fn a_count_over_its_max_or_beside_a_refusing_rate_is_taken_back() {
        let backend = InProcessBackend::new();
        let holds = SessionHolds::default();
        let f = facts("192.0.2.1", None, None);
        let net = vec![KeyPart::ClientNetwork { ipv4: 32, ipv6: 64 }];
        let count = RelayCount::new(Hook::Connect, "open\x1fc".into(), net.clone(), 2, 60_000);
        let limits = [RelayLimit::Concurrent(count.unwrap())];
        let epoch = now_ms() / 60_000;
        let key = format!("p\0open\x1fc{epoch}\x1fi9:192.0.2.1");
        let held = || async { backend.counter_get(&key).await.unwrap() };
        assert!(
            keeper(Hook::Connect, &f, &backend, Some(&holds))
                .kept(&limits)
                .await
        );
        assert!(
            keeper(Hook::Connect, &f, &backend, Some(&holds))
                .kept(&limits)
                .await
        );
        assert_eq!(held().await, 2);
        assert!(
            !keeper(Hook::Connect, &f, &backend, Some(&holds))
                .kept(&limits)
                .await
        );
        assert_eq!(
            (held().await, holds.take().len()),
            (2, 2),
            "the third is taken back"
        );
        // A rate that refuses after the count: the count is taken back as well.
        let spent = rate(Hook::Connect, net, 1).unwrap();
        let key_of_rate = format!("p\0{}", spent.key(&f).unwrap());
        backend
            .rate_limit(&key_of_rate, 1, Duration::from_secs(3600), 1, 1)
            .await
            .unwrap();
        let both = [limits[0].clone(), RelayLimit::Rate(spent)];
        backend
            .counter_add(&key, -2, Duration::from_secs(120))
            .await
            .unwrap();
        assert!(
            !keeper(Hook::Connect, &f, &backend, Some(&holds))
                .kept(&both)
                .await
        );
        assert_eq!((held().await, holds.take().len()), (0, 0));
        // No session to give a count back at its end: the hook is called.
        assert!(
            !keeper(Hook::Connect, &f, &backend, None)
                .kept(&limits)
                .await
        );
    }
}
