//! Misbehaving test plugin: Returns an 8 MiB reply text on RCPT TO:<bad@...>; every other recipient gets `continue`.
use test_plugin_misbehaving::on_bad_rcpt;
use test_plugin_misbehaving::sdk::Verdict;

on_bad_rcpt!(|_recipient| Verdict::reject(550, "5.7.1", "x".repeat(8 << 20)));
