//! The pure core of microphone capture (no cpal, no device): whatever a capture device delivers (any rate,
//! channel count, sample format) becomes 48 kHz mono `i16`, 20 ms at a time, at the pace
//! the *caller* sets rather than the pace the device sets.
//!
//! The pieces, in the order samples meet them:
//!
//! 1. [`CaptureSink`], called from the device's capture callback: converts the sample
//!    format, averages the channels to mono and pushes onto a lock-free SPSC ring
//!    ([`rtrb`]). It never blocks and never allocates; when the ring is full it drops what
//!    does not fit and counts it.
//! 2. [`Pacer::feed`], on the encoder thread: drains the ring, resamples to 48 kHz
//!    ([`Resample48`], a windowed-sinc resampler from `rubato`, also for a 48 kHz device)
//!    and queues the result in a [`PacedBuffer`]. The resampling ratio follows the
//!    buffer's level ([`DriftControl`]): a device whose clock runs a little fast or slow
//!    against the reader's (300 ppm is common) is resampled that little, instead of
//!    overrunning or underrunning the buffer every minute or so.
//! 3. [`Pacer::next_frame`], once per 20 ms of the caller's clock: one frame out of the
//!    [`PacedBuffer`], which drops its oldest samples when the device runs fast (overrun)
//!    and pads with silence when it runs slow (underrun), counting both.
//!
//! Invariant: nothing here reads a clock, sleeps or touches a device; the pace is whoever
//! calls [`Pacer::next_frame`]. Allocation happens only in constructors.

//!
//! The rates here are the pipeline's: [`SAMPLE_RATE`] and [`FRAME_SAMPLES`] are what the
//! Opus encoder takes, whatever the source.

use dasp_sample::{FromSample, Sample};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{
    Adjustable, Async, FixedAsync, Resampler, SincInterpolationParameters, WindowFunction,
};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The rate of everything after capture: the resampler's output and the Opus input.
pub const SAMPLE_RATE: u32 = 48_000;
/// One Opus frame.
pub const FRAME_MS: u32 = 20;
/// Samples in one 20 ms mono frame.
pub const FRAME_SAMPLES: usize = (SAMPLE_RATE * FRAME_MS / 1000) as usize;

/// The format a capture device was opened with, for the status page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InputFormat {
    pub sample_rate: u32,
    pub channels: u16,
    /// cpal's name for it: `i16`, `f32`, `i32`…
    pub sample_format: String,
}

/// Overrun and underrun counts, as the status shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Xruns {
    /// Times captured audio was dropped because the device delivered faster than real time
    /// (or roverd fell behind): the oldest samples went, the newest stayed.
    pub overruns: u64,
    /// Frames padded with silence because the device delivered too slowly.
    pub underruns: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PcmError {
    #[error("cannot resample {rate} Hz to 48 kHz: {message}")]
    Resampler { rate: u32, message: String },
    #[error("a capture device with {0} channels makes no sense")]
    NoChannels(u16),
}

/// Averages each interleaved frame of `channels` samples into one `f32` in [-1, 1].
pub fn downmix<T>(interleaved: &[T], channels: usize) -> impl Iterator<Item = f32> + '_
where
    T: Sample,
    f32: FromSample<T>,
{
    let channels = channels.max(1);
    let scale = 1.0 / channels as f32;
    interleaved
        .chunks_exact(channels)
        .map(move |frame| frame.iter().map(|s| f32::from_sample_(*s)).sum::<f32>() * scale)
}

/// `f32` in [-1, 1] to `i16`, saturating.
pub fn to_i16(x: f32) -> i16 {
    (x.clamp(-1.0, 1.0) * f32::from(i16::MAX)).round() as i16
}

/// Counters the capture callback shares with the reader, lock-free.
#[derive(Debug, Default)]
pub struct RingCounters {
    /// Mono samples the callback could not fit in the ring.
    pub dropped: AtomicU64,
    /// Device-reported overruns (an ALSA xrun on capture).
    pub device_xruns: AtomicU64,
}

/// The capture callback's end of the ring.
pub struct CaptureSink {
    producer: rtrb::Producer<f32>,
    channels: usize,
    counters: Arc<RingCounters>,
}

impl CaptureSink {
    /// Called with each buffer the device delivers (interleaved, `channels` per frame).
    /// Never blocks, never allocates: what does not fit in the ring is dropped and counted.
    pub fn push<T>(&mut self, interleaved: &[T])
    where
        T: Sample,
        f32: FromSample<T>,
    {
        let frames = interleaved.len() / self.channels;
        let room = self.producer.slots().min(frames);
        if let Ok(chunk) = self.producer.write_chunk_uninit(room) {
            chunk.fill_from_iter(downmix(interleaved, self.channels));
        }
        if room < frames {
            self.counters
                .dropped
                .fetch_add((frames - room) as u64, Ordering::Relaxed);
        }
    }

    pub fn counters(&self) -> &Arc<RingCounters> {
        &self.counters
    }
}

/// Makes the ring between a device callback and a [`Pacer`] for a device delivering
/// `in_rate` Hz, `channels` channels: room for 200 ms of mono input.
pub fn ring(in_rate: u32, channels: u16) -> Result<(CaptureSink, Pacer), PcmError> {
    if channels == 0 {
        return Err(PcmError::NoChannels(channels));
    }
    let capacity = (in_rate as usize / 5).max(FRAME_SAMPLES);
    let (producer, consumer) = rtrb::RingBuffer::new(capacity);
    let counters = Arc::new(RingCounters::default());
    let sink = CaptureSink {
        producer,
        channels: usize::from(channels),
        counters: Arc::clone(&counters),
    };
    let pacer = Pacer::new(consumer, counters, in_rate)?;
    Ok((sink, pacer))
}

/// The most the ratio is ever moved from the nominal one to follow a device's clock:
/// ±0.5 %, far beyond any crystal's error, and inaudible as pitch.
pub const MAX_DRIFT: f64 = 0.005;

/// Mono `f32` at any rate in, 48 kHz mono `i16` out, in a stream of calls. The ratio can be
/// nudged ([`Resample48::set_drift`]) to follow a device's clock, also at 48 kHz.
pub struct Resample48 {
    inner: Async<f32>,
    in_rate: u32,
    /// Input waiting for a whole chunk.
    staged: Vec<f32>,
    chunk: usize,
    /// False after a reset, until the filter's history is filled with the first sample
    /// (so the output does not fade in from silence).
    primed: bool,
    out: Vec<f32>,
    out_i16: Vec<i16>,
}

impl Resample48 {
    pub fn new(in_rate: u32) -> Result<Self, PcmError> {
        let chunk = (in_rate as usize / 100).max(16); // 10 ms of input per call
                                                      // A 128-tap windowed sinc: full quality for speech and room sound at a fraction
                                                      // of the cost of the 256-tap default, which matters on a Pi Zero 2 W.
        let params = SincInterpolationParameters {
            sinc_len: 128,
            f_cutoff: None,
            oversampling_factor: 128,
            interpolation: rubato::SincInterpolationType::Linear,
            window: WindowFunction::BlackmanHarris2,
        };
        let ratio = f64::from(SAMPLE_RATE) / f64::from(in_rate.max(1));
        let inner = Async::<f32>::new_sinc(
            ratio,
            1.0 + 2.0 * MAX_DRIFT,
            &params,
            chunk,
            1,
            FixedAsync::Input,
        )
        .map_err(|e| PcmError::Resampler {
            rate: in_rate,
            message: e.to_string(),
        })?;
        let out_len = inner.output_frames_max();
        Ok(Self {
            inner,
            in_rate,
            staged: Vec::with_capacity(chunk),
            chunk,
            primed: false,
            out: vec![0.0; out_len],
            out_i16: vec![0; out_len],
        })
    }

    pub fn in_rate(&self) -> u32 {
        self.in_rate
    }

    /// Input samples per resampler call.
    pub fn chunk(&self) -> usize {
        self.chunk
    }

    /// Makes `relative` (1.0: none; clamped to ±[`MAX_DRIFT`]) more output per input than
    /// the nominal ratio, ramped over the next chunk so that no step is heard.
    pub fn set_drift(&mut self, relative: f64) {
        let relative = relative.clamp(1.0 - MAX_DRIFT, 1.0 + MAX_DRIFT);
        // In bounds by construction; a refusal would only keep the last ratio.
        let _ = self.inner.set_resample_ratio_relative(relative, true);
    }

    /// Feeds `input`; `emit` receives the 48 kHz output as it becomes available.
    pub fn process(&mut self, mut input: &[f32], emit: &mut dyn FnMut(&[i16])) {
        if !self.primed {
            let Some(&first) = input.first() else {
                return;
            };
            self.staged.clear();
            self.staged.resize(self.chunk, first);
            self.run_chunk(&mut |_| {});
            self.primed = true;
        }
        while !input.is_empty() {
            let take = (self.chunk - self.staged.len()).min(input.len());
            self.staged.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.staged.len() < self.chunk {
                break;
            }
            self.run_chunk(emit);
        }
    }

    /// Resamples the staged chunk and empties it.
    fn run_chunk(&mut self, emit: &mut dyn FnMut(&[i16])) {
        let frames_out = self.out.len();
        if let (Ok(src), Ok(mut dst)) = (
            InterleavedSlice::new(&self.staged[..], 1, self.chunk),
            InterleavedSlice::new_mut(&mut self.out[..], 1, frames_out),
        ) {
            if let Ok((_, n)) = self.inner.process_into_buffer(&src, &mut dst, None) {
                for (o, &x) in self.out_i16.iter_mut().zip(&self.out[..n]) {
                    *o = to_i16(x);
                }
                emit(&self.out_i16[..n]);
            }
        }
        self.staged.clear();
    }

    /// Forgets any history (after a gap in the input, such as a device restart).
    pub fn reset(&mut self) {
        self.staged.clear();
        self.inner.reset();
        self.primed = false;
    }
}

/// Follows a device's clock: turns the paced buffer's level into the resampling ratio.
///
/// The level (taken once per frame, after feeding) is smoothed over about half a second,
/// since it swings by a device period with every burst; the ratio then moves in
/// proportion to how far the smoothed level is from the buffer's target: too full (a
/// fast device) makes less output per input, too empty more. A constant drift settles
/// with the level off the target by `drift / GAIN` samples (60 at 300 ppm), in about
/// 1 / (48000 · GAIN) = 5 s. Pure: the level comes in as an argument.
#[derive(Debug, Clone)]
pub struct DriftControl {
    smoothed: Option<f64>,
}

impl DriftControl {
    /// Ratio change per sample of level error.
    const GAIN: f64 = 5e-6;
    /// Weight of each new level in the average: about 25 frames (0.5 s).
    const SMOOTHING: f64 = 1.0 / 25.0;

    pub fn new() -> Self {
        Self { smoothed: None }
    }

    /// Takes the buffer's `level` against its `target` (samples) and returns the relative
    /// ratio to resample at (1.0: nominal).
    pub fn update(&mut self, level: usize, target: usize) -> f64 {
        let level = level as f64;
        let smoothed = match self.smoothed {
            Some(s) => s + (level - s) * Self::SMOOTHING,
            None => level,
        };
        self.smoothed = Some(smoothed);
        (1.0 - Self::GAIN * (smoothed - target as f64)).clamp(1.0 - MAX_DRIFT, 1.0 + MAX_DRIFT)
    }

    /// Forgets the level (while the buffer primes, the level says nothing of the clock).
    pub fn reset(&mut self) {
        self.smoothed = None;
    }
}

impl Default for DriftControl {
    fn default() -> Self {
        Self::new()
    }
}

/// How [`PacedBuffer::pop_frame`] filled a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// All real samples.
    Full,
    /// Silence while the buffer fills up to its target (at the start, after an underrun).
    Priming,
    /// The device fell behind: this many real samples, then silence.
    Underrun(usize),
}

/// A bounded queue of 48 kHz mono samples between a device's pace and real time.
///
/// It starts playing once it holds `target` samples, so that a device delivering in
/// bursts (one period at a time) does not starve the steady 20 ms reader. Pushing past
/// `limit` is an overrun: the oldest samples go, leaving `target` (the newest). Popping
/// with too few samples is an underrun: the rest of the frame is silence, and the buffer
/// fills to `target` again before it plays.
#[derive(Debug)]
pub struct PacedBuffer {
    samples: VecDeque<i16>,
    target: usize,
    limit: usize,
    playing: bool,
    xruns: Xruns,
    dropped: u64,
}

impl PacedBuffer {
    /// `target` ≥ one frame; `limit` ≥ `target` + one frame (both clamped so).
    pub fn new(target: usize, limit: usize) -> Self {
        let target = target.max(FRAME_SAMPLES);
        let limit = limit.max(target + FRAME_SAMPLES);
        Self {
            samples: VecDeque::with_capacity(limit),
            target,
            limit,
            playing: false,
            xruns: Xruns::default(),
            dropped: 0,
        }
    }

    /// Sizes for a device that delivers `burst` samples (at 48 kHz) at a time: play from
    /// one burst plus one frame, drop past twice that plus a frame.
    pub fn for_burst(burst: usize) -> Self {
        let target = (burst + FRAME_SAMPLES).max(2 * FRAME_SAMPLES);
        Self::new(target, 2 * target + FRAME_SAMPLES)
    }

    pub fn push(&mut self, input: &[i16]) {
        if self.samples.len() + input.len() <= self.limit {
            self.samples.extend(input);
            return;
        }
        // Overrun: keep the newest `target` samples of old + new.
        self.xruns.overruns += 1;
        let from_input = input.len().min(self.target);
        let from_old = (self.target - from_input).min(self.samples.len());
        let drop_old = self.samples.len() - from_old;
        self.samples.drain(..drop_old);
        self.samples.extend(&input[input.len() - from_input..]);
        self.dropped += (drop_old + input.len() - from_input) as u64;
    }

    /// Writes the next frame into `out` (real samples, or silence for what is missing).
    pub fn pop_frame(&mut self, out: &mut [i16]) -> Fill {
        if !self.playing {
            if self.samples.len() < self.target.max(out.len()) {
                out.fill(0);
                return Fill::Priming;
            }
            self.playing = true;
        }
        let n = self.samples.len().min(out.len());
        for (o, s) in out.iter_mut().zip(self.samples.drain(..n)) {
            *o = s;
        }
        if n == out.len() {
            return Fill::Full;
        }
        out[n..].fill(0);
        self.xruns.underruns += 1;
        self.playing = false;
        Fill::Underrun(n)
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn target(&self) -> usize {
        self.target
    }

    /// False while priming (at the start and after an underrun).
    pub fn playing(&self) -> bool {
        self.playing
    }

    pub fn xruns(&self) -> Xruns {
        self.xruns
    }

    /// Samples thrown away by overruns.
    #[cfg(test)]
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// The reader's end of the ring: drains it, resamples, and hands out paced frames.
pub struct Pacer {
    consumer: rtrb::Consumer<f32>,
    counters: Arc<RingCounters>,
    resampler: Resample48,
    buffer: PacedBuffer,
    /// Ring drops and device xruns already turned into an overrun.
    seen_dropped: u64,
    seen_xruns: u64,
    /// Extra overruns counted here (ring drops, skipped input).
    overruns: u64,
    /// `None`: the ratio stays nominal (tests measure what the control is worth).
    drift: Option<DriftControl>,
}

impl Pacer {
    fn new(
        consumer: rtrb::Consumer<f32>,
        counters: Arc<RingCounters>,
        in_rate: u32,
    ) -> Result<Self, PcmError> {
        Ok(Self {
            consumer,
            counters,
            resampler: Resample48::new(in_rate)?,
            buffer: PacedBuffer::for_burst(FRAME_SAMPLES),
            seen_dropped: 0,
            seen_xruns: 0,
            overruns: 0,
            drift: Some(DriftControl::new()),
        })
    }

    /// Resizes the buffer for a device that delivers `frames` frames per callback (its
    /// ALSA period). Call before the first [`Pacer::feed`].
    pub fn set_device_burst(&mut self, frames: usize) {
        let at_48k = frames * SAMPLE_RATE as usize / self.resampler.in_rate().max(1) as usize;
        self.buffer = PacedBuffer::for_burst(at_48k);
    }

    /// Moves everything the device has delivered into the paced buffer. Returns the number
    /// of input samples taken from the ring. When more arrived than the buffer could ever
    /// keep (a device running far faster than real time), the oldest are skipped before
    /// resampling, to spare the CPU, and that counts as an overrun.
    pub fn feed(&mut self) -> usize {
        let available = self.consumer.slots();
        let Ok(chunk) = self.consumer.read_chunk(available) else {
            return 0;
        };
        let in_rate = self.resampler.in_rate().max(1) as usize;
        // Enough input for a full buffer, plus the resampler's chunk and filter history.
        let keep = (self.buffer.target() + FRAME_SAMPLES) * in_rate / SAMPLE_RATE as usize
            + 2 * self.resampler.chunk();
        let (mut a, mut b) = chunk.as_slices();
        if available > keep {
            self.overruns += 1;
            let mut skip = available - keep;
            let from_a = skip.min(a.len());
            a = &a[from_a..];
            skip -= from_a;
            b = &b[skip.min(b.len())..];
            self.resampler.reset();
        }
        let buffer = &mut self.buffer;
        let mut emit = |out: &[i16]| buffer.push(out);
        self.resampler.process(a, &mut emit);
        self.resampler.process(b, &mut emit);
        chunk.commit_all();
        let dropped = self.counters.dropped.load(Ordering::Relaxed);
        let xruns = self.counters.device_xruns.load(Ordering::Relaxed);
        if dropped != self.seen_dropped {
            self.seen_dropped = dropped;
            self.overruns += 1;
        }
        if xruns != self.seen_xruns {
            self.overruns += xruns - self.seen_xruns;
            self.seen_xruns = xruns;
        }
        if let Some(drift) = &mut self.drift {
            if self.buffer.playing() {
                let relative = drift.update(self.buffer.len(), self.buffer.target());
                self.resampler.set_drift(relative);
            } else {
                drift.reset();
                self.resampler.set_drift(1.0);
            }
        }
        available
    }

    /// Keeps the ratio nominal whatever the buffer does, as before drift control: for
    /// the tests that measure what it is worth.
    #[cfg(test)]
    pub fn without_drift_control(mut self) -> Self {
        self.drift = None;
        self
    }

    pub fn next_frame(&mut self, out: &mut [i16]) -> Fill {
        self.buffer.pop_frame(out)
    }

    pub fn xruns(&self) -> Xruns {
        let b = self.buffer.xruns();
        Xruns {
            overruns: b.overruns + self.overruns,
            underruns: b.underruns,
        }
    }

    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }
}

#[cfg(test)]
mod drift_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downmix_averages_channels_of_any_format() {
        let stereo: Vec<i16> = vec![i16::MAX, 0, -16384, -16384];
        let mono: Vec<f32> = downmix(&stereo, 2).collect();
        assert_eq!(mono.len(), 2);
        assert!((mono[0] - 0.5).abs() < 1e-3, "{mono:?}");
        assert!((mono[1] + 0.5).abs() < 1e-3, "{mono:?}");
        let u8s: Vec<u8> = vec![128, 255, 0];
        let m: Vec<f32> = downmix(&u8s, 1).collect();
        assert!(m[0].abs() < 1e-2 && m[1] > 0.99 && m[2] < -0.99, "{m:?}");
        let f: Vec<f32> = downmix(&[0.25f32, 0.5, -0.75, 1.0, 0.5, 0.0, 0.9], 3).collect();
        assert_eq!(f, vec![0.0, 0.5], "a trailing partial frame is ignored");
        let i32s: Vec<i32> = downmix(&[i32::MIN, i32::MAX], 2)
            .collect::<Vec<f32>>()
            .iter()
            .map(|x| (x * 1000.0).round() as i32)
            .collect();
        assert_eq!(i32s, vec![0]);
    }

    #[test]
    fn to_i16_saturates() {
        assert_eq!(to_i16(2.0), i16::MAX);
        assert_eq!(to_i16(-2.0), -i16::MAX);
        assert_eq!(to_i16(0.5), 16384);
    }

    /// Frequency from the median of the zero-crossing periods (sub-sample, linear
    /// interpolation), and RMS, of 48 kHz samples.
    pub(crate) fn tone(samples: &[i16]) -> (f64, f64) {
        let mut ups = Vec::new();
        for (i, w) in samples.windows(2).enumerate() {
            if w[0] < 0 && w[1] >= 0 {
                let (a, b) = (f64::from(w[0]), f64::from(w[1]));
                ups.push(i as f64 + a / (a - b));
            }
        }
        let mut periods: Vec<f64> = ups.windows(2).map(|w| w[1] - w[0]).collect();
        periods.sort_by(f64::total_cmp);
        let period = periods.get(periods.len() / 2).copied().unwrap_or(f64::NAN);
        let rms = (samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>()
            / samples.len().max(1) as f64)
            .sqrt();
        (48_000.0 / period, rms)
    }

    fn sine(rate: u32, hz: f64, amp: f64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                (amp * (2.0 * std::f64::consts::PI * hz * i as f64 / f64::from(rate)).sin()) as f32
            })
            .collect()
    }

    #[test]
    fn resampling_keeps_frequency_level_and_rate() {
        for rate in [8_000, 16_000, 44_100, 48_000, 96_000] {
            let input = sine(rate, 1000.0, 0.5, rate as usize); // one second
            let mut r = Resample48::new(rate).expect("resampler");
            let mut out = Vec::new();
            // Odd-sized pieces, as a device would deliver them.
            for piece in input.chunks(333) {
                r.process(piece, &mut |s| out.extend_from_slice(s));
            }
            let expected = 48_000.0;
            assert!(
                (out.len() as f64 - expected).abs() < expected * 0.02,
                "{rate} Hz: one second became {} samples",
                out.len()
            );
            let (hz, rms) = tone(&out[4800..]);
            assert!((hz - 1000.0).abs() < 2.0, "{rate} Hz: tone at {hz:.2} Hz");
            let want = 0.5 * 32767.0 / 2f64.sqrt();
            assert!(
                (rms - want).abs() < want * 0.03,
                "{rate} Hz: RMS {rms:.0}, want {want:.0}"
            );
        }
    }

    #[test]
    fn resampling_removes_what_48k_cannot_carry_only_when_downsampling() {
        // 30 kHz at 96 kHz is above 48 kHz's Nyquist: it must not alias into the output.
        let input = sine(96_000, 30_000.0, 0.5, 96_000);
        let mut r = Resample48::new(96_000).expect("resampler");
        let mut out = Vec::new();
        r.process(&input, &mut |s| out.extend_from_slice(s));
        let (_, rms) = tone(&out[4800..]);
        assert!(rms < 100.0, "aliased energy RMS {rms:.0}");
    }

    #[test]
    fn paced_buffer_primes_then_plays_in_order() {
        let mut b = PacedBuffer::new(2 * FRAME_SAMPLES, 5 * FRAME_SAMPLES);
        let mut out = vec![1i16; FRAME_SAMPLES];
        assert_eq!(b.pop_frame(&mut out), Fill::Priming);
        assert!(out.iter().all(|&s| s == 0));
        let data: Vec<i16> = (0..2 * FRAME_SAMPLES as i16).collect();
        b.push(&data);
        assert_eq!(b.pop_frame(&mut out), Fill::Full);
        assert_eq!(out[..], data[..FRAME_SAMPLES]);
        assert_eq!(b.pop_frame(&mut out), Fill::Full);
        assert_eq!(out[..], data[FRAME_SAMPLES..]);
        assert_eq!(b.xruns(), Xruns::default(), "priming is not an underrun");
    }

    #[test]
    fn an_overrun_drops_the_oldest_samples_and_counts() {
        let mut b = PacedBuffer::new(2 * FRAME_SAMPLES, 4 * FRAME_SAMPLES);
        let data: Vec<i16> = (0..5 * FRAME_SAMPLES)
            .map(|i| (i % 30_000) as i16)
            .collect();
        b.push(&data[..3 * FRAME_SAMPLES]); // fits
        assert_eq!(b.xruns().overruns, 0);
        b.push(&data[3 * FRAME_SAMPLES..]); // 5 frames > limit of 4
        assert_eq!(b.xruns().overruns, 1);
        assert_eq!(b.len(), 2 * FRAME_SAMPLES, "trimmed to the target");
        assert_eq!(b.dropped(), 3 * FRAME_SAMPLES as u64);
        let mut out = vec![0i16; FRAME_SAMPLES];
        assert_eq!(b.pop_frame(&mut out), Fill::Full);
        assert_eq!(
            out[..],
            data[3 * FRAME_SAMPLES..4 * FRAME_SAMPLES],
            "the newest stay"
        );
        // One push far larger than the buffer: only its newest `target` samples stay.
        let flood: Vec<i16> = (0..20 * FRAME_SAMPLES)
            .map(|i| (i % 20_000) as i16)
            .collect();
        b.push(&flood);
        assert_eq!(b.xruns().overruns, 2);
        assert_eq!(b.len(), 2 * FRAME_SAMPLES);
        b.pop_frame(&mut out);
        assert_eq!(out[..], flood[18 * FRAME_SAMPLES..19 * FRAME_SAMPLES]);
    }

    #[test]
    fn an_underrun_pads_with_silence_counts_and_reprimes() {
        let mut b = PacedBuffer::new(2 * FRAME_SAMPLES, 5 * FRAME_SAMPLES);
        b.push(&vec![7i16; 2 * FRAME_SAMPLES + 100]);
        let mut out = vec![0i16; FRAME_SAMPLES];
        assert_eq!(b.pop_frame(&mut out), Fill::Full);
        assert_eq!(b.pop_frame(&mut out), Fill::Full);
        assert_eq!(b.pop_frame(&mut out), Fill::Underrun(100));
        assert!(out[..100].iter().all(|&s| s == 7));
        assert!(out[100..].iter().all(|&s| s == 0));
        assert_eq!(b.xruns().underruns, 1);
        // Starved: silence until the target is back, not counted again frame by frame.
        b.push(&vec![5i16; FRAME_SAMPLES]);
        assert_eq!(b.pop_frame(&mut out), Fill::Priming);
        assert_eq!(b.xruns().underruns, 1);
        b.push(&vec![5i16; FRAME_SAMPLES]);
        assert_eq!(b.pop_frame(&mut out), Fill::Full);
        assert!(out.iter().all(|&s| s == 5));
    }

    #[test]
    fn the_ring_drops_what_does_not_fit_and_the_pacer_counts_it() {
        let (mut sink, mut pacer) = ring(48_000, 2).expect("ring");
        // 1 s of stereo at once into a 200 ms ring: most of it cannot fit.
        let stereo: Vec<i16> = (0..96_000)
            .map(|i| if i % 2 == 0 { 8000 } else { 0 })
            .collect();
        sink.push(&stereo);
        assert_eq!(
            sink.counters().dropped.load(Ordering::Relaxed),
            48_000 - 9_600
        );
        pacer.feed();
        assert!(pacer.xruns().overruns >= 1);
        let mut out = vec![0i16; FRAME_SAMPLES];
        assert_eq!(pacer.next_frame(&mut out), Fill::Full);
        // Left 8000, right 0: mono is their mean.
        assert!(
            out.iter().all(|&s| (s - 4000).abs() <= 1),
            "{:?}",
            &out[..4]
        );
    }

    #[test]
    fn a_device_at_real_time_pace_neither_overruns_nor_underruns() {
        // 44.1 kHz stereo in 1024-frame periods (23.2 ms), read every 20 ms: the reader's
        // clock, not the device's, sets the output rate.
        let (mut sink, mut pacer) = ring(44_100, 2).expect("ring");
        pacer.set_device_burst(1024);
        let mut period = vec![0i16; 2048];
        let mut produced = 0usize;
        let mut out = vec![0i16; FRAME_SAMPLES];
        let mut full = 0;
        for tick in 0..500u64 {
            // Device time at the end of this tick, in frames: deliver whole periods.
            let due = ((tick + 1) * 20 * 44_100 / 1000) as usize;
            while produced + 1024 <= due {
                for (i, f) in period.chunks_exact_mut(2).enumerate() {
                    let t = (produced + i) as f64 / 44_100.0;
                    let s = (10_000.0 * (2.0 * std::f64::consts::PI * 523.0 * t).sin()) as i16;
                    f[0] = s;
                    f[1] = s;
                }
                sink.push(&period);
                produced += 1024;
            }
            pacer.feed();
            if pacer.next_frame(&mut out) == Fill::Full {
                full += 1;
            }
        }
        assert_eq!(pacer.xruns(), Xruns::default());
        assert!(full >= 495, "{full} of 500 frames were real audio");
    }
}
