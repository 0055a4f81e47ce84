//! The motor safety rules (README.md, "Driving") as a pure state machine.
//!
//! [`Safety`] takes commands, peer departures and clock ticks, each with the time as an
//! argument, and answers with the wheel speeds the motors must have now. It never reads
//! the clock, sleeps or touches a pin, so every rule is tested in virtual time.
//!
//! The invariant: the motors turn only while one peer (the driver) keeps sending drive
//! commands, at most `deadman` apart, with no e-stop latched. Every other path leads to 0:
//! - deadman: no drive from the driver for `deadman` → 0, and the lease lapses;
//! - the driver leaves (data channel or connection closed, failed, disconnected) → 0;
//! - `stop` from anyone → 0 and the lease released; `estop` from anyone → 0, the lease
//!   released, and latched until `reset`;
//! - shutdown → 0 (the shell calls [`Safety::halt`]).
//!
//! A stop wins: after a `stop` or an `estop`, every peer that has sent a drive (and not left
//! since) must let go of its controls, by sending a zero drive, before its non-zero drives
//! are obeyed again. A driver that keeps repeating its command cannot undo a bystander's
//! stop, nor resume moving when an e-stop is reset.
//!
//! Stops are immediate. The ramp (`ramp_per_s`) only limits how fast drive commands change
//! the speed, a zero drive on release included: a stop that takes time is not a stop.

use crate::protocol::{Command, Drive};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A drive from rest moves the speed by this much of the ramp at once, instead of at the
/// next ramp step: the motors answer a command immediately, as if it had come one ramp
/// step earlier. It matches the motor task's ramp step.
pub const RAMP_STEP: Duration = Duration::from_millis(10);

/// Who sent a command: the peer id.
pub type PeerId = String;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wheel {
    pub invert: bool,
    /// Scales this wheel's speed, 0..=1.
    pub trim: f64,
}

/// A wheel as wired: not inverted, full speed.
impl Default for Wheel {
    fn default() -> Self {
        Self {
            invert: false,
            trim: 1.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MotorLimits {
    pub deadman: Duration,
    /// The fraction of full speed any command can reach, (0, 1].
    pub max_speed: f64,
    /// Largest change of a wheel's speed per second under drive commands.
    pub ramp_per_s: f64,
    pub left: Wheel,
    pub right: Wheel,
}

/// What a peer has to let go after: the last stop it drove through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Halted {
    #[error("a stop was sent (by you or another viewer)")]
    Stop,
    #[error("an emergency stop was sent (by you or another viewer) and has since been reset")]
    Estop,
}

/// Why a command was refused; the text goes back to the browser.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("emergency stop is latched: send {{\"type\":\"reset\"}} before driving")]
    Estopped,
    /// A non-zero drive from a peer that has not sent a zero drive since a stop.
    #[error("{0}: let go of the controls (send a zero drive) before driving again")]
    LetGo(Halted),
    #[error("another viewer ({0}) holds the driver's lease; you can drive once it stops driving for a moment or leaves")]
    NotDriver(PeerId),
    #[error("{0} is not a motor command")]
    NotMotorCommand(&'static str),
}

/// What the motors should be doing, and who may drive.
#[derive(Debug, Clone, PartialEq)]
pub struct MotorState {
    /// Speeds to write to the motor driver, after ramp, limits, trim and invert: -1..=1.
    pub left: f64,
    pub right: f64,
    pub estop: bool,
    pub driver: Option<PeerId>,
}

#[derive(Debug)]
pub struct Safety {
    limits: MotorLimits,
    /// The lease holder and the time of its last drive command.
    lease: Option<(PeerId, Instant)>,
    /// Wheel speeds asked for (after max_speed), before ramp, trim and invert.
    target: (f64, f64),
    /// Wheel speeds now (ramped), before trim and invert.
    now_speed: (f64, f64),
    estop: bool,
    last_step: Option<Instant>,
    /// Every peer seen sending a drive (refused or not) and not gone since, with the stop it
    /// has not yet let go after (sent a zero drive since), if any.
    drivers: HashMap<PeerId, Option<Halted>>,
}

impl Safety {
    pub fn new(limits: MotorLimits) -> Self {
        Self {
            limits,
            lease: None,
            target: (0.0, 0.0),
            now_speed: (0.0, 0.0),
            estop: false,
            last_step: None,
            drivers: HashMap::new(),
        }
    }

    /// Applies a command from `peer` at `now`. A refused command moves nothing; it is only
    /// remembered whether a refused drive let go of the controls (zero) or held them.
    pub fn command(&mut self, peer: &str, command: &Command, now: Instant) -> Result<(), Refusal> {
        self.advance(now);
        match command {
            Command::Drive(drive) => self.drive(peer, *drive, now),
            Command::Stop => {
                self.stop(Halted::Stop);
                Ok(())
            }
            Command::Estop => {
                self.estop = true;
                self.stop(Halted::Estop);
                Ok(())
            }
            Command::Reset => {
                self.estop = false;
                Ok(())
            }
            Command::Ping { .. } => Err(Refusal::NotMotorCommand("ping")),
        }
    }

    /// Motors to 0 at once, the lease released, and every peer that has driven must let
    /// go before it drives again.
    fn stop(&mut self, why: Halted) {
        self.lease = None;
        self.cut();
        for held in self.drivers.values_mut() {
            *held = Some(why);
        }
    }

    fn drive(&mut self, peer: &str, drive: Drive, now: Instant) -> Result<(), Refusal> {
        let (left, right) = drive.wheels();
        let letting_go = left == 0.0 && right == 0.0;
        let held = self.drivers.entry(peer.to_owned()).or_insert(None);
        if letting_go {
            *held = None;
        }
        if self.estop {
            // Held through the latch: the reset must not set these repeats going.
            if !letting_go {
                *held = Some(Halted::Estop);
            }
            return Err(Refusal::Estopped);
        }
        if let Some(why) = *held {
            return Err(Refusal::LetGo(why));
        }
        if let Some((holder, _)) = &self.lease {
            if holder != peer {
                return Err(Refusal::NotDriver(holder.clone()));
            }
        }
        let max = self.limits.max_speed;
        let at_rest = !self.ramping();
        self.target = (left * max, right * max);
        self.lease = Some((peer.to_owned(), now));
        if at_rest {
            self.last_step = now.checked_sub(RAMP_STEP).or(self.last_step);
            self.advance(now);
        }
        Ok(())
    }

    /// A peer's control channel or connection is gone: if it was driving, stop. It is
    /// forgotten, so that the peers remembered are only those still connected.
    pub fn peer_left(&mut self, peer: &str, now: Instant) {
        self.advance(now);
        self.drivers.remove(peer);
        if self
            .lease
            .as_ref()
            .is_some_and(|(holder, _)| holder == peer)
        {
            self.lease = None;
            self.cut();
        }
    }

    /// Moves time forward to `now`: the deadman and the ramp.
    pub fn tick(&mut self, now: Instant) {
        self.advance(now);
    }

    /// Everything to 0 and nobody driving: shutdown, or the motor task ending.
    pub fn halt(&mut self) {
        self.lease = None;
        self.cut();
    }

    /// The state the motors must be in now.
    pub fn state(&self) -> MotorState {
        let wheel = |speed: f64, w: Wheel| {
            let v = speed * w.trim;
            if w.invert {
                -v
            } else {
                v
            }
        };
        MotorState {
            left: wheel(self.now_speed.0, self.limits.left),
            right: wheel(self.now_speed.1, self.limits.right),
            estop: self.estop,
            driver: self.lease.as_ref().map(|(p, _)| p.clone()),
        }
    }

    /// When the deadman fires if no drive comes first; `None` when nobody drives.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.lease
            .as_ref()
            .map(|(_, last)| *last + self.limits.deadman)
    }

    /// Whether the speeds are still moving toward a drive command's target.
    pub fn ramping(&self) -> bool {
        self.now_speed != self.target
    }

    fn cut(&mut self) {
        self.target = (0.0, 0.0);
        self.now_speed = (0.0, 0.0);
    }

    fn advance(&mut self, now: Instant) {
        if let Some((_, last)) = &self.lease {
            if now.saturating_duration_since(*last) >= self.limits.deadman {
                self.lease = None;
                self.cut();
            }
        }
        let dt = self
            .last_step
            .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
        let step = self.limits.ramp_per_s * dt;
        let toward = |from: f64, to: f64| from + (to - from).clamp(-step, step);
        self.now_speed = (
            toward(self.now_speed.0, self.target.0),
            toward(self.now_speed.1, self.target.1),
        );
        self.last_step = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn limits() -> MotorLimits {
        MotorLimits {
            deadman: 500 * MS,
            max_speed: 1.0,
            // Fast enough that one 100 ms step reaches any speed, unless a test slows it.
            ramp_per_s: 1000.0,
            left: Wheel::default(),
            right: Wheel::default(),
        }
    }

    fn wheels(left: f64, right: f64) -> Command {
        Command::Drive(Drive::Wheels { left, right })
    }

    fn speeds(s: &Safety) -> (f64, f64) {
        let st = s.state();
        (st.left, st.right)
    }

    fn approx(a: (f64, f64), b: (f64, f64)) -> bool {
        (a.0 - b.0).abs() < 1e-9 && (a.1 - b.1).abs() < 1e-9
    }

    #[test]
    fn a_drive_moves_the_motors_and_makes_its_sender_the_driver() {
        let t0 = Instant::now();
        let mut s = Safety::new(limits());
        s.command("a", &wheels(0.5, -0.25), t0).unwrap();
        s.tick(t0 + 10 * MS);
        assert_eq!(speeds(&s), (0.5, -0.25));
        assert_eq!(s.state().driver.as_deref(), Some("a"));
    }

    #[test]
    fn the_deadman_fires_at_exactly_deadman_after_the_last_drive() {
        let t0 = Instant::now();
        let mut s = Safety::new(limits());
        s.command("a", &wheels(1.0, 1.0), t0).unwrap();
        s.command("a", &wheels(1.0, 1.0), t0 + 300 * MS).unwrap();
        s.tick(t0 + 799 * MS);
        assert_eq!(
            speeds(&s),
            (1.0, 1.0),
            "still within 500 ms of the last drive"
        );
        assert_eq!(s.next_deadline(), Some(t0 + 800 * MS));
        s.tick(t0 + 800 * MS);
        assert_eq!(speeds(&s), (0.0, 0.0), "deadman at exactly 500 ms");
        assert_eq!(s.state().driver, None, "the lease lapses with the deadman");
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn a_second_peer_is_refused_while_the_first_drives_and_takes_over_after() {
        let t0 = Instant::now();
        let mut s = Safety::new(limits());
        s.command("a", &wheels(0.5, 0.5), t0).unwrap();
        assert_eq!(
            s.command("b", &wheels(-1.0, -1.0), t0 + 10 * MS),
            Err(Refusal::NotDriver("a".into()))
        );
        s.tick(t0 + 20 * MS);
        assert_eq!(speeds(&s), (0.5, 0.5), "a refused command changes nothing");
        // The lease lapses after the deadman...
        s.tick(t0 + 500 * MS);
        s.command("b", &wheels(-1.0, -1.0), t0 + 501 * MS).unwrap();
        assert_eq!(s.state().driver.as_deref(), Some("b"));
        // ...or when the driver leaves.
        s.peer_left("b", t0 + 600 * MS);
        assert_eq!(speeds(&s), (0.0, 0.0));
        s.command("a", &wheels(0.1, 0.1), t0 + 601 * MS).unwrap();
        assert_eq!(s.state().driver.as_deref(), Some("a"));
    }

    #[test]
    fn a_viewer_leaving_does_not_stop_the_driver() {
        let t0 = Instant::now();
        let mut s = Safety::new(limits());
        s.command("a", &wheels(0.5, 0.5), t0).unwrap();
        s.peer_left("b", t0 + 10 * MS);
        s.tick(t0 + 20 * MS);
        assert_eq!(speeds(&s), (0.5, 0.5));
    }

    #[test]
    fn stop_from_any_peer_cuts_to_zero_at_once_and_releases_the_lease() {
        let t0 = Instant::now();
        let mut s = Safety::new(MotorLimits {
            ramp_per_s: 1.0,
            ..limits()
        });
        s.command("a", &wheels(1.0, 1.0), t0).unwrap();
        s.tick(t0 + 1000 * MS);
        assert_eq!(speeds(&s), (0.0, 0.0), "deadman meanwhile");
        s.command("a", &wheels(1.0, 1.0), t0 + 1000 * MS).unwrap();
        s.tick(t0 + 1400 * MS);
        assert!(
            approx(speeds(&s), (0.41, 0.41)),
            "ramped to {:?}",
            speeds(&s)
        );
        s.command("b", &Command::Stop, t0 + 1401 * MS).unwrap();
        assert_eq!(
            speeds(&s),
            (0.0, 0.0),
            "no ramp on the way down from a stop"
        );
        assert_eq!(s.state().driver, None, "the stop released the lease");
        assert_eq!(s.next_deadline(), None);
        // A peer that never drove takes the free lease at once; "a" must let go first.
        s.command("c", &wheels(0.2, 0.2), t0 + 1402 * MS).unwrap();
        assert_eq!(s.state().driver.as_deref(), Some("c"));
    }

    const LET_GO_AFTER_STOP: Refusal = Refusal::LetGo(Halted::Stop);

    /// `peer` repeats `drive(0.5, 0.5)` every 50 ms from `from` for a second; each is refused
    /// with `why` and the motors stay at 0.
    fn repeats_are_refused(s: &mut Safety, peer: &str, from: Instant, why: &Refusal) {
        for i in 0..20 {
            let at = from + i * 50 * MS;
            assert_eq!(
                s.command(peer, &wheels(0.5, 0.5), at).as_ref(),
                Err(why),
                "repeat {i}"
            );
            s.tick(at + 10 * MS);
            assert_eq!(speeds(s), (0.0, 0.0), "repeat {i} moved the motors");
            assert_eq!(s.state().driver, None, "repeat {i} took the lease");
        }
    }

    #[test]
    fn a_repeating_driver_cannot_undo_a_bystanders_stop_until_it_lets_go() {
        let t0 = Instant::now();
        let mut s = Safety::new(limits());
        for i in 0..4 {
            s.command("a", &wheels(0.5, 0.5), t0 + i * 50 * MS).unwrap();
        }
        s.command("b", &Command::Stop, t0 + 160 * MS).unwrap();
        assert_eq!(speeds(&s), (0.0, 0.0));
        repeats_are_refused(&mut s, "a", t0 + 200 * MS, &LET_GO_AFTER_STOP);
        assert_eq!(
            LET_GO_AFTER_STOP.to_string(),
            "a stop was sent (by you or another viewer): let go of the controls \
             (send a zero drive) before driving again"
        );
        // Letting go, then driving again, works at once.
        s.command("a", &wheels(0.0, 0.0), t0 + 1200 * MS).unwrap();
        s.command("a", &wheels(0.5, 0.5), t0 + 1250 * MS).unwrap();
        assert_eq!(speeds(&s), (0.5, 0.5));
        assert_eq!(s.state().driver.as_deref(), Some("a"));
        // A twist that mixes to nothing lets go too.
        s.command("a", &Command::Stop, t0 + 1300 * MS).unwrap();
        let still = Command::Drive(Drive::Twist {
            linear: 0.0,
            angular: 0.0,
        });
        s.command("a", &still, t0 + 1310 * MS).unwrap();
        s.command("a", &wheels(0.5, 0.5), t0 + 1320 * MS).unwrap();
        assert_eq!(speeds(&s), (0.5, 0.5));
    }

    #[test]
    fn its_own_stop_holds_the_driver_too() {
        let t0 = Instant::now();
        let mut s = Safety::new(limits());
        s.command("a", &wheels(0.5, 0.5), t0).unwrap();
        s.command("a", &Command::Stop, t0 + 10 * MS).unwrap();
        repeats_are_refused(&mut s, "a", t0 + 50 * MS, &LET_GO_AFTER_STOP);
    }

    #[test]
    fn every_peer_seen_driving_must_let_go_not_only_the_lease_holder() {
        let t0 = Instant::now();
        let mut s = Safety::new(limits());
        s.command("a", &wheels(0.5, 0.5), t0).unwrap();
        // "b" keeps trying while "a" holds the lease: refused, but seen driving.
        assert_eq!(
            s.command("b", &wheels(-0.5, -0.5), t0 + 10 * MS),
            Err(Refusal::NotDriver("a".into()))
        );
        s.command("c", &Command::Stop, t0 + 20 * MS).unwrap();
        // With the lease free, "b"'s repeats would otherwise take it and move.
        repeats_are_refused(&mut s, "b", t0 + 30 * MS, &LET_GO_AFTER_STOP);
        repeats_are_refused(&mut s, "a", t0 + 40 * MS, &LET_GO_AFTER_STOP);
        s.command("b", &wheels(0.0, 0.0), t0 + 1100 * MS).unwrap();
        s.command("b", &wheels(-0.5, -0.5), t0 + 1150 * MS).unwrap();
        assert_eq!(speeds(&s), (-0.5, -0.5));
    }

    #[test]
    fn a_peer_is_forgotten_when_it_leaves() {
        let t0 = Instant::now();
        let mut s = Safety::new(limits());
        s.command("a", &wheels(0.5, 0.5), t0).unwrap();
        s.command("b", &wheels(0.5, 0.5), t0 + 10 * MS).unwrap_err();
        s.command("b", &Command::Stop, t0 + 20 * MS).unwrap();
        assert_eq!(s.drivers.len(), 2);
        s.peer_left("a", t0 + 30 * MS);
        s.peer_left("b", t0 + 40 * MS);
        assert!(s.drivers.is_empty(), "{:?}", s.drivers);
        // Viewers that never drove are never remembered.
        s.command("v", &Command::Stop, t0 + 50 * MS).unwrap();
        s.command("v", &Command::Estop, t0 + 60 * MS).unwrap();
        assert!(s.drivers.is_empty(), "{:?}", s.drivers);
    }

    #[test]
    fn a_reset_does_not_set_a_repeating_driver_going_again() {
        let t0 = Instant::now();
        let mut s = Safety::new(limits());
        s.command("a", &wheels(0.5, 0.5), t0).unwrap();
        // "c" drove once long ago and let go; "d" drove and lets go during the latch.
        s.command("c", &wheels(0.5, 0.5), t0 + 10 * MS).unwrap_err();
        s.command("c", &wheels(0.0, 0.0), t0 + 20 * MS).unwrap_err();
        s.command("d", &wheels(0.5, 0.5), t0 + 30 * MS).unwrap_err();
        s.command("b", &Command::Estop, t0 + 40 * MS).unwrap();
        repeats_are_refused(&mut s, "a", t0 + 50 * MS, &Refusal::Estopped);
        assert_eq!(
            s.command("d", &wheels(0.0, 0.0), t0 + 60 * MS),
            Err(Refusal::Estopped)
        );
        s.command("b", &Command::Reset, t0 + 1100 * MS).unwrap();
        let after_reset = Refusal::LetGo(Halted::Estop);
        repeats_are_refused(&mut s, "a", t0 + 1110 * MS, &after_reset);
        // "c" let go before the e-stop, but not after: the e-stop holds it as well.
        assert_eq!(
            s.command("c", &wheels(0.5, 0.5), t0 + 2110 * MS),
            Err(after_reset.clone())
        );
        assert_eq!(
            after_reset.to_string(),
            "an emergency stop was sent (by you or another viewer) and has since been reset: \
             let go of the controls (send a zero drive) before driving again"
        );
        // A zero drive during the latch was refused, but it let go.
        s.command("d", &wheels(0.5, 0.5), t0 + 2120 * MS).unwrap();
        assert_eq!(speeds(&s), (0.5, 0.5));
        s.command("d", &wheels(0.0, 0.0), t0 + 2130 * MS).unwrap();
        s.command("a", &wheels(0.0, 0.0), t0 + 2140 * MS)
            .unwrap_err();
        s.tick(t0 + 2700 * MS);
        s.command("a", &wheels(0.5, 0.5), t0 + 2710 * MS).unwrap();
        assert_eq!(speeds(&s), (0.5, 0.5));
    }

    #[test]
    fn a_drive_held_through_an_estop_latch_holds_after_the_reset() {
        let t0 = Instant::now();
        let mut s = Safety::new(limits());
        s.command("b", &Command::Estop, t0).unwrap();
        // "e" first drives during the latch: unknown at the e-stop, it still holds.
        s.command("e", &wheels(0.5, 0.5), t0 + 10 * MS).unwrap_err();
        s.command("b", &Command::Reset, t0 + 20 * MS).unwrap();
        repeats_are_refused(&mut s, "e", t0 + 30 * MS, &Refusal::LetGo(Halted::Estop));
    }

    #[test]
    fn estop_latches_until_reset_and_refuses_every_drive_meanwhile() {
        let t0 = Instant::now();
        let mut s = Safety::new(limits());
        s.command("a", &wheels(1.0, 1.0), t0).unwrap();
        s.command("viewer", &Command::Estop, t0 + 10 * MS).unwrap();
        assert_eq!(speeds(&s), (0.0, 0.0));
        assert!(s.state().estop);
        assert_eq!(s.state().driver, None);
        for peer in ["a", "viewer"] {
            assert_eq!(
                s.command(peer, &wheels(1.0, 1.0), t0 + 20 * MS),
                Err(Refusal::Estopped)
            );
        }
        s.tick(t0 + 30 * MS);
        assert_eq!(speeds(&s), (0.0, 0.0));
        s.command("viewer", &Command::Reset, t0 + 40 * MS).unwrap();
        assert!(!s.state().estop);
        assert_eq!(speeds(&s), (0.0, 0.0), "reset alone moves nothing");
        // "a" drove before the e-stop: it lets go before driving again.
        s.command("a", &wheels(0.0, 0.0), t0 + 45 * MS).unwrap();
        s.command("a", &wheels(0.3, 0.3), t0 + 50 * MS).unwrap();
        s.tick(t0 + 60 * MS);
        assert_eq!(speeds(&s), (0.3, 0.3));
    }

    #[test]
    fn the_ramp_limits_how_fast_drive_commands_change_speed() {
        let t0 = Instant::now();
        let mut s = Safety::new(MotorLimits {
            ramp_per_s: 4.0,
            ..limits()
        });
        s.command("a", &wheels(1.0, -1.0), t0).unwrap();
        assert!(
            approx(speeds(&s), (0.04, -0.04)),
            "one 10 ms ramp step at once: {:?}",
            speeds(&s)
        );
        s.tick(t0 + 100 * MS);
        assert!(approx(speeds(&s), (0.44, -0.44)), "{:?}", speeds(&s));
        s.command("a", &wheels(1.0, -1.0), t0 + 200 * MS).unwrap();
        s.tick(t0 + 250 * MS);
        assert!(
            approx(speeds(&s), (1.0, -1.0)),
            "full speed after 250 ms: {:?}",
            speeds(&s)
        );
        // Releasing the stick (a zero drive) decelerates along the same ramp.
        s.command("a", &wheels(0.0, 0.0), t0 + 300 * MS).unwrap();
        s.tick(t0 + 400 * MS);
        assert!(approx(speeds(&s), (0.56, -0.56)), "{:?}", speeds(&s));
        s.tick(t0 + 600 * MS);
        assert_eq!(speeds(&s), (0.0, 0.0));
    }

    #[test]
    fn max_speed_trim_and_invert_shape_every_command() {
        let t0 = Instant::now();
        let mut s = Safety::new(MotorLimits {
            max_speed: 0.5,
            left: Wheel {
                invert: true,
                trim: 1.0,
            },
            right: Wheel {
                invert: false,
                trim: 0.8,
            },
            ..limits()
        });
        s.command("a", &wheels(1.0, 1.0), t0).unwrap();
        s.tick(t0 + 10 * MS);
        assert!(approx(speeds(&s), (-0.5, 0.4)), "{:?}", speeds(&s));
        s.command(
            "a",
            &Command::Drive(Drive::Twist {
                linear: 0.0,
                angular: 1.0,
            }),
            t0 + 20 * MS,
        )
        .unwrap();
        s.tick(t0 + 30 * MS);
        assert!(
            approx(speeds(&s), (0.5, 0.4)),
            "spin left: {:?}",
            speeds(&s)
        );
    }

    #[test]
    fn halt_stops_everything() {
        let t0 = Instant::now();
        let mut s = Safety::new(limits());
        s.command("a", &wheels(1.0, 1.0), t0).unwrap();
        s.tick(t0 + 10 * MS);
        s.halt();
        assert_eq!(speeds(&s), (0.0, 0.0));
        assert_eq!(s.state().driver, None);
    }

    #[test]
    fn ping_is_not_a_motor_command() {
        let mut s = Safety::new(limits());
        let ping = Command::Ping {
            t: serde_json::Number::from(1),
        };
        assert!(s.command("a", &ping, Instant::now()).is_err());
        assert_eq!(s.state().driver, None);
    }
}
