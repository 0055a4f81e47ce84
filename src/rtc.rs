//! roverd's only contact with the `webrtc` crate: answering an offer with a peer that
//! sends the shared H.264 and Opus streams and speaks the data-channel protocol.
//!
//! webrtc-rs changes its API between releases; keeping every call to it in this
//! file means an upgrade touches one module. Each peer gets its own tracks, but not its
//! own encoding: the pumps here copy already-packetized payloads from the media fan-out
//! into RTP packets, so a viewer costs a header and SRTP, not an encoder.

use crate::control::Control;
use crate::media::audio::AudioPacket;
use crate::media::fanout::{Next, Subscriber};
use crate::media::video::VideoFrame;
use crate::media::Media;
use crate::protocol::{Command, Outgoing};
use crate::ratelimit::{Bucket, Decision};
use crate::safety::MotorState;
use rtc::interceptor::{
    Attribute, Interceptor, Packet as InterceptorPacket, Slot, StreamInfo, TaggedPacket,
};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_H264, MIME_TYPE_OPUS};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::sansio::Protocol;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use webrtc::data_channel::{DataChannel, DataChannelEvent, RTCDataChannelMessage};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceGatheringState,
    RTCPeerConnectionState, RTCSessionDescription, Registry, SettingEngineBuilder,
};
use webrtc::rtp_transceiver::RtpSender;

/// How long an answer waits for its own ICE candidates. Host candidates on a LAN take
/// milliseconds; this only bounds a pathological case.
const GATHER_TIMEOUT: Duration = Duration::from_secs(2);

/// Silence from a peer for this long makes its connection "disconnected".
pub const ICE_DISCONNECTED_AFTER: Duration = Duration::from_secs(3);

/// Errors while answering an offer. Each maps to an HTTP status in `http`.
#[derive(Debug, thiserror::Error)]
pub enum RtcError {
    #[error("the offer is not a valid SDP offer: {0}")]
    BadOffer(String),
    #[error("could not set up the WebRTC connection: {0}")]
    Setup(String),
}

fn setup<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> RtcError {
    move |e| RtcError::Setup(format!("{what}: {e}"))
}

/// Events from webrtc-rs's callbacks, delivered to the task that owns the peer.
#[derive(Clone)]
pub enum PeerEvent {
    State(RTCPeerConnectionState),
    DataChannel(Arc<dyn DataChannel>),
}

struct Handler {
    events: tokio::sync::mpsc::UnboundedSender<PeerEvent>,
    gathered: tokio::sync::watch::Sender<bool>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.send_replace(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.events.send(PeerEvent::State(state));
    }

    async fn on_data_channel(&self, data_channel: Arc<dyn DataChannel>) {
        let _ = self.events.send(PeerEvent::DataChannel(data_channel));
    }
}

/// A negotiated peer: the connection, its tracks, and the stream of its events.
pub struct RtcPeer {
    pub pc: Arc<dyn PeerConnection>,
    pub answer: String,
    pub events: tokio::sync::mpsc::UnboundedReceiver<PeerEvent>,
    video: Option<(Arc<TrackLocalStaticRTP>, Arc<dyn RtpSender>, u32)>,
    audio: Option<(Arc<TrackLocalStaticRTP>, Arc<dyn RtpSender>, u32)>,
}

/// A browser's offer whose SDP webrtc-rs could parse.
pub struct Offer(RTCSessionDescription);

/// Parses an offer's SDP: everything checked before a peer connection exists. Pure, so it
/// is fuzzed (`fuzz/`, `roverd::fuzzing::offer`).
pub fn parse_offer(sdp: String) -> Result<Offer, RtcError> {
    RTCSessionDescription::offer(sdp)
        .map(Offer)
        .map_err(|e| RtcError::BadOffer(e.to_string()))
}

/// Parses an answer's SDP, as a browser's `setRemoteDescription` would have to; for tests.
#[doc(hidden)]
pub fn parse_answer(sdp: String) -> Result<(), RtcError> {
    RTCSessionDescription::answer(sdp)
        .map(drop)
        .map_err(|e| RtcError::BadOffer(e.to_string()))
}

/// Answers `offer_sdp`. `local_ip` is the address the browser reached roverd's HTTP server
/// on: an address it can certainly reach, so the ICE candidates are bound there.
pub async fn answer(
    offer_sdp: String,
    local_ip: IpAddr,
    media: &Media,
) -> Result<RtcPeer, RtcError> {
    let Offer(offer) = parse_offer(offer_sdp)?;

    let settings = media.video_settings();
    let h264 = h264_codec(crate::media::h264::fmtp_line(settings.level_idc()));
    let opus = opus_codec();
    let mut engine = MediaEngine::default();
    engine
        .register_codec(h264.clone(), RtpCodecKind::Video)
        .map_err(setup("registering H.264"))?;
    engine
        .register_codec(opus.clone(), RtpCodecKind::Audio)
        .map_err(setup("registering Opus"))?;
    let registry = register_default_interceptors(Registry::new(), &mut engine)
        .map_err(setup("registering interceptors"))?
        // Last in the chain, so the NACK and report interceptors have seen everything first.
        .with(Slot::from(14_000), KeyframeRequests::default());

    let local_ip = match local_ip {
        IpAddr::V6(v6) => v6.to_canonical(),
        v4 => v4,
    };
    let setting_engine = SettingEngineBuilder::new()
        .with_include_loopback_candidate(local_ip.is_loopback())
        // Query mode would bind 0.0.0.0:5353; browsers' .local candidates are not needed
        // because roverd learns the browser's address from its connectivity checks.
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        // A browser that vanishes (closed lid, Wi-Fi gone) sends nothing to say so: notice
        // silence after 3 s instead of the default 5 s, and give up 10 s later.
        .with_ice_timeouts(
            Some(ICE_DISCONNECTED_AFTER),
            Some(Duration::from_secs(10)),
            Some(Duration::from_secs(1)),
        )
        .build();

    let (events_tx, events) = tokio::sync::mpsc::unbounded_channel();
    let (gathered_tx, mut gathered) = tokio::sync::watch::channel(false);
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(engine)
        .with_setting_engine(setting_engine)
        .with_interceptor_registry(registry)
        .with_handler(Arc::new(Handler {
            events: events_tx,
            gathered: gathered_tx,
        }))
        .with_udp_addrs(vec![SocketAddr::new(local_ip, 0)])
        .build()
        .await
        .map_err(setup("creating the peer connection"))?;
    let pc: Arc<dyn PeerConnection> = Arc::new(pc);

    let result = async {
        let video = add_track(&pc, RtpCodecKind::Video, h264.rtp_codec).await?;
        let audio = if media.has_audio() {
            Some(add_track(&pc, RtpCodecKind::Audio, opus.rtp_codec).await?)
        } else {
            None
        };
        pc.set_remote_description(offer)
            .await
            .map_err(|e| RtcError::BadOffer(e.to_string()))?;
        let answer = pc
            .create_answer(None)
            .await
            .map_err(|e| RtcError::BadOffer(e.to_string()))?;
        pc.set_local_description(answer)
            .await
            .map_err(setup("applying the answer"))?;
        // Non-trickle: the answer carries every candidate, so clients written for a single
        // POST (WebGear_RTC, RTCBot, FastRTC) work as they are.
        let _ = tokio::time::timeout(GATHER_TIMEOUT, gathered.wait_for(|done| *done)).await;
        let answer = pc
            .local_description()
            .await
            .ok_or_else(|| RtcError::Setup("no local description after answering".into()))?;
        Ok((video, audio, answer.sdp))
    }
    .await;
    match result {
        Ok((video, audio, answer)) => Ok(RtcPeer {
            pc,
            answer,
            events,
            video: Some(video),
            audio,
        }),
        Err(e) => {
            let _ = pc.close().await;
            Err(e)
        }
    }
}

fn h264_codec(fmtp: String) -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_H264.to_owned(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: fmtp,
            // NACK and PLI are added by the default interceptors; FIR is added here so that
            // older clients that only know FIR can ask for a keyframe too.
            rtcp_feedback: vec![RTCPFeedback {
                typ: "ccm".into(),
                parameter: "fir".into(),
            }],
        },
        payload_type: 102,
    }
}

fn opus_codec() -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_OPUS.to_owned(),
            clock_rate: 48_000,
            channels: 2,
            sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
            rtcp_feedback: vec![],
        },
        payload_type: 111,
    }
}

async fn add_track(
    pc: &Arc<dyn PeerConnection>,
    kind: RtpCodecKind,
    codec: RTCRtpCodec,
) -> Result<(Arc<TrackLocalStaticRTP>, Arc<dyn RtpSender>, u32), RtcError> {
    let ssrc: u32 = rand::random();
    let track = Arc::new(TrackLocalStaticRTP::new(media_track(kind, codec, ssrc)));
    let sender = pc
        .add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
        .await
        .map_err(setup("adding a track"))?;
    Ok((track, sender, ssrc))
}

/// One of roverd's outgoing tracks, as the browser sees it in the answer.
fn media_track(kind: RtpCodecKind, codec: RTCRtpCodec, ssrc: u32) -> MediaStreamTrack {
    let name = match kind {
        RtpCodecKind::Audio => "audio",
        _ => "video",
    };
    MediaStreamTrack::new(
        "roverd".to_owned(),
        format!("roverd-{name}"),
        format!("roverd {name}"),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec,
            ..Default::default()
        }],
    )
}

/// Negotiates `offer` as [`answer`] does (roverd's codecs, a video and an audio track), but
/// in webrtc-rs's sans-IO core: no socket, no task, no candidate gathering, no interceptors.
/// The `negotiate` fuzz target feeds it hostile offers, since a browser's SDP reaches
/// `set_remote_description` and `create_answer` after [`parse_offer`]. Returns the answer.
pub fn answer_offline(offer: Offer, level_idc: u8, now: Instant) -> Result<String, RtcError> {
    let h264 = h264_codec(crate::media::h264::fmtp_line(level_idc));
    let opus = opus_codec();
    let mut engine = MediaEngine::default();
    engine
        .register_codec(h264.clone(), RtpCodecKind::Video)
        .map_err(setup("registering H.264"))?;
    engine
        .register_codec(opus.clone(), RtpCodecKind::Audio)
        .map_err(setup("registering Opus"))?;
    let mut pc = rtc::peer_connection::RTCPeerConnectionBuilder::new()
        .with_media_engine(engine)
        .build(now)
        .map_err(setup("creating the peer connection"))?;
    pc.add_track(media_track(RtpCodecKind::Video, h264.rtp_codec, 1))
        .map_err(setup("adding a track"))?;
    pc.add_track(media_track(RtpCodecKind::Audio, opus.rtp_codec, 2))
        .map_err(setup("adding a track"))?;
    pc.set_remote_description(now, offer.0)
        .map_err(|e| RtcError::BadOffer(e.to_string()))?;
    let answer = pc
        .create_answer(None)
        .map_err(|e| RtcError::BadOffer(e.to_string()))?;
    pc.set_local_description(now, answer.clone())
        .map_err(setup("applying the answer"))?;
    Ok(answer.sdp)
}

/// The payload type the browser chose for our codec (the first negotiated one whose MIME
/// type is ours).
async fn negotiated_payload_type(sender: &Arc<dyn RtpSender>, mime: &str) -> Option<u8> {
    let params = sender.get_parameters().await.ok()?;
    params
        .rtp_parameters
        .codecs
        .iter()
        .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime))
        .map(|c| c.payload_type)
}

impl RtcPeer {
    /// Starts sending once the connection is up. Returns the tasks, for the owner to abort.
    pub async fn start_media(&mut self, media: &Arc<Media>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        if let Some((track, sender, ssrc)) = self.video.take() {
            match negotiated_payload_type(&sender, MIME_TYPE_H264).await {
                Some(pt) => {
                    let sub = media.subscribe_video();
                    tasks.push(tokio::spawn(pump_video(
                        Arc::clone(&track),
                        ssrc,
                        pt,
                        sub,
                        Arc::clone(media),
                    )));
                    tasks.push(tokio::spawn(forward_keyframe_requests(
                        track,
                        Arc::clone(media),
                    )));
                }
                None => log::info!("the browser did not accept H.264 video; sending no video"),
            }
        }
        if let Some((track, sender, ssrc)) = self.audio.take() {
            match (
                negotiated_payload_type(&sender, MIME_TYPE_OPUS).await,
                media.subscribe_audio(),
            ) {
                (Some(pt), Some(sub)) => tasks.push(tokio::spawn(pump_audio(track, ssrc, pt, sub))),
                _ => log::info!("the browser did not accept Opus audio; sending no audio"),
            }
        }
        tasks
    }
}

fn rtp_packet(
    ssrc: u32,
    pt: u8,
    seq: u16,
    timestamp: u32,
    marker: bool,
    payload: bytes::Bytes,
) -> rtc::rtp::Packet {
    rtc::rtp::Packet {
        header: rtc::rtp::header::Header {
            version: 2,
            marker,
            payload_type: pt,
            sequence_number: seq,
            timestamp,
            ssrc,
            ..Default::default()
        },
        payload,
    }
}

/// Copies encoded pictures to one peer. After it falls behind, it skips to the next
/// keyframe (asking for one at once), because P-frames after a gap only decode to garbage.
async fn pump_video(
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    pt: u8,
    mut frames: Subscriber<VideoFrame>,
    media: Arc<Media>,
) {
    let mut seq: u16 = rand::random();
    let mut need_keyframe = true;
    media.request_keyframe();
    loop {
        match frames.next().await {
            Next::Item(frame) => {
                if need_keyframe && !frame.keyframe {
                    continue;
                }
                need_keyframe = false;
                let last = frame.payloads.len().saturating_sub(1);
                for (i, payload) in frame.payloads.iter().enumerate() {
                    let packet = rtp_packet(
                        ssrc,
                        pt,
                        seq,
                        frame.rtp_timestamp,
                        i == last,
                        payload.clone(),
                    );
                    seq = seq.wrapping_add(1);
                    if let Err(e) = track.write_rtp(packet).await {
                        log::debug!("video track closed: {e}");
                        return;
                    }
                }
            }
            Next::Dropped(n) => {
                log::debug!("a slow peer skipped {n} video frames; waiting for a keyframe");
                need_keyframe = true;
                media.request_keyframe();
            }
            Next::Closed => return,
        }
    }
}

async fn pump_audio(
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    pt: u8,
    mut packets: Subscriber<AudioPacket>,
) {
    let mut seq: u16 = rand::random();
    loop {
        match packets.next().await {
            Next::Item(p) => {
                let packet = rtp_packet(ssrc, pt, seq, p.rtp_timestamp, false, p.payload);
                seq = seq.wrapping_add(1);
                if let Err(e) = track.write_rtp(packet).await {
                    log::debug!("audio track closed: {e}");
                    return;
                }
            }
            // Audio needs no keyframe: the next packet decodes on its own.
            Next::Dropped(_) => {}
            Next::Closed => return,
        }
    }
}

async fn forward_keyframe_requests(track: Arc<TrackLocalStaticRTP>, media: Arc<Media>) {
    while let Some(event) = track.poll().await {
        let TrackLocalEvent::OnRtcpPacket(packets) = event else {
            continue;
        };
        if packets.iter().any(is_keyframe_request) {
            log::debug!("keyframe requested by a peer");
            media.request_keyframe();
        }
    }
}

#[allow(clippy::borrowed_box)]
fn is_keyframe_request(packet: &Box<dyn rtc::rtcp::Packet>) -> bool {
    let any = packet.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

/// Lets PLI and FIR through to the application and keeps all other inbound RTCP inside the
/// interceptor chain, where the NACK responder and the reports already handle it.
#[derive(Default)]
struct KeyframeRequests {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequests {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = webrtc::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let InterceptorPacket::Rtcp(packets) = &msg.message.packet {
            let wanted: Vec<_> = packets
                .iter()
                .filter(|p| is_keyframe_request(p))
                .cloned()
                .collect();
            if wanted.is_empty() {
                return Ok(());
            }
            msg.message.packet = InterceptorPacket::Rtcp(wanted);
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write.pop_front()
    }
}

impl Interceptor for KeyframeRequests {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// Runs one data channel: `hello` on open, then every message through the protocol:
/// `ping` answered with `pong`, motor commands to [`Control`], anything refused answered
/// with `error`. `state` goes out on every change and at least twice a second.
///
/// However this task ends (the channel closes, the peer is dropped and the task aborted),
/// its guard tells the motor task that this peer has left: a driver's motors stop.
/// What one peer's data channels may do, and cost.
#[derive(Debug, Clone, Copy)]
pub struct ChannelPolicy {
    pub access: crate::session::Access,
    pub deadman_ms: u64,
    /// `limits.message_bytes`.
    pub message_bytes: usize,
    /// `limits.messages_per_s`, also the burst a full bucket allows.
    pub messages_per_s: u32,
}

pub async fn serve_data_channel(
    dc: Arc<dyn DataChannel>,
    peer_id: String,
    control: Control,
    policy: ChannelPolicy,
) {
    struct LeaveOnDrop(Control, String);
    impl Drop for LeaveOnDrop {
        fn drop(&mut self) {
            self.0.peer_left(&self.1);
        }
    }
    let _leave = LeaveOnDrop(control.clone(), peer_id.clone());
    /// The `state` pusher ends with this task, also when this task is aborted (the peer
    /// closed by roverd), not half a second later when its next send fails.
    struct AbortOnDrop(tokio::task::JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let mut pusher: Option<AbortOnDrop> = None;
    let mut rate = Bucket::new(
        policy.messages_per_s,
        f64::from(policy.messages_per_s),
        tokio::time::Instant::now().into_std(),
    );
    while let Some(event) = dc.poll().await {
        match event {
            DataChannelEvent::OnOpen => {
                send(
                    &dc,
                    &Outgoing::Hello {
                        id: peer_id.clone(),
                        version: crate::VERSION.to_owned(),
                        deadman_ms: policy.deadman_ms,
                    },
                )
                .await;
                if pusher.is_none() {
                    pusher = Some(AbortOnDrop(tokio::spawn(push_state(
                        Arc::clone(&dc),
                        peer_id.clone(),
                        control.subscribe(),
                    ))));
                }
            }
            DataChannelEvent::OnMessage(msg) => {
                let decision = rate.take(tokio::time::Instant::now().into_std());
                if let Some(reply) = reply_to(&msg, &peer_id, &control, &policy, decision).await {
                    send(&dc, &reply).await;
                }
            }
            DataChannelEvent::OnClose => break,
            _ => {}
        }
    }
    drop(pusher);
    log::debug!("data channel of peer {peer_id} closed");
}

async fn send(dc: &Arc<dyn DataChannel>, msg: &Outgoing) {
    if let Err(e) = dc.send_text(&msg.to_json()).await {
        log::debug!("data channel send failed: {e}");
    }
}

/// The reply to one message, if it needs one: a successful motor command's answer is the
/// `state` message that follows.
async fn reply_to(
    msg: &RTCDataChannelMessage,
    peer_id: &str,
    control: &Control,
    policy: &ChannelPolicy,
    rate: Decision,
) -> Option<Outgoing> {
    if msg.data.len() > policy.message_bytes {
        log::warn!(
            "peer {peer_id}: refused a data-channel message of {} bytes (limits.message_bytes = {})",
            msg.data.len(),
            policy.message_bytes
        );
        return Some(Outgoing::Error {
            message: format!(
                "message of {} bytes refused: at most {} bytes are allowed",
                msg.data.len(),
                policy.message_bytes
            ),
            seq: None,
        });
    }
    if let Decision::Refused { first, .. } = rate {
        // Over the rate, only a stop gets through: stopping must never be rate limited.
        // The refusal is said once per flood, so a flood is not answered by a flood.
        let text = std::str::from_utf8(&msg.data).unwrap_or("");
        if let Ok(incoming) = crate::protocol::parse(text) {
            if matches!(incoming.command, Command::Stop | Command::Estop) {
                let _ = control.command(peer_id, incoming.command).await;
                return None;
            }
        }
        if !first {
            return None;
        }
        log::warn!(
            "peer {peer_id}: more than {} data-channel messages a second (limits.messages_per_s); \
             refusing all but stop and estop until it slows down",
            policy.messages_per_s
        );
        return Some(Outgoing::Error {
            message: format!(
                "too many messages: at most {} a second are accepted (stop and estop always are); \
                 the rest are dropped until the rate falls",
                policy.messages_per_s
            ),
            seq: None,
        });
    }
    if !msg.is_string {
        return Some(Outgoing::Error {
            message: "binary messages are not understood; send JSON text".into(),
            seq: None,
        });
    }
    let Ok(text) = std::str::from_utf8(&msg.data) else {
        return Some(Outgoing::Error {
            message: "message is not valid UTF-8".into(),
            seq: None,
        });
    };
    crate::control::respond(control, peer_id, policy.access, text).await
}

/// Sends `state` when the motors change and at least every [`STATE_MAX_INTERVAL`], so the
/// page knows the robot is alive. Changes within [`STATE_MIN_INTERVAL`] of the last send
/// are coalesced (a ramp changes the speeds 100 times a second), except a stop or an
/// e-stop change, which goes out at once.
async fn push_state(
    dc: Arc<dyn DataChannel>,
    peer_id: String,
    mut states: tokio::sync::watch::Receiver<MotorState>,
) {
    loop {
        let state = states.borrow_and_update().clone();
        let msg = Outgoing::State {
            left: state.left,
            right: state.right,
            estop: state.estop,
            driver: state.driver.as_deref() == Some(peer_id.as_str()),
        };
        if dc.send_text(&msg.to_json()).await.is_err() {
            return;
        }
        let sent = tokio::time::Instant::now();
        match tokio::time::timeout(STATE_MAX_INTERVAL, states.changed()).await {
            Err(_) => continue,
            Ok(Err(_)) => return,
            Ok(Ok(())) => {}
        }
        let urgent = |next: &MotorState| {
            (next.left == 0.0 && next.right == 0.0) || next.estop != state.estop
        };
        if urgent(&states.borrow()) {
            continue;
        }
        // Coalesce until the interval is up, unless a stop comes meanwhile.
        let deadline = sent + STATE_MIN_INTERVAL;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => break,
                changed = states.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if urgent(&states.borrow()) {
                        break;
                    }
                }
            }
        }
    }
}

/// `state` messages are coalesced to at most 20 a second...
const STATE_MIN_INTERVAL: Duration = Duration::from_millis(50);
/// ...and sent at least twice a second.
const STATE_MAX_INTERVAL: Duration = Duration::from_millis(500);
