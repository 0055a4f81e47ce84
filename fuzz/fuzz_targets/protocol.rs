//! A data-channel text frame (and, one message a line, a session through the motor rules).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    roverd::fuzzing::protocol(data);
});
