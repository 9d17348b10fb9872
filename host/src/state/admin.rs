//! What operators do to lists (`wasmrelay list show|add|remove`): the request the CLI sends
//! through the control socket, and how a backend answers it. The running relay answers with
//! its live backend; with no relay running, the CLI answers itself from the journal.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ListMember, StateBackend, StateError, MAX_LIST_MEMBER};
use crate::config::lists::ListConfig;

/// One operator request, sent as JSON after `list ` on the control socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum ListRequest {
    Show {
        list: String,
    },
    Add {
        list: String,
        member: String,
        #[serde(default)]
        ttl_ms: Option<u64>,
    },
    Remove {
        list: String,
        member: String,
    },
}

impl ListRequest {
    pub fn list(&self) -> &str {
        match self {
            ListRequest::Show { list }
            | ListRequest::Add { list, .. }
            | ListRequest::Remove { list, .. } => list,
        }
    }
}

/// The answer, sent as JSON after `ok `.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum ListAnswer {
    /// `show`: every live member, sorted.
    Members(Vec<ListMember>),
    /// `add`: whether the member is new; `remove`: whether it was there.
    Changed(bool),
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no list named {name:?} in [[lists]] (declared: {declared})")]
    UnknownList { name: String, declared: String },
    #[error("list members are 1 to {MAX_LIST_MEMBER} bytes; this one is {0}")]
    Member(usize),
    #[error("{0}")]
    State(#[from] StateError),
}

/// The form members are stored in, the same as the plugins' `list_address`: trimmed, without
/// angle brackets, lower-cased, so `wasmrelay list add suppression Bob@Example.com` matches
/// the `bob@example.com` a plugin looks up.
pub fn list_member(member: &str) -> String {
    member
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_ascii_lowercase()
}

/// The declaration of the list `req` names, and a member of the right size.
pub fn check<'a>(lists: &'a [ListConfig], req: &ListRequest) -> Result<&'a ListConfig, AdminError> {
    let decl =
        lists
            .iter()
            .find(|l| l.name == req.list())
            .ok_or_else(|| AdminError::UnknownList {
                name: req.list().to_string(),
                declared: match lists.len() {
                    0 => "none".to_string(),
                    _ => lists
                        .iter()
                        .map(|l| l.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                },
            })?;
    if let ListRequest::Add { member, .. } | ListRequest::Remove { member, .. } = req {
        if member.is_empty() || member.len() > MAX_LIST_MEMBER {
            return Err(AdminError::Member(member.len()));
        }
    }
    Ok(decl)
}

/// Answers `req` from `backend`, for the lists declared in `lists`.
pub async fn execute(
    backend: &dyn StateBackend,
    lists: &[ListConfig],
    req: &ListRequest,
) -> Result<ListAnswer, AdminError> {
    let decl = check(lists, req)?;
    Ok(match req {
        ListRequest::Show { list } => ListAnswer::Members(backend.list_members(list).await?),
        ListRequest::Add {
            list,
            member,
            ttl_ms,
        } => {
            let ttl = ttl_ms.map(Duration::from_millis);
            let new = backend
                .list_add(list, &list_member(member), ttl, decl.max_members)
                .await?;
            ListAnswer::Changed(new)
        }
        ListRequest::Remove { list, member } => {
            ListAnswer::Changed(backend.list_remove(list, &list_member(member)).await?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::InProcessBackend;

    fn decls() -> Vec<ListConfig> {
        vec![ListConfig {
            name: "suppression".into(),
            max_members: 2,
            ..ListConfig::default()
        }]
    }

    fn add(member: &str) -> ListRequest {
        ListRequest::Add {
            list: "suppression".into(),
            member: member.into(),
            ttl_ms: None,
        }
    }

    #[tokio::test]
    async fn requests_are_checked_against_the_declarations() {
        let b = InProcessBackend::new();
        let lists = decls();
        let show = ListRequest::Show {
            list: "suppresion".into(),
        };
        let e = execute(&b, &lists, &show).await.unwrap_err().to_string();
        assert_eq!(
            e,
            "no list named \"suppresion\" in [[lists]] (declared: suppression)"
        );
        let e = execute(&b, &[], &show).await.unwrap_err().to_string();
        assert!(e.ends_with("(declared: none)"), "{e}");
        assert!(matches!(
            execute(&b, &lists, &add("")).await,
            Err(AdminError::Member(0))
        ));
        let long = "x".repeat(MAX_LIST_MEMBER + 1);
        assert!(matches!(
            execute(&b, &lists, &add(&long)).await,
            Err(AdminError::Member(_))
        ));
        assert_eq!(
            execute(&b, &lists, &add("a@x.test")).await.unwrap(),
            ListAnswer::Changed(true)
        );
        execute(&b, &lists, &add("b@x.test")).await.unwrap();
        // The declaration's max_members holds for operators too.
        assert!(matches!(
            execute(&b, &lists, &add("c@x.test")).await,
            Err(AdminError::State(StateError::Denied(_)))
        ));
        let show = ListRequest::Show {
            list: "suppression".into(),
        };
        let ListAnswer::Members(members) = execute(&b, &lists, &show).await.unwrap() else {
            panic!("members")
        };
        assert_eq!(members.len(), 2);
    }

    #[test]
    fn requests_and_answers_round_trip_as_json() {
        let req = ListRequest::Add {
            list: "s".into(),
            member: "line\nbreak \"quoted\"".into(),
            ttl_ms: Some(5),
        };
        let json = serde_json::to_string(&req).unwrap();
        assert!(!json.contains('\n'));
        assert_eq!(serde_json::from_str::<ListRequest>(&json).unwrap(), req);
        let answer = ListAnswer::Members(vec![ListMember {
            member: "a".into(),
            expires_ms: None,
        }]);
        let json = serde_json::to_string(&answer).unwrap();
        assert_eq!(serde_json::from_str::<ListAnswer>(&json).unwrap(), answer);
        assert!(serde_json::from_str::<ListRequest>(r#"{"op":"drop","list":"s"}"#).is_err());
    }
}
