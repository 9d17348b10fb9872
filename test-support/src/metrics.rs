//! Reading the relay's `/metrics` text with a real parser: Python's `prometheus_client`
//! (both its Prometheus and its OpenMetrics parser must accept the text).

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

/// Parsed metric families.
#[derive(Debug, Clone)]
pub struct MetricFamilies(pub Value);

/// Parses `text` with `scripts/metrics_text.py`; panics if either parser refuses it.
pub fn parse_metrics(text: &str) -> MetricFamilies {
    let mut child = Command::new("python3")
        .arg(crate::script("metrics_text.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("the parser reads the text");
    let out = child.wait_with_output().expect("the parser ends");
    crate::assert_success(&format!("parsing the metrics text\n{text}"), &out);
    MetricFamilies(serde_json::from_slice(&out.stdout).expect("the parser prints JSON"))
}

impl MetricFamilies {
    /// The type of family `name` (`counter`, `gauge`, `histogram` ...).
    pub fn kind(&self, name: &str) -> Option<&str> {
        self.0.get(name)?.get("type")?.as_str()
    }

    /// The value of sample `sample` whose labels are exactly `labels`.
    pub fn value(&self, sample: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples(sample)
            .find(|(l, _)| {
                l.len() == labels.len() && labels.iter().all(|(k, v)| l.get(*k) == Some(v))
            })
            .map(|(_, v)| v)
    }

    /// Every sample named `sample`: its labels and value.
    pub fn samples<'a>(
        &'a self,
        sample: &'a str,
    ) -> impl Iterator<Item = (std::collections::HashMap<&'a str, &'a str>, f64)> + 'a {
        let families = self.0.as_object().into_iter().flat_map(|m| m.values());
        families
            .flat_map(|f| f["samples"].as_array().into_iter().flatten())
            .filter(move |s| s[0] == sample)
            .map(|s| {
                let labels = s[1]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or_default()))
                    .collect();
                (labels, s[2].as_f64().unwrap_or(f64::NAN))
            })
    }
}
