//! examples/plugins/js-starter, as a new author copies it: it builds, loads, refuses the
//! sender its one example rule names and lets everyone else through. The cost table's
//! JavaScript starter row (host/benches/languages.rs) is this component.

use super::*;

#[test]
fn the_javascript_starter_builds_and_runs_its_rule() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Aiosmtpd::start();
    let entry = plugin(
        &build::js_starter(),
        "starter",
        "tempfail",
        "instances = \"pooled\"",
    );
    let (mut relay, addr) = start_relay(dir.path(), &sink, &entry);

    let (ok, out) = swaks_send(addr, "spam@blocked.invalid", "bob@example.com", &[]);
    assert!(!ok && out.contains("550 5.7.1 Sender refused"), "{out}");
    let (ok, out) = swaks_send(addr, "alice@example.org", "bob@example.com", &[]);
    assert!(ok, "{out}");
    assert_eq!(sink.wait_for(1, WAIT).len(), 1);
    assert!(relay.is_running());
}
