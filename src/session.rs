//! One data channel's session with a peer, as pure code: everything roverd decides about
//! a channel, and nothing about how its bytes travel.
//!
//! [`Session`] is told what happened (the channel opened, a message came, the motors
//! changed, a deadline passed), each time with the time as an argument, and answers with
//! what to send and which motor command to carry out. It checks each message in order:
//! the size limit (`limits.message_bytes`), the peer's rate (`limits.messages_per_s`, one
//! bucket for all of the peer's channels; over it only `stop` and `estop` pass), text and
//! UTF-8, the protocol ([`protocol::parse`]), the peer's [`Access`], and the order: a drive
//! whose `seq` is below the highest `seq` seen on the channel is stale and refused. It also
//! paces the `state` pushes. The shell (`rtc`'s data-channel adapter) moves the bytes,
//! passes commands to the motor task and sleeps until
//! [`Session::next_deadline`].

use crate::protocol::{self, Command, Outgoing};
use crate::ratelimit::{Bucket, Decision, SharedBucket};
use crate::safety::MotorState;
use std::time::{Duration, Instant};

/// What a peer's token lets it do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Watch and drive: the `http.token`, or anyone when no token is configured.
    Full,
    /// Watch only: the `http.viewer_token`. `stop` and `estop` are still obeyed, as from
    /// any peer, because stopping the robot must never need a permission.
    Viewer,
}

/// What one peer's data channels may do, and cost.
#[derive(Debug, Clone, Copy)]
pub struct ChannelPolicy {
    pub access: Access,
    pub deadman_ms: u64,
    /// `limits.message_bytes`.
    pub message_bytes: usize,
    /// `limits.messages_per_s`, also the burst a full bucket allows. One bucket per peer,
    /// whatever the number of its channels ([`ChannelPolicy::rate_bucket`]).
    pub messages_per_s: u32,
}

/// At most this many data channels per peer are served at once; a further one is closed.
/// The page and the seed clients open one; each channel costs a task and SCTP buffers.
pub const MAX_CHANNELS_PER_PEER: usize = 4;

impl ChannelPolicy {
    /// A full bucket for one peer's messages, to be shared by all of its channels.
    pub fn rate_bucket(&self, now: Instant) -> SharedBucket {
        SharedBucket::new(Bucket::new(
            self.messages_per_s,
            f64::from(self.messages_per_s),
            now,
        ))
    }
}

/// `state` messages are coalesced to at most 20 a second...
pub const STATE_MIN_INTERVAL: Duration = Duration::from_millis(50);
/// ...and sent at least twice a second, so the page knows the robot is alive.
pub const STATE_MAX_INTERVAL: Duration = Duration::from_millis(500);

/// What to do about one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Nothing to send (a refusal already said once during this flood).
    Nothing,
    /// Send this.
    Reply(Outgoing),
    /// Give this command to the motor task. Carried out, it needs no reply (the `state`
    /// push that follows is the answer); refused, [`Session::refused`] words the reply.
    Command(Order),
}

/// A motor command from the peer, checked and allowed by the session.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub command: Command,
    /// The message's `seq`, echoed in an error.
    pub seq: Option<i64>,
    /// False for a stop let through over the rate: a flood is not answered message by
    /// message, not even when the motor task refuses.
    answer_refusal: bool,
}

/// When the last `state` went out, and whether it said e-stop.
#[derive(Debug, Clone, Copy)]
struct Pushed {
    at: Instant,
    estop: bool,
}

/// One data channel's session. See the module documentation.
#[derive(Debug)]
pub struct Session {
    peer_id: String,
    policy: ChannelPolicy,
    rate: SharedBucket,
    open: bool,
    /// False once a push could not be sent or the motor task ended: no more `state`.
    pushing: bool,
    /// The motors as last told.
    latest: Option<MotorState>,
    last_push: Option<Pushed>,
    /// `latest` changed since `last_push` and waits for [`STATE_MIN_INTERVAL`] to pass.
    pending: bool,
    /// The highest `seq` of any message read on this channel.
    newest_seq: Option<i64>,
}

impl Session {
    /// A session for `peer_id`'s only channel, with a full rate bucket at `now`.
    pub fn new(peer_id: String, policy: ChannelPolicy, now: Instant) -> Self {
        let rate = policy.rate_bucket(now);
        Self::sharing(peer_id, policy, rate)
    }

    /// A session for one of `peer_id`'s channels, taking from the peer's `rate` bucket.
    pub fn sharing(peer_id: String, policy: ChannelPolicy, rate: SharedBucket) -> Self {
        Self {
            rate,
            peer_id,
            policy,
            open: false,
            pushing: true,
            latest: None,
            last_push: None,
            pending: false,
            newest_seq: None,
        }
    }

    /// The channel opened: `hello`, then the motors' state if it is known. The `state`
    /// pushes start here.
    pub fn on_open(&mut self, now: Instant) -> Vec<Outgoing> {
        let mut out = vec![Outgoing::Hello {
            id: self.peer_id.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            deadman_ms: self.policy.deadman_ms,
        }];
        if !self.open {
            self.open = true;
            if self.pushing {
                out.extend(self.push(now));
            }
        }
        out
    }

    /// One message from the peer, `is_text` when it came in a text frame.
    pub fn on_message(&mut self, now: Instant, bytes: &[u8], is_text: bool) -> Step {
        let rate = self.rate.take(now);
        let limit = self.policy.message_bytes;
        if bytes.len() > limit {
            log::warn!(
                "peer {}: refused a data-channel message of {} bytes (limits.message_bytes = {limit})",
                self.peer_id,
                bytes.len(),
            );
            return error(
                format!(
                    "message of {} bytes refused: at most {limit} bytes are allowed",
                    bytes.len()
                ),
                None,
            );
        }
        if let Decision::Refused { first, .. } = rate {
            // Over the rate, only a stop gets through: stopping must never be rate limited.
            // The refusal is said once per flood, so a flood is not answered by a flood.
            let text = std::str::from_utf8(bytes).unwrap_or("");
            if let Ok(incoming) = protocol::parse(text) {
                self.note_seq(incoming.seq);
                if matches!(incoming.command, Command::Stop | Command::Estop) {
                    return Step::Command(Order {
                        command: incoming.command,
                        seq: incoming.seq,
                        answer_refusal: false,
                    });
                }
            }
            if !first {
                return Step::Nothing;
            }
            let per_s = self.policy.messages_per_s;
            log::warn!(
                "peer {}: more than {per_s} data-channel messages a second (limits.messages_per_s); \
                 refusing all but stop and estop until it slows down",
                self.peer_id
            );
            return error(
                format!(
                    "too many messages: at most {per_s} a second are accepted (stop and estop always are); \
                     the rest are dropped until the rate falls"
                ),
                None,
            );
        }
        if !is_text {
            return error(
                "binary messages are not understood; send JSON text".into(),
                None,
            );
        }
        let Ok(text) = std::str::from_utf8(bytes) else {
            return error("message is not valid UTF-8".into(), None);
        };
        let incoming = match protocol::parse(text) {
            Ok(incoming) => incoming,
            Err(e) => return Step::Reply(e.into()),
        };
        let newest = self.note_seq(incoming.seq);
        match incoming.command {
            Command::Ping { t } => Step::Reply(Outgoing::Pong { t }),
            Command::Drive(_) | Command::Reset if self.policy.access == Access::Viewer => error(
                "this viewer's token can watch but not drive; open the page with the \
                 robot's full token (http.token) to drive"
                    .into(),
                incoming.seq,
            ),
            command => {
                if let (Command::Drive(_), Some(seq), Some(newest)) =
                    (&command, incoming.seq, newest)
                {
                    if seq < newest {
                        return error(
                            format!(
                                "drive with seq {seq} refused as stale: a message with seq {newest} \
                                 came before it on this channel; number messages in increasing order"
                            ),
                            incoming.seq,
                        );
                    }
                }
                Step::Command(Order {
                    command,
                    seq: incoming.seq,
                    answer_refusal: true,
                })
            }
        }
    }

    /// Records a message's `seq`; returns the highest one before it.
    fn note_seq(&mut self, seq: Option<i64>) -> Option<i64> {
        let before = self.newest_seq;
        self.newest_seq = before.max(seq);
        before
    }

    /// The reply when the motor task refused `order` for the reason `why`, if it gets one.
    pub fn refused(&self, order: &Order, why: &dyn std::fmt::Display) -> Option<Outgoing> {
        order.answer_refusal.then(|| Outgoing::Error {
            message: why.to_string(),
            seq: order.seq,
        })
    }

    /// The motors changed. Returns the `state` to push now, or `None` when it waits:
    /// a change within [`STATE_MIN_INTERVAL`] of the last push is coalesced (a ramp changes
    /// the speeds 100 times a second) and goes out at [`Session::next_deadline`], except a
    /// stop (both speeds 0) or an e-stop change, which goes out at once.
    pub fn on_state(&mut self, now: Instant, state: &MotorState) -> Option<Outgoing> {
        self.latest = Some(state.clone());
        if !self.open || !self.pushing {
            return None;
        }
        let Some(last) = self.last_push else {
            return self.push(now);
        };
        let urgent = (state.left == 0.0 && state.right == 0.0) || state.estop != last.estop;
        if urgent || now >= last.at + STATE_MIN_INTERVAL {
            return self.push(now);
        }
        self.pending = true;
        None
    }

    /// When [`Session::on_timeout`] has something to send: a coalesced `state`, or the
    /// keep-alive [`STATE_MAX_INTERVAL`] after the last push. `None`: nothing to wait for.
    pub fn next_deadline(&self) -> Option<Instant> {
        if !self.open || !self.pushing {
            return None;
        }
        let last = self.last_push?;
        Some(
            last.at
                + if self.pending {
                    STATE_MIN_INTERVAL
                } else {
                    STATE_MAX_INTERVAL
                },
        )
    }

    /// The `state` due at `now`, if any (see [`Session::next_deadline`]).
    pub fn on_timeout(&mut self, now: Instant) -> Option<Outgoing> {
        if now < self.next_deadline()? {
            return None;
        }
        self.push(now)
    }

    /// No more `state` pushes: the channel refused one, or the motor task has ended.
    pub fn stop_pushing(&mut self) {
        self.pushing = false;
        self.pending = false;
    }

    /// The latest state as this peer sees it, now marked as pushed.
    fn push(&mut self, now: Instant) -> Option<Outgoing> {
        let state = self.latest.as_ref()?;
        self.last_push = Some(Pushed {
            at: now,
            estop: state.estop,
        });
        self.pending = false;
        Some(Outgoing::State {
            left: state.left,
            right: state.right,
            estop: state.estop,
            driver: state.driver.as_deref() == Some(self.peer_id.as_str()),
        })
    }
}

fn error(message: String, seq: Option<i64>) -> Step {
    Step::Reply(Outgoing::Error { message, seq })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Drive;

    const MS: Duration = Duration::from_millis(1);

    fn policy(access: Access) -> ChannelPolicy {
        ChannelPolicy {
            access,
            deadman_ms: 500,
            message_bytes: 256,
            messages_per_s: 3,
        }
    }

    fn session(access: Access) -> (Session, Instant) {
        let t0 = Instant::now();
        (Session::new("p1".into(), policy(access), t0), t0)
    }

    fn motors(left: f64, right: f64, estop: bool, driver: Option<&str>) -> MotorState {
        MotorState {
            left,
            right,
            estop,
            driver: driver.map(str::to_owned),
        }
    }

    fn state(left: f64, right: f64, estop: bool, driver: bool) -> Outgoing {
        Outgoing::State {
            left,
            right,
            estop,
            driver,
        }
    }

    fn text(s: &mut Session, now: Instant, msg: &str) -> Step {
        s.on_message(now, msg.as_bytes(), true)
    }

    fn error_message(step: Step) -> (String, Option<i64>) {
        match step {
            Step::Reply(Outgoing::Error { message, seq }) => (message, seq),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    fn command(step: Step) -> Order {
        match step {
            Step::Command(order) => order,
            other => panic!("expected a command, got {other:?}"),
        }
    }

    fn pong(t: u32) -> Step {
        Step::Reply(Outgoing::Pong { t: t.into() })
    }

    fn ping(t: u32) -> String {
        format!(r#"{{"type":"ping","t":{t}}}"#)
    }

    #[test]
    fn open_says_hello_then_the_state_it_knows() {
        let (mut s, t0) = session(Access::Full);
        assert_eq!(s.on_state(t0, &motors(0.5, 0.5, false, Some("p1"))), None);
        assert_eq!(
            s.next_deadline(),
            None,
            "nothing is pushed before the channel opens"
        );
        assert_eq!(
            s.on_open(t0 + MS),
            vec![
                Outgoing::Hello {
                    id: "p1".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    deadman_ms: 500,
                },
                state(0.5, 0.5, false, true),
            ]
        );
        assert_eq!(s.next_deadline(), Some(t0 + MS + STATE_MAX_INTERVAL));
        // Without a known state, the first one goes out when it comes.
        let (mut s, t0) = session(Access::Full);
        assert_eq!(s.on_open(t0).len(), 1);
        assert_eq!(s.next_deadline(), None);
        assert_eq!(
            s.on_state(t0 + MS, &motors(0.0, 0.0, false, Some("p2"))),
            Some(state(0.0, 0.0, false, false))
        );
    }

    #[test]
    fn messages_over_the_size_limit_are_refused_unread() {
        let (mut s, t0) = session(Access::Full);
        let big = format!(r#"{{"type":"stop","pad":"{}"}}"#, "x".repeat(300));
        let (message, seq) = error_message(text(&mut s, t0, &big));
        assert_eq!(
            message,
            format!(
                "message of {} bytes refused: at most 256 bytes are allowed",
                big.len()
            )
        );
        assert_eq!(seq, None);
        // Exactly at the limit is read.
        let empty = r#"{"type":"stop","pad":""}"#;
        let padded = format!(
            r#"{{"type":"stop","pad":"{}"}}"#,
            "x".repeat(256 - empty.len())
        );
        assert_eq!(padded.len(), 256);
        assert_eq!(command(text(&mut s, t0, &padded)).command, Command::Stop);
    }

    #[test]
    fn binary_and_invalid_utf8_and_malformed_messages_are_refused() {
        let (mut s, t0) = session(Access::Full);
        let (message, _) = error_message(s.on_message(t0, br#"{"type":"stop"}"#, false));
        assert_eq!(
            message,
            "binary messages are not understood; send JSON text"
        );
        let (message, _) = error_message(s.on_message(t0, b"\xff\xfe", true));
        assert_eq!(message, "message is not valid UTF-8");
        let (message, seq) = error_message(text(&mut s, t0, r#"{"type":"fly","seq":4}"#));
        assert!(message.contains("unknown message type"), "{message}");
        assert_eq!(seq, Some(4));
    }

    #[test]
    fn ping_is_answered_with_pong() {
        let (mut s, t0) = session(Access::Viewer);
        assert_eq!(text(&mut s, t0, &ping(17)), pong(17));
    }

    #[test]
    fn commands_go_to_the_motor_task_and_their_refusal_is_worded_here() {
        let (mut s, t0) = session(Access::Full);
        let order = command(text(
            &mut s,
            t0,
            r#"{"type":"drive","left":0.5,"right":0.5,"seq":7}"#,
        ));
        assert_eq!(
            order.command,
            Command::Drive(Drive::Wheels {
                left: 0.5,
                right: 0.5
            })
        );
        assert_eq!(order.seq, Some(7));
        assert_eq!(
            s.refused(&order, &"emergency stop is latched"),
            Some(Outgoing::Error {
                message: "emergency stop is latched".into(),
                seq: Some(7)
            })
        );
    }

    fn drive(seq: Option<i64>) -> String {
        match seq {
            Some(seq) => format!(r#"{{"type":"drive","left":0.5,"right":0.5,"seq":{seq}}}"#),
            None => r#"{"type":"drive","left":0.5,"right":0.5}"#.to_owned(),
        }
    }

    #[test]
    fn a_drive_older_than_a_seq_already_seen_on_the_channel_is_refused_as_stale() {
        let (mut s, t0) = session(Access::Full);
        // One message per 400 ms, well within the rate (3 a second).
        let mut at = (1..).map(|i| t0 + i * 400 * MS);
        let mut t = || at.next().unwrap_or(t0);
        command(text(&mut s, t(), &drive(Some(5))));
        command(text(&mut s, t(), &drive(Some(7))));
        let (message, seq) = error_message(text(&mut s, t(), &drive(Some(6))));
        assert_eq!(
            message,
            "drive with seq 6 refused as stale: a message with seq 7 came before it on this \
             channel; number messages in increasing order"
        );
        assert_eq!(seq, Some(6));
        // The same seq again is not older, and a drive without seq is never stale.
        command(text(&mut s, t(), &drive(Some(7))));
        command(text(&mut s, t(), &drive(None)));
        // Every message's seq counts, and a stop is obeyed whatever its seq.
        assert_eq!(
            text(&mut s, t(), r#"{"type":"ping","t":1,"seq":9}"#),
            pong(1)
        );
        let stop = command(text(&mut s, t(), r#"{"type":"stop","seq":2}"#));
        assert_eq!(stop.command, Command::Stop);
        let (message, seq) = error_message(text(&mut s, t(), &drive(Some(8))));
        assert!(message.contains("seq 8 refused as stale") && message.contains("seq 9"));
        assert_eq!(seq, Some(8));
        // Another channel (a new session) starts afresh.
        let (mut other, t0) = session(Access::Full);
        command(text(&mut other, t0, &drive(Some(1))));
    }

    #[test]
    fn a_stop_let_through_a_flood_counts_for_the_order_too() {
        let (mut s, t0) = session(Access::Full);
        for t in 0..4 {
            text(&mut s, t0, &ping(t));
        }
        command(text(&mut s, t0, r#"{"type":"stop","seq":30}"#));
        let t1 = t0 + Duration::from_secs(1);
        let (message, seq) = error_message(text(&mut s, t1, &drive(Some(29))));
        assert!(message.contains("seq 30"), "{message}");
        assert_eq!(seq, Some(29));
    }

    #[test]
    fn a_viewer_cannot_drive_or_reset_but_can_stop() {
        let (mut s, t0) = session(Access::Viewer);
        for msg in [
            r#"{"type":"drive","left":1,"right":1,"seq":2}"#,
            r#"{"type":"reset","seq":2}"#,
        ] {
            let (message, seq) = error_message(text(&mut s, t0, msg));
            assert_eq!(
                message,
                "this viewer's token can watch but not drive; open the page with the robot's \
                 full token (http.token) to drive"
            );
            assert_eq!(seq, Some(2));
        }
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            command(text(&mut s, t1, r#"{"type":"stop"}"#)).command,
            Command::Stop
        );
        assert_eq!(
            command(text(&mut s, t1, r#"{"type":"estop"}"#)).command,
            Command::Estop
        );
    }

    #[test]
    fn over_the_rate_only_stop_and_estop_pass_and_the_refusal_is_said_once_per_flood() {
        let (mut s, t0) = session(Access::Full);
        for t in 0..3 {
            assert_eq!(text(&mut s, t0, &ping(t)), pong(t));
        }
        let (message, seq) = error_message(text(&mut s, t0, &ping(3)));
        assert_eq!(
            message,
            "too many messages: at most 3 a second are accepted (stop and estop always are); \
             the rest are dropped until the rate falls"
        );
        assert_eq!(seq, None);
        assert_eq!(text(&mut s, t0, &ping(4)), Step::Nothing);
        let drive = r#"{"type":"drive","left":1,"right":1}"#;
        assert_eq!(text(&mut s, t0, drive), Step::Nothing);
        let stop = command(text(&mut s, t0, r#"{"type":"stop","seq":5}"#));
        assert_eq!(stop.command, Command::Stop);
        // A stop let through a flood is not answered, even when refused.
        assert_eq!(s.refused(&stop, &"motor control has stopped"), None);
        // Even in a binary frame.
        let estop = command(s.on_message(t0, br#"{"type":"estop"}"#, false));
        assert_eq!(estop.command, Command::Estop);
        assert_eq!(text(&mut s, t0, &ping(6)), Step::Nothing);
        // A third of a second later a token is back...
        let t1 = t0 + Duration::from_millis(334);
        assert_eq!(text(&mut s, t1, &ping(7)), pong(7));
        // ...and the next flood is told once again.
        let (message, _) = error_message(text(&mut s, t1, &ping(8)));
        assert!(message.starts_with("too many messages"), "{message}");
        assert_eq!(text(&mut s, t1, &ping(9)), Step::Nothing);
    }

    #[test]
    fn changes_within_50_ms_of_a_push_are_coalesced() {
        let (mut s, t0) = session(Access::Full);
        s.on_state(t0, &motors(0.0, 0.0, false, None));
        assert_eq!(s.on_open(t0).len(), 2);
        assert_eq!(
            s.on_state(t0 + 10 * MS, &motors(0.1, 0.1, false, Some("p1"))),
            None
        );
        assert_eq!(
            s.on_state(t0 + 20 * MS, &motors(0.2, 0.2, false, Some("p1"))),
            None
        );
        assert_eq!(s.next_deadline(), Some(t0 + 50 * MS));
        assert_eq!(s.on_timeout(t0 + 49 * MS), None);
        // The latest of them goes out when the interval is up.
        assert_eq!(
            s.on_timeout(t0 + 50 * MS),
            Some(state(0.2, 0.2, false, true))
        );
        assert_eq!(s.next_deadline(), Some(t0 + 550 * MS));
        // A change after the interval goes out at once.
        assert_eq!(
            s.on_state(t0 + 120 * MS, &motors(0.3, 0.3, false, Some("p1"))),
            Some(state(0.3, 0.3, false, true))
        );
    }

    #[test]
    fn a_stop_or_an_estop_change_goes_out_at_once() {
        let (mut s, t0) = session(Access::Full);
        s.on_state(t0, &motors(0.5, 0.5, false, Some("p1")));
        s.on_open(t0);
        assert_eq!(
            s.on_state(t0 + MS, &motors(0.6, 0.6, false, Some("p1"))),
            None
        );
        assert_eq!(
            s.on_state(t0 + 2 * MS, &motors(0.0, 0.0, false, Some("p1"))),
            Some(state(0.0, 0.0, false, true))
        );
        assert_eq!(s.next_deadline(), Some(t0 + 2 * MS + STATE_MAX_INTERVAL));
        assert_eq!(
            s.on_state(t0 + 3 * MS, &motors(0.1, 0.0, false, None)),
            None
        );
        assert_eq!(
            s.on_state(t0 + 4 * MS, &motors(0.1, 0.0, true, None)),
            Some(state(0.1, 0.0, true, false))
        );
        // Only a change of the e-stop is urgent.
        assert_eq!(s.on_state(t0 + 5 * MS, &motors(0.2, 0.0, true, None)), None);
        assert_eq!(
            s.on_state(t0 + 6 * MS, &motors(0.2, 0.0, false, None)),
            Some(state(0.2, 0.0, false, false))
        );
    }

    #[test]
    fn the_state_is_pushed_at_least_every_500_ms() {
        let (mut s, t0) = session(Access::Full);
        s.on_state(t0, &motors(0.0, 0.0, false, None));
        s.on_open(t0);
        let mut last = t0;
        for _ in 0..3 {
            let due = s.next_deadline().expect("a keep-alive is due");
            assert_eq!(due, last + STATE_MAX_INTERVAL);
            assert_eq!(s.on_timeout(due - MS), None);
            assert_eq!(s.on_timeout(due), Some(state(0.0, 0.0, false, false)));
            last = due;
        }
    }

    #[test]
    fn no_pushes_once_pushing_stopped() {
        let (mut s, t0) = session(Access::Full);
        s.on_state(t0, &motors(0.0, 0.0, false, None));
        s.on_open(t0);
        s.on_state(t0 + MS, &motors(0.5, 0.5, false, None));
        s.stop_pushing();
        assert_eq!(s.next_deadline(), None);
        assert_eq!(s.on_timeout(t0 + Duration::from_secs(1)), None);
        assert_eq!(
            s.on_state(t0 + Duration::from_secs(2), &motors(0.0, 0.0, false, None)),
            None
        );
        // Messages are still answered.
        assert_eq!(text(&mut s, t0, &ping(1)), pong(1));
    }
}
