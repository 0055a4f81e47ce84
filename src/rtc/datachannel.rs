//! The webrtc-rs data-channel adapter: moves one channel's bytes to and from its
//! [`Session`], which decides everything else, and hands the motor commands it allows to
//! [`Control`].

use crate::control::Control;
use crate::protocol::Outgoing;
use crate::ratelimit::SharedBucket;
use crate::session::{ChannelPolicy, Session, Step};
use std::sync::Arc;
use std::time::Instant;
use webrtc::data_channel::{DataChannel, DataChannelEvent};

/// Runs one data channel: `hello` on open, then every message through the [`Session`]:
/// `ping` answered with `pong`, motor commands to [`Control`], anything refused answered
/// with `error`. `state` goes out on every change (coalesced) and at least twice a second.
/// `rate` is the peer's message bucket, shared by all of its channels.
///
/// However this task ends (the channel closes, the peer is dropped and the task aborted),
/// its guard tells the motor task that this peer has left: a driver's motors stop. The
/// `state` pushes are part of this task, so they end with it.
pub async fn serve_data_channel(
    dc: Arc<dyn DataChannel>,
    peer_id: String,
    control: Control,
    policy: ChannelPolicy,
    rate: SharedBucket,
) {
    let _leave = LeaveOnDrop(control.clone(), peer_id.clone());
    let mut session = Session::sharing(peer_id.clone(), policy, rate);
    let mut states = control.subscribe();
    let first = states.borrow_and_update().clone();
    // Before the channel opens this only tells the session the state; `on_open` sends it.
    let _ = session.on_state(now(), &first);
    let mut motors_running = true;
    // Kept across wake-ups, so an event is never lost to another branch of the select.
    let mut event = dc.poll();
    loop {
        let deadline = session.next_deadline();
        let wake = tokio::select! {
            e = &mut event => Wake::Event(e),
            changed = states.changed(), if motors_running => Wake::State(changed.is_ok()),
            () = sleep_until(deadline), if deadline.is_some() => Wake::Deadline,
        };
        match wake {
            Wake::Event(e) => {
                event = dc.poll();
                match e {
                    None | Some(DataChannelEvent::OnClose) => break,
                    Some(DataChannelEvent::OnOpen) => {
                        for msg in session.on_open(now()) {
                            deliver(&dc, &mut session, &msg).await;
                        }
                    }
                    Some(DataChannelEvent::OnMessage(msg)) => {
                        match session.on_message(now(), &msg.data, msg.is_string) {
                            Step::Nothing => {}
                            Step::Reply(reply) => deliver(&dc, &mut session, &reply).await,
                            Step::Command(order) => {
                                if let Err(e) =
                                    control.command(&peer_id, order.command.clone()).await
                                {
                                    if let Some(reply) = session.refused(&order, &e) {
                                        deliver(&dc, &mut session, &reply).await;
                                    }
                                }
                            }
                        }
                    }
                    Some(_) => {}
                }
            }
            Wake::State(true) => {
                let state = states.borrow_and_update().clone();
                if let Some(msg) = session.on_state(now(), &state) {
                    deliver(&dc, &mut session, &msg).await;
                }
            }
            Wake::State(false) => {
                // The motor task has ended (shutdown): there is no state left to push.
                motors_running = false;
                session.stop_pushing();
            }
            Wake::Deadline => {
                if let Some(msg) = session.on_timeout(now()) {
                    deliver(&dc, &mut session, &msg).await;
                }
            }
        }
    }
    log::debug!("data channel of peer {peer_id} closed");
}

/// What woke the data-channel task.
enum Wake {
    Event(Option<DataChannelEvent>),
    /// The motor state changed (`true`), or the motor task ended (`false`).
    State(bool),
    Deadline,
}

/// Tells the motor task that the peer has left when the data-channel task ends, however
/// it ends.
struct LeaveOnDrop(Control, String);

impl Drop for LeaveOnDrop {
    fn drop(&mut self) {
        self.0.peer_left(&self.1);
    }
}

/// Sends `msg`; a `state` the channel refuses ends the `state` pushes.
async fn deliver(dc: &Arc<dyn DataChannel>, session: &mut Session, msg: &Outgoing) {
    if let Err(e) = dc.send_text(&msg.to_json()).await {
        log::debug!("data channel send failed: {e}");
        if matches!(msg, Outgoing::State { .. }) {
            session.stop_pushing();
        }
    }
}

/// The time as tokio sees it, so that tests with a paused clock run in virtual time.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
    }
}
