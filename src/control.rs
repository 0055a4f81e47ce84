//! The motor task: the one owner of the motors and of the [`Safety`] state machine.
//!
//! Peers send it commands and departures through [`Control`]; it feeds them to `Safety`
//! with the time, wakes for the deadman deadline and the ramp steps, writes the resulting
//! speeds to the backend, and publishes the state for `/api/status` and the `state`
//! messages.
//!
//! Writes happen off the async runtime (`spawn_blocking`: a pin write, or stopping
//! software PWM, may block for a PWM period), one at a time, the latest speeds winning.
//! A failed write is retried every [`WRITE_RETRY`] until one succeeds, while the task keeps
//! serving commands. The backend sits in a [`StopOnDrop`]: when the task ends for any
//! reason, including a panic, the motors are set to 0. A supervisor watches the task: if it
//! dies (a panic, in the task or in the backend), [`Control::failure`] says why, which
//! `/healthz` and the systemd watchdog report, and every later command gets
//! [`ControlError::Failed`].
//!
//! With a latch file ([`Control::start_latched`]), a latched e-stop survives a restart:
//! the file is written when the e-stop latches and removed on `reset`, and a motor task
//! that finds it at start latches again before serving anyone.

#[cfg(feature = "test-support")]
pub(crate) mod hooks;

use crate::config::Config;
use crate::motors::{self, MotorError, Motors, StopOnDrop};
use crate::protocol::Command;
use crate::safety::{MotorLimits, MotorState, Refusal, Safety, Wheel};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// How often the speeds step toward a drive command's target while ramping.
pub use crate::safety::RAMP_STEP;

/// How soon a failed motor write is tried again.
pub const WRITE_RETRY: Duration = Duration::from_millis(10);

/// The name of the e-stop latch file in roverd's state directory.
pub const ESTOP_LATCH_FILE: &str = "estop-latched";

/// The peer name under which a latch found at start is applied, as the log shows it.
const RESTART_PEER: &str = "roverd (an e-stop latched before a restart)";

enum Request {
    Command {
        peer: String,
        command: Command,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    PeerLeft(String),
    Halt(oneshot::Sender<()>),
}

/// How the motor task ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    /// Halted for shutdown, or every handle was dropped: the motors were set to 0.
    Stopped,
    /// It died: the reason, for `/healthz` and the error every later command gets.
    Failed(String),
}

/// A handle on the motor task. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    requests: mpsc::UnboundedSender<Request>,
    state: watch::Receiver<MotorState>,
    ended: watch::Receiver<Option<Ended>>,
    backend: &'static str,
    pwm: &'static str,
}

/// Why a command could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("motor control has stopped (roverd is shutting down)")]
    Stopped,
    #[error(
        "motor control failed ({0}); the motors were stopped and nothing can drive them until \
         roverd restarts"
    )]
    Failed(String),
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
        Self::start_latched(config, None)
    }

    /// [`Control::start`], keeping a latched e-stop in `latch_file` across restarts.
    pub fn start_latched(
        config: &Config,
        latch_file: Option<PathBuf>,
    ) -> Result<Control, MotorError> {
        let backend = motors::open(&config.motors)?;
        Ok(Self::start_with_latch(backend, limits(config), latch_file))
    }

    /// Starts the motor task on an already opened backend.
    pub fn start_with(backend: Box<dyn Motors>, limits: MotorLimits) -> Control {
        Self::start_with_latch(backend, limits, None)
    }

    /// Starts the motor task on an already opened backend, with an e-stop latch file.
    pub fn start_with_latch(
        backend: Box<dyn Motors>,
        limits: MotorLimits,
        latch_file: Option<PathBuf>,
    ) -> Control {
        let name = backend.name();
        let pwm = backend.pwm();
        let mut safety = Safety::new(limits);
        if let Some(file) = latch_file.as_ref().filter(|f| f.exists()) {
            log::warn!(
                "the e-stop was latched when roverd last ran ({} exists): the motors stay \
                 stopped until a reset",
                file.display()
            );
            // What a peer's `estop` does; it cannot be refused.
            let _ = safety.command(RESTART_PEER, &Command::Estop, now());
        }
        let (state_tx, state) = watch::channel(safety.state());
        let (ended_tx, ended) = watch::channel(None);
        let (requests, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(StopOnDrop(backend), safety, rx, state_tx, latch_file));
        tokio::spawn(supervise(task, ended_tx));
        log::info!("motors: {name} backend ready");
        Control {
            requests,
            state,
            ended,
            backend: name,
            pwm,
        }
    }

    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// The PWM the backend uses: "software", "hardware", or "none" (sim).
    pub fn pwm(&self) -> &'static str {
        self.pwm
    }

    /// Why the motor task died, if it did.
    pub fn failure(&self) -> Option<String> {
        match &*self.ended.borrow() {
            Some(Ended::Failed(why)) => Some(why.clone()),
            _ => None,
        }
    }

    /// Carries out a motor command from `peer` (drive, stop, estop, reset).
    pub async fn command(&self, peer: &str, command: Command) -> Result<(), ControlError> {
        let (reply, answer) = oneshot::channel();
        let sent = self.requests.send(Request::Command {
            peer: peer.to_owned(),
            command,
            reply,
        });
        match sent {
            Ok(()) => match answer.await {
                Ok(result) => result.map_err(Into::into),
                Err(_) => Err(self.why_gone().await),
            },
            Err(_) => Err(self.why_gone().await),
        }
    }

    /// The task is gone: wait (briefly) for the supervisor to say how it ended.
    async fn why_gone(&self) -> ControlError {
        let mut ended = self.ended.clone();
        let how = tokio::time::timeout(Duration::from_secs(1), ended.wait_for(Option::is_some))
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|e| e.clone());
        match how {
            Some(Ended::Failed(why)) => ControlError::Failed(why),
            _ => ControlError::Stopped,
        }
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

    /// Motors to 0 and the task ended: for shutdown. Returns once the motors are written
    /// (or the task is gone).
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

/// Waits for the motor task and says how it ended.
async fn supervise(task: tokio::task::JoinHandle<Ended>, ended: watch::Sender<Option<Ended>>) {
    let how = match task.await {
        Ok(how) => how,
        Err(e) if e.is_panic() => Ended::Failed(format!(
            "the motor task panicked: {}",
            panic_message(e.into_panic())
        )),
        // The runtime is shutting down.
        Err(_) => Ended::Stopped,
    };
    if let Ended::Failed(why) = &how {
        log::error!(
            "motor control failed: {why}; the motors were set to 0, and drive commands are \
             refused until roverd restarts"
        );
    }
    ended.send_replace(Some(how));
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned())
}

/// A write in progress on the blocking pool: it hands the backend back with the speeds it
/// wrote and how it went.
type Write = tokio::task::JoinHandle<(StopOnDrop, (f64, f64), Result<(), MotorError>)>;

fn start_write(mut motors: StopOnDrop, speeds: (f64, f64)) -> Write {
    tokio::task::spawn_blocking(move || {
        let result = motors.0.set(speeds.0, speeds.1);
        (motors, speeds, result)
    })
}

async fn finish(write: &mut Option<Write>) -> <Write as std::future::Future>::Output {
    match write {
        Some(w) => w.await,
        None => std::future::pending().await,
    }
}

async fn run(
    motors: StopOnDrop,
    mut safety: Safety,
    mut requests: mpsc::UnboundedReceiver<Request>,
    state: watch::Sender<MotorState>,
    latch_file: Option<PathBuf>,
) -> Ended {
    let mut motors = Some(motors);
    // What the pins hold; `None` after a failed write, which may have written some pins.
    let mut written = Some((0.0, 0.0));
    let mut writing: Option<Write> = None;
    let mut retry_at: Option<Instant> = None;
    // Halting (for shutdown, or every handle gone): the reply once the motors are at 0.
    let mut halting: Option<Option<oneshot::Sender<()>>> = None;
    let mut latched = state.borrow().estop;
    if latched {
        keep_latch(latch_file.as_ref(), true);
    }
    loop {
        let wake = if safety.ramping() {
            Some(now() + RAMP_STEP)
        } else {
            safety.next_deadline()
        };
        tokio::select! {
            request = requests.recv(), if halting.is_none() => match request {
                None => {
                    safety.halt();
                    halting = Some(None);
                }
                Some(Request::Command { peer, command, reply }) => {
                    let _ = reply.send(safety.command(&peer, &command, now()));
                }
                Some(Request::PeerLeft(peer)) => safety.peer_left(&peer, now()),
                Some(Request::Halt(done)) => {
                    safety.halt();
                    halting = Some(Some(done));
                }
            },
            () = sleep_until(wake), if wake.is_some() => safety.tick(now()),
            finished = finish(&mut writing), if writing.is_some() => {
                writing = None;
                match finished {
                    Ok((backend, speeds, result)) => {
                        motors = Some(backend);
                        match result {
                            Ok(()) => {
                                if written.is_none() {
                                    log::info!("motor writes work again");
                                }
                                written = Some(speeds);
                            }
                            Err(e) => {
                                if written.is_some() {
                                    log::error!("{e}; retrying every {WRITE_RETRY:?}");
                                }
                                written = None;
                                retry_at = Some(now() + WRITE_RETRY);
                            }
                        }
                    }
                    // The backend was dropped (and so set to 0) while unwinding.
                    Err(e) => {
                        let why = if e.is_panic() {
                            format!("a motor write panicked: {}", panic_message(e.into_panic()))
                        } else {
                            "a motor write was cancelled".to_owned()
                        };
                        return Ended::Failed(why);
                    }
                }
            },
            () = sleep_until(retry_at), if retry_at.is_some() => retry_at = None,
        }
        let current = safety.state();
        let speeds = (current.left, current.right);
        if writing.is_none() && retry_at.is_none() && written != Some(speeds) {
            if let Some(backend) = motors.take() {
                writing = Some(start_write(backend, speeds));
            }
        }
        if current.estop != latched {
            latched = current.estop;
            keep_latch(latch_file.as_ref(), latched);
        }
        state.send_if_modified(|old| {
            let changed = *old != current;
            *old = current;
            changed
        });
        if halting.is_some() && writing.is_none() && written == Some((0.0, 0.0)) {
            log::info!("motors stopped for shutdown");
            if let Some(Some(done)) = halting.take() {
                let _ = done.send(());
            }
            break;
        }
    }
    // The guard's own stop, off the async threads like every write.
    if let Some(backend) = motors.take() {
        let _ = tokio::task::spawn_blocking(move || drop(backend)).await;
    }
    Ended::Stopped
}

/// Writes (`latched`) or removes the e-stop latch file. A failure is logged: the e-stop
/// itself holds regardless, only a restart would forget it.
fn keep_latch(file: Option<&PathBuf>, latched: bool) {
    let Some(file) = file else { return };
    let result = if latched {
        file.parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(file, "e-stop latched; send reset to clear\n"))
    } else {
        match std::fs::remove_file(file) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    };
    if let Err(e) = result {
        log::error!(
            "could not {} the e-stop latch file {}: {e}; a restart of roverd would not \
             know the e-stop state",
            if latched { "write" } else { "remove" },
            file.display()
        );
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
    use crate::motors::gpio::PinWrite;
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

    /// Waits (in virtual time, 1 ms steps) until the backend was written `want`: writes
    /// finish on the blocking pool, after the state that asked for them is published.
    async fn wait_for(sim: &Sim, want: (f64, f64)) {
        for _ in 0..10_000 {
            {
                let r = sim.record.lock().unwrap();
                if (r.left, r.right) == want {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("the backend was never written {want:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn drive_reaches_the_backend_and_the_deadman_stops_it_on_time() {
        let sim = Sim::default();
        let control = Control::start_with(Box::new(sim.clone()), limits());
        let start = tokio::time::Instant::now();
        control.command("a", drive(0.5, 0.5)).await.unwrap();
        wait_for(&sim, (0.5, 0.5)).await;
        wait_for(&sim, (0.0, 0.0)).await;
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
        wait_for(&sim, (1.0, 1.0)).await;
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
        wait_for(&sim, (0.0, 0.0)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn halt_zeroes_the_motors_and_later_commands_are_refused() {
        let sim = Sim::default();
        let control = Control::start_with(Box::new(sim.clone()), limits());
        control.command("a", drive(1.0, -1.0)).await.unwrap();
        wait_for(&sim, (1.0, -1.0)).await;
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
        wait_for(&sim, (1.0, 1.0)).await;
        let writes = sim.record.lock().unwrap().writes;
        // Every handle gone: the task's request channel closes and the task ends.
        let mut states = control.subscribe();
        drop(control);
        while states.changed().await.is_ok() {}
        wait_for(&sim, (0.0, 0.0)).await;
        let r = sim.record.lock().unwrap();
        assert_eq!((r.left, r.right), (0.0, 0.0), "the guard zeroed the motors");
        assert!(r.writes > writes);
    }

    use crate::config::{MotorDriver, MotorsConfig};
    use crate::motors::gpio::Board;
    use crate::motors::recorder::Recorder;
    use std::sync::atomic::Ordering;

    /// An L298N on the recorder (default pins: left 17, 27, en 12; right 23, 24, en 13).
    fn l298n() -> (Box<dyn Motors>, Recorder) {
        let config = MotorsConfig {
            driver: MotorDriver::L298n,
            ..MotorsConfig::default()
        };
        let rec = Recorder::default();
        let board = Board::new(&config, Box::new(rec.clone())).unwrap();
        (Box::new(board), rec)
    }

    /// Lets the motor task and its blocking writes run until `done` holds, in virtual time.
    async fn until(what: &str, done: impl Fn() -> bool) {
        for _ in 0..2000 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("never: {what}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_pin_write_is_retried_every_10_ms_and_the_other_wheel_is_still_written() {
        let (board, rec) = l298n();
        let control = Control::start_with(board, limits());
        rec.failing.lock().unwrap().insert(17);
        control.command("a", drive(0.5, 0.5)).await.unwrap();
        until("the right wheel driven", || {
            rec.pins(&[23, 24, 13]) == [PinWrite::High, PinWrite::Low, PinWrite::Pwm(0.5)]
        })
        .await;
        let failed_at = tokio::time::Instant::now();
        let writes_to_12 = || {
            rec.log
                .lock()
                .unwrap()
                .iter()
                .filter(|(p, _)| *p == 12)
                .count()
        };
        let before = writes_to_12();
        // The task keeps serving commands while it retries.
        control.command("a", drive(0.25, 0.25)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(95)).await;
        let retries = writes_to_12() - before;
        assert!(
            (8..=11).contains(&retries),
            "{retries} retries in 95 ms: one every 10 ms"
        );
        assert_eq!(
            rec.pins(&[13]),
            [PinWrite::Pwm(0.25)],
            "retries write the latest speeds"
        );
        rec.failing.lock().unwrap().clear();
        until("the left wheel written at last", || {
            rec.pins(&[17, 27, 12]) == [PinWrite::High, PinWrite::Low, PinWrite::Pwm(0.25)]
        })
        .await;
        assert!(failed_at.elapsed() < Duration::from_millis(200));
        let after = writes_to_12();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(writes_to_12(), after, "no retry once a write succeeded");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_that_fails_is_retried_until_the_motors_are_stopped_and_halt_waits_for_it() {
        let (board, rec) = l298n();
        let control = Control::start_with(board, limits());
        control.command("a", drive(1.0, 1.0)).await.unwrap();
        until("driving", || rec.pins(&[12]) == [PinWrite::Pwm(1.0)]).await;
        rec.failing.lock().unwrap().insert(13);
        let halt = tokio::spawn({
            let control = control.clone();
            async move { control.halt().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !halt.is_finished(),
            "halt returned with a wheel not stopped"
        );
        assert_eq!(
            rec.pins(&[17, 27, 12]),
            [PinWrite::Low, PinWrite::Low, PinWrite::Pwm(0.0)]
        );
        rec.failing.lock().unwrap().clear();
        halt.await.unwrap();
        assert!(rec.all_stopped());
    }

    /// Every way the motor task ends leaves every pin an output at its stopped level.
    #[tokio::test(start_paused = true)]
    async fn every_exit_of_the_motor_task_leaves_every_pin_stopped() {
        // Halt (shutdown).
        let (board, rec) = l298n();
        let control = Control::start_with(board, limits());
        control.command("a", drive(1.0, -1.0)).await.unwrap();
        until("driving", || !rec.all_stopped()).await;
        control.halt().await;
        until("released", || rec.released()).await;
        assert!(rec.all_stopped(), "halt: {:?}", rec.state.lock().unwrap());
        assert!(control.failure().is_none());

        // Every handle dropped.
        let (board, rec) = l298n();
        let control = Control::start_with(board, limits());
        control.command("a", drive(0.3, 0.3)).await.unwrap();
        until("driving", || !rec.all_stopped()).await;
        drop(control);
        until("released", || rec.released()).await;
        assert!(rec.all_stopped(), "drop: {:?}", rec.state.lock().unwrap());

        // A panic in the motor task (here in a pin write).
        let (board, rec) = l298n();
        let control = Control::start_with(board, limits());
        control.command("a", drive(0.3, 0.3)).await.unwrap();
        until("driving", || !rec.all_stopped()).await;
        rec.panic_next.store(true, Ordering::SeqCst);
        control.command("a", drive(0.6, 0.6)).await.unwrap();
        until("released", || rec.released()).await;
        assert!(rec.all_stopped(), "panic: {:?}", rec.state.lock().unwrap());
        until("the failure known", || control.failure().is_some()).await;
        let failure = control.failure().unwrap();
        assert!(failure.contains("panic"), "{failure}");
        let err = control.command("a", drive(0.6, 0.6)).await.unwrap_err();
        assert!(matches!(err, ControlError::Failed(_)), "{err:?}");
        assert!(err.to_string().starts_with("motor control failed"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_latched_estop_is_kept_in_a_file_and_applied_when_the_task_starts_again() {
        let dir = std::env::temp_dir().join(format!("roverd-latch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let file = dir.join(ESTOP_LATCH_FILE);
        let sim = Sim::default();
        let control =
            Control::start_with_latch(Box::new(sim.clone()), limits(), Some(file.clone()));
        assert!(!control.state().estop && !file.exists());
        control.command("a", Command::Estop).await.unwrap();
        assert!(control.state().estop);
        until("the latch file written", || file.exists()).await;
        control.halt().await;

        // A restart: latched before anyone speaks, until a reset.
        let control =
            Control::start_with_latch(Box::new(sim.clone()), limits(), Some(file.clone()));
        assert!(control.state().estop, "latched again at start");
        let refused = control.command("b", drive(1.0, 1.0)).await.unwrap_err();
        assert!(refused.to_string().contains("latched"), "{refused}");
        control.command("b", Command::Reset).await.unwrap();
        until("the latch file removed", || !file.exists()).await;
        // b pressed during the latch, so it lets go before it drives.
        control.command("b", drive(0.0, 0.0)).await.unwrap();
        control.command("b", drive(1.0, 1.0)).await.unwrap();
        wait_for(&sim, (1.0, 1.0)).await;
        control.halt().await;

        let control = Control::start_with_latch(Box::new(sim), limits(), Some(file));
        assert!(!control.state().estop, "no latch after a reset");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
