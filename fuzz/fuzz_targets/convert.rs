//! Camera pixels: one picture of any format, size and bytes through the converter.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: {
        // libfuzzer-sys's panic hook aborts at once, even for a panic that roverd catches:
        // the JPEG decoder (zune-jpeg) asserts on some corrupt scans, and `decode_jpeg`
        // refuses those pictures by catching that panic. Any other panic still reaches
        // libfuzzer-sys's own catch and aborts, so it is still found.
        std::panic::set_hook(Box::new(|info| {
            let in_decoder = info
                .location()
                .is_some_and(|at| at.file().contains("zune-jpeg"));
            if !in_decoder {
                eprintln!("{info}");
            }
        }));
    },
    |data: &[u8]| {
        roverd::fuzzing::convert(data);
    }
);
