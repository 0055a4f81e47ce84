//! Motor backends: where the wheel speeds that [`crate::safety`] decides are written.
//!
//! [`Motors`] is the trait; [`open`] picks the backend named by `motors.driver`: `sim`
//! (always built, in memory, visible in `/api/status`) or one of the GPIO boards in
//! [`gpio`]. The boards talk to pins only through [`gpio::Pins`], so the exact pin writes
//! of each board are tested on any machine with a recording fake; rppal sits behind it,
//! in `rppal_pins`, built with the `gpio-rppal` feature.

pub mod gpio;
#[cfg(feature = "test-support")]
mod hooks;
mod motor;
#[cfg(test)]
pub(crate) mod recorder;
#[cfg(feature = "gpio-rppal")]
mod rppal_pins;
mod sim;

pub use motor::{MotorError, Motors};
pub use sim::Sim;

use crate::config::{MotorDriver, MotorsConfig};

/// Opens the backend `config.driver` names. A GPIO board on a machine without GPIO (or in
/// a build without GPIO support) is an error at start, never a silent fallback: the robot
/// would not move and nobody would know.
pub fn open(config: &MotorsConfig) -> Result<Box<dyn Motors>, MotorError> {
    let motors: Box<dyn Motors> = match (config.driver, &config.sim_file) {
        (MotorDriver::Sim, None) => Box::new(Sim::default()),
        (MotorDriver::Sim, Some(file)) => Box::new(Sim::with_file(file.clone())?),
        (board, _) => open_board(config, board)?,
    };
    #[cfg(feature = "test-support")]
    let motors = hooks::panicking_motors(motors);
    Ok(motors)
}

/// `roverd motors-off`: stops whatever `config` names, at once, without starting anything
/// else: every pin of a board to its stopped level as an output (hardware PWM disabled),
/// the sim's file to 0. Returns what was done, for the user.
pub fn off(config: &MotorsConfig) -> Result<String, MotorError> {
    match (config.driver, &config.sim_file) {
        (MotorDriver::Sim, None) => {
            Ok("motors.driver = \"sim\" without motors.sim_file: nothing to stop".into())
        }
        (MotorDriver::Sim, Some(file)) => {
            sim::write_file(file, 0.0, 0.0)?;
            Ok(format!(
                "simulated motors stopped ({} set to 0)",
                file.display()
            ))
        }
        (board, _) => {
            // Opening writes 0 to every pin; dropping keeps them there (and disables
            // hardware PWM) without letting any pin float.
            drop(open_board(config, board)?);
            Ok(format!(
                "motors stopped: every {} pin at its stopped level",
                board.as_str()
            ))
        }
    }
}

#[cfg(feature = "gpio-rppal")]
fn open_board(config: &MotorsConfig, board: MotorDriver) -> Result<Box<dyn Motors>, MotorError> {
    let pins = rppal_pins::RppalPins::open(board.as_str())?;
    Ok(Box::new(gpio::Board::new(config, Box::new(pins))?))
}

#[cfg(not(feature = "gpio-rppal"))]
fn open_board(_config: &MotorsConfig, board: MotorDriver) -> Result<Box<dyn Motors>, MotorError> {
    Err(MotorError::NotBuilt {
        driver: board.as_str(),
    })
}

/// Whether the motors could be driven here, for `roverd devices`: the board model and the
/// GPIO character devices when rppal can open them, else why not and what that means.
pub fn describe_gpio() -> String {
    #[cfg(feature = "gpio-rppal")]
    return rppal_pins::describe_gpio();
    #[cfg(not(feature = "gpio-rppal"))]
    "GPIO not built in: this roverd was built without GPIO support (the cargo feature \
     gpio-rppal), so motors.driver can only be \"sim\"\n"
        .to_owned()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(feature = "gpio-rppal")]
    fn without_gpio_a_board_is_refused_with_what_to_change() {
        // This machine (a desktop or CI) has no Raspberry Pi GPIO.
        if rppal::system::DeviceInfo::new().is_ok() {
            return;
        }
        let err = match open(&MotorsConfig {
            driver: MotorDriver::L298n,
            ..MotorsConfig::default()
        }) {
            Ok(_) => panic!("a GPIO board opened on a machine without GPIO"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("motors.driver = \"l298n\""), "{err}");
        assert!(
            err.contains("--simulate") && err.contains("\"sim\""),
            "{err}"
        );
    }

    #[test]
    #[cfg(not(feature = "gpio-rppal"))]
    fn without_gpio_support_a_board_is_refused_naming_the_feature() {
        let err = match open(&MotorsConfig {
            driver: MotorDriver::Tb6612,
            ..MotorsConfig::default()
        }) {
            Ok(_) => panic!("a GPIO board opened in a build without GPIO support"),
            Err(e) => e.to_string(),
        };
        assert!(err.starts_with("motors.driver = \"tb6612\""), "{err}");
        assert!(
            err.contains("gpio-rppal") && err.contains("\"sim\""),
            "{err}"
        );
        assert!(describe_gpio().contains("gpio-rppal"));
    }

    #[test]
    fn sim_needs_no_hardware() {
        let mut motors = open(&MotorsConfig::default()).expect("sim opens");
        assert_eq!(motors.name(), "sim");
        motors.set(0.5, -0.5).expect("writes");
    }
}
