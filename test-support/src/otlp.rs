//! An OpenTelemetry collector stand-in: `scripts/otlp_receiver.py`, a real OTLP/HTTP
//! endpoint on loopback that decodes what it receives with `opentelemetry-proto`.

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::Value;

use crate::process::{python_server, ChildGuard};

/// One span as the receiver decoded it. Ids are lower-case hex; a root's parent is `""`.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub start: u64,
    pub end: u64,
    pub attributes: HashMap<String, Value>,
}

impl ReceivedSpan {
    /// Attribute `key` as text (strings as they are, numbers and booleans printed).
    pub fn attr(&self, key: &str) -> Option<String> {
        self.attributes.get(key).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
}

pub struct OtlpReceiver {
    _child: ChildGuard,
    port: u16,
    spans: PathBuf,
    _dir: tempfile::TempDir,
}

impl OtlpReceiver {
    pub fn start() -> OtlpReceiver {
        let dir = tempfile::tempdir().expect("a temp dir");
        let spans = dir.path().join("spans.jsonl");
        let path = spans.display().to_string();
        let (child, port) = python_server("otlp_receiver.py", &[&path]).expect("OTLP receiver");
        OtlpReceiver {
            _child: child,
            port,
            spans,
            _dir: dir,
        }
    }

    /// The base URL for `[telemetry] otlp_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every span received so far, in order of arrival.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        let text = std::fs::read_to_string(&self.spans).unwrap_or_default();
        text.lines()
            .map(|line| {
                let v: Value = serde_json::from_str(line).expect("a span line is JSON");
                let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
                let attributes = v["attributes"]
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default();
                ReceivedSpan {
                    service: s("service"),
                    name: s("name"),
                    trace_id: s("trace_id"),
                    span_id: s("span_id"),
                    parent_span_id: s("parent_span_id"),
                    start: v["start"].as_u64().unwrap_or_default(),
                    end: v["end"].as_u64().unwrap_or_default(),
                    attributes,
                }
            })
            .collect()
    }
}
