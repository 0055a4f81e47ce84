//! Where log lines go: the systemd journal when roverd runs under systemd, stderr
//! otherwise. `RUST_LOG` overrides the configured level ([`Filter`]): a bare level
//! (`RUST_LOG=debug`) works as `log.level` does, and anything else is read with env_logger's
//! own syntax (`RUST_LOG=roverd=debug`, `RUST_LOG=warn,roverd::server=info`) by its filter
//! parser, `env_filter`.
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

/// Which records are written.
pub enum Filter {
    /// `log.level`, or a bare level in `RUST_LOG`: roverd's records at that level, other
    /// crates' at warn and above unless the level is debug or more (see [`wanted`]).
    Level(LevelFilter),
    /// `RUST_LOG` as env_logger reads it: `[target][=level][,...]`, the most specific
    /// target wins, and targets no directive names are off.
    Directives(env_filter::Filter),
}

impl Filter {
    /// The filter for `log.level` = `level` and the value of `RUST_LOG`, if set. A
    /// `RUST_LOG` that cannot be read is reported on stderr and ignored.
    pub fn new(level: &str, rust_log: Option<&str>) -> Filter {
        let configured = level.parse().unwrap_or(LevelFilter::Info);
        let Some(spec) = rust_log.map(str::trim).filter(|s| !s.is_empty()) else {
            return Filter::Level(configured);
        };
        if let Ok(level) = spec.parse::<LevelFilter>() {
            return Filter::Level(level);
        }
        match env_filter::Builder::new().try_parse(spec) {
            Ok(builder) => Filter::Directives(builder.build()),
            Err(e) => {
                eprintln!(
                    "<4>roverd: RUST_LOG={spec:?} is not a log filter ({e}); using log.level = {level}"
                );
                Filter::Level(configured)
            }
        }
    }

    pub fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        match self {
            Filter::Level(level) => wanted(metadata, *level),
            Filter::Directives(filter) => filter.enabled(metadata),
        }
    }

    /// The most verbose level any record may pass at.
    pub fn max_level(&self) -> LevelFilter {
        match self {
            Filter::Level(level) => *level,
            Filter::Directives(filter) => filter.filter(),
        }
    }
}

/// Sets up the global logger. `level` is `log.level` from the config.
pub fn init(level: &str) {
    let filter = Filter::new(level, std::env::var("RUST_LOG").ok().as_deref());
    let level = filter.max_level();
    let under_systemd = systemd_journal_logger::connected_to_journal();
    if under_systemd {
        match systemd_journal_logger::JournalLog::new() {
            Ok(journal) => {
                let journal = journal
                    .with_syslog_identifier("roverd".to_owned())
                    .with_extra_fields([("ROVERD_VERSION", crate::VERSION)]);
                if log::set_boxed_logger(Box::new(Journal { journal, filter })).is_ok() {
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
        filter,
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
    filter: Filter,
}

impl log::Log for Journal {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.filter.enabled(metadata)
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
    filter: Filter,
    /// Start each line with `<N>` (sd-daemon(3)): stderr is the journal's stream.
    priority_prefix: bool,
}

impl log::Log for Stderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.filter.enabled(metadata)
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

    fn filter(rust_log: Option<&str>) -> Filter {
        Filter::new("info", rust_log)
    }

    #[test]
    fn without_rust_log_the_configured_level_rules() {
        let f = Filter::new("warn", None);
        assert_eq!(f.max_level(), LevelFilter::Warn);
        assert!(!f.enabled(&meta(Level::Info, "roverd::server")));
        assert!(f.enabled(&meta(Level::Warn, "roverd::server")));
        // Set but empty is not set.
        assert_eq!(
            Filter::new("debug", Some("  ")).max_level(),
            LevelFilter::Debug
        );
    }

    #[test]
    fn a_bare_level_in_rust_log_works_as_log_level_does() {
        let f = filter(Some("debug"));
        assert_eq!(f.max_level(), LevelFilter::Debug);
        assert!(f.enabled(&meta(Level::Debug, "roverd::peers")));
        assert!(f.enabled(&meta(Level::Debug, "webrtc::peer_connection")));
        // webrtc-rs stays at warn at info, as with log.level = "info".
        let f = filter(Some("INFO"));
        assert!(f.enabled(&meta(Level::Info, "roverd::server")));
        assert!(!f.enabled(&meta(Level::Info, "webrtc::peer_connection")));
    }

    #[test]
    fn a_module_directive_turns_on_that_module_only() {
        let f = filter(Some("roverd=debug"));
        assert_eq!(f.max_level(), LevelFilter::Debug);
        assert!(f.enabled(&meta(Level::Debug, "roverd::server")));
        assert!(f.enabled(&meta(Level::Debug, "roverd")));
        assert!(!f.enabled(&meta(Level::Trace, "roverd::server")));
        // As in env_logger: targets no directive names are off.
        assert!(!f.enabled(&meta(Level::Error, "webrtc::peer_connection")));
    }

    #[test]
    fn the_most_specific_directive_wins() {
        let f = filter(Some("warn,roverd::server=info,rtc_ice=debug"));
        assert!(f.enabled(&meta(Level::Info, "roverd::server")));
        assert!(!f.enabled(&meta(Level::Debug, "roverd::server")));
        assert!(!f.enabled(&meta(Level::Info, "roverd::peers")));
        assert!(f.enabled(&meta(Level::Warn, "roverd::peers")));
        assert!(f.enabled(&meta(Level::Warn, "webrtc::peer_connection")));
        assert!(!f.enabled(&meta(Level::Info, "webrtc::peer_connection")));
        assert!(f.enabled(&meta(Level::Debug, "rtc_ice::agent")));
        assert_eq!(f.max_level(), LevelFilter::Debug);
    }

    #[test]
    fn a_rust_log_that_is_not_a_filter_is_ignored() {
        let f = Filter::new("warn", Some("roverd=loud"));
        assert_eq!(f.max_level(), LevelFilter::Warn);
        assert!(f.enabled(&meta(Level::Warn, "roverd::server")));
    }

    #[test]
    fn priorities_are_syslogs() {
        assert_eq!(priority(Level::Error), 3);
        assert_eq!(priority(Level::Warn), 4);
        assert_eq!(priority(Level::Info), 5);
        assert_eq!(priority(Level::Trace), 7);
    }
}
