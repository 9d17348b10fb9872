//! SMTP smuggling over the wire: only `<CR><LF>.<CR><LF>` ends DATA.

use wasmrelay_test_support::Raw;

use super::setup;

/// Each sequence inside DATA must neither end the message nor let a second message in.
#[test]
fn smuggling_matrix() {
    let mut s = setup("");
    let cases: [&[u8]; 9] = [
        b"\n.\n",
        b"\n.\r\n",
        b"\r.\n",
        b"\r.\r",
        b"\n.\r",
        b"\r.\r\n",
        b"\r\n.\n",
        b"\r\n.\r",
        b"\r\n\x00.\r\n",
    ];
    let mut accepted = 0;
    for seq in cases {
        let mut c = Raw::connect(s.relay_addr());
        c.cmd("EHLO attacker.test", "250");
        c.cmd("MAIL FROM:<a@example.org>", "250");
        c.cmd("RCPT TO:<bob@example.com>", "250");
        c.cmd("DATA", "354");
        let mut payload = b"Subject: outer\r\n\r\nbefore".to_vec();
        payload.extend_from_slice(seq);
        payload.extend_from_slice(b"MAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n.\r\n");
        c.send(&payload);
        let reply = c.reply();
        if seq == b"\r\n\x00.\r\n" {
            assert!(reply.starts_with("250"), "{seq:?}: {reply}");
            accepted += 1;
        } else {
            assert!(reply.starts_with("550 5.6.0"), "{seq:?}: {reply}");
        }
        // Exactly one reply: the smuggled commands were message content, and we are in sync.
        c.cmd("NOOP", "250");
        c.cmd("QUIT", "221");
    }
    let messages = s.spooled();
    assert_eq!(messages.len(), accepted);
    for (env, bytes) in messages {
        assert_eq!(env.mail_from.as_deref(), Some("a@example.org"));
        assert!(String::from_utf8_lossy(&bytes).contains("Subject: outer"));
    }
}
