//! The transcript runner against the test plugins: parsing, verdicts, edits and errors.
use std::path::Path;

use super::transcript::*;
use super::PluginConfig;
use crate::plugins::test_plugins::component;

#[test]
fn config_arg_forms() {
    assert_eq!(
        parse_config_arg("a = 1").unwrap()["a"].as_integer(),
        Some(1)
    );
    assert_eq!(
        parse_config_arg("{ a = \"x\" }").unwrap()["a"].as_str(),
        Some("x")
    );
    assert!(parse_config_arg("a = ").is_err());
}

#[tokio::test]
async fn scripted_session_prints_every_verdict() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("m.eml"),
        b"Subject: rewrite me\r\n\r\nhello\r\n",
    )
    .unwrap();
    let script = dir.path().join("session.txt");
    std::fs::write(
        &script,
        "# a blocked client, then a normal one\n\
         dns 66.2.0.192.bl.test A 127.0.0.2\n\
         zone bl.test\n\
         pool routed\n\
         connect 192.0.2.66\n\
         connect 192.0.2.1\n\
         helo client.example\n\
         mail <a@example.org>\n\
         rcpt <blocked@example.org>\n\
         rcpt <b@example.org>\n\
         data m.eml\n\
         data\n\
         Subject: inline\n\
         \n\
         ..dot-stuffed\n\
         .\n\
         queued Q1\n\
         route routed.test\n\
         route hold.test\n\
         result routed.test delivered\n",
    )
    .unwrap();
    let config = parse_config_arg("block_ip = \"192.0.2.99\"").unwrap();
    let mut out = Vec::new();
    let summary = run_transcript(&component("policy"), &config, &script, &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    let expected = [
        "plugin test_plugin_policy handles: connect, mail-from, rcpt, data, route, delivery-result",
        "connect 192.0.2.66 -> reject 554 5.7.1 192.0.2.66 listed in bl.test (127.0.0.2)",
        "connect 192.0.2.1 -> continue",
        "helo client.example -> continue",
        "mail <a@example.org> -> continue",
        "rcpt <blocked@example.org> -> reject 550 5.1.1 mailbox unavailable",
        "rcpt <b@example.org> -> continue",
        "data (30 bytes, edited) -> continue",
        "  | X-Seen-By: policy",
        "  | Subject: rewritten",
        "  | X-Policy: checked",
        "  | (7 body bytes)",
        "data (33 bytes, edited) -> continue",
        "  | X-Seen-By: policy",
        "  | Subject: inline",
        "  | X-Policy: checked",
        "  | (14 body bytes)",
        "queued Q1 -> done",
        "route routed.test -> pool routed",
        "route hold.test -> hold (quarantined)",
        "result routed.test Delivered -> done",
    ];
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[..expected.len()], expected, "{text}");
    assert_eq!(summary.refusals, 2);
    assert_eq!(summary.plugin_errors, 0);
}

/// The example plugin with the transcript its docs show.
#[tokio::test]
async fn example_plugin_session() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let script = root.join("examples/rust-plugin/session.txt");
    let config = parse_config_arg("blocked = \"nobody@example.org\"").unwrap();
    let mut out = Vec::new();
    run_transcript(&component("example"), &config, &script, &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("rcpt <nobody@example.org> -> reject 550 5.1.1 mailbox unavailable\n")
            && text.contains("rcpt <friend@example.org> -> continue\n")
            && text.contains("  | X-Example-Plugin: seen 1 recipients\n"),
        "{text}"
    );
}

#[tokio::test]
async fn script_mistakes_name_the_line() {
    let mut out = Vec::new();
    let plugin = PluginConfig {
        path: component("noop"),
        ..PluginConfig::default()
    };
    let err = run_script(
        plugin,
        "connect 192.0.2.1\nfrobnicate\n",
        Path::new("."),
        &mut out,
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "transcript line 2: unknown directive \"frobnicate\""
    );
}
