//! The microphone path with a real ALSA capture device and no sound card: ALSA's `file`
//! plugin reads a raw recording this test writes (a sine at a frequency the test tone
//! never has), behind a PCM defined in an ALSA config file that only the roverd child
//! process sees (`ALSA_CONFIG_PATH`). That device has no clock of its own.
//!
//! The recording is a FIFO that a thread here keeps full, without end: a device with no
//! clock at all, delivering as fast as roverd's capture thread reads (a plain file would
//! be read to its end within a fraction of a second). The pipe must never run dry: when
//! ALSA's `file` plugin gets a short read it passes on stale bytes for the rest, so a
//! writer paced slower than the reader would garble the recording. Only roverd's own
//! real-time pacing makes the stream's rate right.
//!
//! roverd runs as its own process here so that the ALSA environment stays out of this
//! test binary. A webrtc-rs peer decodes the Opus and measures what it hears.

mod common;

use common::{ClientPeer, Process, VideoReceiver};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A scratch directory for one test, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("roverd-mic-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Makes `path` a FIFO and keeps it full from a thread, without end, with interleaved
/// S16_LE: channel `c` is a sine at `hz` (a whole number, so that one second loops without
/// a seam) with peak `amplitudes[c]` of full scale. Each reader that opens it (roverd
/// opens the device more than once) gets the same endless recording.
fn feed_sine(path: &Path, rate: u32, hz: u32, amplitudes: &[f64]) {
    let made = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo {}", path.display());
    let mut second = Vec::with_capacity(rate as usize * amplitudes.len() * 2);
    for n in 0..rate {
        let phase = 2.0 * std::f64::consts::PI * f64::from(hz) * f64::from(n) / f64::from(rate);
        for a in amplitudes {
            let s = (a * 32767.0 * phase.sin()).round() as i16;
            second.extend_from_slice(&s.to_le_bytes());
        }
    }
    let path = path.to_owned();
    std::thread::spawn(move || loop {
        // Blocks until a reader opens it; the thread ends with the test process.
        let Ok(mut fifo) = std::fs::OpenOptions::new().write(true).open(&path) else {
            return;
        };
        // Blocks while the pipe is full; fails when the reader closes: wait for the next.
        while fifo.write_all(&second).is_ok() {}
    });
}

/// An ALSA capture PCM named `name` that reads `recording` (raw, in whatever format the
/// reader asks for) and discards nothing, since a capture-only `file` PCM writes nowhere.
fn alsa_pcm(name: &str, recording: &Path) -> String {
    format!(
        "pcm.{name} {{\n  type file\n  slave.pcm \"null\"\n  file \"/dev/null\"\n  infile \"{}\"\n  format \"raw\"\n  hint {{ show on description \"roverd test recording\" }}\n}}\n",
        recording.display()
    )
}

/// roverd with the test pattern, `audio.device = device`, and the ALSA config `alsa`.
fn start_roverd(scratch: &Scratch, device: &str, alsa: &Path, format: Option<&str>) -> Process {
    let config = scratch.path("roverd.toml");
    std::fs::write(
        &config,
        format!("[camera]\ndevice = \"test\"\n[audio]\ndevice = \"{device}\"\n"),
    )
    .expect("write config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_roverd"));
    cmd.arg("--config")
        .arg(&config)
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .env(
            "ALSA_CONFIG_PATH",
            format!("/usr/share/alsa/alsa.conf:{}", alsa.display()),
        )
        .env_remove("ROVERD_TEST_AUDIO_FORMAT");
    if let Some(f) = format {
        cmd.env("ROVERD_TEST_AUDIO_FORMAT", f);
    }
    Process::spawn(cmd)
}

/// Frequency from the median zero-crossing period (interpolated to a fraction of a
/// sample: robust to the odd splice where the device's data jumped), and RMS level.
fn tone_of(samples: &[i16]) -> (f64, f64) {
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

/// What a peer heard over `window` of wall time, after skipping `skip` packets.
struct Heard {
    samples: Vec<i16>,
    packets: usize,
    /// RTP time covered by the packets received in the window.
    rtp_seconds: f64,
    wall: Duration,
}

async fn listen(peer: &mut ClientPeer, skip: usize, window: Duration) -> Heard {
    let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).expect("opus decoder");
    let mut buf = vec![0i16; 5760];
    // What queued up while the test did something else is not "now".
    while let Ok(packet) = peer.audio.try_recv() {
        let _ = decoder.decode(&packet.payload, &mut buf, false);
    }
    for _ in 0..skip {
        let packet = peer.next_audio_packet().await;
        let _ = decoder.decode(&packet.payload, &mut buf, false);
    }
    let start = Instant::now();
    let mut samples = Vec::new();
    let mut packets = 0;
    let mut first_ts = None;
    let mut last_ts = 0u32;
    while start.elapsed() < window {
        let packet = peer.next_audio_packet().await;
        let n = decoder
            .decode(&packet.payload, &mut buf, false)
            .expect("Opus decodes");
        samples.extend_from_slice(&buf[..n]);
        packets += 1;
        first_ts.get_or_insert(packet.header.timestamp);
        last_ts = packet.header.timestamp;
    }
    let span = last_ts.wrapping_sub(first_ts.unwrap_or(last_ts)) + 960;
    Heard {
        samples,
        packets,
        rtp_seconds: f64::from(span) / 48_000.0,
        wall: start.elapsed(),
    }
}

/// The peer hears the recording (its frequency within 2 %, its level) at real-time rate.
fn assert_hears(heard: &Heard, hz: f64, rms_range: std::ops::Range<f64>, log: &str) {
    let (got_hz, rms) = tone_of(&heard.samples);
    eprintln!(
        "heard {got_hz:.2} Hz at RMS {rms:.0}: {} packets, {:.2} s of audio in {:.2} s",
        heard.packets,
        heard.rtp_seconds,
        heard.wall.as_secs_f64()
    );
    assert!(
        (got_hz - hz).abs() < hz * 0.02,
        "heard {got_hz:.1} Hz, the recording is {hz} Hz; roverd's log:\n{log}"
    );
    assert!(
        rms_range.contains(&rms),
        "heard RMS {rms:.0}, expected {rms_range:?}"
    );
    let wall = heard.wall.as_secs_f64();
    // Real time: about one second of audio per second, not the device's flood.
    assert!(
        (heard.rtp_seconds - wall).abs() < 0.25 * wall,
        "{:.2} s of audio ({} packets) in {wall:.2} s of wall time",
        heard.rtp_seconds,
        heard.packets
    );
    assert!(
        (heard.packets as f64 - wall * 50.0).abs() < wall * 50.0 * 0.25,
        "{} packets in {wall:.2} s",
        heard.packets
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_48k_mono_alsa_capture_reaches_the_peer_at_its_pitch_level_and_real_time() {
    let scratch = Scratch::new("48k");
    let recording = scratch.path("sine.raw");
    feed_sine(&recording, 48_000, 1000, &[0.3]);
    let alsa = scratch.path("asound.conf");
    std::fs::write(&alsa, alsa_pcm("roverd_test_mic", &recording)).expect("alsa conf");
    let roverd = start_roverd(&scratch, "roverd_test_mic", &alsa, None);
    let mut peer = ClientPeer::connect_addr(roverd.addr).await;
    let heard = listen(&mut peer, 25, Duration::from_secs(2)).await;
    // 0.3 of full scale: RMS 0.3 × 32767 / √2 ≈ 6951.
    assert_hears(&heard, 1000.0, 5500.0..8000.0, &roverd.log());
    let status = roverd.status().await;
    let audio = &status["audio"];
    assert_eq!(audio["source"], "roverd_test_mic", "{status}");
    assert_eq!(
        audio["input"],
        serde_json::json!({"sample_rate": 48000, "channels": 1, "sample_format": "i16"}),
        "roverd asks a device that can do anything for 48 kHz mono i16: {status}"
    );
    assert_eq!(audio["capturing"], true, "{status}");
    // The device delivers far faster than real time: the bounded buffer dropped, and said so.
    assert!(audio["overruns"].as_u64() > Some(0), "{status}");
    assert!(audio.get("last_error").is_none(), "{status}");
    peer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_44k1_stereo_alsa_capture_is_resampled_and_downmixed() {
    let scratch = Scratch::new("44k1");
    let recording = scratch.path("sine.raw");
    // Left 0.5, right 0.1 of full scale: their mean, 0.3, is what a mono listener hears.
    feed_sine(&recording, 44_100, 523, &[0.5, 0.1]);
    let alsa = scratch.path("asound.conf");
    std::fs::write(&alsa, alsa_pcm("roverd_test_stereo", &recording)).expect("alsa conf");
    let roverd = start_roverd(&scratch, "roverd_test_stereo", &alsa, Some("44100/2/i16"));
    let mut peer = ClientPeer::connect_addr(roverd.addr).await;
    let heard = listen(&mut peer, 25, Duration::from_secs(2)).await;
    assert_hears(&heard, 523.0, 5500.0..8000.0, &roverd.log());
    let status = roverd.status().await;
    assert_eq!(
        status["audio"]["input"],
        serde_json::json!({"sample_rate": 44100, "channels": 2, "sample_format": "i16"}),
        "{status}"
    );
    assert_eq!(status["audio"]["sample_rate"], 48000, "{status}");
    assert_eq!(status["audio"]["channels"], 1, "{status}");
    peer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_microphone_sends_silence_reports_why_keeps_video_and_is_picked_up_when_it_appears(
) {
    let scratch = Scratch::new("missing");
    let recording = scratch.path("sine.raw");
    feed_sine(&recording, 48_000, 1000, &[0.3]);
    let alsa = scratch.path("asound.conf");
    std::fs::write(&alsa, "# the microphone is not plugged in yet\n").expect("alsa conf");
    let roverd = start_roverd(&scratch, "roverd_late_mic", &alsa, None);
    // The status before the microphone's first try has no error yet: wait for the try.
    let started = Instant::now();
    let status = loop {
        let status = roverd.status().await;
        if status["audio"].get("last_error").is_some() {
            break status;
        }
        assert!(
            started.elapsed() < common::PATIENCE,
            "the microphone was not tried within {:?}: {status}\n{}",
            common::PATIENCE,
            roverd.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let audio = &status["audio"];
    assert_eq!(audio["source"], "roverd_late_mic", "{status}");
    assert_eq!(audio["capturing"], false, "{status}");
    assert!(audio["input"].is_null(), "{status}");
    let error = audio["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("roverd_late_mic") && error.contains("not found"),
        "the status names the device and what is wrong: {status}"
    );
    let mut peer = ClientPeer::connect_addr(roverd.addr).await;
    // The audio track carries silence, at the normal rate.
    let heard = listen(&mut peer, 5, Duration::from_secs(2)).await;
    let (_, rms) = tone_of(&heard.samples);
    assert!(rms < 50.0, "silence expected, heard RMS {rms:.0}");
    // 50 a second; a loaded machine may hand them over late, but they all come.
    let wall = heard.wall.as_secs_f64();
    assert!(
        heard.rtp_seconds > 0.75 * wall,
        "{} packets, {:.2} s of audio in {wall:.2} s",
        heard.packets,
        heard.rtp_seconds
    );
    // Video goes on regardless.
    let mut rx = VideoReceiver::new();
    let picture = loop {
        if let Some(p) = rx.push(&peer.next_video_packet().await) {
            break p;
        }
    };
    assert_eq!((picture.width, picture.height), (640, 480));

    // Plug it in: roverd retries every 2 s and starts capturing without a restart.
    let mut conf = std::fs::OpenOptions::new()
        .append(true)
        .open(&alsa)
        .expect("alsa conf");
    conf.write_all(alsa_pcm("roverd_late_mic", &recording).as_bytes())
        .expect("plug in");
    drop(conf);
    let plugged = Instant::now();
    loop {
        let status = roverd.status().await;
        if status["audio"]["capturing"] == true {
            break;
        }
        assert!(
            plugged.elapsed() < common::PATIENCE,
            "not capturing {:?} after the device appeared (it is retried every 2 s): {status}\n{}",
            common::PATIENCE,
            roverd.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let heard = listen(&mut peer, 10, Duration::from_secs(2)).await;
    assert_hears(&heard, 1000.0, 5500.0..8000.0, &roverd.log());
    assert!(roverd.log().contains("open again"), "{}", roverd.log());
    peer.close().await;
}
