//! Microphone capture-to-Opus latency: `cargo bench --bench audio` (`-- --quick` for a
//! shorter run).
//!
//! The time from samples entering the capture ring to the Opus packet that carries them
//! being published on the fan-out, through roverd's own code: [`dsp::ring`] (what cpal's
//! callback pushes into), [`RingSource`] (the reading half of `MicSource`: drain, resample,
//! paced buffer, 20 ms schedule) and `audio::run_encoder` (Opus, publish).
//!
//! A producer thread plays the sound card: it pushes one device period at a time at
//! real-time pace by the wall clock, silence except for a 2 ms 3 kHz burst every 200 ms,
//! noting when each burst entered the ring. A subscriber decodes every packet as it is
//! published, finds each burst's onset, maps it back (less Opus's lookahead) to the packet
//! whose input held it, and takes that packet's publication time.
//!
//! Runs for a 48 kHz mono device with 10 ms periods and a 44.1 kHz stereo device with
//! 1024-frame (23 ms) periods, the common USB microphone case.

use roverd::testing::audio::{self, AudioShared, RingSource};
use roverd::testing::audio::{self as dsp, FRAME_SAMPLES};
use roverd::testing::{Fanout, Next};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

struct Device {
    label: &'static str,
    rate: u32,
    channels: u16,
    period: usize,
}

const BURST_EVERY: Duration = Duration::from_millis(200);
const THRESHOLD: i16 = 8000;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let run_for = Duration::from_secs(if quick { 5 } else { 20 });
    let devices = [
        Device {
            label: "48 kHz mono, 480-frame periods",
            rate: 48_000,
            channels: 1,
            period: 480,
        },
        Device {
            label: "44.1 kHz stereo, 1024-frame periods",
            rate: 44_100,
            channels: 2,
            period: 1024,
        },
    ];
    let mut summary = Vec::new();
    for device in &devices {
        let mut lat = measure(device, run_for);
        lat.sort_by(f64::total_cmp);
        let pct = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize];
        let line = format!(
            "{}: n={} p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            device.label,
            lat.len(),
            pct(0.5),
            pct(0.9),
            pct(0.99),
            lat[lat.len() - 1]
        );
        println!("{line}");
        summary.push(line);
    }
    println!("\n--- capture-to-Opus latency (ring entry → packet published) ---");
    for line in summary {
        println!("{line}");
    }
    println!("load average: {}", load_average());
}

fn measure(device: &Device, run_for: Duration) -> Vec<f64> {
    let (mut sink, mut pacer) = dsp::ring(device.rate, device.channels).expect("ring");
    pacer.set_device_burst(device.period);
    let shared = Arc::new(AudioShared {
        packets: Fanout::new(64),
        stats: Default::default(),
        running: AtomicBool::new(true),
        source_name: Mutex::new("bench".into()),
    });
    let mut packets = shared.packets.subscribe();
    let encoder = audio::new_encoder().expect("encoder");
    let lookahead = audio::new_encoder()
        .expect("encoder")
        .get_lookahead()
        .expect("lookahead") as usize;
    let thread_shared = Arc::clone(&shared);
    let encoder_thread = std::thread::spawn(move || {
        audio::run_encoder(
            thread_shared,
            Box::new(RingSource::new("bench", pacer)),
            encoder,
        )
    });

    // The sound card.
    let (burst_tx, burst_rx) = mpsc::channel::<Instant>();
    let running = Arc::new(AtomicBool::new(true));
    let producing = Arc::clone(&running);
    let (rate, channels, period) = (device.rate, usize::from(device.channels), device.period);
    let producer = std::thread::spawn(move || {
        let period_dur = Duration::from_secs_f64(period as f64 / f64::from(rate));
        let burst_frames = rate as usize / 500; // 2 ms
        let every = (BURST_EVERY.as_secs_f64() / period_dur.as_secs_f64()).round() as u64;
        let mut buf = vec![0i16; period * channels];
        let start = Instant::now();
        let mut k = 0u64;
        while producing.load(Ordering::Relaxed) {
            let due = start + period_dur.mul_f64(k as f64 + 1.0);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            buf.fill(0);
            let burst = k % every == every - 1;
            if burst {
                for (i, frame) in buf
                    .chunks_exact_mut(channels)
                    .take(burst_frames)
                    .enumerate()
                {
                    let x = 2.0 * std::f64::consts::PI * 3000.0 * i as f64 / f64::from(rate);
                    frame.fill((0.9 * 32767.0 * x.sin()) as i16);
                }
            }
            let at = Instant::now();
            sink.push(&buf);
            if burst {
                let _ = burst_tx.send(at);
            }
            k += 1;
        }
    });

    // The subscriber: decode as published, find onsets.
    let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).expect("decoder");
    let mut pcm_out = vec![0i16; 5760];
    let mut published: Vec<Instant> = Vec::new();
    let mut decoded = 0usize; // samples decoded so far
    let mut quiet_since = 0usize;
    let mut onsets: Vec<usize> = Vec::new();
    let start = Instant::now();
    while start.elapsed() < run_for {
        match packets.try_next() {
            Some(Next::Item(p)) => {
                published.push(Instant::now());
                let n = decoder
                    .decode(&p.payload, &mut pcm_out, false)
                    .expect("decodes");
                for (i, &s) in pcm_out[..n].iter().enumerate() {
                    let at = decoded + i;
                    if s.unsigned_abs() > THRESHOLD as u16 {
                        // A new burst: loud after at least 100 ms of quiet.
                        if at - quiet_since > 4800 || onsets.is_empty() {
                            onsets.push(at);
                        }
                        quiet_since = at;
                    }
                }
                decoded += n;
            }
            Some(other) => panic!("the bench subscriber lost packets: {other:?}"),
            None => std::thread::sleep(Duration::from_micros(200)),
        }
    }
    running.store(false, Ordering::Relaxed);
    shared.running.store(false, Ordering::Relaxed);
    producer.join().expect("producer");
    encoder_thread.join().expect("encoder");
    let bursts: Vec<Instant> = burst_rx.try_iter().collect();
    let xruns = (
        shared.stats.overruns.load(Ordering::Relaxed),
        shared.stats.underruns.load(Ordering::Relaxed),
    );
    println!(
        "{}: {} bursts pushed, {} heard; overruns {}, underruns {}; Opus lookahead {} samples",
        device.label,
        bursts.len(),
        onsets.len(),
        xruns.0,
        xruns.1,
        lookahead
    );
    let mut latencies = Vec::new();
    for onset in onsets {
        let Some(input_at) = onset.checked_sub(lookahead) else {
            continue;
        };
        let Some(&out) = published.get(input_at / FRAME_SAMPLES) else {
            continue;
        };
        // The burst that entered the ring last before its packet went out.
        if let Some(&pushed) = bursts.iter().rev().find(|&&b| b <= out) {
            latencies.push(out.duration_since(pushed).as_secs_f64() * 1000.0);
        }
    }
    assert!(latencies.len() >= 10, "too few bursts were heard");
    latencies
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}
