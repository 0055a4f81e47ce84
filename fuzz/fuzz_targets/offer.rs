//! The body of a POST to an offer route, up to webrtc-rs's SDP parser.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    roverd::fuzzing::offer(data);
});
