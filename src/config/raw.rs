//! Phase 1: the file as written. serde reads the text into these `Raw*` structs, which
//! mirror the file: every key is an `Option`, so that a missing one takes the default of
//! its typed field, and every table denies unknown keys. `lower` turns them into the typed
//! [`Config`], reporting a value that does not even fit its field in the words of the rule
//! it breaks.

use std::fmt::Display;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::rules::{
    between, pin_problem, BITRATE_KBPS, BODY_BYTES, CONNECT_TIMEOUT_S, DEADMAN_MS, FPS, FRAME_SIDE,
    HARDWARE_PWM_HZ, IDLE_TIMEOUT_S, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_ADDRESS, MAX_PEERS,
    MESSAGES_PER_S, MESSAGE_BYTES, OFFERS_PER_MINUTE,
};
use crate::config::types::{
    AudioConfig, AudioDevice, CameraConfig, CameraDevice, ClientLimits, Config, ControlConfig,
    HttpConfig, LogConfig, LogLevel, MotorDriver, MotorPins, MotorsConfig, Problem, PwmKind,
    TlsConfig, TlsIdentity, VideoConfig,
};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawConfig {
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
    max_connections: Option<i64>,
    max_connections_per_address: Option<i64>,
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
    sim_file: Option<PathBuf>,
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
    pub(crate) fn lower(self, p: &mut Vec<Problem>) -> Config {
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
            max_connections: int(
                p,
                "limits.max_connections",
                self.max_connections,
                d.max_connections,
                &MAX_CONNECTIONS,
            ),
            max_connections_per_address: int(
                p,
                "limits.max_connections_per_address",
                self.max_connections_per_address,
                d.max_connections_per_address,
                &MAX_CONNECTIONS_PER_ADDRESS,
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
            pwm_hz: int(p, "motors.pwm_hz", self.pwm_hz, d.pwm_hz, &HARDWARE_PWM_HZ),
            sim_file: self.sim_file.or(d.sim_file),
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

impl CameraDevice {
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

impl AudioDevice {
    fn from_name(name: String) -> Self {
        match name.as_str() {
            "auto" => Self::Auto,
            "test" => Self::Test,
            "none" => Self::None,
            _ => Self::Name(name),
        }
    }
}
