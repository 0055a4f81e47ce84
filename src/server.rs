//! The running daemon: [`serve`] builds the motors, the media pipeline and the request
//! state ([`crate::http::App`]), accepts connections on the listeners, and shuts it all
//! down in order.
//!
//! Shutdown order matters: stop accepting, close every peer, then stop the encoders, so
//! no peer is left sending from a pipeline that is gone.

use crate::config::ValidConfig;
use crate::connlimit::{ConnGuard, ConnLimits};
use crate::control::Control;
use crate::http::{serve_connection, App, HEADER_TIMEOUT};
use crate::media::{Media, MediaError};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
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

/// Out of file descriptors and the like: wait rather than spin.
async fn accept_failed(e: std::io::Error) {
    log::warn!("accepting a connection failed: {e}");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// `limits.max_connections` and `limits.max_connections_per_address`, checked before any
/// work is done for a connection: a refused one is dropped (closed) here, and a flood of
/// them gives one log line.
fn admit(limits: &Arc<ConnLimits>, remote: std::net::SocketAddr) -> Option<ConnGuard> {
    match limits.admit(remote.ip(), Instant::now()) {
        Ok(guard) => Some(guard),
        Err(refused) => {
            if refused.first {
                log::warn!(
                    "closing new connections from {}: {}; more refusals in this flood are not logged",
                    remote.ip(),
                    refused.why
                );
            }
            None
        }
    }
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

/// Runs roverd on `listener` (plain HTTP only) until `shutdown` completes, then closes
/// every peer and stops the pipeline. Tests call this with a listener on 127.0.0.1:0.
pub async fn serve(
    config: ValidConfig,
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
    config: ValidConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    serve_with_state(config, listeners, None, shutdown).await
}

/// [`serve_on`] for the daemon: with `state_dir`, a latched e-stop is kept there
/// ([`crate::control::ESTOP_LATCH_FILE`]) and applied again when roverd restarts. Tests
/// that run roverd in their own process use [`serve_on`], which keeps nothing.
pub async fn serve_with_state(
    config: ValidConfig,
    listeners: Listeners,
    state_dir: Option<PathBuf>,
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
    let latch = state_dir.map(|dir| dir.join(crate::control::ESTOP_LATCH_FILE));
    let control = Control::start_latched(&config, latch)?;
    #[cfg(feature = "test-support")]
    crate::control::hooks::pretend_driver(&control);
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
    let conns = ConnLimits::new(
        app.config.limits.max_connections,
        app.config.limits.max_connections_per_address,
    );
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let Some(guard) = admit(&conns, remote) else { continue };
                    let local = stream.local_addr().unwrap_or(addr);
                    let app = Arc::clone(&app);
                    tokio::spawn(async move {
                        serve_connection(app, stream, local, remote).await;
                        drop(guard);
                    });
                }
                Err(e) => accept_failed(e).await,
            },
            accepted = accept_https(&https) => match accepted {
                Ok((stream, remote, acceptor)) => {
                    let Some(guard) = admit(&conns, remote) else { continue };
                    let local = stream.local_addr().unwrap_or(addr);
                    let app = Arc::clone(&app);
                    tokio::spawn(async move {
                        let _guard = guard;
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
