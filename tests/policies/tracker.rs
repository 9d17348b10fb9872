//! The `tracker` plugin end to end: the relay binary with `builtin = "tracker"` and its
//! `[tracking]` endpoint, Python's smtplib sending, `wasmrelay sink` receiving, Python's
//! `email` parsing what arrived, curl and Python's `http.client` fetching the links.
//!
//! Refusing a suppressed recipient at RCPT is the `router` plugin's job; here the test
//! plugin `list-reader` (tests/plugins) does it: it refuses recipients on the
//! `suppression` list with `550 5.7.1 recipient unsubscribed`.
//!
//! Run: `cargo test -p wasmrelay --test policies tracker`

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use wasmrelay_test_support::relay::loopback_config;
use wasmrelay_test_support::{
    assert_success, binary, event_log, python, rcpt_reply, smtplib_send, test_plugin, wait_for,
    Downstream, Relay, ReservedPort, WasmrelaySink,
};
use wasmrelay_tracking_token::{Key, Kind};

const SECRET: &str = "end-to-end-secret-0123456789abcdef0123";
const WAIT: Duration = Duration::from_secs(60);

const TEXT: &str = "Spring sale: https://shop.example.com/sale?a=1&b=2\r\n\
                    Cafe prices, with a line long enough to be folded by quoted-printable \
                    encoding once the relay re-encodes anything around it.\r\n";
const HTML: &str = "<html><head><title>https://example.com/title</title></head><body>\r\n\
<p>Visit https://example.com/plain-text-url or <a href=\"https://shop.example.com/sale?a=1&amp;b=2\">the sale</a>.</p>\r\n\
<p><a href='http://example.com/second'>second</a> <a href=\"mailto:help@example.com\">help</a> \
<a href=\"#top\">top</a> <a href=\"tel:+15550100\">call</a></p>\r\n\
<!-- <a href=\"https://example.com/commented\"> -->\r\n\
</body></html>\r\n";
/// The attachment's bytes, base64 in the message.
const PDF: &[u8] = b"%PDF-1.4\n\x00\x01\x02\xff binary attachment bytes\n%%EOF\n";

fn newsletter(from: &str) -> String {
    use base64::Engine;
    let pdf = base64::engine::general_purpose::STANDARD.encode(PDF);
    format!(
        "From: Newsletter <{from}>\r\nTo: subscribers@example.com\r\nSubject: Spring sale\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"mixed\"\r\n\r\n\
         --mixed\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n\
         --alt\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
         {TEXT}\r\n--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{HTML}\r\n--alt--\r\n\r\n\
         --mixed\r\nContent-Type: application/pdf\r\n\
         Content-Disposition: attachment; filename=\"sale.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{pdf}\r\n--mixed--\r\n"
    )
}

/// Parses a delivered message with Python's `email` and reports what the test checks.
const PARSE: &str = r#"
import email, email.policy, json, re, sys
msg = email.message_from_bytes(open(sys.argv[1], "rb").read(), policy=email.policy.default)
out = {"defects": [str(d) for p in msg.walk() for d in p.defects],
       "list_unsubscribe": msg.get("List-Unsubscribe"),
       "list_unsubscribe_post": msg.get("List-Unsubscribe-Post"),
       "types": [p.get_content_type() for p in msg.walk()]}
for part in msg.walk():
    ctype = part.get_content_type()
    if ctype == "text/plain":
        out["text"] = part.get_content()
    elif ctype == "text/html":
        html = part.get_content()
        out["html"] = html
        out["hrefs"] = re.findall(r'href=["\']?([^"\' >]+)', html)
        out["imgs"] = re.findall(r'<img src="([^"]+)"', html)
    elif ctype == "application/pdf":
        out["pdf"] = list(part.get_content())
print(json.dumps(out))
"#;

fn parse(dir: &Path, data: &[u8]) -> Value {
    let path = dir.join("delivered.eml");
    std::fs::write(&path, data).unwrap();
    let out = python(PARSE, &[path.to_str().unwrap()]);
    assert_success("parse with Python's email", &out);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn config(sink: SocketAddr, http: &ReservedPort) -> String {
    config_with(sink, http, &format!("secret = \"{SECRET}\""))
}

/// The test config with `secrets` (the `secret` and `old_secrets` keys) for the tracker.
fn config_with(sink: SocketAddr, http: &ReservedPort, secrets: &str) -> String {
    let list_reader = test_plugin("list-reader").display().to_string();
    loopback_config(
        sink,
        &format!(
            r#"[events]
path = "events.jsonl"

[[plugins]]
path = {list_reader:?}
name = "list-reader"

[[plugins]]
builtin = "tracker"
config = {{ {secrets}, base_url = "http://{http}/", unsubscribe_link = "Unsubscribe", exclude_senders = ["alerts.example.com"] }}

[[lists]]
name = "suppression"
readers = ["list-reader"]

[tracking]
listen = "{http}"
"#,
            http = http.addr()
        ),
    )
}

/// A relay on the test config in a fresh directory (kept while the first value lives),
/// delivering to a `wasmrelay sink`, its tracking endpoint on the reserved port.
fn start() -> (tempfile::TempDir, WasmrelaySink, ReservedPort, Relay) {
    let tmp = tempfile::tempdir().unwrap();
    let sink = WasmrelaySink::start();
    let http = ReservedPort::new();
    let relay = Relay::start(tmp.path(), &config(sink.addr(), &http));
    (tmp, sink, http, relay)
}

/// `curl` with a status line of its own: `CODE CONTENT-TYPE REDIRECT` on stdout, the body
/// in `body_file`.
fn curl(args: &[&str], body_file: &Path) -> String {
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "30", "--output"])
        .arg(body_file)
        .args([
            "--write-out",
            "%{http_code} %{content_type} %{redirect_url}",
        ])
        .args(args)
        .output()
        .expect("curl runs");
    assert_success("curl", &out);
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn list_show(dir: &Path) -> String {
    let out = Command::new(binary())
        .args(["list", "--config"])
        .arg(dir.join("relay.toml"))
        .args(["show", "suppression"])
        .output()
        .unwrap();
    assert_success("wasmrelay list show", &out);
    String::from_utf8(out.stdout).unwrap()
}

fn events(dir: &Path, name: &str) -> Vec<Value> {
    event_log(&dir.join("events.jsonl"))
        .into_iter()
        .filter(|e| e["event"] == name)
        .collect()
}

fn token_of(url: &str) -> &str {
    url.rsplit('/').next().unwrap()
}

#[test]
fn newsletter_tracking_and_one_click_unsubscribe() {
    let (_tmp, sink, http, relay) = start();
    let dir = relay.config_path().parent().unwrap();
    let base = format!("http://{}", http.addr());
    let key = Key::new(SECRET.as_bytes()).unwrap();

    let rcpts = ["alice@example.org", "bob@example.org"];
    assert_eq!(
        smtplib_send(
            relay.addr(),
            "news@example.com",
            &rcpts,
            &newsletter("news@example.com")
        ),
        "[]"
    );
    let delivered = sink.wait_for(2, WAIT);
    let mut copies = Vec::new();
    for d in &delivered {
        let rcpt = d.rcpt_tos.join(",");
        let m = parse(dir, &d.data);
        assert_eq!(m["defects"], serde_json::json!([]), "{rcpt}: {m}");
        assert_eq!(
            m["types"],
            serde_json::json!([
                "multipart/mixed",
                "multipart/alternative",
                "text/plain",
                "text/html",
                "application/pdf"
            ]),
            "the structure is kept"
        );
        // The text alternative and the attachment are what was sent.
        assert_eq!(
            m["text"].as_str().unwrap().replace("\r\n", "\n"),
            TEXT.replace("\r\n", "\n")
        );
        let pdf: Vec<u8> = serde_json::from_value(m["pdf"].clone()).unwrap();
        assert_eq!(pdf, PDF);
        // RFC 8058 headers, with this recipient's token.
        let unsub = m["list_unsubscribe"].as_str().unwrap();
        assert!(unsub.starts_with(&format!("<{base}/u/")), "{unsub}");
        assert_eq!(m["list_unsubscribe_post"], "List-Unsubscribe=One-Click");
        let unsub = unsub.trim_matches(['<', '>']).to_string();
        let claims = key.verify(token_of(&unsub), Kind::Unsubscribe).unwrap();
        assert_eq!(claims.recipient, rcpt);
        assert_eq!(claims.sender_domain, "example.com");
        // Links: the two web links tracked in order, the others left alone.
        let hrefs: Vec<String> = serde_json::from_value(m["hrefs"].clone()).unwrap();
        assert_eq!(hrefs.len(), 7, "{hrefs:?}");
        assert!(hrefs[0].starts_with(&format!("{base}/c/")), "{hrefs:?}");
        assert!(hrefs[1].starts_with(&format!("{base}/c/")), "{hrefs:?}");
        assert_eq!(
            hrefs[2..5],
            ["mailto:help@example.com", "#top", "tel:+15550100"]
        );
        assert_eq!(
            hrefs[5], "https://example.com/commented",
            "comments are not links"
        );
        assert_eq!(hrefs[6], unsub, "the visible unsubscribe link");
        let first = key.verify(token_of(&hrefs[0]), Kind::Click).unwrap();
        assert_eq!(
            (first.link, first.url.as_str()),
            (1, "https://shop.example.com/sale?a=1&b=2")
        );
        assert_eq!(first.queue_id, claims.queue_id);
        let html = m["html"].as_str().unwrap();
        assert!(
            html.contains("https://example.com/plain-text-url or"),
            "text is not rewritten"
        );
        assert!(html.contains("<title>https://example.com/title</title>"));
        let imgs: Vec<String> = serde_json::from_value(m["imgs"].clone()).unwrap();
        assert_eq!(imgs.len(), 1);
        assert!(
            html.find(imgs[0].as_str()) < html.find("</body>"),
            "the pixel is in the body"
        );
        copies.push((rcpt, hrefs, imgs[0].clone(), unsub, claims.queue_id));
    }
    copies.sort();
    assert_eq!(copies[0].0, "alice@example.org");
    assert_ne!(
        copies[0].1[0], copies[1].1[0],
        "each recipient's links are their own"
    );
    assert_ne!(copies[0].2, copies[1].2);
    let (_, hrefs, pixel, unsub, queue_id) = copies.remove(0);

    // The pixel is a GIF, every time; opens are counted.
    let body = dir.join("body");
    for _ in 0..2 {
        assert_eq!(curl(&[&pixel], &body), "200 image/gif");
        assert!(std::fs::read(&body).unwrap().starts_with(b"GIF89a"));
    }
    // A click goes to the original URL (entities decoded).
    assert_eq!(
        curl(&[&hrefs[0]], &body),
        "302 text/plain; charset=utf-8 https://shop.example.com/sale?a=1&b=2"
    );
    // Tampered and forged tokens: 404, and nothing recorded.
    let t = token_of(&hrefs[0]);
    let flipped = if t.ends_with('A') { "B" } else { "A" };
    let tampered = format!("{base}/c/{}{flipped}", &t[..t.len() - 1]);
    assert!(curl(&[&tampered], &body).starts_with("404 "));
    let forged = Key::new(b"somebody else's key, long enough to sign")
        .unwrap()
        .sign(&wasmrelay_tracking_token::Claims {
            url: "https://evil.example/".into(),
            ..key.verify(t, Kind::Click).unwrap()
        })
        .unwrap();
    assert!(curl(&[&format!("{base}/c/{forged}")], &body).starts_with("404 "));
    // The unsubscribe page asks; only the one-click POST unsubscribes.
    assert!(curl(&[&unsub], &body).starts_with("200 text/html"));
    assert!(std::fs::read_to_string(&body)
        .unwrap()
        .contains("<form method=\"post\">"));
    assert!(
        list_show(dir).starts_with("0 member"),
        "a GET unsubscribes no one"
    );
    assert!(rcpt_reply(relay.addr(), "news@example.com", "alice@example.org").starts_with("250 "));
    let posted = curl(&["--data", "List-Unsubscribe=One-Click", &unsub], &body);
    assert!(posted.starts_with("200 text/html"), "{posted}");
    assert_eq!(
        list_show(dir),
        "alice@example.org\n1 member(s) on suppression\n"
    );
    // The next message to alice is refused at RCPT; bob still gets mail.
    assert_eq!(
        rcpt_reply(relay.addr(), "news@example.com", "alice@example.org"),
        "550 5.7.1 recipient unsubscribed"
    );
    assert!(rcpt_reply(relay.addr(), "news@example.com", "bob@example.org").starts_with("250 "));

    // The event log has each event, with queue id, recipient, link and time.
    wait_for("the unsubscribe event", WAIT, || {
        !events(dir, "unsubscribe").is_empty()
    });
    let opens = events(dir, "open");
    assert_eq!(opens.len(), 2, "{opens:?}");
    assert_eq!(opens[1]["count"], 2);
    let clicks = events(dir, "click");
    assert_eq!(
        clicks.len(),
        1,
        "the tampered and forged clicks are not recorded"
    );
    assert_eq!(clicks[0]["url"], "https://shop.example.com/sale?a=1&b=2");
    assert_eq!(clicks[0]["link"], 1);
    for e in opens
        .iter()
        .chain(&clicks)
        .chain(&events(dir, "unsubscribe"))
    {
        assert_eq!(e["queue_id"].as_str(), Some(queue_id.as_str()), "{e}");
        assert_eq!(e["recipient"], "alice@example.org");
        assert_eq!(e["sender_domain"], "example.com");
        assert!(e["time"].as_str().unwrap().starts_with("20"), "{e}");
    }
    let delivered_events = events(dir, "delivered");
    assert!(delivered_events
        .iter()
        .any(|e| e["queue_id"] == queue_id.as_str()));
    let tracked = events(dir, "plugin");
    assert_eq!(
        tracked.iter().filter(|e| e["name"] == "tracked").count(),
        2,
        "{tracked:?}"
    );
}

#[test]
fn mail_without_html_or_from_excluded_senders_is_untouched() {
    let (_tmp, sink, http, relay) = start();
    let plain = "From: news@example.com\r\nSubject: text only\r\n\r\nSee https://example.com/\r\n";
    assert_eq!(
        smtplib_send(
            relay.addr(),
            "news@example.com",
            &["carol@example.org"],
            plain
        ),
        "[]"
    );
    let excluded = newsletter("alerts@alerts.example.com");
    assert_eq!(
        smtplib_send(
            relay.addr(),
            "alerts@alerts.example.com",
            &["carol@example.org"],
            &excluded
        ),
        "[]"
    );
    let delivered = sink.wait_for(2, WAIT);
    for (d, sent) in delivered.iter().zip([plain, excluded.as_str()]) {
        // What arrives is what was sent, after the relay's Received field.
        let text = d.text();
        assert!(
            text.ends_with(sent.split_once("\r\n\r\n").unwrap().1),
            "{text}"
        );
        assert!(!text.contains("List-Unsubscribe"), "{text}");
        assert!(!text.contains(&http.addr().to_string()), "{text}");
    }
}

/// Garbage, oversized heads, slow clients and a burst of requests: the endpoint answers
/// each as it deserves and keeps serving.
const ABUSE: &str = r#"
import concurrent.futures, http.client, socket, sys
host, port, pixel = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def raw(data, timeout=10):
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # answered and closed before the request was all sent: the answer is queued
        return s.recv(100).split(b"\r\n")[0]
    except (ConnectionResetError, socket.timeout):
        return b"closed"
    finally:
        s.close()

def get(path, method="GET"):
    c = http.client.HTTPConnection(host, port, timeout=30)
    c.request(method, path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body

results = {
    "garbage": raw(b"\x00\xff\x16\x03\x01 not http at all\r\n\r\n").decode(errors="replace"),
    "huge_head": raw(b"GET /o/x HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n").decode(errors="replace"),
    "bad_version": raw(b"GET /o/x HTTP/9.9\r\n\r\n").decode(errors="replace"),
    "half_request": raw(b"GET /o/").decode(errors="replace"),
}
with concurrent.futures.ThreadPoolExecutor(32) as pool:
    statuses = list(pool.map(lambda _: get(pixel)[0], range(300)))
results["burst"] = sorted(set(statuses))
results["head"] = get(pixel, "HEAD")[0]
results["after"] = get(pixel)
results["after"] = [results["after"][0], results["after"][1][:6].decode()]
print(results)
"#;

#[test]
fn the_endpoint_survives_malformed_requests_and_load() {
    let (_tmp, sink, http, relay) = start();
    let dir = relay.config_path().parent().unwrap();
    let html = "From: news@example.com\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n";
    assert_eq!(
        smtplib_send(
            relay.addr(),
            "news@example.com",
            &["dave@example.org"],
            html
        ),
        "[]"
    );
    let delivered = sink.wait_for(1, WAIT);
    let m = parse(dir, &delivered[0].data);
    let pixel = m["imgs"][0].as_str().expect("a pixel");
    let pixel = &pixel[pixel.find("/o/").unwrap()..];

    let out = python(ABUSE, &["127.0.0.1", &http.port().to_string(), pixel]);
    assert_success("the abuse script", &out);
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    for expected in [
        "'garbage': 'HTTP/1.1 400 Bad Request'",
        "'huge_head': 'HTTP/1.1 431 Request Header Fields Too Large'",
        "'burst': [200]",
        "'head': 200",
        "'after': [200, 'GIF89a']",
    ] {
        assert!(report.contains(expected), "{expected} in {report}");
    }
    // The 300 opens of the burst and the last one, all counted (a HEAD is not an open).
    wait_for("301 open events", WAIT, || events(dir, "open").len() == 301);
    let max = events(dir, "open")
        .iter()
        .filter_map(|e| e["count"].as_i64())
        .max();
    assert_eq!(max, Some(301));
}

/// `wasmrelay plugin test builtin:tracker` on the sample session in plugins/tracker.
fn transcript() -> Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    Command::new(binary())
        .args(["plugin", "test", "builtin:tracker", "--config"])
        .arg(root.join("plugins/tracker/session.toml"))
        .arg("--transcript")
        .arg(root.join("plugins/tracker/session.txt"))
        .output()
        .unwrap()
}

#[test]
fn the_sample_transcript_runs() {
    let out = transcript();
    assert_success("wasmrelay plugin test builtin:tracker", &out);
    let text = String::from_utf8(out.stdout).unwrap();
    let key = Key::new(b"sample-secret-for-the-transcript-only-0123456789").unwrap();
    // Both newsletter copies are edited, each with its own List-Unsubscribe URL.
    let mut unsubscribes = Vec::new();
    for (copy, rcpt) in [
        (
            "copy <alice@example.org> -> continue\n",
            "alice@example.org",
        ),
        ("copy <Bob@Example.org> -> continue\n", "bob@example.org"),
    ] {
        let at = text
            .find(copy)
            .unwrap_or_else(|| panic!("{copy:?} in\n{text}"));
        let after = &text[at + copy.len()..];
        let header = "  | List-Unsubscribe: <https://t.example.com/u/";
        assert!(
            after.starts_with("  | "),
            "{copy:?} edits the copy:\n{text}"
        );
        let line = after.lines().find(|l| l.starts_with(header)).unwrap();
        let token = line[header.len()..].trim_end_matches('>');
        let claims = key.verify(token, Kind::Unsubscribe).unwrap();
        assert_eq!(claims.recipient, rcpt);
        assert_eq!(claims.queue_id, "transcript");
        assert!(after.contains("  | List-Unsubscribe-Post: List-Unsubscribe=One-Click\n"));
        unsubscribes.push(token.to_string());
    }
    assert_ne!(unsubscribes[0], unsubscribes[1]);
    // The text-only message and the excluded sender's are not edited.
    for copy in [
        "copy <carol@example.org> -> continue\nmail <alerts@ops.example.com>",
        "copy <alice@example.org> -> continue\nclosed -> done",
    ] {
        assert!(text.contains(copy), "{copy:?} unedited in\n{text}");
    }
    assert_eq!(text.matches("List-Unsubscribe:").count(), 2, "{text}");
}

/// Sends a one-part HTML message to `rcpt` and returns its click URL as delivered.
fn tracked_link(relay: &Relay, sink: &WasmrelaySink, dir: &Path, rcpt: &str) -> String {
    let html = "From: news@example.com\r\nContent-Type: text/html\r\n\r\n\
                <a href=\"https://example.com/x\">x</a>\r\n";
    let before = sink.messages().len();
    assert_eq!(
        smtplib_send(relay.addr(), "news@example.com", &[rcpt], html),
        "[]"
    );
    let delivered = sink.wait_for(before + 1, WAIT);
    let m = parse(dir, &delivered[before].data);
    m["hrefs"][0].as_str().unwrap().to_string()
}

#[test]
fn a_rotated_secret_is_verified_after_a_reload_and_the_old_one_still_is() {
    let (_tmp, sink, http, relay) = start();
    let dir = relay.config_path().parent().unwrap();
    let body = dir.join("body");
    let old_link = tracked_link(&relay, &sink, dir, "erin@example.org");

    let new_secret = "the-next-secret-after-rotation-0123456789";
    relay.write_config(&config_with(
        sink.addr(),
        &http,
        &format!("secret = \"{new_secret}\", old_secrets = [\"{SECRET}\"]"),
    ));
    relay.sighup();
    relay.wait_log("configuration reloaded", WAIT);
    let new_link = tracked_link(&relay, &sink, dir, "erin@example.org");
    let new_key = Key::new(new_secret.as_bytes()).unwrap();
    assert!(
        new_key.verify(token_of(&new_link), Kind::Click).is_some(),
        "signed with the new secret"
    );
    for link in [&old_link, &new_link] {
        assert_eq!(
            curl(&[link], &body),
            "302 text/plain; charset=utf-8 https://example.com/x",
            "{link}"
        );
    }
    // Dropping the old secret retires its links.
    relay.write_config(&config_with(
        sink.addr(),
        &http,
        &format!("secret = \"{new_secret}\""),
    ));
    relay.sighup();
    wait_for("the second reload", WAIT, || {
        relay.log().matches("configuration reloaded").count() == 2
    });
    assert!(curl(&[&old_link], &body).starts_with("404 "));
    assert!(curl(&[&new_link], &body).starts_with("302 "));
}
