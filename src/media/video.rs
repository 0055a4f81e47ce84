//! The video half of the pipeline: one source, one H.264 encoder, one thread.
//!
//! The thread pulls I420 pictures from a [`VideoSource`], encodes each once with openh264,
//! packetizes it into RTP payloads once, and publishes the result on a [`Fanout`] that
//! every peer reads. It never waits for a peer. A keyframe is forced when anyone asks (a
//! new peer, a PLI or FIR, a peer that lost frames), at most one per 500 ms whoever asks
//! and however often ([`KeyframeThrottle`]): requests that arrive meanwhile are answered
//! together by the next one.
//!
//! Not here: talking to peers (see `rtc`), and pacing for the network (the source's own
//! pace is the stream's pace).

use crate::media::fanout::Fanout;
use crate::media::frame::I420Frame;
use crate::media::h264;
use crate::media::keyframe::KeyframeThrottle;
use crate::media::pattern;
use crate::sync::lock;
use bytes::Bytes;
use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, RateControlMode,
    UsageType,
};
use openh264::formats::YUVSlices;
use openh264::OpenH264API;
use rtc::rtp::packetizer::Payloader;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Largest RTP payload roverd sends: leaves room for the RTP header, SRTP's tag and the
/// IP/UDP headers inside a 1280-byte IPv6 minimum MTU.
pub const RTP_PAYLOAD_MTU: usize = 1200;

/// The RTP clock of H.264 (RFC 6184).
pub const VIDEO_CLOCK_HZ: u64 = 90_000;

/// One encoded picture, ready for any number of peers.
#[derive(Debug, Clone)]
pub struct VideoFrame {
    /// RTP payloads in order; the last one carries the marker bit.
    pub payloads: Arc<[Bytes]>,
    pub keyframe: bool,
    /// 90 kHz, from the capture time, so that a frame a peer skips leaves a true gap.
    pub rtp_timestamp: u32,
    pub captured_at: Instant,
}

/// When and how a picture was taken.
#[derive(Debug, Clone, Copy)]
pub struct Captured {
    pub at: Instant,
    /// Milliseconds since the Unix epoch, for the bar code and latency measurements.
    pub unix_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("video source {source_name} failed: {message}")]
    Source {
        source_name: String,
        message: String,
    },
    #[error("the H.264 encoder could not be {action}: {message}")]
    Encoder {
        action: &'static str,
        message: String,
    },
}

/// Anything that produces pictures at its own pace: the test pattern, a camera.
pub trait VideoSource: Send {
    /// A short name for logs and status: "test", "/dev/video0".
    fn name(&self) -> &str;
    /// Blocks until the next picture is ready and writes it into `frame`.
    fn capture(&mut self, frame: &mut I420Frame) -> Result<Captured, VideoError>;
}

/// The moving test pattern, paced by a schedule so its rate does not drift.
#[derive(Debug)]
pub struct TestPattern {
    interval: Duration,
    next_due: Option<Instant>,
    count: u64,
}

impl TestPattern {
    pub fn new(fps: u32) -> Self {
        Self {
            interval: Duration::from_secs(1) / fps.max(1),
            next_due: None,
            count: 0,
        }
    }
}

impl VideoSource for TestPattern {
    fn name(&self) -> &str {
        "test"
    }

    fn capture(&mut self, frame: &mut I420Frame) -> Result<Captured, VideoError> {
        let now = Instant::now();
        let due = self.next_due.unwrap_or(now);
        if due > now {
            std::thread::sleep(due - now);
        }
        // A late picture does not make the next ones early: after a stall the schedule
        // restarts from now rather than bursting to catch up.
        let at = Instant::now();
        self.next_due = Some(if at > due + self.interval {
            at + self.interval
        } else {
            due + self.interval
        });
        let captured = Captured {
            at,
            unix_ms: unix_ms(),
        };
        pattern::render_test_pattern(frame, self.count, captured.unix_ms);
        self.count += 1;
        Ok(captured)
    }
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Encoder settings, from `[camera]` and `[video]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoSettings {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate_kbps: u32,
    pub keyframe_interval_s: f64,
}

impl VideoSettings {
    pub fn level_idc(&self) -> u8 {
        h264::level_idc(self.width, self.height, self.fps)
    }
}

/// Counters the encoder thread keeps for `/api/status` and the watchdog.
#[derive(Debug, Default)]
pub struct VideoStats {
    pub frames_encoded: AtomicU64,
    pub keyframes: AtomicU64,
    pub bytes: AtomicU64,
    /// Measured over the last whole second, in hundredths of a frame per second.
    pub fps_centi: AtomicU64,
    /// Measured over the last whole second.
    pub kbps: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

/// Wraps openh264 with roverd's settings and the SPS rewrite.
pub struct VideoEncoder {
    encoder: Encoder,
    payloader: rtc::rtp::codec::h264::H264Payloader,
    level_idc: u8,
    annexb: Vec<u8>,
}

impl VideoEncoder {
    pub fn new(settings: &VideoSettings) -> Result<Self, VideoError> {
        let keyframe_every = (settings.keyframe_interval_s * f64::from(settings.fps))
            .round()
            .max(1.0) as u32;
        let config = EncoderConfig::new()
            .bitrate(BitRate::from_bps(
                settings.bitrate_kbps.saturating_mul(1000),
            ))
            .max_frame_rate(FrameRate::from_hz(settings.fps as f32))
            .rate_control_mode(RateControlMode::Bitrate)
            .usage_type(UsageType::CameraVideoRealTime)
            .intra_frame_period(IntraFramePeriod::from_num_frames(keyframe_every))
            // openh264 only holds the bitrate when it may skip a picture. Over Wi-Fi an
            // overshooting bitrate becomes growing delay, which is worse than a rare skip
            // (RTP timestamps come from capture time, so a skip is a true gap, not a jump).
            .skip_frames(true);
        let encoder =
            Encoder::with_api_config(OpenH264API::from_source(), config).map_err(|e| {
                VideoError::Encoder {
                    action: "started",
                    message: e.to_string(),
                }
            })?;
        Ok(Self {
            encoder,
            payloader: rtc::rtp::codec::h264::H264Payloader::default(),
            level_idc: settings.level_idc(),
            annexb: Vec::with_capacity(64 * 1024),
        })
    }

    pub fn force_keyframe(&mut self) {
        self.encoder.force_intra_frame();
    }

    /// Encodes one picture into RTP payloads. `None` when the encoder produced nothing.
    pub fn encode(&mut self, frame: &I420Frame) -> Result<Option<(Vec<Bytes>, bool)>, VideoError> {
        let (w, h) = (frame.width, frame.height);
        let yuv = YUVSlices::new((frame.y(), frame.u(), frame.v()), (w, h), (w, w / 2, w / 2));
        let bitstream = self.encoder.encode(&yuv).map_err(|e| VideoError::Encoder {
            action: "run",
            message: e.to_string(),
        })?;
        let keyframe = matches!(bitstream.frame_type(), FrameType::IDR);
        self.annexb.clear();
        bitstream.write_vec(&mut self.annexb);
        if self.annexb.is_empty() {
            return Ok(None);
        }
        if keyframe {
            h264::rewrite_sps_profile(&mut self.annexb, self.level_idc);
        }
        let au = Bytes::copy_from_slice(&self.annexb);
        let payloads =
            self.payloader
                .payload(RTP_PAYLOAD_MTU, &au)
                .map_err(|e| VideoError::Encoder {
                    action: "packetized",
                    message: e.to_string(),
                })?;
        Ok(Some((payloads, keyframe)))
    }
}

/// What the encoder thread shares with the rest of roverd.
#[derive(Debug)]
pub struct VideoShared {
    pub frames: Fanout<VideoFrame>,
    pub stats: VideoStats,
    pub keyframe_wanted: AtomicBool,
    pub running: AtomicBool,
    pub settings: VideoSettings,
    pub source_name: Mutex<String>,
}

/// Runs on its own thread until `shared.running` is cleared or the source fails for good.
pub fn run_encoder(
    shared: Arc<VideoShared>,
    mut source: Box<dyn VideoSource>,
    mut encoder: VideoEncoder,
) {
    let settings = shared.settings;
    let mut frame = I420Frame::new(settings.width as usize, settings.height as usize);
    let epoch = Instant::now();
    let rtp_base: u32 = rand::random();
    let mut window = RateWindow::new(Instant::now());
    let mut throttle = KeyframeThrottle::default();
    while shared.running.load(Ordering::Relaxed) {
        let captured = match source.capture(&mut frame) {
            Ok(c) => c,
            Err(e) => {
                log::warn!("{e}");
                *lock(&shared.stats.last_error) = Some(e.to_string());
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if shared.keyframe_wanted.swap(false, Ordering::AcqRel) {
            throttle.request();
        }
        let forced = throttle.take(captured.at);
        if forced {
            encoder.force_keyframe();
        }
        match encoder.encode(&frame) {
            Ok(Some((payloads, keyframe))) => {
                let elapsed = captured.at.saturating_duration_since(epoch);
                let ticks = (elapsed.as_micros() as u64 * VIDEO_CLOCK_HZ / 1_000_000) as u32;
                let bytes: usize = payloads.iter().map(Bytes::len).sum();
                shared.stats.frames_encoded.fetch_add(1, Ordering::Relaxed);
                shared
                    .stats
                    .bytes
                    .fetch_add(bytes as u64, Ordering::Relaxed);
                if keyframe {
                    shared.stats.keyframes.fetch_add(1, Ordering::Relaxed);
                    if !forced {
                        throttle.keyframe_sent();
                    }
                }
                if let Some((fps, kbps)) = window.add(captured.at, bytes) {
                    shared
                        .stats
                        .fps_centi
                        .store((fps * 100.0) as u64, Ordering::Relaxed);
                    shared.stats.kbps.store(kbps as u64, Ordering::Relaxed);
                }
                shared.frames.publish(VideoFrame {
                    payloads: payloads.into(),
                    keyframe,
                    rtp_timestamp: rtp_base.wrapping_add(ticks),
                    captured_at: captured.at,
                });
            }
            Ok(None) => {}
            Err(e) => {
                log::error!("{e}");
                *lock(&shared.stats.last_error) = Some(e.to_string());
            }
        }
    }
    log::debug!("video encoder thread stopped");
}

/// Frames and bytes over roughly one second, for the measured rate in status.
#[derive(Debug)]
struct RateWindow {
    start: Instant,
    frames: u32,
    bytes: usize,
}

impl RateWindow {
    fn new(start: Instant) -> Self {
        Self {
            start,
            frames: 0,
            bytes: 0,
        }
    }

    /// Counts one frame; once a second has passed, returns (frames/s, kbit/s) and restarts.
    fn add(&mut self, at: Instant, bytes: usize) -> Option<(f64, f64)> {
        self.frames += 1;
        self.bytes += bytes;
        let span = at.saturating_duration_since(self.start).as_secs_f64();
        if span < 1.0 {
            return None;
        }
        let rates = (
            f64::from(self.frames) / span,
            self.bytes as f64 * 8.0 / 1000.0 / span,
        );
        *self = Self::new(at);
        Some(rates)
    }
}
