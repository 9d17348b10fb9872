//! ESMTP parameters of MAIL and RCPT.

use super::*;

#[test]
fn mail_params() {
    let p = |params: MailParams| mail_with("a", "b", params);
    check(&[
        (
            "MAIL FROM:<a@b> SIZE=12345",
            Ok(p(MailParams {
                size: Some(12345),
                ..Default::default()
            })),
        ),
        (
            "MAIL FROM:<a@b> size=0",
            Ok(p(MailParams {
                size: Some(0),
                ..Default::default()
            })),
        ),
        (
            "MAIL FROM:<a@b> SIZE=18446744073709551615",
            Ok(p(MailParams {
                size: Some(u64::MAX),
                ..Default::default()
            })),
        ),
        (
            "MAIL FROM:<a@b> BODY=7BIT",
            Ok(p(MailParams {
                body: Some(BodyType::SevenBit),
                ..Default::default()
            })),
        ),
        (
            "MAIL FROM:<a@b> body=8bitmime",
            Ok(p(MailParams {
                body: Some(BodyType::EightBitMime),
                ..Default::default()
            })),
        ),
        (
            "MAIL FROM:<a@b> RET=FULL",
            Ok(p(MailParams {
                ret: Some(DsnReturn::Full),
                ..Default::default()
            })),
        ),
        (
            "MAIL FROM:<a@b> RET=hdrs",
            Ok(p(MailParams {
                ret: Some(DsnReturn::Headers),
                ..Default::default()
            })),
        ),
        (
            "MAIL FROM:<a@b> ENVID=QQ314159+2B+3Dx",
            Ok(p(MailParams {
                envid: Some("QQ314159+=x".into()),
                ..Default::default()
            })),
        ),
        (
            "MAIL FROM:<a@b> AUTH=<>",
            Ok(p(MailParams {
                auth: Some("<>".into()),
                ..Default::default()
            })),
        ),
        (
            "MAIL FROM:<a@b> AUTH=e+2Bf@example.com",
            Ok(p(MailParams {
                auth: Some("e+f@example.com".into()),
                ..Default::default()
            })),
        ),
        (
            "MAIL FROM:<a@b>  SIZE=1   BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=x AUTH=<> ",
            Ok(p(MailParams {
                size: Some(1),
                body: Some(BodyType::EightBitMime),
                smtputf8: true,
                ret: Some(DsnReturn::Headers),
                envid: Some("x".into()),
                auth: Some("<>".into()),
            })),
        ),
        (
            "MAIL FROM:<> SIZE=10",
            Ok(Command::Mail {
                from: ReversePath::Null,
                params: MailParams {
                    size: Some(10),
                    ..Default::default()
                },
            }),
        ),
        // Errors.
        (
            "MAIL FROM:<a@b> SIZE",
            Err(BadParameterValue("SIZE".into())),
        ),
        (
            "MAIL FROM:<a@b> SIZE=",
            Err(BadParameterValue("SIZE".into())),
        ),
        (
            "MAIL FROM:<a@b> SIZE=-1",
            Err(BadParameterValue("SIZE".into())),
        ),
        (
            "MAIL FROM:<a@b> SIZE=1k",
            Err(BadParameterValue("SIZE".into())),
        ),
        (
            "MAIL FROM:<a@b> SIZE=+1",
            Err(BadParameterValue("SIZE".into())),
        ),
        (
            "MAIL FROM:<a@b> SIZE=18446744073709551616",
            Err(BadParameterValue("SIZE".into())),
        ),
        (
            "MAIL FROM:<a@b> SIZE=1 SIZE=2",
            Err(Syntax("duplicate parameter")),
        ),
        (
            "MAIL FROM:<a@b> SIZE=1 size=1",
            Err(Syntax("duplicate parameter")),
        ),
        (
            "MAIL FROM:<a@b> SMTPUTF8 SMTPUTF8",
            Err(Syntax("duplicate parameter")),
        ),
        (
            "MAIL FROM:<a@b> BODY=8BIT",
            Err(BadParameterValue("BODY".into())),
        ),
        (
            "MAIL FROM:<a@b> BODY",
            Err(BadParameterValue("BODY".into())),
        ),
        (
            "MAIL FROM:<a@b> BODY=BINARYMIME",
            Err(UnsupportedParameter("BODY=BINARYMIME".into())),
        ),
        (
            "MAIL FROM:<a@b> SMTPUTF8=yes",
            Err(BadParameterValue("SMTPUTF8".into())),
        ),
        (
            "MAIL FROM:<a@b> RET=ALL",
            Err(BadParameterValue("RET".into())),
        ),
        ("MAIL FROM:<a@b> RET", Err(BadParameterValue("RET".into()))),
        (
            "MAIL FROM:<a@b> ENVID=a+2",
            Err(BadParameterValue("ENVID".into())),
        ),
        (
            "MAIL FROM:<a@b> ENVID=a+ZZb",
            Err(BadParameterValue("ENVID".into())),
        ),
        (
            "MAIL FROM:<a@b> ENVID=a+0Ab",
            Err(BadParameterValue("ENVID".into())),
        ),
        (
            "MAIL FROM:<a@b> ENVID=a+C3+A9",
            Err(BadParameterValue("ENVID".into())),
        ),
        (
            "MAIL FROM:<a@b> ENVID=é",
            Err(BadParameterValue("ENVID".into())),
        ),
        (
            "MAIL FROM:<a@b> ENVID",
            Err(BadParameterValue("ENVID".into())),
        ),
        (
            "MAIL FROM:<a@b> AUTH",
            Err(BadParameterValue("AUTH".into())),
        ),
        (
            "MAIL FROM:<a@b> AUTH=a+",
            Err(BadParameterValue("AUTH".into())),
        ),
        (
            "MAIL FROM:<a@b> NOTIFY=NEVER",
            Err(UnsupportedParameter("NOTIFY".into())),
        ),
        (
            "MAIL FROM:<a@b> ORCPT=rfc822;a@b",
            Err(UnsupportedParameter("ORCPT".into())),
        ),
        (
            "MAIL FROM:<a@b> X-FOO",
            Err(UnsupportedParameter("X-FOO".into())),
        ),
        (
            "MAIL FROM:<a@b> x-foo=bar",
            Err(UnsupportedParameter("X-FOO".into())),
        ),
        ("MAIL FROM:<a@b> -X", Err(Syntax("bad parameter keyword"))),
        ("MAIL FROM:<a@b> =1", Err(Syntax("bad parameter keyword"))),
        (
            "MAIL FROM:<a@b> SI_ZE=1",
            Err(Syntax("bad parameter keyword")),
        ),
        (
            "MAIL FROM:<a@b> SIZE=1=2",
            Err(BadParameterValue("SIZE".into())),
        ),
        (
            "MAIL FROM:<a@b>\tSIZE=1",
            Err(Syntax("bad parameter keyword")),
        ),
    ]);
    let long_envid = format!("MAIL FROM:<a@b> ENVID={}", "e".repeat(101));
    assert_eq!(
        parse_command(long_envid.as_bytes()),
        Err(BadParameterValue("ENVID".into()))
    );
    let envid = format!("MAIL FROM:<a@b> ENVID={}", "e".repeat(100));
    assert!(parse_command(envid.as_bytes()).is_ok());
}

#[test]
fn rcpt_params() {
    let notify = |v: &[&str]| RcptParams {
        notify: Some(v.iter().map(|s| s.to_string()).collect()),
        orcpt: None,
    };
    check(&[
        (
            "RCPT TO:<a@b> NOTIFY=NEVER",
            Ok(rcpt_with("a", "b", notify(&["NEVER"]))),
        ),
        (
            "RCPT TO:<a@b> notify=success,Failure,DELAY",
            Ok(rcpt_with(
                "a",
                "b",
                notify(&["SUCCESS", "FAILURE", "DELAY"]),
            )),
        ),
        (
            "RCPT TO:<a@b> ORCPT=rfc822;a+2Bb@c.example",
            Ok(rcpt_with(
                "a",
                "b",
                RcptParams {
                    notify: None,
                    orcpt: Some("rfc822;a+2Bb@c.example".into()),
                },
            )),
        ),
        (
            "RCPT TO:<a@b> NOTIFY=FAILURE ORCPT=rfc822;x@y",
            Ok(rcpt_with(
                "a",
                "b",
                RcptParams {
                    notify: Some(vec!["FAILURE".into()]),
                    orcpt: Some("rfc822;x@y".into()),
                },
            )),
        ),
        (
            "RCPT TO:<a@b> NOTIFY=NEVER,SUCCESS",
            Err(BadParameterValue("NOTIFY".into())),
        ),
        (
            "RCPT TO:<a@b> NOTIFY=SUCCESS,SUCCESS",
            Err(BadParameterValue("NOTIFY".into())),
        ),
        (
            "RCPT TO:<a@b> NOTIFY=ALWAYS",
            Err(BadParameterValue("NOTIFY".into())),
        ),
        (
            "RCPT TO:<a@b> NOTIFY=SUCCESS,",
            Err(BadParameterValue("NOTIFY".into())),
        ),
        (
            "RCPT TO:<a@b> NOTIFY",
            Err(BadParameterValue("NOTIFY".into())),
        ),
        (
            "RCPT TO:<a@b> NOTIFY=NEVER NOTIFY=NEVER",
            Err(Syntax("duplicate parameter")),
        ),
        (
            "RCPT TO:<a@b> ORCPT=a@b",
            Err(BadParameterValue("ORCPT".into())),
        ),
        (
            "RCPT TO:<a@b> ORCPT=rfc822;",
            Err(BadParameterValue("ORCPT".into())),
        ),
        (
            "RCPT TO:<a@b> ORCPT=;a@b",
            Err(BadParameterValue("ORCPT".into())),
        ),
        (
            "RCPT TO:<a@b> ORCPT=rfc822;a+b",
            Err(BadParameterValue("ORCPT".into())),
        ),
        (
            "RCPT TO:<a@b> ORCPT=rf(c;a",
            Err(BadParameterValue("ORCPT".into())),
        ),
        (
            "RCPT TO:<a@b> ORCPT=rfc 822;a",
            Err(Syntax("bad parameter keyword")),
        ),
        (
            "RCPT TO:<a@b> ORCPT=x;a ORCPT=x;b",
            Err(Syntax("duplicate parameter")),
        ),
        (
            "RCPT TO:<a@b> SIZE=10",
            Err(UnsupportedParameter("SIZE".into())),
        ),
        (
            "RCPT TO:<a@b> SMTPUTF8",
            Err(UnsupportedParameter("SMTPUTF8".into())),
        ),
    ]);
}
