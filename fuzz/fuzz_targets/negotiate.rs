//! The body of a POST to an offer route, through webrtc-rs's negotiation (sans-IO, no sockets).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    roverd::fuzzing::negotiate(data);
});
