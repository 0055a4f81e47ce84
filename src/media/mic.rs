//! The microphone: an ALSA capture device through cpal, behind [`AudioSource`].
//!
//! cpal calls back from its own thread with each period the device delivers; the callback
//! only hands the samples to [`dsp::CaptureSink`] (lock-free, no allocation). The encoder
//! thread calls [`MicSource::read`] on its own 20 ms schedule, which drains the ring
//! through [`dsp::Pacer`]: the device's pace never sets the stream's pace. A device
//! whose clock drifts against the encoder's (a 48 kHz device that really runs at
//! 48 014 Hz) is followed by resampling a little, never by dropping or padding samples.
//!
//! A device that fails (unplugged, an ALSA error, or silent for 2 s) is closed; `read`
//! then returns the error, the encoder sends silence, and the device is opened again every
//! [`RETRY`] until it works.
//!
//! Not done here: choosing among several microphones, gain, noise suppression. Only built
//! with the `mic-alsa` feature.

use crate::media::audio::{AudioError, AudioSource, Schedule};
use crate::media::dsp::{self, InputFormat, Pacer, Xruns};
use crate::media::mic_format::{self, Want};
use crate::media::mic_list::MicInfo;
use crate::sync::lock;
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::SampleFormat;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a failed device is tried again.
pub const RETRY: Duration = Duration::from_secs(2);
/// A device that delivers nothing for this long is treated as failed.
const SILENT_FOR: Duration = Duration::from_secs(2);
/// The name `audio.device = "auto"` captures from: ALSA's default capture device.
pub const DEFAULT_DEVICE: &str = "default";

#[derive(Debug, Clone, thiserror::Error)]
pub enum MicError {
    #[error(
        "ALSA capture device {name:?} was not found: `roverd devices` (or `arecord -L`) lists \
         the names audio.device accepts; check that the microphone is plugged in"
    )]
    NotFound { name: String },
    #[error(
        "could not read the formats of ALSA capture device {name:?}: {message}; check that no \
         other program holds it and that roverd's user is in the `audio` group"
    )]
    Formats { name: String, message: String },
    #[error(
        "ALSA capture device {name:?} offers no format roverd converts ({offered}); its \
         plughw: name converts for it"
    )]
    NoFormat { name: String, offered: String },
    #[error(
        "could not open ALSA capture device {name:?} at {format}: {message}; check that no \
         other program holds it (`fuser -v /dev/snd/*`) and that roverd's user is in the \
         `audio` group"
    )]
    Open {
        name: String,
        format: String,
        message: String,
    },
    #[error("ALSA capture device {name:?} failed: {message}; roverd retries every 2 s")]
    Failed { name: String, message: String },
    #[error(
        "ALSA capture device {name:?} delivered no sound for 2 s; check its cable; roverd \
         retries every 2 s"
    )]
    Silent { name: String },
    #[error("ALSA capture device {name:?}: {source}")]
    Pcm {
        name: String,
        #[source]
        source: Arc<dsp::PcmError>,
    },
}

/// The encoder sees a microphone's errors as audio errors, with the same words; the
/// conversion lives here so that `audio` needs to know nothing of ALSA.
impl From<MicError> for AudioError {
    fn from(e: MicError) -> Self {
        AudioError::Device(Box::new(e))
    }
}

/// An open capture stream and the reader's end of its ring.
struct Capture {
    /// Dropping it stops cpal's capture thread.
    _stream: cpal::Stream,
    pacer: Pacer,
    /// Set by cpal's error callback: the stream is dead.
    failure: Arc<Mutex<Option<String>>>,
    format: InputFormat,
    last_data: Instant,
}

fn describe(w: &Want) -> String {
    format!(
        "{} Hz, {} channel{}, {}",
        w.sample_rate,
        w.channels,
        if w.channels == 1 { "" } else { "s" },
        w.sample_format
    )
}

fn find_device(host: &cpal::Host, name: &str) -> Option<cpal::Device> {
    if name == DEFAULT_DEVICE {
        return host.default_input_device();
    }
    let id: cpal::DeviceId = format!("alsa:{name}").parse().ok()?;
    host.device_by_id(&id)
}

/// Runs `f` with ALSA's own error messages (printed to stderr by default, outside the log,
/// and alarming where no sound card is expected: "cannot find card '0'") captured for this
/// thread and passed to the debug log. roverd's own errors say what matters. Each call
/// starts a fresh buffer, so retries do not accumulate text.
fn quiet_alsa<T>(f: impl FnOnce() -> T) -> T {
    let captured = alsa::Output::local_error_handler().ok();
    let result = f();
    if let Some(out) = captured {
        let text = out.borrow().to_string();
        for line in text.lines() {
            log::debug!("ALSA: {line}");
        }
    }
    result
}

fn open(name: &str, want: Option<Want>) -> Result<Capture, MicError> {
    quiet_alsa(|| open_loud(name, want))
}

fn open_loud(name: &str, want: Option<Want>) -> Result<Capture, MicError> {
    let host = cpal::default_host();
    let device = find_device(&host, name).ok_or_else(|| MicError::NotFound {
        name: name.to_owned(),
    })?;
    let offered: Vec<_> = device
        .supported_input_configs()
        .map_err(|e| MicError::Formats {
            name: name.to_owned(),
            message: e.to_string(),
        })?
        .collect();
    if offered.is_empty() {
        return Err(MicError::NotFound {
            name: name.to_owned(),
        });
    }
    let chosen = mic_format::choose_config(&offered, want).ok_or_else(|| MicError::NoFormat {
        name: name.to_owned(),
        offered: offered
            .iter()
            .map(|o| {
                format!(
                    "{}–{} Hz × {} {}",
                    o.min_sample_rate(),
                    o.max_sample_rate(),
                    o.channels(),
                    o.sample_format()
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    })?;
    let pcm_err = |e: dsp::PcmError| MicError::Pcm {
        name: name.to_owned(),
        source: Arc::new(e),
    };
    let (sink, mut pacer) = dsp::ring(chosen.sample_rate, chosen.channels).map_err(pcm_err)?;
    let config = cpal::StreamConfig {
        channels: chosen.channels,
        sample_rate: chosen.sample_rate,
        buffer_size: cpal::BufferSize::Default,
    };
    let failure = Arc::new(Mutex::new(None));
    let open_err = |message: String| MicError::Open {
        name: name.to_owned(),
        format: describe(&chosen),
        message,
    };
    let stream = build_stream(&device, &config, chosen.sample_format, sink, &failure)
        .map_err(|e| open_err(e.to_string()))?;
    stream.play().map_err(|e| open_err(e.to_string()))?;
    if let Ok(period) = stream.buffer_size() {
        pacer.set_device_burst(period as usize);
    }
    Ok(Capture {
        _stream: stream,
        pacer,
        failure,
        format: InputFormat {
            sample_rate: chosen.sample_rate,
            channels: chosen.channels,
            sample_format: chosen.sample_format.to_string(),
        },
        last_data: Instant::now(),
    })
}

/// Builds the capture stream for the chosen sample format: the callback converts and
/// pushes; the error callback counts xruns and reports anything else as a failure.
fn build_stream(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    format: SampleFormat,
    sink: dsp::CaptureSink,
    failure: &Arc<Mutex<Option<String>>>,
) -> Result<cpal::Stream, cpal::Error> {
    let counters = Arc::clone(sink.counters());
    let failure = Arc::clone(failure);
    let on_error = move |e: cpal::Error| match e.kind() {
        cpal::ErrorKind::Xrun => {
            counters
                .device_xruns
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        // The stream goes on by itself after these.
        cpal::ErrorKind::DeviceChanged | cpal::ErrorKind::RealtimeDenied => {}
        _ => *lock(&failure) = Some(e.to_string()),
    };
    macro_rules! build {
        ($t:ty) => {{
            let mut sink = sink;
            device.build_input_stream::<$t, _, _>(
                *config,
                move |data: &[$t], _: &cpal::InputCallbackInfo| sink.push(data),
                on_error,
                None,
            )
        }};
    }
    match format {
        SampleFormat::I16 => build!(i16),
        SampleFormat::F32 => build!(f32),
        SampleFormat::I32 => build!(i32),
        SampleFormat::U16 => build!(u16),
        SampleFormat::I8 => build!(i8),
        SampleFormat::U8 => build!(u8),
        SampleFormat::F64 => build!(f64),
        other => Err(cpal::Error::with_message(
            cpal::ErrorKind::UnsupportedConfig,
            format!("roverd does not convert {other} samples"),
        )),
    }
}

/// A microphone that paces itself at real time whatever the device does, and reopens the
/// device every [`RETRY`] after a failure.
pub struct MicSource {
    name: String,
    want: Option<Want>,
    capture: Option<Capture>,
    /// When to try opening the device again, and why it is closed.
    retry_at: Instant,
    error: Option<MicError>,
    schedule: Schedule,
    /// Counts from captures already closed.
    past_xruns: Xruns,
}

impl MicSource {
    /// Opens `name` (an ALSA PCM name, or [`DEFAULT_DEVICE`]) now. With `want`, asks the
    /// device for exactly that format; otherwise [`mic_format::choose_config`] picks.
    pub fn open(name: &str, want: Option<Want>) -> Result<MicSource, MicError> {
        let capture = open(name, want)?;
        Ok(MicSource {
            name: name.to_owned(),
            want,
            capture: Some(capture),
            retry_at: Instant::now(),
            error: None,
            schedule: Schedule::default(),
            past_xruns: Xruns::default(),
        })
    }

    /// A source for `name` that could not be opened: silence (the caller's), and a retry
    /// every [`RETRY`].
    pub fn retrying(name: &str, want: Option<Want>, error: MicError) -> MicSource {
        MicSource {
            name: name.to_owned(),
            want,
            capture: None,
            retry_at: Instant::now() + RETRY,
            error: Some(error),
            schedule: Schedule::default(),
            past_xruns: Xruns::default(),
        }
    }

    fn close(&mut self, error: MicError, now: Instant) -> AudioError {
        if let Some(c) = self.capture.take() {
            let x = c.pacer.xruns();
            self.past_xruns.overruns += x.overruns;
            self.past_xruns.underruns += x.underruns;
        }
        self.retry_at = now + RETRY;
        self.error = Some(error.clone());
        error.into()
    }
}

impl AudioSource for MicSource {
    fn name(&self) -> &str {
        &self.name
    }

    /// With the device open: waits for the next 20 ms tick and returns the frame the
    /// paced buffer gives (real samples, or silence when the device is behind). With the
    /// device closed: returns the error at once (the encoder sends silence on its own
    /// schedule), after trying to open the device again when [`RETRY`] has passed.
    fn read(&mut self, out: &mut [i16]) -> Result<(), AudioError> {
        let now = Instant::now();
        if self.capture.is_none() {
            if now < self.retry_at {
                return Err(self
                    .error
                    .clone()
                    .unwrap_or(MicError::NotFound {
                        name: self.name.clone(),
                    })
                    .into());
            }
            match open(&self.name, self.want) {
                Ok(capture) => {
                    log::info!(
                        "microphone {:?} open again: {} Hz, {} channels, {}",
                        self.name,
                        capture.format.sample_rate,
                        capture.format.channels,
                        capture.format.sample_format
                    );
                    self.capture = Some(capture);
                    self.schedule.reset();
                }
                Err(e) => return Err(self.close(e, now)),
            }
        }
        self.schedule.wait(out.len());
        let now = Instant::now();
        let Some(capture) = self.capture.as_mut() else {
            out.fill(0);
            return Ok(());
        };
        let failed = lock(&capture.failure).take();
        let name = || self.name.clone();
        let error = if let Some(message) = failed {
            MicError::Failed {
                name: name(),
                message,
            }
        } else if capture.pacer.feed() > 0 {
            capture.last_data = now;
            capture.pacer.next_frame(out);
            return Ok(());
        } else if now.duration_since(capture.last_data) < SILENT_FOR {
            capture.pacer.next_frame(out);
            return Ok(());
        } else {
            MicError::Silent { name: name() }
        };
        Err(self.close(error, now))
    }

    fn input_format(&self) -> Option<InputFormat> {
        self.capture.as_ref().map(|c| c.format.clone())
    }

    fn xruns(&self) -> Xruns {
        let now = self
            .capture
            .as_ref()
            .map(|c| c.pacer.xruns())
            .unwrap_or_default();
        Xruns {
            overruns: self.past_xruns.overruns + now.overruns,
            underruns: self.past_xruns.underruns + now.underruns,
        }
    }
}

/// Every ALSA capture device that can be opened, with what it offers, for
/// `roverd devices`. ALSA's `null` PCM (which captures only silence) is left out.
/// Print with [`crate::media::mic_list::format_microphones`].
pub fn list_microphones() -> Vec<MicInfo> {
    quiet_alsa(list_loud)
}

fn list_loud() -> Vec<MicInfo> {
    let host = cpal::default_host();
    let Ok(devices) = host.input_devices() else {
        return Vec::new();
    };
    let mut mics = Vec::new();
    for device in devices {
        let Ok(id) = device.id() else { continue };
        let name = id.id().to_owned();
        if name == "null" {
            continue;
        }
        let Ok(offered) = device.supported_input_configs() else {
            continue;
        };
        let offered: Vec<_> = offered.collect();
        if offered.is_empty() {
            continue;
        }
        let description = device.description().ok().map(|d| d.to_string());
        mics.push(MicInfo::from_ranges(name, description, &offered));
    }
    mics
}
