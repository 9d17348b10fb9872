//! Table-driven codec tests: every verb, path, parameter and framing case.

use super::*;
use CommandError::*;

mod framing;
mod params;

pub(super) fn addr(local: &str, domain: &str) -> Address {
    Address {
        local: local.into(),
        domain: domain.into(),
    }
}

pub(super) fn mail(from: ReversePath) -> Command {
    Command::Mail {
        from,
        params: MailParams::default(),
    }
}

pub(super) fn mail_with(local: &str, domain: &str, params: MailParams) -> Command {
    Command::Mail {
        from: ReversePath::Mailbox(addr(local, domain)),
        params,
    }
}

pub(super) fn rcpt(local: &str, domain: &str) -> Command {
    Command::Rcpt {
        to: addr(local, domain),
        params: RcptParams::default(),
    }
}

pub(super) fn rcpt_with(local: &str, domain: &str, params: RcptParams) -> Command {
    Command::Rcpt {
        to: addr(local, domain),
        params,
    }
}

pub(super) fn ehlo(d: &str) -> Command {
    Command::Ehlo { domain: d.into() }
}

pub(super) fn check(cases: &[(&str, Result<Command, CommandError>)]) {
    for (line, want) in cases {
        assert_eq!(&parse_command(line.as_bytes()), want, "line {line:?}");
    }
}

#[test]
fn simple_verbs() {
    check(&[
        ("DATA", Ok(Command::Data)),
        ("data", Ok(Command::Data)),
        ("DaTa  ", Ok(Command::Data)),
        ("RSET", Ok(Command::Rset)),
        ("QUIT", Ok(Command::Quit)),
        ("STARTTLS", Ok(Command::StartTls)),
        ("starttls", Ok(Command::StartTls)),
        ("NOOP", Ok(Command::Noop)),
        ("NOOP anything at all", Ok(Command::Noop)),
        ("HELP", Ok(Command::Help)),
        ("HELP MAIL", Ok(Command::Help)),
        (
            "VRFY postmaster",
            Ok(Command::Vrfy {
                arg: "postmaster".into(),
            }),
        ),
        (
            "EXPN list one",
            Ok(Command::Expn {
                arg: "list one".into(),
            }),
        ),
        ("VRFY", Err(Syntax("argument required"))),
        ("EXPN ", Err(Syntax("argument required"))),
        ("DATA now", Err(Syntax("this command takes no argument"))),
        ("RSET x", Err(Syntax("this command takes no argument"))),
        ("QUIT please", Err(Syntax("this command takes no argument"))),
        ("STARTTLS x", Err(Syntax("this command takes no argument"))),
        ("", Err(Unrecognized)),
        ("   ", Err(Unrecognized)),
        ("FOO", Err(Unrecognized)),
        ("MAILFROM:<a@b>", Err(Unrecognized)),
        ("DAT", Err(Unrecognized)),
        ("DATAX", Err(Unrecognized)),
        ("GET / HTTP/1.1", Err(Unrecognized)),
        (" DATA", Err(Unrecognized)),
    ]);
}

#[test]
fn helo_ehlo() {
    check(&[
        ("EHLO mail.example.com", Ok(ehlo("mail.example.com"))),
        ("ehlo Mail.Example.COM", Ok(ehlo("Mail.Example.COM"))),
        ("EHLO  localhost ", Ok(ehlo("localhost"))),
        ("EHLO [192.0.2.1]", Ok(ehlo("[192.0.2.1]"))),
        ("EHLO [IPv6:2001:db8::1]", Ok(ehlo("[IPv6:2001:db8::1]"))),
        ("EHLO [ipv6:::1]", Ok(ehlo("[ipv6:::1]"))),
        ("EHLO DESKTOP_PC7", Ok(ehlo("DESKTOP_PC7"))),
        ("EHLO bücher.example", Ok(ehlo("bücher.example"))),
        (
            "HELO relay.example.org",
            Ok(Command::Helo {
                domain: "relay.example.org".into(),
            }),
        ),
        (
            "EHLO",
            Err(Syntax("a domain or address literal is required")),
        ),
        (
            "HELO ",
            Err(Syntax("a domain or address literal is required")),
        ),
        (
            "EHLO a b",
            Err(Syntax("a domain or address literal is required")),
        ),
        (
            "EHLO [192.0.2.300]",
            Err(Syntax("a domain or address literal is required")),
        ),
        (
            "EHLO [IPv6:zz::1]",
            Err(Syntax("a domain or address literal is required")),
        ),
        (
            "EHLO [192.0.2.1",
            Err(Syntax("a domain or address literal is required")),
        ),
        (
            "EHLO a..b",
            Err(Syntax("a domain or address literal is required")),
        ),
        (
            "EHLO -a.b",
            Err(Syntax("a domain or address literal is required")),
        ),
        (
            "EHLO a.b.",
            Err(Syntax("a domain or address literal is required")),
        ),
        (
            "EHLO a@b",
            Err(Syntax("a domain or address literal is required")),
        ),
    ]);
}

#[test]
fn mail_paths() {
    let mb = |l: &str, d: &str| mail(ReversePath::Mailbox(addr(l, d)));
    let utf8 = MailParams {
        smtputf8: true,
        ..Default::default()
    };
    check(&[
        ("MAIL FROM:<a@b.example>", Ok(mb("a", "b.example"))),
        ("mail from:<a@b.example>", Ok(mb("a", "b.example"))),
        ("MAIL FROM: <a@b.example>", Ok(mb("a", "b.example"))),
        ("MAIL  FROM:<a@b.example>", Ok(mb("a", "b.example"))),
        ("MAIL FROM:<>", Ok(mail(ReversePath::Null))),
        ("MAIL FROM: <>", Ok(mail(ReversePath::Null))),
        (
            "MAIL FROM:<First.Last+tag@Example.COM>",
            Ok(mb("First.Last+tag", "Example.COM")),
        ),
        (
            "MAIL FROM:<a!#$%&'*+-/=?^_`{|}~@x.y>",
            Ok(mb("a!#$%&'*+-/=?^_`{|}~", "x.y")),
        ),
        (
            "MAIL FROM:<\"john doe\"@x.y>",
            Ok(mb("\"john doe\"", "x.y")),
        ),
        ("MAIL FROM:<\"a>b\"@x.y>", Ok(mb("\"a>b\"", "x.y"))),
        ("MAIL FROM:<\"a\\\"b\"@x.y>", Ok(mb("\"a\\\"b\"", "x.y"))),
        ("MAIL FROM:<\"\"@x.y>", Ok(mb("\"\"", "x.y"))),
        ("MAIL FROM:<a@[192.0.2.1]>", Ok(mb("a", "[192.0.2.1]"))),
        ("MAIL FROM:<a@[IPv6:::1]>", Ok(mb("a", "[IPv6:::1]"))),
        (
            "MAIL FROM:<@r1.example,@r2.example:u@c.example>",
            Ok(mb("u", "c.example")),
        ),
        (
            "MAIL FROM:<@[192.0.2.1]:u@c.example>",
            Ok(mb("u", "c.example")),
        ),
        ("MAIL FROM:<@[IPv6:::1],@r:u@c>", Ok(mb("u", "c"))),
        (
            "MAIL FROM:<用户@例子.广告> SMTPUTF8",
            Ok(mail_with("用户", "例子.广告", utf8.clone())),
        ),
        ("MAIL FROM:<a@b>SMTPUTF8", Ok(mail_with("a", "b", utf8))),
        // Errors.
        ("MAIL", Err(Syntax("expected FROM:<path>"))),
        ("MAIL TO:<a@b>", Err(Syntax("expected FROM:<path>"))),
        ("MAIL FROM <a@b>", Err(Syntax("expected FROM:<path>"))),
        ("MAIL FROM:", Err(Syntax("missing path"))),
        ("MAIL FROM:a@b", Err(BadAddress("angle brackets required"))),
        ("MAIL FROM:<a@b", Err(BadAddress("missing closing '>'"))),
        ("MAIL FROM:<\"a>@b", Err(BadAddress("missing closing '>'"))),
        ("MAIL FROM:<a@b@c>", Err(BadAddress("more than one '@'"))),
        ("MAIL FROM:<a>", Err(BadAddress("expected local@domain"))),
        (
            "MAIL FROM:<postmaster>",
            Err(BadAddress("expected local@domain")),
        ),
        ("MAIL FROM:<@b>", Err(BadAddress("bad source route"))),
        ("MAIL FROM:<@r1,u@c>", Err(BadAddress("bad source route"))),
        ("MAIL FROM:<@r1:>", Err(BadAddress("empty local part"))),
        ("MAIL FROM:<@:u@c>", Err(BadAddress("bad source route"))),
        ("MAIL FROM:<a@>", Err(BadAddress("empty domain"))),
        (
            "MAIL FROM:<.a@b>",
            Err(BadAddress("misplaced '.' in local part")),
        ),
        (
            "MAIL FROM:<a.@b>",
            Err(BadAddress("misplaced '.' in local part")),
        ),
        (
            "MAIL FROM:<a..b@c>",
            Err(BadAddress("misplaced '.' in local part")),
        ),
        (
            "MAIL FROM:<a b@c>",
            Err(BadAddress("expected local@domain")),
        ),
        (
            "MAIL FROM:<a(x)@c>",
            Err(BadAddress("expected local@domain")),
        ),
        (
            "MAIL FROM:<\"a\tb\"@c>",
            Err(BadAddress("invalid character in quoted string")),
        ),
        ("MAIL FROM:<\"ab@c>", Err(BadAddress("missing closing '>'"))),
        ("MAIL FROM:<a@b..c>", Err(BadAddress("bad domain label"))),
        ("MAIL FROM:<a@-b.c>", Err(BadAddress("bad domain label"))),
        ("MAIL FROM:<a@b-.c>", Err(BadAddress("bad domain label"))),
        ("MAIL FROM:<a@b.c.>", Err(BadAddress("bad domain label"))),
        (
            "MAIL FROM:<a@b_c>",
            Err(BadAddress("invalid character in domain")),
        ),
        (
            "MAIL FROM:<a@[1.2.3]>",
            Err(BadAddress("bad address literal")),
        ),
        (
            "MAIL FROM:<a@[IPv6:1::2::3]>",
            Err(BadAddress("bad address literal")),
        ),
        (
            "MAIL FROM:<a@[x:y]>",
            Err(BadAddress("bad address literal")),
        ),
        (
            "MAIL FROM:<a@[1.2.3.4]x>",
            Err(BadAddress("invalid character in domain")),
        ),
        (
            "MAIL FROM:<用户@例子.广告>",
            Err(BadAddress("non-ASCII address requires SMTPUTF8")),
        ),
    ]);
}

#[test]
fn path_length_limits() {
    let local64 = "l".repeat(64);
    let label = "d".repeat(63);
    // 4 labels of 63 + 3 dots = 255 octets.
    let domain255 = [label.as_str(); 4].join(".");
    assert_eq!(domain255.len(), 255);
    let ok = format!("MAIL FROM:<{local64}@b>");
    assert_eq!(
        parse_command(ok.as_bytes()),
        Ok(mail(ReversePath::Mailbox(addr(&local64, "b"))))
    );
    let long_local = format!("MAIL FROM:<{local64}l@b>");
    assert_eq!(
        parse_command(long_local.as_bytes()),
        Err(BadAddress("local part too long"))
    );
    let quoted = format!("MAIL FROM:<\"{}\"@b>", "q".repeat(63));
    assert_eq!(
        parse_command(quoted.as_bytes()),
        Err(BadAddress("local part too long"))
    );
    let long_label = format!("RCPT TO:<a@{label}d.b>");
    assert_eq!(
        parse_command(long_label.as_bytes()),
        Err(BadAddress("bad domain label"))
    );
    // A path's 256 octets leave no room for a 255-octet domain, but EHLO has no such cap.
    assert_eq!(parse_domain(&domain255, false), Ok(255));
    assert_eq!(
        parse_domain(&format!("x{domain255}"), false),
        Err("domain too long")
    );
    let ehlo255 = format!("EHLO {domain255}");
    assert_eq!(parse_command(ehlo255.as_bytes()), Ok(ehlo(&domain255)));
    let ehlo256 = format!("EHLO x{domain255}");
    assert!(matches!(parse_command(ehlo256.as_bytes()), Err(Syntax(_))));
    // `<` + 64 + `@` + 189 + `>` = 256 octets, the most a path may have.
    let d189 = format!("{}.{}.{}", "d".repeat(63), "d".repeat(63), "d".repeat(61));
    let p = format!("RCPT TO:<{local64}@{d189}>");
    assert_eq!(parse_command(p.as_bytes()), Ok(rcpt(&local64, &d189)));
    let p = format!("RCPT TO:<{local64}@{d189}d>");
    assert_eq!(
        parse_command(p.as_bytes()),
        Err(BadAddress("path too long"))
    );
    // A source route counts towards the path length.
    let route = format!("RCPT TO:<@{label}.{label},@{label}.{label}:a@b>");
    assert_eq!(
        parse_command(route.as_bytes()),
        Err(BadAddress("path too long"))
    );
}

#[test]
fn rcpt_paths() {
    check(&[
        ("RCPT TO:<b@c.example>", Ok(rcpt("b", "c.example"))),
        ("rcpt to: <b@c.example>", Ok(rcpt("b", "c.example"))),
        ("RCPT TO:<postmaster>", Ok(rcpt("postmaster", ""))),
        ("RCPT TO:<PostMaster>", Ok(rcpt("postmaster", ""))),
        (
            "RCPT TO:<Postmaster@c.example>",
            Ok(rcpt("Postmaster", "c.example")),
        ),
        ("RCPT TO:<@a,@b:user@c>", Ok(rcpt("user", "c"))),
        ("RCPT TO:<用户@例子.广告>", Ok(rcpt("用户", "例子.广告"))),
        ("RCPT TO:<>", Err(BadAddress("null recipient"))),
        ("RCPT TO:", Err(Syntax("missing path"))),
        ("RCPT FROM:<a@b>", Err(Syntax("expected TO:<path>"))),
        ("RCPT TO:<user@a@b>", Err(BadAddress("more than one '@'"))),
        ("RCPT TO:<user>", Err(BadAddress("expected local@domain"))),
        ("RCPT TO:b@c", Err(BadAddress("angle brackets required"))),
    ]);
}

#[test]
fn bdat_and_auth() {
    let auth = |m: &str, i: Option<&str>| Command::Auth {
        mechanism: m.into(),
        initial_response: i.map(String::from),
    };
    check(&[
        (
            "BDAT 0",
            Ok(Command::Bdat {
                size: 0,
                last: false,
            }),
        ),
        (
            "BDAT 1000 LAST",
            Ok(Command::Bdat {
                size: 1000,
                last: true,
            }),
        ),
        (
            "bdat 12 last",
            Ok(Command::Bdat {
                size: 12,
                last: true,
            }),
        ),
        (
            "BDAT  7   LAST ",
            Ok(Command::Bdat {
                size: 7,
                last: true,
            }),
        ),
        ("BDAT", Err(Syntax("BDAT needs a chunk size"))),
        ("BDAT LAST", Err(Syntax("bad BDAT chunk size"))),
        ("BDAT -1", Err(Syntax("bad BDAT chunk size"))),
        (
            "BDAT 99999999999999999999",
            Err(Syntax("bad BDAT chunk size")),
        ),
        ("BDAT 1 FIRST", Err(Syntax("expected BDAT size [LAST]"))),
        ("BDAT 1 LAST x", Err(Syntax("expected BDAT size [LAST]"))),
        ("AUTH PLAIN", Ok(auth("PLAIN", None))),
        (
            "auth plain AGFsaWNlAHNlY3JldA==",
            Ok(auth("PLAIN", Some("AGFsaWNlAHNlY3JldA=="))),
        ),
        ("AUTH LOGIN dXNlcg==", Ok(auth("LOGIN", Some("dXNlcg==")))),
        ("AUTH PLAIN =", Ok(auth("PLAIN", Some("=")))),
        ("AUTH SCRAM-SHA-256", Ok(auth("SCRAM-SHA-256", None))),
        ("AUTH", Err(Syntax("AUTH needs a mechanism"))),
        ("AUTH PL@IN", Err(Syntax("bad SASL mechanism name"))),
        (
            "AUTH ABCDEFGHIJKLMNOPQRSTU",
            Err(Syntax("bad SASL mechanism name")),
        ),
        (
            "AUTH PLAIN a*b",
            Err(Syntax("initial response must be base64")),
        ),
        (
            "AUTH PLAIN abc def",
            Err(Syntax("expected AUTH mechanism [initial-response]")),
        ),
    ]);
}

#[test]
fn raw_bytes() {
    for line in [
        &b"NOOP\0"[..],
        b"NOOP\r",
        b"MAIL FROM:<a@b>\rRCPT TO:<c@d>",
        b"EHLO a\nb",
        b"MAIL FROM:<\xff@b>",
        b"\xc3",
    ] {
        assert!(
            matches!(parse_command(line), Err(Syntax(_))),
            "{line:?} -> {:?}",
            parse_command(line)
        );
    }
}

#[test]
fn routing_chars() {
    for (line, routing) in [
        ("RCPT TO:<user@b>", false),
        ("RCPT TO:<user%c@b>", true),
        ("RCPT TO:<c!user@b>", true),
        ("RCPT TO:<\"user@c\"@b>", true),
        ("RCPT TO:<\"user%c\"@b>", true),
        ("RCPT TO:<\"user c\"@b>", false),
        ("RCPT TO:<@x,@y:user@b>", false),
        ("RCPT TO:<postmaster>", false),
    ] {
        let Ok(Command::Rcpt { to, .. }) = parse_command(line.as_bytes()) else {
            panic!("{line} did not parse");
        };
        assert_eq!(to.has_routing_chars(), routing, "{line}");
    }
}

#[test]
fn error_replies() {
    assert_eq!(Unrecognized.reply().code, 500);
    assert_eq!(Syntax("x").reply().code, 501);
    assert_eq!(BadAddress("x").reply().code, 553);
    assert_eq!(UnsupportedParameter("X".into()).reply().code, 555);
    assert_eq!(BadParameterValue("X".into()).reply().code, 501);
    assert_eq!(LineError::TooLong(512).reply().code, 500);
    assert_eq!(LineError::BareLf.reply().code, 500);
}

#[test]
fn mailbox_text_is_what_display_writes() {
    for a in [
        addr("user", "example.org"),
        addr("\"a b@c\"", "example.org"),
        addr("jörg", "bücher.example"),
        addr("", "x"),
    ] {
        let text = a.mailbox();
        assert_eq!(text, a.to_string());
        assert_eq!(text.capacity(), text.len());
    }
}
