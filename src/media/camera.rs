//! The cameras as roverd reports and picks them, whatever the backend: what a device
//! offers ([`CameraInfo`]), the listing `roverd devices` prints, and the choice for
//! `camera.device = "auto"`. Pure; the V4L2 backend (`media::v4l_camera`) fills the list.

use crate::media::convert::{choose_mode, Mode, PixelFormat};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

/// What `roverd devices` says about cameras when it was built without a camera backend.
const NOT_BUILT: &str = "this roverd was built without V4L2 camera support (the cargo feature \
    camera-v4l): it lists no cameras, and camera.device can only be \"test\" or \"auto\" (the \
    test pattern)\n";

/// One capture device, as `roverd devices` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraInfo {
    pub path: PathBuf,
    pub index: u32,
    pub name: String,
    /// The modes roverd can use (YUYV, NV12, MJPEG), in the driver's order.
    pub modes: Vec<Mode>,
    /// Why the device cannot be used, when it cannot.
    pub problem: Option<String>,
}

impl CameraInfo {
    pub fn can_capture(&self) -> bool {
        self.problem.is_none() && !self.modes.is_empty()
    }
}

/// The camera list as `roverd devices` prints it: each camera with lines to paste into
/// roverd.toml, then its modes grouped by format and size. Says so plainly when there are
/// none.
pub fn format_camera_list(cameras: &[CameraInfo]) -> String {
    let mut out = String::new();
    if cameras.is_empty() {
        if !cfg!(feature = "camera-v4l") {
            out.push_str(NOT_BUILT);
            return out;
        }
        out.push_str("no cameras found (looked at /dev/video*)\n");
        return out;
    }
    for cam in cameras {
        let name = if cam.name.is_empty() { "?" } else { &cam.name };
        let _ = writeln!(out, "# {}: {name}", cam.path.display());
        if let Some(problem) = &cam.problem {
            let _ = writeln!(out, "#   cannot be used: {problem}");
            continue;
        }
        let _ = writeln!(out, "[camera]\ndevice = \"{}\"", cam.path.display());
        if let Some(best) = choose_mode(&cam.modes, 640, 480, 30) {
            let _ = writeln!(
                out,
                "width = {}\nheight = {}\nfps = {}",
                best.width, best.height, best.fps
            );
        }
        let mut grouped: BTreeMap<(PixelFormat, u32, u32), Vec<u32>> = BTreeMap::new();
        for m in &cam.modes {
            grouped
                .entry((m.format, m.width, m.height))
                .or_default()
                .push(m.fps);
        }
        for ((format, w, h), mut rates) in grouped {
            rates.sort_unstable_by(|a, b| b.cmp(a));
            rates.dedup();
            let rates: Vec<String> = rates.iter().map(u32::to_string).collect();
            let _ = writeln!(out, "#   {format} {w}x{h} @ {} fps", rates.join(", "));
        }
    }
    out
}

/// Picks the device for `camera.device = "auto"`: the first that can capture in a format
/// roverd converts. `Err` says why there is none, for the log and the status.
pub fn auto_device(cameras: &[CameraInfo]) -> Result<PathBuf, String> {
    cameras
        .iter()
        .find(|c| c.can_capture())
        .map(|c| c.path.clone())
        .ok_or_else(|| {
            let looked: Vec<String> = cameras
                .iter()
                .map(|c| {
                    format!(
                        "{}: {}",
                        c.path.display(),
                        c.problem.as_deref().unwrap_or("no usable format")
                    )
                })
                .collect();
            if looked.is_empty() {
                "camera.device = \"auto\" found no camera (looked at /dev/video*)".into()
            } else {
                format!(
                    "camera.device = \"auto\" found no camera that can capture ({})",
                    looked.join("; ")
                )
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cam(path: &str, modes: Vec<Mode>, problem: Option<&str>) -> CameraInfo {
        CameraInfo {
            path: path.into(),
            index: 0,
            name: "USB Camera".into(),
            modes,
            problem: problem.map(str::to_owned),
        }
    }

    fn mode(format: PixelFormat, width: u32, height: u32, fps: u32) -> Mode {
        Mode {
            format,
            width,
            height,
            fps,
        }
    }

    #[test]
    #[cfg(feature = "camera-v4l")]
    fn no_cameras_is_said_plainly() {
        assert_eq!(
            format_camera_list(&[]),
            "no cameras found (looked at /dev/video*)\n"
        );
        let e = auto_device(&[]).unwrap_err();
        assert!(e.contains("found no camera (looked at /dev/video*)"), "{e}");
    }

    #[test]
    fn the_listing_is_pasteable_toml_with_the_modes_as_comments() {
        let cams = [
            cam(
                "/dev/video0",
                vec![
                    mode(PixelFormat::Yuyv, 640, 480, 30),
                    mode(PixelFormat::Yuyv, 640, 480, 15),
                    mode(PixelFormat::Mjpeg, 1280, 720, 30),
                ],
                None,
            ),
            cam("/dev/video1", vec![], Some("not a capture device")),
        ];
        let text = format_camera_list(&cams);
        assert!(text.contains("#   YUYV 640x480 @ 30, 15 fps\n"), "{text}");
        assert!(text.contains("#   MJPG 1280x720 @ 30 fps\n"), "{text}");
        assert!(
            text.contains("# /dev/video1: USB Camera\n#   cannot be used: not a capture device\n")
        );
        // With the comment lines dropped, what is left parses as roverd's camera section.
        let toml: String = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        let config = crate::config::Config::from_toml_str(&toml).unwrap();
        assert_eq!(
            config.camera.device,
            crate::config::CameraDevice::Path("/dev/video0".into())
        );
        assert_eq!((config.camera.width, config.camera.fps), (640, 30));
        assert_eq!(auto_device(&cams).unwrap(), PathBuf::from("/dev/video0"));
        let e = auto_device(&cams[1..]).unwrap_err();
        assert!(e.contains("/dev/video1: not a capture device"), "{e}");
    }

    #[test]
    #[cfg(not(feature = "camera-v4l"))]
    fn without_the_backend_the_listing_says_so() {
        let text = format_camera_list(&[]);
        assert!(text.contains("built without V4L2 camera support"), "{text}");
        assert!(text.contains("camera-v4l"), "{text}");
    }
}
