//! The send step of an attempt: one destination's recipients over its next hops, in as few
//! transactions as their copies allow. Recipients whose copy is unchanged share one
//! transaction; each recipient with a copy of its own gets its own. Every transaction tries
//! the hops in order, each hop's addresses in order, reusing a pooled connection that was
//! opened the same way. A hop that is this relay is never tried (see [`super::identity`]).

use std::net::SocketAddr;

use wasmrelay_codec::data::is_eight_bit;
use wasmrelay_codec::reply::Enhanced;

use super::client::{ClientError, ClientOptions, SmtpClient, Transaction, TxRecipient};
use super::connections::{checkin, checkout, PoolKey};
use super::copies::Content;
use super::plan::Target;
use super::route::Rendered;
use super::runner::Shared;
use super::{Failure, Outcome};
use crate::config::delivery::{SmartHostConfig, TlsPolicy};
use crate::spool::Envelope;

/// One next hop to try.
pub(crate) struct Hop {
    pub name: String,
    pub port: u16,
    pub options: ClientOptions,
}

/// Delivers recipients `idx` of `env` to `target`, within the target's connection limit.
pub(crate) async fn deliver(
    shared: &Shared,
    target: &Target,
    env: &Envelope,
    content: &Content,
    idx: Vec<usize>,
) -> Vec<(usize, Outcome)> {
    let all = |idx: &mut dyn Iterator<Item = usize>, f: &Failure| {
        idx.map(|i| (i, Outcome::failed(f.clone())))
            .collect::<Vec<_>>()
    };
    let limit = shared.destination(target);
    let Ok(_permit) = limit.acquire_owned().await else {
        let f = Failure::local(Enhanced(4, 3, 0), "shutting down");
        return all(&mut idx.into_iter(), &f);
    };
    let hops = match hops(shared, target).await {
        Ok(h) => h,
        Err(f) => return all(&mut idx.into_iter(), &f),
    };
    let mut out = Vec::with_capacity(idx.len());
    let mut together = Vec::new();
    let mut rest = idx.into_iter();
    while let Some(i) = rest.next() {
        match content.render(shared, env, i).await {
            Rendered::Unchanged => together.push(i),
            Rendered::Refused(f) => out.push((i, Outcome::failed(f))),
            Rendered::Edited(copy) => {
                match send(shared, target, &hops, env, &[i], (b"", &copy)).await {
                    Ok(outcomes) => out.extend([i].into_iter().zip(outcomes)),
                    // No hop took the transaction: the others would fare no better now, and
                    // trying each in turn would cost every hop's timeouts once per recipient.
                    Err(f) => {
                        out.extend(all(&mut [i].into_iter().chain(rest).chain(together), &f));
                        return out;
                    }
                }
            }
        }
    }
    if !together.is_empty() {
        match send(shared, target, &hops, env, &together, content.common()).await {
            Ok(outcomes) => out.extend(together.into_iter().zip(outcomes)),
            Err(f) => out.extend(all(&mut together.into_iter(), &f)),
        }
    }
    out
}

/// The next hops of `target`, best first.
async fn hops(shared: &Shared, target: &Target) -> Result<Vec<Hop>, Failure> {
    let base = ClientOptions {
        helo_name: shared.config.hostname.clone(),
        tls: TlsPolicy::Opportunistic,
        tls_verify: true,
        auth: None,
        timeouts: shared.config.timeouts.clone(),
    };
    let smart = |hosts: &[SmartHostConfig]| hosts.iter().map(|h| smart_hop(h, &base)).collect();
    Ok(match target {
        Target::Pool(name) => {
            let pool = shared.config.pools.iter().find(|p| p.name == *name);
            smart(pool.map_or(&[][..], |p| &p.hosts))
        }
        Target::Hosts(hosts) => smart(hosts),
        Target::Mx { domain, tls } => shared
            .resolver
            .mx(domain)
            .await?
            .into_iter()
            .map(|m| Hop {
                name: m.name,
                port: shared.config.mx_port,
                options: ClientOptions {
                    tls: *tls,
                    ..base.clone()
                },
            })
            .collect(),
    })
}

fn smart_hop(h: &SmartHostConfig, base: &ClientOptions) -> Hop {
    Hop {
        name: h.host.clone(),
        port: h.port,
        options: ClientOptions {
            tls: h.tls,
            tls_verify: h.tls_verify,
            auth: h.auth.clone(),
            ..base.clone()
        },
    }
}

/// Runs one transaction of `message` (a signature field, then the message proper) for
/// recipients `idx` on the first hop that takes it:
/// one outcome per recipient, in order. `Err` when no hop ran the transaction: what the
/// most telling hop said.
async fn send(
    shared: &Shared,
    target: &Target,
    hops: &[Hop],
    env: &Envelope,
    idx: &[usize],
    (prefix, message): (&[u8], &[u8]),
) -> Result<Vec<Outcome>, Failure> {
    let recipients: Vec<TxRecipient<'_>> = idx
        .iter()
        .map(|&i| {
            let r = &env.recipients[i];
            TxRecipient {
                address: &r.address,
                notify: &r.notify,
                orcpt: r.orcpt.as_deref(),
            }
        })
        .collect();
    let tx = Transaction {
        mail_from: env.mail_from.as_deref().unwrap_or(""),
        recipients,
        prefix,
        message,
        eight_bit: env.eight_bit || is_eight_bit(message),
        smtputf8: env.smtputf8,
        ret_headers_only: env.ret_headers_only,
        envid: env.envid.as_deref(),
    };
    // What to report if every hop fails: a hop that answered (TLS, AUTH, a reply) says more
    // than one that refused the connection, whichever came last.
    let mut last = Failure::local(Enhanced(4, 4, 4), format!("no route to {target}"));
    let mut last_answered = false;
    let mut note = |f: Failure, answered: bool| {
        if answered || !last_answered {
            last = f;
            last_answered |= answered;
        }
    };
    // A next hop that is this relay would hand the message back to us. Among MX hosts
    // (best first) it ends the list: RFC 5321 §5.1 forbids the less preferred ones too.
    let is_mx = matches!(target, Target::Mx { .. });
    let me = &shared.identity;
    let mut looped: Option<String> = None;
    let mut tried_another = false;
    for hop in hops {
        if me.is_self_name(&hop.name, hop.port) {
            looped = Some(format!(
                "{}:{} is this relay's own name",
                hop.name, hop.port
            ));
            if is_mx {
                break;
            }
            continue;
        }
        let addrs = match shared.resolver.addrs(&hop.name).await {
            Ok(a) => a,
            Err(f) => {
                tried_another = true;
                note(f, false);
                continue;
            }
        };
        let ours = addrs
            .iter()
            .map(|&ip| SocketAddr::new(ip, hop.port))
            .find(|&a| me.is_self_addr(a));
        if let Some(addr) = ours {
            looped = Some(format!("{} ({addr}) is this relay", hop.name));
            if is_mx {
                break;
            }
            continue;
        }
        tried_another = true;
        for ip in addrs {
            let addr = SocketAddr::new(ip, hop.port);
            let key = PoolKey::new(addr, hop);
            let mut client = match checkout(shared, &key).await {
                Some(c) => c,
                None => match SmtpClient::connect(addr, &hop.name, &hop.options).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::info!(%addr, error = %e, "next hop unavailable");
                        note(e.to_failure(), !matches!(e, ClientError::Connect { .. }));
                        continue;
                    }
                },
            };
            match client.send(&tx).await {
                Ok(outcomes) => {
                    checkin(shared, key, client).await;
                    return Ok(outcomes);
                }
                Err(e) => {
                    tracing::info!(%addr, error = %e, "session failed");
                    note(e.to_failure(), true);
                }
            }
        }
    }
    match looped {
        Some(why) if !tried_another => {
            tracing::warn!(%target, %why, "mail loop: next hop is this relay");
            let what = match target {
                Target::Mx { domain, .. } => format!("mail for {domain}"),
                _ => format!("mail via {target}"),
            };
            Err(Failure::local(
                Enhanced(5, 4, 6),
                format!("{what} loops back to myself: {why}"),
            ))
        }
        _ => Err(last),
    }
}
