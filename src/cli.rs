//! The subcommands besides running: `roverd check-config FILE` and `roverd devices`.

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
