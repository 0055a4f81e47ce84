//! The bodies of the fuzz targets (`fuzz/`), shared with `tests/fuzz_corpus.rs`.
//!
//! Each function takes the raw bytes a hostile peer or a broken file could supply, runs them
//! through the same functions the daemon runs them through, and panics only when roverd
//! breaks a promise: a parser panicked, an error came back without words, or a parsed
//! value breaks a rule the rest of roverd relies on. The cargo-fuzz targets (nightly) and
//! the corpus replay test (stable, in CI) both call these, so they cannot drift apart.
//! Not part of roverd's API.

use crate::config::{Config, ConfigError};
use crate::protocol::{self, Command, Outgoing};
use crate::safety::{MotorLimits, Safety, Wheel};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What one input came to, for the corpus test to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The input was accepted.
    Accepted = 0,
    /// The input was refused with a reason.
    Refused = 1,
    /// The daemon never gets to parse this input (not UTF-8 text, over the size limit).
    NotReached = 2,
}

/// The data channel: one text frame through [`protocol::parse`], as
/// [`crate::session::Session::on_message`] does (a frame that is not UTF-8 is refused
/// before parsing).
///
/// If the input has several lines, each line is also sent as one message, alternately from
/// two peers 30 ms apart, through the motor rules ([`Safety`]), checking after every step
/// that the motors obey them.
pub fn protocol(data: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(data) else {
        return Outcome::NotReached;
    };
    let outcome = match parse_message(text) {
        Some(_) => Outcome::Accepted,
        None => Outcome::Refused,
    };
    if text.contains('\n') {
        drive_session(text);
    }
    outcome
}

/// Parses one message and checks what came back; `None` when it was refused.
fn parse_message(text: &str) -> Option<Command> {
    match protocol::parse(text) {
        Ok(incoming) => {
            if let Command::Drive(drive) = incoming.command {
                let (l, r) = drive.wheels();
                assert!(
                    in_unit(l) && in_unit(r),
                    "{text:?} mixed to wheel speeds ({l}, {r}) outside [-1, 1]"
                );
            }
            if let Command::Ping { t } = &incoming.command {
                let pong = Outgoing::Pong { t: t.clone() }.to_json();
                let back: serde_json::Value = serde_json::from_str(&pong).expect("a pong is JSON");
                assert_eq!(back["t"], serde_json::Value::Number(t.clone()));
            }
            Some(incoming.command)
        }
        Err(e) => {
            assert!(
                !e.message.trim().is_empty(),
                "{text:?} refused without words"
            );
            let reply = Outgoing::from(e.clone()).to_json();
            let back: serde_json::Value =
                serde_json::from_str(&reply).expect("an error reply is JSON");
            assert_eq!(back["type"], "error");
            assert_eq!(back["message"], e.message.as_str());
            // Bounded, so the reply fits a data-channel message: a value is quoted back at most
            // 3.5 times its size (`\u{301}` for a 2-byte character).
            assert!(e.message.len() <= 4 * protocol::MAX_MESSAGE_BYTES + 512);
            None
        }
    }
}

/// A session of messages (one per line) through the motor rules.
fn drive_session(text: &str) {
    let limits = MotorLimits {
        deadman: Duration::from_millis(500),
        max_speed: 0.8,
        ramp_per_s: 4.0,
        left: Wheel::default(),
        right: Wheel {
            invert: true,
            trim: 0.9,
        },
    };
    let mut safety = Safety::new(limits);
    let t0 = Instant::now();
    let mut now = t0;
    let mut estop = false;
    // Each peer seen driving, and whether it must let go (a zero drive) before driving.
    let mut must_let_go: HashMap<&str, bool> = HashMap::new();
    for (i, line) in text.lines().enumerate().take(256) {
        now += Duration::from_millis(30);
        let peer = if i % 2 == 0 { "a" } else { "b" };
        let Some(command) = parse_message(line) else {
            safety.tick(now);
            check_motors(&safety, limits, line);
            continue;
        };
        let driver_before = safety.state().driver;
        let result = safety.command(peer, &command, now);
        let state = safety.state();
        let letting_go = matches!(&command, Command::Drive(d) if d.wheels() == (0.0, 0.0));
        let held = !letting_go && must_let_go.get(peer).copied().unwrap_or(false);
        match (&command, &result) {
            (Command::Stop | Command::Estop, _) => {
                assert!(result.is_ok(), "{line:?}: stop refused: {result:?}");
                assert_eq!(
                    (state.left, state.right),
                    (0.0, 0.0),
                    "{line:?} did not stop"
                );
            }
            (Command::Drive(_), Ok(())) => {
                assert!(!estop, "{line:?}: a drive was obeyed while e-stopped");
                assert!(!held, "{line:?}: a drive was obeyed before letting go");
                assert_eq!(state.driver.as_deref(), Some(peer));
            }
            (Command::Drive(_), Err(_)) => {
                let other = driver_before.as_deref().is_some_and(|d| d != peer);
                assert!(
                    estop || other || held,
                    "{line:?}: a drive was refused: {result:?}"
                );
            }
            _ => {}
        }
        match command {
            Command::Drive(_) => {
                let must = must_let_go.entry(peer).or_default();
                *must = !letting_go && (*must || estop);
            }
            Command::Stop => must_let_go.values_mut().for_each(|m| *m = true),
            Command::Estop => {
                estop = true;
                must_let_go.values_mut().for_each(|m| *m = true);
            }
            Command::Reset => estop = false,
            _ => {}
        }
        assert_eq!(state.estop, estop);
        check_motors(&safety, limits, line);
    }
    // Everybody falls silent: the deadman stops the motors and frees the lease.
    safety.tick(now + limits.deadman);
    let state = safety.state();
    assert_eq!(
        (state.left, state.right),
        (0.0, 0.0),
        "the deadman did not stop"
    );
    assert_eq!(state.driver, None);
    // The peers leave: the motors stay stopped, and nothing is kept about them.
    safety.peer_left("a", now);
    safety.peer_left("b", now);
    assert_eq!(safety.next_deadline(), None);
}

fn check_motors(safety: &Safety, limits: MotorLimits, line: &str) {
    let state = safety.state();
    for v in [state.left, state.right] {
        assert!(
            v.is_finite() && v.abs() <= limits.max_speed + 1e-9,
            "after {line:?} a motor speed is {v}, over max_speed {}",
            limits.max_speed
        );
    }
    if state.estop {
        assert_eq!(
            (state.left, state.right),
            (0.0, 0.0),
            "moving while e-stopped"
        );
    }
}

fn in_unit(x: f64) -> bool {
    x.is_finite() && (-1.0..=1.0).contains(&x)
}

/// A config file: the text through [`Config::from_toml_str`], as `Config::load` does after
/// reading the file (a file that is not UTF-8 is refused before parsing).
pub fn config(data: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(data) else {
        return Outcome::NotReached;
    };
    match Config::from_toml_str(text) {
        Ok(config) => {
            // What parsing accepts, validation accepts, and the motor rules can use.
            if let Err(problems) = Config::clone(&config).validate() {
                panic!("{text:?} parsed but does not validate: {problems:?}");
            }
            let limits = crate::control::limits(&config);
            assert!(limits.max_speed > 0.0 && limits.max_speed <= 1.0);
            assert!(limits.ramp_per_s > 0.0 && limits.ramp_per_s.is_finite());
            for w in [limits.left, limits.right] {
                assert!((0.0..=1.0).contains(&w.trim), "trim {} accepted", w.trim);
            }
            assert!(config.control.deadman_ms > 0);
            Outcome::Accepted
        }
        Err(e) => {
            match &e {
                ConfigError::Parse { message, .. } => {
                    assert!(
                        !message.trim().is_empty(),
                        "{text:?}: parse error without words"
                    );
                }
                ConfigError::Invalid { problems, .. } => {
                    assert!(!problems.is_empty(), "{text:?}: invalid without a problem");
                    for p in problems {
                        assert!(!p.key.is_empty() && p.message.starts_with(&p.key), "{p:?}");
                    }
                }
                ConfigError::Read { .. } => panic!("parsing text cannot fail to read"),
            }
            assert!(!e.to_string().is_empty());
            Outcome::Refused
        }
    }
}

/// The body of a POST to an offer route, all the way through negotiation: [`offer`]'s
/// checks, then [`crate::rtc::answer_offline`] (webrtc-rs's `set_remote_description`,
/// `create_answer` and `set_local_description`, in its sans-IO core), which is what a POST
/// reaches next, minus the sockets. An answer must be an SDP that webrtc-rs parses.
pub fn negotiate(data: &[u8]) -> Outcome {
    let offer = match checked_offer(data) {
        Ok(offer) => offer,
        Err(outcome) => return outcome,
    };
    // Level 3.1: 640x480 at 30 fps, the default camera.
    match crate::rtc::answer_offline(offer, 0x1f, Instant::now()) {
        Ok(answer) => {
            assert!(
                crate::rtc::parse_answer(answer).is_ok(),
                "roverd answered with an SDP that webrtc-rs cannot parse"
            );
            Outcome::Accepted
        }
        Err(e) => {
            assert!(!e.to_string().trim().is_empty());
            Outcome::Refused
        }
    }
}

/// The body of a POST to an offer route: everything `http` and `rtc` check before a peer
/// connection is created ([`crate::http::parse_offer_body`], then
/// [`crate::rtc::parse_offer`]: webrtc-rs's SDP parser). A body over
/// [`crate::http::MAX_BODY`] is refused (413) unread.
pub fn offer(data: &[u8]) -> Outcome {
    match checked_offer(data) {
        Ok(_) => Outcome::Accepted,
        Err(outcome) => outcome,
    }
}

fn checked_offer(data: &[u8]) -> Result<crate::rtc::Offer, Outcome> {
    // The largest body roverd can be configured to read (limits.body_bytes).
    if data.len() > crate::config::ClientLimits::MAX_BODY_BYTES {
        return Err(Outcome::NotReached);
    }
    let sdp = match crate::http::parse_offer_body(data) {
        Ok(sdp) => sdp,
        Err(why) => {
            assert!(!why.trim().is_empty(), "offer body refused without words");
            return Err(Outcome::Refused);
        }
    };
    crate::rtc::parse_offer(sdp).map_err(|e| {
        assert!(!e.to_string().trim().is_empty());
        Outcome::Refused
    })
}

/// Camera pixels: one picture through [`crate::media::convert::Converter`], as the
/// capture thread runs it, in any format, at any size, with any bytes (a driver's buffer
/// is only as trustworthy as the driver, and an MJPEG picture is a whole JPEG file).
///
/// The input is a 9-byte header, then the picture's bytes: the format (byte 0, modulo 3:
/// YUYV, NV12, MJPEG), the camera's width and height (bytes 1–4, little-endian, modulo
/// 2049) and the encoder's (bytes 5–8, modulo 257, rounded down to even, at least 2).
/// Accepted: converted; refused: an error that says why. Either way the output picture
/// keeps its size.
pub fn convert(data: &[u8]) -> Outcome {
    use crate::media::convert::{Converter, PixelFormat, RawFrame};
    use crate::media::frame::I420Frame;
    let Some((header, bytes)) = data.split_first_chunk::<9>() else {
        return Outcome::NotReached;
    };
    let word = |i: usize| usize::from(u16::from_le_bytes([header[i], header[i + 1]]));
    let format =
        [PixelFormat::Yuyv, PixelFormat::Nv12, PixelFormat::Mjpeg][usize::from(header[0]) % 3];
    let (width, height) = (word(1) % 2049, word(3) % 2049);
    let out_side = |v: usize| ((v % 257) & !1).max(2);
    let (out_w, out_h) = (out_side(word(5)), out_side(word(7)));
    let raw = RawFrame {
        format,
        width,
        height,
        data: bytes,
    };
    let mut out = I420Frame::new(out_w, out_h);
    let result = Converter::new().convert(&raw, &mut out);
    assert_eq!(
        (
            out.width,
            out.height,
            out.y().len() + out.u().len() + out.v().len()
        ),
        (out_w, out_h, out_w * out_h * 3 / 2),
        "the output picture changed size"
    );
    match result {
        Ok(()) => Outcome::Accepted,
        Err(e) => {
            assert!(!e.to_string().trim().is_empty(), "refused without words");
            Outcome::Refused
        }
    }
}
