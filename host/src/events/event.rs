//! One event and its JSON line.

use std::time::SystemTime;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use crate::plugins::Hook;

/// One line of the event log. The keys every event may carry come first, in this order:
/// `time`, `event`, `queue_id`, `recipient`, `plugin`, `hook`; then the event's own fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub time: SystemTime,
    /// From the closed list in the module docs (`received`, `rejected`, ... `plugin`).
    pub name: &'static str,
    pub queue_id: Option<String>,
    pub recipient: Option<String>,
    /// The plugin that decided (or emitted), with the hook it was running.
    pub plugin: Option<String>,
    pub hook: Option<Hook>,
    /// The event's own fields, in order; keys are fixed by the relay, never by a peer or a
    /// plugin, so they cannot collide with the common keys above.
    pub fields: Vec<(&'static str, Value)>,
}

impl Event {
    /// An event stamped now.
    pub fn new(name: &'static str) -> Event {
        Event {
            time: SystemTime::now(),
            name,
            queue_id: None,
            recipient: None,
            plugin: None,
            hook: None,
            fields: Vec::new(),
        }
    }

    pub fn queue_id(mut self, id: impl ToString) -> Event {
        self.queue_id = Some(id.to_string());
        self
    }

    pub fn recipient(mut self, address: impl Into<String>) -> Event {
        self.recipient = Some(address.into());
        self
    }

    /// The plugin that decided and the hook it was running, when one did.
    pub fn decided_by(mut self, decider: Option<(&str, Hook)>) -> Event {
        if let Some((plugin, hook)) = decider {
            self.plugin = Some(plugin.to_string());
            self.hook = Some(hook);
        }
        self
    }

    pub fn field(mut self, key: &'static str, value: impl Into<Value>) -> Event {
        self.fields.push((key, value.into()));
        self
    }

    /// A field that is left out rather than written as `null` when there is nothing to say.
    pub fn field_opt(self, key: &'static str, value: Option<impl Into<Value>>) -> Event {
        match value {
            Some(v) => self.field(key, v),
            None => self,
        }
    }

    /// About how many bytes the event holds (its strings), for the bound on what may wait
    /// for the writer.
    pub fn weight(&self) -> usize {
        fn value(v: &Value) -> usize {
            match v {
                Value::String(s) => s.len() + 2,
                Value::Array(a) => a.iter().map(value).sum::<usize>() + 2,
                Value::Object(o) => o.iter().map(|(k, v)| k.len() + 4 + value(v)).sum(),
                _ => 8,
            }
        }
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        let own = text(&self.queue_id) + text(&self.recipient) + text(&self.plugin);
        let fields: usize = self
            .fields
            .iter()
            .map(|(k, v)| k.len() + 4 + value(v))
            .sum();
        std::mem::size_of::<Event>() + own + fields
    }

    /// Appends the event as one line of JSON (escaping keeps any CR or LF inside values off
    /// the line structure).
    pub fn write_line(&self, out: &mut Vec<u8>) {
        // Serializing plain strings, numbers and arrays into a Vec cannot fail.
        serde_json::to_writer(&mut *out, self).expect("an event serializes");
        out.push(b'\n');
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("time", &rfc3339_ms(self.time))?;
        map.serialize_entry("event", self.name)?;
        if let Some(id) = &self.queue_id {
            map.serialize_entry("queue_id", id)?;
        }
        if let Some(r) = &self.recipient {
            map.serialize_entry("recipient", r)?;
        }
        if let Some(p) = &self.plugin {
            map.serialize_entry("plugin", p)?;
        }
        if let Some(h) = self.hook {
            map.serialize_entry("hook", h.name())?;
        }
        for (k, v) in &self.fields {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// `2026-11-22T09:14:03.207Z`: RFC 3339, UTC, milliseconds.
pub fn rfc3339_ms(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn times_are_utc_with_milliseconds() {
        assert_eq!(rfc3339_ms(at(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_ms(at(1_795_338_843_207)),
            "2026-11-22T09:14:03.207Z"
        );
        assert_eq!(
            rfc3339_ms(at(1_795_338_843_207) + Duration::from_micros(999)),
            "2026-11-22T09:14:03.207Z",
            "truncated, never rounded into the next second"
        );
    }

    #[test]
    fn common_keys_first_then_fields_in_order_on_one_line() {
        let mut e = Event::new("rejected")
            .queue_id("q1")
            .recipient("a@b.example")
            .decided_by(Some(("policy", Hook::Rcpt)))
            .field("code", 550)
            .field("reply", "line one\r\nline two \"quoted\"")
            .field_opt("auth_user", None::<String>)
            .field("recipients", vec!["x@y", "z@w"]);
        e.time = at(1_795_338_843_207);
        let mut out = Vec::new();
        e.write_line(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "{\"time\":\"2026-11-22T09:14:03.207Z\",\"event\":\"rejected\",\"queue_id\":\"q1\",\
             \"recipient\":\"a@b.example\",\"plugin\":\"policy\",\"hook\":\"rcpt\",\"code\":550,\
             \"reply\":\"line one\\r\\nline two \\\"quoted\\\"\",\"recipients\":[\"x@y\",\"z@w\"]}\n"
        );
        assert_eq!(text.matches('\n').count(), 1);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["reply"], "line one\r\nline two \"quoted\"");
    }

    #[test]
    fn absent_keys_are_left_out() {
        let mut out = Vec::new();
        Event::new("queued").decided_by(None).write_line(&mut out);
        let v: Value = serde_json::from_slice(&out).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 2, "{v}");
        assert!(v.get("plugin").is_none() && v.get("queue_id").is_none());
    }
}
