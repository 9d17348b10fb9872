//! The in-process list table: named sets of members, each with an optional expiry on the
//! wall clock (ms since the epoch), since members outlive the process (see [`journal`]).
//!
//! Every method that changes a member returns the [`Change`] it made, which the backend
//! journals and, should the journal write fail, hands back to [`ListTable::undo`].
//!
//! [`journal`]: super::journal

use std::collections::HashMap;

use super::journal::{Lists, Record};
use super::{ListMember, StateError, StateResult};

fn live(expires_ms: Option<u64>, now_ms: u64) -> bool {
    expires_ms.is_none_or(|e| e > now_ms)
}

/// One member's state before and after a change: `None` absent, `Some(expiry)` present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub record: Record,
    pub list: String,
    pub member: String,
    pub before: Option<Option<u64>>,
    pub after: Option<Option<u64>>,
}

#[derive(Debug, Default)]
pub struct ListTable {
    lists: Lists,
    /// Per list, no later than its earliest expiry: a purge before then would find nothing,
    /// so a writer hammering a full list cannot make every call scan it.
    earliest: HashMap<String, u64>,
}

/// The earliest expiry among `members`.
fn earliest(members: &HashMap<String, Option<u64>>) -> Option<u64> {
    members.values().flatten().min().copied()
}

impl ListTable {
    pub fn new(lists: Lists) -> ListTable {
        let earliest = lists
            .iter()
            .filter_map(|(name, members)| Some((name.clone(), earliest(members)?)))
            .collect();
        ListTable { lists, earliest }
    }

    /// Drops the expired members of `list` if it may have any.
    fn purge(&mut self, list: &str, now_ms: u64) {
        if self.earliest.get(list).is_none_or(|e| *e > now_ms) {
            return;
        }
        self.earliest.remove(list);
        let Some(members) = self.lists.get_mut(list) else {
            return;
        };
        members.retain(|_, e| live(*e, now_ms));
        if let Some(e) = earliest(members) {
            self.earliest.insert(list.to_string(), e);
        }
        if members.is_empty() {
            self.lists.remove(list);
        }
    }

    /// Inserts a member as is (no checks), keeping `earliest` a lower bound.
    fn put(&mut self, list: &str, member: &str, expires_ms: Option<u64>) {
        if let Some(e) = expires_ms {
            let first = self.earliest.entry(list.to_string()).or_insert(e);
            *first = (*first).min(e);
        }
        let members = self.lists.entry(list.to_string()).or_default();
        members.insert(member.to_string(), expires_ms);
    }

    /// Every list, expired members included (they drop at the next sweep or load).
    pub fn lists(&self) -> &Lists {
        &self.lists
    }

    pub fn contains(&self, list: &str, member: &str, now_ms: u64) -> bool {
        self.lists
            .get(list)
            .and_then(|m| m.get(member))
            .is_some_and(|exp| live(*exp, now_ms))
    }

    /// Adds or refreshes `member`; returns whether it is new, and the change when there is
    /// one (re-adding a member with the same expiry changes nothing). A new member beyond
    /// `max_members` live members is refused.
    pub fn add(
        &mut self,
        list: &str,
        member: &str,
        expires_ms: Option<u64>,
        max_members: u64,
        now_ms: u64,
    ) -> StateResult<(bool, Option<Change>)> {
        let held = |t: &Self| t.lists.get(list).map_or(0, |m| m.len() as u64);
        let before = self.lists.get(list).and_then(|m| m.get(member)).copied();
        let was_live = before.is_some_and(|e| live(e, now_ms));
        if !was_live && held(self) >= max_members {
            self.purge(list, now_ms);
            if held(self) >= max_members {
                return Err(StateError::Denied(format!(
                    "list {list:?} is full ({max_members} members, lists.max_members)"
                )));
            }
        }
        let before = self.lists.get(list).and_then(|m| m.get(member)).copied();
        if was_live && before == Some(expires_ms) {
            return Ok((false, None));
        }
        self.put(list, member, expires_ms);
        let change = Change {
            record: Record::Add {
                list: list.to_string(),
                member: member.to_string(),
                expires_ms,
            },
            list: list.to_string(),
            member: member.to_string(),
            before,
            after: Some(expires_ms),
        };
        Ok((!was_live, Some(change)))
    }

    /// Removes `member`; returns whether it was there (live), and the change if it was.
    pub fn remove(&mut self, list: &str, member: &str, now_ms: u64) -> (bool, Option<Change>) {
        let Some(members) = self.lists.get_mut(list) else {
            return (false, None);
        };
        let before = members.remove(member);
        if members.is_empty() {
            self.lists.remove(list);
        }
        let Some(expires) = before.filter(|e| live(*e, now_ms)) else {
            return (false, None);
        };
        let change = Change {
            record: Record::Remove {
                list: list.to_string(),
                member: member.to_string(),
            },
            list: list.to_string(),
            member: member.to_string(),
            before: Some(expires),
            after: None,
        };
        (true, Some(change))
    }

    /// Live members of `list`, sorted.
    pub fn members(&self, list: &str, now_ms: u64) -> Vec<ListMember> {
        let mut out: Vec<ListMember> = self
            .lists
            .get(list)
            .into_iter()
            .flatten()
            .filter(|(_, exp)| live(**exp, now_ms))
            .map(|(m, exp)| ListMember {
                member: m.clone(),
                expires_ms: *exp,
            })
            .collect();
        out.sort_by(|a, b| a.member.cmp(&b.member));
        out
    }

    /// Puts the member back as it was before `change`, if nothing changed it since.
    pub fn undo(&mut self, change: &Change) {
        let current = self
            .lists
            .get(&change.list)
            .and_then(|m| m.get(&change.member))
            .copied();
        if current != change.after {
            return;
        }
        match change.before {
            Some(expires) => self.put(&change.list, &change.member, expires),
            None => {
                self.remove(&change.list, &change.member, 0);
            }
        }
    }

    /// Drops expired members of every list that may have some.
    pub fn sweep(&mut self, now_ms: u64) {
        let due: Vec<String> = self
            .earliest
            .iter()
            .filter(|(_, e)| **e <= now_ms)
            .map(|(list, _)| list.clone())
            .collect();
        for list in due {
            self.purge(&list, now_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_refresh_remove_and_expiry() {
        let mut t = ListTable::default();
        let (new, change) = t.add("s", "a", None, 10, 1_000).unwrap();
        assert!(new && change.is_some());
        let (new, change) = t.add("s", "a", None, 10, 1_000).unwrap();
        assert!(!new && change.is_none(), "re-adding as is journals nothing");
        let (new, change) = t.add("s", "b", Some(2_000), 10, 1_000).unwrap();
        assert!(new && change.is_some());
        assert!(t.contains("s", "b", 1_999));
        assert!(!t.contains("s", "b", 2_000));
        assert_eq!(
            t.members("s", 2_000),
            [ListMember {
                member: "a".into(),
                expires_ms: None
            }]
        );
        // An expired member comes back as new.
        assert!(t.add("s", "b", None, 10, 2_000).unwrap().0);
        assert!(t.remove("s", "b", 2_000).0);
        assert_eq!(t.remove("s", "b", 2_000), (false, None));
        t.add("s", "c", Some(3_000), 10, 2_000).unwrap();
        assert_eq!(
            t.remove("s", "c", 3_000),
            (false, None),
            "expired: nothing to journal"
        );
    }

    #[test]
    fn max_members_counts_live_members_only() {
        let mut t = ListTable::default();
        t.add("s", "a", Some(100), 2, 0).unwrap();
        t.add("s", "b", None, 2, 0).unwrap();
        assert!(matches!(
            t.add("s", "c", None, 2, 50),
            Err(StateError::Denied(_))
        ));
        // Refreshing a member is not a new one.
        assert!(t.add("s", "a", Some(200), 2, 50).is_ok());
        // Once `a` expires there is room.
        assert!(t.add("s", "c", None, 2, 200).unwrap().0);
        assert!(matches!(
            t.add("t", "x", None, 0, 0),
            Err(StateError::Denied(_))
        ));
        assert!(
            !t.lists().contains_key("t"),
            "a refused add leaves no empty list"
        );
    }

    #[test]
    fn a_full_list_is_scanned_only_when_a_member_may_have_expired() {
        let mut t = ListTable::default();
        t.add("s", "a", None, 2, 0).unwrap();
        t.add("s", "b", Some(1_000), 2, 0).unwrap();
        assert_eq!(t.earliest.get("s"), Some(&1_000));
        assert!(t.add("s", "c", None, 2, 999).is_err());
        // Removing `b` leaves a stale lower bound; the next purge corrects it.
        t.remove("s", "b", 0);
        t.add("s", "b", Some(5_000), 2, 0).unwrap();
        assert!(t.add("s", "c", None, 2, 1_000).is_err());
        assert_eq!(t.earliest.get("s"), Some(&5_000), "recomputed by the purge");
        assert!(t.add("s", "c", None, 2, 4_999).is_err());
        assert_eq!(t.earliest.get("s"), Some(&5_000), "not due: no purge");
        t.sweep(5_000);
        assert_eq!(t.members("s", 5_000).len(), 1);
        assert_eq!(t.earliest.get("s"), None);
        assert!(t.add("s", "c", None, 2, 5_000).unwrap().0);
    }

    #[test]
    fn undo_restores_unless_changed_since() {
        let mut t = ListTable::default();
        let (_, add) = t.add("s", "a", None, 10, 0).unwrap();
        t.undo(&add.unwrap());
        assert!(!t.contains("s", "a", 0));
        t.add("s", "a", Some(500), 10, 0).unwrap();
        let (_, remove) = t.remove("s", "a", 0);
        t.undo(&remove.unwrap());
        assert_eq!(t.members("s", 0)[0].expires_ms, Some(500));
        // A later change wins over the undo of an earlier one.
        let (_, first) = t.add("s", "a", None, 10, 0).unwrap();
        t.add("s", "a", Some(900), 10, 0).unwrap();
        t.undo(&first.unwrap());
        assert_eq!(t.members("s", 0)[0].expires_ms, Some(900));
    }
}
