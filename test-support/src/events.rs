//! The relay's event log (`[events] path`), read back as JSON values.

use std::path::Path;

use serde_json::Value;

/// Every line of the event log at `path`, in order; empty while the file does not exist.
/// Panics on a line that is not JSON, naming it.
pub fn event_log(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}
