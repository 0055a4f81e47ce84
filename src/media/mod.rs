//! Capture and encoding: one source and one encoder per medium, whatever the number of
//! viewers. [`Media`] starts the two encoder threads and is the only way the rest of
//! roverd reaches them: subscribe to encoded frames, ask for a keyframe, read counters.
//!
//! Invariant: nothing here waits on a peer. Encoded frames go out through [`fanout`],
//! which drops frames for a slow subscriber instead of slowing the encoder.
//!
//! The pure core is [`frame`], [`stamp`], [`pattern`], [`tone`], [`convert`], [`dsp`],
//! [`camera`] and [`mic_list`]; the device backends ([`v4l_camera`] for V4L2 cameras,
//! [`mic`] and [`mic_format`] for ALSA microphones) are cargo features, and [`devices`]
//! picks a source from the config in whatever this build has.

pub mod audio;
pub mod camera;
pub mod capture;
pub mod convert;
pub mod devices;
pub mod dsp;
pub mod fallback;
pub mod fanout;
pub mod frame;
pub mod h264;
#[cfg(feature = "test-support")]
mod hooks;
pub mod keyframe;
#[cfg(feature = "mic-alsa")]
pub mod mic;
#[cfg(feature = "mic-alsa")]
pub mod mic_format;
pub mod mic_list;
pub mod pattern;
pub mod stamp;
pub mod tone;
#[cfg(feature = "camera-v4l")]
pub mod v4l_camera;
pub mod video;

use crate::config::Config;
use crate::sync::lock;
use audio::{AudioPacket, AudioShared};
use fallback::{CameraStatus, SharedCameraStatus};
use fanout::{Fanout, Subscriber};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use video::{VideoFrame, VideoSettings, VideoShared};

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
    /// The config names a device this build has no backend for.
    #[error(transparent)]
    NotBuilt(#[from] devices::NotBuilt),
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
        let source = devices::open_video_source(&config.camera.device, &settings, &camera)?;
        // Before any thread starts, so that a refused device leaves nothing running.
        let audio_source = devices::open_audio_source(&config.audio.device)?;
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

        let audio = match audio_source {
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

    /// Asks for a keyframe: the next picture is one unless a forced keyframe went out less
    /// than 500 ms ago, in which case it comes when that time is up. Requests coalesce.
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
            sample_rate: dsp::SAMPLE_RATE,
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
    pub input: Option<dsp::InputFormat>,
    /// False while the device fails and silence is sent instead.
    pub capturing: bool,
    /// Times captured audio was dropped because the device delivered too fast.
    pub overruns: u64,
    /// Frames padded with silence because the device delivered too slowly.
    pub underruns: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}
