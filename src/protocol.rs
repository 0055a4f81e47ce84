//! The data-channel protocol (docs/protocol.md, "Data channel"), as pure code.
//!
//! Every message is one JSON object in a text frame. [`parse`] turns a browser's message
//! into a typed [`Incoming`] or a [`ProtocolError`] whose text the browser is sent back;
//! [`Outgoing`] is everything roverd says. Nothing here touches a motor or a socket, so a
//! malformed message can do no more than earn an error.

use serde::Serialize;
use serde_json::{Map, Number, Value};

/// Larger messages are refused unread: no command needs more than a few dozen bytes.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// A message from a browser, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub seq: Option<i64>,
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Drive(Drive),
    Stop,
    Estop,
    Reset,
    /// Echoed back as a pong; `t` is the sender's clock, never interpreted.
    Ping {
        t: Number,
    },
}

/// The two forms of a drive command, as sent (not yet clamped).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Drive {
    Wheels { left: f64, right: f64 },
    Twist { linear: f64, angular: f64 },
}

impl Drive {
    /// Wheel speeds in [-1, 1]: each input clamped first, then a twist mixed to
    /// left = V − W, right = V + W and scaled down together so neither exceeds 1.
    pub fn wheels(self) -> (f64, f64) {
        let c = |x: f64| x.clamp(-1.0, 1.0);
        match self {
            Drive::Wheels { left, right } => (c(left), c(right)),
            Drive::Twist { linear, angular } => {
                let (v, w) = (c(linear), c(angular));
                let (l, r) = (v - w, v + w);
                let peak = l.abs().max(r.abs());
                if peak > 1.0 {
                    (l / peak, r / peak)
                } else {
                    (l, r)
                }
            }
        }
    }
}

/// Why a message was refused; sent back as `{"type":"error","message":…,"seq":…}`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ProtocolError {
    pub seq: Option<i64>,
    pub message: String,
}

impl ProtocolError {
    fn new(seq: Option<i64>, message: impl Into<String>) -> Self {
        Self {
            seq,
            message: message.into(),
        }
    }
}

const KNOWN_TYPES: &str = "drive, stop, estop, reset, ping";

/// Checks one text frame from a browser.
pub fn parse(text: &str) -> Result<Incoming, ProtocolError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(ProtocolError::new(
            None,
            format!(
                "message of {} bytes refused: at most {MAX_MESSAGE_BYTES} bytes are allowed",
                text.len()
            ),
        ));
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| ProtocolError::new(None, format!("message is not valid JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(ProtocolError::new(
            None,
            "message must be a JSON object such as {\"type\":\"stop\"}",
        ));
    };
    let seq = match obj.get("seq") {
        None => None,
        Some(v) => Some(v.as_i64().ok_or_else(|| {
            ProtocolError::new(None, format!("\"seq\" must be an integer, got {v}"))
        })?),
    };
    let err = |message: String| ProtocolError::new(seq, message);
    let kind = match obj.get("type") {
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            return Err(err(format!(
                "\"type\" must be a string (one of {KNOWN_TYPES}), got {other}"
            )))
        }
        None => {
            return Err(err(format!(
                "message has no \"type\"; expected one of {KNOWN_TYPES}"
            )))
        }
    };
    let command = match kind {
        "drive" => Command::Drive(parse_drive(&obj).map_err(err)?),
        "stop" => Command::Stop,
        "estop" => Command::Estop,
        "reset" => Command::Reset,
        "ping" => match obj.get("t") {
            Some(Value::Number(t)) => Command::Ping { t: t.clone() },
            Some(other) => return Err(err(format!("ping \"t\" must be a number, got {other}"))),
            None => return Err(err("ping needs a number \"t\" to echo back".into())),
        },
        other => {
            return Err(err(format!(
                "unknown message type {other:?}; expected one of {KNOWN_TYPES}"
            )))
        }
    };
    Ok(Incoming { seq, command })
}

fn parse_drive(obj: &Map<String, Value>) -> Result<Drive, String> {
    let num = |key: &str| -> Result<Option<f64>, String> {
        match obj.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_f64()
                .filter(|x| x.is_finite())
                .map(Some)
                .ok_or_else(|| format!("drive \"{key}\" must be a finite number, got {n}")),
            Some(other) => Err(format!("drive \"{key}\" must be a number, got {other}")),
        }
    };
    match (num("left")?, num("right")?, num("linear")?, num("angular")?) {
        (Some(left), Some(right), None, None) => Ok(Drive::Wheels { left, right }),
        (None, None, Some(linear), Some(angular)) => Ok(Drive::Twist { linear, angular }),
        _ => Err(
            "drive needs either \"left\" and \"right\", or \"linear\" and \"angular\" \
             (numbers in [-1, 1]), and not both"
                .into(),
        ),
    }
}

/// Everything roverd sends on the data channel.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Outgoing {
    Hello {
        id: String,
        version: String,
        deadman_ms: u64,
    },
    Pong {
        t: Number,
    },
    State {
        left: f64,
        right: f64,
        estop: bool,
        driver: bool,
    },
    Error {
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<i64>,
    },
}

impl Outgoing {
    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail; an empty object is a safe fallback.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

impl From<ProtocolError> for Outgoing {
    fn from(e: ProtocolError) -> Self {
        Outgoing::Error {
            message: e.message,
            seq: e.seq,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Incoming {
        parse(text).unwrap_or_else(|e| panic!("{text} should parse: {e}"))
    }

    fn refused(text: &str) -> ProtocolError {
        match parse(text) {
            Ok(m) => panic!("{text} should be refused, parsed as {m:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn every_command_parses() {
        assert_eq!(
            ok(r#"{"type":"drive","left":0.5,"right":-1}"#).command,
            Command::Drive(Drive::Wheels {
                left: 0.5,
                right: -1.0
            })
        );
        assert_eq!(
            ok(r#"{"type":"drive","linear":1,"angular":0.25,"seq":7}"#),
            Incoming {
                seq: Some(7),
                command: Command::Drive(Drive::Twist {
                    linear: 1.0,
                    angular: 0.25
                })
            }
        );
        assert_eq!(ok(r#"{"type":"stop"}"#).command, Command::Stop);
        assert_eq!(ok(r#"{"type":"estop"}"#).command, Command::Estop);
        assert_eq!(ok(r#"{"type":"reset"}"#).command, Command::Reset);
        assert_eq!(
            ok(r#"{"type":"ping","t":1234.5}"#).command,
            Command::Ping {
                t: Number::from_f64(1234.5).unwrap()
            }
        );
    }

    #[test]
    fn pong_echoes_the_ping_time_exactly() {
        let Command::Ping { t } = ok(r#"{"type":"ping","t":17.25}"#).command else {
            panic!("not a ping")
        };
        assert_eq!(
            Outgoing::Pong { t }.to_json(),
            r#"{"type":"pong","t":17.25}"#
        );
    }

    /// Found by the `protocol` fuzz target: without serde_json's `float_roundtrip`, some long
    /// numbers (`performance.now()` prints up to 17 digits) were parsed one unit in the last
    /// place off, so the pong did not carry the ping's exact time back.
    #[test]
    fn pong_echoes_long_and_huge_ping_times_exactly() {
        for t in [
            "74407370955101659551615",
            "1234.5678901234567",
            "0.30000000000000004",
            "9007199254740993",
            "5e-324",
            "1.7976931348623157e308",
        ] {
            let Command::Ping { t: echoed } = ok(&format!(r#"{{"type":"ping","t":{t}}}"#)).command
            else {
                panic!("not a ping")
            };
            let pong = Outgoing::Pong { t: echoed.clone() }.to_json();
            let back: Value = serde_json::from_str(&pong).unwrap();
            let sent: Value = serde_json::from_str(t).unwrap();
            assert_eq!(back["t"], sent, "{t} came back as {pong}");
            assert_eq!(
                back["t"].as_f64(),
                t.parse::<f64>().ok(),
                "{t} was not parsed to the nearest f64"
            );
        }
    }

    #[test]
    fn malformed_messages_are_refused_with_a_reason_and_their_seq() {
        let cases = [
            ("not json", "not valid JSON"),
            ("[1,2]", "JSON object"),
            (r#"{"seq":1}"#, "no \"type\""),
            (r#"{"type":5}"#, "must be a string"),
            (r#"{"type":"fly","seq":3}"#, "unknown message type"),
            (r#"{"type":"drive","left":1}"#, "either"),
            (
                r#"{"type":"drive","left":1,"right":1,"linear":0,"angular":0}"#,
                "not both",
            ),
            (
                r#"{"type":"drive","left":"1","right":1}"#,
                "must be a number",
            ),
            (
                r#"{"type":"drive","left":1e999,"right":1}"#,
                "not valid JSON",
            ),
            (r#"{"type":"ping"}"#, "needs a number"),
            (r#"{"type":"ping","t":"x"}"#, "must be a number"),
            (r#"{"type":"stop","seq":1.5}"#, "integer"),
        ];
        for (text, why) in cases {
            let e = refused(text);
            assert!(
                e.message.contains(why),
                "{text}: {:?} lacks {why:?}",
                e.message
            );
        }
        assert_eq!(refused(r#"{"type":"fly","seq":3}"#).seq, Some(3));
        let big = format!(
            r#"{{"type":"stop","pad":"{}"}}"#,
            "x".repeat(MAX_MESSAGE_BYTES)
        );
        assert!(refused(&big).message.contains("at most"));
    }

    #[test]
    fn errors_serialize_with_seq_only_when_known() {
        let e: Outgoing = refused(r#"{"type":"fly","seq":9}"#).into();
        assert_eq!(
            e.to_json(),
            r#"{"type":"error","message":"unknown message type \"fly\"; expected one of drive, stop, estop, reset, ping","seq":9}"#
        );
        let e: Outgoing = refused("{").into();
        assert!(!e.to_json().contains("seq"));
    }

    #[test]
    fn wheels_are_clamped_and_twists_mixed_and_scaled() {
        let w = |left, right| Drive::Wheels { left, right }.wheels();
        let t = |linear, angular| Drive::Twist { linear, angular }.wheels();
        assert_eq!(w(2.0, -3.0), (1.0, -1.0));
        assert_eq!(w(0.25, -0.5), (0.25, -0.5));
        assert_eq!(t(0.5, 0.0), (0.5, 0.5));
        // Positive angular turns left: the right wheel goes faster.
        assert_eq!(t(0.0, 0.5), (-0.5, 0.5));
        // 1 - 1 = 0 and 1 + 1 = 2: scaled so the larger is 1.
        assert_eq!(t(1.0, 1.0), (0.0, 1.0));
        assert_eq!(t(5.0, -5.0), (1.0, 0.0));
    }
}
