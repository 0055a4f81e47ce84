//! Test harness: roverd on 127.0.0.1:0, a plain HTTP client, and a real webrtc-rs peer
//! that connects the way a browser does (recvonly video and audio, a `control` data
//! channel, one POST with the whole offer).
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use roverd::config::Config;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_H264, MIME_TYPE_OPUS};
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceGatheringState,
    RTCPeerConnectionState, RTCSessionDescription, Registry, SettingEngineBuilder,
};

/// Generous bound for anything that should take well under a second.
pub const PATIENCE: Duration = Duration::from_secs(15);

pub fn test_config() -> Config {
    let mut config = Config::default();
    config.simulate();
    config.http.listen = "127.0.0.1:0".parse().expect("literal address");
    config
}

pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub async fn start(config: Config) -> Server {
        let config = config.validate().expect("the test's config breaks a rule");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            roverd::serve(config, listener, async {
                let _ = stopped.await;
            })
            .await
            .expect("roverd::serve failed");
        });
        let server = Server {
            addr,
            stop: Some(stop),
            task,
        };
        // Wait until the encoders run: /healthz says so.
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let (status, _) = server.get("/healthz").await;
            if status == 200 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "roverd never became healthy"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(PATIENCE, &mut self.task)
            .await
            .expect("roverd did not stop")
            .expect("roverd task panicked");
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        request(self.addr, "GET", path, &[], Vec::new()).await
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> (u16, String) {
        request(self.addr, "POST", path, &[], body.to_string().into_bytes()).await
    }

    pub async fn status(&self) -> serde_json::Value {
        let (code, body) = self.get("/api/status").await;
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).expect("status is JSON")
    }
}

/// One HTTP/1.1 request on a fresh connection. The Host header is 127.0.0.1:port unless
/// `headers` gives another.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, String) {
    let (status, _, body) = request_full(addr, method, path, headers, body).await;
    (status, body)
}

/// [`request`], with the response's headers.
pub async fn request_full(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, hyper::HeaderMap, String) {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to roverd");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("HTTP handshake");
    tokio::spawn(conn);
    let mut builder = hyper::Request::builder().method(method).uri(path);
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        builder = builder.header("host", addr.to_string());
    }
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let req = builder.body(Full::new(Bytes::from(body))).expect("request");
    let resp = sender.send_request(req).await.expect("send request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("read body")
        .to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

struct ClientHandler {
    gathered: watch::Sender<bool>,
    state: watch::Sender<RTCPeerConnectionState>,
    video: mpsc::UnboundedSender<rtc::rtp::Packet>,
    audio: mpsc::UnboundedSender<rtc::rtp::Packet>,
    /// Stop reading each track after its first packet, like a frozen browser tab.
    stall: bool,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for ClientHandler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.send_replace(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.state.send_replace(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let sink = match track.kind().await {
            RtpCodecKind::Audio => self.audio.clone(),
            _ => self.video.clone(),
        };
        let stall = self.stall;
        tokio::spawn(async move {
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(packet) = event {
                    let _ = sink.send(packet);
                    if stall {
                        // Never poll again: this peer's receive path backs up from here on.
                        std::future::pending::<()>().await;
                    }
                }
            }
        });
    }
}

/// A webrtc-rs peer that receives roverd's stream.
pub struct ClientPeer {
    pub pc: Arc<dyn PeerConnection>,
    pub id: String,
    pub answer: String,
    pub video: mpsc::UnboundedReceiver<rtc::rtp::Packet>,
    pub audio: mpsc::UnboundedReceiver<rtc::rtp::Packet>,
    pub messages: mpsc::UnboundedReceiver<String>,
    pub dc: Arc<dyn DataChannel>,
    /// The answer's `Location`: `/api/peers/<id>?secret=<secret>`.
    pub location: String,
    state: watch::Receiver<RTCPeerConnectionState>,
    /// When the offer POST went out: the start of "time to first picture".
    pub posted_at: Instant,
}

impl ClientPeer {
    /// Negotiates through `path` (one of the offer routes) and waits for the connection.
    pub async fn connect(server: &Server) -> ClientPeer {
        Self::connect_via(server, "/api/offer").await
    }

    /// A peer that stops reading its tracks after the first packet of each.
    pub async fn connect_stalling(server: &Server) -> ClientPeer {
        Self::negotiate(server.addr, "/api/offer", true, &[]).await
    }

    pub async fn connect_via(server: &Server, path: &str) -> ClientPeer {
        Self::negotiate(server.addr, path, false, &[]).await
    }

    /// Connects with `Authorization: Bearer <token>`.
    pub async fn connect_with_token(addr: SocketAddr, token: &str) -> ClientPeer {
        let auth = format!("Bearer {token}");
        Self::negotiate(addr, "/api/offer", false, &[("authorization", &auth)]).await
    }

    /// Posts a real offer and never completes it: roverd answers, then waits for a
    /// connection that never comes. Returns the status, the body, and the client's peer
    /// connection (keep it: dropping it changes nothing roverd can see, but closing it
    /// is tidy).
    pub async fn post_offer_only(addr: SocketAddr) -> (u16, String, Arc<dyn PeerConnection>) {
        let (pc, mut parts) = new_client_pc(false).await;
        let sdp = local_offer(&pc, &mut parts.gathered).await;
        let offer_json = serde_json::json!({"sdp": sdp, "type": "offer"});
        let (code, body) = request(
            addr,
            "POST",
            "/api/offer",
            &[],
            offer_json.to_string().into_bytes(),
        )
        .await;
        (code, body, pc)
    }

    /// Connects to a roverd at `addr` that this process did not start (the bench runs
    /// roverd as its own process).
    pub async fn connect_addr(addr: SocketAddr) -> ClientPeer {
        Self::negotiate(addr, "/api/offer", false, &[]).await
    }

    async fn negotiate(
        addr: SocketAddr,
        path: &str,
        stall: bool,
        headers: &[(&str, &str)],
    ) -> ClientPeer {
        let (pc, mut parts) = new_client_pc(stall).await;
        let sdp = local_offer(&pc, &mut parts.gathered).await;
        let offer_json = serde_json::json!({"sdp": sdp, "type": "offer", "webrtc_id": "ignored"});
        let posted_at = Instant::now();
        let (code, response_headers, body) = request_full(
            addr,
            "POST",
            path,
            headers,
            offer_json.to_string().into_bytes(),
        )
        .await;
        assert_eq!(code, 200, "offer refused: {body}");
        let answer: serde_json::Value = serde_json::from_str(&body).expect("answer JSON");
        assert_eq!(answer["type"], "answer");
        let answer_sdp = answer["sdp"].as_str().expect("answer sdp").to_owned();
        let location = response_headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .expect("the answer has a Location")
            .to_owned();
        // The id is in the body on /api/offer only; the Location names it on every route.
        let id = location
            .strip_prefix("/api/peers/")
            .and_then(|rest| rest.split('?').next())
            .expect("Location is /api/peers/<id>?secret=...")
            .to_owned();
        if let Some(body_id) = answer.get("id") {
            assert_eq!(body_id.as_str(), Some(id.as_str()), "{body} vs {location}");
        }
        pc.set_remote_description(
            RTCSessionDescription::answer(answer_sdp.clone()).expect("answer parses"),
        )
        .await
        .expect("set remote answer");
        let mut dc_open = parts.dc_open;
        tokio::time::timeout(PATIENCE, dc_open.wait_for(|open| *open))
            .await
            .expect("data channel did not open in time")
            .expect("data channel state");
        let mut state = parts.state;
        tokio::time::timeout(
            PATIENCE,
            state.wait_for(|s| *s == RTCPeerConnectionState::Connected),
        )
        .await
        .expect("peer did not connect in time")
        .expect("state channel");
        ClientPeer {
            pc,
            id,
            answer: answer_sdp,
            video: parts.video,
            audio: parts.audio,
            messages: parts.messages,
            dc: parts.dc,
            location,
            state,
            posted_at,
        }
    }

    pub async fn send(&self, text: &str) {
        self.dc.send_text(text).await.expect("data channel send");
    }

    /// The next data-channel message from roverd, parsed.
    pub async fn next_message(&mut self) -> serde_json::Value {
        let text = tokio::time::timeout(PATIENCE, self.messages.recv())
            .await
            .expect("no data-channel message in time")
            .expect("data channel closed");
        serde_json::from_str(&text).expect("roverd sends JSON")
    }

    /// The first message that satisfies `want`, skipping the others; fails after
    /// [`PATIENCE`] even while other messages (the periodic `state`) keep coming.
    pub async fn next_matching(
        &mut self,
        what: &str,
        want: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Ok(msg) = tokio::time::timeout(left, self.next_message()).await else {
                let last: Vec<_> = skipped.iter().rev().take(5).collect();
                panic!("no {what} within {PATIENCE:?}; the last messages were {last:?}");
            };
            if want(&msg) {
                return msg;
            }
            skipped.push(msg);
        }
    }

    /// The next message that is not a periodic `state`.
    pub async fn next_reply(&mut self) -> serde_json::Value {
        self.next_matching("reply", |m| m["type"] != "state").await
    }

    /// Waits for the next `error` message, skipping `hello` and `state`.
    pub async fn next_error(&mut self) -> serde_json::Value {
        self.next_matching("error", |m| m["type"] == "error").await
    }

    /// Waits for a `state` message that satisfies `want`, skipping the others.
    pub async fn wait_state(
        &mut self,
        want: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        self.next_matching("matching state", |m| m["type"] == "state" && want(m))
            .await
    }

    pub async fn next_video_packet(&mut self) -> rtc::rtp::Packet {
        tokio::time::timeout(PATIENCE, self.video.recv())
            .await
            .expect("no video RTP in time")
            .expect("video track ended")
    }

    pub async fn next_audio_packet(&mut self) -> rtc::rtp::Packet {
        tokio::time::timeout(PATIENCE, self.audio.recv())
            .await
            .expect("no audio RTP in time")
            .expect("audio track ended")
    }

    pub fn state(&self) -> RTCPeerConnectionState {
        *self.state.borrow()
    }

    pub async fn close(self) {
        let _ = self.pc.close().await;
    }
}

/// Makes `pc`'s offer, waits (up to 2 s) for its candidates, and returns the SDP.
async fn local_offer(pc: &Arc<dyn PeerConnection>, gathered: &mut watch::Receiver<bool>) -> String {
    let offer = pc.create_offer(None).await.expect("create offer");
    pc.set_local_description(offer)
        .await
        .expect("set local offer");
    let _ = tokio::time::timeout(Duration::from_secs(2), gathered.wait_for(|d| *d)).await;
    pc.local_description().await.expect("local description").sdp
}

/// The SDP of a real client offer (H.264, Opus, a data channel), for tests that post
/// offers by hand.
pub async fn client_offer_sdp() -> String {
    let (pc, mut parts) = new_client_pc(false).await;
    let sdp = local_offer(&pc, &mut parts.gathered).await;
    let _ = pc.close().await;
    sdp
}

struct ClientParts {
    dc_open: watch::Receiver<bool>,
    gathered: watch::Receiver<bool>,
    state: watch::Receiver<RTCPeerConnectionState>,
    video: mpsc::UnboundedReceiver<rtc::rtp::Packet>,
    audio: mpsc::UnboundedReceiver<rtc::rtp::Packet>,
    messages: mpsc::UnboundedReceiver<String>,
    dc: Arc<dyn DataChannel>,
}

/// A client peer with the codecs a browser offers for these two kinds.
async fn new_client_pc(stall: bool) -> (Arc<dyn PeerConnection>, ClientParts) {
    let mut engine = MediaEngine::default();
    engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: MIME_TYPE_H264.to_owned(),
                    clock_rate: 90_000,
                    channels: 0,
                    sdp_fmtp_line:
                        "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
                            .to_owned(),
                    rtcp_feedback: vec![],
                },
                payload_type: 109,
            },
            RtpCodecKind::Video,
        )
        .expect("register H.264");
    engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: MIME_TYPE_OPUS.to_owned(),
                    clock_rate: 48_000,
                    channels: 2,
                    sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
                    rtcp_feedback: vec![],
                },
                payload_type: 111,
            },
            RtpCodecKind::Audio,
        )
        .expect("register Opus");
    let registry =
        register_default_interceptors(Registry::new(), &mut engine).expect("interceptors");
    let (gathered_tx, gathered) = watch::channel(false);
    let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
    let (video_tx, video) = mpsc::unbounded_channel();
    let (audio_tx, audio) = mpsc::unbounded_channel();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(engine)
        .with_setting_engine(
            SettingEngineBuilder::new()
                .with_include_loopback_candidate(true)
                .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
                .build(),
        )
        .with_interceptor_registry(registry)
        .with_handler(Arc::new(ClientHandler {
            gathered: gathered_tx,
            state: state_tx,
            video: video_tx,
            audio: audio_tx,
            stall,
        }))
        .with_udp_addrs(vec!["127.0.0.1:0"])
        .build()
        .await
        .expect("client peer connection");
    let pc: Arc<dyn PeerConnection> = Arc::new(pc);
    for kind in [RtpCodecKind::Video, RtpCodecKind::Audio] {
        pc.add_transceiver_from_kind(
            kind,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                ..Default::default()
            }),
        )
        .await
        .expect("add recvonly transceiver");
    }
    let dc = pc
        .create_data_channel("control", None)
        .await
        .expect("data channel");
    let (msg_tx, messages) = mpsc::unbounded_channel();
    let (open_tx, dc_open) = watch::channel(false);
    let reader = Arc::clone(&dc);
    tokio::spawn(async move {
        while let Some(event) = reader.poll().await {
            match event {
                DataChannelEvent::OnOpen => {
                    open_tx.send_replace(true);
                }
                DataChannelEvent::OnMessage(m) => {
                    let _ = msg_tx.send(String::from_utf8_lossy(&m.data).into_owned());
                }
                DataChannelEvent::OnClose => break,
                _ => {}
            }
        }
    });
    (
        pc,
        ClientParts {
            dc_open,
            gathered,
            state,
            video,
            audio,
            messages,
            dc,
        },
    )
}

/// Reassembles H.264 RTP into access units and decodes them with openh264.
pub struct VideoReceiver {
    depacketizer: rtc::rtp::codec::h264::H264Packet,
    decoder: openh264::decoder::Decoder,
    current: Vec<u8>,
    pub last_timestamp: Option<u32>,
}

/// One decoded picture: its size, its Y plane (tightly packed), and its RTP timestamp.
pub struct Picture {
    pub width: usize,
    pub height: usize,
    pub y: Vec<u8>,
    pub rtp_timestamp: u32,
}

impl VideoReceiver {
    pub fn new() -> Self {
        Self {
            depacketizer: Default::default(),
            decoder: openh264::decoder::Decoder::new().expect("openh264 decoder"),
            current: Vec::new(),
            last_timestamp: None,
        }
    }

    /// Feeds one packet; returns a picture when it completes one that decodes.
    pub fn push(&mut self, packet: &rtc::rtp::Packet) -> Option<Picture> {
        use rtc::rtp::packetizer::Depacketizer;
        if let Ok(nals) = self.depacketizer.depacketize(&packet.payload) {
            self.current.extend_from_slice(&nals);
        }
        self.last_timestamp = Some(packet.header.timestamp);
        if !packet.header.marker {
            return None;
        }
        let au = std::mem::take(&mut self.current);
        use openh264::formats::YUVSource;
        let decoded = self.decoder.decode(&au).ok()??;
        let (width, height) = decoded.dimensions();
        let (stride, _, _) = decoded.strides();
        let y_plane = decoded.y();
        let mut y = Vec::with_capacity(width * height);
        for row in 0..height {
            y.extend_from_slice(&y_plane[row * stride..row * stride + width]);
        }
        Some(Picture {
            width,
            height,
            y,
            rtp_timestamp: packet.header.timestamp,
        })
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// Distance between two 32-bit millisecond stamps, with wrap-around.
pub fn stamp_distance_ms(a: u32, b: u32) -> u32 {
    a.wrapping_sub(b).min(b.wrapping_sub(a))
}

/// The slate's red band (video-range red has luma 81) runs across the whole width a few
/// rows below its top edge, above its text; no row of the plain pattern is that uniform.
pub fn is_slate(y: &[u8], width: usize, height: usize) -> bool {
    let band_y = (height / 2 - ((height / 4) & !1) / 2) & !1;
    let row = &y[(band_y + 4) * width..][..width];
    row.iter().all(|&l| l.abs_diff(81) <= 12)
}

/// roverd as its own process (for what must be measured or configured per process: RSS,
/// file descriptors, CPU, environment), killed when dropped. Its stderr is kept in `log`,
/// and drained for its whole life so that a full pipe never blocks its logger.
pub struct Process {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    log: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Process {
    /// Starts `cmd` (roverd, which must listen on `127.0.0.1:0`; its stderr is taken
    /// here) and waits until it says where it listens.
    pub fn spawn(mut cmd: std::process::Command) -> Process {
        use std::io::BufRead;
        // A state directory of its own unless the test gives one: never the user's (a
        // latched e-stop kept there would hold every test's motors).
        if !cmd.get_envs().any(|(k, _)| k == "STATE_DIRECTORY") {
            let dir = std::env::temp_dir().join(format!("roverd-state-{}", std::process::id()));
            cmd.env("STATE_DIRECTORY", dir);
        }
        let mut child = cmd
            .env_remove("JOURNAL_STREAM")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start roverd");
        let stderr = child.stderr.take().expect("piped stderr");
        let log: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    if let Ok(addr) = rest.trim().trim_end_matches('/').parse::<SocketAddr>() {
                        let _ = addr_tx.send(addr);
                    }
                }
                sink.lock().expect("log lock").push(line);
            }
        });
        let Ok(addr) = addr_rx.recv_timeout(PATIENCE) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "roverd never said where it listens; its stderr:\n{}",
                log.lock().expect("log lock").join("\n")
            );
        };
        Process { child, addr, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything roverd wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    pub async fn status(&self) -> serde_json::Value {
        let (code, body) = request(self.addr, "GET", "/api/status", &[], Vec::new()).await;
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).expect("status is JSON")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
