//! OpenTelemetry traces: the OTLP exporter `[telemetry] otlp_endpoint` turns on, and the
//! link that makes one message's reception and deliveries one trace.
//!
//! Spans are the relay's `tracing` spans (target `wasmrelay::*`): `session` (one SMTP
//! connection), `transaction` (MAIL to the end of DATA or RSET, with the `queue_id`),
//! `plugin` (one hook call: `plugin`, `hook`, `verdict`, `duration_us`), `delivery` (one
//! attempt of one message) and `send` (one destination of an attempt). A layer that turns
//! them into OpenTelemetry spans is installed only when an endpoint is configured; without
//! one the `transaction` and `plugin` spans (debug level) are not even created at the
//! default log level.
//!
//! The link: when a message is spooled, the W3C `traceparent` of its transaction span is
//! stored in its envelope ([`traceparent`]); each delivery attempt's span takes that as its
//! parent ([`continue_trace`]), across restarts too, and so does the DSN of a bounce.

mod http;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::telemetry::{OtlpProtocol, TelemetryConfig};

/// Set once the OpenTelemetry layer is installed: until then the helpers below cost one
/// load.
static EXPORTING: AtomicBool = AtomicBool::new(false);

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("telemetry.otlp_endpoint: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("telemetry: tracing needs a tokio runtime")]
    NoRuntime,
}

/// The running exporter. [`Traces::shutdown`] sends what is still batched.
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// Builds the exporter for `config` (nothing is sent until spans end).
    pub fn start(config: &TelemetryConfig) -> Result<Traces, TelemetryError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| TelemetryError::NoRuntime)?;
        let client = http::OtlpHttp {
            runtime,
            timeout: config.export_timeout,
        };
        let protocol = match config.protocol {
            OtlpProtocol::HttpProtobuf => Protocol::HttpBinary,
            OtlpProtocol::HttpJson => Protocol::HttpJson,
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_protocol(protocol)
            .with_endpoint(config.traces_url())
            .with_timeout(config.export_timeout)
            .build()?;
        let sampler =
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sampling_ratio)));
        let resource = Resource::builder()
            .with_service_name(config.service_name.clone())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(sampler)
            .with_resource(resource)
            .build();
        Ok(Traces { provider })
    }

    /// The tracer the `tracing` layer writes to; marks export as on.
    pub(crate) fn tracer(&self) -> SdkTracer {
        EXPORTING.store(true, Relaxed);
        self.provider.tracer("wasmrelay")
    }

    /// Exports the spans still batched and stops the exporter (blocking work, done off the
    /// runtime's workers).
    pub async fn shutdown(self) {
        let provider = self.provider;
        let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %e, "trace exporter shutdown");
        }
    }
}

/// The W3C `traceparent` of the current span, to store with a message; `None` when traces
/// are off. Also records `queue_id` on that span (the transaction's).
pub fn traceparent(queue_id: &str) -> Option<String> {
    if !EXPORTING.load(Relaxed) {
        return None;
    }
    let span = tracing::Span::current();
    span.record("queue_id", queue_id);
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// Makes `span` (not yet entered) a child of the span `traceparent` names, so that a
/// delivery joins its message's trace. A missing or malformed value leaves `span` a root.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(value) = traceparent.filter(|_| EXPORTING.load(Relaxed)) else {
        return;
    };
    let carrier = HashMap::from([("traceparent".to_string(), value.to_string())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}
