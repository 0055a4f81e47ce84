//! The `roverd` command: parse the CLI, load and check the config, set up logging, then
//! hand over to `roverd::serve` until SIGINT or SIGTERM.

use anyhow::Context;
use clap::{Parser, Subcommand};
use roverd::config::Config;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Where the Debian package installs the config.
const SYSTEM_CONFIG: &str = "/etc/roverd/roverd.toml";
/// Shutdown must finish within 2 s (systemd and the user both wait on it).
const SHUTDOWN_BUDGET: Duration = Duration::from_millis(1800);

#[derive(Parser)]
#[command(
    name = "roverd",
    version,
    about = "Live video, sound and control for a Raspberry Pi robot, over WebRTC"
)]
struct Cli {
    /// Config file [default: /etc/roverd/roverd.toml if it exists, else built-in defaults]
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Address to serve on, overriding http.listen (e.g. 127.0.0.1:8080)
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Use the test pattern, the test tone and simulated motors, whatever the config says
    #[arg(long)]
    simulate: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Check a config file and report every problem in it
    CheckConfig {
        /// The file to check
        file: PathBuf,
    },
    /// List the cameras, microphones and GPIO, as lines to paste into roverd.toml
    Devices,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::CheckConfig { file }) = &cli.command {
        return check_config(file);
    }
    if let Some(Command::Devices) = &cli.command {
        use roverd::media::{camera, devices, mic_list};
        println!("# == Cameras ==");
        print!("{}", camera::format_camera_list(&devices::list_cameras()));
        println!("\n# == Microphones ==");
        print!(
            "{}",
            mic_list::format_microphones(&devices::list_microphones())
        );
        println!("\n# == GPIO (motors) ==");
        print!("{}", roverd::motors::describe_gpio());
        return ExitCode::SUCCESS;
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e:#}");
            eprintln!("roverd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(file: &Path) -> ExitCode {
    match Config::load(file) {
        Ok(_) => {
            println!("{}: ok", file.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(cli: &Cli) -> anyhow::Result<(Config, String)> {
    let (mut config, origin) = match &cli.config {
        Some(path) => (Config::load(path)?, path.display().to_string()),
        None if Path::new(SYSTEM_CONFIG).exists() => (
            Config::load(Path::new(SYSTEM_CONFIG))?,
            SYSTEM_CONFIG.to_owned(),
        ),
        None => (Config::default(), "built-in defaults".to_owned()),
    };
    if let Some(listen) = cli.listen {
        config.http.listen = listen;
    }
    if cli.simulate {
        config.simulate();
    }
    Ok((config, origin))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let (config, origin) = load_config(&cli)?;
    roverd::logging::init(config.log.level.as_str());
    log::info!(
        "config: {origin}{}",
        if cli.simulate { " (--simulate)" } else { "" }
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    runtime.block_on(async move {
        let listen = config.http.listen;
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| {
            format!("could not listen on {listen} (http.listen or --listen): is another roverd running?")
        })?;
        let https = match &config.http.tls {
            None => None,
            Some(tls) => {
                let listen = tls.listen;
                Some(tokio::net::TcpListener::bind(listen).await.with_context(|| {
                    format!("could not listen on {listen} for HTTPS (http.tls.listen): is the port in use?")
                })?)
            }
        };
        let listeners = roverd::Listeners { http: listener, https };
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            match shutdown_signal().await {
                Ok(name) => log::info!("{name} received"),
                Err(e) => log::error!("cannot watch for signals ({e}); stop roverd by killing it"),
            }
            stop_tx.send_replace(true);
        });
        let mut stop_for_serve = stop_rx.clone();
        let serve = roverd::serve_on(config, listeners, async move {
            let _ = stop_for_serve.wait_for(|s| *s).await;
        });
        tokio::pin!(serve);
        tokio::select! {
            result = &mut serve => return result.map_err(anyhow::Error::from),
            _ = stop_rx.wait_for(|s| *s) => {}
        }
        // Stopping has begun: give it a bounded time, then exit regardless.
        match tokio::time::timeout(SHUTDOWN_BUDGET, serve).await {
            Ok(result) => result.map_err(anyhow::Error::from),
            Err(_) => {
                log::warn!("shutdown took longer than {SHUTDOWN_BUDGET:?}; exiting anyway");
                Ok(())
            }
        }
    })?;
    // Peer tasks that are still winding down must not hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(())
}

async fn shutdown_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}
