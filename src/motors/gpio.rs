//! The GPIO motor boards (L298N, TB6612, DRV8833) and the thin pin layer under them.
//!
//! A [`Board`] turns a wheel speed into pin states and PWM duty cycles; [`Pins`] is all it
//! needs from the hardware. `motors::rppal_pins` implements it with rppal (with the
//! `gpio-rppal` feature); tests use a recording fake. Pure: no pin is touched here.
//! Built without that feature, only the tests use it.
#![cfg_attr(not(feature = "gpio-rppal"), allow(dead_code))]

use crate::config::{MotorDriver, MotorPins, MotorsConfig, PwmKind};
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
pub trait Pins: Send {
    /// Claims `pin` as an output (low), with PWM at `pwm_hz` if `pwm` is set.
    fn claim(&mut self, pin: u8, key: &str, pwm: Option<(PwmKind, u32)>) -> Result<(), MotorError>;
    fn write(&mut self, pin: u8, value: PinWrite) -> Result<(), MotorError>;
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
    pins: Box<dyn Pins>,
    left: Channel,
    right: Channel,
    stby: Vec<u8>,
}

impl Board {
    /// Claims every pin the board needs, all low (motors off).
    pub fn new(config: &MotorsConfig, mut pins: Box<dyn Pins>) -> Result<Self, MotorError> {
        let driver = config.driver;
        let pwm = Some((config.pwm, config.pwm_hz));
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
            pins,
            left,
            right,
            stby,
        };
        board.set(0.0, 0.0)?;
        Ok(board)
    }

    fn drive(&mut self, ch: Channel, speed: f64) -> Result<(), MotorError> {
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
                self.pins.write(ch.in1, a)?;
                self.pins.write(ch.in2, b)?;
                if let Some(en) = ch.en {
                    self.pins.write(en, Pwm(duty))?;
                }
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
                self.pins.write(ch.in1, a)?;
                self.pins.write(ch.in2, b)?;
            }
            MotorDriver::Sim => {}
        }
        Ok(())
    }
}

impl Motors for Board {
    fn name(&self) -> &'static str {
        self.driver.as_str()
    }

    fn set(&mut self, left: f64, right: f64) -> Result<(), MotorError> {
        let moving = left != 0.0 || right != 0.0;
        // TB6612 standby: awake only while a wheel turns, so a crashed roverd that leaves
        // pins floating finds the chip asleep.
        for pin in self.stby.clone() {
            self.pins.write(
                pin,
                if moving {
                    PinWrite::High
                } else {
                    PinWrite::Low
                },
            )?;
        }
        self.drive(self.left, left)?;
        self.drive(self.right, right)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use PinWrite::{High, Low, Pwm};

    /// Each claimed pin and the PWM it was claimed with.
    type Claims = Arc<Mutex<Vec<(u8, Option<PwmKind>)>>>;

    /// Records every claim and write, and the last state of each pin.
    #[derive(Clone, Default)]
    struct Recorder {
        claimed: Claims,
        state: Arc<Mutex<HashMap<u8, PinWrite>>>,
    }

    impl Pins for Recorder {
        fn claim(
            &mut self,
            pin: u8,
            _key: &str,
            pwm: Option<(PwmKind, u32)>,
        ) -> Result<(), MotorError> {
            self.claimed
                .lock()
                .unwrap()
                .push((pin, pwm.map(|(k, _)| k)));
            self.state.lock().unwrap().insert(pin, Low);
            Ok(())
        }

        fn write(&mut self, pin: u8, value: PinWrite) -> Result<(), MotorError> {
            assert!(
                self.claimed.lock().unwrap().iter().any(|(p, _)| *p == pin),
                "wrote unclaimed GPIO {pin}"
            );
            self.state.lock().unwrap().insert(pin, value);
            Ok(())
        }
    }

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
        let state = rec.state.lock().unwrap();
        which.iter().map(|p| state[p]).collect()
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
}
