//! Simulated motors: every write kept in memory, for `/api/status`, tests and a first try
//! on a machine without GPIO; and, with `motors.sim_file`, in a file that outlives roverd
//! the way GPIO levels do.

use crate::motors::motor::{MotorError, Motors};
use std::path::{Path, PathBuf};
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
    /// `motors.sim_file`: replaced on every write.
    file: Option<PathBuf>,
}

impl Sim {
    /// Simulated motors that also keep their last speeds in `file`, written now with 0.
    pub fn with_file(file: PathBuf) -> Result<Sim, MotorError> {
        write_file(&file, 0.0, 0.0)?;
        Ok(Sim {
            record: Arc::default(),
            file: Some(file),
        })
    }
}

/// Replaces `file` with `{"left": L, "right": R}`: written to a temporary file in the same
/// directory, then renamed over it, so a reader (or a roverd killed mid-write) never sees
/// half a file.
pub fn write_file(file: &Path, left: f64, right: f64) -> Result<(), MotorError> {
    let fail = |source| MotorError::SimFile {
        path: file.to_owned(),
        source,
    };
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    let tmp = file.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let text = serde_json::json!({ "left": left, "right": right }).to_string();
    std::fs::write(&tmp, text + "\n").map_err(fail)?;
    std::fs::rename(&tmp, file).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(e)
    })
}

impl Motors for Sim {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn set(&mut self, left: f64, right: f64) -> Result<(), MotorError> {
        {
            let mut r = crate::sync::lock(&self.record);
            r.left = left;
            r.right = right;
            r.writes += 1;
        }
        match &self.file {
            Some(file) => write_file(file, left, right),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_says_the_last_speeds_and_is_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("roverd-sim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("motors.json");
        let mut sim = Sim::with_file(file.clone()).unwrap();
        let read = || -> serde_json::Value {
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap()
        };
        assert_eq!(read(), serde_json::json!({"left": 0.0, "right": 0.0}));
        sim.set(0.5, -0.25).unwrap();
        assert_eq!(read(), serde_json::json!({"left": 0.5, "right": -0.25}));
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            matches!(sim.set(1.0, 1.0), Err(MotorError::SimFile { .. })),
            "a write that cannot reach the file fails"
        );
    }
}
