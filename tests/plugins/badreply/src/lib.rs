//! Misbehaving test plugin: Rejects with a 250 (a malformed verdict) on RCPT TO:<bad@...>; every other recipient gets `continue`.
use test_plugin_misbehaving::on_bad_rcpt;
use test_plugin_misbehaving::sdk::Verdict;

on_bad_rcpt!(|_recipient| Verdict::reject(250, "2.0.0", "not a rejection"));
