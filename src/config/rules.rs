//! Phase 2: the rules. Each table checks its own keys, in the order of the example file,
//! and every broken rule becomes a [`Problem`] that names the key, the value and what is
//! allowed. The ranges are here too, since lowering reports a value that does not fit its
//! field in the same words.

use std::fmt::Display;
use std::ops::RangeInclusive;

use crate::config::types::{
    AudioConfig, AudioDevice, CameraConfig, CameraDevice, ClientLimits, Config, ControlConfig,
    HttpConfig, MotorPins, MotorsConfig, Problem, PwmKind, TlsIdentity, VideoConfig,
    HARDWARE_PWM_PINS,
};

pub(crate) const MAX_PEERS: RangeInclusive<usize> = 1..=64;
pub(crate) const FRAME_SIDE: RangeInclusive<u32> = 16..=4096;
pub(crate) const FPS: RangeInclusive<u32> = 1..=120;
pub(crate) const BITRATE_KBPS: RangeInclusive<u32> = 100..=20_000;
pub(crate) const KEYFRAME_INTERVAL_S: RangeInclusive<f64> = 0.1..=60.0;
/// The deadman: the page repeats a held control every `min(50, deadman_ms / 4)` ms, so at
/// 100 ms it still has four tries before the motors stop (a browser's timers slip by tens of
/// ms under load); above 5 s a robot whose driver vanished runs on too far.
pub(crate) const DEADMAN_MS: RangeInclusive<u64> = 100..=5_000;
/// Software PWM: below 100 Hz a motor jerks at the PWM rate; above 5 kHz rppal's PWM
/// thread busy-waits through most of each period (a whole core) and its jitter (tens of
/// µs at normal priority) becomes a large share of the pulse.
pub(crate) const SOFTWARE_PWM_HZ: RangeInclusive<u32> = 100..=5_000;
/// Hardware PWM (`motors.pwm = "hardware"` only): the SoC's clock keeps any of these steady,
/// and above 20 kHz a motor no longer whines.
pub(crate) const HARDWARE_PWM_HZ: RangeInclusive<u32> = 1..=40_000;
pub(crate) const TRIM: RangeInclusive<f64> = 0.0..=1.0;
/// The BCM GPIOs on the 40-pin header, the same on every Pi that roverd supports.
pub(crate) const GPIO: RangeInclusive<u8> = 0..=27;
pub(crate) const MIN_TOKEN_LEN: usize = 8;
pub(crate) const OFFERS_PER_MINUTE: RangeInclusive<u32> = 1..=600;
pub(crate) const BODY_BYTES: RangeInclusive<usize> = 4096..=ClientLimits::MAX_BODY_BYTES;
/// The parser's own cap ([`crate::protocol::MAX_MESSAGE_BYTES`]) is the top of the range.
pub(crate) const MESSAGE_BYTES: RangeInclusive<usize> = 64..=crate::protocol::MAX_MESSAGE_BYTES;
pub(crate) const MESSAGES_PER_S: RangeInclusive<u32> = 5..=1000;
pub(crate) const CONNECT_TIMEOUT_S: RangeInclusive<u64> = 1..=300;
pub(crate) const IDLE_TIMEOUT_S: RangeInclusive<u64> = 1..=600;
/// Each connection is a file descriptor; systemd/roverd.service's LimitNOFILE has room
/// for the top of this range plus every peer and the devices.
pub(crate) const MAX_CONNECTIONS: RangeInclusive<usize> = 16..=1024;
pub(crate) const MAX_CONNECTIONS_PER_ADDRESS: RangeInclusive<usize> = 1..=1024;

/// Every broken rule of `config`, table by table; empty when it may be used.
pub(crate) fn problems(config: &Config) -> Vec<Problem> {
    let mut p = Vec::new();
    config.http.check(&mut p);
    config.limits.check(&mut p);
    config.camera.check(&mut p);
    config.video.check(&mut p);
    config.audio.check(&mut p);
    config.control.check(&mut p);
    config.motors.check(&mut p);
    p
}

pub(crate) fn between<T: Display>(allowed: &RangeInclusive<T>) -> String {
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

pub(crate) fn pin_problem(key: &str, value: impl Display) -> Problem {
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
            // Port 0 asks the system for a free port, a different one for each listener.
            if tls.listen == self.listen && tls.listen.port() != 0 {
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
        in_range(
            p,
            "limits.max_connections",
            self.max_connections,
            &MAX_CONNECTIONS,
        );
        let per_address_ok = in_range(
            p,
            "limits.max_connections_per_address",
            self.max_connections_per_address,
            &MAX_CONNECTIONS_PER_ADDRESS,
        );
        if per_address_ok && self.max_connections_per_address > self.max_connections {
            p.push(Problem::new(
                "limits.max_connections_per_address",
                self.max_connections_per_address,
                format!(
                    "must not be more than limits.max_connections ({})",
                    self.max_connections
                ),
            ));
        }
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
        self.check_pwm_hz(p);
        self.check_sim_file(p);
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

    /// Software PWM has a narrower range than hardware PWM, and `auto` may fall back to
    /// software PWM, so only `pwm = "hardware"` gets the wide one.
    fn check_pwm_hz(&self, p: &mut Vec<Problem>) {
        let hz = self.pwm_hz;
        let (allowed, why) = match self.pwm {
            PwmKind::Hardware => (&HARDWARE_PWM_HZ, ""),
            PwmKind::Software => (&SOFTWARE_PWM_HZ, " for software PWM"),
            PwmKind::Auto => (
                &SOFTWARE_PWM_HZ,
                " (motors.pwm = \"auto\" may use software PWM; up to 40000 needs \
                 motors.pwm = \"hardware\")",
            ),
        };
        if !allowed.contains(&hz) {
            p.push(Problem::new(
                "motors.pwm_hz",
                hz,
                format!("{}{why}", between(allowed)),
            ));
        }
    }

    /// The sim's file is replaced by renaming a temporary file beside it, so it needs a
    /// directory and a name, and an absolute path, since systemd starts roverd in `/`.
    fn check_sim_file(&self, p: &mut Vec<Problem>) {
        let Some(file) = &self.sim_file else { return };
        if !file.is_absolute() || file.file_name().is_none() {
            p.push(Problem::new(
                "motors.sim_file",
                format!("{:?}", file.display().to_string()),
                "must be the absolute path of a file, such as \"/var/lib/roverd/motors.json\"",
            ));
        }
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
