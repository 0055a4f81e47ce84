//! Where log lines go: the systemd journal when roverd runs under systemd, stderr
//! otherwise. `RUST_LOG` overrides the configured level.
//!
//! Under systemd (its stderr is the journal stream named by `JOURNAL_STREAM`) every record
//! is sent over the journal's native protocol, so it keeps its priority (`PRIORITY`, from
//! the level) and its module (`TARGET` and `CODE_MODULE`, e.g. `roverd::peers`), along
//! with `SYSLOG_IDENTIFIER=roverd`, `CODE_FILE`/`CODE_LINE` and `ROVERD_VERSION`:
//!
//! ```text
//! journalctl -u roverd -f                      # follow it
//! journalctl -u roverd -p warning              # warnings and errors only
//! journalctl -u roverd TARGET=roverd::peers    # one module
//! journalctl -u roverd -o verbose              # every field of every record
//! ```
//!
//! If the journal socket cannot be reached, lines go to stderr, which systemd still
//! collects; they then start with the `<N>` priority prefix of sd-daemon(3), so that
//! journald keeps their priority.

use log::{Level, LevelFilter, Metadata};

/// Sets up the global logger. `level` is `log.level` from the config.
pub fn init(level: &str) {
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<LevelFilter>().ok())
        .or_else(|| level.parse().ok())
        .unwrap_or(LevelFilter::Info);
    let under_systemd = systemd_journal_logger::connected_to_journal();
    if under_systemd {
        match systemd_journal_logger::JournalLog::new() {
            Ok(journal) => {
                let journal = journal
                    .with_syslog_identifier("roverd".to_owned())
                    .with_extra_fields([("ROVERD_VERSION", crate::VERSION)]);
                if log::set_boxed_logger(Box::new(Journal { journal, level })).is_ok() {
                    log::set_max_level(level);
                }
                return;
            }
            Err(e) => eprintln!(
                "<4>roverd: the systemd journal is not reachable ({e}); logging to stderr"
            ),
        }
    }
    let stderr = Stderr {
        level,
        priority_prefix: under_systemd,
    };
    if log::set_boxed_logger(Box::new(stderr)).is_ok() {
        log::set_max_level(level);
    }
}

/// Whether a record is worth writing at `level`. webrtc-rs and its crates are chatty at
/// info: their records below warn only show when the level is debug or more.
pub fn wanted(metadata: &Metadata<'_>, level: LevelFilter) -> bool {
    let ours = metadata.target().starts_with("roverd");
    metadata.level() <= level
        && (ours || metadata.level() <= Level::Warn || level >= LevelFilter::Debug)
}

/// The journal's syslog priority for a level (what `journalctl -p` filters on), as
/// systemd-journal-logger maps it.
pub fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 5,
        Level::Debug => 6,
        Level::Trace => 7,
    }
}

/// The journal logger, behind the same filter as stderr.
struct Journal {
    journal: systemd_journal_logger::JournalLog,
    level: LevelFilter,
}

impl log::Log for Journal {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        wanted(metadata, self.level)
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            self.journal.log(record);
        }
    }

    fn flush(&self) {}
}

/// A plain stderr logger: level, module, message. Timestamps are left to whoever reads
/// stderr (systemd, a terminal).
struct Stderr {
    level: LevelFilter,
    /// Start each line with `<N>` (sd-daemon(3)): stderr is the journal's stream.
    priority_prefix: bool,
}

impl log::Log for Stderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        wanted(metadata, self.level)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let prefix = if self.priority_prefix {
            format!("<{}>", priority(record.level()))
        } else {
            String::new()
        };
        eprintln!(
            "{prefix}{:<5} {}: {}",
            record.level(),
            record.target(),
            record.args()
        );
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(level: Level, target: &str) -> Metadata<'_> {
        Metadata::builder().level(level).target(target).build()
    }

    #[test]
    fn roverd_records_follow_the_level() {
        let ours = |level| meta(level, "roverd::server");
        assert!(wanted(&ours(Level::Info), LevelFilter::Info));
        assert!(!wanted(&ours(Level::Debug), LevelFilter::Info));
        assert!(wanted(&ours(Level::Debug), LevelFilter::Debug));
    }

    #[test]
    fn other_crates_are_kept_at_warn_unless_debugging() {
        let info = LevelFilter::Info;
        assert!(!wanted(&meta(Level::Info, "webrtc::peer_connection"), info));
        assert!(wanted(&meta(Level::Warn, "webrtc::peer_connection"), info));
        assert!(wanted(&meta(Level::Info, "rtc_ice"), LevelFilter::Debug));
        assert!(!wanted(&meta(Level::Error, "rtc_ice"), LevelFilter::Off));
    }

    #[test]
    fn priorities_are_syslogs() {
        assert_eq!(priority(Level::Error), 3);
        assert_eq!(priority(Level::Warn), 4);
        assert_eq!(priority(Level::Info), 5);
        assert_eq!(priority(Level::Trace), 7);
    }
}
