//! What the current hook call is about (its hook, message and recipient), kept in the
//! store for the events a plugin emits and for the capabilities that only some hooks grant.

use super::types::Hook;

/// The hook being run and the message and recipient it is about. Set for every call and
/// read only when the plugin emits an event (or asks for a hook-bound capability), so it
/// keeps its strings' buffers between calls rather than allocating two strings per call.
#[derive(Debug, Default)]
pub(crate) struct CallScope {
    hook: Option<Hook>,
    queue_id: ReusedText,
    recipient: ReusedText,
}

impl CallScope {
    pub(crate) fn set(&mut self, scope: Scope<'_>) {
        self.hook = Some(scope.hook);
        self.queue_id.set(scope.queue_id);
        self.recipient.set(scope.recipient);
    }

    pub(crate) fn hook(&self) -> Option<Hook> {
        self.hook
    }

    pub(crate) fn queue_id(&self) -> Option<&str> {
        self.queue_id.get()
    }

    pub(crate) fn recipient(&self) -> Option<&str> {
        self.recipient.get()
    }
}

/// A call's scope as the chain knows it, borrowed for `StoreState::arm_call`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scope<'a> {
    pub hook: Hook,
    pub queue_id: Option<&'a str>,
    pub recipient: Option<&'a str>,
}

/// An optional string whose buffer outlives its value.
#[derive(Debug, Default)]
struct ReusedText {
    text: String,
    present: bool,
}

impl ReusedText {
    fn set(&mut self, value: Option<&str>) {
        self.text.clear();
        self.present = value.is_some();
        self.text.push_str(value.unwrap_or_default());
    }

    fn get(&self) -> Option<&str> {
        self.present.then_some(self.text.as_str())
    }
}
