//! The relay's own log on standard error, as `[log]` configures it: text or JSON lines.
//!
//! Message lines, one per message received and one per recipient outcome, go to the
//! [`MAIL`] target so that an operator can follow a message by its queue id, as Postfix's
//! `postfix/smtp[...]: QUEUEID: to=<...>, status=sent` lines allow. In text they read
//!
//! ```text
//! 2026-12-01T21:09:30.952113Z  INFO wasmrelay::mail: 1M8SQ1XNX0000NGAXNCHR: client=127.0.0.1, from=<app@example.org>, size=412, nrcpt=1, listener=relay-2525, status=queued
//! 2026-12-01T21:09:31.101734Z  INFO wasmrelay::mail: 1M8SQ1XNX0000NGAXNCHR: to=<user@example.com>, relay=127.0.0.1[127.0.0.1]:2526, delay=1, attempts=1, status=sent (250 2.0.0 OK)
//! ```
//!
//! and in JSON the same fields are keys of the line's object (`queue_id`, `to`, `relay`,
//! `status`, `detail` ...). A message line is built only when the level lets it through and
//! is written with one `write` like any other line: no allocation beyond the formatter's
//! buffer, so logging keeps up with thousands of messages a second.
//!
//! With `[telemetry] otlp_endpoint` set, `serve` adds a second layer beside the log that
//! exports the relay's spans over OTLP ([`crate::telemetry`]); the log level does not limit it.

use std::fmt::{self, Write as _};
use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::log::{LogConfig, LogFormat};
use crate::config::telemetry::TelemetryConfig;
use crate::telemetry::Traces;

/// The target of the per-message lines. Their fields: `queue_id` first, then `key=value`
/// pairs (`to`, `from` and `orig_to` are addresses, shown in angle brackets in text), and
/// `detail` last (the reply or reason, shown in parentheses in text).
pub const MAIL: &str = "wasmrelay::mail";

/// The variable that overrides `[log] level` (filter directives, as `level` takes).
pub const ENV: &str = "WASMRELAY_LOG";

/// Installs the global subscriber for `config`. `WASMRELAY_LOG`, if set and valid,
/// overrides the level; an invalid one is reported on the log and ignored.
pub fn init(config: &LogConfig) {
    install(config, None);
}

/// [`init`], plus trace export when `[telemetry] otlp_endpoint` is set. Returns the
/// exporter, to shut down (and flush) when the relay stops; an exporter that cannot be built
/// is logged and traces stay off.
pub fn init_with_telemetry(config: &LogConfig, telemetry: &TelemetryConfig) -> Option<Traces> {
    if !telemetry.traces_enabled() {
        install(config, None);
        return None;
    }
    match Traces::start(telemetry) {
        Ok(traces) => {
            install(config, Some(&traces));
            tracing::info!(endpoint = %telemetry.traces_url(), "exporting traces");
            Some(traces)
        }
        Err(e) => {
            install(config, None);
            tracing::error!(error = %e, "traces not exported");
            None
        }
    }
}

fn install(config: &LogConfig, traces: Option<&Traces>) {
    let (filter, bad_env) = match std::env::var(ENV) {
        Ok(directives) if !directives.trim().is_empty() => {
            let from_env = LogConfig {
                level: directives.clone(),
                ..config.clone()
            };
            match from_env.filter() {
                Ok(filter) => (filter, None),
                Err(e) => (default_filter(config), Some(format!("{directives:?}: {e}"))),
            }
        }
        _ => (default_filter(config), None),
    };
    let lines = match config.format {
        // Colours only for a person at a terminal: a log file or journald gets plain
        // `key=value` fields that grep and log shippers can match.
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .event_format(TextFormat::default())
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_span_list(false)
            .with_timer(LineTime)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    // The log level does not limit traces: the exporter gets every span of the relay (the
    // `transaction` and `plugin` spans are at debug) and no events.
    let spans = traces.map(|t| {
        tracing_opentelemetry::layer()
            .with_tracer(t.tracer())
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_filter(filter_fn(|meta: &tracing::Metadata<'_>| {
                meta.is_span() && meta.target().starts_with("wasmrelay")
            }))
    });
    // `try_init`: a second call (tests, `serve` after an early error) keeps the first.
    let _ = tracing_subscriber::registry()
        .with(lines)
        .with(spans)
        .try_init();
    if let Some(e) = bad_env {
        tracing::warn!("{ENV} ignored: {e}");
    }
}

fn default_filter(config: &LogConfig) -> EnvFilter {
    // Validation refused anything `filter` refuses; `info` is the last resort.
    config.filter().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// tracing-subscriber's full text format, except for [`MAIL`] lines, which read like
/// Postfix's: `QUEUEID: key=value, key=value (detail)`.
pub struct TextFormat {
    full: Format<Full, LineTime>,
}

impl Default for TextFormat {
    fn default() -> Self {
        TextFormat {
            full: Format::default().with_timer(LineTime),
        }
    }
}

/// A line's timestamp, as tracing-subscriber's [`SystemTime`] writes it
/// (`2026-12-01T21:09:30.952113Z`), from humantime's formatter, which fills one buffer where
/// tracing-subscriber's goes through `core::fmt` for each part: a fifth of a message line's
/// cost, with two such lines per message.
struct LineTime;

impl FormatTime for LineTime {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        let now = std::time::SystemTime::now();
        // humantime covers 1970 to 9999; a clock outside that gets the general formatter.
        let in_range = now
            .duration_since(std::time::UNIX_EPOCH)
            .is_ok_and(|d| d.as_secs() < 253_402_300_800);
        if in_range {
            write!(w, "{}", humantime::format_rfc3339_micros(now))
        } else {
            SystemTime.format_time(w)
        }
    }
}

impl<S, N> FormatEvent<S, N> for TextFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        if meta.target() != MAIL {
            return self.full.format_event(ctx, writer, event);
        }
        LineTime.format_time(&mut writer)?;
        write!(writer, " {:>5} {}: ", meta.level(), meta.target())?;
        let mut line = MailLine {
            out: &mut writer,
            first: true,
            result: Ok(()),
        };
        event.record(&mut line);
        line.result?;
        writeln!(writer)
    }
}

/// Writes a [`MAIL`] event's fields as `QUEUEID: key=value, ... (detail)`.
struct MailLine<'a, W: fmt::Write> {
    out: &'a mut W,
    first: bool,
    result: fmt::Result,
}

impl<W: fmt::Write> MailLine<'_, W> {
    /// Writes one field; `value` writes its value through [`Escaped`]. Strings and numbers,
    /// most of a line, go straight to the buffer rather than through `core::fmt`.
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut Escaped<'_, W>) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        self.result = self.write(field.name(), value);
    }

    /// Digits need no escaping.
    fn integer(&mut self, field: &Field, value: impl itoa::Integer) {
        self.field(field, |out| {
            out.0.write_str(itoa::Buffer::new().format(value))
        });
    }

    fn write(
        &mut self,
        name: &str,
        value: impl FnOnce(&mut Escaped<'_, W>) -> fmt::Result,
    ) -> fmt::Result {
        // Field names are identifiers in this crate's source: only values are escaped.
        match name {
            "queue_id" => {
                value(&mut Escaped(&mut *self.out))?;
                return self.out.write_str(": ");
            }
            "detail" => {
                self.out.write_str(" (")?;
                value(&mut Escaped(&mut *self.out))?;
                return self.out.write_char(')');
            }
            _ => {}
        }
        if !std::mem::take(&mut self.first) {
            self.out.write_str(", ")?;
        }
        let brackets = matches!(name, "to" | "from" | "orig_to");
        if name != "message" {
            self.out.write_str(name)?;
            self.out.write_str(if brackets { "=<" } else { "=" })?;
        }
        value(&mut Escaped(&mut *self.out))?;
        if brackets {
            self.out.write_char('>')?;
        }
        Ok(())
    }
}

impl<W: fmt::Write> Visit for MailLine<'_, W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, |out| out.write_str(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.integer(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.integer(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |out| {
            out.0.write_str(if value { "true" } else { "false" })
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%value` fields arrive here, formatted by their `Display`.
        self.field(field, |out| write!(out, "{value:?}"));
    }
}

/// Control characters (a CR or LF in a remote server's reply, an escape sequence in an
/// address) written as `\x..`, so that no peer can forge or garble a log line.
struct Escaped<'a, W: fmt::Write>(&'a mut W);

impl<W: fmt::Write> fmt::Write for Escaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(at) = control_at(rest) {
            self.0.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            write!(self.0, "\\x{:02x}", c as u32)?;
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

/// Where the first control character (`char::is_control`: U+0000..=U+001F and
/// U+007F..=U+009F) in `s` starts. Scanned as bytes, not decoded chars: every log line passes
/// through here, and in UTF-8 those characters are the bytes below 0x20, 0x7F, and 0xC2
/// followed by 0x80..=0x9F.
fn control_at(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut from = 0;
    while let Some(found) = bytes[from..]
        .iter()
        .position(|&b| b < 0x20 || b == 0x7f || b == 0xc2)
    {
        let at = from + found;
        if bytes[at] != 0xc2 || matches!(bytes.get(at + 1), Some(0x80..=0x9f)) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    /// What `emit` logs through the text format, without the timestamps.
    fn text(emit: impl FnOnce()) -> Vec<String> {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(buffer.clone())
            .event_format(TextFormat::default())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let out = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        out.lines()
            .map(|l| l.split_once(' ').unwrap().1.trim_start().to_string())
            .collect()
    }

    #[test]
    fn mail_lines_read_like_postfix() {
        let got = text(|| {
            tracing::info!(target: MAIL, queue_id = "Q1", client = "192.0.2.7",
                from = "", size = 412u64, nrcpt = 2usize, status = "queued");
            tracing::info!(target: MAIL, queue_id = "Q1", to = "user@example.com",
                relay = "mx.example.com[192.0.2.25]:25", delay = 3u64, status = "sent",
                detail = %"250 2.0.0 OK");
            tracing::warn!(target: MAIL, queue_id = "Q1", to = "x@example.com",
                relay = Option::<&str>::None, status = "bounced",
                detail = "550 5.1.1 no such user\r\nQ2: to=<forged>, status=sent");
            tracing::info!(peer = "192.0.2.7", "other lines keep the usual format");
        });
        assert_eq!(
            got,
            [
                "INFO wasmrelay::mail: Q1: client=192.0.2.7, from=<>, size=412, nrcpt=2, status=queued",
                "INFO wasmrelay::mail: Q1: to=<user@example.com>, relay=mx.example.com[192.0.2.25]:25, delay=3, status=sent (250 2.0.0 OK)",
                "WARN wasmrelay::mail: Q1: to=<x@example.com>, status=bounced (550 5.1.1 no such user\\x0d\\x0aQ2: to=<forged>, status=sent)",
                "INFO wasmrelay::logging::tests: other lines keep the usual format peer=\"192.0.2.7\"",
            ]
        );
    }

    #[test]
    fn mail_lines_write_every_kind_of_value() {
        let got = text(|| {
            tracing::info!(target: MAIL, queue_id = %"Q\n3", to = "a\rb@example.com",
                attempts = 0u64, offset = -12i64, dsn = true, relay = %"mx[192.0.2.1]:25");
        });
        assert_eq!(
            got,
            [
                "INFO wasmrelay::mail: Q\\x0a3: to=<a\\x0db@example.com>, attempts=0, offset=-12, \
              dsn=true, relay=mx[192.0.2.1]:25"
            ]
        );
    }

    #[test]
    fn line_time_reads_as_tracing_subscribers() {
        let shape = |t: &str| {
            t.len() == 27
                && t.char_indices().all(|(i, c)| match i {
                    4 | 7 => c == '-',
                    10 => c == 'T',
                    13 | 16 => c == ':',
                    19 => c == '.',
                    26 => c == 'Z',
                    _ => c.is_ascii_digit(),
                })
        };
        // The two clocks are read apart: a second may turn between them, not twice.
        for _ in 0..2 {
            let (mut ours, mut theirs) = (String::new(), String::new());
            LineTime.format_time(&mut Writer::new(&mut ours)).unwrap();
            SystemTime
                .format_time(&mut Writer::new(&mut theirs))
                .unwrap();
            assert!(shape(&ours), "{ours}");
            assert!(shape(&theirs), "{theirs}");
            if ours[..19] == theirs[..19] {
                return;
            }
        }
        panic!("LineTime and SystemTime disagree beyond the second");
    }

    #[test]
    fn escaping_keeps_text_and_marks_control_characters() {
        let mut s = String::new();
        write!(Escaped(&mut s), "a\u{1b}[31mé\tb\u{85}").unwrap();
        assert_eq!(s, "a\\x1b[31mé\\x09b\\x85");
        // Each char below U+0100 and a few beyond: U+0080..=U+00BF share the lead byte 0xC2
        // with the C1 controls, and only U+0080..=U+009F are escaped.
        for c in (0u32..0x100)
            .chain([0x2028, 0xfeff, 0x1f600])
            .filter_map(char::from_u32)
        {
            let mut s = String::new();
            write!(Escaped(&mut s), "x{c}y").unwrap();
            let want = if c.is_control() {
                format!("x\\x{:02x}y", c as u32)
            } else {
                format!("x{c}y")
            };
            assert_eq!(s, want, "U+{:04X}", c as u32);
        }
    }
}
