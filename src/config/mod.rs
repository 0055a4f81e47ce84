//! The daemon's settings: one TOML file (`/etc/roverd/roverd.toml` when installed;
//! `config/roverd.toml` in the repo is the commented example and holds the defaults).
//!
//! A file is read in two phases, as ripgrep does:
//!
//! 1. **Raw parse** (`raw`). serde reads the text into private `Raw*` structs that mirror
//!    the file. Every table has `deny_unknown_fields`, so a misspelt key is an error that
//!    names it instead of a setting silently ignored, and `default`, so every key and table
//!    may be left out. Numbers are read as `i64`/`f64` and names as strings: this phase
//!    checks only the TOML syntax, the key names and the value types.
//! 2. **Validation** (`rules`). The raw values become a typed [`Config`] (`types`), and
//!    [`Config::validate`] checks every rule (ranges, even frame sizes, GPIO pins). A value
//!    that does not even fit its field, such as `width = -1`, is reported in the same words
//!    as the range it breaks. All problems are collected, so a robot builder fixes the file
//!    in one go.
//!
//! What passed both phases is a [`ValidConfig`], the only config the daemon accepts: a
//! `Config` filled in by code (tests, tools) goes through [`Config::validate`] first.
//!
//! The module is pure: only [`Config::load`] touches the file system, and nothing here
//! looks for devices. Whether `/dev/video2` exists is for the code that opens it.

mod raw;
mod rules;
#[cfg(test)]
mod tests;
mod types;

pub use types::{
    AudioConfig, AudioDevice, CameraConfig, CameraDevice, ClientLimits, Config, ConfigError,
    ControlConfig, HttpConfig, LogConfig, LogLevel, MotorDriver, MotorPins, MotorsConfig, Problem,
    PwmKind, TlsConfig, TlsIdentity, VideoConfig, HARDWARE_PWM_PINS,
};

use std::net::SocketAddr;
use std::ops::Deref;
use std::path::Path;

/// The top-level tables, in the order of the example file.
const TABLES: [&str; 8] = [
    "http", "limits", "camera", "video", "audio", "control", "motors", "log",
];

/// A [`Config`] that breaks no rule. Only [`Config::validate`] and the loaders
/// ([`Config::load`], [`Config::from_toml_str`]) make one, and its few setters keep it
/// valid, so the daemon never runs on a value nobody checked (a NaN ramp, a zero deadman).
/// It reads as a `Config` through `Deref`.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidConfig(Config);

impl Deref for ValidConfig {
    type Target = Config;

    fn deref(&self) -> &Config {
        &self.0
    }
}

impl ValidConfig {
    /// The config, to change and validate again.
    pub fn into_inner(self) -> Config {
        self.0
    }

    /// `--simulate` (see [`Config::simulate`]), which keeps every rule.
    pub fn simulate(&mut self) {
        self.0.simulate();
    }

    /// `--listen`: serve on `listen` instead of `http.listen`. Fails, naming
    /// `http.tls.listen`, when HTTPS is set to the same address.
    pub fn with_listen(self, listen: SocketAddr) -> Result<ValidConfig, ConfigError> {
        let mut config = self.0;
        config.http.listen = listen;
        config.validate()
    }
}

impl Config {
    /// Parses and validates the text of a config file.
    pub fn from_toml_str(text: &str) -> Result<ValidConfig, ConfigError> {
        let raw: raw::RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: None,
            message: e.to_string().trim_end().to_owned(),
        })?;
        let mut problems = Vec::new();
        let config = raw.lower(&mut problems);
        // A value that failed to lower was replaced, and validation may flag the stand-in;
        // the first problem already says what is wrong with that key.
        let lowered: Vec<String> = problems.iter().map(|p| p.key.clone()).collect();
        let found = rules::problems(&config);
        problems.extend(found.into_iter().filter(|p| !lowered.contains(&p.key)));
        // Both passes go through the tables in order; merged, they should too.
        problems.sort_by_key(|p| {
            TABLES
                .iter()
                .position(|t| p.key.split('.').next() == Some(t))
        });
        if problems.is_empty() {
            Ok(ValidConfig(config))
        } else {
            Err(ConfigError::Invalid {
                path: None,
                problems,
            })
        }
    }

    /// Reads, parses and validates a config file; every error names the file.
    pub fn load(path: &Path) -> Result<ValidConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text).map_err(|e| e.in_file(path))
    }

    /// Checks every rule; the error lists all the problems, not just the first, in the
    /// words the loader uses.
    pub fn validate(self) -> Result<ValidConfig, ConfigError> {
        let problems = rules::problems(&self);
        if problems.is_empty() {
            Ok(ValidConfig(self))
        } else {
            Err(ConfigError::Invalid {
                path: None,
                problems,
            })
        }
    }

    /// `--simulate`: test sources and simulated motors, whatever the file says, so that the
    /// product can be tried on any machine and a Pi's own file can be tried without moving.
    ///
    /// A valid config stays valid: the test sources have no rule, and a board that had no
    /// use for `en` (a DRV8833) leaves it unset, since the simulated board counts `en` among
    /// the pins that must not clash.
    pub fn simulate(&mut self) {
        self.camera.device = CameraDevice::Test;
        self.audio.device = AudioDevice::Test;
        if !self.motors.driver.uses_en() {
            self.motors.left.en = None;
            self.motors.right.en = None;
        }
        self.motors.driver = MotorDriver::Sim;
    }
}
