//! The running daemon: [`serve`] owns the media pipeline, the peers and the HTTP listener
//! from start to shutdown. [`App`] is the state every request sees.
//!
//! Shutdown order matters: stop accepting, close every peer, then stop the encoders, so
//! no peer is left sending from a pipeline that is gone.

use crate::config::Config;
use crate::control::Control;
use crate::media::{AudioStatus, Media, MediaError, VideoStatus};
use crate::peers::{PeerPolicy, PeerStatus, Peers};
use crate::ratelimit::{Decision, PerClient};
use crate::rtc::RtcError;
use crate::session::Access;
use hyper::header::HeaderValue;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
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
    #[error("could not set up HTTPS (http.tls): {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// Where roverd listens: plain HTTP always, HTTPS when `http.tls` is set.
pub struct Listeners {
    pub http: TcpListener,
    /// Bound on `http.tls.listen`; ignored unless `http.tls` is set.
    pub https: Option<TcpListener>,
}

#[derive(Debug, thiserror::Error)]
pub enum OfferError {
    #[error("the robot already has {0} viewers")]
    Full(usize),
    #[error("too many connection attempts from this address")]
    TooMany { retry_after: Duration },
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
    /// `limits.offers_per_minute`, per client address.
    offers: Mutex<PerClient>,
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
            media,
            peers,
            control,
            started: Instant::now(),
            own_names,
            offers: Mutex::new(PerClient::new(config.limits.offers_per_minute)),
            config,
        }
    }

    /// Answers an offer from `client` (its address, for the rate limit) that reached us
    /// on `local_ip`, and admits the peer with what `access` allows.
    pub async fn offer(
        &self,
        sdp: String,
        local_ip: IpAddr,
        client: IpAddr,
        access: Access,
    ) -> Result<(String, String), OfferError> {
        let decision = crate::sync::lock(&self.offers).take(client, Instant::now());
        if let Decision::Refused { first, retry_after } = decision {
            if first {
                log::warn!(
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
        let peer = crate::rtc::answer(sdp, local_ip, &self.media).await?;
        let answer = peer.answer.clone();
        let id = self.peers.admit(
            slot,
            peer,
            Arc::clone(&self.media),
            self.control.clone(),
            self.peer_policy(access),
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

    /// What the `Authorization` header allows: `None` when a token is configured and the
    /// header holds neither it nor the viewer token. Both are compared in constant time,
    /// and both always, so the timing tells nothing about which one nearly matched.
    pub fn access(&self, header: Option<&HeaderValue>) -> Option<Access> {
        let Some(full) = &self.config.http.token else {
            return Some(Access::Full);
        };
        let given = header
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or("")
            .as_bytes();
        let is_full: bool = given.ct_eq(full.as_bytes()).into();
        let is_viewer: bool = match &self.config.http.viewer_token {
            Some(viewer) => given.ct_eq(viewer.as_bytes()).into(),
            None => false,
        };
        match (is_full, is_viewer) {
            (true, _) => Some(Access::Full),
            (false, true) => Some(Access::Viewer),
            (false, false) => None,
        }
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

/// How long a client may take to send its request headers (or its TLS handshake).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Out of file descriptors and the like: wait rather than spin.
async fn accept_failed(e: std::io::Error) {
    log::warn!("accepting a connection failed: {e}");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// The next HTTPS connection, or never when there is no HTTPS.
async fn accept_https(
    https: &Option<(TcpListener, tokio_rustls::TlsAcceptor)>,
) -> std::io::Result<(
    tokio::net::TcpStream,
    std::net::SocketAddr,
    tokio_rustls::TlsAcceptor,
)> {
    match https {
        Some((listener, acceptor)) => {
            let (stream, remote) = listener.accept().await?;
            Ok((stream, remote, acceptor.clone()))
        }
        None => std::future::pending().await,
    }
}

/// Serves HTTP/1.1 on one connection, plain or TLS.
async fn serve_connection<S>(
    app: Arc<App>,
    stream: S,
    local: std::net::SocketAddr,
    remote: std::net::SocketAddr,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let app = Arc::clone(&app);
        async move {
            Ok::<_, std::convert::Infallible>(crate::http::handle(app, req, local, remote).await)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // A client that trickles its headers cannot hold a connection forever.
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(e) = conn.await {
        log::debug!("connection from {remote}: {e}");
    }
}

fn machine_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// Runs roverd on `listener` (plain HTTP only) until `shutdown` completes, then closes
/// every peer and stops the pipeline. Tests call this with a listener on 127.0.0.1:0.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let listeners = Listeners {
        http: listener,
        https: None,
    };
    serve_on(config, listeners, shutdown).await
}

/// [`serve`] on HTTP and, when `http.tls` is set and `listeners.https` given, HTTPS.
pub async fn serve_on(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let Listeners {
        http: listener,
        https,
    } = listeners;
    // The certificate before anything else that could fail late: a bad path is a start error.
    let https = match (&config.http.tls, https) {
        (Some(tls), Some(https)) => {
            let acceptor = crate::tls::acceptor(tls, &crate::tls::state_dir()?)?;
            Some((https, acceptor))
        }
        _ => None,
    };
    // Motors first: a GPIO board that cannot be opened stops roverd before anything streams.
    let control = Control::start(&config)?;
    let media = Arc::new(Media::start(&config)?);
    let app = Arc::new(App::new(config, Arc::clone(&media), control));
    let addr = listener.local_addr().map_err(ServeError::Listener)?;
    log::info!("roverd {} listening on http://{addr}/", crate::VERSION);
    if let Some((https, _)) = &https {
        let tls_addr = https.local_addr().map_err(ServeError::Listener)?;
        log::info!("roverd {} listening on https://{tls_addr}/", crate::VERSION);
    }
    // READY=1 and the watchdog pings for systemd; a no-op when not run by systemd.
    let notifier = tokio::spawn(crate::notify::supervise(Arc::clone(&app), addr));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let local = stream.local_addr().unwrap_or(addr);
                    tokio::spawn(serve_connection(Arc::clone(&app), stream, local, remote));
                }
                Err(e) => accept_failed(e).await,
            },
            accepted = accept_https(&https) => match accepted {
                Ok((stream, remote, acceptor)) => {
                    let local = stream.local_addr().unwrap_or(addr);
                    let app = Arc::clone(&app);
                    tokio::spawn(async move {
                        // A client that never finishes its handshake cannot hold a task.
                        match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => serve_connection(app, tls, local, remote).await,
                            Ok(Err(e)) => log::debug!("TLS handshake with {remote} failed: {e}"),
                            Err(_) => log::debug!("TLS handshake with {remote} timed out"),
                        }
                    });
                }
                Err(e) => accept_failed(e).await,
            },
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
