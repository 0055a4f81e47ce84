//! roverd's contact with the `webrtc` crate: answering an offer with a peer that sends the
//! common H.264 and Opus streams and speaks the data-channel protocol. The only other
//! module that names it is `peers`, which holds each peer's connection (to close it) and
//! closes the data channels beyond a peer's allowance.
//!
//! webrtc-rs changes its API between releases; keeping the calls to it here (and those few
//! in `peers`) means an upgrade touches two places. Each peer gets its own tracks, but not its own
//! encoding: the pumps (`pump`) copy already-packetized payloads from the media fan-out
//! into RTP packets, so a viewer costs a header and SRTP, not an encoder. `keyframes`
//! turns a peer's PLI and FIR into a keyframe request; `datachannel` moves a data
//! channel's bytes to and from its [`Session`](crate::session::Session).

mod datachannel;
mod keyframes;
mod pump;

pub use crate::session::ChannelPolicy;
pub use datachannel::serve_data_channel;

use crate::media::Media;
use keyframes::{forward_keyframe_requests, KeyframeRequests};
use pump::{pump_audio, pump_video};
use rtc::interceptor::Slot;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_H264, MIME_TYPE_OPUS};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RtpCodecKind,
};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use webrtc::data_channel::DataChannel;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
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

    let (mut engine, h264, opus) = codecs(media.video_settings().level_idc())?;
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

/// roverd's codecs, H.264 at `level_idc` and Opus, registered in a media engine: the same
/// for a live answer and an offline one.
fn codecs(
    level_idc: u8,
) -> Result<(MediaEngine, RTCRtpCodecParameters, RTCRtpCodecParameters), RtcError> {
    let h264 = h264_codec(crate::media::h264::fmtp_line(level_idc));
    let opus = opus_codec();
    let mut engine = MediaEngine::default();
    engine
        .register_codec(h264.clone(), RtpCodecKind::Video)
        .map_err(setup("registering H.264"))?;
    engine
        .register_codec(opus.clone(), RtpCodecKind::Audio)
        .map_err(setup("registering Opus"))?;
    Ok((engine, h264, opus))
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
    let (engine, h264, opus) = codecs(level_idc)?;
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
