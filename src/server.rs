//! The running daemon: [`serve`] owns the media pipeline, the peers and the HTTP listener
//! from start to shutdown. [`App`] is the state every request sees.
//!
//! Shutdown order matters: stop accepting, close every peer, then stop the encoders, so
//! no peer is left sending from a pipeline that is gone.

use crate::config::Config;
use crate::control::Control;
use crate::media::{AudioStatus, Media, MediaError, VideoStatus};
use crate::peers::{PeerStatus, Peers};
use crate::rtc::RtcError;
use hyper::header::HeaderValue;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("could not start the media pipeline: {0}")]
    Media(#[from] MediaError),
    #[error("could not start the motors: {0}")]
    Motors(#[from] crate::motors::MotorError),
    #[error("could not read the listening address: {0}")]
    Listener(std::io::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum OfferError {
    #[error("the robot already has {0} viewers")]
    Full(usize),
    #[error(transparent)]
    Rtc(#[from] RtcError),
}

pub struct App {
    pub config: Config,
    pub media: Arc<Media>,
    pub peers: Arc<Peers>,
    pub control: Control,
    started: Instant,
    /// The machine's own names, for the Host check: its hostname and hostname.local.
    own_names: Vec<String>,
}

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
    pub left: f64,
    pub right: f64,
    pub estop: bool,
}

impl App {
    pub fn new(config: Config, media: Arc<Media>, control: Control) -> Self {
        let peers = Arc::new(Peers::new(config.http.max_peers));
        let own_names = machine_hostname()
            .map(|h| vec![format!("{h}.local"), h])
            .unwrap_or_default();
        Self {
            config,
            media,
            peers,
            control,
            started: Instant::now(),
            own_names,
        }
    }

    pub async fn offer(
        &self,
        sdp: String,
        local_ip: IpAddr,
    ) -> Result<(String, String), OfferError> {
        let slot = self
            .peers
            .reserve()
            .ok_or(OfferError::Full(self.config.http.max_peers))?;
        let peer = crate::rtc::answer(sdp, local_ip, &self.media).await?;
        let answer = peer.answer.clone();
        let id = self.peers.admit(
            slot,
            peer,
            Arc::clone(&self.media),
            self.control.clone(),
            self.config.control.deadman_ms,
        );
        log::info!(
            "peer {id} answered; {} connected or connecting",
            self.peers.len()
        );
        Ok((answer, id))
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
                left: motors.left,
                right: motors.right,
                estop: motors.estop,
            },
        }
    }

    /// Healthy once every encoder has produced output.
    pub fn health(&self) -> Result<(), String> {
        let (video, audio) = self.media.frames_encoded();
        if video == 0 {
            return Err("the video encoder has not produced a frame yet".into());
        }
        if self.media.has_audio() && audio == 0 {
            return Err("the audio encoder has not produced a frame yet".into());
        }
        Ok(())
    }

    pub fn token_ok(&self, header: Option<&HeaderValue>) -> bool {
        let Some(expected) = &self.config.http.token else {
            return true;
        };
        let given = header
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or("");
        given.as_bytes().ct_eq(expected.as_bytes()).into()
    }

    pub fn host_allowed(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.');
        name.parse::<IpAddr>().is_ok()
            || name.eq_ignore_ascii_case("localhost")
            || self.own_names.iter().any(|n| n.eq_ignore_ascii_case(name))
            || self
                .config
                .http
                .allowed_hosts
                .iter()
                .any(|n| n.eq_ignore_ascii_case(name))
    }
}

fn machine_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// Runs roverd on `listener` until `shutdown` completes, then closes every peer and stops
/// the pipeline. Tests call this with a listener on 127.0.0.1:0.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    // Motors first: a GPIO board that cannot be opened stops roverd before anything streams.
    let control = Control::start(&config)?;
    let media = Arc::new(Media::start(&config)?);
    let app = Arc::new(App::new(config, Arc::clone(&media), control));
    let addr = listener.local_addr().map_err(ServeError::Listener)?;
    log::info!("roverd {} listening on http://{addr}/", crate::VERSION);
    // READY=1 and the watchdog pings for systemd; a no-op when not run by systemd.
    let notifier = tokio::spawn(crate::notify::supervise(Arc::clone(&app), addr));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, remote) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors and the like: wait rather than spin.
                        log::warn!("accepting a connection failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let local = stream.local_addr().unwrap_or(addr);
                let app = Arc::clone(&app);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let app = Arc::clone(&app);
                        async move { Ok::<_, std::convert::Infallible>(crate::http::handle(app, req, local).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        // A client that trickles its headers cannot hold a connection forever.
                        .header_read_timeout(Duration::from_secs(10))
                        .serve_connection(TokioIo::new(stream), service);
                    if let Err(e) = conn.await {
                        log::debug!("connection from {remote}: {e}");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    notifier.abort();
    let _ = notifier.await; // no watchdog ping after STOPPING=1
    crate::notify::stopping();
    log::info!(
        "shutting down: motors to 0, closing {} peers",
        app.peers.len()
    );
    app.control.halt().await;
    drop(listener);
    app.peers.close_all().await;
    // Joining waits on device calls: keep it off the async threads, and bounded.
    let stopping = Arc::clone(&media);
    let _ = tokio::task::spawn_blocking(move || stopping.stop(Duration::from_secs(1))).await;
    log::info!("stopped");
    Ok(())
}
