//! Connection caps over the wire.

use std::time::Duration;

use wasmrelay_test_support::{wait_for, Raw};

use super::setup;

#[test]
fn per_ip_connection_cap() {
    let s = setup("\n[limits]\nmax_connections_per_ip = 2\n");
    let a = Raw::connect(s.relay_addr());
    let _b = Raw::connect(s.relay_addr());
    let mut third = Raw::open(s.relay_addr());
    let reply = third.reply();
    assert!(reply.starts_with("421 4.7.0"), "{reply}");
    drop(a);
    wait_for("a slot to free up", Duration::from_secs(10), || {
        Raw::open(s.relay_addr()).reply().starts_with("220")
    });
}
