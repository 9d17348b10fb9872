//! The route step of an attempt: each destination domain of the due recipients is routed
//! once (the batch's `route` hook, then config routes, then MX), and the recipients that
//! share a full route — the same pool, or the same hosts with the same TLS policy,
//! verification and credentials, or one domain's MX hosts — become one [`Destination`].

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};

use wasmrelay_codec::reply::Enhanced;

use super::route::{config_route, DeliveryHooks, Route, RouteRequest};
use super::{domain_of, Failure, Outcome};
use crate::config::delivery::{DeliveryConfig, SmartHostConfig, TlsPolicy};
use crate::spool::Envelope;

/// Where a group of recipients goes: the key for grouping and for the connection limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A `[[delivery.pools]]` entry, by name (its hosts and credentials live in config).
    Pool(String),
    /// Smart hosts from a config route or a hook.
    Hosts(Vec<SmartHostConfig>),
    /// One domain's MX hosts.
    Mx { domain: String, tls: TlsPolicy },
}

impl Hash for Target {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            Target::Pool(name) => (0u8, name).hash(state),
            Target::Hosts(hosts) => (1u8, hosts).hash(state),
            Target::Mx { domain, tls } => (2u8, domain, *tls as u8).hash(state),
        }
    }
}

/// Names a target in logs and "no route" diagnostics; never shows credentials.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Pool(name) => write!(f, "pool {name}"),
            Target::Hosts(hosts) => {
                let names: Vec<String> = hosts
                    .iter()
                    .map(|h| format!("{}:{}", h.host, h.port))
                    .collect();
                write!(f, "{}", names.join(", "))
            }
            Target::Mx { domain, .. } => write!(f, "{domain}"),
        }
    }
}

impl Target {
    /// Most simultaneous connections: a pool's own `max_connections`, else
    /// `per_destination`.
    pub(crate) fn limit(&self, config: &DeliveryConfig) -> usize {
        let pool = match self {
            Target::Pool(name) => config.pools.iter().find(|p| p.name == *name),
            _ => None,
        };
        match pool {
            Some(p) if p.max_connections > 0 => p.max_connections,
            _ => config.per_destination,
        }
    }
}

/// Recipients (indices into the envelope) that share one route.
pub(crate) struct Destination {
    pub target: Target,
    pub recipients: Vec<usize>,
}

/// What the route step decided.
#[derive(Default)]
pub(crate) struct Plan {
    pub destinations: Vec<Destination>,
    /// Recipients a route decision settled: held, dropped, deferred or bounced.
    pub settled: Vec<(usize, Outcome)>,
}

/// Routes the `due` recipients of `env`, asking `hooks` first when there are any.
pub(crate) async fn route(
    config: &DeliveryConfig,
    mut hooks: Option<&mut (dyn DeliveryHooks + '_)>,
    env: &Envelope,
    due: &[usize],
) -> Plan {
    let mut by_domain: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for &i in due {
        by_domain
            .entry(domain_of(&env.recipients[i].address))
            .or_default()
            .push(i);
    }
    let mut plan = Plan::default();
    for (domain, idx) in by_domain {
        let hooked = match hooks.as_deref_mut() {
            Some(h) => {
                let recipients: Vec<String> = idx
                    .iter()
                    .map(|&i| env.recipients[i].address.clone())
                    .collect();
                let request = RouteRequest {
                    envelope: env,
                    domain: &domain,
                    recipients: &recipients,
                    attempt: domain_attempt(env, &idx),
                };
                h.route(request).await
            }
            None => None,
        };
        let route = hooked.unwrap_or_else(|| config_route(config, &domain));
        let target = match route {
            Route::Pool(name) if config.pools.iter().any(|p| p.name == name) => Target::Pool(name),
            // The chain checks names against the config it was loaded with; delivery keeps
            // the one it started with. Mail for a pool only the other knows waits.
            Route::Pool(name) => {
                let f = Failure::local(
                    Enhanced(4, 4, 0),
                    format!("smart-host pool {name:?} is not configured"),
                );
                settle(&mut plan, &idx, Outcome::Transient(f));
                continue;
            }
            Route::SmartHosts(hosts) => Target::Hosts(hosts),
            Route::Mx { tls } => Target::Mx { domain, tls },
            Route::Hold(reason) => {
                settle(&mut plan, &idx, Outcome::Held(reason));
                continue;
            }
            Route::Drop(reason) => {
                settle(&mut plan, &idx, Outcome::Dropped(reason));
                continue;
            }
            Route::Defer(reply) => {
                settle(&mut plan, &idx, Outcome::Transient(Failure::policy(reply)));
                continue;
            }
            Route::Bounce(reply) => {
                settle(&mut plan, &idx, Outcome::Permanent(Failure::policy(reply)));
                continue;
            }
        };
        match plan.destinations.iter_mut().find(|d| d.target == target) {
            Some(d) => d.recipients.extend(idx),
            None => plan.destinations.push(Destination {
                target,
                recipients: idx,
            }),
        }
    }
    plan
}

fn settle(plan: &mut Plan, idx: &[usize], outcome: Outcome) {
    plan.settled
        .extend(idx.iter().map(|&i| (i, outcome.clone())));
}

/// The attempt at hand for recipients `idx`: one more than the most attempts any of them had.
pub(crate) fn domain_attempt(env: &Envelope, idx: &[usize]) -> u32 {
    idx.iter()
        .map(|&i| recipient_attempt(env, i))
        .max()
        .unwrap_or(1)
}

/// Recipient `i`'s attempt at hand: one more than the attempts it had.
pub(crate) fn recipient_attempt(env: &Envelope, i: usize) -> u32 {
    env.recipients[i].attempts.saturating_add(1)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use wasmrelay_codec::reply::Reply;

    use super::*;
    use crate::delivery::route::BoxFuture;

    fn envelope(rcpts: &[(&str, u32)]) -> Envelope {
        let addresses: Vec<&str> = rcpts.iter().map(|(a, _)| *a).collect();
        let mut env = crate::delivery::test_envelope(&addresses);
        for (r, (_, attempts)) in env.recipients.iter_mut().zip(rcpts) {
            r.attempts = *attempts;
        }
        env
    }

    /// Answers from a table by domain and records every question.
    struct Table {
        routes: HashMap<&'static str, Route>,
        asked: Vec<(String, Vec<String>, u32)>,
    }

    impl DeliveryHooks for Table {
        fn route<'a>(&'a mut self, r: RouteRequest<'a>) -> BoxFuture<'a, Option<Route>> {
            self.asked
                .push((r.domain.to_string(), r.recipients.to_vec(), r.attempt));
            let answer = self.routes.get(r.domain).cloned();
            Box::pin(async move { answer })
        }
    }

    fn host(port: u16, user: Option<&str>) -> SmartHostConfig {
        SmartHostConfig {
            host: "127.0.0.1".into(),
            port,
            tls: TlsPolicy::None,
            auth: user.map(|u| crate::config::delivery::AuthConfig {
                user: u.into(),
                password: "pw".into(),
                allow_plaintext: true,
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn one_question_per_domain_and_groups_by_full_route() {
        let config: DeliveryConfig = toml::from_str(
            r#"
            [[routes]]
            domains = ["a.test", "b.test"]
            hosts = [{ host = "127.0.0.1", port = 2525, tls = "none" }]
            [[pools]]
            name = "bulk"
            hosts = [{ host = "127.0.0.1", port = 2526, tls = "none" }]
            max_connections = 3
            "#,
        )
        .unwrap();
        let env = envelope(&[
            ("x@a.test", 0),
            ("y@b.test", 2),
            ("z@bulk.test", 0),
            ("w@bulk2.test", 0),
            ("h@hold.test", 1),
            ("d@drop.test", 0),
            ("v@creds.test", 0),
            ("m@mx.test", 0),
            ("gone@a.test", 0),
            ("later@a.test", 4),
        ]);
        let mut table = Table {
            routes: HashMap::from([
                ("bulk.test", Route::Pool("bulk".into())),
                ("bulk2.test", Route::Pool("bulk".into())),
                ("hold.test", Route::Hold("review".into())),
                ("drop.test", Route::Drop("unwanted".into())),
                // Same host and port as the a.test route, but with credentials.
                ("creds.test", Route::SmartHosts(vec![host(2525, Some("u"))])),
                ("unknown.test", Route::Pool("nope".into())),
            ]),
            asked: Vec::new(),
        };
        // `gone@` and `later@` are not due: the caller leaves them out.
        let due = [0, 1, 2, 3, 4, 5, 6, 7];
        let plan = route(&config, Some(&mut table), &env, &due).await;

        let asked: Vec<_> = table
            .asked
            .iter()
            .map(|(d, r, a)| (d.as_str(), r.clone(), *a))
            .collect();
        assert_eq!(
            asked,
            [
                ("a.test", vec!["x@a.test".to_string()], 1),
                ("b.test", vec!["y@b.test".into()], 3),
                ("bulk.test", vec!["z@bulk.test".into()], 1),
                ("bulk2.test", vec!["w@bulk2.test".into()], 1),
                ("creds.test", vec!["v@creds.test".into()], 1),
                ("drop.test", vec!["d@drop.test".into()], 1),
                ("hold.test", vec!["h@hold.test".into()], 2),
                ("mx.test", vec!["m@mx.test".into()], 1),
            ]
        );
        let groups: Vec<(String, Vec<usize>)> = plan
            .destinations
            .iter()
            .map(|d| (d.target.to_string(), d.recipients.clone()))
            .collect();
        assert_eq!(
            groups,
            [
                ("127.0.0.1:2525".to_string(), vec![0, 1]),
                ("pool bulk".into(), vec![2, 3]),
                ("127.0.0.1:2525".into(), vec![6]),
                ("mx.test".into(), vec![7]),
            ]
        );
        assert_ne!(plan.destinations[0].target, plan.destinations[2].target);
        assert_eq!(plan.destinations[1].target.limit(&config), 3);
        assert_eq!(
            plan.destinations[0].target.limit(&config),
            config.per_destination
        );
        assert_eq!(
            plan.settled,
            [
                (5, Outcome::Dropped("unwanted".into())),
                (4, Outcome::Held("review".into())),
            ]
        );
    }

    #[tokio::test]
    async fn decisions_that_settle_recipients() {
        let config = DeliveryConfig::default();
        let defer = Reply::new(451, Enhanced(4, 7, 1), "slow down");
        let bounce = Reply::new(550, Enhanced(5, 7, 1), "not here");
        let mut table = Table {
            routes: HashMap::from([
                ("defer.test", Route::Defer(defer.clone())),
                ("bounce.test", Route::Bounce(bounce.clone())),
                ("unknown.test", Route::Pool("nope".into())),
            ]),
            asked: Vec::new(),
        };
        let env = envelope(&[
            ("a@defer.test", 0),
            ("b@bounce.test", 0),
            ("c@unknown.test", 0),
        ]);
        let plan = route(&config, Some(&mut table), &env, &[0, 1, 2]).await;
        assert!(plan.destinations.is_empty());
        assert_eq!(
            plan.settled[0],
            (1, Outcome::Permanent(Failure::policy(bounce)))
        );
        assert_eq!(
            plan.settled[1],
            (0, Outcome::Transient(Failure::policy(defer)))
        );
        assert!(matches!(
            &plan.settled[2],
            (2, Outcome::Transient(f)) if f.summary().contains("\"nope\" is not configured")
        ));
        // Without hooks, config routes (MX by default) decide.
        let plan = route(&config, None, &env, &[0]).await;
        assert_eq!(
            plan.destinations[0].target,
            Target::Mx {
                domain: "defer.test".into(),
                tls: TlsPolicy::Opportunistic
            }
        );
    }
}
