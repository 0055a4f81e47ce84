//! The subcommands besides running: `roverd check-config FILE`, `roverd devices` and
//! `roverd motors-off`.

use crate::config::Config;
use std::path::Path;
use std::process::ExitCode;

/// `roverd check-config FILE`: `FILE: ok` on stdout, or every problem on stderr.
pub fn check_config(file: &Path) -> ExitCode {
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

/// `roverd devices`: the cameras, microphones and GPIO, as lines to paste into roverd.toml.
pub fn devices() -> String {
    use crate::media::{camera, devices, mic_list};
    let mut text = String::from("# == Cameras ==\n");
    text += &camera::format_camera_list(&devices::list_cameras());
    text += "\n# == Microphones ==\n";
    text += &mic_list::format_microphones(&devices::list_microphones());
    text += "\n# == GPIO (motors) ==\n";
    text += &crate::motors::describe_gpio();
    text
}

/// `roverd motors-off [--config FILE]`: stops whatever the config names (the config that
/// running would read) and exits, starting nothing else. The systemd unit runs it before
/// roverd starts and after it exits however it exits, since GPIO levels outlive the
/// process: a roverd killed mid-drive leaves the motors turning.
pub fn motors_off(config: Option<&Path>) -> ExitCode {
    let result = crate::daemon::load_file_config(config)
        .map_err(anyhow::Error::new)
        .and_then(|config| crate::motors::off(&config.motors).map_err(anyhow::Error::new));
    match result {
        Ok(done) => {
            println!("roverd motors-off: {done}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("roverd motors-off: {e:#}");
            ExitCode::FAILURE
        }
    }
}
