//! The audio half of the pipeline: one source, one Opus encoder, one thread.
//!
//! The thread takes 20 ms of 48 kHz mono at a time from an [`AudioSource`], encodes it once
//! and publishes the packet on a [`Fanout`] for every peer. Opus frames need no further
//! packetization: one frame is one RTP payload.

use crate::media::dsp::{InputFormat, Pacer, Xruns, FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE};
use crate::media::fanout::Fanout;
use crate::media::tone::{Tone, TONE_HZ};
use crate::sync::lock;
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// A capture device (the microphone) failed; its own error says which and what to check.
    #[error(transparent)]
    Device(Box<dyn std::error::Error + Send + Sync>),
    #[error("the Opus encoder could not be {action}: {message}")]
    Encoder {
        action: &'static str,
        message: String,
    },
}

/// Anything that yields 48 kHz mono at real-time pace: the test tone, a microphone.
pub trait AudioSource: Send {
    fn name(&self) -> &str;
    /// Blocks until `out.len()` samples are due and writes them. An error returns at once,
    /// without pacing: the encoder then sends silence on its own schedule and calls again
    /// for the next frame, so a source recovers by returning `Ok` again.
    fn read(&mut self, out: &mut [i16]) -> Result<(), AudioError>;
    /// The format the device delivers before conversion, while it is open.
    fn input_format(&self) -> Option<InputFormat> {
        None
    }
    /// Overruns and underruns so far.
    fn xruns(&self) -> Xruns {
        Xruns::default()
    }
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

    fn input_format(&self) -> Option<InputFormat> {
        Some(InputFormat {
            sample_rate: SAMPLE_RATE,
            channels: 1,
            sample_format: "i16".into(),
        })
    }
}

/// A steady real-time schedule: one frame every `samples / 48 kHz`.
#[derive(Debug, Default)]
pub struct Schedule {
    next_due: Option<Instant>,
}

impl Schedule {
    /// Sleeps until the next frame of `samples` is due.
    pub fn wait(&mut self, samples: usize) {
        let span = Duration::from_secs(samples as u64) / SAMPLE_RATE;
        let now = Instant::now();
        let due = self.next_due.unwrap_or(now);
        if due > now {
            std::thread::sleep(due - now);
        }
        let at = Instant::now();
        // Far behind (the thread was starved): start a new schedule rather than burst.
        self.next_due = Some(if at > due + span * 5 {
            at + span
        } else {
            due + span
        });
    }

    /// Starts again at the next `wait`.
    #[cfg_attr(not(feature = "mic-alsa"), allow(dead_code))]
    pub fn reset(&mut self) {
        self.next_due = None;
    }
}

/// The reading half of a microphone without a device: frames from a capture ring at real
/// time. The microphone reads the same way; the latency bench drives one of these from a
/// synthetic device through [`crate::media::dsp::ring`].
pub struct RingSource {
    name: String,
    pacer: Pacer,
    schedule: Schedule,
}

impl RingSource {
    pub fn new(name: &str, pacer: Pacer) -> Self {
        Self {
            name: name.to_owned(),
            pacer,
            schedule: Schedule::default(),
        }
    }
}

impl AudioSource for RingSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn read(&mut self, out: &mut [i16]) -> Result<(), AudioError> {
        self.schedule.wait(out.len());
        self.pacer.feed();
        self.pacer.next_frame(out);
        Ok(())
    }

    fn xruns(&self) -> Xruns {
        self.pacer.xruns()
    }
}

#[derive(Debug, Default)]
pub struct AudioStats {
    pub frames_encoded: AtomicU64,
    /// The most recent source error, kept after the source recovers.
    pub last_error: Mutex<Option<String>>,
    /// Whether the last read from the source succeeded.
    pub source_ok: AtomicBool,
    pub input: Mutex<Option<InputFormat>>,
    pub overruns: AtomicU64,
    pub underruns: AtomicU64,
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
    let frame = Duration::from_millis(u64::from(FRAME_MS));
    // While the source fails, silence goes out on this schedule instead of the source's.
    let mut silence_due: Option<Instant> = None;
    let mut failing: Option<String> = None;
    let mut input = source.input_format();
    *lock(&shared.stats.input) = input.clone();
    while shared.running.load(Ordering::Relaxed) {
        match source.read(&mut pcm) {
            Ok(()) => {
                if failing.take().is_some() {
                    log::info!("audio source {} recovered", source.name());
                }
                silence_due = None;
                shared.stats.source_ok.store(true, Ordering::Relaxed);
            }
            Err(e) => {
                let message = e.to_string();
                if failing.as_deref() != Some(message.as_str()) {
                    log::warn!("{message}; sending silence meanwhile");
                    *lock(&shared.stats.last_error) = Some(message.clone());
                    failing = Some(message);
                }
                shared.stats.source_ok.store(false, Ordering::Relaxed);
                pcm.fill(0);
                let now = Instant::now();
                let due = silence_due.unwrap_or(now);
                if due > now {
                    std::thread::sleep(due - now);
                }
                // Far behind (the thread was starved): start a new schedule, no burst.
                silence_due = Some(if now > due + frame { now } else { due } + frame);
            }
        }
        let format = source.input_format();
        if format != input {
            input = format;
            *lock(&shared.stats.input) = input.clone();
        }
        let xruns = source.xruns();
        shared
            .stats
            .overruns
            .store(xruns.overruns, Ordering::Relaxed);
        shared
            .stats
            .underruns
            .store(xruns.underruns, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::fanout::Next;

    /// The test tone, until it fails: reads `ok_before` frames, fails `failing` times,
    /// then works again. It paces itself only while it works, as the contract says.
    struct FailsAfter {
        tone: TestTone,
        reads: u64,
        ok_before: u64,
        failing: u64,
    }

    impl AudioSource for FailsAfter {
        fn name(&self) -> &str {
            "flaky"
        }

        fn read(&mut self, out: &mut [i16]) -> Result<(), AudioError> {
            self.reads += 1;
            if self.reads > self.ok_before && self.reads <= self.ok_before + self.failing {
                return Err(AudioError::Source {
                    source_name: "flaky".into(),
                    message: "unplugged".into(),
                });
            }
            self.tone.read(out)
        }
    }

    #[test]
    fn a_failing_source_gives_silence_at_the_same_pace_then_the_tone_again() {
        let shared = Arc::new(AudioShared {
            packets: Fanout::new(200),
            stats: Default::default(),
            running: AtomicBool::new(true),
            source_name: Mutex::new("flaky".into()),
        });
        let mut packets = shared.packets.subscribe();
        let source = FailsAfter {
            tone: TestTone::new(),
            reads: 0,
            ok_before: 20,
            failing: 25,
        };
        let thread_shared = Arc::clone(&shared);
        let encoder = new_encoder().expect("encoder");
        let started = Instant::now();
        let thread =
            std::thread::spawn(move || run_encoder(thread_shared, Box::new(source), encoder));
        let mut decoder = opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono).expect("decoder");
        let mut levels = Vec::new();
        let mut pcm = vec![0i16; 5760];
        let mut last_ts = None;
        while levels.len() < 80 {
            match packets.try_next() {
                Some(Next::Item(p)) => {
                    if let Some(ts) = last_ts {
                        assert_eq!(
                            p.rtp_timestamp,
                            u32::wrapping_add(ts, FRAME_SAMPLES as u32),
                            "no gap in the RTP clock"
                        );
                    }
                    last_ts = Some(p.rtp_timestamp);
                    let n = decoder
                        .decode(&p.payload, &mut pcm, false)
                        .expect("decodes");
                    let rms = (pcm[..n].iter().map(|&s| f64::from(s).powi(2)).sum::<f64>()
                        / n as f64)
                        .sqrt();
                    levels.push(rms);
                    if levels.len() == 30 {
                        assert!(!shared.stats.source_ok.load(Ordering::Relaxed));
                        assert_eq!(
                            lock(&shared.stats.last_error).as_deref(),
                            Some("audio source flaky failed: unplugged")
                        );
                    }
                }
                Some(other) => panic!("lost packets: {other:?}"),
                None => std::thread::sleep(Duration::from_millis(2)),
            }
        }
        let elapsed = started.elapsed();
        shared.running.store(false, Ordering::Relaxed);
        thread.join().expect("encoder thread");
        let loud = |r: &[f64]| r.iter().all(|&x| x > 3000.0);
        let quiet = |r: &[f64]| r.iter().all(|&x| x < 50.0);
        // Frames 1–20 tone (after the codec's first few), 21–45 silence (the edges blur by
        // a frame in the codec), 46–80 tone again.
        assert!(loud(&levels[5..19]), "{levels:?}");
        assert!(quiet(&levels[22..44]), "{levels:?}");
        assert!(loud(&levels[48..80]), "{levels:?}");
        // 80 frames of 20 ms: the failure did not make the stream run fast or stall.
        assert!(
            elapsed > Duration::from_millis(1450) && elapsed < Duration::from_millis(2400),
            "80 frames took {elapsed:?}"
        );
        assert!(shared.stats.source_ok.load(Ordering::Relaxed), "recovered");
        assert!(
            lock(&shared.stats.last_error).is_some(),
            "the last error stays visible"
        );
    }
}
