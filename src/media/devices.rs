//! The sources `camera.device` and `audio.device` name, in this build.
//!
//! The device backends are cargo features (`camera-v4l`, `mic-alsa`) and this is the one
//! place that knows which were built. "auto" without its backend is the test source, and
//! the log and the status say why; a config that names a device whose backend was left
//! out is an error at start ([`NotBuilt`]), never a silent stand-in.

use crate::config::{AudioDevice, CameraDevice};
use crate::media::audio::{AudioSource, TestTone};
use crate::media::camera::CameraInfo;
use crate::media::fallback::{CameraStatus, SharedCameraStatus};
use crate::media::mic_list::MicInfo;
use crate::media::video::{TestPattern, VideoSettings, VideoSource};
use crate::sync::lock;

/// A device named in the config whose backend this binary was built without.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{key} = {value} needs {support}, which this roverd was built without (the cargo feature \
     {feature}); set {key} to {instead}, or build roverd with `--features {feature}`"
)]
pub struct NotBuilt {
    /// The config key: `camera.device`, `audio.device`.
    pub key: &'static str,
    /// Its value, as it would be written in the file.
    pub value: String,
    /// What it needs, in words: "V4L2 camera support".
    pub support: &'static str,
    pub feature: &'static str,
    /// The values that work without it.
    pub instead: &'static str,
}

/// Every camera there is, for `roverd devices` (none without a camera backend; the
/// listing then says why).
pub fn list_cameras() -> Vec<CameraInfo> {
    #[cfg(feature = "camera-v4l")]
    return crate::media::v4l_camera::list_cameras();
    #[cfg(not(feature = "camera-v4l"))]
    Vec::new()
}

/// Every microphone there is, for `roverd devices` (none without a microphone backend;
/// the listing then says why).
pub fn list_microphones() -> Vec<MicInfo> {
    #[cfg(feature = "mic-alsa")]
    return crate::media::mic::list_microphones();
    #[cfg(not(feature = "mic-alsa"))]
    Vec::new()
}

/// The video source `camera.device` names. A camera that cannot be used is the "camera
/// lost" slate (retried every 2 s), and "auto" without a camera is the test pattern;
/// `status` says which, and why. The only error is a camera this build cannot drive.
pub fn open_video_source(
    device: &CameraDevice,
    settings: &VideoSettings,
    status: &SharedCameraStatus,
) -> Result<Box<dyn VideoSource>, NotBuilt> {
    let source = open_video(device, settings, status)?;
    #[cfg(feature = "test-support")]
    let source = crate::media::hooks::stalling_video(source);
    Ok(source)
}

fn open_video(
    device: &CameraDevice,
    settings: &VideoSettings,
    status: &SharedCameraStatus,
) -> Result<Box<dyn VideoSource>, NotBuilt> {
    let pattern = |note: String| -> Box<dyn VideoSource> {
        *lock(status) = CameraStatus {
            state: "off",
            note: Some(note),
            ..CameraStatus::default()
        };
        Box::new(TestPattern::new(settings.fps))
    };
    #[cfg(feature = "test-support")]
    if let Some(source) = crate::media::hooks::failing_camera(settings, status) {
        return Ok(source);
    }
    let path = match device {
        CameraDevice::Test => return Ok(pattern("camera.device = \"test\"".into())),
        CameraDevice::Auto => match auto_camera() {
            Ok(path) => {
                log::info!("camera.device = \"auto\": using {}", path.display());
                path
            }
            Err(reason) => {
                log::info!("{reason}; streaming the test pattern");
                return Ok(pattern(reason));
            }
        },
        CameraDevice::Path(path) => path.clone(),
        CameraDevice::Index(index) => std::path::PathBuf::from(format!("/dev/video{index}")),
    };
    camera_source(device, path, settings, status)
}

/// The camera "auto" picks, or why there is none.
fn auto_camera() -> Result<std::path::PathBuf, String> {
    if cfg!(feature = "camera-v4l") {
        crate::media::camera::auto_device(&list_cameras())
    } else {
        Err(
            "camera.device = \"auto\" has no camera to look for: this roverd was built \
             without V4L2 camera support (the cargo feature camera-v4l)"
                .into(),
        )
    }
}

#[cfg(feature = "camera-v4l")]
fn camera_source(
    _device: &CameraDevice,
    path: std::path::PathBuf,
    settings: &VideoSettings,
    status: &SharedCameraStatus,
) -> Result<Box<dyn VideoSource>, NotBuilt> {
    use crate::media::fallback::{CameraSource, Feed, Opener, Timing};
    use crate::media::v4l_camera::{start_feed, Request};
    let request = Request {
        width: settings.width,
        height: settings.height,
        fps: settings.fps,
    };
    let feed_path = path.clone();
    let open: Opener = Box::new(move || {
        start_feed(&feed_path, request)
            .map(|feed| Box::new(feed) as Box<dyn Feed>)
            .map_err(|e| e.to_string())
    });
    Ok(Box::new(CameraSource::new(
        path.display().to_string(),
        open,
        Timing::new(settings.fps),
        std::sync::Arc::clone(status),
    )))
}

#[cfg(not(feature = "camera-v4l"))]
fn camera_source(
    device: &CameraDevice,
    _path: std::path::PathBuf,
    _settings: &VideoSettings,
    _status: &SharedCameraStatus,
) -> Result<Box<dyn VideoSource>, NotBuilt> {
    let value = match device {
        CameraDevice::Index(index) => index.to_string(),
        CameraDevice::Path(path) => format!("{:?}", path.display().to_string()),
        CameraDevice::Auto => "\"auto\"".into(),
        CameraDevice::Test => "\"test\"".into(),
    };
    Err(NotBuilt {
        key: "camera.device",
        value,
        support: "V4L2 camera support",
        feature: "camera-v4l",
        instead: "\"test\" or \"auto\" (the test pattern)",
    })
}

/// The audio source `audio.device` names; `None` for "none". `"auto"` takes the default
/// ALSA capture device if it opens, else the test tone; a named device that does not open
/// yet is kept, sending silence and retrying, since that is the microphone the user asked
/// for. The only error is a microphone this build cannot drive.
pub fn open_audio_source(device: &AudioDevice) -> Result<Option<Box<dyn AudioSource>>, NotBuilt> {
    match device {
        AudioDevice::None => {
            log::info!("audio.device = \"none\": no audio track");
            Ok(None)
        }
        AudioDevice::Test => Ok(Some(Box::new(TestTone::new()))),
        AudioDevice::Auto => Ok(Some(auto_microphone())),
        AudioDevice::Name(name) => named_microphone(name).map(Some),
    }
}

#[cfg(feature = "mic-alsa")]
fn auto_microphone() -> Box<dyn AudioSource> {
    use crate::media::mic::{MicSource, DEFAULT_DEVICE};
    match MicSource::open(DEFAULT_DEVICE, wanted_format()) {
        Ok(m) => {
            log::info!(
                "audio.device = \"auto\": capturing from the default microphone ({})",
                show_format(&m)
            );
            Box::new(m)
        }
        Err(e) => {
            log::info!(
                "audio.device = \"auto\": no usable microphone ({e}); streaming the test tone"
            );
            Box::new(TestTone::new())
        }
    }
}

#[cfg(not(feature = "mic-alsa"))]
fn auto_microphone() -> Box<dyn AudioSource> {
    log::info!(
        "audio.device = \"auto\": this roverd was built without ALSA microphone support (the \
         cargo feature mic-alsa); streaming the test tone"
    );
    Box::new(TestTone::new())
}

#[cfg(feature = "mic-alsa")]
fn named_microphone(name: &str) -> Result<Box<dyn AudioSource>, NotBuilt> {
    use crate::media::mic::MicSource;
    let want = wanted_format();
    Ok(match MicSource::open(name, want) {
        Ok(m) => {
            log::info!("audio.device = {name:?}: capturing ({})", show_format(&m));
            Box::new(m)
        }
        Err(e) => {
            log::warn!("audio.device = {name:?}: {e}; sending silence until it opens");
            Box::new(MicSource::retrying(name, want, e))
        }
    })
}

#[cfg(not(feature = "mic-alsa"))]
fn named_microphone(name: &str) -> Result<Box<dyn AudioSource>, NotBuilt> {
    Err(NotBuilt {
        key: "audio.device",
        value: format!("{name:?}"),
        support: "ALSA microphone support",
        feature: "mic-alsa",
        instead: "\"auto\" or \"test\" (the test tone) or \"none\"",
    })
}

#[cfg(feature = "mic-alsa")]
fn show_format(m: &crate::media::mic::MicSource) -> String {
    m.input_format().map_or(String::new(), |f| {
        format!(
            "{} Hz, {} channels, {}",
            f.sample_rate, f.channels, f.sample_format
        )
    })
}

/// The format to ask the microphone for: roverd chooses, unless a test hook says.
#[cfg(feature = "mic-alsa")]
fn wanted_format() -> Option<crate::media::mic_format::Want> {
    #[cfg(feature = "test-support")]
    return crate::media::hooks::audio_format();
    #[cfg(not(feature = "test-support"))]
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> VideoSettings {
        VideoSettings {
            width: 640,
            height: 480,
            fps: 30,
            bitrate_kbps: 1000,
            keyframe_interval_s: 2.0,
        }
    }

    #[test]
    fn the_test_pattern_says_why_in_the_status() {
        let status = SharedCameraStatus::default();
        let source = open_video(&CameraDevice::Test, &settings(), &status).expect("opens");
        assert_eq!(source.name(), "test");
        let status = lock(&status).clone();
        assert_eq!(status.state, "off");
        assert_eq!(status.note.as_deref(), Some("camera.device = \"test\""));
    }

    #[test]
    #[cfg(not(feature = "camera-v4l"))]
    fn without_v4l_auto_is_the_pattern_and_a_named_camera_is_refused() {
        let status = SharedCameraStatus::default();
        let source = open_video(&CameraDevice::Auto, &settings(), &status).expect("opens");
        assert_eq!(source.name(), "test");
        let note = lock(&status).note.clone().unwrap_or_default();
        assert!(note.contains("camera-v4l"), "{note}");
        for device in [
            CameraDevice::Path("/dev/video0".into()),
            CameraDevice::Index(2),
        ] {
            let Err(e) = open_video(&device, &settings(), &status) else {
                panic!("{device:?} opened without a camera backend");
            };
            let e = e.to_string();
            assert!(e.starts_with("camera.device = "), "{e}");
            assert!(
                e.contains("built without") && e.contains("camera-v4l"),
                "{e}"
            );
        }
        assert!(list_cameras().is_empty());
    }

    #[test]
    #[cfg(not(feature = "mic-alsa"))]
    fn without_alsa_auto_is_the_tone_and_a_named_microphone_is_refused() {
        let auto = open_audio_source(&AudioDevice::Auto).expect("opens");
        assert_eq!(auto.map(|s| s.name().to_owned()).as_deref(), Some("test"));
        let Err(e) = open_audio_source(&AudioDevice::Name("hw:1,0".into())) else {
            panic!("a named microphone opened without ALSA");
        };
        assert_eq!(
            e.to_string(),
            "audio.device = \"hw:1,0\" needs ALSA microphone support, which this roverd was \
             built without (the cargo feature mic-alsa); set audio.device to \"auto\" or \
             \"test\" (the test tone) or \"none\", or build roverd with `--features mic-alsa`"
        );
        assert!(list_microphones().is_empty());
    }

    #[test]
    fn none_is_no_audio() {
        assert!(open_audio_source(&AudioDevice::None)
            .expect("no error")
            .is_none());
    }
}
