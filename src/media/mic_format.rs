//! The format roverd opens an ALSA capture device with, chosen from what cpal says the
//! device offers, and the summary of a device for `roverd devices`. Pure, but in cpal's
//! types, so only built with the `mic-alsa` feature.

use crate::media::dsp::SAMPLE_RATE;
use crate::media::mic_list::MicInfo;
use cpal::{SampleFormat, SupportedStreamConfigRange};

/// What roverd asks a device for when it may choose: a rate, a channel count, a format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    pub sample_rate: u32,
    pub channels: u16,
    pub sample_format: SampleFormat,
}

impl std::str::FromStr for Want {
    type Err = String;

    /// `RATE/CHANNELS/FORMAT`, e.g. `44100/2/i16`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not RATE/CHANNELS/FORMAT, e.g. 44100/2/i16");
        let mut parts = s.split('/');
        let (Some(rate), Some(channels), Some(format), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let sample_format = SUPPORTED_FORMATS
            .iter()
            .copied()
            .find(|f| f.to_string() == format)
            .ok_or_else(bad)?;
        Ok(Want {
            sample_rate: rate.parse().map_err(|_| bad())?,
            channels: channels.parse().map_err(|_| bad())?,
            sample_format,
        })
    }
}

/// The sample formats roverd converts, best first.
pub const SUPPORTED_FORMATS: [SampleFormat; 7] = [
    SampleFormat::I16,
    SampleFormat::F32,
    SampleFormat::I32,
    SampleFormat::U16,
    SampleFormat::I8,
    SampleFormat::U8,
    SampleFormat::F64,
];

/// Picks the configuration to open a device with, from what it offers: 48 kHz if offered
/// (no resampling), else the nearest rate; mono if offered, else the fewest channels; then
/// the best-ranked sample format roverd converts. With `want`, exactly that or nothing.
pub fn choose_config(offered: &[SupportedStreamConfigRange], want: Option<Want>) -> Option<Want> {
    if let Some(w) = want {
        return offered
            .iter()
            .any(|r| {
                r.channels() == w.channels
                    && r.sample_format() == w.sample_format
                    && r.contains_rate(w.sample_rate)
            })
            .then_some(w);
    }
    offered
        .iter()
        .filter_map(|r| {
            let rank = SUPPORTED_FORMATS
                .iter()
                .position(|f| *f == r.sample_format())?;
            let rate = SAMPLE_RATE.clamp(r.min_sample_rate(), r.max_sample_rate());
            let channels = r.channels();
            if channels == 0 {
                return None;
            }
            let key = (
                rate.abs_diff(SAMPLE_RATE),
                channels.abs_diff(1),
                rank,
                // Among equals, prefer the higher rate (less lost bandwidth).
                u32::MAX - rate,
            );
            Some((
                key,
                Want {
                    sample_rate: rate,
                    channels,
                    sample_format: r.sample_format(),
                },
            ))
        })
        .min_by_key(|(key, _)| *key)
        .map(|(_, w)| w)
}

const STANDARD_RATES: [u32; 9] = [
    8_000, 11_025, 16_000, 22_050, 32_000, 44_100, 48_000, 96_000, 192_000,
];

impl MicInfo {
    /// Summarises what a device offers.
    pub fn from_ranges(
        name: String,
        description: Option<String>,
        offered: &[SupportedStreamConfigRange],
    ) -> Self {
        let mut rates: Vec<u32> = STANDARD_RATES
            .iter()
            .copied()
            .filter(|r| offered.iter().any(|o| o.contains_rate(*r)))
            .collect();
        if rates.is_empty() {
            rates = offered
                .iter()
                .flat_map(|o| [o.min_sample_rate(), o.max_sample_rate()])
                .collect();
            rates.sort_unstable();
            rates.dedup();
        }
        let mut channels: Vec<u16> = offered.iter().map(|o| o.channels()).collect();
        channels.sort_unstable();
        channels.dedup();
        let mut formats: Vec<String> = Vec::new();
        for o in offered {
            let f = o.sample_format().to_string();
            if !formats.contains(&f) {
                formats.push(f);
            }
        }
        Self {
            name,
            description,
            rates,
            channels,
            formats,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::mic_list::format_microphones;
    use cpal::SupportedBufferSize;

    fn range(channels: u16, min: u32, max: u32, f: SampleFormat) -> SupportedStreamConfigRange {
        SupportedStreamConfigRange::new(channels, min, max, SupportedBufferSize::Unknown, f)
    }

    #[test]
    fn config_choice_prefers_48k_mono_i16_and_converts_the_rest() {
        use SampleFormat::*;
        let pick = |o: &[SupportedStreamConfigRange]| {
            choose_config(o, None).map(|w| (w.sample_rate, w.channels, w.sample_format))
        };
        assert_eq!(
            pick(&[range(2, 8000, 192_000, F32), range(1, 8000, 192_000, I16)]),
            Some((48_000, 1, I16))
        );
        // A USB microphone that only does 44.1 kHz stereo S32.
        assert_eq!(
            pick(&[range(2, 44_100, 44_100, I32)]),
            Some((44_100, 2, I32))
        );
        // 48 kHz beats mono: resampling costs more than downmixing.
        assert_eq!(
            pick(&[range(1, 16_000, 16_000, I16), range(2, 48_000, 48_000, I16)]),
            Some((48_000, 2, I16))
        );
        assert_eq!(
            pick(&[range(1, 96_000, 192_000, F32)]),
            Some((96_000, 1, F32))
        );
        assert_eq!(
            pick(&[range(2, 48_000, 48_000, DsdU8)]),
            None,
            "no format roverd converts"
        );
        assert_eq!(pick(&[]), None);
        let want: Want = "44100/2/i16".parse().expect("parses");
        assert_eq!(
            choose_config(&[range(2, 8000, 96_000, I16)], Some(want)),
            Some(want)
        );
        assert_eq!(
            choose_config(&[range(1, 8000, 96_000, I16)], Some(want)),
            None
        );
        assert!("44100/2".parse::<Want>().is_err());
        assert!("44100/2/s16".parse::<Want>().is_err());
    }

    #[test]
    fn the_device_listing_is_pasteable_and_says_when_there_is_none() {
        let mic = MicInfo::from_ranges(
            "plughw:CARD=Device,DEV=0".into(),
            Some("USB PnP Sound Device, USB Audio\nHardware device".into()),
            &[range(1, 44_100, 48_000, SampleFormat::I16)],
        );
        assert_eq!(mic.rates, vec![44_100, 48_000]);
        let text = format_microphones(&[mic]);
        let line = text.lines().nth(1).expect("one line per device");
        assert!(
            line.starts_with("[audio] device = \"plughw:CARD=Device,DEV=0\""),
            "{line}"
        );
        assert!(
            line.contains("44100, 48000") && line.contains("USB PnP"),
            "{line}"
        );
        assert!(
            !line.contains("Hardware device"),
            "descriptions keep to one line"
        );
        let toml_part = line
            .split('#')
            .next()
            .unwrap_or_default()
            .replace("[audio] ", "[audio]\n");
        let parsed: toml::Value = toml::from_str(&toml_part).expect("the line is TOML");
        assert_eq!(
            parsed["audio"]["device"].as_str(),
            Some("plughw:CARD=Device,DEV=0")
        );
        assert!(format_microphones(&[]).starts_with("No ALSA capture devices found"));
    }
}
