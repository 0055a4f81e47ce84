//! roverd as a process: load the config, apply the command-line overrides, set up logging,
//! bind the listeners, then serve until SIGINT or SIGTERM, with a bounded time to stop.

use crate::config::{Config, ConfigError, ValidConfig};
use crate::server::{serve_with_state, Listeners, ServeError};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the Debian package installs the config.
pub const SYSTEM_CONFIG: &str = "/etc/roverd/roverd.toml";
/// Shutdown must finish within 2 s (systemd and the user both wait on it).
const SHUTDOWN_BUDGET: Duration = Duration::from_millis(1800);
/// The process's own lines (the config, the signals) keep the command's log target.
const LOG: &str = "roverd";

/// What the command line says about running the daemon.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `--config`; without it, [`SYSTEM_CONFIG`] if it exists, else the defaults.
    pub config: Option<PathBuf>,
    /// `--listen`, overriding `http.listen`.
    pub listen: Option<SocketAddr>,
    /// `--simulate`: test sources and simulated motors, whatever the config says.
    pub simulate: bool,
}

/// Why roverd could not start or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("could not start the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error("could not listen on {addr} (http.listen or --listen): is another roverd running?")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("could not listen on {addr} for HTTPS (http.tls.listen): is the port in use?")]
    ListenHttps {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// Runs roverd until SIGINT or SIGTERM, then stops within [`SHUTDOWN_BUDGET`].
pub fn run(options: RunOptions) -> Result<(), RunError> {
    let (config, origin) = load_config(&options)?;
    crate::logging::init(config.log.level.as_str());
    log::info!(
        target: LOG,
        "config: {origin}{}",
        if options.simulate { " (--simulate)" } else { "" }
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    runtime.block_on(serve_until_signal(config))?;
    // Peer tasks that are still winding down must not hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(())
}

/// The config file that running with `config` (`--config`, if given) would read: the
/// same for `roverd motors-off`, so that it stops what roverd drives.
pub(crate) fn load_file_config(config: Option<&Path>) -> Result<ValidConfig, ConfigError> {
    match config {
        Some(path) => Config::load(path),
        None if Path::new(SYSTEM_CONFIG).exists() => Config::load(Path::new(SYSTEM_CONFIG)),
        None => Config::default().validate(),
    }
}

/// The config to run with and where it came from, for the log.
fn load_config(options: &RunOptions) -> Result<(ValidConfig, String), ConfigError> {
    let (mut config, origin) = match &options.config {
        Some(path) => (Config::load(path)?, path.display().to_string()),
        None if Path::new(SYSTEM_CONFIG).exists() => (
            Config::load(Path::new(SYSTEM_CONFIG))?,
            SYSTEM_CONFIG.to_owned(),
        ),
        None => (
            Config::default().validate()?,
            "built-in defaults".to_owned(),
        ),
    };
    if let Some(listen) = options.listen {
        config = config.with_listen(listen)?;
    }
    if options.simulate {
        config.simulate();
    }
    Ok((config, origin))
}

async fn serve_until_signal(config: ValidConfig) -> Result<(), RunError> {
    let addr = config.http.listen;
    let http = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Listen { addr, source })?;
    let https = match &config.http.tls {
        None => None,
        Some(tls) => {
            let addr = tls.listen;
            let bound = tokio::net::TcpListener::bind(addr).await;
            Some(bound.map_err(|source| RunError::ListenHttps { addr, source })?)
        }
    };
    // The handlers are in place before anything says "listening": a SIGTERM that comes
    // right after must stop roverd cleanly, not kill it with the signal's default action.
    let signals = watch_signals();
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        match signals {
            Ok(signals) => {
                let name = shutdown_signal(signals).await;
                log::info!(target: LOG, "{name} received");
                stop_tx.send_replace(true);
            }
            Err(e) => {
                log::error!(
                    target: LOG,
                    "cannot watch for signals ({e}); stop roverd by killing it"
                );
                // Serve on: a dropped sender would read as a request to stop.
                let _keep = stop_tx;
                std::future::pending::<()>().await;
            }
        }
    });
    let mut stop_for_serve = stop_rx.clone();
    // The state directory keeps a latched e-stop across restarts.
    let state_dir = match crate::tls::state_dir() {
        Ok(dir) => Some(dir),
        Err(e) => {
            log::warn!(target: LOG, "{e}: a latched e-stop will not survive a restart");
            None
        }
    };
    let serve = serve_with_state(config, Listeners { http, https }, state_dir, async move {
        let _ = stop_for_serve.wait_for(|s| *s).await;
    });
    tokio::pin!(serve);
    tokio::select! {
        result = &mut serve => return Ok(result?),
        _ = stop_rx.wait_for(|s| *s) => {}
    }
    // Stopping has begun: give it a bounded time, then exit regardless.
    match tokio::time::timeout(SHUTDOWN_BUDGET, serve).await {
        Ok(result) => Ok(result?),
        Err(_) => {
            log::warn!(
                target: LOG,
                "shutdown took longer than {SHUTDOWN_BUDGET:?}; exiting anyway"
            );
            Ok(())
        }
    }
}

type Signals = (tokio::signal::unix::Signal, tokio::signal::unix::Signal);

/// SIGTERM and SIGINT, caught from the moment this returns.
fn watch_signals() -> std::io::Result<Signals> {
    use tokio::signal::unix::{signal, SignalKind};
    Ok((
        signal(SignalKind::terminate())?,
        signal(SignalKind::interrupt())?,
    ))
}

async fn shutdown_signal((mut term, mut int): Signals) -> &'static str {
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
