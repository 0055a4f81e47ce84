//! Capture and encoding: one source and one encoder per medium, whatever the number of
//! viewers. [`Media`] starts the two encoder threads and is the only way the rest of
//! roverd reaches them: subscribe to encoded frames, ask for a keyframe, read counters.
//!
//! Invariant: nothing here waits on a peer. Encoded frames go out through [`fanout`],
//! which drops frames for a slow subscriber instead of slowing the encoder.

pub mod audio;
pub mod camera;
pub mod convert;
pub mod fallback;
pub mod fanout;
pub mod h264;
pub mod mic;
pub mod pattern;
pub mod pcm;
pub mod video;

use crate::config::{AudioDevice, CameraDevice, Config};
use crate::sync::lock;
use audio::{AudioPacket, AudioShared, AudioSource, TestTone};
use fallback::{CameraSource, CameraStatus, SharedCameraStatus, Timing};
use fanout::{Fanout, Subscriber};
use mic::MicSource;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use video::{TestPattern, VideoFrame, VideoSettings, VideoShared, VideoSource};

/// How many encoded frames a peer may fall behind before it loses some: about a quarter
/// of a second of video at 30 fps, and of audio.
const VIDEO_BACKLOG: usize = 8;
const AUDIO_BACKLOG: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error(transparent)]
    Video(#[from] video::VideoError),
    #[error(transparent)]
    Audio(#[from] audio::AudioError),
    #[error("could not start the {0} encoder thread: {1}")]
    Thread(&'static str, std::io::Error),
}

/// The running capture and encoding pipeline.
#[derive(Debug)]
pub struct Media {
    video: Arc<VideoShared>,
    audio: Option<Arc<AudioShared>>,
    /// What the video source says about the camera, for `/api/status`.
    camera: SharedCameraStatus,
    /// Each encoder thread's name, and a receiver that hears when it has ended.
    threads: Mutex<Vec<(&'static str, mpsc::Receiver<()>)>>,
}

impl Media {
    /// Opens the sources named in the config and starts one encoder thread per medium.
    pub fn start(config: &Config) -> Result<Media, MediaError> {
        let settings = VideoSettings {
            width: config.camera.width,
            height: config.camera.height,
            fps: config.camera.fps,
            bitrate_kbps: config.video.bitrate_kbps,
            keyframe_interval_s: config.video.keyframe_interval_s,
        };
        let camera = SharedCameraStatus::default();
        let source = stall_hook(open_video_source(&config.camera.device, &settings, &camera));
        let encoder = video::VideoEncoder::new(&settings)?;
        let video = Arc::new(VideoShared {
            frames: Fanout::new(VIDEO_BACKLOG),
            stats: Default::default(),
            keyframe_wanted: AtomicBool::new(false),
            running: AtomicBool::new(true),
            settings,
            source_name: Mutex::new(source.name().to_owned()),
        });
        let mut threads = Vec::new();
        let shared = Arc::clone(&video);
        threads.push(spawn_encoder("video", move || {
            video::run_encoder(shared, source, encoder)
        })?);

        let audio = match open_audio_source(&config.audio.device) {
            None => None,
            Some(source) => {
                let encoder = audio::new_encoder()?;
                let shared = Arc::new(AudioShared {
                    packets: Fanout::new(AUDIO_BACKLOG),
                    stats: Default::default(),
                    running: AtomicBool::new(true),
                    source_name: Mutex::new(source.name().to_owned()),
                });
                let thread_shared = Arc::clone(&shared);
                threads.push(spawn_encoder("audio", move || {
                    audio::run_encoder(thread_shared, source, encoder)
                })?);
                Some(shared)
            }
        };
        Ok(Media {
            video,
            audio,
            camera,
            threads: Mutex::new(threads),
        })
    }

    pub fn subscribe_video(&self) -> Subscriber<VideoFrame> {
        self.video.frames.subscribe()
    }

    /// `None` when `audio.device = "none"`.
    pub fn subscribe_audio(&self) -> Option<Subscriber<AudioPacket>> {
        self.audio.as_ref().map(|a| a.packets.subscribe())
    }

    pub fn has_audio(&self) -> bool {
        self.audio.is_some()
    }

    /// The next picture will be a keyframe. Requests between two pictures coalesce.
    pub fn request_keyframe(&self) {
        self.video.keyframe_wanted.store(true, Ordering::Release);
    }

    pub fn video_settings(&self) -> VideoSettings {
        self.video.settings
    }

    /// Frames encoded so far, for liveness checks.
    pub fn frames_encoded(&self) -> (u64, u64) {
        let audio = self
            .audio
            .as_ref()
            .map_or(0, |a| a.stats.frames_encoded.load(Ordering::Relaxed));
        (
            self.video.stats.frames_encoded.load(Ordering::Relaxed),
            audio,
        )
    }

    pub fn status(&self) -> (VideoStatus, Option<AudioStatus>) {
        let v = &self.video;
        let video = VideoStatus {
            source: lock(&v.source_name).clone(),
            width: v.settings.width,
            height: v.settings.height,
            fps: v.stats.fps_centi.load(Ordering::Relaxed) as f64 / 100.0,
            bitrate_kbps: v.stats.kbps.load(Ordering::Relaxed),
            frames_encoded: v.stats.frames_encoded.load(Ordering::Relaxed),
            keyframes: v.stats.keyframes.load(Ordering::Relaxed),
            last_error: lock(&v.stats.last_error).clone(),
            camera: lock(&self.camera).clone(),
        };
        let audio = self.audio.as_ref().map(|a| AudioStatus {
            source: lock(&a.source_name).clone(),
            sample_rate: audio::SAMPLE_RATE,
            channels: 1,
            frames_encoded: a.stats.frames_encoded.load(Ordering::Relaxed),
            input: lock(&a.stats.input).clone(),
            capturing: a.stats.source_ok.load(Ordering::Relaxed),
            overruns: a.stats.overruns.load(Ordering::Relaxed),
            underruns: a.stats.underruns.load(Ordering::Relaxed),
            last_error: lock(&a.stats.last_error).clone(),
        });
        (video, audio)
    }

    /// Stops both threads and waits up to `patience` for them; subscribers then see the
    /// stream close. A source stuck in a device call (a camera that hangs) is left behind
    /// rather than holding up shutdown.
    pub fn stop(&self, patience: Duration) {
        self.signal_stop();
        let deadline = Instant::now() + patience;
        for (name, exited) in lock(&self.threads).drain(..) {
            let left = deadline.saturating_duration_since(Instant::now());
            match exited.recv_timeout(left) {
                Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => log::warn!(
                    "the {name} thread did not stop within {patience:?}; leaving it behind"
                ),
            }
        }
    }

    fn signal_stop(&self) {
        self.video.running.store(false, Ordering::Relaxed);
        if let Some(a) = &self.audio {
            a.running.store(false, Ordering::Relaxed);
        }
    }
}

impl Drop for Media {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

/// Starts `body` on a named thread; the returned receiver hears when it has finished
/// (its sender is dropped as the thread ends, however it ends).
fn spawn_encoder(
    name: &'static str,
    body: impl FnOnce() + Send + 'static,
) -> Result<(&'static str, mpsc::Receiver<()>), MediaError> {
    let (done, exited) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name(format!("{name}-encoder"))
        .spawn(move || {
            let _done = done;
            body();
        })
        .map_err(|e| MediaError::Thread(name, e))?;
    Ok((name, exited))
}

/// The video source `camera.device` names. Never fails: a camera that cannot be used is
/// the "camera lost" slate (retried every 2 s), and "auto" without a camera is the test
/// pattern; `camera` says which, and why, for the status.
fn open_video_source(
    device: &CameraDevice,
    settings: &VideoSettings,
    status: &SharedCameraStatus,
) -> Box<dyn VideoSource> {
    let pattern = |note: String| -> Box<dyn VideoSource> {
        *lock(status) = CameraStatus {
            state: "off",
            note: Some(note),
            ..CameraStatus::default()
        };
        Box::new(TestPattern::new(settings.fps))
    };
    if let Some(source) = fail_hook(settings, status) {
        return source;
    }
    let path = match device {
        CameraDevice::Test => return pattern("camera.device = \"test\"".into()),
        CameraDevice::Auto => match camera::auto_device(&camera::list_cameras()) {
            Ok(path) => {
                log::info!("camera.device = \"auto\": using {}", path.display());
                path
            }
            Err(reason) => {
                log::info!("{reason}; streaming the test pattern");
                return pattern(reason);
            }
        },
        CameraDevice::Path(path) => path.clone(),
        CameraDevice::Index(index) => std::path::PathBuf::from(format!("/dev/video{index}")),
    };
    let request = camera::Request {
        width: settings.width,
        height: settings.height,
        fps: settings.fps,
    };
    let feed_path = path.clone();
    let open: fallback::Opener = Box::new(move || {
        camera::V4lFeed::start(&feed_path, request)
            .map(|feed| Box::new(feed) as Box<dyn fallback::Feed>)
            .map_err(|e| e.to_string())
    });
    Box::new(CameraSource::new(
        path.display().to_string(),
        open,
        Timing::new(settings.fps),
        Arc::clone(status),
    ))
}

/// Test hook, not a feature: with `ROVERD_TEST_FAIL_VIDEO=N:M` in the environment the
/// camera is a stand-in that sends N pictures of the test pattern, then fails, then fails
/// to reopen M times (one attempt every 2 s) before it works again, whatever
/// `camera.device` says. `tests/camera_faults.rs` uses it to watch the slate and the
/// recovery through a real peer.
fn fail_hook(
    settings: &VideoSettings,
    status: &SharedCameraStatus,
) -> Option<Box<dyn VideoSource>> {
    const VAR: &str = "ROVERD_TEST_FAIL_VIDEO";
    let value = std::env::var(VAR).ok()?;
    let (after, fails) = value.split_once(':')?;
    let (after, fails) = (after.parse().ok()?, fails.parse().ok()?);
    log::warn!(
        "{VAR}={value}: the camera is a stand-in that fails after {after} pictures (a test hook)"
    );
    Some(Box::new(CameraSource::new(
        "test-faulty".into(),
        fallback::faulty_opener(settings.fps, after, fails),
        Timing::new(settings.fps),
        Arc::clone(status),
    )))
}

/// Test hook, not a feature: with `ROVERD_TEST_STALL_VIDEO_AFTER_FRAMES=N` in the
/// environment the video source hangs for good after N pictures, like a camera driver that
/// stops delivering, so that `tests/notify.rs` can check that the systemd watchdog pings
/// stop. Without the variable the source is returned as it is.
fn stall_hook(source: Box<dyn VideoSource>) -> Box<dyn VideoSource> {
    const VAR: &str = "ROVERD_TEST_STALL_VIDEO_AFTER_FRAMES";
    let Some(after) = std::env::var(VAR).ok().and_then(|v| v.parse().ok()) else {
        return source;
    };
    log::warn!("{VAR}={after}: the video source will hang after {after} pictures (a test hook)");
    struct Stall(Box<dyn VideoSource>, u64);
    impl VideoSource for Stall {
        fn name(&self) -> &str {
            self.0.name()
        }
        fn capture(
            &mut self,
            frame: &mut pattern::I420Frame,
        ) -> Result<video::Captured, video::VideoError> {
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

/// `"auto"` takes the default ALSA capture device if it opens, else the test tone; a named
/// device that does not open yet is kept, sending silence and retrying, since that is the
/// microphone the user asked for.
fn open_audio_source(device: &AudioDevice) -> Option<Box<dyn AudioSource>> {
    let want = format_hook();
    let show = |m: &MicSource| {
        m.input_format().map_or(String::new(), |f| {
            format!(
                "{} Hz, {} channels, {}",
                f.sample_rate, f.channels, f.sample_format
            )
        })
    };
    match device {
        AudioDevice::None => {
            log::info!("audio.device = \"none\": no audio track");
            None
        }
        AudioDevice::Test => Some(Box::new(TestTone::new())),
        AudioDevice::Auto => {
            match MicSource::open(mic::DEFAULT_DEVICE, want) {
                Ok(m) => {
                    log::info!(
                        "audio.device = \"auto\": capturing from the default microphone ({})",
                        show(&m)
                    );
                    Some(Box::new(m))
                }
                Err(e) => {
                    log::info!("audio.device = \"auto\": no usable microphone ({e}); streaming the test tone");
                    Some(Box::new(TestTone::new()))
                }
            }
        }
        AudioDevice::Name(name) => match MicSource::open(name, want) {
            Ok(m) => {
                log::info!("audio.device = {name:?}: capturing ({})", show(&m));
                Some(Box::new(m))
            }
            Err(e) => {
                log::warn!("audio.device = {name:?}: {e}; sending silence until it opens");
                Some(Box::new(MicSource::retrying(name, want, e)))
            }
        },
    }
}

/// Test hook, not a feature: `ROVERD_TEST_AUDIO_FORMAT=RATE/CHANNELS/FORMAT` (e.g.
/// `44100/2/i16`) makes roverd ask the capture device for exactly that format instead of
/// choosing, so that `tests/microphone.rs` can capture 44.1 kHz stereo from an ALSA device
/// that accepts any format.
fn format_hook() -> Option<pcm::Want> {
    const VAR: &str = "ROVERD_TEST_AUDIO_FORMAT";
    let value = std::env::var(VAR).ok()?;
    match value.parse() {
        Ok(want) => {
            log::warn!("{VAR}={value}: asking the microphone for exactly that (a test hook)");
            Some(want)
        }
        Err(e) => {
            log::warn!("{VAR}: {e}; ignored");
            None
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct VideoStatus {
    pub source: String,
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    pub bitrate_kbps: u64,
    pub frames_encoded: u64,
    pub keyframes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The camera behind the picture: device, state, negotiated format, capture rate,
    /// retries and the last device error.
    pub camera: CameraStatus,
}

#[derive(Debug, Clone, Serialize)]
pub struct AudioStatus {
    /// `test`, or the ALSA device name (`default` for "auto").
    pub source: String,
    /// What is encoded: always 48 kHz mono.
    pub sample_rate: u32,
    pub channels: u16,
    pub frames_encoded: u64,
    /// The format the device delivers (before conversion); `null` while it is not open.
    pub input: Option<pcm::InputFormat>,
    /// False while the device fails and silence is sent instead.
    pub capturing: bool,
    /// Times captured audio was dropped because the device delivered too fast.
    pub overruns: u64,
    /// Frames padded with silence because the device delivered too slowly.
    pub underruns: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}
