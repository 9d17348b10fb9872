//! The SMTP client's reply parser on arbitrary bytes (what a hostile next hop can send).
//! Checks that it never panics, consumes only what it was given, is not changed by more bytes
//! arriving after a complete reply, and that a parsed reply written back out parses to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmrelay_codec::reply::parse_reply;

fuzz_target!(|data: &[u8]| {
    let Ok(Some((reply, used))) = parse_reply(data) else {
        return;
    };
    assert!(used > 0 && used <= data.len());
    // The same reply, whatever follows it.
    let (again, used_again) = parse_reply(&data[..used]).unwrap().unwrap();
    assert_eq!((&again, used_again), (&reply, used));
    // Written out and read back, unchanged, unless the peer's text held line breaks.
    if reply.lines.iter().all(|l| !l.contains(['\r', '\n'])) {
        let wire = reply.to_wire();
        let (back, n) = parse_reply(&wire).unwrap().unwrap();
        assert_eq!(n, wire.len());
        assert_eq!(back.code, reply.code);
    }
});
