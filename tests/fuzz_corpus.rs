//! Replays the fuzz corpora (`fuzz/corpus/<target>/`) and any kept crash inputs
//! (`fuzz/artifacts/<target>/`) through the same checks the fuzz targets run
//! (`roverd::fuzzing`), on the stable toolchain, so CI catches a regression without nightly
//! or cargo-fuzz. `scripts/fuzz.sh` does the fuzzing itself.

use roverd::fuzzing::{self, Outcome};
use std::path::{Path, PathBuf};

/// The seeds (`fuzz/corpus/<target>/`), the fuzzer's finds (its `found/`) and kept crashes.
fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    let mut dirs = vec![
        root.join("corpus").join(target),
        root.join("artifacts").join(target),
    ];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("readable corpus directory").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// What a seed's name promises: `bad_*` and `miss_*` seeds are near-misses that must be
/// refused, `session_*` seeds are read line by line, `maybe_*` seeds probe a lenient stage,
/// and the fuzzer's own finds (named by their hash) promise nothing; every other seed must
/// be accepted.
fn promised(path: &Path) -> Option<bool> {
    let name = path.file_name()?.to_str()?;
    if name.starts_with("bad_") || name.starts_with("miss_") {
        Some(false)
    } else if name.starts_with("session_")
        || name.starts_with("maybe_")
        || name.starts_with("crash-")
        || name.bytes().all(|b| b.is_ascii_hexdigit())
    {
        None
    } else {
        Some(true)
    }
}

/// Runs every input of `target` through `check`; fails with the names of those that panic
/// or whose outcome is not what their name promises.
fn replay(target: &str, check: fn(&[u8]) -> Outcome) -> [usize; 3] {
    let files = inputs(target);
    assert!(
        !files.is_empty(),
        "fuzz/corpus/{target}/ is empty: the seeds are committed"
    );
    let mut counts = [0; 3];
    let mut panicked = Vec::new();
    let mut broken_promises = Vec::new();
    for path in &files {
        let data = std::fs::read(path).expect("readable corpus file");
        match std::panic::catch_unwind(|| check(&data)) {
            Ok(outcome) => {
                counts[outcome as usize] += 1;
                if promised(path).is_some_and(|ok| ok != (outcome == Outcome::Accepted)) {
                    broken_promises.push(format!("{}: {outcome:?}", path.display()));
                }
            }
            Err(_) => panicked.push(path.display().to_string()),
        }
    }
    println!(
        "{target}: {} inputs: {} accepted, {} refused, {} not reached",
        files.len(),
        counts[0],
        counts[1],
        counts[2]
    );
    assert!(
        broken_promises.is_empty(),
        "{target}: outcomes that break the seed's name: {broken_promises:#?}"
    );
    assert!(
        panicked.is_empty(),
        "{target}: {} of {} inputs panicked: {panicked:#?}",
        panicked.len(),
        files.len()
    );
    counts
}

#[test]
fn protocol_corpus_replays_without_a_panic() {
    let [accepted, refused, _] = replay("protocol", fuzzing::protocol);
    // The seeds hold every command and near-misses of each.
    assert!(
        accepted >= 6 && refused >= 6,
        "accepted {accepted}, refused {refused}"
    );
}

#[test]
fn config_corpus_replays_without_a_panic() {
    let [accepted, refused, _] = replay("config", fuzzing::config);
    // The shipped config/roverd.toml is among the seeds, and so are broken variants.
    assert!(
        accepted >= 1 && refused >= 1,
        "accepted {accepted}, refused {refused}"
    );
}

#[test]
fn offer_corpus_replays_without_a_panic() {
    let [accepted, refused, _] = replay("offer", fuzzing::offer);
    // Browser offers parse; broken bodies and SDPs are refused.
    assert!(
        accepted >= 1 && refused >= 1,
        "accepted {accepted}, refused {refused}"
    );
}

#[test]
fn negotiate_corpus_replays_without_a_panic() {
    let [accepted, refused, _] = replay("negotiate", fuzzing::negotiate);
    // Chromium's, Firefox's and webrtc-rs's offers are answered.
    assert!(
        accepted >= 3 && refused >= 1,
        "accepted {accepted}, refused {refused}"
    );
}

#[test]
fn convert_corpus_replays_without_a_panic() {
    let [accepted, refused, _] = replay("convert", fuzzing::convert);
    // YUYV and NV12 (tight, padded, odd, scaled) and real JPEGs convert; short buffers,
    // sizes below 2x2, garbage and a 16384x16384 JPEG header are refused.
    assert!(
        accepted >= 6 && refused >= 6,
        "accepted {accepted}, refused {refused}"
    );
}

#[test]
fn the_shipped_config_is_accepted() {
    let text = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/roverd.toml"))
        .expect("config/roverd.toml");
    assert_eq!(fuzzing::config(&text), Outcome::Accepted);
}
