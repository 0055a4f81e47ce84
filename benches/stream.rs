//! The streaming figures: `cargo bench --bench stream` (or
//! `cargo bench --bench stream -- --quick` for a shorter run).
//!
//! 1. openh264 frames/s on the test pattern at 320x240, 640x480 and 1280x720, one thread,
//!    through roverd's own `VideoEncoder` (encode + SPS rewrite + RTP packetization).
//! 2. roverd's CPU seconds per second of stream with 0, 1 and 8 viewers, and every viewer's
//!    received frame rate. roverd runs as its own process (`--simulate`, 127.0.0.1:0) so
//!    that /proc/<pid>/stat counts its CPU alone; the viewers are webrtc-rs peers in this
//!    process (the integration tests' `ClientPeer`). Only one viewer decodes; the others
//!    count RTP marker bits, since decoding 8 streams here would take the CPU away from
//!    the process being measured.
//! 3. roverd's RSS with 4 viewers connected.
//! 4. Time from the offer POST to the first decoded picture (median of 5 connects).
//! 5. Glass-to-glass latency on loopback: the bar code in each decoded picture holds the
//!    low 32 bits of its capture time in Unix ms; latency = now − stamp, on the same clock.
//!    The decoding viewer decodes as soon as a frame's marker packet arrives, so this is
//!    capture + encode + send + receive + depacketize + decode, and nothing else.
//!
//! Ends with a summary block to quote. The machine is shared (other builds may be running):
//! the load average and the time roverd's threads spent waiting for a CPU are printed too.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{now_ms, request, stamp_distance_ms, ClientPeer, VideoReceiver};
use roverd::testing::read_stamp;
use roverd::testing::render_test_pattern;
use roverd::testing::I420Frame;
use roverd::testing::{VideoEncoder, VideoSettings};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long each run takes: the full run, or `--quick`.
#[derive(Clone, Copy)]
struct Plan {
    encode_frames: u64,
    window: Duration,
    settle: Duration,
    connects: usize,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Plan {
                encode_frames: 100,
                window: Duration::from_secs(5),
                settle: Duration::from_secs(1),
                connects: 5,
            }
        } else {
            Plan {
                encode_frames: 300,
                window: Duration::from_secs(10),
                settle: Duration::from_secs(2),
                connects: 5,
            }
        }
    }
}

/// At least this many decoded frames go into the latency figures.
const LATENCY_FRAMES: usize = 300;
/// The stream's nominal frame rate (roverd's default `camera.fps`).
const FPS: f64 = 30.0;
/// "Keeps ~30 fps": every viewer receives at least 95 % of the nominal rate.
const FPS_FLOOR: f64 = 28.5;
const CPU_RATIO_GOAL: f64 = 1.3;
const RSS_GOAL_MB: f64 = 40.0;
const P50_GOAL_MS: u32 = 20;
const P95_GOAL_MS: u32 = 30;

fn main() {
    let mut quick = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--quick" => quick = true,
            // cargo bench passes --bench to harness = false targets.
            "--bench" => {}
            other => eprintln!("stream bench: ignoring argument {other:?}"),
        }
    }
    let plan = Plan::new(quick);
    let command = if quick {
        "cargo bench --bench stream -- --quick"
    } else {
        "cargo bench --bench stream"
    };
    println!("roverd stream bench: {command}");
    println!("machine: {}", machine());
    println!("load average at start: {}", loadavg());
    let (clk_tck, clk_note) = clock_ticks();
    println!("clock ticks: {clk_tck}/s {clk_note}");

    println!();
    println!("== 1. openh264 encode speed (roverd's VideoEncoder, one thread, test pattern) ==");
    let encodes: Vec<EncodeResult> = [(320, 240, 500), (640, 480, 1000), (1280, 720, 2500)]
        .into_iter()
        .map(|(w, h, kbps)| {
            let r = encode_speed(w, h, kbps, plan.encode_frames);
            r.print();
            r
        })
        .collect();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let stream = runtime.block_on(stream_bench(plan, clk_tck));
    runtime.shutdown_timeout(Duration::from_secs(1));

    println!();
    println!("load average at end: {}", loadavg());
    summary(command, &encodes, &stream, clk_note);
}

// ---------------------------------------------------------------------------------------
// 1. Encoder speed

struct EncodeResult {
    width: u32,
    height: u32,
    kbps: u32,
    frames: u64,
    fps: f64,
    ms_per_frame: f64,
    median_ms: f64,
    p95_ms: f64,
    /// Milliseconds this thread spent waiting for a CPU during the loop (other processes).
    waited_ms: f64,
    skipped: u64,
    out_kbps: f64,
}

impl EncodeResult {
    fn print(&self) {
        println!(
            "{:>4}x{:<4} @ {:>4} kbps: {:7.1} frames/s, {:5.2} ms/frame (median {:.2} ms, p95 {:.2} ms) over {} frames; waited {:.0} ms for a CPU; {} skipped by rate control; output {:.0} kbit/s at 30 fps",
            self.width,
            self.height,
            self.kbps,
            self.fps,
            self.ms_per_frame,
            self.median_ms,
            self.p95_ms,
            self.frames,
            self.waited_ms,
            self.skipped,
            self.out_kbps
        );
    }
}

/// Encodes `frames` pictures of the moving test pattern (after 10 untimed warm-up frames);
/// only `encode` is timed, not the rendering.
fn encode_speed(width: u32, height: u32, kbps: u32, frames: u64) -> EncodeResult {
    const WARMUP: u64 = 10;
    let settings = VideoSettings {
        width,
        height,
        fps: 30,
        bitrate_kbps: kbps,
        keyframe_interval_s: 2.0,
    };
    let mut encoder = VideoEncoder::new(&settings).expect("openh264 starts");
    let mut frame = I420Frame::new(width as usize, height as usize);
    let base_ms = now_ms();
    let mut times = Vec::with_capacity(frames as usize);
    let mut busy = Duration::ZERO;
    let mut bytes = 0usize;
    let mut skipped = 0;
    let mut waited_start = 0;
    for n in 0..WARMUP + frames {
        if n == WARMUP {
            waited_start = thread_wait_ns();
        }
        render_test_pattern(&mut frame, n, base_ms + n * 1000 / 30);
        let start = Instant::now();
        let out = encoder.encode(&frame).expect("encode");
        let took = start.elapsed();
        if n >= WARMUP {
            times.push(took.as_secs_f64() * 1000.0);
            busy += took;
            match out {
                Some((payloads, _)) => bytes += payloads.iter().map(|p| p.len()).sum::<usize>(),
                None => skipped += 1,
            }
        }
    }
    // Run-queue wait (including while rendering): well above zero means other processes
    // took the CPU, and the mean is inflated; the median is the sturdier figure then.
    let waited_ms = thread_wait_ns().saturating_sub(waited_start) as f64 / 1e6;
    let secs = busy.as_secs_f64();
    times.sort_by(f64::total_cmp);
    EncodeResult {
        width,
        height,
        kbps,
        frames,
        fps: frames as f64 / secs,
        ms_per_frame: secs * 1000.0 / frames as f64,
        median_ms: percentile_f(&times, 50.0),
        p95_ms: percentile_f(&times, 95.0),
        waited_ms,
        skipped,
        out_kbps: bytes as f64 * 8.0 / 1000.0 / (frames as f64 / 30.0),
    }
}

// ---------------------------------------------------------------------------------------
// 2.–5. roverd as a separate process, viewers here

struct StreamResult {
    idle: Window,
    one: Window,
    eight: Window,
    rss_idle_mb: f64,
    rss4_mb: f64,
    rss4_max_mb: f64,
    rss8_mb: f64,
    hwm_mb: f64,
    /// (POST → connected, POST → first decoded picture) per connect.
    connects: Vec<(Duration, Duration)>,
    latency_one: LatencyStats,
    latency_eight: LatencyStats,
    warnings: Vec<String>,
    stop: String,
}

async fn stream_bench(plan: Plan, clk_tck: u64) -> StreamResult {
    let mut roverd = Roverd::start();
    let addr = roverd.addr;
    let pid = roverd.pid();
    println!();
    println!(
        "roverd: pid {pid}, http://{addr}/ ({})",
        roverd.log_matching("config:").unwrap_or_default()
    );
    wait_healthy(addr).await;
    let epoch = Instant::now();
    let info = status(addr).await;
    println!(
        "stream: {}x{} video from source {}, audio from source {}",
        info["video"]["width"],
        info["video"]["height"],
        info["video"]["source"],
        info["audio"]["source"]
    );

    // Let the encoder reach its steady state before the idle window.
    tokio::time::sleep(plan.settle).await;
    println!();
    println!(
        "== 2. roverd CPU (utime+stime from /proc/{pid}/stat over {:.0} s windows) ==",
        plan.window.as_secs_f64()
    );
    let rss_idle_mb = rss_mb(pid, "VmRSS");
    let idle = measure(pid, addr, clk_tck, &[], plan.window).await;
    idle.print("0 viewers (encoding only)");
    let info = status(addr).await;
    println!(
        "  roverd's /api/status: video {} frames/s at {} kbit/s, {} keyframes so far",
        info["video"]["fps"], info["video"]["bitrate_kbps"], info["video"]["keyframes"]
    );

    // 4. Time to the first picture, before the long-lived viewers exist. Each peer is
    // deleted through the API so that it neither lingers nor counts against max_peers.
    println!();
    println!("== 4. offer POST -> first decoded picture ==");
    let mut connects = Vec::new();
    for i in 0..plan.connects {
        let mut peer = ClientPeer::connect_addr(addr).await;
        let connected = peer.posted_at.elapsed();
        let mut rx = VideoReceiver::new();
        loop {
            let packet = peer.next_video_packet().await;
            if rx.push(&packet).is_some() {
                break;
            }
        }
        let first = peer.posted_at.elapsed();
        println!(
            "connect {}: POST -> connected {:6.1} ms, POST -> first decoded picture {:6.1} ms",
            i + 1,
            ms(connected),
            ms(first)
        );
        connects.push((connected, first));
        let (code, body) = request(
            addr,
            "DELETE",
            &format!("/api/peers/{}", peer.id),
            &[],
            Vec::new(),
        )
        .await;
        assert_eq!(code, 204, "DELETE /api/peers/{}: {body}", peer.id);
        peer.close().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Wait until roverd has forgotten them all.
    wait_peers(addr, 0).await;

    // One decoding viewer.
    println!();
    println!("== 2. (cont.) and 5. one viewer, decoding ==");
    let latency: Arc<Mutex<Vec<LatencySample>>> = Arc::default();
    let mut viewers = Vec::new();
    let mut peers = Vec::new();
    let (peer, stats) = spawn_viewer(addr, epoch, Some(Arc::clone(&latency))).await;
    peers.push(peer);
    viewers.push(stats);
    tokio::time::sleep(plan.settle).await;
    let one_from = Instant::now();
    let one = measure(pid, addr, clk_tck, &viewers, plan.window).await;
    // The latency figures want at least LATENCY_FRAMES frames with this one viewer.
    let deadline = Instant::now() + Duration::from_secs(30);
    while samples_since(&latency, one_from, None).len() < LATENCY_FRAMES
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let latency_one = LatencyStats::of(&samples_since(&latency, one_from, None));
    one.print("1 viewer");
    latency_one.print("glass-to-glass, 1 viewer");

    // 3. RSS with 4 viewers.
    println!();
    println!("== 3. roverd RSS with 4 viewers (VmRSS from /proc/{pid}/status) ==");
    for _ in 1..4 {
        let (peer, stats) = spawn_viewer(addr, epoch, None).await;
        peers.push(peer);
        viewers.push(stats);
    }
    wait_peers(addr, 4).await;
    let mut rss4 = Vec::new();
    let hold = Instant::now();
    while hold.elapsed() < plan.settle.max(Duration::from_secs(2)) {
        rss4.push(rss_mb(pid, "VmRSS"));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let rss4_mb = *rss4.last().expect("sampled");
    let rss4_max_mb = rss4.iter().copied().fold(0.0, f64::max);
    println!(
        "VmRSS: {rss_idle_mb:.1} MB with no viewer; {rss4_mb:.1} MB with 4 viewers (max {rss4_max_mb:.1} MB over {} samples)",
        rss4.len()
    );

    // 8 viewers.
    println!();
    println!("== 2. (cont.) 8 viewers (viewer 1 decodes, viewers 2-8 count marker bits) ==");
    for _ in 4..8 {
        let (peer, stats) = spawn_viewer(addr, epoch, None).await;
        peers.push(peer);
        viewers.push(stats);
    }
    wait_peers(addr, 8).await;
    tokio::time::sleep(plan.settle).await;
    let eight_from = Instant::now();
    let eight = measure(pid, addr, clk_tck, &viewers, plan.window).await;
    let latency_eight =
        LatencyStats::of(&samples_since(&latency, eight_from, Some(Instant::now())));
    let rss8_mb = rss_mb(pid, "VmRSS");
    let hwm_mb = rss_mb(pid, "VmHWM");
    eight.print("8 viewers");
    latency_eight.print("glass-to-glass, 8 viewers (viewer 1)");
    println!("VmRSS with 8 viewers {rss8_mb:.1} MB; peak (VmHWM) so far {hwm_mb:.1} MB");

    for peer in peers {
        peer.close().await;
    }
    let stop = roverd.stop();
    println!("roverd: {stop}");
    let warnings = roverd.log_warnings();
    if !warnings.is_empty() {
        let mut distinct: BTreeMap<&str, usize> = BTreeMap::new();
        for line in &warnings {
            *distinct.entry(line.as_str()).or_default() += 1;
        }
        println!(
            "roverd logged {} warning/error line(s), {} distinct:",
            warnings.len(),
            distinct.len()
        );
        for (line, count) in distinct.iter().take(10) {
            println!("  {count:>3} x {line}");
        }
    }
    StreamResult {
        idle,
        one,
        eight,
        rss_idle_mb,
        rss4_mb,
        rss4_max_mb,
        rss8_mb,
        hwm_mb,
        connects,
        latency_one,
        latency_eight,
        warnings,
        stop,
    }
}

/// roverd as a child process; killed on drop if still running.
struct Roverd {
    process: common::Process,
    addr: SocketAddr,
}

impl Roverd {
    fn start() -> Roverd {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_roverd"));
        cmd.args(["--simulate", "--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "info");
        let process = common::Process::spawn(cmd);
        let addr = process.addr;
        Roverd { process, addr }
    }

    fn pid(&self) -> u32 {
        self.process.pid()
    }

    fn log_matching(&self, needle: &str) -> Option<String> {
        let log = self.process.log_lines();
        log.iter().find(|l| l.contains(needle)).map(|l| {
            l.split_once(needle)
                .map_or(l.as_str(), |(_, rest)| rest)
                .trim()
                .to_owned()
        })
    }

    fn log_warnings(&self) -> Vec<String> {
        let log = self.process.log_lines();
        log.iter()
            .filter(|l| l.starts_with("WARN") || l.starts_with("ERROR"))
            .cloned()
            .collect()
    }

    /// SIGTERM, then up to 3 s for a clean exit.
    fn stop(&mut self) -> String {
        let start = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        while start.elapsed() < Duration::from_secs(3) {
            if let Ok(Some(status)) = self.process.child.try_wait() {
                return format!(
                    "stopped by SIGTERM in {:.0} ms, {status}",
                    ms(start.elapsed())
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.process.child.kill();
        let _ = self.process.child.wait();
        "did not stop within 3 s of SIGTERM; killed".to_owned()
    }
}

async fn wait_healthy(addr: SocketAddr) {
    let deadline = Instant::now() + common::PATIENCE;
    while request(addr, "GET", "/healthz", &[], Vec::new()).await.0 != 200 {
        assert!(Instant::now() < deadline, "roverd never became healthy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn status(addr: SocketAddr) -> serde_json::Value {
    let (code, body) = request(addr, "GET", "/api/status", &[], Vec::new()).await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("status is JSON")
}

/// Waits until roverd lists exactly `n` peers.
async fn wait_peers(addr: SocketAddr, n: usize) {
    let deadline = Instant::now() + common::PATIENCE;
    loop {
        let peers = status(addr).await["peers"].as_array().map_or(0, Vec::len);
        if peers == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "roverd lists {peers} peers, expected {n}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Viewers

/// What one viewer received, updated by its tasks.
#[derive(Default)]
struct ViewerStats {
    /// Video frames (RTP marker bits).
    frames: AtomicU64,
    video_packets: AtomicU64,
    audio_packets: AtomicU64,
    /// Microseconds since the bench epoch of the last frame, and the longest gap between
    /// two frames since the last reset.
    last_frame_us: AtomicU64,
    worst_gap_us: AtomicU64,
}

struct LatencySample {
    at: Instant,
    /// now − stamp when the frame's last (marker) packet arrived, before decoding.
    arrival_ms: u32,
    /// now − stamp once the picture is decoded.
    decoded_ms: u32,
    /// Depacketizing the marker packet and decoding the access unit.
    decode_us: u64,
}

/// Connects one viewer and starts the tasks that read its tracks. With `latency`, the
/// viewer decodes every frame and records its glass-to-glass latency.
async fn spawn_viewer(
    addr: SocketAddr,
    epoch: Instant,
    latency: Option<Arc<Mutex<Vec<LatencySample>>>>,
) -> (ClientPeer, Arc<ViewerStats>) {
    let mut peer = ClientPeer::connect_addr(addr).await;
    let stats = Arc::new(ViewerStats::default());
    let mut video = std::mem::replace(&mut peer.video, mpsc::unbounded_channel().1);
    let mut audio = std::mem::replace(&mut peer.audio, mpsc::unbounded_channel().1);
    let mut messages = std::mem::replace(&mut peer.messages, mpsc::unbounded_channel().1);
    let s = Arc::clone(&stats);
    tokio::spawn(async move {
        let mut decoder = latency.as_ref().map(|_| VideoReceiver::new());
        while let Some(packet) = video.recv().await {
            if let (Some(rx), Some(sink)) = (decoder.as_mut(), latency.as_ref()) {
                let arrived = now_ms();
                let start = Instant::now();
                if let Some(picture) = rx.push(&packet) {
                    let decoded = now_ms();
                    let decode_us = start.elapsed().as_micros() as u64;
                    if let Some(stamp) =
                        read_stamp(&picture.y, picture.width, picture.width, picture.height)
                    {
                        sink.lock().expect("latency lock").push(LatencySample {
                            at: Instant::now(),
                            arrival_ms: stamp_distance_ms(stamp, arrived as u32),
                            decoded_ms: stamp_distance_ms(stamp, decoded as u32),
                            decode_us,
                        });
                    }
                }
            }
            s.video_packets.fetch_add(1, Ordering::Relaxed);
            if packet.header.marker {
                let now = epoch.elapsed().as_micros() as u64;
                let prev = s.last_frame_us.swap(now, Ordering::Relaxed);
                if prev != 0 {
                    s.worst_gap_us
                        .fetch_max(now.saturating_sub(prev), Ordering::Relaxed);
                }
                s.frames.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let s = Arc::clone(&stats);
    tokio::spawn(async move {
        while audio.recv().await.is_some() {
            s.audio_packets.fetch_add(1, Ordering::Relaxed);
        }
    });
    tokio::spawn(async move { while messages.recv().await.is_some() {} });
    (peer, stats)
}

fn samples_since(
    latency: &Mutex<Vec<LatencySample>>,
    from: Instant,
    to: Option<Instant>,
) -> Vec<(u32, u32, u64)> {
    latency
        .lock()
        .expect("latency lock")
        .iter()
        .filter(|s| s.at >= from && to.is_none_or(|t| s.at <= t))
        .map(|s| (s.arrival_ms, s.decoded_ms, s.decode_us))
        .collect()
}

struct LatencyStats {
    frames: usize,
    /// (p50, p95, max) in ms, to the decoded picture.
    decoded: (u32, u32, u32),
    /// (p50, p95, max) in ms, to the arrival of the marker packet.
    arrival: (u32, u32, u32),
    /// (p50, p95) of depacketize + decode, in ms.
    decode: (f64, f64),
}

impl LatencyStats {
    fn of(samples: &[(u32, u32, u64)]) -> Self {
        let three = |mut v: Vec<u32>| {
            v.sort_unstable();
            (
                percentile(&v, 50.0),
                percentile(&v, 95.0),
                v.last().copied().unwrap_or(0),
            )
        };
        let mut decode: Vec<f64> = samples.iter().map(|s| s.2 as f64 / 1000.0).collect();
        decode.sort_by(f64::total_cmp);
        LatencyStats {
            frames: samples.len(),
            decoded: three(samples.iter().map(|s| s.1).collect()),
            arrival: three(samples.iter().map(|s| s.0).collect()),
            decode: (percentile_f(&decode, 50.0), percentile_f(&decode, 95.0)),
        }
    }

    fn print(&self, label: &str) {
        println!(
            "{label}: {} frames; to decoded picture p50 {} ms, p95 {} ms, max {} ms; to arrival of the last packet (before decoding) p50 {} ms, p95 {} ms, max {} ms; depacketize+decode p50 {:.2} ms, p95 {:.2} ms (1 ms stamp resolution)",
            self.frames,
            self.decoded.0,
            self.decoded.1,
            self.decoded.2,
            self.arrival.0,
            self.arrival.1,
            self.arrival.2,
            self.decode.0,
            self.decode.1
        );
    }
}

// ---------------------------------------------------------------------------------------
// Measuring a window

struct ViewerWindow {
    fps: f64,
    video_pps: f64,
    worst_gap_ms: f64,
    audio_pps: f64,
}

struct Window {
    secs: f64,
    /// roverd's CPU seconds per second.
    cpu: f64,
    /// Milliseconds per second roverd's threads waited for a CPU (run queue).
    wait_ms_per_s: f64,
    /// This process's CPU seconds per second (the viewers).
    bench_cpu: f64,
    encoded_fps: f64,
    /// CPU seconds per second by roverd thread name, largest first.
    threads: Vec<(String, f64)>,
    viewers: Vec<ViewerWindow>,
}

impl Window {
    fn print(&self, label: &str) {
        println!(
            "{label}: roverd {:.3} CPU s/s over {:.1} s; encoder produced {:.1} frames/s; roverd threads waited {:.0} ms/s for a CPU; viewers (this process) {:.3} CPU s/s",
            self.cpu, self.secs, self.encoded_fps, self.wait_ms_per_s, self.bench_cpu
        );
        let threads: Vec<String> = self
            .threads
            .iter()
            .filter(|(_, cpu)| *cpu >= 0.0005)
            .map(|(name, cpu)| format!("{name} {cpu:.3}"))
            .collect();
        println!("  by roverd thread (CPU s/s): {}", threads.join(", "));
        for (i, v) in self.viewers.iter().enumerate() {
            println!(
                "  viewer {}: {:.1} frames/s ({:.1} video packets/s), longest gap {:.0} ms, audio {:.1} packets/s",
                i + 1,
                v.fps,
                v.video_pps,
                v.worst_gap_ms,
                v.audio_pps
            );
        }
    }

    fn min_fps(&self) -> f64 {
        self.viewers.iter().map(|v| v.fps).fold(f64::MAX, f64::min)
    }

    fn max_fps(&self) -> f64 {
        self.viewers.iter().map(|v| v.fps).fold(0.0, f64::max)
    }
}

async fn measure(
    pid: u32,
    addr: SocketAddr,
    clk_tck: u64,
    viewers: &[Arc<ViewerStats>],
    window: Duration,
) -> Window {
    let encoded = |s: serde_json::Value| s["video"]["frames_encoded"].as_u64().unwrap_or(0);
    let enc0 = encoded(status(addr).await);
    let counts = |v: &ViewerStats| {
        (
            v.frames.load(Ordering::Relaxed),
            v.video_packets.load(Ordering::Relaxed),
            v.audio_packets.load(Ordering::Relaxed),
        )
    };
    let frames0: Vec<(u64, u64, u64)> = viewers
        .iter()
        .map(|v| {
            v.worst_gap_us.store(0, Ordering::Relaxed);
            counts(v)
        })
        .collect();
    let threads0 = thread_times(pid);
    let ticks0 = proc_ticks(&format!("/proc/{pid}/stat"));
    let self0 = proc_ticks("/proc/self/stat");
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    let ticks1 = proc_ticks(&format!("/proc/{pid}/stat"));
    let self1 = proc_ticks("/proc/self/stat");
    let threads1 = thread_times(pid);
    let secs = t0.elapsed().as_secs_f64();
    let frames1: Vec<(u64, u64, u64)> = viewers.iter().map(|v| counts(v)).collect();
    let enc1 = encoded(status(addr).await);
    let status_secs = t0.elapsed().as_secs_f64();

    // Per thread, from schedstat (ns on CPU, ns waiting); grouped by thread name.
    let mut by_name: BTreeMap<String, f64> = BTreeMap::new();
    let mut wait_ns = 0u64;
    for (tid, (name, run1, wait1)) in &threads1 {
        let (run0, wait0) = threads0
            .get(tid)
            .map_or((0, 0), |(_, run, wait)| (*run, *wait));
        *by_name.entry(name.clone()).or_default() += run1.saturating_sub(run0) as f64 / 1e9 / secs;
        wait_ns += wait1.saturating_sub(wait0);
    }
    let mut threads: Vec<(String, f64)> = by_name.into_iter().collect();
    threads.sort_by(|a, b| b.1.total_cmp(&a.1));

    Window {
        secs,
        cpu: (ticks1 - ticks0) as f64 / clk_tck as f64 / secs,
        wait_ms_per_s: wait_ns as f64 / 1e6 / secs,
        bench_cpu: (self1 - self0) as f64 / clk_tck as f64 / secs,
        encoded_fps: enc1.saturating_sub(enc0) as f64 / status_secs,
        threads,
        viewers: viewers
            .iter()
            .zip(frames0.iter().zip(&frames1))
            .map(|(v, ((f0, p0, a0), (f1, p1, a1)))| ViewerWindow {
                fps: (f1 - f0) as f64 / secs,
                video_pps: (p1 - p0) as f64 / secs,
                worst_gap_ms: v.worst_gap_us.load(Ordering::Relaxed) as f64 / 1000.0,
                audio_pps: (a1 - a0) as f64 / secs,
            })
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------
// /proc

/// utime + stime, in clock ticks, of the process whose stat file this is.
fn proc_ticks(path: &str) -> u64 {
    let stat = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let after = &stat[stat.rfind(')').expect("stat has a comm") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of proc(5); `after` starts at field 3.
    let utime: u64 = fields[11].parse().expect("utime");
    let stime: u64 = fields[12].parse().expect("stime");
    utime + stime
}

/// Every thread of `pid`: its name, ns on a CPU and ns waiting for one (schedstat).
fn thread_times(pid: u32) -> BTreeMap<u32, (String, u64, u64)> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let path = entry.path();
        let (Ok(comm), Ok(sched)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("schedstat")),
        ) else {
            continue;
        };
        let mut f = sched
            .split_whitespace()
            .map(|x| x.parse::<u64>().unwrap_or(0));
        let (run, wait) = (f.next().unwrap_or(0), f.next().unwrap_or(0));
        out.insert(tid, (comm.trim().to_owned(), run, wait));
    }
    out
}

/// How long this thread has waited for a CPU, in ns (schedstat), 0 if unavailable.
fn thread_wait_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|x| x.parse().ok()))
        .unwrap_or(0)
}

/// A line of /proc/<pid>/status such as VmRSS, in MB (MiB).
fn rss_mb(pid: u32, key: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn clock_ticks() -> (u64, &'static str) {
    let ticks = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|&t| t > 0);
    match ticks {
        Some(t) => (t, "(getconf CLK_TCK)"),
        None => (100, "(getconf CLK_TCK failed: assumed 100)"),
    }
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split(':').nth(1))
        .unwrap_or("unknown CPU")
        .trim()
        .to_owned();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpus} CPUs, {model}, {}", std::env::consts::ARCH)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Arithmetic and the summary

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn percentile_f(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile_f(&v, 50.0)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

fn summary(command: &str, encodes: &[EncodeResult], s: &StreamResult, clk_note: &str) {
    let ratio = s.eight.cpu / s.one.cpu;
    let min8 = s.eight.min_fps();
    let first: Vec<f64> = s.connects.iter().map(|c| ms(c.1)).collect();
    let connected: Vec<f64> = s.connects.iter().map(|c| ms(c.0)).collect();
    let l = &s.latency_one;
    println!();
    println!("==================== summary ====================");
    println!("command: {command}");
    println!(
        "machine: {} (shared; load average at end {})",
        machine(),
        loadavg()
    );
    println!("openh264 0.9.9 via roverd's VideoEncoder, one thread, test pattern:");
    for e in encodes {
        println!(
            "  {}x{} at {} kbps: {:.0} frames/s ({:.2} ms/frame, median {:.2} ms)",
            e.width, e.height, e.kbps, e.fps, e.ms_per_frame, e.median_ms
        );
    }
    println!("roverd --simulate (640x480 at 30 fps H.264 + Opus), separate process, CPU from /proc/<pid>/stat {clk_note}, {:.0} s windows:", s.one.secs);
    println!(
        "  CPU s per s of stream: 0 viewers {:.3}; 1 viewer {:.3}; 8 viewers {:.3}",
        s.idle.cpu, s.one.cpu, s.eight.cpu
    );
    println!(
        "  8 viewers / 1 viewer = {ratio:.2} (goal <= {CPU_RATIO_GOAL}: {}); each viewer past the first adds {:.1} ms of CPU per s",
        verdict(ratio <= CPU_RATIO_GOAL),
        (s.eight.cpu - s.one.cpu) * 1000.0 / 7.0
    );
    println!(
        "  frames/s received by each of 8 viewers: min {:.1}, max {:.1} (encoder {:.1}); with 1 viewer {:.1} (goal every viewer ~{FPS:.0}, i.e. >= {FPS_FLOOR}: {})",
        min8,
        s.eight.max_fps(),
        s.eight.encoded_fps,
        s.one.min_fps(),
        verdict(min8 >= FPS_FLOOR && s.one.min_fps() >= FPS_FLOOR)
    );
    println!(
        "  RSS with 4 viewers: {:.1} MB (max {:.1} MB; {:.1} MB with none, {:.1} MB with 8, peak {:.1} MB) (goal < {RSS_GOAL_MB} MB: {})",
        s.rss4_mb,
        s.rss4_max_mb,
        s.rss_idle_mb,
        s.rss8_mb,
        s.hwm_mb,
        verdict(s.rss4_max_mb < RSS_GOAL_MB)
    );
    println!(
        "  offer POST -> first decoded picture: median {:.0} ms over {} connects (POST -> connected median {:.0} ms)",
        median(first),
        s.connects.len(),
        median(connected)
    );
    println!(
        "  glass-to-glass on loopback, 1 decoding viewer, {} frames: p50 {} ms, p95 {} ms, max {} ms (goal p50 < {P50_GOAL_MS}, p95 < {P95_GOAL_MS}: {})",
        l.frames,
        l.decoded.0,
        l.decoded.1,
        l.decoded.2,
        verdict(l.decoded.0 < P50_GOAL_MS && l.decoded.1 < P95_GOAL_MS && l.frames >= LATENCY_FRAMES)
    );
    println!(
        "    of which depacketize+decode p50 {:.1} ms; with 8 viewers connected: p50 {} ms, p95 {} ms, max {} ms over {} frames",
        l.decode.0,
        s.latency_eight.decoded.0,
        s.latency_eight.decoded.1,
        s.latency_eight.decoded.2,
        s.latency_eight.frames
    );
    println!(
        "  roverd {}; {} warning/error log line(s)",
        s.stop,
        s.warnings.len()
    );
    println!("=================================================");
}
