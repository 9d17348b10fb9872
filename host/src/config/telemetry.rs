//! `[telemetry]`: OpenTelemetry traces over OTLP, and the bound on metric series.
//!
//! ```toml
//! [telemetry]
//! otlp_endpoint = "http://127.0.0.1:4318"   # empty (the default) = no traces, no cost
//! protocol = "http/protobuf"                # or "http/json"
//! service_name = "wasmrelay"                # service.name of every span
//! sampling_ratio = 1.0                      # share of new traces kept (0.0 ..= 1.0)
//! export_timeout = "10s"                    # one export request, connect included
//! metrics_max_domains = 100                 # recipient domains with series of their own
//! ```
//!
//! Spans go to `<otlp_endpoint>/v1/traces` (an endpoint that already ends in `/v1/traces`
//! is used as it is), in batches, from a thread of their own: a slow or absent collector
//! never delays mail, and spans it could not take are dropped and logged. The section is
//! read at start; a change needs a restart.

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// Traces and metric bounds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Base URL of an OTLP/HTTP collector (`http://host:4318`); empty exports nothing and
    /// installs no tracing layer.
    pub otlp_endpoint: String,
    /// The OTLP encoding: `http/protobuf` or `http/json`.
    pub protocol: OtlpProtocol,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// Share of traces started here that are kept; a delivery always follows the decision
    /// taken when its message was received.
    pub sampling_ratio: f64,
    /// Upper bound of one export request.
    #[serde(with = "humantime_serde")]
    pub export_timeout: Duration,
    /// Recipient domains given a series of their own in the delivery metrics; the rest
    /// count under `domain="other"`.
    pub metrics_max_domains: usize,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: String::new(),
            protocol: OtlpProtocol::HttpProtobuf,
            service_name: "wasmrelay".into(),
            sampling_ratio: 1.0,
            export_timeout: Duration::from_secs(10),
            metrics_max_domains: crate::metrics::DEFAULT_MAX_DOMAINS,
        }
    }
}

/// How spans are encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum OtlpProtocol {
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    #[serde(rename = "http/json")]
    HttpJson,
}

impl TelemetryConfig {
    /// Whether traces are exported.
    pub fn traces_enabled(&self) -> bool {
        !self.otlp_endpoint.trim().is_empty()
    }

    /// The URL spans are posted to.
    pub fn traces_url(&self) -> String {
        let base = self.otlp_endpoint.trim().trim_end_matches('/');
        if base.ends_with("/v1/traces") {
            base.to_string()
        } else {
            format!("{base}/v1/traces")
        }
    }

    pub fn validate(&self, key: &str, errors: &mut Vec<ConfigError>) {
        if self.traces_enabled() {
            match self.traces_url().parse::<hyper::Uri>() {
                Ok(uri) if uri.scheme_str() == Some("http") && uri.host().is_some() => {}
                Ok(uri) if uri.scheme_str() == Some("https") => errors.push(ConfigError::new(
                    format!("{key}.otlp_endpoint"),
                    "https is not supported: export to a collector on this host or a trusted \
                     network over http (an OpenTelemetry Collector can forward over TLS)",
                )),
                _ => errors.push(ConfigError::new(
                    format!("{key}.otlp_endpoint"),
                    format!("{:?} is not an http://host[:port] URL", self.otlp_endpoint),
                )),
            }
        }
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            errors.push(ConfigError::new(
                format!("{key}.sampling_ratio"),
                format!("{} is not between 0.0 and 1.0", self.sampling_ratio),
            ));
        }
        if self.service_name.trim().is_empty() {
            errors.push(ConfigError::new(
                format!("{key}.service_name"),
                "must not be empty",
            ));
        }
        if self.export_timeout.is_zero() {
            errors.push(ConfigError::new(
                format!("{key}.export_timeout"),
                "must be more than 0s",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        let c: TelemetryConfig = toml::from_str(text).unwrap();
        let mut errors = Vec::new();
        c.validate("telemetry", &mut errors);
        errors.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn off_by_default_and_urls_get_the_traces_path() {
        let c: TelemetryConfig = toml::from_str("").unwrap();
        assert_eq!(c, TelemetryConfig::default());
        assert!(!c.traces_enabled());
        let c: TelemetryConfig =
            toml::from_str("otlp_endpoint = \"http://127.0.0.1:4318/\"\nprotocol = \"http/json\"")
                .unwrap();
        assert_eq!(c.traces_url(), "http://127.0.0.1:4318/v1/traces");
        assert_eq!(c.protocol, OtlpProtocol::HttpJson);
        let c: TelemetryConfig =
            toml::from_str("otlp_endpoint = \"http://collector:4318/v1/traces\"").unwrap();
        assert_eq!(c.traces_url(), "http://collector:4318/v1/traces");
        assert!(toml::from_str::<TelemetryConfig>("protocol = \"grpc\"").is_err());
        assert!(toml::from_str::<TelemetryConfig>("endpoint = \"x\"").is_err());
    }

    #[test]
    fn bad_values_name_their_key() {
        assert!(errors("otlp_endpoint = \"http://127.0.0.1:4318\"").is_empty());
        let e = errors("otlp_endpoint = \"https://otel.example:4318\"");
        assert!(
            e[0].starts_with("telemetry.otlp_endpoint: https is not"),
            "{e:?}"
        );
        let e = errors("otlp_endpoint = \"collector:4318\"");
        assert!(e[0].starts_with("telemetry.otlp_endpoint: "), "{e:?}");
        let e = errors("sampling_ratio = 1.5\nservice_name = \" \"\nexport_timeout = \"0s\"");
        assert_eq!(
            e,
            [
                "telemetry.sampling_ratio: 1.5 is not between 0.0 and 1.0",
                "telemetry.service_name: must not be empty",
                "telemetry.export_timeout: must be more than 0s",
            ]
        );
    }
}
