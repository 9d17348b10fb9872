//! Misbehaving test plugin: Calls a capability a million times on RCPT TO:<bad@...>; every other recipient gets `continue`.
use test_plugin_misbehaving::on_bad_rcpt;
use test_plugin_misbehaving::sdk::{host, Verdict};

on_bad_rcpt!(|_recipient| {
    for i in 0..1_000_000u32 {
        let _ = host::counter_add("spam", i as i64, std::time::Duration::from_secs(60));
    }
    Verdict::Continue
});
