//! A hostile plugin in the real relay: every capability pushed past its limits gets an
//! error, and the relay keeps serving.

use super::*;

#[test]
fn a_greedy_plugin_gets_errors_and_the_relay_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let sink = Sink::start(&dir.join("sink"));
    let greedy = plugin(
        "greedy",
        "dns_zones = [\"allowed.test\"]\n\
         limits = { kv_keys = 10, kv_bytes = 4096, capability_calls = 2000 }",
    );
    let lists = "[[lists]]\nname = \"suppression\"\nreaders = [\"greedy\"]\n";
    let relay = Relay::start(dir, &sink, &format!("{greedy}{lists}"));

    let mut c = Raw::connect(relay.port);
    c.cmd("EHLO client.test", "250");
    c.cmd("MAIL FROM:<mallory@example.org>", "250");
    let reply = c.cmd("RCPT TO:<greedy@example.com>", "451");
    assert_eq!(
        reply,
        "451 4.7.0 greedy: member=invalid undeclared=denied write=denied kv=denied@10 \
         kvbytes=denied kvvalue=invalid kvkey=invalid quota=allowed,refused,refused \
         rate=invalid,ok dns=denied annotations=32/1000\r\n"
    );
    // The same session and a new one go on; the mail is delivered.
    c.cmd("RCPT TO:<fine@example.com>", "250");
    c.cmd("DATA", "354");
    c.cmd("Subject: after greed\r\n\r\nstill here\r\n.", "250");
    c.cmd("QUIT", "221");
    wait_for("the message at the sink", Duration::from_secs(30), || {
        sink.recipients() == ["fine@example.com"]
    });
    // Nothing reached the shared list it may only read.
    let out = list_cli(dir, &["show", "suppression"]);
    assert_eq!(stdout(&out), "0 member(s) on suppression\n");
    relay.stop();
}
