//! Motor backends: where the wheel speeds that [`crate::safety`] decides are written.
//!
//! [`Motors`] is the trait; [`open`] picks the backend named by `motors.driver`: `sim`
//! (always built, in memory, visible in `/api/status`) or one of the GPIO boards in
//! [`gpio`]. The boards talk to pins only through [`gpio::Pins`], so the exact pin writes
//! of each board are tested on any machine with a recording fake; rppal sits behind it.

pub mod gpio;

use crate::config::{MotorDriver, MotorsConfig};
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum MotorError {
    #[error(
        "motors.driver = \"{driver}\" needs the Raspberry Pi's GPIO, which is not available \
         here ({reason}). On a machine without GPIO set motors.driver = \"sim\" or run with \
         --simulate; on a Pi, check that the user is in the gpio group"
    )]
    NoGpio {
        driver: &'static str,
        reason: String,
    },
    #[error("GPIO {pin} ({key}) could not be set up: {reason}")]
    Pin {
        pin: u8,
        key: String,
        reason: String,
    },
    #[error("writing GPIO {pin} failed: {reason}")]
    Write { pin: u8, reason: String },
}

/// Two wheel speeds in -1..=1 (negative is backwards), written together.
pub trait Motors: Send {
    /// The name shown in `/api/status`: "sim", "l298n", ...
    fn name(&self) -> &'static str;
    fn set(&mut self, left: f64, right: f64) -> Result<(), MotorError>;
}

/// What the simulated motors were last told, and every write, for status and tests.
#[derive(Debug, Default)]
pub struct SimRecord {
    pub left: f64,
    pub right: f64,
    pub writes: u64,
}

/// Motors in memory. `record` is shared so status and tests can see every write.
#[derive(Debug, Clone, Default)]
pub struct Sim {
    pub record: Arc<Mutex<SimRecord>>,
}

impl Motors for Sim {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn set(&mut self, left: f64, right: f64) -> Result<(), MotorError> {
        let mut r = crate::sync::lock(&self.record);
        r.left = left;
        r.right = right;
        r.writes += 1;
        Ok(())
    }
}

/// Opens the backend `config.driver` names. A GPIO board on a machine without GPIO is an
/// error at start, never a silent fallback: the robot would not move and nobody would know.
pub fn open(config: &MotorsConfig) -> Result<Box<dyn Motors>, MotorError> {
    match config.driver {
        MotorDriver::Sim => Ok(Box::new(Sim::default())),
        board => {
            let pins = gpio::RppalPins::open(board.as_str())?;
            Ok(Box::new(gpio::Board::new(config, Box::new(pins))?))
        }
    }
}

/// Holds the motors and zeroes them when dropped, so that however the motor task ends
/// (return, error, panic unwinding), the wheels stop.
pub struct StopOnDrop(pub Box<dyn Motors>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        match self.0.set(0.0, 0.0) {
            Ok(()) => log::info!("motors stopped"),
            Err(e) => log::error!("could not stop the motors: {e}"),
        }
    }
}
