//! Counts what the event stream already says: messages accepted (`received`), refusals by
//! stage and reply code (`rejected`), and the tracking endpoint's `open`, `click` and
//! `unsubscribe`. Runs on the emitter's task: a few atomic adds, and a read lock on a
//! family only for refusals and tracking events.

use prometheus_client::metrics::counter::Counter;

use super::{Labels, MessageFamilies};
use crate::events::{Event, EventTap};

pub struct MetricsTap {
    families: MessageFamilies,
    /// Pre-resolved: the tracking events, in the order of [`TRACKING`].
    tracking: [Counter; 3],
}

const TRACKING: [&str; 3] = ["open", "click", "unsubscribe"];

impl MetricsTap {
    pub(super) fn new(families: &MessageFamilies) -> MetricsTap {
        let tracking = TRACKING.map(|name| {
            families
                .tracking
                .get_or_create_owned(&vec![("event", name.into())])
        });
        MetricsTap {
            families: families.clone(),
            tracking,
        }
    }

    fn rejected(&self, event: &Event) {
        let field = |key: &str| event.fields.iter().find(|(k, _)| *k == key).map(|(_, v)| v);
        let Some(code) = field("code").and_then(|v| v.as_u64()) else {
            return;
        };
        let family = match code {
            400..=499 => &self.families.tempfailed,
            500..=599 => &self.families.rejected,
            _ => return,
        };
        // Stages are the relay's hook names, never a peer's text.
        let stage = field("stage")
            .and_then(|v| v.as_str())
            .map_or_else(|| "unknown".to_string(), super::label_value);
        let labels: Labels = vec![("stage", stage), ("code", code.to_string())];
        family.get_or_create(&labels).inc();
    }
}

impl EventTap for MetricsTap {
    fn event(&self, event: &Event) {
        match event.name {
            "received" => {
                self.families.accepted.inc();
            }
            "rejected" => self.rejected(event),
            name => {
                if let Some(i) = TRACKING.iter().position(|t| *t == name) {
                    self.tracking[i].inc();
                }
            }
        }
    }
}
