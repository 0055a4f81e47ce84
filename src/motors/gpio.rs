//! The GPIO motor boards (L298N, TB6612, DRV8833) and the thin pin layer under them.
//!
//! A [`Board`] turns a wheel speed into pin states and PWM duty cycles; [`Pins`] is all it
//! needs from the hardware. `motors::rppal_pins` implements it with rppal (with the
//! `gpio-rppal` feature); tests use a recording fake. Pure: no pin is touched here.
//! Built without that feature, only the tests use it.
#![cfg_attr(not(feature = "gpio-rppal"), allow(dead_code))]

use crate::config::{MotorDriver, MotorPins, MotorsConfig, PwmKind, HARDWARE_PWM_PINS};
use crate::motors::motor::{MotorError, Motors};

/// What a board does to one pin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PinWrite {
    Low,
    High,
    /// Duty cycle 0..=1 at the configured frequency.
    Pwm(f64),
}

/// The hardware as a board sees it.
///
/// A claimed pin must stay an output at its last level when the `Pins` are dropped (never
/// revert to an input, which would float), with any PWM on it stopped at the stopped
/// level: the board writes 0 to every pin before it lets go of them, and whatever outlives
/// roverd (a crash, SIGKILL) is put right by `roverd motors-off`.
pub trait Pins: Send {
    /// Claims `pin` as an output (low), with PWM at `pwm_hz` if `pwm` is set.
    fn claim(&mut self, pin: u8, key: &str, pwm: Option<(PwmKind, u32)>) -> Result<(), MotorError>;
    fn write(&mut self, pin: u8, value: PinWrite) -> Result<(), MotorError>;
    /// Whether hardware PWM can drive all of `pins` (GPIO 12, 13, 18 or 19): each on its
    /// own channel, and the channels present in `/sys/class/pwm`. `Err` says why not.
    fn hardware_pwm(&self, pins: &[u8]) -> Result<(), String>;
}

/// One motor's pins as the board uses them.
#[derive(Debug, Clone, Copy)]
struct Channel {
    in1: u8,
    in2: u8,
    en: Option<u8>,
}

/// A motor driver board on GPIO.
pub struct Board {
    driver: MotorDriver,
    /// The PWM in use: `Software` or `Hardware`, never `Auto`.
    pwm: PwmKind,
    pins: Box<dyn Pins>,
    left: Channel,
    right: Channel,
    stby: Vec<u8>,
}

/// Which PWM `motors.pwm` means on this machine, and why, for the log.
pub fn choose_pwm(config: &MotorsConfig, pins: &dyn Pins) -> (PwmKind, String) {
    let speed_pins: Vec<u8> = [&config.left, &config.right]
        .into_iter()
        .flat_map(|m| config.driver.pwm_pins(m))
        .filter_map(|(_, pin)| pin)
        .collect();
    match config.pwm {
        PwmKind::Software => (PwmKind::Software, "motors.pwm = \"software\"".into()),
        PwmKind::Hardware => (PwmKind::Hardware, "motors.pwm = \"hardware\"".into()),
        PwmKind::Auto => {
            if let Some(pin) = speed_pins.iter().find(|p| !HARDWARE_PWM_PINS.contains(p)) {
                return (
                    PwmKind::Software,
                    format!("GPIO {pin} has no hardware PWM (only GPIO 12, 13, 18 and 19 do)"),
                );
            }
            match pins.hardware_pwm(&speed_pins) {
                Ok(()) => (
                    PwmKind::Hardware,
                    "the speed pins have hardware PWM channels".into(),
                ),
                Err(why) => (PwmKind::Software, why),
            }
        }
    }
}

impl Board {
    /// Claims every pin the board needs, all low (motors off).
    pub fn new(config: &MotorsConfig, mut pins: Box<dyn Pins>) -> Result<Self, MotorError> {
        let driver = config.driver;
        let (kind, why) = choose_pwm(config, pins.as_ref());
        if driver != MotorDriver::Sim {
            log::info!(
                "motors: {} PWM at {} Hz ({why})",
                kind.as_str(),
                config.pwm_hz
            );
        }
        let pwm = Some((kind, config.pwm_hz));
        let mut claim = |side: &str, m: &MotorPins| -> Result<Channel, MotorError> {
            let key = |name: &str| format!("motors.{side}.{name}");
            let direction_pwm = if driver == MotorDriver::Drv8833 {
                pwm
            } else {
                None
            };
            pins.claim(m.in1, &key("in1"), direction_pwm)?;
            pins.claim(m.in2, &key("in2"), direction_pwm)?;
            let en = match driver {
                MotorDriver::L298n | MotorDriver::Tb6612 => {
                    let en = m.en.ok_or_else(|| MotorError::Pin {
                        pin: 0,
                        key: key("en"),
                        reason: "this board needs an en (PWM) pin".into(),
                    })?;
                    pins.claim(en, &key("en"), pwm)?;
                    Some(en)
                }
                _ => None,
            };
            Ok(Channel {
                in1: m.in1,
                in2: m.in2,
                en,
            })
        };
        let left = claim("left", &config.left)?;
        let right = claim("right", &config.right)?;
        let mut stby: Vec<u8> = Vec::new();
        if driver == MotorDriver::Tb6612 {
            for (side, m) in [("left", &config.left), ("right", &config.right)] {
                if let Some(pin) = m.stby.filter(|p| !stby.contains(p)) {
                    pins.claim(pin, &format!("motors.{side}.stby"), None)?;
                    stby.push(pin);
                }
            }
        }
        let mut board = Self {
            driver,
            pwm: kind,
            pins,
            left,
            right,
            stby,
        };
        board.set(0.0, 0.0)?;
        Ok(board)
    }

    /// The PWM the board uses: software or hardware.
    #[cfg(test)]
    pub fn pwm_kind(&self) -> PwmKind {
        self.pwm
    }

    /// What one wheel's pins must be for `speed`: (pin, value, carries PWM).
    fn wheel(&self, ch: Channel, speed: f64) -> Vec<(u8, PinWrite, bool)> {
        use PinWrite::{High, Low, Pwm};
        let speed = if speed.is_finite() {
            speed.clamp(-1.0, 1.0)
        } else {
            0.0
        };
        let duty = speed.abs();
        match self.driver {
            // Direction on in1/in2, speed as PWM on en; both low coasts.
            MotorDriver::L298n | MotorDriver::Tb6612 => {
                let (a, b) = if speed > 0.0 {
                    (High, Low)
                } else if speed < 0.0 {
                    (Low, High)
                } else {
                    (Low, Low)
                };
                let mut writes = vec![(ch.in1, a, false), (ch.in2, b, false)];
                if let Some(en) = ch.en {
                    writes.push((en, Pwm(duty), true));
                }
                writes
            }
            // PWM on the input of the direction of travel, the other low (fast decay).
            MotorDriver::Drv8833 => {
                let (a, b) = if speed > 0.0 {
                    (Pwm(duty), Low)
                } else if speed < 0.0 {
                    (Low, Pwm(duty))
                } else {
                    (Low, Low)
                };
                vec![(ch.in1, a, true), (ch.in2, b, true)]
            }
            MotorDriver::Sim => vec![],
        }
    }
}

impl Motors for Board {
    fn name(&self) -> &'static str {
        self.driver.as_str()
    }

    fn pwm(&self) -> &'static str {
        self.pwm.as_str()
    }

    /// Writes every pin, even after one failed, and returns the first error. Pins without
    /// PWM go first: they take effect at once, whereas stopping software PWM waits for its
    /// thread to end (up to one period), so a stop reaches the direction and standby pins
    /// without that wait.
    fn set(&mut self, left: f64, right: f64) -> Result<(), MotorError> {
        let moving = left != 0.0 || right != 0.0;
        // TB6612 standby: high only while a wheel turns, so the chip sleeps while roverd
        // holds the motors stopped. The pins keep their last level when roverd dies
        // (SIGKILL, a crash), STBY included: the unit's `roverd motors-off` puts them
        // right after every exit.
        let level = if moving {
            PinWrite::High
        } else {
            PinWrite::Low
        };
        let mut writes: Vec<(u8, PinWrite, bool)> =
            self.stby.iter().map(|&pin| (pin, level, false)).collect();
        writes.extend(self.wheel(self.left, left));
        writes.extend(self.wheel(self.right, right));
        writes.sort_by_key(|&(_, _, pwm)| pwm); // stable: level pins first, in order
        let mut first_error = None;
        for (pin, value, _) in writes {
            if let Err(e) = self.pins.write(pin, value) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Dropped however roverd lets go of the board (shutdown, a failed start, `motors-off`,
/// unwinding from a panic): every pin to its stopped level before the pins are released.
impl Drop for Board {
    fn drop(&mut self) {
        if let Err(e) = self.set(0.0, 0.0) {
            log::error!("could not set every motor pin to stopped: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PinWrite::{High, Low, Pwm};

    use crate::motors::recorder::Recorder;

    fn board(driver: MotorDriver, edit: impl FnOnce(&mut MotorsConfig)) -> (Board, Recorder) {
        let mut config = MotorsConfig {
            driver,
            ..MotorsConfig::default()
        };
        edit(&mut config);
        let rec = Recorder::default();
        let board = Board::new(&config, Box::new(rec.clone())).unwrap();
        (board, rec)
    }

    fn pins(rec: &Recorder, which: &[u8]) -> Vec<PinWrite> {
        rec.pins(which)
    }

    // Default wiring: left in1 17, in2 27, en 12; right in1 23, in2 24, en 13.
    const LEFT: [u8; 3] = [17, 27, 12];
    const RIGHT: [u8; 3] = [23, 24, 13];

    #[test]
    fn l298n_direction_on_in1_in2_and_speed_on_en() {
        let (mut b, rec) = board(MotorDriver::L298n, |_| {});
        assert_eq!(
            pins(&rec, &LEFT),
            [Low, Low, Pwm(0.0)],
            "claimed and stopped"
        );
        b.set(0.75, 0.75).unwrap();
        assert_eq!(pins(&rec, &LEFT), [High, Low, Pwm(0.75)], "forward");
        assert_eq!(pins(&rec, &RIGHT), [High, Low, Pwm(0.75)]);
        b.set(-0.5, -0.5).unwrap();
        assert_eq!(pins(&rec, &LEFT), [Low, High, Pwm(0.5)], "reverse");
        assert_eq!(pins(&rec, &RIGHT), [Low, High, Pwm(0.5)]);
        b.set(0.2, 0.6).unwrap();
        assert_eq!(
            pins(&rec, &LEFT),
            [High, Low, Pwm(0.2)],
            "turn left: left slower"
        );
        assert_eq!(pins(&rec, &RIGHT), [High, Low, Pwm(0.6)]);
        b.set(0.0, 0.0).unwrap();
        assert_eq!(pins(&rec, &LEFT), [Low, Low, Pwm(0.0)], "stop");
        assert_eq!(pins(&rec, &RIGHT), [Low, Low, Pwm(0.0)]);
    }

    #[test]
    fn tb6612_is_an_l298n_with_standby_high_only_while_moving() {
        let (mut b, rec) = board(MotorDriver::Tb6612, |c| {
            c.left.stby = Some(22);
            c.right.stby = Some(22);
        });
        assert_eq!(pins(&rec, &[22]), [Low]);
        b.set(1.0, -1.0).unwrap();
        assert_eq!(pins(&rec, &LEFT), [High, Low, Pwm(1.0)], "forward");
        assert_eq!(
            pins(&rec, &RIGHT),
            [Low, High, Pwm(1.0)],
            "spinning: right reverse"
        );
        assert_eq!(pins(&rec, &[22]), [High]);
        b.set(-0.3, -0.3).unwrap();
        assert_eq!(pins(&rec, &LEFT), [Low, High, Pwm(0.3)], "reverse");
        b.set(0.0, 0.0).unwrap();
        assert_eq!(pins(&rec, &LEFT), [Low, Low, Pwm(0.0)]);
        assert_eq!(pins(&rec, &[22]), [Low], "standby when stopped");
        let claims = rec.claimed.lock().unwrap();
        assert_eq!(
            claims.iter().filter(|(p, _)| *p == 22).count(),
            1,
            "a shared stby is claimed once"
        );
    }

    #[test]
    fn drv8833_pwm_on_the_input_of_the_direction_of_travel() {
        let (mut b, rec) = board(MotorDriver::Drv8833, |_| {});
        let claims = rec.claimed.lock().unwrap().clone();
        assert!(
            !claims.iter().any(|(p, _)| *p == 12 || *p == 13),
            "en is not used: {claims:?}"
        );
        assert!(claims
            .iter()
            .all(|(_, pwm)| *pwm == Some(PwmKind::Software)));
        b.set(0.4, 0.4).unwrap();
        assert_eq!(pins(&rec, &[17, 27]), [Pwm(0.4), Low], "forward");
        b.set(-0.9, -0.9).unwrap();
        assert_eq!(pins(&rec, &[17, 27]), [Low, Pwm(0.9)], "reverse");
        assert_eq!(pins(&rec, &[23, 24]), [Low, Pwm(0.9)]);
        b.set(0.1, 0.5).unwrap();
        assert_eq!(
            pins(&rec, &[17, 27, 23, 24]),
            [Pwm(0.1), Low, Pwm(0.5), Low],
            "turn"
        );
        b.set(0.0, 0.0).unwrap();
        assert_eq!(pins(&rec, &[17, 27, 23, 24]), [Low, Low, Low, Low], "stop");
    }

    #[test]
    fn hardware_pwm_is_asked_for_on_the_pwm_pins_only() {
        let (_, rec) = board(MotorDriver::L298n, |c| c.pwm = PwmKind::Hardware);
        let claims = rec.claimed.lock().unwrap().clone();
        assert!(claims.contains(&(12, Some(PwmKind::Hardware))));
        assert!(claims.contains(&(13, Some(PwmKind::Hardware))));
        assert!(
            claims.contains(&(17, None)),
            "direction pins are plain outputs"
        );
    }

    #[test]
    fn nonsense_speeds_stop_the_wheel_rather_than_reach_a_pin() {
        let (mut b, rec) = board(MotorDriver::L298n, |_| {});
        b.set(f64::NAN, 7.0).unwrap();
        assert_eq!(pins(&rec, &LEFT), [Low, Low, Pwm(0.0)]);
        assert_eq!(
            pins(&rec, &RIGHT),
            [High, Low, Pwm(1.0)],
            "clamped to full speed"
        );
    }

    #[test]
    fn auto_pwm_is_hardware_only_on_pins_with_a_channel_that_exists() {
        let auto = |hardware: bool, edit: fn(&mut MotorsConfig)| {
            let mut config = MotorsConfig {
                driver: MotorDriver::L298n,
                ..MotorsConfig::default()
            };
            assert_eq!(config.pwm, PwmKind::Auto, "auto is the default");
            edit(&mut config);
            let rec = Recorder {
                hardware,
                ..Recorder::default()
            };
            let board = Board::new(&config, Box::new(rec.clone())).unwrap();
            let kind = board.pwm_kind();
            assert_eq!(board.pwm(), kind.as_str());
            let en_pwm = rec
                .claimed
                .lock()
                .unwrap()
                .iter()
                .find(|(p, _)| *p == 12)
                .unwrap()
                .1;
            assert_eq!(
                en_pwm,
                Some(kind),
                "the en pin is claimed with the PWM chosen"
            );
            kind
        };
        // The default en pins, 12 and 13, have channels.
        assert_eq!(auto(true, |_| {}), PwmKind::Hardware);
        assert_eq!(
            auto(false, |_| {}),
            PwmKind::Software,
            "no /sys/class/pwm channels"
        );
        assert_eq!(
            auto(true, |c| c.right.en = Some(22)),
            PwmKind::Software,
            "GPIO 22 has no channel"
        );
        assert_eq!(
            auto(true, |c| c.pwm = PwmKind::Software),
            PwmKind::Software,
            "software when asked"
        );
    }

    #[test]
    fn every_pin_is_written_even_when_one_fails_and_the_first_error_is_reported() {
        let (mut b, rec) = board(MotorDriver::L298n, |_| {});
        b.set(0.5, 0.5).unwrap();
        rec.failing.lock().unwrap().insert(17);
        let err = b.set(0.0, 0.0).unwrap_err().to_string();
        assert!(err.contains("GPIO 17"), "{err}");
        assert_eq!(
            pins(&rec, &LEFT),
            [High, Low, Pwm(0.0)],
            "left en still stopped"
        );
        assert_eq!(
            pins(&rec, &RIGHT),
            [Low, Low, Pwm(0.0)],
            "the other wheel is written"
        );
        rec.failing.lock().unwrap().insert(23);
        let err = b.set(0.0, 0.0).unwrap_err().to_string();
        assert!(err.contains("GPIO 17"), "the first failure: {err}");
        rec.failing.lock().unwrap().clear();
        b.set(0.0, 0.0).unwrap();
        assert!(rec.all_stopped());
    }

    #[test]
    fn the_level_pins_are_written_before_any_pwm_is_touched() {
        let (mut b, rec) = board(MotorDriver::Tb6612, |c| {
            c.left.stby = Some(22);
            c.right.stby = Some(22);
        });
        b.set(0.5, -0.5).unwrap();
        rec.log.lock().unwrap().clear();
        b.set(0.0, 0.0).unwrap();
        let order: Vec<u8> = rec.log.lock().unwrap().iter().map(|(p, _)| *p).collect();
        assert_eq!(
            order,
            [22, 17, 27, 23, 24, 12, 13],
            "stby, in1/in2, then en"
        );
    }

    #[test]
    fn dropping_a_board_leaves_every_pin_an_output_at_its_stopped_level() {
        for driver in [
            MotorDriver::L298n,
            MotorDriver::Tb6612,
            MotorDriver::Drv8833,
        ] {
            let (mut b, rec) = board(driver, |c| c.left.stby = Some(22));
            b.set(0.7, -0.3).unwrap();
            assert!(!rec.all_stopped());
            drop(b);
            assert!(rec.released());
            assert!(
                rec.all_stopped(),
                "{driver:?}: {:?}",
                rec.state.lock().unwrap()
            );
        }
    }
}
