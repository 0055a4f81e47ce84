//! Test hooks: environment variables that make the sources misbehave on cue, for the
//! integration tests. Only built with the `test-support` feature, which `cargo test` turns
//! on (see Cargo.toml) and a release build never has. Each hook logs a warning, under the
//! target `roverd::media`, when it takes effect.

use crate::media::fallback::{self, CameraSource, SharedCameraStatus, Timing};
use crate::media::frame::I420Frame;
use crate::media::video::{Captured, VideoError, VideoSettings, VideoSource};
use std::sync::Arc;

/// With `ROVERD_TEST_FAIL_VIDEO=N:M` in the environment the camera is a stand-in that
/// sends N pictures of the test pattern, then fails, then fails to reopen M times (one
/// attempt every 2 s) before it works again, whatever `camera.device` says.
/// `tests/camera_faults.rs` uses it to watch the slate and the recovery through a real
/// peer.
pub fn failing_camera(
    settings: &VideoSettings,
    status: &SharedCameraStatus,
) -> Option<Box<dyn VideoSource>> {
    const VAR: &str = "ROVERD_TEST_FAIL_VIDEO";
    let value = std::env::var(VAR).ok()?;
    let (after, fails) = value.split_once(':')?;
    let (after, fails) = (after.parse().ok()?, fails.parse().ok()?);
    log::warn!(
        target: "roverd::media",
        "{VAR}={value}: the camera is a stand-in that fails after {after} pictures (a test hook)"
    );
    Some(Box::new(CameraSource::new(
        "test-faulty".into(),
        fallback::faulty_opener(settings.fps, after, fails),
        Timing::new(settings.fps),
        Arc::clone(status),
    )))
}

/// With `ROVERD_TEST_STALL_VIDEO_AFTER_FRAMES=N` in the environment the video source hangs
/// for good after N pictures, like a camera driver that stops delivering, so that
/// `tests/notify.rs` can check that the systemd watchdog pings stop. Without the variable
/// the source is returned as it is.
pub fn stalling_video(source: Box<dyn VideoSource>) -> Box<dyn VideoSource> {
    const VAR: &str = "ROVERD_TEST_STALL_VIDEO_AFTER_FRAMES";
    let Some(after) = std::env::var(VAR).ok().and_then(|v| v.parse().ok()) else {
        return source;
    };
    log::warn!(
        target: "roverd::media",
        "{VAR}={after}: the video source will hang after {after} pictures (a test hook)"
    );
    struct Stall(Box<dyn VideoSource>, u64);
    impl VideoSource for Stall {
        fn name(&self) -> &str {
            self.0.name()
        }
        fn capture(&mut self, frame: &mut I420Frame) -> Result<Captured, VideoError> {
            if self.1 == 0 {
                loop {
                    std::thread::park();
                }
            }
            self.1 -= 1;
            self.0.capture(frame)
        }
    }
    Box::new(Stall(source, after))
}

/// `ROVERD_TEST_AUDIO_FORMAT=RATE/CHANNELS/FORMAT` (e.g. `44100/2/i16`) makes roverd ask
/// the capture device for exactly that format instead of choosing, so that
/// `tests/microphone.rs` can capture 44.1 kHz stereo from an ALSA device that accepts any
/// format.
#[cfg(feature = "mic-alsa")]
pub fn audio_format() -> Option<crate::media::mic_format::Want> {
    const VAR: &str = "ROVERD_TEST_AUDIO_FORMAT";
    let value = std::env::var(VAR).ok()?;
    match value.parse() {
        Ok(want) => {
            log::warn!(
                target: "roverd::media",
                "{VAR}={value}: asking the microphone for exactly that (a test hook)"
            );
            Some(want)
        }
        Err(e) => {
            log::warn!(target: "roverd::media", "{VAR}: {e}; ignored");
            None
        }
    }
}
