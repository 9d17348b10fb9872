//! The record caches mail-auth asks before it queries DNS: parsed SPF, DKIM key and DMARC
//! records, and the A/AAAA/MX/PTR sets SPF evaluates, each kept until its TTL runs out.
//!
//! hickory already caches raw answers; these keep the parsed records, so a busy relay neither
//! re-parses the same DKIM key for every message nor lets one sender's records grow memory:
//! each cache holds a bounded number of entries, expired ones go first when it is full.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::time::Instant;

use mail_auth::{Parameters, RecordSet, ResolverCache, Txt, MX};

/// A map from key to value with an expiry per entry and a cap on the number of entries.
pub struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
    capacity: usize,
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    pub fn new(capacity: usize) -> Self {
        TtlCache {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (V, Instant)>> {
        // A panic while holding the lock leaves a consistent map (every write is one call).
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<K: Hash + Eq, V: Clone> ResolverCache<K, V> for TtlCache<K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut entries = self.lock();
        match entries.get(name) {
            Some((value, until)) if *until > Instant::now() => Some(value.clone()),
            Some(_) => {
                entries.remove(name);
                None
            }
            None => None,
        }
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lock().remove(name).map(|(value, _)| value)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        let now = Instant::now();
        if valid_until <= now {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, (_, until)| *until > now);
            if entries.len() >= self.capacity {
                // Still full of live entries: drop the ones closest to expiry, a quarter at a
                // time, so a burst of new names costs one sort, not one per insert.
                let mut untils: Vec<Instant> = entries.values().map(|(_, u)| *u).collect();
                untils.sort_unstable();
                let cut = untils[(untils.len() / 4).min(untils.len() - 1)];
                entries.retain(|_, (_, until)| *until > cut);
            }
        }
        entries.insert(key, (value, valid_until));
    }
}

/// Entries per record kind; a parsed record is a few hundred bytes.
const TXT_ENTRIES: usize = 4096;
const ADDR_ENTRIES: usize = 2048;

/// One cache per record kind mail-auth looks up, shared by every session.
pub struct Caches {
    pub txt: TtlCache<Box<str>, Txt>,
    pub mx: TtlCache<Box<str>, RecordSet<MX>>,
    pub ipv4: TtlCache<Box<str>, RecordSet<Ipv4Addr>>,
    pub ipv6: TtlCache<Box<str>, RecordSet<Ipv6Addr>>,
    pub ptr: TtlCache<IpAddr, RecordSet<Box<str>>>,
}

/// mail-auth's parameters with every cache attached.
pub type Cached<'x, P> = Parameters<
    'x,
    P,
    TtlCache<Box<str>, Txt>,
    TtlCache<Box<str>, RecordSet<MX>>,
    TtlCache<Box<str>, RecordSet<Ipv4Addr>>,
    TtlCache<Box<str>, RecordSet<Ipv6Addr>>,
    TtlCache<IpAddr, RecordSet<Box<str>>>,
>;

impl Caches {
    pub fn new() -> Caches {
        Caches {
            txt: TtlCache::new(TXT_ENTRIES),
            mx: TtlCache::new(ADDR_ENTRIES),
            ipv4: TtlCache::new(ADDR_ENTRIES),
            ipv6: TtlCache::new(ADDR_ENTRIES),
            ptr: TtlCache::new(ADDR_ENTRIES),
        }
    }

    /// `params` for a mail-auth call, with these caches.
    pub fn params<P>(&self, params: P) -> Cached<'_, P> {
        Parameters::new(params)
            .with_txt_cache(&self.txt)
            .with_mx_cache(&self.mx)
            .with_ipv4_cache(&self.ipv4)
            .with_ipv6_cache(&self.ipv6)
            .with_ptr_cache(&self.ptr)
    }
}

impl Default for Caches {
    fn default() -> Self {
        Caches::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn later(secs: u64) -> Instant {
        Instant::now() + Duration::from_secs(secs)
    }

    #[test]
    fn entries_live_until_their_ttl() {
        let cache: TtlCache<Box<str>, u32> = TtlCache::new(8);
        cache.insert("a".into(), 1, later(60));
        cache.insert("gone".into(), 2, Instant::now() - Duration::from_secs(1));
        assert_eq!(cache.get("a"), Some(1));
        assert_eq!(cache.get("gone"), None, "an expired answer is never stored");
        cache.insert(
            "short".into(),
            3,
            Instant::now() + Duration::from_millis(30),
        );
        assert_eq!(cache.get("short"), Some(3));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(cache.get("short"), None, "expired on read");
        assert_eq!(cache.len(), 1, "and removed");
        assert_eq!(cache.remove("a"), Some(1));
        assert!(cache.is_empty());
    }

    #[test]
    fn a_full_cache_drops_expired_then_the_soonest_to_expire() {
        let cache: TtlCache<Box<str>, u32> = TtlCache::new(8);
        for i in 0..8u32 {
            cache.insert(format!("k{i}").into(), i, later(100 + u64::from(i)));
        }
        assert_eq!(cache.len(), 8);
        // Replacing a key never evicts.
        cache.insert("k7".into(), 70, later(500));
        assert_eq!(cache.len(), 8);
        cache.insert("new".into(), 99, later(1000));
        assert!(cache.len() <= 8, "{}", cache.len());
        assert_eq!(cache.get("new"), Some(99));
        assert_eq!(cache.get("k0"), None, "the soonest to expire went first");
        assert_eq!(cache.get("k7"), Some(70), "the longest-lived stays");
        // Many distinct names never grow the map past its capacity.
        for i in 0..1000u32 {
            cache.insert(format!("flood{i}").into(), i, later(60));
            assert!(cache.len() <= 8);
        }
    }
}
