//! The daemon's settings: one TOML file (`/etc/roverd/roverd.toml` when installed;
//! `config/roverd.toml` in the repo is the commented example and holds the defaults).
//!
//! A file is read in two phases, as ripgrep does:
//!
//! 1. **Raw parse.** serde reads the text into private `Raw*` structs that mirror the file.
//!    Every table has `deny_unknown_fields`, so a misspelt key is an error that names it
//!    instead of a setting silently ignored, and `default`, so every key and table may be
//!    left out. Numbers are read as `i64`/`f64` and names as strings: this phase checks only
//!    the TOML syntax, the key names and the value types.
//! 2. **Validation.** The raw values become a typed [`Config`], and [`Config::validate`]
//!    checks every rule (ranges, even frame sizes, GPIO pins). A value that does not even
//!    fit its field, such as `width = -1`, is reported in the same words as the range it
//!    breaks. All problems are collected, so a robot builder fixes the file in one go.
//!
//! The module is pure: only [`Config::load`] touches the file system, and nothing here
//! looks for devices. Whether `/dev/video2` exists is for the code that opens it.

use std::fmt::{self, Display};
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use serde::Deserialize;

const MAX_PEERS: RangeInclusive<usize> = 1..=64;
const FRAME_SIDE: RangeInclusive<u32> = 16..=4096;
const FPS: RangeInclusive<u32> = 1..=120;
const BITRATE_KBPS: RangeInclusive<u32> = 100..=20_000;
const KEYFRAME_INTERVAL_S: RangeInclusive<f64> = 0.1..=60.0;
const DEADMAN_MS: RangeInclusive<u64> = 50..=10_000;
const PWM_HZ: RangeInclusive<u32> = 1..=40_000;
const TRIM: RangeInclusive<f64> = 0.0..=1.0;
/// The BCM GPIOs on the 40-pin header, the same on every Pi that roverd supports.
const GPIO: RangeInclusive<u8> = 0..=27;
const MIN_TOKEN_LEN: usize = 8;
const OFFERS_PER_MINUTE: RangeInclusive<u32> = 1..=600;
const BODY_BYTES: RangeInclusive<usize> = 4096..=ClientLimits::MAX_BODY_BYTES;
/// The parser's own cap ([`crate::protocol::MAX_MESSAGE_BYTES`]) is the top of the range.
const MESSAGE_BYTES: RangeInclusive<usize> = 64..=crate::protocol::MAX_MESSAGE_BYTES;
const MESSAGES_PER_S: RangeInclusive<u32> = 5..=1000;
const CONNECT_TIMEOUT_S: RangeInclusive<u64> = 1..=300;
const IDLE_TIMEOUT_S: RangeInclusive<u64> = 1..=600;
/// The top-level tables, in the order of the example file.
const TABLES: [&str; 8] = [
    "http", "limits", "camera", "video", "audio", "control", "motors", "log",
];

/// Everything roverd can be told, with every value checked (see [`Config::validate`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    pub http: HttpConfig,
    pub limits: ClientLimits,
    pub camera: CameraConfig,
    pub video: VideoConfig,
    pub audio: AudioConfig,
    pub control: ControlConfig,
    pub motors: MotorsConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// Where the page, the API and signaling listen; `--listen` overrides it.
    pub listen: SocketAddr,
    /// Each viewer costs upload bandwidth and CPU for packetizing, so a Pi Zero must be
    /// able to refuse the ninth phone rather than stutter for everyone.
    pub max_peers: usize,
    /// Bearer token for the API and signaling; without one, anyone on the LAN may drive.
    pub token: Option<String>,
    /// A second token that may watch but not drive (nor close other viewers): for showing
    /// the robot's camera to people who should not steer it. Needs `token`.
    pub viewer_token: Option<String>,
    /// HTTPS besides HTTP: phone browsers keep some features (the gamepad, fullscreen on
    /// some) for secure pages, and a token sent over plain HTTP can be read on the LAN.
    pub tls: Option<TlsConfig>,
    /// Host names accepted in `Host` besides IP literals, `localhost`, the hostname and
    /// its `.local` name: needed behind a reverse proxy or a DNS name of one's own, since
    /// every other name is refused to stop DNS-rebinding pages.
    pub allowed_hosts: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            max_peers: 8,
            token: None,
            viewer_token: None,
            tls: None,
            allowed_hosts: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TlsConfig {
    /// Where HTTPS listens; plain HTTP goes on listening on `http.listen`.
    pub listen: SocketAddr,
    pub identity: TlsIdentity,
}

/// Where the HTTPS certificate comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum TlsIdentity {
    /// PEM files the robot builder provides, e.g. from their own CA.
    Files { cert: PathBuf, key: PathBuf },
    /// Made at first start and kept in the state directory, so that a phone that has
    /// accepted it once is not asked again after a restart.
    SelfSigned,
}

impl TlsConfig {
    pub const DEFAULT_LISTEN: &'static str = "0.0.0.0:8443";
}

/// What one client may cost the robot. Every limit answers with a clear error and a log
/// line when hit, and touches no other peer.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientLimits {
    /// Offers accepted per client IP address per minute: a page stuck in a reconnect loop,
    /// or a script, cannot make the robot set up peer connections without end.
    pub offers_per_minute: u32,
    /// Largest request body; an SDP offer is a few KiB.
    pub body_bytes: usize,
    /// Largest data-channel message; a drive command is under 100 bytes.
    pub message_bytes: usize,
    /// Data-channel messages per second per peer (the page sends about 25). Beyond it
    /// messages are refused, except `stop` and `estop`, which are always obeyed.
    pub messages_per_s: u32,
    /// A peer that has not connected this long after its answer is dropped.
    pub connect_timeout_s: u64,
    /// A connected peer that has sent nothing for this long after its link was lost (3 s
    /// of silence) is dropped, freeing its place.
    pub idle_timeout_s: u64,
}

impl ClientLimits {
    /// The top of `limits.body_bytes`' range.
    pub const MAX_BODY_BYTES: usize = 1_048_576;
}

impl Default for ClientLimits {
    fn default() -> Self {
        Self {
            offers_per_minute: 20,
            body_bytes: 64 * 1024,
            message_bytes: crate::protocol::MAX_MESSAGE_BYTES,
            messages_per_s: 100,
            connect_timeout_s: 20,
            idle_timeout_s: 5,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CameraConfig {
    pub device: CameraDevice,
    /// Even, because the encoder takes I420, whose chroma planes are half size.
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

impl Default for CameraConfig {
    fn default() -> Self {
        Self {
            device: CameraDevice::Auto,
            width: 640,
            height: 480,
            fps: 30,
        }
    }
}

/// Which camera to capture; the test pattern lets roverd run where there is none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CameraDevice {
    /// The first `/dev/video*` that can capture, the test pattern when there is none.
    #[default]
    Auto,
    /// The moving, time-stamped test pattern, whatever cameras there are.
    Test,
    /// A V4L2 device node, always absolute.
    Path(PathBuf),
    /// A camera index as nokhwa counts them.
    Index(u32),
}

impl CameraDevice {
    const ALLOWED: &'static str = r#"must be "auto", "test", a device path such as "/dev/video0", or a camera index such as 0"#;

    /// The file may give an index as an integer or as a string of digits, since both look
    /// like "camera 1" to a person.
    fn from_toml(value: &toml::Value) -> Option<Self> {
        match value {
            toml::Value::Integer(index) => u32::try_from(*index).ok().map(Self::Index),
            toml::Value::String(text) => match text.as_str() {
                "auto" => Some(Self::Auto),
                "test" => Some(Self::Test),
                _ if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
                    text.parse().ok().map(Self::Index)
                }
                _ if Path::new(text).is_absolute() => Some(Self::Path(text.into())),
                _ => None,
            },
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct VideoConfig {
    pub bitrate_kbps: u32,
    /// The longest a viewer who lost a packet waits for a clean picture; PLI/FIR and new
    /// peers get a keyframe sooner anyway.
    pub keyframe_interval_s: f64,
}

impl Default for VideoConfig {
    fn default() -> Self {
        Self {
            bitrate_kbps: 1200,
            keyframe_interval_s: 2.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AudioConfig {
    pub device: AudioDevice,
}

/// Which microphone to capture; as for the camera, a test source stands in for none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AudioDevice {
    /// The default ALSA capture device when there is one, the test tone otherwise.
    #[default]
    Auto,
    /// The test tone.
    Test,
    /// No audio track at all.
    None,
    /// An ALSA device name such as `hw:1,0` or `plughw:CARD=Device`.
    Name(String),
}

impl AudioDevice {
    const ALLOWED: &'static str =
        r#"must be "auto", "test", "none" or an ALSA device name such as "hw:1,0""#;

    fn from_name(name: String) -> Self {
        match name.as_str() {
            "auto" => Self::Auto,
            "test" => Self::Test,
            "none" => Self::None,
            _ => Self::Name(name),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ControlConfig {
    /// How long the motors keep going without a drive command from the driver before they
    /// stop: the bound on how far the robot runs on after the link drops.
    pub deadman_ms: u64,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self { deadman_ms: 500 }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MotorsConfig {
    pub driver: MotorDriver,
    /// Software PWM works on any pin; hardware PWM is steadier but exists on four pins only.
    pub pwm: PwmKind,
    pub pwm_hz: u32,
    /// Every command is scaled by this, so a first test on the desk cannot go full speed.
    pub max_speed: f64,
    /// The largest change of wheel speed per second, which keeps a small robot from tipping
    /// over or a gearbox from a shock at reversal. A large value (such as 1000) means no ramp.
    pub ramp_per_s: f64,
    pub left: MotorPins,
    pub right: MotorPins,
}

impl Default for MotorsConfig {
    fn default() -> Self {
        Self {
            driver: MotorDriver::Sim,
            pwm: PwmKind::Software,
            pwm_hz: 1000,
            max_speed: 1.0,
            ramp_per_s: 4.0,
            left: MotorPins::LEFT,
            right: MotorPins::RIGHT,
        }
    }
}

/// The motor driver board, which says what the pins of [`MotorPins`] mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MotorDriver {
    /// Motors in memory only, shown in `/api/status`: for laptops, tests and a first try.
    #[default]
    Sim,
    /// Direction on `in1`/`in2`, PWM on `en`.
    L298n,
    /// As L298N, plus an optional `stby` pin held high while running.
    Tb6612,
    /// PWM on `in1`/`in2`; `en` is ignored.
    Drv8833,
}

impl MotorDriver {
    pub const ALL: [Self; 4] = [Self::Sim, Self::L298n, Self::Tb6612, Self::Drv8833];

    /// The name used in the file and in `/api/status`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Sim => "sim",
            Self::L298n => "l298n",
            Self::Tb6612 => "tb6612",
            Self::Drv8833 => "drv8833",
        }
    }

    /// A DRV8833 has no enable input, so its `en` (which has a default) must not claim a
    /// pin that the builder uses for something else.
    fn uses_en(&self) -> bool {
        *self != Self::Drv8833
    }

    /// The pins of one motor that carry PWM on this board.
    pub fn pwm_pins(&self, pins: &MotorPins) -> Vec<(&'static str, Option<u8>)> {
        match self {
            Self::Sim => vec![],
            Self::L298n | Self::Tb6612 => vec![("en", pins.en)],
            Self::Drv8833 => vec![("in1", Some(pins.in1)), ("in2", Some(pins.in2))],
        }
    }
}

/// How the speed signal is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PwmKind {
    /// rppal's software PWM, on any output pin (about 2 µs of jitter).
    #[default]
    Software,
    /// The SoC's PWM channels: GPIO 12, 13, 18 and 19 only, and the `pwm-2chan` overlay.
    Hardware,
}

impl PwmKind {
    pub const ALL: [Self; 2] = [Self::Software, Self::Hardware];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Software => "software",
            Self::Hardware => "hardware",
        }
    }
}

/// The GPIOs with a hardware PWM channel on every Raspberry Pi.
pub const HARDWARE_PWM_PINS: [u8; 4] = [12, 13, 18, 19];

/// One motor's wiring and correction. Pins are BCM GPIO numbers, not header pin numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct MotorPins {
    pub in1: u8,
    pub in2: u8,
    pub en: Option<u8>,
    /// TB6612 standby; one chip drives both motors, so both may name the same pin.
    pub stby: Option<u8>,
    /// For a motor wired or mounted the other way round, so "forward" is forward.
    pub invert: bool,
    /// Slows this wheel to match the other, for a robot that pulls to one side.
    pub trim: f64,
}

impl MotorPins {
    const LEFT: Self = Self::new(17, 27, 12);
    const RIGHT: Self = Self::new(23, 24, 13);

    const fn new(in1: u8, in2: u8, en: u8) -> Self {
        Self {
            in1,
            in2,
            en: Some(en),
            stby: None,
            invert: false,
            trim: 1.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogConfig {
    pub level: LogLevel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub const ALL: [Self; 5] = [
        Self::Error,
        Self::Warn,
        Self::Info,
        Self::Debug,
        Self::Trace,
    ];

    /// The name used in the file, which is also what `log::LevelFilter` parses.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The io error is the source: `{:#}` (anyhow) prints it after the path.
    #[error("cannot read config file {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Bad TOML, an unknown key or a value of the wrong type; `message` is toml's text,
    /// with the line, the column and the key.
    #[error("{} is not valid:\n{message}", origin(path.as_deref()))]
    Parse {
        path: Option<PathBuf>,
        message: String,
    },
    /// Values that break the rules, every one of them.
    #[error("{} has {}:\n{}", origin(path.as_deref()), count(problems.len()), list(problems))]
    Invalid {
        path: Option<PathBuf>,
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    fn in_file(self, file: &Path) -> Self {
        let path = Some(file.to_owned());
        match self {
            Self::Parse { message, .. } => Self::Parse { path, message },
            Self::Invalid { problems, .. } => Self::Invalid { path, problems },
            read @ Self::Read { .. } => read,
        }
    }
}

fn origin(path: Option<&Path>) -> String {
    match path {
        Some(path) => format!("config file {}", path.display()),
        None => "the config".to_owned(),
    }
}

fn count(n: usize) -> String {
    match n {
        1 => "1 problem".to_owned(),
        n => format!("{n} problems"),
    }
}

fn list(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
    lines.join("\n")
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The dotted key, e.g. `camera.width`, for code that wants to point at the setting.
    pub key: String,
    /// The whole sentence for a person, also what `Display` prints: the key, the value
    /// given and what is allowed, e.g. `camera.width = 0: must be between 16 and 4096`.
    pub message: String,
}

impl Problem {
    fn new(key: &str, value: impl Display, rule: impl Display) -> Self {
        Self {
            key: key.to_owned(),
            message: format!("{key} = {value}: {rule}"),
        }
    }
}

impl Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Config {
    /// Parses and validates the text of a config file.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: None,
            message: e.to_string().trim_end().to_owned(),
        })?;
        let mut problems = Vec::new();
        let config = raw.lower(&mut problems);
        if let Err(found) = config.validate() {
            // A value that failed to lower was replaced, and validation may flag the
            // stand-in; the first problem already says what is wrong with that key.
            let lowered: Vec<String> = problems.iter().map(|p| p.key.clone()).collect();
            problems.extend(found.into_iter().filter(|p| !lowered.contains(&p.key)));
        }
        // Both passes go through the tables in order; merged, they should too.
        problems.sort_by_key(|p| {
            TABLES
                .iter()
                .position(|t| p.key.split('.').next() == Some(t))
        });
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: None,
                problems,
            })
        }
    }

    /// Reads, parses and validates a config file; every error names the file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text).map_err(|e| e.in_file(path))
    }

    /// Checks every rule and returns all the problems, not just the first.
    pub fn validate(&self) -> Result<(), Vec<Problem>> {
        let mut p = Vec::new();
        self.http.check(&mut p);
        self.limits.check(&mut p);
        self.camera.check(&mut p);
        self.video.check(&mut p);
        self.audio.check(&mut p);
        self.control.check(&mut p);
        self.motors.check(&mut p);
        if p.is_empty() {
            Ok(())
        } else {
            Err(p)
        }
    }

    /// `--simulate`: test sources and simulated motors, whatever the file says, so that the
    /// product can be tried on any machine and a Pi's own file can be tried without moving.
    pub fn simulate(&mut self) {
        self.camera.device = CameraDevice::Test;
        self.audio.device = AudioDevice::Test;
        self.motors.driver = MotorDriver::Sim;
    }
}

// ---------------------------------------------------------------------------------------
// Phase 1: the file as written. Every key is an Option so that a missing one takes the
// default of its typed field; `lower` turns these into the typed config.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    http: RawHttp,
    limits: RawLimits,
    camera: RawCamera,
    video: RawVideo,
    audio: RawAudio,
    control: RawControl,
    motors: RawMotors,
    log: RawLog,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawHttp {
    listen: Option<String>,
    max_peers: Option<i64>,
    token: Option<String>,
    viewer_token: Option<String>,
    tls: Option<RawTls>,
    allowed_hosts: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTls {
    listen: Option<String>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    self_signed: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLimits {
    offers_per_minute: Option<i64>,
    body_bytes: Option<i64>,
    message_bytes: Option<i64>,
    messages_per_s: Option<i64>,
    connect_timeout_s: Option<i64>,
    idle_timeout_s: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCamera {
    device: Option<toml::Value>,
    width: Option<i64>,
    height: Option<i64>,
    fps: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawVideo {
    bitrate_kbps: Option<i64>,
    keyframe_interval_s: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAudio {
    device: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawControl {
    deadman_ms: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawMotors {
    driver: Option<String>,
    pwm: Option<String>,
    pwm_hz: Option<i64>,
    max_speed: Option<f64>,
    ramp_per_s: Option<f64>,
    left: RawPins,
    right: RawPins,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawPins {
    in1: Option<i64>,
    in2: Option<i64>,
    en: Option<i64>,
    stby: Option<i64>,
    invert: Option<bool>,
    trim: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLog {
    level: Option<String>,
}

/// Narrows a TOML integer to its field's type. A value that does not fit is outside the
/// field's range too, so it is reported in the range's words and the default stands in.
fn int<T>(
    p: &mut Vec<Problem>,
    key: &str,
    raw: Option<i64>,
    default: T,
    allowed: &RangeInclusive<T>,
) -> T
where
    T: TryFrom<i64> + Display,
{
    let Some(value) = raw else { return default };
    T::try_from(value).unwrap_or_else(|_| {
        p.push(Problem::new(key, value, between(allowed)));
        default
    })
}

/// Like [`int`] for a GPIO. The stand-in is an impossible pin, which the range check
/// reports (and `from_toml_str` drops) and which the clash check skips, whereas a default
/// pin could clash with one the builder chose.
fn pin(p: &mut Vec<Problem>, key: &str, raw: Option<i64>, default: Option<u8>) -> Option<u8> {
    let Some(value) = raw else { return default };
    Some(u8::try_from(value).unwrap_or_else(|_| {
        p.push(pin_problem(key, value));
        u8::MAX
    }))
}

/// Looks a name up among an enum's variants, listing them all when it is none of them.
fn named<T: Copy>(
    p: &mut Vec<Problem>,
    key: &str,
    raw: Option<String>,
    default: T,
    all: &[T],
    name: fn(&T) -> &'static str,
) -> T {
    let Some(given) = raw else { return default };
    if let Some(found) = all.iter().find(|v| name(v) == given) {
        return *found;
    }
    let names: Vec<String> = all.iter().map(|v| format!("{:?}", name(v))).collect();
    p.push(Problem::new(
        key,
        format!("{given:?}"),
        format!("must be one of {}", names.join(", ")),
    ));
    default
}

impl RawConfig {
    fn lower(self, p: &mut Vec<Problem>) -> Config {
        let d = Config::default();
        Config {
            http: self.http.lower(d.http, p),
            limits: self.limits.lower(d.limits, p),
            camera: self.camera.lower(d.camera, p),
            video: VideoConfig {
                bitrate_kbps: int(
                    p,
                    "video.bitrate_kbps",
                    self.video.bitrate_kbps,
                    d.video.bitrate_kbps,
                    &BITRATE_KBPS,
                ),
                keyframe_interval_s: (self.video.keyframe_interval_s)
                    .unwrap_or(d.video.keyframe_interval_s),
            },
            audio: AudioConfig {
                device: self
                    .audio
                    .device
                    .map_or(d.audio.device, AudioDevice::from_name),
            },
            control: ControlConfig {
                deadman_ms: int(
                    p,
                    "control.deadman_ms",
                    self.control.deadman_ms,
                    d.control.deadman_ms,
                    &DEADMAN_MS,
                ),
            },
            motors: self.motors.lower(d.motors, p),
            log: LogConfig {
                level: named(
                    p,
                    "log.level",
                    self.log.level,
                    d.log.level,
                    &LogLevel::ALL,
                    LogLevel::as_str,
                ),
            },
        }
    }
}

impl RawHttp {
    fn lower(self, d: HttpConfig, p: &mut Vec<Problem>) -> HttpConfig {
        HttpConfig {
            listen: address(p, "http.listen", self.listen, d.listen, "0.0.0.0:8080"),
            max_peers: int(p, "http.max_peers", self.max_peers, d.max_peers, &MAX_PEERS),
            token: self.token.or(d.token),
            viewer_token: self.viewer_token.or(d.viewer_token),
            tls: self.tls.and_then(|tls| tls.lower(p)),
            allowed_hosts: self.allowed_hosts.unwrap_or(d.allowed_hosts),
        }
    }
}

/// A listening address written as text.
fn address(
    p: &mut Vec<Problem>,
    key: &str,
    raw: Option<String>,
    default: SocketAddr,
    example: &str,
) -> SocketAddr {
    let Some(text) = raw else { return default };
    text.parse().unwrap_or_else(|_| {
        p.push(Problem::new(
            key,
            format!("{text:?}"),
            format!(
                r#"must be an IP address and a port, such as "{example}" or "[::]:{}""#,
                example.rsplit(':').next().unwrap_or("8080")
            ),
        ));
        default
    })
}

impl RawTls {
    /// `None` (with a problem) when the table names no certificate at all.
    fn lower(self, p: &mut Vec<Problem>) -> Option<TlsConfig> {
        let default_listen = TlsConfig::DEFAULT_LISTEN
            .parse()
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 8443)));
        let listen = address(
            p,
            "http.tls.listen",
            self.listen,
            default_listen,
            TlsConfig::DEFAULT_LISTEN,
        );
        const EITHER: &str = "set either cert and key (PEM files) or self_signed = true, not both";
        let identity = match (self.cert, self.key, self.self_signed.unwrap_or(false)) {
            (Some(cert), Some(key), false) => TlsIdentity::Files { cert, key },
            (None, None, true) => TlsIdentity::SelfSigned,
            (cert, key, self_signed) => {
                let (key_name, value) = match (cert, key) {
                    (Some(_), Some(_)) => ("http.tls.self_signed", "true".to_owned()),
                    (Some(cert), None) => {
                        ("http.tls.key", format!("<missing, cert is {:?}>", cert))
                    }
                    (None, Some(key)) => ("http.tls.cert", format!("<missing, key is {:?}>", key)),
                    (None, None) => ("http.tls.self_signed", self_signed.to_string()),
                };
                p.push(Problem::new(key_name, value, EITHER));
                return None;
            }
        };
        Some(TlsConfig { listen, identity })
    }
}

impl RawLimits {
    fn lower(self, d: ClientLimits, p: &mut Vec<Problem>) -> ClientLimits {
        ClientLimits {
            offers_per_minute: int(
                p,
                "limits.offers_per_minute",
                self.offers_per_minute,
                d.offers_per_minute,
                &OFFERS_PER_MINUTE,
            ),
            body_bytes: int(
                p,
                "limits.body_bytes",
                self.body_bytes,
                d.body_bytes,
                &BODY_BYTES,
            ),
            message_bytes: int(
                p,
                "limits.message_bytes",
                self.message_bytes,
                d.message_bytes,
                &MESSAGE_BYTES,
            ),
            messages_per_s: int(
                p,
                "limits.messages_per_s",
                self.messages_per_s,
                d.messages_per_s,
                &MESSAGES_PER_S,
            ),
            connect_timeout_s: int(
                p,
                "limits.connect_timeout_s",
                self.connect_timeout_s,
                d.connect_timeout_s,
                &CONNECT_TIMEOUT_S,
            ),
            idle_timeout_s: int(
                p,
                "limits.idle_timeout_s",
                self.idle_timeout_s,
                d.idle_timeout_s,
                &IDLE_TIMEOUT_S,
            ),
        }
    }
}

impl RawCamera {
    fn lower(self, d: CameraConfig, p: &mut Vec<Problem>) -> CameraConfig {
        let device = match self.device {
            None => d.device,
            Some(value) => CameraDevice::from_toml(&value).unwrap_or_else(|| {
                p.push(Problem::new("camera.device", value, CameraDevice::ALLOWED));
                d.device
            }),
        };
        CameraConfig {
            device,
            width: int(p, "camera.width", self.width, d.width, &FRAME_SIDE),
            height: int(p, "camera.height", self.height, d.height, &FRAME_SIDE),
            fps: int(p, "camera.fps", self.fps, d.fps, &FPS),
        }
    }
}

impl RawMotors {
    fn lower(self, d: MotorsConfig, p: &mut Vec<Problem>) -> MotorsConfig {
        MotorsConfig {
            driver: named(
                p,
                "motors.driver",
                self.driver,
                d.driver,
                &MotorDriver::ALL,
                MotorDriver::as_str,
            ),
            pwm: named(
                p,
                "motors.pwm",
                self.pwm,
                d.pwm,
                &PwmKind::ALL,
                PwmKind::as_str,
            ),
            pwm_hz: int(p, "motors.pwm_hz", self.pwm_hz, d.pwm_hz, &PWM_HZ),
            max_speed: self.max_speed.unwrap_or(d.max_speed),
            ramp_per_s: self.ramp_per_s.unwrap_or(d.ramp_per_s),
            left: self.left.lower("motors.left", d.left, p),
            right: self.right.lower("motors.right", d.right, p),
        }
    }
}

impl RawPins {
    fn lower(self, side: &str, d: MotorPins, p: &mut Vec<Problem>) -> MotorPins {
        let key = |name: &str| format!("{side}.{name}");
        MotorPins {
            in1: pin(p, &key("in1"), self.in1, Some(d.in1)).unwrap_or(d.in1),
            in2: pin(p, &key("in2"), self.in2, Some(d.in2)).unwrap_or(d.in2),
            en: pin(p, &key("en"), self.en, d.en),
            stby: pin(p, &key("stby"), self.stby, d.stby),
            invert: self.invert.unwrap_or(d.invert),
            trim: self.trim.unwrap_or(d.trim),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Phase 2: the rules. Each table checks its own keys; the tests at the bottom follow the
// same order.

fn between<T: Display>(allowed: &RangeInclusive<T>) -> String {
    format!("must be between {} and {}", allowed.start(), allowed.end())
}

fn in_range<T: PartialOrd + Display>(
    p: &mut Vec<Problem>,
    key: &str,
    value: T,
    allowed: &RangeInclusive<T>,
) -> bool {
    let ok = allowed.contains(&value);
    if !ok {
        p.push(Problem::new(key, value, between(allowed)));
    }
    ok
}

fn pin_problem(key: &str, value: impl Display) -> Problem {
    let rule = format!(
        "must be a BCM GPIO number between {} and {} (GPIO numbers, not the header's pin numbers)",
        GPIO.start(),
        GPIO.end()
    );
    Problem::new(key, value, rule)
}

impl HttpConfig {
    fn check(&self, p: &mut Vec<Problem>) {
        // listen has no rule here: it was checked as text, and any SocketAddr may be tried.
        in_range(p, "http.max_peers", self.max_peers, &MAX_PEERS);
        check_token(p, "http.token", self.token.as_deref());
        check_token(p, "http.viewer_token", self.viewer_token.as_deref());
        if let Some(viewer) = &self.viewer_token {
            if self.token.is_none() {
                p.push(Problem::new(
                    "http.viewer_token",
                    "<hidden>",
                    "needs http.token as well: without a full token anyone may drive, so a \
                     watch-only token would protect nothing",
                ));
            } else if self.token.as_ref() == Some(viewer) {
                p.push(Problem::new(
                    "http.viewer_token",
                    "<hidden, the same as http.token>",
                    "must differ from http.token, or every viewer could drive",
                ));
            }
        }
        if let Some(tls) = &self.tls {
            if tls.listen == self.listen {
                p.push(Problem::new(
                    "http.tls.listen",
                    format!("{:?}", tls.listen.to_string()),
                    "must differ from http.listen: HTTP and HTTPS each need their own port",
                ));
            }
            if let TlsIdentity::Files { cert, key } = &tls.identity {
                for (name, path) in [("http.tls.cert", cert), ("http.tls.key", key)] {
                    if !path.is_absolute() {
                        p.push(Problem::new(
                            name,
                            format!("{path:?}"),
                            "must be an absolute path to a PEM file, such as \"/etc/roverd/tls/cert.pem\"",
                        ));
                    }
                }
            }
        }
        for (i, host) in self.allowed_hosts.iter().enumerate() {
            // The Host header is matched without its port, so "name:8080" or a URL would
            // never match and the page would be refused with no clue why.
            let bare = !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
            if !bare {
                p.push(Problem::new(
                    &format!("http.allowed_hosts[{i}]"),
                    format!("{host:?}"),
                    r#"must be a bare host name such as "robot.example.com", without scheme, port or path"#,
                ));
            }
        }
    }
}

/// A token in an error would end up in the journal, so only its length is shown.
/// Printable ASCII because browsers refuse other header values, and a space is easily lost
/// when typing the token on a phone.
fn check_token(p: &mut Vec<Problem>, key: &str, token: Option<&str>) {
    let Some(token) = token else { return };
    let len = token.chars().count();
    if len < MIN_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
        p.push(Problem::new(
            key,
            format!("<hidden, {len} characters>"),
            format!(
                "must be at least {MIN_TOKEN_LEN} printable ASCII characters without spaces \
                 (leave the key out to turn the token off)"
            ),
        ));
    }
}

impl ClientLimits {
    fn check(&self, p: &mut Vec<Problem>) {
        in_range(
            p,
            "limits.offers_per_minute",
            self.offers_per_minute,
            &OFFERS_PER_MINUTE,
        );
        in_range(p, "limits.body_bytes", self.body_bytes, &BODY_BYTES);
        in_range(
            p,
            "limits.message_bytes",
            self.message_bytes,
            &MESSAGE_BYTES,
        );
        in_range(
            p,
            "limits.messages_per_s",
            self.messages_per_s,
            &MESSAGES_PER_S,
        );
        in_range(
            p,
            "limits.connect_timeout_s",
            self.connect_timeout_s,
            &CONNECT_TIMEOUT_S,
        );
        in_range(
            p,
            "limits.idle_timeout_s",
            self.idle_timeout_s,
            &IDLE_TIMEOUT_S,
        );
    }
}

impl CameraConfig {
    fn check(&self, p: &mut Vec<Problem>) {
        if let CameraDevice::Path(path) = &self.device {
            if !path.is_absolute() {
                p.push(Problem::new(
                    "camera.device",
                    format!("{path:?}"),
                    CameraDevice::ALLOWED,
                ));
            }
        }
        for (key, side) in [("camera.width", self.width), ("camera.height", self.height)] {
            if in_range(p, key, side, &FRAME_SIDE) && side % 2 != 0 {
                p.push(Problem::new(
                    key,
                    side,
                    "must be even (the H.264 encoder takes I420 frames, whose sizes are even)",
                ));
            }
        }
        in_range(p, "camera.fps", self.fps, &FPS);
    }
}

impl VideoConfig {
    fn check(&self, p: &mut Vec<Problem>) {
        in_range(p, "video.bitrate_kbps", self.bitrate_kbps, &BITRATE_KBPS);
        // contains() is false for NaN and the infinities, so they are caught here too.
        in_range(
            p,
            "video.keyframe_interval_s",
            self.keyframe_interval_s,
            &KEYFRAME_INTERVAL_S,
        );
    }
}

impl AudioConfig {
    fn check(&self, p: &mut Vec<Problem>) {
        if let AudioDevice::Name(name) = &self.device {
            if name.trim().is_empty() {
                p.push(Problem::new(
                    "audio.device",
                    format!("{name:?}"),
                    AudioDevice::ALLOWED,
                ));
            }
        }
    }
}

impl ControlConfig {
    fn check(&self, p: &mut Vec<Problem>) {
        in_range(p, "control.deadman_ms", self.deadman_ms, &DEADMAN_MS);
    }
}

impl MotorsConfig {
    fn check(&self, p: &mut Vec<Problem>) {
        self.check_board_pins(p);
        in_range(p, "motors.pwm_hz", self.pwm_hz, &PWM_HZ);
        let speed = self.max_speed;
        if !(speed > 0.0 && speed <= 1.0) {
            p.push(Problem::new(
                "motors.max_speed",
                speed,
                "must be above 0 and at most 1 (a fraction of full speed)",
            ));
        }
        let ramp = self.ramp_per_s;
        if !(ramp > 0.0 && ramp.is_finite()) {
            p.push(Problem::new(
                "motors.ramp_per_s",
                ramp,
                "must be a finite number above 0 (a large value such as 1000 means no ramp)",
            ));
        }
        self.left.check("motors.left", p);
        self.right.check("motors.right", p);
        self.check_pins_unique(p);
    }

    /// Every PWM pin the board needs must be wired, and with hardware PWM it must be one
    /// of the four pins that have a channel.
    fn check_board_pins(&self, p: &mut Vec<Problem>) {
        for (side, pins) in [("motors.left", &self.left), ("motors.right", &self.right)] {
            for (name, pin) in self.driver.pwm_pins(pins) {
                let key = format!("{side}.{name}");
                match pin {
                    None => p.push(Problem::new(
                        &key,
                        "(absent)",
                        format!(
                            "the {} needs this pin for its speed (PWM) input",
                            self.driver.as_str()
                        ),
                    )),
                    Some(pin)
                        if self.pwm == PwmKind::Hardware && !HARDWARE_PWM_PINS.contains(&pin) =>
                    {
                        p.push(Problem::new(
                            &key,
                            pin,
                            "hardware PWM exists only on GPIO 12, 13, 18 and 19; use one of \
                             those, or motors.pwm = \"software\"",
                        ))
                    }
                    Some(_) => {}
                }
            }
        }
    }

    /// Two functions on one GPIO would fight over it, and the motor would do neither.
    fn check_pins_unique(&self, p: &mut Vec<Problem>) {
        let mut used: Vec<(String, u8)> = Vec::new();
        for (side, pins) in [("motors.left", &self.left), ("motors.right", &self.right)] {
            for (name, pin) in pins.named() {
                let unused = name == "en" && !self.driver.uses_en();
                // An out-of-range pin is already reported and cannot clash with a real one.
                let Some(pin) = pin.filter(|pin| !unused && GPIO.contains(pin)) else {
                    continue;
                };
                let key = format!("{side}.{name}");
                let clash = used.iter().find(|(other, used_pin)| {
                    *used_pin == pin && !(name == "stby" && other.ends_with(".stby"))
                });
                match clash {
                    Some((other, _)) => p.push(Problem::new(
                        &key,
                        pin,
                        format!("GPIO {pin} is already used by {other}"),
                    )),
                    None => used.push((key, pin)),
                }
            }
        }
    }
}

impl MotorPins {
    fn named(&self) -> [(&'static str, Option<u8>); 4] {
        [
            ("in1", Some(self.in1)),
            ("in2", Some(self.in2)),
            ("en", self.en),
            ("stby", self.stby),
        ]
    }

    fn check(&self, side: &str, p: &mut Vec<Problem>) {
        for (name, pin) in self.named() {
            if let Some(pin) = pin.filter(|pin| !GPIO.contains(pin)) {
                p.push(pin_problem(&format!("{side}.{name}"), pin));
            }
        }
        in_range(p, &format!("{side}.trim"), self.trim, &TRIM);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../config/roverd.toml");

    /// The problems that `text` has, as printed; panics if it parses or fails to parse.
    fn problems(text: &str) -> Vec<String> {
        match Config::from_toml_str(text) {
            Err(ConfigError::Invalid { problems, .. }) => {
                problems.iter().map(ToString::to_string).collect()
            }
            other => panic!("expected problems from {text:?}, got {other:?}"),
        }
    }

    /// The one problem that `text` has.
    fn problem(text: &str) -> String {
        let mut found = problems(text);
        assert_eq!(found.len(), 1, "{found:#?}");
        found.remove(0)
    }

    fn parse_error(text: &str) -> String {
        match Config::from_toml_str(text) {
            Err(ConfigError::Parse { message, .. }) => message,
            other => panic!("expected a parse error from {text:?}, got {other:?}"),
        }
    }

    fn parse(text: &str) -> Config {
        Config::from_toml_str(text).unwrap()
    }

    // --- defaults and the example file

    #[test]
    fn defaults_are_the_design_values() {
        let c = Config::default();
        assert_eq!(c.http.listen.to_string(), "0.0.0.0:8080");
        assert_eq!((c.http.max_peers, &c.http.token), (8, &None));
        assert!(c.http.allowed_hosts.is_empty());
        assert_eq!(c.camera.device, CameraDevice::Auto);
        assert_eq!(
            (c.camera.width, c.camera.height, c.camera.fps),
            (640, 480, 30)
        );
        assert_eq!(c.video.bitrate_kbps, 1200);
        assert_eq!(c.video.keyframe_interval_s, 2.0);
        assert_eq!(c.audio.device, AudioDevice::Auto);
        assert_eq!(c.control.deadman_ms, 500);
        assert_eq!(c.motors.driver, MotorDriver::Sim);
        assert_eq!(c.motors.pwm_hz, 1000);
        assert_eq!((c.motors.max_speed, c.motors.ramp_per_s), (1.0, 4.0));
        let l = &c.motors.left;
        assert_eq!((l.in1, l.in2, l.en, l.stby), (17, 27, Some(12), None));
        let r = &c.motors.right;
        assert_eq!((r.in1, r.in2, r.en, r.stby), (23, 24, Some(13), None));
        assert!(!l.invert && !r.invert);
        assert_eq!((l.trim, r.trim), (1.0, 1.0));
        assert_eq!(c.log.level.as_str(), "info");
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn example_file_is_the_defaults() {
        assert_eq!(parse(EXAMPLE), Config::default());
    }

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(parse(""), Config::default());
    }

    #[test]
    fn missing_keys_keep_their_defaults() {
        let c = parse("[camera]\nwidth = 320\n[motors.right]\ninvert = true\n");
        let mut expected = Config::default();
        expected.camera.width = 320;
        expected.motors.right.invert = true;
        assert_eq!(c, expected);
    }

    #[test]
    fn every_key_is_read() {
        let c = parse(
            r#"
            [http]
            listen = "127.0.0.1:9000"
            max_peers = 2
            token = "s3cret-token"
            allowed_hosts = ["rover.example.com"]
            [camera]
            device = "/dev/video2"
            width = 1280
            height = 720
            fps = 15
            [video]
            bitrate_kbps = 2500
            keyframe_interval_s = 0.5
            [audio]
            device = "hw:1,0"
            [control]
            deadman_ms = 250
            [motors]
            pwm_hz = 20000
            max_speed = 0.5
            ramp_per_s = 2
            [motors.left]
            in1 = 5
            in2 = 6
            en = 18
            stby = 22
            invert = true
            trim = 0.9
            [log]
            level = "debug"
            "#,
        );
        assert_eq!(c.http.listen, SocketAddr::from(([127, 0, 0, 1], 9000)));
        assert_eq!(c.http.max_peers, 2);
        assert_eq!(c.http.token.as_deref(), Some("s3cret-token"));
        assert_eq!(c.http.allowed_hosts, ["rover.example.com"]);
        assert_eq!(c.camera.device, CameraDevice::Path("/dev/video2".into()));
        assert_eq!(
            (c.camera.width, c.camera.height, c.camera.fps),
            (1280, 720, 15)
        );
        assert_eq!(c.video.bitrate_kbps, 2500);
        assert_eq!(c.video.keyframe_interval_s, 0.5);
        assert_eq!(c.audio.device, AudioDevice::Name("hw:1,0".into()));
        assert_eq!(c.control.deadman_ms, 250);
        assert_eq!(c.motors.pwm_hz, 20000);
        assert_eq!((c.motors.max_speed, c.motors.ramp_per_s), (0.5, 2.0));
        let l = &c.motors.left;
        assert_eq!((l.in1, l.in2, l.en, l.stby), (5, 6, Some(18), Some(22)));
        assert_eq!((l.invert, l.trim), (true, 0.9));
        assert_eq!(c.log.level, LogLevel::Debug);
    }

    // --- phase 1: what the file says

    #[test]
    fn unknown_key_in_any_table_is_named() {
        for table in [
            "http",
            "camera",
            "video",
            "audio",
            "control",
            "motors",
            "motors.left",
            "motors.right",
            "log",
        ] {
            let message = parse_error(&format!("[{table}]\nbogus_key = 1\n"));
            assert!(message.contains("`bogus_key`"), "[{table}]: {message}");
            assert!(message.contains("line 2"), "[{table}]: {message}");
        }
        assert!(parse_error("[cammera]\nwidth = 640\n").contains("`cammera`"));
    }

    #[test]
    fn wrong_type_and_bad_toml_are_parse_errors() {
        assert!(parse_error("[camera]\nwidth = \"640\"\n").contains("line 2"));
        assert!(parse_error("[camera\n").contains("line 1"));
    }

    #[test]
    fn floats_may_be_written_as_integers() {
        let c = parse("[video]\nkeyframe_interval_s = 3\n[motors]\nmax_speed = 1\n");
        assert_eq!(c.video.keyframe_interval_s, 3.0);
        assert_eq!(c.motors.max_speed, 1.0);
    }

    // --- phase 2: the rules, in the order of the code

    #[test]
    fn problem_says_key_value_and_what_is_allowed() {
        let p = problems("[camera]\nwidth = 0\n");
        assert_eq!(p, ["camera.width = 0: must be between 16 and 4096"]);
    }

    #[test]
    fn listen_must_be_ip_and_port() {
        assert_eq!(
            problem("[http]\nlisten = \"localhost:8080\"\n"),
            r#"http.listen = "localhost:8080": must be an IP address and a port, such as "0.0.0.0:8080" or "[::]:8080""#
        );
        assert_eq!(parse("[http]\nlisten = \"[::]:0\"\n").http.listen.port(), 0);
    }

    #[test]
    fn max_peers_between_1_and_64() {
        assert!(problem("[http]\nmax_peers = 0\n").starts_with("http.max_peers = 0:"));
        assert!(problem("[http]\nmax_peers = 65\n").contains("between 1 and 64"));
        assert!(problem("[http]\nmax_peers = -3\n").contains("between 1 and 64"));
    }

    #[test]
    fn token_needs_8_printable_characters_and_is_never_shown() {
        let short = problem("[http]\ntoken = \"abc\"\n");
        assert!(
            short.starts_with("http.token = <hidden, 3 characters>:"),
            "{short}"
        );
        assert!(problem("[http]\ntoken = \"\"\n").contains("at least 8"));
        let spaced = problem("[http]\ntoken = \"my secret phrase\"\n");
        assert!(!spaced.contains("secret"), "{spaced}");
        assert!(parse("[http]\ntoken = \"abcdefgh\"\n").http.token.is_some());
    }

    #[test]
    fn a_viewer_token_needs_a_different_full_token() {
        let c = parse("[http]\ntoken = \"drive-token\"\nviewer_token = \"watch-token\"\n");
        assert_eq!(c.http.viewer_token.as_deref(), Some("watch-token"));
        let alone = problem("[http]\nviewer_token = \"watch-token\"\n");
        assert!(
            alone.starts_with("http.viewer_token = <hidden>: needs http.token"),
            "{alone}"
        );
        let same = problem("[http]\ntoken = \"same-token\"\nviewer_token = \"same-token\"\n");
        assert!(same.contains("must differ from http.token"), "{same}");
        assert!(
            !same.contains("same-token"),
            "a token must never be shown: {same}"
        );
        let short = problem("[http]\ntoken = \"drive-token\"\nviewer_token = \"abc\"\n");
        assert!(
            short.starts_with("http.viewer_token = <hidden, 3 characters>:"),
            "{short}"
        );
    }

    #[test]
    fn tls_takes_files_or_self_signed() {
        let c = parse("[http.tls]\nself_signed = true\n");
        let tls = c.http.tls.unwrap();
        assert_eq!(tls.identity, TlsIdentity::SelfSigned);
        assert_eq!(tls.listen.to_string(), "0.0.0.0:8443");
        let c =
            parse("[http.tls]\nlisten = \"127.0.0.1:9443\"\ncert = \"/c.pem\"\nkey = \"/k.pem\"\n");
        let tls = c.http.tls.unwrap();
        assert_eq!(tls.listen.to_string(), "127.0.0.1:9443");
        assert_eq!(
            tls.identity,
            TlsIdentity::Files {
                cert: "/c.pem".into(),
                key: "/k.pem".into()
            }
        );
        assert!(parse("").http.tls.is_none());
        assert!(problem("[http.tls]\n")
            .starts_with("http.tls.self_signed = false: set either cert and key"));
        assert!(problem("[http.tls]\ncert = \"/c.pem\"\n").starts_with("http.tls.key = <missing"));
        assert!(
            problem("[http.tls]\nkey = \"/k.pem\"\nself_signed = true\n")
                .starts_with("http.tls.cert = <missing")
        );
        assert!(
            problem("[http.tls]\ncert = \"/c\"\nkey = \"/k\"\nself_signed = true\n")
                .starts_with("http.tls.self_signed = true: set either")
        );
        assert!(problem("[http.tls]\ncert = \"c.pem\"\nkey = \"/k.pem\"\n")
            .starts_with("http.tls.cert = \"c.pem\": must be an absolute path"));
        assert!(
            problem("[http]\nlisten = \"0.0.0.0:8443\"\n[http.tls]\nself_signed = true\n")
                .starts_with("http.tls.listen = \"0.0.0.0:8443\": must differ")
        );
        assert!(
            problem("[http.tls]\nlisten = \"nowhere\"\nself_signed = true\n")
                .contains("0.0.0.0:8443")
        );
        assert!(parse_error("[http.tls]\nport = 1\n").contains("port"));
    }

    #[test]
    fn limits_have_ranges() {
        let c = parse("[limits]\noffers_per_minute = 5\nmessages_per_s = 10\nconnect_timeout_s = 3\nidle_timeout_s = 2\nbody_bytes = 8192\nmessage_bytes = 512\n");
        let l = &c.limits;
        assert_eq!(
            (
                l.offers_per_minute,
                l.messages_per_s,
                l.connect_timeout_s,
                l.idle_timeout_s,
                l.body_bytes,
                l.message_bytes
            ),
            (5, 10, 3, 2, 8192, 512)
        );
        let mut found = problems("[limits]\noffers_per_minute = 0\nbody_bytes = 10\nmessage_bytes = 5000\nmessages_per_s = -1\nconnect_timeout_s = 0\nidle_timeout_s = 601\n");
        found.sort();
        assert_eq!(
            found,
            [
                "limits.body_bytes = 10: must be between 4096 and 1048576",
                "limits.connect_timeout_s = 0: must be between 1 and 300",
                "limits.idle_timeout_s = 601: must be between 1 and 600",
                "limits.message_bytes = 5000: must be between 64 and 4096",
                "limits.messages_per_s = -1: must be between 5 and 1000",
                "limits.offers_per_minute = 0: must be between 1 and 600",
            ]
        );
    }

    #[test]
    fn allowed_hosts_are_bare_names() {
        assert_eq!(
            problems(
                "[http]\nallowed_hosts = [\"ok.lan\", \"http://x.lan\", \"x.lan:8080\", \"\"]\n"
            )
            .iter()
            .map(|p| p.split(" = ").next().unwrap())
            .collect::<Vec<_>>(),
            [
                "http.allowed_hosts[1]",
                "http.allowed_hosts[2]",
                "http.allowed_hosts[3]"
            ]
        );
    }

    #[test]
    fn camera_device_forms() {
        let device = |v: &str| parse(&format!("[camera]\ndevice = {v}\n")).camera.device;
        assert_eq!(device("\"auto\""), CameraDevice::Auto);
        assert_eq!(device("\"test\""), CameraDevice::Test);
        assert_eq!(
            device("\"/dev/video1\""),
            CameraDevice::Path("/dev/video1".into())
        );
        assert_eq!(device("2"), CameraDevice::Index(2));
        assert_eq!(device("\"2\""), CameraDevice::Index(2));
        for bad in ["\"video0\"", "\"\"", "-1", "true", "\"Auto\""] {
            let p = problem(&format!("[camera]\ndevice = {bad}\n"));
            assert_eq!(
                p,
                format!("camera.device = {bad}: {}", CameraDevice::ALLOWED),
                "{bad}"
            );
        }
    }

    #[test]
    fn camera_device_path_must_be_absolute() {
        let mut c = Config::default();
        c.camera.device = CameraDevice::Path("video0".into());
        assert_eq!(c.validate().unwrap_err()[0].key, "camera.device");
    }

    #[test]
    fn frame_size_between_16_and_4096() {
        assert!(problem("[camera]\nheight = 8\n").starts_with("camera.height = 8:"));
        assert!(problem("[camera]\nwidth = 4097\n").contains("between 16 and 4096"));
        assert!(problem("[camera]\nwidth = -640\n").contains("between 16 and 4096"));
    }

    #[test]
    fn frame_size_even() {
        let p = problem("[camera]\nwidth = 641\n");
        assert!(p.starts_with("camera.width = 641: must be even"), "{p}");
        assert!(problem("[camera]\nheight = 479\n").starts_with("camera.height = 479:"));
    }

    #[test]
    fn fps_between_1_and_120() {
        assert!(problem("[camera]\nfps = 0\n").contains("between 1 and 120"));
        assert!(problem("[camera]\nfps = 121\n").contains("between 1 and 120"));
    }

    #[test]
    fn bitrate_between_100_and_20000() {
        let p = problem("[video]\nbitrate_kbps = 99\n");
        assert_eq!(p, "video.bitrate_kbps = 99: must be between 100 and 20000");
        assert!(problem("[video]\nbitrate_kbps = 20001\n").contains("20000"));
    }

    #[test]
    fn keyframe_interval_between_0_1_and_60() {
        for bad in ["0", "0.05", "61", "nan", "inf"] {
            let p = problem(&format!("[video]\nkeyframe_interval_s = {bad}\n"));
            assert!(p.contains("between 0.1 and 60"), "{p}");
        }
    }

    #[test]
    fn audio_device_forms() {
        let device = |v: &str| parse(&format!("[audio]\ndevice = \"{v}\"\n")).audio.device;
        assert_eq!(device("auto"), AudioDevice::Auto);
        assert_eq!(device("test"), AudioDevice::Test);
        assert_eq!(device("none"), AudioDevice::None);
        assert_eq!(device("plughw:1,0"), AudioDevice::Name("plughw:1,0".into()));
        let p = problem("[audio]\ndevice = \" \"\n");
        assert_eq!(p, format!("audio.device = \" \": {}", AudioDevice::ALLOWED));
    }

    #[test]
    fn deadman_between_50_and_10000() {
        assert!(problem("[control]\ndeadman_ms = 49\n").contains("between 50 and 10000"));
        assert!(problem("[control]\ndeadman_ms = 10001\n").contains("between 50 and 10000"));
    }

    #[test]
    fn every_gpio_driver_is_accepted_with_the_default_pins() {
        for (name, driver) in [
            ("l298n", MotorDriver::L298n),
            ("tb6612", MotorDriver::Tb6612),
            ("drv8833", MotorDriver::Drv8833),
        ] {
            let c = parse(&format!("[motors]\ndriver = \"{name}\"\n"));
            assert_eq!(c.motors.driver, driver);
            assert_eq!(c.motors.pwm, PwmKind::Software);
        }
    }

    #[test]
    fn hardware_pwm_only_on_the_pins_that_have_it() {
        // The default en pins, 12 and 13, have hardware PWM.
        let c = parse("[motors]\ndriver = \"l298n\"\npwm = \"hardware\"\n");
        assert_eq!(c.motors.pwm, PwmKind::Hardware);
        let p =
            problem("[motors]\ndriver = \"tb6612\"\npwm = \"hardware\"\n[motors.left]\nen = 22\n");
        assert!(
            p.starts_with(
                "motors.left.en = 22: hardware PWM exists only on GPIO 12, 13, 18 and 19"
            ),
            "{p}"
        );
        // A DRV8833 takes PWM on in1 and in2, so those must be hardware pins.
        let found = problems("[motors]\ndriver = \"drv8833\"\npwm = \"hardware\"\n");
        assert_eq!(found.len(), 4, "{found:#?}");
        assert!(found.iter().all(|p| p.contains("hardware PWM exists only")));
        parse(
            "[motors]\ndriver = \"drv8833\"\npwm = \"hardware\"\n\
             [motors.left]\nin1 = 12\nin2 = 18\n[motors.right]\nin1 = 13\nin2 = 19\n",
        );
        // Software PWM works on any pin, and the sim driver uses none.
        parse("[motors]\ndriver = \"l298n\"\n[motors.left]\nen = 22\n");
        parse("[motors]\npwm = \"hardware\"\n[motors.left]\nen = 22\n");
        assert_eq!(
            problem("[motors]\npwm = \"fast\"\n"),
            r#"motors.pwm = "fast": must be one of "software", "hardware""#
        );
    }

    #[test]
    fn unknown_driver_lists_the_drivers() {
        assert_eq!(
            problem("[motors]\ndriver = \"L298N\"\n"),
            r#"motors.driver = "L298N": must be one of "sim", "l298n", "tb6612", "drv8833""#
        );
    }

    #[test]
    fn pwm_between_1_and_40000() {
        assert!(problem("[motors]\npwm_hz = 0\n").contains("between 1 and 40000"));
        assert!(problem("[motors]\npwm_hz = 40001\n").contains("between 1 and 40000"));
    }

    #[test]
    fn max_speed_above_0_up_to_1() {
        for bad in ["0", "-0.5", "1.01", "nan", "inf"] {
            let p = problem(&format!("[motors]\nmax_speed = {bad}\n"));
            assert!(p.starts_with("motors.max_speed = "), "{p}");
        }
        assert_eq!(parse("[motors]\nmax_speed = 0.01\n").motors.max_speed, 0.01);
    }

    #[test]
    fn ramp_positive_and_finite() {
        for bad in ["0", "-1", "nan", "inf"] {
            let p = problem(&format!("[motors]\nramp_per_s = {bad}\n"));
            assert!(p.contains("large value such as 1000 means no ramp"), "{p}");
        }
        assert_eq!(parse("[motors]\nramp_per_s = 1e9\n").motors.ramp_per_s, 1e9);
    }

    #[test]
    fn pins_are_bcm_0_to_27() {
        let p = problem("[motors.left]\nin1 = 28\n");
        assert!(
            p.starts_with("motors.left.in1 = 28: must be a BCM GPIO number"),
            "{p}"
        );
        assert!(problem("[motors.right]\nen = 40\n").starts_with("motors.right.en = 40:"));
        assert!(problem("[motors.right]\nstby = 300\n").starts_with("motors.right.stby = 300:"));
        assert!(problem("[motors.left]\nin2 = -1\n").starts_with("motors.left.in2 = -1:"));
    }

    #[test]
    fn pin_used_twice_names_both_keys() {
        assert_eq!(
            problem("[motors.right]\nin1 = 17\n"),
            "motors.right.in1 = 17: GPIO 17 is already used by motors.left.in1"
        );
        assert_eq!(
            problem("[motors.left]\nen = 27\n"),
            "motors.left.en = 27: GPIO 27 is already used by motors.left.in2"
        );
    }

    #[test]
    fn stby_may_be_shared_by_both_motors() {
        let c = parse("[motors.left]\nstby = 22\n[motors.right]\nstby = 22\n");
        assert_eq!(
            (c.motors.left.stby, c.motors.right.stby),
            (Some(22), Some(22))
        );
        assert_eq!(
            problem("[motors.left]\nstby = 13\n"),
            "motors.right.en = 13: GPIO 13 is already used by motors.left.stby"
        );
    }

    #[test]
    fn drv8833_en_claims_no_pin() {
        let mut c = Config::default();
        c.motors.driver = MotorDriver::Drv8833;
        c.motors.left.in1 = 12;
        assert_eq!(c.validate(), Ok(()), "en = 12 is not a pin of the drv8833");
        c.motors.driver = MotorDriver::L298n;
        let keys: Vec<String> = c
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|p| p.key)
            .collect();
        assert_eq!(keys, ["motors.left.en"], "but it is one of the l298n");
    }

    #[test]
    fn trim_between_0_and_1() {
        for bad in ["-0.1", "1.5", "nan"] {
            let p = problem(&format!("[motors.left]\ntrim = {bad}\n"));
            assert!(p.starts_with("motors.left.trim = "), "{p}");
            assert!(p.contains("between 0 and 1"), "{p}");
        }
        assert_eq!(parse("[motors.right]\ntrim = 0\n").motors.right.trim, 0.0);
    }

    #[test]
    fn log_level_names() {
        for level in LogLevel::ALL {
            let c = parse(&format!("[log]\nlevel = \"{}\"\n", level.as_str()));
            assert_eq!(c.log.level, level);
        }
        assert!(problem("[log]\nlevel = \"verbose\"\n").contains(r#""error", "warn""#));
    }

    // --- all together

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = r#"
            [http]
            listen = "nowhere"
            [camera]
            width = 641
            fps = 0
            [motors]
            driver = "l298n"
            [motors.right]
            in1 = 17
            trim = 2
            [log]
            level = "loud"
        "#;
        let keys: Vec<String> = match Config::from_toml_str(text) {
            Err(ConfigError::Invalid { problems, .. }) => {
                problems.into_iter().map(|p| p.key).collect()
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(
            keys,
            [
                "http.listen",
                "camera.width",
                "camera.fps",
                "motors.right.trim",
                "motors.right.in1",
                "log.level"
            ]
        );
    }

    #[test]
    fn a_value_too_big_for_its_field_is_reported_once() {
        let p = problems("[camera]\nwidth = 99999999999\n[motors.left]\nin1 = 256\n");
        assert_eq!(p.len(), 2, "{p:#?}");
    }

    #[test]
    fn errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("roverd-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("roverd.toml");

        std::fs::write(&file, "[camera]\nwidth = 1\nheight = 3\n").unwrap();
        let text = Config::load(&file).unwrap_err().to_string();
        assert!(text.starts_with(&format!("config file {} has 2 problems:\n", file.display())));
        assert!(
            text.ends_with("\n  camera.height = 3: must be between 16 and 4096"),
            "{text}"
        );

        std::fs::write(&file, "[camera]\nwidht = 640\n").unwrap();
        let text = Config::load(&file).unwrap_err().to_string();
        assert!(text.contains(&file.display().to_string()) && text.contains("`widht`"));

        std::fs::write(&file, EXAMPLE).unwrap();
        assert_eq!(Config::load(&file).unwrap(), Config::default());

        std::fs::remove_dir_all(&dir).unwrap();
        let err = Config::load(&file).unwrap_err();
        assert!(matches!(&err, ConfigError::Read { path, .. } if *path == file));
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn simulate_forces_test_sources_and_sim_motors() {
        let mut c = parse(
            "[camera]\ndevice = \"/dev/video0\"\n[audio]\ndevice = \"hw:0\"\n[motors.left]\ntrim = 0.8\n",
        );
        c.motors.driver = MotorDriver::Tb6612;
        c.simulate();
        assert_eq!(c.camera.device, CameraDevice::Test);
        assert_eq!(c.audio.device, AudioDevice::Test);
        assert_eq!(c.motors.driver, MotorDriver::Sim);
        assert_eq!(c.motors.left.trim, 0.8);
    }
}
