//! MIME rewriting in the real relay binary, end to end: Python's `email` builds messages
//! (multipart/alternative in quoted-printable and in base64 with a PDF attachment, an HTML
//! alternative with an inline image, a single-part HTML message), smtplib sends them through
//! the relay, whose `mime-rewrite` test plugin rewrites every link in the HTML parts and
//! appends a line to the plain-text parts through the host's MIME access, and the aiosmtpd
//! sink receives them. Python's `email` (policy=default) then reads each delivered message
//! back: every part parses without a defect, in the structure it was sent in, the rewritten
//! text is there, the attachment bytes are identical, no line exceeds 998 octets.
//!
//! Run: `cargo test -p wasmrelay --test mime_rewrite`

use std::path::{Path, PathBuf};
use std::time::Duration;

use wasmrelay_test_support::relay::loopback_config;
use wasmrelay_test_support::{assert_success, python, test_plugin, Aiosmtpd, Downstream, Relay};

/// Builds the messages (`send PORT`) and checks what arrived (`check EML...`). Both sides
/// derive the messages from the same seeds, so the check knows what was sent.
const SCRIPT: &str = r#"
import email, email.policy, random, smtplib, sys
from email.charset import Charset, QP, BASE64
from email.mime.application import MIMEApplication
from email.mime.image import MIMEImage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

LINKS = ["http://example.org/a?x=1&y=2", "https://example.com/b", "http://example.net/%C3%A9"]
TRACK = 'href="https://track.test/c?u='

def html(seed):
    dash = "-" if seed == 2 else "\u2014"  # message 2 is Latin-1
    anchors = " ".join('<a href="%s">lien %d \u00e9t\u00e9</a>' % (u, i) for i, u in enumerate(LINKS))
    # One long line: the relay must fold it, whatever the encoding. Message 1's is Japanese,
    # so base64 is the smaller encoding for it.
    word = "\u8a9e%d" if seed == 1 else "mot%d"
    filler = " ".join(word % i for i in range(800))
    return "<html><body><p>Bonjour %s %s</p>\n<p>%s</p>\n</body></html>\n" % (dash, anchors, filler)

def plain(seed):
    return "Bonjour \u00e9t\u00e9 \u2014 message %d.\nSee %s\n" % (seed, LINKS[0])

def pdf(seed):
    return b"%PDF-1.4\n" + random.Random(seed).randbytes(20000)

def png():
    return b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4

def text(body, subtype, encoding, charset="utf-8"):
    cs = Charset(charset)
    cs.body_encoding = encoding
    return MIMEText(body, subtype, cs)

def messages():
    out = []
    for name, enc in (("qp", QP), ("base64", BASE64)):
        seed = len(out)
        alt = MIMEMultipart("alternative")
        alt.attach(text(plain(seed), "plain", enc))
        alt.attach(text(html(seed), "html", enc))
        msg = MIMEMultipart("mixed")
        msg.attach(alt)
        attachment = MIMEApplication(pdf(seed), "pdf", Name="report.pdf")
        attachment.add_header("Content-Disposition", "attachment", filename="report.pdf")
        msg.attach(attachment)
        out.append((name, msg))
    # Latin-1 quoted-printable HTML with an inline image, beside an 8-bit plain text.
    seed = len(out)
    related = MIMEMultipart("related")
    related.attach(text(html(seed), "html", QP, "iso-8859-1"))
    image = MIMEImage(png(), "png")
    image.add_header("Content-ID", "<logo>")
    image.add_header("Content-Disposition", "inline", filename="logo.png")
    related.attach(image)
    alt = MIMEMultipart("alternative")
    alt.attach(text(plain(seed), "plain", None))
    alt.attach(related)
    out.append(("latin1-related", alt))
    # A single-part HTML message: the relay rewrites the message's own header fields.
    out.append(("single", text(html(len(out)), "html", QP)))
    for name, msg in out:
        msg["Subject"] = name
        msg["From"] = "sender@example.org"
        msg["To"] = "rcpt@example.com"
    return out

def shape(msg):
    return [(p.get_content_type(), p.get_filename()) for p in msg.walk()]

if sys.argv[1] == "send":
    with smtplib.SMTP("127.0.0.1", int(sys.argv[2]), timeout=30) as s:
        for name, msg in messages():
            wire = msg.as_bytes(policy=email.policy.compat32.clone(linesep="\r\n"))
            s.sendmail("sender@example.org", ["rcpt@example.com"], wire)
    sys.exit(0)

sent = {name: (seed, msg) for seed, (name, msg) in enumerate(messages())}
for path in sys.argv[2:]:
    raw = open(path, "rb").read()
    long = [len(l) for l in raw.split(b"\r\n") if len(l) > 998]
    assert not long, "%s: lines of %s octets" % (path, long)
    got = email.message_from_bytes(raw, policy=email.policy.default)
    name = got["Subject"]
    seed, orig = sent.pop(name)
    assert shape(got) == shape(orig), (name, shape(got), shape(orig))
    rewritten = {"html": 0, "plain": 0}
    encodings = []
    for part in got.walk():
        assert not part.defects, (name, part.get_content_type(), part.defects)
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        content = part.get_content()
        if part.get_content_maintype() == "text":
            encodings.append("%s=%s" % (part.get_content_subtype(), part["Content-Transfer-Encoding"]))
        if ctype == "text/html":
            want = html(seed)
            for url in LINKS:
                want = want.replace('href="%s' % url, TRACK + url)
            assert content.replace("\r\n", "\n") == want, (name, content[:300])
            assert content.count(TRACK) == len(LINKS)
            rewritten["html"] += 1
        elif ctype == "text/plain":
            want = plain(seed) + "Tracked by wasmrelay.\n"
            assert content.replace("\r\n", "\n") == want, (name, content)
            rewritten["plain"] += 1
        elif ctype == "application/pdf":
            assert content == pdf(seed), name
        elif ctype == "image/png":
            assert content == png(), name
        else:
            raise AssertionError("unexpected part %s in %s" % (ctype, name))
    assert got["X-Mime-Rewrite"] == "html=%(html)d plain=%(plain)d" % rewritten, (name, got["X-Mime-Rewrite"])
    print(name, rewritten["html"], rewritten["plain"], *encodings)
assert not sent, "not delivered: %s" % list(sent)
"#;

/// The delivered messages' files at `sink`, once `n` have arrived.
fn delivered_files(sink: &Aiosmtpd, n: usize) -> Vec<PathBuf> {
    sink.wait_for(n, Duration::from_secs(30));
    let mut files: Vec<PathBuf> = std::fs::read_dir(sink.dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    files
}

/// The relay on `127.0.0.1:0`, delivering everything to `sink`, with the `mime-rewrite`
/// plugin.
fn start_relay(dir: &Path, sink: &Aiosmtpd) -> Relay {
    let plugin = format!(
        "[[plugins]]\npath = {:?}\nname = \"mime-rewrite\"\non_error = \"tempfail\"\n",
        test_plugin("mime-rewrite").display().to_string()
    );
    Relay::start(dir, &loopback_config(sink.addr(), &plugin))
}

#[test]
fn rewritten_parts_read_back_intact_with_python_email() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Aiosmtpd::start();
    let mut relay = start_relay(dir.path(), &sink);

    let port = relay.addr().port().to_string();
    let sent = python(SCRIPT, &["send", &port]);
    assert_success("building and sending with smtplib", &sent);
    let delivered = delivered_files(&sink, 4);
    assert_eq!(delivered.len(), 4);

    let mut args = vec!["check".to_string()];
    args.extend(delivered.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let checked = python(SCRIPT, &args);
    if !checked.status.success() {
        eprintln!("--- relay log ---\n{}", relay.log());
    }
    assert_success(
        "reading the delivered messages with Python's email",
        &checked,
    );
    let mut summary: Vec<String> = String::from_utf8(checked.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    summary.sort();
    // Message, html and plain parts rewritten, the encoding the relay chose for each.
    assert_eq!(
        summary,
        [
            "base64 1 1 plain=quoted-printable html=base64",
            "latin1-related 1 1 plain=quoted-printable html=quoted-printable",
            "qp 1 1 plain=quoted-printable html=quoted-printable",
            "single 1 0 html=quoted-printable",
        ]
    );
    relay.terminate();
}
