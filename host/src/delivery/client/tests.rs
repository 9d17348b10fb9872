//! The client against a scripted server over an in-memory stream.

use wasmrelay_codec::reply::{Enhanced, MAX_REPLY_LINE};

use super::*;
use crate::config::delivery::TimeoutConfig;
use crate::delivery::Outcome;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

fn opts() -> ClientOptions {
    ClientOptions {
        helo_name: "relay.test".into(),
        tls: TlsPolicy::Opportunistic,
        tls_verify: true,
        auth: None,
        timeouts: TimeoutConfig::default(),
    }
}

/// A fake server: `script` is a list of (expected client line prefix or "" for none, reply).
/// DATA content is collected until the lone dot and returned.
async fn serve(
    io: tokio::io::DuplexStream,
    script: Vec<(&'static str, &'static str)>,
) -> (Vec<String>, Vec<u8>) {
    let (r, mut w) = tokio::io::split(io);
    let mut r = BufReader::new(r);
    let mut seen = Vec::new();
    let mut data = Vec::new();
    for (expect, reply) in script {
        if expect == "<data>" {
            loop {
                let mut line = Vec::new();
                r.read_until(b'\n', &mut line).await.unwrap();
                if line == b".\r\n" {
                    break;
                }
                data.extend_from_slice(&line);
            }
        } else if !expect.is_empty() {
            let mut line = String::new();
            r.read_line(&mut line).await.unwrap();
            assert!(
                line.starts_with(expect),
                "expected {expect:?}, got {line:?}"
            );
            seen.push(line.trim_end().to_string());
        }
        if !reply.is_empty() {
            w.write_all(reply.as_bytes()).await.unwrap();
        }
    }
    (seen, data)
}

fn tx<'a>(rcpts: &'a [&'a str], message: &'a [u8]) -> Transaction<'a> {
    Transaction {
        mail_from: "a@x.test",
        recipients: rcpts
            .iter()
            .map(|r| TxRecipient {
                address: r,
                notify: &[],
                orcpt: None,
            })
            .collect(),
        prefix: b"",
        message,
        eight_bit: false,
        smtputf8: false,
        ret_headers_only: false,
        envid: None,
    }
}

#[tokio::test]
async fn pipelined_transaction_with_per_recipient_results() {
    let (a, b) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(serve(
        b,
        vec![
            ("", "220 sink ESMTP\r\n"),
            ("EHLO relay.test", "250-sink\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250 8BITMIME\r\n"),
            ("MAIL FROM:<a@x.test> SIZE=", ""),
            ("RCPT TO:<b@y.test>", ""),
            ("RCPT TO:<c@y.test>", ""),
            ("RCPT TO:<d@y.test>", ""),
            ("DATA", "250 2.1.0 ok\r\n250 2.1.5 ok\r\n450 4.2.0 greylisted\r\n550 5.1.1 unknown\r\n354 go\r\n"),
            ("<data>", "250 2.0.0 queued as X\r\n"),
        ],
    ));
    let mut c = SmtpClient::handshake(
        Box::new(a),
        "sink[127.0.0.1]:25".into(),
        "sink",
        &opts(),
        TlsPolicy::Opportunistic,
    )
    .await
    .unwrap();
    assert!(c.capabilities().pipelining);
    let out = c
        .send(&tx(
            &["b@y.test", "c@y.test", "d@y.test"],
            b"Subject: x\n.dot\nbody",
        ))
        .await
        .unwrap();
    assert!(matches!(&out[0], Outcome::Delivered { .. }), "{out:?}");
    assert!(
        matches!(&out[1], Outcome::Transient(f) if f.status == Enhanced(4, 2, 0)),
        "{out:?}"
    );
    assert!(
        matches!(&out[2], Outcome::Permanent(f) if f.status == Enhanced(5, 1, 1)),
        "{out:?}"
    );
    let (_, data) = server.await.unwrap();
    assert_eq!(data, b"Subject: x\r\n..dot\r\nbody\r\n");
}

#[tokio::test]
async fn helo_fallback_and_no_8bitmime_is_permanent() {
    let (a, b) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(serve(
        b,
        vec![
            ("", "220 old\r\n"),
            ("EHLO", "502 what\r\n"),
            ("HELO relay.test", "250 hi\r\n"),
        ],
    ));
    let mut c = SmtpClient::handshake(
        Box::new(a),
        "old".into(),
        "old",
        &opts(),
        TlsPolicy::Opportunistic,
    )
    .await
    .unwrap();
    let mut t = tx(&["b@y.test"], "Subject: caf\u{e9}\r\n\r\n".as_bytes());
    t.eight_bit = true;
    let out = c.send(&t).await.unwrap();
    assert!(
        matches!(&out[0], Outcome::Permanent(f) if f.status == Enhanced(5, 6, 3)),
        "{out:?}"
    );
    server.await.unwrap();
}

#[tokio::test]
async fn require_tls_without_starttls_fails() {
    let (a, b) = tokio::io::duplex(1 << 16);
    let _server = tokio::spawn(serve(b, vec![("", "220 x\r\n"), ("EHLO", "250 x\r\n")]));
    let err = SmtpClient::handshake(Box::new(a), "x".into(), "x", &opts(), TlsPolicy::Require)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ClientError::TlsUnavailable { .. }), "{err}");
    assert_eq!(err.to_failure().status, Enhanced(4, 7, 4));
}

#[tokio::test(start_paused = true)]
async fn stalled_server_times_out() {
    let (a, _b) = tokio::io::duplex(1 << 16);
    let err = SmtpClient::handshake(Box::new(a), "x".into(), "x", &opts(), TlsPolicy::None)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            ClientError::Timeout {
                phase: "greeting",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn auth_plain_after_mail_refused_sequentially() {
    let (a, b) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(serve(
        b,
        vec![
            ("", "220 x\r\n"),
            ("EHLO", "250-x\r\n250 AUTH LOGIN PLAIN\r\n"),
            ("AUTH PLAIN AHUAcA==", "235 2.7.0 ok\r\n"),
            ("MAIL FROM:<a@x.test>", "550 5.7.1 no\r\n"),
        ],
    ));
    let mut o = opts();
    o.auth = Some(AuthConfig {
        user: "u".into(),
        password: "p".into(),
        allow_plaintext: true,
    });
    let mut c = SmtpClient::handshake(Box::new(a), "x".into(), "x", &o, TlsPolicy::None)
        .await
        .unwrap();
    let out = c.send(&tx(&["b@y.test", "c@y.test"], b"x")).await.unwrap();
    assert!(out
        .iter()
        .all(|o| matches!(o, Outcome::Permanent(f) if f.status == Enhanced(5, 7, 1))));
    server.await.unwrap();
}

#[tokio::test]
async fn auth_login_when_plain_is_not_offered() {
    let (a, b) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(serve(
        b,
        vec![
            ("", "220 x\r\n"),
            ("EHLO", "250-x\r\n250 AUTH LOGIN\r\n"),
            ("AUTH LOGIN", "334 VXNlcm5hbWU6\r\n"),
            ("dXNlcg==", "334 UGFzc3dvcmQ6\r\n"),
            ("cGFzcw==", "535 5.7.8 no\r\n"),
        ],
    ));
    let mut o = opts();
    o.auth = Some(AuthConfig {
        user: "user".into(),
        password: "pass".into(),
        allow_plaintext: true,
    });
    let err = SmtpClient::handshake(Box::new(a), "x".into(), "x", &o, TlsPolicy::None)
        .await
        .err()
        .unwrap();
    // A rejected login is retried later, not bounced.
    assert!(matches!(err, ClientError::Auth { .. }), "{err}");
    assert_eq!(err.to_failure().status, Enhanced(4, 7, 8));
    server.await.unwrap();
}

#[tokio::test]
async fn addresses_cannot_inject_commands() {
    let (a, b) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(serve(b, vec![("", "220 x\r\n"), ("EHLO", "250 x\r\n")]));
    let mut c = SmtpClient::handshake(Box::new(a), "x".into(), "x", &opts(), TlsPolicy::None)
        .await
        .unwrap();
    let out = c
        .send(&tx(&["b@y.test>\r\nRCPT TO:<evil@z.test"], b"x"))
        .await
        .unwrap();
    assert!(
        matches!(&out[0], Outcome::Permanent(f) if f.status == Enhanced(5, 1, 3)),
        "{out:?}"
    );
    // Refused before MAIL: the status is the precheck's, not a server reply.
    server.await.unwrap();
}

/// Writes `pieces` one at a time, each after the client has had a chance to read the one
/// before, then keeps the stream open.
async fn trickle(mut io: tokio::io::DuplexStream, pieces: Vec<Vec<u8>>) {
    for piece in pieces {
        io.write_all(&piece).await.unwrap();
        io.flush().await.unwrap();
        tokio::task::yield_now().await;
    }
    let mut sink = Vec::new();
    let _ = io.read_to_end(&mut sink).await;
}

#[tokio::test]
async fn a_reply_in_pieces_is_read_whole() {
    let (a, b) = tokio::io::duplex(1 << 16);
    // The greeting split mid-line and mid-code; the EHLO reply's lines split across writes,
    // the last of them together with nothing after it.
    let pieces = [
        "2",
        "20-relay.test ESMTP\r",
        "\n220 ready\r\n",
        "250-x.test\r\n250-PIPE",
        "LINING\r\n250 8BITMIME\r\n",
    ];
    let server = tokio::spawn(trickle(
        b,
        pieces.iter().map(|p| p.as_bytes().to_vec()).collect(),
    ));
    let c = SmtpClient::handshake(Box::new(a), "x".into(), "x", &opts(), TlsPolicy::None)
        .await
        .unwrap();
    assert!(c.caps.pipelining && c.caps.eight_bit_mime, "{:?}", c.caps);
    drop(c);
    server.await.unwrap();
}

// Paused time: a client that kept waiting for the end of the line would time out instead.
#[tokio::test(start_paused = true)]
async fn an_endless_reply_line_is_a_protocol_error() {
    let (a, b) = tokio::io::duplex(1 << 16);
    // More than a reply line may hold, in reads of 1 KiB, with no end of line.
    let mut pieces = vec![b"220 ".to_vec()];
    pieces.extend(std::iter::repeat_n(
        vec![b'x'; 1024],
        2 * MAX_REPLY_LINE / 1024,
    ));
    let _server = tokio::spawn(trickle(b, pieces));
    let err = SmtpClient::handshake(Box::new(a), "x".into(), "x", &opts(), TlsPolicy::None)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ClientError::Protocol { .. }), "{err}");
}
