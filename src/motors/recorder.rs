//! A recording fake of [`Pins`] for the tests of the boards and of the motor task: every
//! claim and write, the last state of each pin, and faults on cue (a pin whose writes
//! fail, a write that panics).
//!
//! Like the rppal pins with reset-on-drop off, a claimed pin stays an output at its last
//! level for good, also once the `Recorder` is dropped; so "every motor pin is an output at
//! its stopped level" is [`Recorder::all_stopped`] at any time after the last write.

use crate::config::PwmKind;
use crate::motors::gpio::{PinWrite, Pins};
use crate::motors::motor::MotorError;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Each claimed pin and the PWM it was claimed with.
pub type Claims = Arc<Mutex<Vec<(u8, Option<PwmKind>)>>>;

#[derive(Clone, Default)]
pub struct Recorder {
    pub claimed: Claims,
    pub state: Arc<Mutex<HashMap<u8, PinWrite>>>,
    /// Every successful write, in order.
    pub log: Arc<Mutex<Vec<(u8, PinWrite)>>>,
    /// Writes to these pins fail (and change nothing).
    pub failing: Arc<Mutex<HashSet<u8>>>,
    /// The next write panics (once).
    pub panic_next: Arc<AtomicBool>,
    /// What `hardware_pwm` answers: hardware PWM channels present.
    pub hardware: bool,
    /// One count per copy: the board's copy gone, only the test's is left.
    pub copies: Arc<()>,
}

impl Recorder {
    /// Whether the board let go of its pins (dropped its copy), the test holding this one.
    pub fn released(&self) -> bool {
        Arc::strong_count(&self.copies) == 1
    }

    /// Every claimed pin low, or at PWM duty 0: the motors' stopped level.
    pub fn all_stopped(&self) -> bool {
        let state = self.state.lock().unwrap();
        let claimed = self.claimed.lock().unwrap();
        !claimed.is_empty()
            && claimed
                .iter()
                .all(|(pin, _)| matches!(state.get(pin), Some(PinWrite::Low | PinWrite::Pwm(0.0))))
    }

    pub fn pins(&self, which: &[u8]) -> Vec<PinWrite> {
        let state = self.state.lock().unwrap();
        which.iter().map(|p| state[p]).collect()
    }
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
        self.state.lock().unwrap().insert(pin, PinWrite::Low);
        Ok(())
    }

    fn write(&mut self, pin: u8, value: PinWrite) -> Result<(), MotorError> {
        assert!(
            self.claimed.lock().unwrap().iter().any(|(p, _)| *p == pin),
            "wrote unclaimed GPIO {pin}"
        );
        if self.panic_next.swap(false, Ordering::SeqCst) {
            panic!("the recorder panics on a write to GPIO {pin}, as asked");
        }
        if self.failing.lock().unwrap().contains(&pin) {
            return Err(MotorError::Write {
                pin,
                reason: "the recorder fails this pin, as asked".into(),
            });
        }
        self.state.lock().unwrap().insert(pin, value);
        self.log.lock().unwrap().push((pin, value));
        Ok(())
    }

    fn hardware_pwm(&self, _pins: &[u8]) -> Result<(), String> {
        if self.hardware {
            Ok(())
        } else {
            Err("no /sys/class/pwm/pwmchip0 (the recorder's machine)".into())
        }
    }
}
