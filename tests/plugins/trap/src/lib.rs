//! Misbehaving test plugin: Panics (a trap) on RCPT TO:<bad@...>; every other recipient gets `continue`.
use test_plugin_misbehaving::on_bad_rcpt;

on_bad_rcpt!(|recipient| panic!("deliberate trap for {recipient}"));
