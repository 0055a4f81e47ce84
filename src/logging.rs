//! Where log lines go: the systemd journal when roverd runs under systemd (it sets
//! `JOURNAL_STREAM`), stderr otherwise. `RUST_LOG` overrides the configured level.

use log::LevelFilter;

/// Sets up the global logger. `level` is `log.level` from the config.
pub fn init(level: &str) {
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<LevelFilter>().ok())
        .or_else(|| level.parse().ok())
        .unwrap_or(LevelFilter::Info);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        match systemd_journal_logger::JournalLog::new() {
            Ok(journal) => {
                if journal.install().is_ok() {
                    log::set_max_level(level);
                    return;
                }
            }
            Err(e) => {
                eprintln!("roverd: the systemd journal is not reachable ({e}); logging to stderr")
            }
        }
    }
    let _ = log::set_boxed_logger(Box::new(Stderr { level }));
    log::set_max_level(level);
}

/// A plain stderr logger: level, module, message. Timestamps are left to whoever reads
/// stderr (systemd, a terminal).
struct Stderr {
    level: LevelFilter,
}

impl log::Log for Stderr {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        // webrtc-rs and its crates are chatty at info; keep their noise at warn unless
        // RUST_LOG asks for more.
        let ours = metadata.target().starts_with("roverd");
        metadata.level() <= self.level
            && (ours || metadata.level() <= log::Level::Warn || self.level >= LevelFilter::Debug)
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!(
                "{:<5} {}: {}",
                record.level(),
                record.target(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}
