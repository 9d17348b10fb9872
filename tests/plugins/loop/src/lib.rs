//! Misbehaving test plugin: Spins forever on RCPT TO:<bad@...>; every other recipient gets `continue`.
use std::sync::atomic::Ordering;

use test_plugin_misbehaving::{on_bad_rcpt, COUNTER};

on_bad_rcpt!(|_recipient| loop {
    COUNTER.fetch_add(1, Ordering::Relaxed);
});
