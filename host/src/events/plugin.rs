//! `host.emit`: plugin events go to the same log as the relay's, as `"event": "plugin"`.

use serde_json::{Map, Value};

use super::{Event, Events};
use crate::plugins::{EventSink, PluginEvent, TracingEvents};

impl EventSink for Events {
    /// Without an event log, plugin events still reach the relay's own log (`tracing`).
    fn emit(&self, e: PluginEvent<'_>) {
        if !self.is_on() {
            TracingEvents.emit(e);
            return;
        }
        let fields: Map<String, Value> = e
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let mut event = Event::new("plugin")
            .field("name", e.name)
            .field("fields", fields);
        event.plugin = Some(e.plugin.to_string());
        event.hook = e.hook;
        event.queue_id = e.queue_id.map(str::to_string);
        event.recipient = e.recipient.map(str::to_string);
        Events::emit(self, event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Msg;
    use crate::plugins::Hook;

    #[tokio::test]
    async fn plugin_events_carry_plugin_hook_message_and_their_fields() {
        let (events, mut rx) = Events::channel(4, 1 << 20);
        let fields = vec![
            ("score".to_string(), "7.5".to_string()),
            ("event".to_string(), "delivered".to_string()),
        ];
        EventSink::emit(
            &events,
            PluginEvent {
                plugin: "filter",
                hook: Some(Hook::Data),
                queue_id: Some("q1"),
                recipient: None,
                name: "delivered",
                fields: &fields,
            },
        );
        let Some(Msg::Event(e, _)) = rx.recv().await else {
            panic!("no event");
        };
        let mut line = Vec::new();
        e.write_line(&mut line);
        let mut v: Value = serde_json::from_slice(&line).unwrap();
        v.as_object_mut().unwrap().remove("time");
        assert_eq!(
            v,
            serde_json::json!({"event": "plugin", "queue_id": "q1", "plugin": "filter",
                "hook": "data", "name": "delivered",
                "fields": {"score": "7.5", "event": "delivered"}}),
            "a plugin's names and fields stay inside its own event"
        );
    }
}
