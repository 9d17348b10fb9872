//! Misbehaving test plugin: Allocates without bound on RCPT TO:<bad@...>; every other recipient gets `continue`.
use std::sync::atomic::Ordering;

use test_plugin_misbehaving::{on_bad_rcpt, COUNTER};

on_bad_rcpt!(|_recipient| {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 1 << 20]);
        COUNTER.fetch_add(hoard.len(), Ordering::Relaxed);
    }
});
