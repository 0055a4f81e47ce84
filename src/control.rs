//! The motor task: the one owner of the motors and of the [`Safety`] state machine.
//!
//! Peers send it commands and departures through [`Control`]; it feeds them to `Safety`
//! with the time, wakes for the deadman deadline and the ramp steps, writes the resulting
//! speeds to the backend, and publishes the state for `/api/status` and the `state`
//! messages. The backend sits in a [`StopOnDrop`]: when this task ends for any reason,
//! including a panic, the motors are set to 0.

use crate::config::Config;
use crate::motors::{self, MotorError, Motors, StopOnDrop};
use crate::protocol::Command;
use crate::safety::{MotorLimits, MotorState, Refusal, Safety, Wheel};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// How often the speeds step toward a drive command's target while ramping.
pub use crate::safety::RAMP_STEP;

enum Request {
    Command {
        peer: String,
        command: Command,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    PeerLeft(String),
    Halt(oneshot::Sender<()>),
}

/// A handle on the motor task. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    requests: mpsc::UnboundedSender<Request>,
    state: watch::Receiver<MotorState>,
    backend: &'static str,
}

/// Why a command could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("motor control has stopped (roverd is shutting down)")]
    Stopped,
}

pub fn limits(config: &Config) -> MotorLimits {
    let m = &config.motors;
    MotorLimits {
        deadman: Duration::from_millis(config.control.deadman_ms),
        max_speed: m.max_speed,
        ramp_per_s: m.ramp_per_s,
        left: Wheel {
            invert: m.left.invert,
            trim: m.left.trim,
        },
        right: Wheel {
            invert: m.right.invert,
            trim: m.right.trim,
        },
    }
}

impl Control {
    /// Opens the configured motor backend and starts the motor task.
    pub fn start(config: &Config) -> Result<Control, MotorError> {
        let backend = motors::open(&config.motors)?;
        Ok(Self::start_with(backend, limits(config)))
    }

    /// Starts the motor task on an already opened backend.
    pub fn start_with(backend: Box<dyn Motors>, limits: MotorLimits) -> Control {
        let name = backend.name();
        let safety = Safety::new(limits);
        let (state_tx, state) = watch::channel(safety.state());
        let (requests, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(StopOnDrop(backend), safety, rx, state_tx));
        log::info!("motors: {name} backend ready");
        Control {
            requests,
            state,
            backend: name,
        }
    }

    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// Carries out a motor command from `peer` (drive, stop, estop, reset).
    pub async fn command(&self, peer: &str, command: Command) -> Result<(), ControlError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Command {
                peer: peer.to_owned(),
                command,
                reply,
            })
            .map_err(|_| ControlError::Stopped)?;
        answer
            .await
            .map_err(|_| ControlError::Stopped)?
            .map_err(Into::into)
    }

    /// `peer` lost its control channel or its connection: if it drives, stop.
    pub fn peer_left(&self, peer: &str) {
        let _ = self.requests.send(Request::PeerLeft(peer.to_owned()));
    }

    pub fn state(&self) -> MotorState {
        self.state.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<MotorState> {
        self.state.clone()
    }

    /// Motors to 0 and the task ended: for shutdown. Returns once the motors are written.
    pub async fn halt(&self) {
        let (done, finished) = oneshot::channel();
        if self.requests.send(Request::Halt(done)).is_ok() {
            let _ = finished.await;
        }
    }
}

/// The time as tokio sees it, so that tests with a paused clock run in virtual time.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

async fn run(
    mut motors: StopOnDrop,
    mut safety: Safety,
    mut requests: mpsc::UnboundedReceiver<Request>,
    state: watch::Sender<MotorState>,
) {
    let mut written = (0.0, 0.0);
    loop {
        let wake = if safety.ramping() {
            Some(now() + RAMP_STEP)
        } else {
            safety.next_deadline()
        };
        let mut halted = None;
        tokio::select! {
            request = requests.recv() => match request {
                None => break,
                Some(Request::Command { peer, command, reply }) => {
                    let _ = reply.send(safety.command(&peer, &command, now()));
                }
                Some(Request::PeerLeft(peer)) => safety.peer_left(&peer, now()),
                Some(Request::Halt(done)) => {
                    safety.halt();
                    halted = Some(done);
                }
            },
            () = sleep_until(wake), if wake.is_some() => safety.tick(now()),
        }
        let current = safety.state();
        if (current.left, current.right) != written {
            match motors.0.set(current.left, current.right) {
                Ok(()) => written = (current.left, current.right),
                Err(e) => log::error!("{e}"),
            }
        }
        state.send_if_modified(|old| {
            let changed = *old != current;
            *old = current;
            changed
        });
        if let Some(done) = halted {
            log::info!("motors stopped for shutdown");
            let _ = done.send(());
            break;
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::motors::Sim;
    use crate::protocol::Drive;

    fn limits() -> MotorLimits {
        MotorLimits {
            deadman: Duration::from_millis(500),
            max_speed: 1.0,
            ramp_per_s: 1000.0,
            left: Wheel::default(),
            right: Wheel::default(),
        }
    }

    fn drive(left: f64, right: f64) -> Command {
        Command::Drive(Drive::Wheels { left, right })
    }

    async fn wait_for(sim: &Sim, want: (f64, f64), control: &Control) {
        let mut states = control.subscribe();
        loop {
            {
                let r = sim.record.lock().unwrap();
                if (r.left, r.right) == want {
                    return;
                }
            }
            states.changed().await.expect("motor task alive");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn drive_reaches_the_backend_and_the_deadman_stops_it_on_time() {
        let sim = Sim::default();
        let control = Control::start_with(Box::new(sim.clone()), limits());
        let start = tokio::time::Instant::now();
        control.command("a", drive(0.5, 0.5)).await.unwrap();
        wait_for(&sim, (0.5, 0.5), &control).await;
        wait_for(&sim, (0.0, 0.0), &control).await;
        let stopped_after = start.elapsed();
        assert!(
            stopped_after >= Duration::from_millis(500)
                && stopped_after <= Duration::from_millis(520),
            "deadman after {stopped_after:?}"
        );
        assert_eq!(control.state().driver, None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_driver_leaving_stops_the_motors_and_a_viewer_leaving_does_not() {
        let sim = Sim::default();
        let control = Control::start_with(Box::new(sim.clone()), limits());
        control.command("a", drive(1.0, 1.0)).await.unwrap();
        wait_for(&sim, (1.0, 1.0), &control).await;
        let writes = sim.record.lock().unwrap().writes;
        control.peer_left("viewer");
        // A round trip that moves nothing: the departure has been handled before we look.
        let ping = Command::Ping { t: 0.into() };
        assert!(control.command("viewer", ping).await.is_err());
        {
            let r = sim.record.lock().unwrap();
            assert_eq!((r.left, r.right, r.writes), (1.0, 1.0, writes));
        }
        assert_eq!(control.state().driver.as_deref(), Some("a"));
        control.peer_left("a");
        wait_for(&sim, (0.0, 0.0), &control).await;
    }

    #[tokio::test(start_paused = true)]
    async fn halt_zeroes_the_motors_and_later_commands_are_refused() {
        let sim = Sim::default();
        let control = Control::start_with(Box::new(sim.clone()), limits());
        control.command("a", drive(1.0, -1.0)).await.unwrap();
        wait_for(&sim, (1.0, -1.0), &control).await;
        control.halt().await;
        {
            // One guard: two locks in one expression would deadlock on the second.
            let r = sim.record.lock().unwrap();
            assert_eq!((r.left, r.right), (0.0, 0.0));
        }
        assert!(matches!(
            control.command("a", drive(1.0, 1.0)).await,
            Err(ControlError::Stopped)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn the_motors_stop_when_the_motor_task_ends_for_any_reason() {
        let sim = Sim::default();
        let control = Control::start_with(Box::new(sim.clone()), limits());
        control.command("a", drive(1.0, 1.0)).await.unwrap();
        wait_for(&sim, (1.0, 1.0), &control).await;
        let writes = sim.record.lock().unwrap().writes;
        // Every handle gone: the task's request channel closes and the task ends.
        let mut states = control.subscribe();
        drop(control);
        while states.changed().await.is_ok() {}
        let r = sim.record.lock().unwrap();
        assert_eq!((r.left, r.right), (0.0, 0.0), "the guard zeroed the motors");
        assert!(r.writes > writes);
    }
}
