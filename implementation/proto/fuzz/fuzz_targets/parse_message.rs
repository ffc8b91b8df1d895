//! Feeds arbitrary bytes to the message parser, the authenticated opener and a node.
//! Run with `cargo +nightly fuzz run parse_message` from `implementation/proto`.
#![no_main]

use holdfast_proto::wire::{Body, Message, MsgType, Packet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Packet::new_checked(data) {
        let _ = Message::parse(&p);
    }
    if let Some((ty, body)) = data.split_first()
        && let Some(t) = MsgType::from_u8(*ty)
        && let Ok(b) = Body::parse(t, body)
    {
        // Whatever parses must emit back to the same bytes.
        let mut out = Vec::new();
        b.emit(&mut out);
        assert_eq!(out, body);
    }
    let _ = holdfast_proto::auth::open(data, b"fuzz key", 1);
});
