//! The in-process list table: named sets of members, each with an optional expiry on the
//! wall clock (ms since the epoch), since members outlive the process (see [`journal`]).
//!
//! Every method that changes a member returns the [`Change`] it made, which the backend
//! journals and, should the journal write fail, hands back to [`ListTable::undo`].
//!
//! [`journal`]: super::journal

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
}

impl ListTable {
    pub fn new(lists: Lists) -> ListTable {
        ListTable { lists }
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
        let members = self.lists.entry(list.to_string()).or_default();
        let before = members.get(member).copied();
        let was_live = before.is_some_and(|e| live(e, now_ms));
        if !was_live && members.len() as u64 >= max_members {
            members.retain(|_, e| live(*e, now_ms));
            if members.len() as u64 >= max_members {
                if members.is_empty() {
                    self.lists.remove(list);
                }
                return Err(StateError::Denied(format!(
                    "list {list:?} is full ({max_members} members, lists.max_members)"
                )));
            }
        }
        let before = members.get(member).copied();
        if was_live && before == Some(expires_ms) {
            return Ok((false, None));
        }
        members.insert(member.to_string(), expires_ms);
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
            Some(expires) => {
                self.lists
                    .entry(change.list.clone())
                    .or_default()
                    .insert(change.member.clone(), expires);
            }
            None => {
                self.remove(&change.list, &change.member, 0);
            }
        }
    }

    pub fn sweep(&mut self, now_ms: u64) {
        for members in self.lists.values_mut() {
            members.retain(|_, e| live(*e, now_ms));
        }
        self.lists.retain(|_, m| !m.is_empty());
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
        assert_eq!(t.remove("s", "b", 2_000).0, true);
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
