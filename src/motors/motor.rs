//! What every motor backend is: the [`Motors`] trait, and the [`MotorError`] it returns.

/// Why the motors could not be opened or written, worded for the robot's builder.
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
    #[error(
        "motors.driver = \"{driver}\" needs GPIO support, which this roverd was built without \
         (the cargo feature gpio-rppal); set motors.driver = \"sim\" or run with --simulate, \
         or build roverd with `--features gpio-rppal`"
    )]
    NotBuilt { driver: &'static str },
    #[error("GPIO {pin} ({key}) could not be set up: {reason}")]
    Pin {
        pin: u8,
        key: String,
        reason: String,
    },
    #[error("writing GPIO {pin} failed: {reason}")]
    Write { pin: u8, reason: String },
    #[error("could not write the simulated motors' file {path} (motors.sim_file): {source}")]
    SimFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Two wheel speeds in -1..=1 (negative is backwards), written together.
pub trait Motors: Send {
    /// The name shown in `/api/status`: "sim", "l298n", ...
    fn name(&self) -> &'static str;
    /// The PWM in use, for `/api/status`: "software", "hardware", or "none" (no pins).
    fn pwm(&self) -> &'static str {
        "none"
    }
    fn set(&mut self, left: f64, right: f64) -> Result<(), MotorError>;
}
