//! The text of a config file, parsed and validated.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    roverd::fuzzing::config(data);
});
