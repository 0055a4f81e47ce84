//! Camera pixels: one picture of any format, size and bytes through the converter.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    roverd::fuzzing::convert(data);
});
