//! Who is connected. [`Peers`] owns every peer's connection and tasks, hands out ids,
//! enforces `http.max_peers`, and is the one place a peer is closed and forgotten.
//!
//! Each peer has a supervisor task ([`supervise`]) that follows its connection state:
//! media starts when it connects, and everything is torn down when it fails, closes,
//! or never connects at all. A client's close reaches webrtc-rs as a DTLS `close_notify`
//! (or an SCTP ABORT) that closes the data channels but leaves the connection's state as
//! it was, so the supervisor also ends the peer when its last data channel closes: the
//! place is free within moments, not after the ICE timeouts. (The page makes a new
//! connection when its channel closes, so a peer without its channel is of no use.)

use crate::control::Control;
use crate::media::Media;
use crate::rtc::{ChannelPolicy, PeerEvent, RtcPeer};
use crate::session::MAX_CHANNELS_PER_PEER;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::AbortHandle;
use webrtc::data_channel::DataChannel;
use webrtc::peer_connection::{PeerConnection, RTCPeerConnectionState};

/// How long a peer may take, and what its data channels may do.
#[derive(Debug, Clone, Copy)]
pub struct PeerPolicy {
    pub channel: ChannelPolicy,
    /// `limits.connect_timeout_s`: a peer not connected this long after its answer is dropped.
    pub connect_timeout: Duration,
    /// `limits.idle_timeout_s`: a peer disconnected this long is dropped. The page itself
    /// gives up on a disconnected connection after 3 s and makes a new one, so waiting
    /// longer only holds a viewer slot.
    pub idle_timeout: Duration,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PeerStatus {
    pub id: String,
    pub state: String,
    pub driver: bool,
}

pub struct PeerEntry {
    pub id: String,
    /// Handed to whoever made the offer (the answer's `Location`), and nobody else: it lets
    /// that client close this one peer whatever its token (`DELETE ...?secret=`).
    secret: String,
    pc: Arc<dyn PeerConnection>,
    state: Mutex<RTCPeerConnectionState>,
    tasks: Mutex<Vec<AbortHandle>>,
    closed: AtomicBool,
    /// Tells the supervisor that the peer was closed from outside (`DELETE`, shutdown).
    /// It cannot learn that from the connection: `pc.close()` stops webrtc-rs's driver
    /// before it delivers the `closed` state, and the event sender lives in the handler
    /// that the connection itself holds, so `events.recv()` would wait for ever, holding
    /// the whole connection (about 300 KiB) with it.
    stop: tokio::sync::Notify,
}

impl PeerEntry {
    fn add_task(&self, handle: AbortHandle) {
        if self.closed.load(Ordering::Acquire) {
            handle.abort();
        } else {
            crate::sync::lock(&self.tasks).push(handle);
        }
    }

    /// Stops the peer's tasks and closes its connection. Idempotent.
    async fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        for task in crate::sync::lock(&self.tasks).drain(..) {
            task.abort();
        }
        if let Err(e) = self.pc.close().await {
            log::debug!("closing peer {}: {e}", self.id);
        }
        // A stored permit if the supervisor is not waiting right now, so it is not lost.
        self.stop.notify_one();
    }
}

#[derive(Default)]
struct Table {
    peers: HashMap<String, Arc<PeerEntry>>,
    /// Slots taken by offers still being answered, so concurrent offers cannot overshoot.
    reserved: usize,
}

pub struct Peers {
    table: Mutex<Table>,
    max: usize,
    next_id: AtomicU64,
    /// The ids and secrets of the last [`GONE_KEPT`] peers forgotten, newest last: a
    /// client's `DELETE` that arrives after its closing connection already freed the place
    /// (the page sends both at once) is answered `204`, as a `DELETE` done twice is.
    gone: Mutex<std::collections::VecDeque<(String, String)>>,
}

/// How many forgotten peers [`Peers`] remembers for a late `DELETE`.
const GONE_KEPT: usize = 64;

/// A held place for one more peer; given back when dropped unless a peer filled it.
pub struct Slot<'a> {
    peers: &'a Peers,
    used: bool,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if !self.used {
            self.peers.table().reserved -= 1;
        }
    }
}

impl Peers {
    pub fn new(max: usize) -> Self {
        Self {
            table: Mutex::new(Table::default()),
            max,
            next_id: AtomicU64::new(1),
            gone: Mutex::new(std::collections::VecDeque::new()),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        crate::sync::lock(&self.table)
    }

    /// A place for a new peer, or `None` when `max_peers` are connected or connecting.
    pub fn reserve(&self) -> Option<Slot<'_>> {
        let mut t = self.table();
        if t.peers.len() + t.reserved >= self.max {
            return None;
        }
        t.reserved += 1;
        Some(Slot {
            peers: self,
            used: false,
        })
    }

    /// Registers a negotiated peer in `slot` and starts its supervisor. Returns its id and
    /// its secret.
    pub fn admit(
        self: &Arc<Self>,
        mut slot: Slot<'_>,
        peer: RtcPeer,
        media: Arc<Media>,
        control: Control,
        policy: PeerPolicy,
    ) -> (String, String) {
        let id = format!("p{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let secret: [u8; 16] = rand::random();
        let secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let entry = Arc::new(PeerEntry {
            id: id.clone(),
            secret: secret.clone(),
            pc: Arc::clone(&peer.pc),
            state: Mutex::new(RTCPeerConnectionState::New),
            tasks: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            stop: tokio::sync::Notify::new(),
        });
        {
            let mut t = self.table();
            t.reserved -= 1;
            t.peers.insert(id.clone(), Arc::clone(&entry));
        }
        slot.used = true;
        tokio::spawn(supervise(
            Arc::clone(self),
            entry,
            peer,
            media,
            control,
            policy,
        ));
        (id, secret)
    }

    /// Whether `secret` is the secret of peer `id`, connected or among the last forgotten
    /// (compared in constant time). `None` when no such peer is known.
    pub fn secret_matches(&self, id: &str, secret: &str) -> Option<bool> {
        use subtle::ConstantTimeEq;
        let matches = |known: &str| bool::from(known.as_bytes().ct_eq(secret.as_bytes()));
        if let Some(entry) = self.table().peers.get(id) {
            return Some(matches(&entry.secret));
        }
        crate::sync::lock(&self.gone)
            .iter()
            .find(|(gone, _)| gone == id)
            .map(|(_, known)| matches(known))
    }

    /// Whether peer `id` is among the last forgotten.
    pub fn recently_gone(&self, id: &str) -> bool {
        crate::sync::lock(&self.gone)
            .iter()
            .any(|(gone, _)| gone == id)
    }

    /// Forgets `entry`, remembering its id and secret for a late `DELETE`.
    fn forget(&self, entry: &PeerEntry) {
        let mut gone = crate::sync::lock(&self.gone);
        if gone.len() >= GONE_KEPT {
            gone.pop_front();
        }
        gone.push_back((entry.id.clone(), entry.secret.clone()));
    }

    pub fn len(&self) -> usize {
        self.table().peers.len()
    }

    /// Every peer, with `driver` set for the one whose id is `driver`.
    pub fn list(&self, driver: Option<&str>) -> Vec<PeerStatus> {
        let mut list: Vec<PeerStatus> = self
            .table()
            .peers
            .values()
            .map(|p| PeerStatus {
                id: p.id.clone(),
                state: crate::sync::lock(&p.state).to_string(),
                driver: driver == Some(p.id.as_str()),
            })
            .collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        list
    }

    /// Closes and forgets one peer. `false` when no peer has that id.
    pub async fn close(&self, id: &str) -> bool {
        let entry = self.table().peers.remove(id);
        match entry {
            Some(entry) => {
                self.forget(&entry);
                log::info!("peer {id} closed on request");
                entry.close().await;
                true
            }
            None => false,
        }
    }

    pub async fn close_all(&self) {
        let all: Vec<_> = self.table().peers.drain().map(|(_, p)| p).collect();
        for peer in all {
            peer.close().await;
        }
    }
}

/// Closes a data channel beyond [`MAX_CHANNELS_PER_PEER`]: the first refusal is logged as
/// a warning, the rest (a peer opening channels in a loop) at debug level.
async fn refuse_channel(id: &str, dc: Arc<dyn DataChannel>, refused: u64) {
    if refused == 1 {
        log::warn!(
            "peer {id} opened more than {MAX_CHANNELS_PER_PEER} data channels; closing the extra ones \
             (one channel is all the page and the usual clients need)"
        );
    } else {
        log::debug!("peer {id}: closed extra data channel number {refused}");
    }
    if let Err(e) = dc.close().await {
        log::debug!("peer {id}: closing an extra data channel: {e}");
    }
}

async fn supervise(
    peers: Arc<Peers>,
    entry: Arc<PeerEntry>,
    mut peer: RtcPeer,
    media: Arc<Media>,
    control: Control,
    policy: PeerPolicy,
) {
    let id = entry.id.clone();
    let connect_deadline = tokio::time::sleep(policy.connect_timeout);
    tokio::pin!(connect_deadline);
    let mut connected = false;
    let mut lost: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    // One message bucket for all of the peer's channels; at most MAX_CHANNELS_PER_PEER of
    // them served at once.
    let rate = policy
        .channel
        .rate_bucket(tokio::time::Instant::now().into_std());
    let mut channels: usize = 0;
    let mut refused_channels: u64 = 0;
    // A served channel that closes says so here (the client closed it, or its connection).
    let (channel_ended_tx, mut channel_ended) = tokio::sync::mpsc::unbounded_channel::<()>();
    loop {
        tokio::select! {
            event = peer.events.recv() => match event {
                Some(PeerEvent::State(state)) => {
                    *crate::sync::lock(&entry.state) = state;
                    log::info!("peer {id}: {state}");
                    match state {
                        RTCPeerConnectionState::Connected if !connected => {
                            connected = true;
                            for task in peer.start_media(&media).await {
                                entry.add_task(task.abort_handle());
                            }
                        }
                        RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => break,
                        RTCPeerConnectionState::Disconnected => {
                            // Control is lost the moment the link is: stop now, not at the
                            // deadman, and not when the peer is finally dropped.
                            control.peer_left(&id);
                            lost = Some(Box::pin(tokio::time::sleep(policy.idle_timeout)));
                        }
                        _ => lost = None,
                    }
                }
                Some(PeerEvent::DataChannel(dc)) => {
                    if channels >= MAX_CHANNELS_PER_PEER {
                        refused_channels += 1;
                        refuse_channel(&id, dc, refused_channels).await;
                        continue;
                    }
                    channels += 1;
                    let serve = crate::rtc::serve_data_channel(
                        dc,
                        id.clone(),
                        control.clone(),
                        policy.channel,
                        rate.clone(),
                    );
                    let ended = channel_ended_tx.clone();
                    let task = tokio::spawn(async move {
                        serve.await;
                        let _ = ended.send(());
                    });
                    entry.add_task(task.abort_handle());
                }
                None => break,
            },
            Some(()) = channel_ended.recv() => {
                channels = channels.saturating_sub(1);
                // A client that closes its connection sends a DTLS close_notify (or an SCTP
                // ABORT): webrtc-rs closes every data channel then, and says nothing else.
                if channels == 0 {
                    log::info!("peer {id} closed its connection");
                    break;
                }
            }
            () = async { if let Some(l) = lost.as_mut() { l.await } }, if lost.is_some() => {
                log::info!(
                    "peer {id}: no packets for {} s; dropping it",
                    (crate::rtc::ICE_DISCONNECTED_AFTER + policy.idle_timeout).as_secs()
                );
                break;
            }
            () = entry.stop.notified() => {
                log::debug!("peer {id}: closed by roverd");
                break;
            }
            () = &mut connect_deadline, if !connected => {
                log::warn!(
                    "peer {id} did not connect within {} s; dropping it (is UDP blocked between the browser and the robot?)",
                    policy.connect_timeout.as_secs()
                );
                break;
            }
        }
    }
    control.peer_left(&id);
    if peers.table().peers.remove(&id).is_some() {
        peers.forget(&entry);
    }
    entry.close().await;
    log::info!("peer {id} gone; {} connected", peers.len());
}
