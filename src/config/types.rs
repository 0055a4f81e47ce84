//! The typed config: [`Config`], its tables and their enums, with the defaults of
//! `config/roverd.toml`, and [`ConfigError`]/[`Problem`], the words a robot builder reads
//! when a file cannot be used. Reading a file is in `raw`, the rules in `rules`.

use std::fmt::{self, Display};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
    /// Open TCP connections (HTTP and HTTPS) at once, from everyone. Beyond it a new
    /// connection is closed as soon as it is accepted, before any work is done for it.
    pub max_connections: usize,
    /// Open TCP connections at once from one client address.
    pub max_connections_per_address: usize,
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
            max_connections: 256,
            max_connections_per_address: 32,
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
    /// A camera index: `N` is `/dev/videoN`.
    Index(u32),
}

impl CameraDevice {
    pub(crate) const ALLOWED: &'static str = r#"must be "auto", "test", a device path such as "/dev/video0", or a camera index such as 0"#;
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
    pub(crate) const ALLOWED: &'static str =
        r#"must be "auto", "test", "none" or an ALSA device name such as "hw:1,0""#;
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
    /// Software PWM works on any pin; hardware PWM is steadier but exists on four pins
    /// only; `auto` takes hardware PWM where the board's speed pins and the Pi allow it.
    pub pwm: PwmKind,
    pub pwm_hz: u32,
    /// With `driver = "sim"`: a file replaced (atomically) on every write with
    /// `{"left": L, "right": R}`, the speeds the pins would get. It outlives roverd as GPIO
    /// levels do, so tests and `roverd motors-off` can see what a dead roverd left behind.
    pub sim_file: Option<PathBuf>,
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
            pwm: PwmKind::Auto,
            pwm_hz: 1000,
            sim_file: None,
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
    pub(crate) fn uses_en(&self) -> bool {
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
    /// Hardware PWM when every speed pin of the board has a channel (GPIO 12, 13, 18, 19)
    /// and the channels exist (`/sys/class/pwm`), software PWM otherwise; roverd logs
    /// which, and `/api/status` shows it.
    #[default]
    Auto,
    /// rppal's software PWM, on any output pin: a thread per pin, which runs at normal
    /// priority under the systemd unit, so expect tens of µs of jitter, more under load.
    Software,
    /// The SoC's PWM channels: GPIO 12, 13, 18 and 19 only, and the `pwm-2chan` overlay.
    Hardware,
}

impl PwmKind {
    pub const ALL: [Self; 3] = [Self::Auto, Self::Software, Self::Hardware];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Auto => "auto",
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
    pub(crate) fn in_file(self, file: &Path) -> Self {
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
    pub(crate) fn new(key: &str, value: impl Display, rule: impl Display) -> Self {
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
