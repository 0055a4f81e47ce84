//! The `roverd` command: parse the CLI, then hand over to the library (`roverd::run` until
//! SIGINT or SIGTERM, or one of the subcommands).

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Stop the motors the config names (pins to their stopped level, PWM off) and exit;
    /// systemd runs it before roverd starts and after it exits, however it exits
    MotorsOff,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let options = match cli.command {
        Some(Command::CheckConfig { file }) => return roverd::check_config(&file),
        Some(Command::MotorsOff) => return roverd::motors_off(cli.config.as_deref()),
        Some(Command::Devices) => {
            print!("{}", roverd::devices());
            return ExitCode::SUCCESS;
        }
        None => roverd::RunOptions {
            config: cli.config,
            listen: cli.listen,
            simulate: cli.simulate,
        },
    };
    match roverd::run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // anyhow's `{:#}` prints the causes after the error, e.g. the io error of a path.
            let e = anyhow::Error::new(e);
            log::error!("{e:#}");
            eprintln!("roverd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
