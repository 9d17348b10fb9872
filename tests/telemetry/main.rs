//! Metrics and traces of the relay under real traffic: SMTP from a real client through the
//! `policy` test plugin to a real downstream (aiosmtpd). Metrics are read as text and parsed
//! with Python's `prometheus_client`; spans go over OTLP/HTTP to a real receiver on
//! loopback that decodes them with `opentelemetry-proto`.
//!
//! Run: `cargo test -p wasmrelay --test telemetry`

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wasmrelay::config::Config;
use wasmrelay_test_support::relay::loopback_config;
use wasmrelay_test_support::{
    parse_metrics, queued_id, test_plugin, wait_for, Aiosmtpd, Downstream, MetricFamilies,
    OtlpReceiver, Raw, ReceivedSpan, Relay,
};

/// How long a test waits for mail at the downstream or for spans at the receiver (spans are
/// exported in batches every few seconds, and the machine may be busy).
const WAIT: Duration = Duration::from_secs(60);

/// The relay config: every domain to `sink`, the `policy` plugin, then `extra`.
fn config(sink: SocketAddr, extra: &str) -> String {
    let plugin = format!(
        "[[plugins]]\npath = {:?}\nname = \"policy\"\non_error = \"tempfail\"\n",
        test_plugin("policy").display().to_string()
    );
    loopback_config(sink, &format!("{plugin}\n{extra}"))
}

/// One session: a recipient the plugin refuses (550), one it takes, one message. Returns
/// the queue id.
fn send_one(addr: SocketAddr, subject: &str) -> String {
    let mut c = Raw::connect(addr);
    c.cmd("EHLO client.test", "250");
    c.cmd("MAIL FROM:<app@example.org>", "250");
    c.cmd("RCPT TO:<blocked@example.com>", "550");
    c.cmd("RCPT TO:<user@example.com>", "250");
    c.cmd("DATA", "354");
    let reply = c.cmd(&format!("Subject: {subject}\r\n\r\nfollow me\r\n."), "250");
    c.cmd("QUIT", "221");
    queued_id(&reply)
}

/// The spans `what` picks.
fn find(spans: &[ReceivedSpan], what: impl Fn(&ReceivedSpan) -> bool) -> Vec<&ReceivedSpan> {
    spans.iter().filter(|s| what(s)).collect()
}

/// The one span `what` picks; panics with every span unless there is exactly one.
fn one<'a>(
    spans: &'a [ReceivedSpan],
    desc: &str,
    what: impl Fn(&ReceivedSpan) -> bool,
) -> &'a ReceivedSpan {
    match find(spans, what).as_slice() {
        [s] => s,
        other => panic!(
            "expected one {desc} span, found {}: {spans:#?}",
            other.len()
        ),
    }
}

/// A `plugin` span of the `policy` plugin at `hook` with `verdict`.
fn hook_span(s: &ReceivedSpan, hook: &str, verdict: &str) -> bool {
    s.name == "plugin"
        && s.attr("plugin").as_deref() == Some("policy")
        && s.attr("hook").as_deref() == Some(hook)
        && s.attr("verdict").as_deref() == Some(verdict)
}

#[test]
fn one_message_is_one_trace_from_session_to_delivery() {
    let otlp = OtlpReceiver::start();
    let dir = tempfile::tempdir().unwrap();
    let sink = Aiosmtpd::start();
    let telemetry = format!(
        "[telemetry]\notlp_endpoint = {:?}\nservice_name = \"relay-under-test\"\n",
        otlp.endpoint()
    );
    let relay = Relay::start(dir.path(), &config(sink.addr(), &telemetry));
    let id = send_one(relay.addr(), "traced");
    sink.wait_subject("traced", WAIT);

    let mut spans = Vec::new();
    wait_for(
        "the session, delivery and delivery-result spans",
        WAIT,
        || {
            spans = otlp.spans();
            !find(&spans, |s| s.name == "session").is_empty()
                && !find(&spans, |s| hook_span(s, "delivery-result", "continue")).is_empty()
                && !find(&spans, |s| s.name == "delivery").is_empty()
        },
    );

    let session = one(&spans, "session", |s| s.name == "session");
    assert_eq!(session.parent_span_id, "", "the session starts the trace");
    assert_eq!(session.service, "relay-under-test");
    assert_eq!(session.attr("listener").as_deref(), Some("relay-0"));
    assert!(session.attr("peer").unwrap().starts_with("127.0.0.1:"));
    let trace = &session.trace_id;
    assert!(
        spans.iter().all(|s| &s.trace_id == trace),
        "one message, one trace: {spans:#?}"
    );

    let connect = one(&spans, "connect hook", |s| {
        hook_span(s, "connect", "continue")
    });
    assert_eq!(connect.parent_span_id, session.span_id);

    let txn = one(&spans, "transaction", |s| s.name == "transaction");
    assert_eq!(txn.parent_span_id, session.span_id);
    assert_eq!(txn.attr("queue_id").as_deref(), Some(id.as_str()));
    for (hook, verdict) in [
        ("mail-from", "continue"),
        ("rcpt", "reject"),
        ("rcpt", "continue"),
        ("data", "continue"),
    ] {
        let call = one(&spans, &format!("{hook} {verdict}"), |s| {
            hook_span(s, hook, verdict)
        });
        assert_eq!(
            call.parent_span_id, txn.span_id,
            "{hook} runs in the transaction"
        );
        let us: u64 = call.attr("duration_us").unwrap().parse().unwrap();
        assert!(
            us > 0 && us * 1000 <= call.end - call.start + 1_000_000,
            "{call:?}"
        );
    }

    // The delivery continues the reception's trace, across the spool.
    let delivery = one(&spans, "delivery", |s| s.name == "delivery");
    assert_eq!(delivery.parent_span_id, txn.span_id);
    assert_eq!(delivery.attr("queue_id").as_deref(), Some(id.as_str()));
    assert!(delivery.start >= txn.start);
    let route = one(&spans, "route hook", |s| hook_span(s, "route", "continue"));
    assert_eq!(route.parent_span_id, delivery.span_id);
    let send = one(&spans, "send", |s| s.name == "send");
    assert_eq!(send.parent_span_id, delivery.span_id);
    assert!(send.attr("destination").is_some(), "{send:?}");
    let result = one(&spans, "delivery-result hook", |s| {
        hook_span(s, "delivery-result", "continue")
    });
    assert_eq!(result.parent_span_id, delivery.span_id);
}

#[test]
fn json_export_links_reception_and_delivery_too() {
    let otlp = OtlpReceiver::start();
    let dir = tempfile::tempdir().unwrap();
    let sink = Aiosmtpd::start();
    let telemetry = format!(
        "[telemetry]\notlp_endpoint = \"{}/v1/traces\"\nprotocol = \"http/json\"\n",
        otlp.endpoint()
    );
    let relay = Relay::start(dir.path(), &config(sink.addr(), &telemetry));
    let id = send_one(relay.addr(), "json");
    sink.wait_subject("json", WAIT);
    let mut spans = Vec::new();
    wait_for("the transaction and delivery spans over JSON", WAIT, || {
        spans = otlp.spans();
        !find(&spans, |s| s.name == "transaction").is_empty()
            && !find(&spans, |s| s.name == "delivery").is_empty()
    });
    let txn = one(&spans, "transaction", |s| s.name == "transaction");
    let delivery = one(&spans, "delivery", |s| s.name == "delivery");
    assert_eq!(txn.service, "wasmrelay");
    assert_eq!(txn.attr("queue_id").as_deref(), Some(id.as_str()));
    assert_eq!(txn.trace_id.len(), 32);
    assert_eq!(delivery.trace_id, txn.trace_id);
    assert_eq!(delivery.parent_span_id, txn.span_id);
}

#[test]
fn without_an_endpoint_no_trace_context_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Aiosmtpd::start();
    let relay = Relay::start(dir.path(), &config(sink.addr(), ""));
    // The plugin's route hook holds `hold.test`: the envelope stays in the spool to be read.
    let mut c = Raw::connect(relay.addr());
    c.cmd("EHLO client.test", "250");
    c.cmd("MAIL FROM:<app@example.org>", "250");
    c.cmd("RCPT TO:<user@hold.test>", "250");
    c.cmd("DATA", "354");
    let id = queued_id(&c.cmd("Subject: held\r\n\r\nheld\r\n.", "250"));
    c.cmd("QUIT", "221");
    let mut queued = Vec::new();
    wait_for("the held message in the queue", WAIT, || {
        queued = relay.queued();
        queued.iter().any(|e| e.id.0 == id)
    });
    let env = queued
        .iter()
        .find(|e| e.id.0 == id)
        .expect("the held message");
    assert_eq!(env.trace, None);
    assert!(!relay.log().contains("exporting traces"), "{}", relay.log());
}

/// Starts the relay in this process (the library's `Relay`, whose `metrics` the admin
/// server will serve) on `text`, and returns it running with its address and metrics.
struct InProcess {
    runtime: tokio::runtime::Runtime,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    addr: SocketAddr,
    metrics: std::sync::Arc<wasmrelay::metrics::Metrics>,
}

impl InProcess {
    fn start(dir: &Path, text: &str) -> InProcess {
        let config = Config::parse(text, dir).unwrap_or_else(|e| panic!("{e:?}"));
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let relay = runtime
            .block_on(wasmrelay::relay::Relay::start(&config))
            .unwrap();
        let addr = relay.local_addrs()[0];
        let metrics = relay.metrics.clone();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let task = runtime.spawn(async move {
            relay.run(stop).await.unwrap();
        });
        InProcess {
            runtime,
            shutdown,
            task,
            addr,
            metrics,
        }
    }

    fn scrape(&self) -> MetricFamilies {
        parse_metrics(&self.metrics.encode())
    }

    fn stop(self) {
        self.shutdown.cancel();
        self.runtime.block_on(self.task).unwrap();
    }
}

/// `sample{labels}` in `f`, or 0 when the series does not exist (yet).
fn value(f: &MetricFamilies, sample: &str, labels: &[(&str, &str)]) -> f64 {
    f.value(sample, labels).unwrap_or(0.0)
}

#[test]
fn metrics_count_real_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Aiosmtpd::start();
    let relay = InProcess::start(dir.path(), &config(sink.addr(), ""));
    send_one(relay.addr, "counted");
    // A second connection that the plugin's connect hook lets in and that sends nothing.
    let mut c = Raw::connect(relay.addr);
    c.cmd("QUIT", "221");
    sink.wait_subject("counted", WAIT);

    let outcome = [
        ("domain", "example.com"),
        ("pool", "smarthost"),
        ("outcome", "delivered"),
    ];
    let mut f = relay.scrape();
    wait_for(
        "the delivery and the queue to empty in the metrics",
        WAIT,
        || {
            f = relay.scrape();
            value(&f, "wasmrelay_delivery_outcomes_total", &outcome) == 1.0
                && value(&f, "wasmrelay_queue_messages", &[]) == 0.0
                && value(&f, "wasmrelay_connections_open", &[]) == 0.0
        },
    );
    assert_eq!(value(&f, "wasmrelay_connections_total", &[]), 2.0);
    assert_eq!(value(&f, "wasmrelay_messages_accepted_total", &[]), 1.0);
    let refused = [("stage", "rcpt"), ("code", "550")];
    assert_eq!(
        value(&f, "wasmrelay_messages_rejected_total", &refused),
        1.0
    );
    let attempts = [("domain", "example.com"), ("pool", "smarthost")];
    assert_eq!(
        value(&f, "wasmrelay_delivery_attempts_total", &attempts),
        1.0
    );
    let calls = |hook, verdict| {
        let labels = [("plugin", "policy"), ("hook", hook), ("verdict", verdict)];
        value(&f, "wasmrelay_plugin_calls_total", &labels)
    };
    assert_eq!(calls("connect", "continue"), 2.0);
    assert_eq!(calls("rcpt", "reject"), 1.0);
    assert_eq!(calls("rcpt", "continue"), 1.0);
    assert_eq!(calls("data", "continue"), 1.0);
    assert_eq!(calls("route", "continue"), 1.0);
    let rcpt = [("plugin", "policy"), ("hook", "rcpt")];
    let latency = "wasmrelay_plugin_call_duration_seconds";
    assert_eq!(value(&f, &format!("{latency}_count"), &rcpt), 2.0);
    assert!(value(&f, &format!("{latency}_sum"), &rcpt) > 0.0);
    assert!(value(&f, "wasmrelay_spool_file_syncs_total", &[]) >= 2.0);
    assert!(value(&f, "wasmrelay_spool_commit_batches_total", &[]) >= 1.0);
    assert_eq!(
        f.kind("wasmrelay_state_redis_calls"),
        None,
        "no Redis, no Redis metrics"
    );
    relay.stop();
}

/// The same families through the admin server's `/metrics`, as a scraper sees them.
#[test]
fn metrics_endpoint_serves_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Aiosmtpd::start();
    let port = wasmrelay_test_support::ports::ReservedPort::new();
    let address = port.addr();
    let admin = format!("[admin]\nlisten = \"{address}\"\n");
    let relay = Relay::start(dir.path(), &config(sink.addr(), &admin));
    send_one(relay.addr(), "scraped");
    sink.wait_subject("scraped", WAIT);
    let scrape = || {
        let out = std::process::Command::new("curl")
            .args(["-sf", &format!("http://{address}/metrics")])
            .output()
            .unwrap();
        wasmrelay_test_support::assert_success("curl /metrics", &out);
        parse_metrics(&String::from_utf8(out.stdout).unwrap())
    };
    let delivered = [
        ("domain", "example.com"),
        ("pool", "smarthost"),
        ("outcome", "delivered"),
    ];
    let mut f = scrape();
    wait_for("the delivery in /metrics", WAIT, || {
        f = scrape();
        value(&f, "wasmrelay_delivery_outcomes_total", &delivered) == 1.0
    });
    assert_eq!(value(&f, "wasmrelay_messages_accepted_total", &[]), 1.0);
    let refused = [("stage", "rcpt"), ("code", "550")];
    assert_eq!(
        value(&f, "wasmrelay_messages_rejected_total", &refused),
        1.0
    );
    let rcpt = [
        ("plugin", "policy"),
        ("hook", "rcpt"),
        ("verdict", "reject"),
    ];
    assert_eq!(value(&f, "wasmrelay_plugin_calls_total", &rcpt), 1.0);
    assert_eq!(
        f.kind("wasmrelay_plugin_call_duration_seconds"),
        Some("histogram")
    );
    assert_eq!(f.kind("wasmrelay_queue_messages"), Some("gauge"));
}
