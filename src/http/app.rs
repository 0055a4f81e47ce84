//! The state every request sees: the config, the pipeline, the peers and the motors, plus
//! what the routes enforce on their own (the request policy and the offer rate limit).

use crate::config::ValidConfig;
use crate::control::Control;
use crate::http::access::{machine_hostname, RequestPolicy};
use crate::media::{AudioStatus, Media, VideoStatus};
use crate::peers::{PeerPolicy, PeerStatus, Peers};
use crate::ratelimit::{Decision, PerClient};
use crate::rtc::RtcError;
use crate::session::Access;
use serde::Serialize;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The log target of the lines about peers, where they have always been.
const LOG: &str = "roverd::server";

#[derive(Debug, thiserror::Error)]
pub enum OfferError {
    #[error("the robot already has {0} viewers")]
    Full(usize),
    #[error("too many connection attempts from this address")]
    TooMany { retry_after: Duration },
    #[error(transparent)]
    Rtc(#[from] RtcError),
}

/// An answered offer: the answer's SDP, and the new peer's id and secret.
#[derive(Debug, Clone)]
pub struct Answered {
    pub answer: String,
    pub id: String,
    pub secret: String,
}

pub struct App {
    pub config: ValidConfig,
    pub media: Arc<Media>,
    pub peers: Arc<Peers>,
    pub control: Control,
    started: Instant,
    /// Tokens and the Host/Origin check.
    policy: RequestPolicy,
    /// `limits.offers_per_minute`, per client address.
    offers: Mutex<PerClient>,
}

/// The body of `GET /api/status`.
#[derive(Debug, Serialize)]
pub struct Status {
    pub version: &'static str,
    pub uptime_s: f64,
    pub video: VideoStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio: Option<AudioStatus>,
    pub peers: Vec<PeerStatus>,
    pub motors: MotorStatus,
}

#[derive(Debug, Serialize)]
pub struct MotorStatus {
    pub backend: &'static str,
    /// "software", "hardware", or "none" (sim).
    pub pwm: &'static str,
    pub left: f64,
    pub right: f64,
    pub estop: bool,
}

impl App {
    pub fn new(config: ValidConfig, media: Arc<Media>, control: Control) -> Self {
        let peers = Arc::new(Peers::new(config.http.max_peers));
        Self {
            media,
            peers,
            control,
            started: Instant::now(),
            policy: RequestPolicy::new(&config.http, machine_hostname()),
            offers: Mutex::new(PerClient::new(config.limits.offers_per_minute)),
            config,
        }
    }

    /// Tokens and the Host/Origin check, which every request passes first.
    pub fn policy(&self) -> &RequestPolicy {
        &self.policy
    }

    /// Answers an offer from `client` (its address, for the rate limit) that reached us
    /// on `local_ip`, and admits the peer with what `access` allows.
    pub async fn offer(
        &self,
        sdp: String,
        local_ip: IpAddr,
        client: IpAddr,
        access: Access,
    ) -> Result<Answered, OfferError> {
        let decision = crate::sync::lock(&self.offers).take(client, Instant::now());
        if let Decision::Refused { first, retry_after } = decision {
            if first {
                log::warn!(
                    target: LOG,
                    "refusing offers from {client}: more than {} a minute (limits.offers_per_minute)",
                    self.config.limits.offers_per_minute
                );
            }
            return Err(OfferError::TooMany { retry_after });
        }
        let slot = self
            .peers
            .reserve()
            .ok_or(OfferError::Full(self.config.http.max_peers))?;
        #[cfg(feature = "test-support")]
        slow_answer_hook().await;
        let peer = crate::rtc::answer(sdp, local_ip, &self.media).await?;
        let answer = peer.answer.clone();
        let (id, secret) = self.peers.admit(
            slot,
            peer,
            Arc::clone(&self.media),
            self.control.clone(),
            self.peer_policy(access),
        );
        log::info!(
            target: LOG,
            "peer {id} answered; {} connected or connecting",
            self.peers.len()
        );
        Ok(Answered { answer, id, secret })
    }

    pub fn status(&self) -> Status {
        let (video, audio) = self.media.status();
        let motors = self.control.state();
        Status {
            version: crate::VERSION,
            uptime_s: (self.started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            video,
            audio,
            peers: self.peers.list(motors.driver.as_deref()),
            motors: MotorStatus {
                backend: self.control.backend(),
                pwm: self.control.pwm(),
                left: motors.left,
                right: motors.right,
                estop: motors.estop,
            },
        }
    }

    /// Healthy once every encoder has produced output, while motor control lives.
    pub fn health(&self) -> Result<(), String> {
        if let Some(why) = self.control.failure() {
            return Err(format!("motor control failed: {why}"));
        }
        let (video, audio) = self.media.frames_encoded();
        if video == 0 {
            return Err("the video encoder has not produced a frame yet".into());
        }
        if self.media.has_audio() && audio == 0 {
            return Err("the audio encoder has not produced a frame yet".into());
        }
        Ok(())
    }

    fn peer_policy(&self, access: Access) -> PeerPolicy {
        let limits = &self.config.limits;
        PeerPolicy {
            channel: crate::rtc::ChannelPolicy {
                access,
                deadman_ms: self.config.control.deadman_ms,
                message_bytes: limits.message_bytes,
                messages_per_s: limits.messages_per_s,
            },
            connect_timeout: Duration::from_secs(limits.connect_timeout_s),
            idle_timeout: Duration::from_secs(limits.idle_timeout_s),
        }
    }
}

/// What systemd's readiness and watchdog look at: the same health as `/healthz`.
impl crate::notify::Pipeline for App {
    fn healthy(&self) -> bool {
        self.health().is_ok()
    }

    fn frames_encoded(&self) -> (u64, u64) {
        self.media.frames_encoded()
    }

    fn has_audio(&self) -> bool {
        self.media.has_audio()
    }
}

/// With `ROVERD_TEST_ANSWER_DELAY_MS=N` in the environment every answer takes N ms longer,
/// as on a loaded robot, so that a test can leave before its answer (a test hook; only
/// built with the `test-support` feature).
#[cfg(feature = "test-support")]
async fn slow_answer_hook() {
    const VAR: &str = "ROVERD_TEST_ANSWER_DELAY_MS";
    if let Some(ms) = std::env::var(VAR).ok().and_then(|v| v.parse::<u64>().ok()) {
        log::warn!(target: LOG, "{VAR}={ms}: answering {ms} ms late (a test hook)");
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}
