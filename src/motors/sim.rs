//! Simulated motors: every write kept in memory, for `/api/status`, tests and a first try
//! on a machine without GPIO.

use crate::motors::motor::{MotorError, Motors};
use std::sync::{Arc, Mutex};

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
