//! Whether a plugin's load-time declarations (docs/plugins.md#declaring-which-messages-a-message-hook-wants) let a call
//! through: the recipients a transaction has, the lists a recipient is on, the header
//! fields, part types and traits a message has. A call no declaration lets through is
//! skipped with the instance it would take.

use std::borrow::Cow;

use wasmrelay_codec::message::header_end;

use super::{Chain, Subject};
use crate::plugins::context::ContextData;
use crate::plugins::holds::SessionHolds;
use crate::plugins::message::MessageRes;
use crate::plugins::message_traits::{self, MessageTrait};
use crate::plugins::types::{ConnectionInfo, EnvelopeInfo, Hook, TransactionInfo, TRUSTED};
use crate::plugins::{mime, relay_limits, wants, PluginHost};

/// What the declarations asked of one version of a message, found once and only when a
/// declaration needs it; the chain starts afresh after an edit.
#[derive(Default)]
pub(super) struct MessageFacts {
    /// The leaf part types; `None` inside when the tree was cut and cannot tell.
    leaf_types: Option<Option<Vec<String>>>,
    attachment: Option<bool>,
}

impl Chain {
    /// Whether the transaction has as many recipients as plugin `i` declared `hook` needs
    /// (`host.want-recipient-count`): at `rcpt` the ones accepted before this one.
    pub(super) fn enough_recipients(&self, i: usize, hook: Hook, subject: Subject<'_>) -> bool {
        let min = self.host.plugins[i].wants.min_recipients(hook);
        match subject {
            Subject::Session(c) => c.tx.recipients.len() >= min,
            Subject::Delivery(_) => true,
        }
    }

    /// [`Chain::reaches_any`] read from the message's bytes, without parsing it: its header
    /// fields, and the type of its one part when it is not multipart. `None` when a plugin's
    /// part types or message traits need the part tree of a multipart message (or, for a
    /// size, the parsed message) to tell. Traits of the client count as met for an unknown
    /// `caller`.
    pub(super) fn reaches_any_raw(
        &self,
        hook: Hook,
        caller: Caller<'_>,
        message: &[u8],
    ) -> Option<bool> {
        let fields_end = header_end(message).map_or(message.len(), |h| h.fields);
        let fields = &message[..fields_end];
        // The one part of a message that is not multipart, read once if a plugin asks.
        let mut single = None;
        for i in (0..self.members.len()).filter(|&i| self.handles(i, hook)) {
            let wants = &self.host.plugins[i].wants;
            if let Some(names) = wants.headers(hook) {
                if !mime::has_any_field(fields, names) {
                    continue;
                }
            }
            if let Some(traits) = wants.traits(hook) {
                let mut met = Some(false);
                for t in traits {
                    match raw_has_trait(t, caller, message, fields, &mut single) {
                        Some(true) => {
                            met = Some(true);
                            break;
                        }
                        Some(false) => {}
                        None => met = None,
                    }
                }
                match met {
                    Some(true) => {}
                    Some(false) => continue,
                    None => return None,
                }
            }
            let Some(wanted) = wants.types(hook) else {
                return Some(true);
            };
            match single_part(&mut single, fields) {
                Some(top) if wanted.contains(&top.content_type) => return Some(true),
                Some(_) => {}
                None => return None,
            }
        }
        Some(false)
    }

    /// Whether a plugin that handles `hook` may be called with `message`, whoever the call
    /// is about (message traits of the client count as met).
    pub(super) fn reaches_any(&self, hook: Hook, message: &mut MessageRes) -> bool {
        let mut facts = MessageFacts::default();
        (0..self.members.len())
            .filter(|&i| self.handles(i, hook))
            .any(|i| self.wanted_by(i, hook, Caller::Unknown, message, &mut facts))
    }

    /// Whether plugin `i` is to see `message` at `hook`: the message has one of the header
    /// fields it declared for the hook (if any), one of the leaf part types (if any) and one
    /// of the traits (if any). Traits of the client count as met for an unknown `caller`.
    /// `facts` keeps what was found of this version of the message (the caller resets it
    /// after an edit).
    pub(super) fn wanted_by(
        &self,
        i: usize,
        hook: Hook,
        caller: Caller<'_>,
        message: &mut MessageRes,
        facts: &mut MessageFacts,
    ) -> bool {
        let wants = &self.host.plugins[i].wants;
        if let Some(names) = wants.headers(hook) {
            if !message.has_any_field(names) {
                return false;
            }
        }
        if let Some(traits) = wants.traits(hook) {
            if !traits.iter().any(|t| has_trait(t, caller, message, facts)) {
                return false;
            }
        }
        let Some(wanted) = wants.types(hook) else {
            return true;
        };
        facts
            .leaf_types
            .get_or_insert_with(|| mime::leaf_types(message))
            .as_ref()
            .is_none_or(|t| wants::concerns(wanted, t))
    }
}

/// [`has_trait`] from the raw `message` and its header `fields`: `None` when it takes the
/// part tree (an attachment in a multipart message) or the parsed size to tell.
fn raw_has_trait(
    t: &MessageTrait,
    caller: Caller<'_>,
    message: &[u8],
    fields: &[u8],
    single: &mut Option<Option<mime::MimeHeader>>,
) -> Option<bool> {
    match t {
        MessageTrait::AuthResults | MessageTrait::UntrustedClient => Some(caller.has(t)),
        MessageTrait::Header(name) => Some(mime::has_any_field(fields, std::slice::from_ref(name))),
        MessageTrait::Attachment => single_part(single, fields).map(|top| {
            let (filename, disposition) = (top.filename.as_deref(), top.disposition.as_deref());
            message_traits::is_attachment(&top.content_type, filename, disposition, true)
        }),
        // Parsing writes bare line ends as CRLF: at most twice the bytes.
        MessageTrait::LargerThan(n) => match message.len() as u64 {
            len if len > *n => Some(true),
            len if len.saturating_mul(2).saturating_add(2) <= *n => Some(false),
            _ => None,
        },
    }
}

/// [`mime::single_part`] of `fields`, found once in `cache`.
fn single_part<'c>(
    cache: &'c mut Option<Option<mime::MimeHeader>>,
    fields: &[u8],
) -> Option<&'c mime::MimeHeader> {
    cache
        .get_or_insert_with(|| mime::single_part(fields))
        .as_ref()
}

/// Whom a call is about, for the traits of the client: a session (its connection and
/// transaction), a queued message, or not known yet (every such trait counts as met).
#[derive(Clone, Copy)]
pub(super) enum Caller<'a> {
    Session(Option<&'a ConnectionInfo>, &'a TransactionInfo),
    Delivery(&'a EnvelopeInfo),
    Unknown,
}

impl<'a> Caller<'a> {
    pub(super) fn of(subject: Subject<'a>) -> Caller<'a> {
        match subject {
            Subject::Session(ctx) => Caller::Session(ctx.conn.as_deref(), &ctx.tx),
            Subject::Delivery(env) => Caller::Delivery(env),
        }
    }

    /// Whether the call has `t`, a trait of the client (`auth-results`, `untrusted-client`);
    /// any other trait is the message's, and not this one's to say.
    fn has(self, t: &MessageTrait) -> bool {
        match (t, self) {
            (_, Caller::Unknown) => true,
            (MessageTrait::AuthResults, Caller::Session(_, tx)) => !tx.auth_results.is_empty(),
            (MessageTrait::AuthResults, Caller::Delivery(_)) => false,
            (MessageTrait::UntrustedClient, Caller::Session(conn, _)) => {
                let trusted = conn.and_then(|c| c.attributes.iter().find(|(n, _)| *n == TRUSTED));
                trusted.is_none_or(|(_, v)| *v != "yes")
            }
            (MessageTrait::UntrustedClient, Caller::Delivery(env)) => {
                let trusted = env.attributes.iter().find(|(n, _)| n == TRUSTED);
                trusted.is_none_or(|(_, v)| v != "yes")
            }
            _ => true,
        }
    }
}

/// Whether the call by `caller` with `message` has `t`.
fn has_trait(
    t: &MessageTrait,
    caller: Caller<'_>,
    message: &mut MessageRes,
    facts: &mut MessageFacts,
) -> bool {
    match t {
        MessageTrait::AuthResults | MessageTrait::UntrustedClient => caller.has(t),
        MessageTrait::LargerThan(n) => message.size() > *n,
        MessageTrait::Header(name) => message.has_any_field(std::slice::from_ref(name)),
        MessageTrait::Attachment => *facts
            .attachment
            .get_or_insert_with(|| mime::has_attachment(message)),
    }
}

/// Whether the relay kept the limits plugin `i` of `host` declared for `hook`
/// (`host.want-calls-over-limits`) and every one allowed, so that the call is not needed.
/// Takes the chain's parts, not the chain: its instances may not be held across an await.
pub(super) async fn relay_kept(
    host: &PluginHost,
    holds: Option<&SessionHolds>,
    i: usize,
    hook: Hook,
    ctx: &ContextData,
) -> bool {
    let plugin = &host.plugins[i];
    let limits = plugin.wants.relay_limits(hook);
    if limits.is_empty() {
        return false;
    }
    let keeper = relay_limits::Keeper {
        plugin: &plugin.meta.name,
        hook,
        facts: &relay_limits::Facts::of(ctx.conn.as_deref(), &ctx.tx),
        backend: &*host.caps.backend,
        holds,
    };
    keeper.kept(limits).await
}

/// Whether `recipient` is on one of the lists plugin `i` of `host` declared for `rcpt`
/// (`host.want-listed-recipients`), or it declared none. Looked up in list form, as
/// plugins write addresses into lists; a lookup the backend cannot answer counts as a
/// member, so the plugin is called and meets the failure itself.
pub(super) async fn listed(host: &PluginHost, i: usize, recipient: &str) -> bool {
    let lists = host.plugins[i].wants.rcpt_lists();
    if lists.is_empty() {
        return true;
    }
    let member = list_form(recipient);
    for list in lists {
        match host.caps.backend.list_contains(list, &member).await {
            Ok(false) => {}
            Ok(true) | Err(_) => return true,
        }
    }
    false
}

/// An address as plugins put it in lists (the SDK's `list_address`): no surrounding white
/// space or angle brackets, ASCII letters lower-cased.
pub(crate) fn list_form(address: &str) -> Cow<'_, str> {
    let bare = address.trim().trim_start_matches('<').trim_end_matches('>');
    if bare.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(bare.to_ascii_lowercase())
    } else {
        Cow::Borrowed(bare)
    }
}

#[cfg(test)]
mod tests {
    use super::list_form;

    /// The SDK's `list_address` on the same inputs (plugin-sdk/src/host.rs).
    #[test]
    fn addresses_take_the_form_plugins_write_into_lists() {
        assert_eq!(list_form("Boss@Example.COM"), "boss@example.com");
        assert_eq!(list_form(" <a@b.test> "), "a@b.test");
        assert_eq!(list_form("\"Q R\"@b.test"), "\"q r\"@b.test");
        assert!(matches!(
            list_form("a@b.test"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
