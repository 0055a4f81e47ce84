//! The test tone: a sine that stands in for the microphone, so that roverd runs, and is
//! tested, on a machine with no sound card. Pure: no clock, no thread, no I/O.

use std::f64::consts::TAU;

/// Frequency of the test tone: the A above middle C, easy to recognise by ear
/// and by a zero-crossing count.
pub const TONE_HZ: f64 = 440.0;

/// A sine test tone: 16-bit mono samples, phase-continuous across
/// [`Tone::fill`] calls so that the audio frames an encoder asks for one by
/// one join without clicks.
#[derive(Debug, Clone)]
pub struct Tone {
    /// Phase advance per sample, in radians.
    step: f64,
    /// Peak value in sample units.
    peak: f64,
    /// Phase of the next sample, kept in [0, 2π) so that precision does not
    /// decay over a long run.
    phase: f64,
}

impl Tone {
    /// A tone of `freq_hz` sampled at `sample_rate`, with a peak of
    /// `amplitude` times full scale (clamped to 0..=1). A zero sample rate or
    /// a non-finite argument gives silence rather than NaN samples.
    pub fn new(freq_hz: f64, sample_rate: u32, amplitude: f64) -> Self {
        let step = if sample_rate > 0 && freq_hz.is_finite() {
            TAU * freq_hz / f64::from(sample_rate)
        } else {
            0.0
        };
        let amplitude = if amplitude.is_finite() {
            amplitude.clamp(0.0, 1.0)
        } else {
            0.0
        };
        Self {
            step,
            peak: amplitude * f64::from(i16::MAX),
            phase: 0.0,
        }
    }

    /// Fills `out` with the next samples of the tone.
    pub fn fill(&mut self, out: &mut [i16]) {
        for sample in out {
            // |sin| <= 1 and peak <= i16::MAX, so the cast never saturates.
            *sample = (self.phase.sin() * self.peak).round() as i16;
            // The same operations per sample whatever the chunking, so two
            // fills of N equal one fill of 2N exactly.
            self.phase = (self.phase + self.step).rem_euclid(TAU);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tone_is_phase_continuous_across_fills() {
        let mut once = Tone::new(TONE_HZ, 48_000, 0.5);
        let mut whole = [0i16; 960];
        once.fill(&mut whole);

        let mut twice = Tone::new(TONE_HZ, 48_000, 0.5);
        let mut halves = [0i16; 960];
        let (first, second) = halves.split_at_mut(480);
        twice.fill(first);
        twice.fill(second);
        assert_eq!(whole, halves);
    }

    #[test]
    fn tone_has_the_right_frequency() {
        for (freq, rate) in [(TONE_HZ, 48_000), (1000.0, 44_100), (TONE_HZ, 8_000)] {
            let mut tone = Tone::new(freq, rate, 0.8);
            // One second, in 20 ms chunks as the Opus encoder asks for it.
            let mut second = vec![0i16; rate as usize];
            for chunk in second.chunks_mut(rate as usize / 50) {
                tone.fill(chunk);
            }
            let rising = second.windows(2).filter(|w| w[0] < 0 && w[1] >= 0).count();
            assert!(
                (rising as f64 - freq).abs() <= 1.0,
                "{freq} Hz at {rate}: {rising} rising zero crossings"
            );
        }
    }

    #[test]
    fn tone_has_the_right_amplitude() {
        let mut samples = vec![0i16; 48_000];
        Tone::new(TONE_HZ, 48_000, 0.5).fill(&mut samples);
        let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap();
        // 440 Hz at 48 kHz lands within 0.03 rad of each crest.
        assert!((16_370..=16_384).contains(&peak), "peak {peak}");

        Tone::new(TONE_HZ, 48_000, 1.0).fill(&mut samples);
        assert!(samples.iter().all(|&s| s >= -i16::MAX));
        assert!(samples.iter().any(|&s| s > 32_700));

        // Out-of-range amplitude is clamped; nonsense arguments give silence.
        Tone::new(TONE_HZ, 48_000, 7.0).fill(&mut samples);
        assert!(samples.iter().all(|&s| s >= -i16::MAX));
        for mut tone in [
            Tone::new(TONE_HZ, 0, 1.0),
            Tone::new(f64::NAN, 48_000, 1.0),
            Tone::new(TONE_HZ, 48_000, f64::NAN),
            Tone::new(TONE_HZ, 48_000, 0.0),
        ] {
            tone.fill(&mut samples);
            assert!(samples.iter().all(|&s| s == 0));
        }
    }
}
