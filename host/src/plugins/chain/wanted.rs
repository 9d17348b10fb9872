//! Whether a plugin's load-time declarations (docs/plugins.md#declarations) let a call
//! through: the recipients a transaction has, the lists a recipient is on, the header
//! fields, part types and traits a message has. A call no declaration lets through is
//! skipped with the instance it would take.

use std::borrow::Cow;

use wasmrelay_codec::message::header_end;

use super::{Chain, Subject};
use crate::plugins::message::MessageRes;
use crate::plugins::message_traits::MessageTrait;
use crate::plugins::types::Hook;
use crate::plugins::{mime, wants, PluginHost};

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
    /// part types need the part tree of a multipart message to tell. Message traits are
    /// taken as met: this is a first look, before the call's subject is known.
    pub(super) fn reaches_any_raw(&self, hook: Hook, message: &[u8]) -> Option<bool> {
        let fields_end = header_end(message).map_or(message.len(), |h| h.fields);
        let fields = &message[..fields_end];
        let mut single_type = None;
        for i in (0..self.members.len()).filter(|&i| self.handles(i, hook)) {
            let wants = &self.host.plugins[i].wants;
            if let Some(names) = wants.headers(hook) {
                if !mime::has_any_field(fields, names) {
                    continue;
                }
            }
            let Some(wanted) = wants.types(hook) else {
                return Some(true);
            };
            let single = single_type.get_or_insert_with(|| mime::single_part_type(fields));
            match single {
                Some(t) if wanted.contains(t) => return Some(true),
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
            .any(|i| self.wanted_by(i, hook, None, message, &mut facts))
    }

    /// Whether plugin `i` is to see `message` at `hook`: the message has one of the header
    /// fields it declared for the hook (if any), one of the leaf part types (if any) and one
    /// of the traits (if any). Traits of the call's `subject` count as met without one.
    /// `facts` keeps what was found of this version of the message (the caller resets it
    /// after an edit).
    pub(super) fn wanted_by(
        &self,
        i: usize,
        hook: Hook,
        subject: Option<Subject<'_>>,
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
            if !traits.iter().any(|t| has_trait(t, subject, message, facts)) {
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

/// Whether the call about `subject` with `message` has `t`; without a subject, what depends
/// on it counts as met.
fn has_trait(
    t: &MessageTrait,
    subject: Option<Subject<'_>>,
    message: &mut MessageRes,
    facts: &mut MessageFacts,
) -> bool {
    match t {
        MessageTrait::AuthResults => match subject {
            Some(Subject::Session(ctx)) => !ctx.tx.auth_results.is_empty(),
            Some(Subject::Delivery(_)) => false,
            None => true,
        },
        MessageTrait::UntrustedClient => {
            let trusted = match subject {
                Some(Subject::Session(ctx)) => ctx
                    .conn
                    .as_ref()
                    .and_then(|c| c.attributes.iter().find(|(n, _)| *n == "trusted"))
                    .map(|(_, v)| *v),
                Some(Subject::Delivery(env)) => (env.attributes.iter())
                    .find(|(n, _)| n == "trusted")
                    .map(|(_, v)| v.as_str()),
                None => return true,
            };
            trusted != Some("yes")
        }
        MessageTrait::LargerThan(n) => message.size() > *n,
        MessageTrait::Header(name) => message.has_any_field(std::slice::from_ref(name)),
        MessageTrait::Attachment => *facts
            .attachment
            .get_or_insert_with(|| mime::has_attachment(message)),
    }
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
fn list_form(address: &str) -> Cow<'_, str> {
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
