//! Test hooks for the motor task, like `media::hooks`: only built with the `test-support`
//! feature, which `cargo test` turns on and a release build never has.

use crate::control::{Control, ControlError};
use crate::protocol::{Command, Drive};
use std::time::Duration;

/// How often the pretend driver repeats its drive, as the page does.
const REPEAT: Duration = Duration::from_millis(50);

/// With `ROVERD_TEST_DRIVE=LEFT,RIGHT` in the environment (e.g. `0.5,0.5`), a pretend peer
/// repeats `drive(LEFT, RIGHT)` every 50 ms for as long as roverd runs, so that
/// `systemd/nspawn-test.sh` can kill a roverd that is driving, with no browser in the
/// container. It obeys the same rules as a real peer (refused while the e-stop is latched,
/// stopped by the deadman if it stalled) and ends when the motor task does.
pub fn pretend_driver(control: &Control) {
    const VAR: &str = "ROVERD_TEST_DRIVE";
    let Ok(value) = std::env::var(VAR) else {
        return;
    };
    let parsed = value
        .split_once(',')
        .and_then(|(l, r)| Some((l.trim().parse().ok()?, r.trim().parse().ok()?)));
    let Some((left, right)) = parsed else {
        log::warn!(target: "roverd::motors", "{VAR}={value}: not LEFT,RIGHT; ignored");
        return;
    };
    log::warn!(
        target: "roverd::motors",
        "{VAR}={value}: a pretend peer drives ({left}, {right}) every {REPEAT:?} (a test hook)"
    );
    let control = control.clone();
    tokio::spawn(async move {
        const PEER: &str = "test-driver (ROVERD_TEST_DRIVE)";
        let mut refused = false;
        loop {
            let drive = Command::Drive(Drive::Wheels { left, right });
            match control.command(PEER, drive).await {
                Ok(()) => refused = false,
                Err(ControlError::Refused(why)) => {
                    if !refused {
                        log::warn!(target: "roverd::motors", "{VAR}: drive refused: {why}");
                    }
                    refused = true;
                }
                Err(_) => return,
            }
            tokio::time::sleep(REPEAT).await;
        }
    });
}
