//! The in-process kv table: one namespace per plugin, each with exact usage (live keys and
//! bytes) so the caps of [`KvCap`] hold at every write.
//!
//! Usage counts only live entries: each namespace keeps its expiring keys ordered by expiry
//! and drops the expired ones (subtracting their size) before every operation on it, so a
//! plugin whose keys expire gets its room back without waiting for a sweep.

use std::collections::{BTreeSet, HashMap};

use tokio::time::Instant;

use super::{KvCap, StateError, StateResult};

#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    expires: Option<Instant>,
}

/// One plugin's keys.
#[derive(Debug, Default)]
struct Space {
    entries: HashMap<String, Entry>,
    /// `(expiry, key)` of every entry with a TTL.
    expiring: BTreeSet<(Instant, String)>,
    /// Sum of key and value lengths of the entries.
    bytes: u64,
}

fn size(key: &str, value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64
}

impl Space {
    /// Drops every entry expired at `now`.
    fn expire(&mut self, now: Instant) {
        while let Some(first) = self.expiring.first() {
            if first.0 > now {
                break;
            }
            let Some((_, key)) = self.expiring.pop_first() else {
                break;
            };
            if let Some(e) = self.entries.remove(&key) {
                self.bytes -= size(&key, &e.value);
            }
        }
    }

    fn remove(&mut self, key: &str) -> Option<Entry> {
        let e = self.entries.remove(key)?;
        self.bytes -= size(key, &e.value);
        if let Some(at) = e.expires {
            self.expiring.remove(&(at, key.to_string()));
        }
        Some(e)
    }

    /// Replaces (or creates) `key` if the caps allow it.
    fn put(
        &mut self,
        cap: &KvCap<'_>,
        key: &str,
        value: Vec<u8>,
        expires: Option<Instant>,
    ) -> StateResult<()> {
        let old = self.entries.get(key).map(|e| size(key, &e.value));
        let keys_before = self.entries.len() as u64;
        let keys_after = keys_before + u64::from(old.is_none());
        let bytes_after = self.bytes - old.unwrap_or(0) + size(key, &value);
        if keys_after > cap.max_keys && keys_after > keys_before {
            return Err(StateError::Denied(format!(
                "kv key cap of {} reached (limits.kv_keys)",
                cap.max_keys
            )));
        }
        if bytes_after > cap.max_bytes && bytes_after > self.bytes {
            return Err(StateError::Denied(format!(
                "kv byte cap of {} reached (limits.kv_bytes)",
                cap.max_bytes
            )));
        }
        self.remove(key);
        if let Some(at) = expires {
            self.expiring.insert((at, key.to_string()));
        }
        self.bytes += size(key, &value);
        self.entries
            .insert(key.to_string(), Entry { value, expires });
        Ok(())
    }
}

/// Every namespace's keys.
#[derive(Debug, Default)]
pub struct KvTable {
    spaces: HashMap<String, Space>,
}

impl KvTable {
    /// The namespace, with its expired entries dropped.
    fn space(&mut self, namespace: &str, now: Instant) -> Option<&mut Space> {
        let space = self.spaces.get_mut(namespace)?;
        space.expire(now);
        Some(space)
    }

    pub fn get(&mut self, namespace: &str, key: &str, now: Instant) -> Option<Vec<u8>> {
        let space = self.space(namespace, now)?;
        space.entries.get(key).map(|e| e.value.clone())
    }

    /// Sets `key`; with `only_if_absent`, leaves a live entry alone and returns `false`.
    pub fn set(
        &mut self,
        cap: &KvCap<'_>,
        key: &str,
        value: Vec<u8>,
        expires: Option<Instant>,
        only_if_absent: bool,
        now: Instant,
    ) -> StateResult<bool> {
        let space = self.spaces.entry(cap.namespace.to_string()).or_default();
        space.expire(now);
        if only_if_absent && space.entries.contains_key(key) {
            return Ok(false);
        }
        let result = space.put(cap, key, value, expires).map(|()| true);
        if space.entries.is_empty() {
            self.spaces.remove(cap.namespace);
        }
        result
    }

    pub fn delete(&mut self, namespace: &str, key: &str, now: Instant) -> bool {
        let Some(space) = self.space(namespace, now) else {
            return false;
        };
        let existed = space.remove(key).is_some();
        if space.entries.is_empty() {
            self.spaces.remove(namespace);
        }
        existed
    }

    /// Live keys and bytes of a namespace.
    pub fn usage(&mut self, namespace: &str, now: Instant) -> (u64, u64) {
        self.space(namespace, now)
            .map_or((0, 0), |s| (s.entries.len() as u64, s.bytes))
    }

    /// Drops expired entries everywhere, and namespaces left empty.
    pub fn sweep(&mut self, now: Instant) {
        self.spaces.retain(|_, s| {
            s.expire(now);
            !s.entries.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cap(keys: u64, bytes: u64) -> KvCap<'static> {
        KvCap {
            namespace: "p",
            max_keys: keys,
            max_bytes: bytes,
        }
    }

    fn denied(r: StateResult<bool>) -> bool {
        matches!(r, Err(StateError::Denied(_)))
    }

    #[test]
    fn key_cap_counts_live_keys_and_replacing_is_free() {
        let now = Instant::now();
        let mut t = KvTable::default();
        let c = cap(2, 1 << 20);
        assert_eq!(t.set(&c, "a", b"1".to_vec(), None, false, now), Ok(true));
        assert_eq!(t.set(&c, "b", b"1".to_vec(), None, false, now), Ok(true));
        assert!(denied(t.set(&c, "c", b"1".to_vec(), None, false, now)));
        assert!(denied(t.set(&c, "c", b"1".to_vec(), None, true, now)));
        // Replacing an existing key adds no key.
        assert_eq!(t.set(&c, "a", b"22".to_vec(), None, false, now), Ok(true));
        assert_eq!(t.usage("p", now), (2, 5));
        // Another namespace has its own count.
        let other = KvCap {
            namespace: "q",
            ..c
        };
        assert_eq!(
            t.set(&other, "c", b"1".to_vec(), None, false, now),
            Ok(true)
        );
        assert!(t.delete("p", "b", now));
        assert_eq!(t.set(&c, "c", b"1".to_vec(), None, false, now), Ok(true));
        assert_eq!(t.usage("p", now), (2, 5));
    }

    #[test]
    fn byte_cap_counts_keys_and_values_and_allows_shrinking() {
        let now = Instant::now();
        let mut t = KvTable::default();
        let c = cap(100, 10);
        assert_eq!(t.set(&c, "k", vec![0; 9], None, false, now), Ok(true));
        assert!(denied(t.set(&c, "k", vec![0; 10], None, false, now)));
        assert!(denied(t.set(&c, "x", vec![], None, false, now)));
        assert_eq!(
            t.get("p", "k", now),
            Some(vec![0; 9]),
            "a refused set changes nothing"
        );
        // Over a lowered cap, a write that shrinks usage still goes through.
        let lowered = cap(100, 4);
        assert_eq!(t.set(&lowered, "k", vec![0; 5], None, false, now), Ok(true));
        assert!(denied(t.set(&lowered, "k", vec![0; 6], None, false, now)));
        assert_eq!(t.usage("p", now), (1, 6));
    }

    #[test]
    fn expired_entries_give_their_room_back() {
        let now = Instant::now();
        let mut t = KvTable::default();
        let c = cap(1, 100);
        let soon = Some(now + Duration::from_secs(5));
        assert_eq!(t.set(&c, "a", b"x".to_vec(), soon, false, now), Ok(true));
        assert!(denied(t.set(&c, "b", b"x".to_vec(), None, false, now)));
        let later = now + Duration::from_secs(5);
        assert_eq!(t.get("p", "a", later), None);
        assert_eq!(t.usage("p", later), (0, 0));
        assert_eq!(t.set(&c, "b", b"x".to_vec(), None, true, later), Ok(true));
        // Refreshing a key moves its expiry: the old one must not drop the new entry.
        let c = cap(10, 100);
        assert_eq!(t.set(&c, "e", b"1".to_vec(), soon, false, now), Ok(true));
        let far = Some(now + Duration::from_secs(60));
        assert_eq!(t.set(&c, "e", b"2".to_vec(), far, false, now), Ok(true));
        assert_eq!(t.get("p", "e", later), Some(b"2".to_vec()));
        assert_eq!(t.usage("p", later), (2, 4));
        t.sweep(now + Duration::from_secs(60));
        assert_eq!(t.usage("p", now + Duration::from_secs(60)), (1, 2));
        assert!(!t.delete("p", "e", now + Duration::from_secs(60)));
    }

    #[test]
    fn add_keeps_a_live_entry() {
        let now = Instant::now();
        let mut t = KvTable::default();
        let c = cap(10, 100);
        assert_eq!(t.set(&c, "a", b"1".to_vec(), None, true, now), Ok(true));
        assert_eq!(t.set(&c, "a", b"2".to_vec(), None, true, now), Ok(false));
        assert_eq!(t.get("p", "a", now), Some(b"1".to_vec()));
        assert_eq!(t.get("q", "a", now), None);
    }
}
