//! Test hooks for the motors, like `media::hooks`: only built with the `test-support`
//! feature, which `cargo test` turns on and a release build never has.

use crate::motors::motor::{MotorError, Motors};

/// With `ROVERD_TEST_MOTORS_PANIC=1` in the environment the backend panics on its first
/// write of a non-zero speed (stops still work), so that the tests can watch a motor task
/// that died: `/healthz`, the watchdog and the error a drive gets.
pub fn panicking_motors(motors: Box<dyn Motors>) -> Box<dyn Motors> {
    const VAR: &str = "ROVERD_TEST_MOTORS_PANIC";
    if std::env::var_os(VAR).is_none() {
        return motors;
    }
    log::warn!(
        target: "roverd::motors",
        "{VAR}: the motors will panic on the first drive (a test hook)"
    );
    struct Panicking(Box<dyn Motors>);
    impl Motors for Panicking {
        fn name(&self) -> &'static str {
            self.0.name()
        }
        fn pwm(&self) -> &'static str {
            self.0.pwm()
        }
        fn set(&mut self, left: f64, right: f64) -> Result<(), MotorError> {
            if left != 0.0 || right != 0.0 {
                panic!("{VAR}: a motor write panics (a test hook)");
            }
            self.0.set(left, right)
        }
    }
    Box::new(Panicking(motors))
}
