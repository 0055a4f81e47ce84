//! The audio half of the pipeline: one source, one Opus encoder, one thread.
//!
//! The thread takes 20 ms of 48 kHz mono at a time from an [`AudioSource`], encodes it once
//! and publishes the packet on a [`Fanout`] for every peer. Opus frames need no further
//! packetization: one frame is one RTP payload.

use crate::media::fanout::Fanout;
use crate::media::pattern::{Tone, TONE_HZ};
use crate::media::video::lock;
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const SAMPLE_RATE: u32 = 48_000;
pub const FRAME_MS: u32 = 20;
/// Samples in one 20 ms mono frame.
pub const FRAME_SAMPLES: usize = (SAMPLE_RATE * FRAME_MS / 1000) as usize;
const OPUS_BITRATE: i32 = 32_000;

/// One encoded 20 ms Opus frame.
#[derive(Debug, Clone)]
pub struct AudioPacket {
    pub payload: Bytes,
    /// 48 kHz, counted in samples since the pipeline started.
    pub rtp_timestamp: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("audio source {source_name} failed: {message}")]
    Source {
        source_name: String,
        message: String,
    },
    #[error("the Opus encoder could not be {action}: {message}")]
    Encoder {
        action: &'static str,
        message: String,
    },
}

/// Anything that yields 48 kHz mono at real-time pace: the test tone, a microphone.
pub trait AudioSource: Send {
    fn name(&self) -> &str;
    /// Blocks until `out.len()` samples are ready and writes them.
    fn read(&mut self, out: &mut [i16]) -> Result<(), AudioError>;
}

/// A 440 Hz tone at a comfortable level, paced by a schedule.
#[derive(Debug)]
pub struct TestTone {
    tone: Tone,
    next_due: Option<Instant>,
}

impl TestTone {
    pub fn new() -> Self {
        Self {
            tone: Tone::new(TONE_HZ, SAMPLE_RATE, 0.25),
            next_due: None,
        }
    }
}

impl Default for TestTone {
    fn default() -> Self {
        Self::new()
    }
}

impl AudioSource for TestTone {
    fn name(&self) -> &str {
        "test"
    }

    fn read(&mut self, out: &mut [i16]) -> Result<(), AudioError> {
        let span = Duration::from_secs(out.len() as u64) / SAMPLE_RATE;
        let now = Instant::now();
        let due = self.next_due.unwrap_or(now);
        if due > now {
            std::thread::sleep(due - now);
        }
        let at = Instant::now();
        self.next_due = Some(if at > due + span {
            at + span
        } else {
            due + span
        });
        self.tone.fill(out);
        Ok(())
    }
}

#[derive(Debug, Default)]
pub struct AudioStats {
    pub frames_encoded: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

#[derive(Debug)]
pub struct AudioShared {
    pub packets: Fanout<AudioPacket>,
    pub stats: AudioStats,
    pub running: AtomicBool,
    pub source_name: Mutex<String>,
}

pub fn new_encoder() -> Result<opus::Encoder, AudioError> {
    let fail = |action| {
        move |e: opus::Error| AudioError::Encoder {
            action,
            message: e.to_string(),
        }
    };
    // LowDelay: the robot's microphone is for hearing what happens now, and this mode
    // saves ~5 ms of algorithmic delay over the speech mode.
    let mut encoder = opus::Encoder::new(
        SAMPLE_RATE,
        opus::Channels::Mono,
        opus::Application::LowDelay,
    )
    .map_err(fail("started"))?;
    encoder
        .set_bitrate(opus::Bitrate::Bits(OPUS_BITRATE))
        .map_err(fail("configured"))?;
    Ok(encoder)
}

/// Runs on its own thread until `shared.running` is cleared.
pub fn run_encoder(
    shared: Arc<AudioShared>,
    mut source: Box<dyn AudioSource>,
    mut encoder: opus::Encoder,
) {
    let mut pcm = vec![0i16; FRAME_SAMPLES];
    let mut out = vec![0u8; 1500];
    let mut rtp_timestamp: u32 = rand::random();
    while shared.running.load(Ordering::Relaxed) {
        if let Err(e) = source.read(&mut pcm) {
            log::warn!("{e}");
            *lock(&shared.stats.last_error) = Some(e.to_string());
            std::thread::sleep(Duration::from_millis(u64::from(FRAME_MS)));
            pcm.fill(0);
        }
        match encoder.encode(&pcm, &mut out) {
            Ok(len) => {
                shared.stats.frames_encoded.fetch_add(1, Ordering::Relaxed);
                shared.packets.publish(AudioPacket {
                    payload: Bytes::copy_from_slice(&out[..len]),
                    rtp_timestamp,
                });
            }
            Err(e) => {
                log::error!("Opus encoding failed: {e}");
                *lock(&shared.stats.last_error) = Some(format!("Opus encoding failed: {e}"));
            }
        }
        rtp_timestamp = rtp_timestamp.wrapping_add(FRAME_SAMPLES as u32);
    }
    log::debug!("audio encoder thread stopped");
}
