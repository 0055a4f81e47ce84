//! Load: roverd as its own process (so its RSS and file descriptors are its
//! own), one peer watching, while 1,000 malformed requests and 50 connect/disconnect
//! cycles hit it on loopback. The watcher's stream must have no gap over 1 s (about
//! 40 ms on an idle machine; the bound leaves room for a machine busy with other work),
//! RSS must grow by less than 5 MB, and the open descriptors must return to the baseline.

mod common;

use common::{request, ClientPeer, Process, PATIENCE};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// roverd as its own process, so that its RSS and descriptors are its own.
struct Roverd {
    process: Process,
    addr: SocketAddr,
}

impl Roverd {
    fn start(config: &str) -> Roverd {
        let dir = std::env::temp_dir().join(format!("roverd-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("roverd.toml");
        std::fs::write(&file, config).expect("config");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_roverd"));
        cmd.args(["--simulate", "--listen", "127.0.0.1:0", "--config"])
            .arg(&file)
            .env("RUST_LOG", "warn,roverd::server=info");
        let process = Process::spawn(cmd);
        let addr = process.addr;
        Roverd { process, addr }
    }

    fn proc_path(&self, what: &str) -> String {
        format!("/proc/{}/{what}", self.process.pid())
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(self.proc_path("status")).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    fn open_fds(&self) -> usize {
        std::fs::read_dir(self.proc_path("fd"))
            .expect("proc fd")
            .count()
    }

    async fn peers(&self) -> usize {
        let (code, body) = request(self.addr, "GET", "/api/status", &[], vec![]).await;
        assert_eq!(code, 200, "{body}");
        let status: serde_json::Value = serde_json::from_str(&body).expect("status");
        status["peers"].as_array().map_or(0, Vec::len)
    }

    /// Waits until exactly `n` peers are known and the descriptors are back to `fds` (or
    /// fewer): both settle a little after a peer is closed.
    async fn settle(&self, n: usize, fds: Option<usize>) -> Duration {
        let start = Instant::now();
        loop {
            let peers = self.peers().await;
            let open = self.open_fds();
            if peers == n && fds.is_none_or(|f| open <= f) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < PATIENCE,
                "never settled: {peers} peers (want {n}), {open} fds (want {fds:?})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A malformed request of kind `i % KINDS`: what it should get back, from one connection.
const KINDS: usize = 12;

async fn malformed(addr: SocketAddr, i: usize) {
    let post = |body: Vec<u8>| async move { request(addr, "POST", "/api/offer", &[], body).await };
    let (want, (code, body)) = match i % KINDS {
        0 => (400, post(b"not json at all".to_vec()).await),
        1 => (400, post(br#"{"sdp": 5, "type": "offer"}"#.to_vec()).await),
        2 => (
            400,
            post(br#"{"sdp": "v=0\r\ngarbage", "type": "offer"}"#.to_vec()).await,
        ),
        3 => (
            400,
            post(br#"{"sdp": "", "type": "answer"}"#.to_vec()).await,
        ),
        4 => (413, post(vec![b'x'; 70 * 1024]).await),
        5 => (404, request(addr, "GET", "/etc/passwd", &[], vec![]).await),
        6 => (405, request(addr, "PUT", "/api/status", &[], vec![]).await),
        7 => (
            403,
            request(
                addr,
                "GET",
                "/api/status",
                &[("host", "evil.example")],
                vec![],
            )
            .await,
        ),
        8 => (
            403,
            request(
                addr,
                "POST",
                "/api/offer",
                &[("origin", "http://evil.example")],
                b"{}".to_vec(),
            )
            .await,
        ),
        9 => (
            404,
            request(addr, "DELETE", "/api/peers/p999999", &[], vec![]).await,
        ),
        10 => {
            // Not HTTP at all: hyper answers 400 or just closes; roverd must not care.
            raw(addr, b"\x16\x03\x01 garbage that is not HTTP\r\n\r\n").await;
            return;
        }
        _ => {
            // Headers that stop half-way, then the client goes away.
            raw(
                addr,
                b"POST /api/offer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le",
            )
            .await;
            return;
        }
    };
    assert_eq!(code, want, "kind {}: {body}", i % KINDS);
}

async fn raw(addr: SocketAddr, bytes: &[u8]) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let _ = stream.write_all(bytes).await;
    let _ = stream.shutdown().await;
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(
        PATIENCE,
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut sink),
    )
    .await;
}

async fn connect_cycle(addr: SocketAddr, i: usize) {
    let mut peer = ClientPeer::connect_addr(addr).await;
    peer.next_video_packet().await;
    if i % 5 == 4 {
        // Closed by the client alone: roverd frees the place when its data channel closes.
        peer.close().await;
    } else {
        let (code, body) = request(
            addr,
            "DELETE",
            &format!("/api/peers/{}", peer.id),
            &[],
            vec![],
        )
        .await;
        assert_eq!(code, 204, "{body}");
        peer.close().await;
    }
}

/// 1,000 malformed requests, 8 at a time, while 50 peers come and go, 2 at a time.
async fn load_round(addr: SocketAddr) {
    let junk = tokio::spawn(async move {
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let next = Arc::clone(&next);
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= 1000 {
                            break;
                        }
                        malformed(addr, i).await;
                    }
                })
            })
            .collect();
        for w in workers {
            w.await.expect("junk worker");
        }
    });
    let churn: Vec<_> = (0..2)
        .map(|lane| {
            tokio::spawn(async move {
                for i in (lane..50).step_by(2) {
                    connect_cycle(addr, i).await;
                }
            })
        })
        .collect();
    junk.await.expect("junk");
    for c in churn {
        c.await.expect("churn");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_keeps_its_stream_through_junk_and_churn_and_nothing_leaks() {
    let roverd = Roverd::start(
        "[limits]\noffers_per_minute = 600\nidle_timeout_s = 1\n[http]\n# Peers that leave without a word hold their place for 3 s + 1 s.\nmax_peers = 16\n",
    );
    let addr = roverd.addr;

    // The watcher: every video packet's arrival time.
    let mut watcher = ClientPeer::connect_addr(addr).await;
    let arrivals = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let mut video = std::mem::replace(&mut watcher.video, tokio::sync::mpsc::unbounded_channel().1);
    let recorder = {
        let arrivals = Arc::clone(&arrivals);
        tokio::spawn(async move {
            while video.recv().await.is_some() {
                arrivals.lock().expect("arrivals").push(Instant::now());
            }
        })
    };

    // Warm up with one whole round, so that the baseline holds what a running roverd
    // keeps once it has served this load: the allocator's arenas and caches grown to the
    // peak number of peers. A leak shows as growth over the measured round that follows.
    let rss_start = roverd.rss_kib();
    load_round(addr).await;
    roverd.settle(1, None).await;
    let rss_before = roverd.rss_kib();
    let fds_before = roverd.open_fds();
    eprintln!(
        "load: RSS {rss_start} KiB with one watcher, {rss_before} KiB after the warm-up round"
    );
    let load_started = Instant::now();
    let rounds: usize = std::env::var("ROVERD_LOAD_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    for round in 0..rounds {
        load_round(addr).await;
        if rounds > 1 {
            roverd.settle(1, None).await;
            eprintln!(
                "load: RSS {} KiB after measured round {}",
                roverd.rss_kib(),
                round + 1
            );
        }
    }
    let load_took = load_started.elapsed();

    // The watcher's picture never stopped for more than 1 s (a stall that the churn or the
    // junk caused would be seconds: a handshake, a timeout).
    let gaps: Vec<Duration> = {
        let arrivals = arrivals.lock().expect("arrivals");
        let during: Vec<&Instant> = arrivals.iter().filter(|t| **t >= load_started).collect();
        assert!(
            during.len() > 30,
            "the watcher got {} packets",
            during.len()
        );
        during
            .windows(2)
            .map(|w| w[1].duration_since(*w[0]))
            .collect()
    };
    let max_gap = gaps.iter().max().copied().unwrap_or_default();

    let settled = roverd.settle(1, Some(fds_before)).await;
    let rss_after = roverd.rss_kib();
    let fds_after = roverd.open_fds();
    eprintln!(
        "load: {} x (1000 malformed requests + 50 connect/disconnect cycles) in {:.1} s; watcher's \
         largest gap between video packets {} ms; RSS {} -> {} KiB ({:+} KiB); fds {} -> {} \
         (settled {} ms after the load)",
        rounds,
        load_took.as_secs_f64(),
        max_gap.as_millis(),
        rss_before,
        rss_after,
        rss_after as i64 - rss_before as i64,
        fds_before,
        fds_after,
        settled.as_millis()
    );
    assert!(
        max_gap < Duration::from_secs(1),
        "the watcher's stream stopped for {max_gap:?}"
    );
    assert!(
        rss_after < rss_before + 5 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    assert!(fds_after <= fds_before, "fds {fds_before} -> {fds_after}");
    // The watcher is still the one peer, still receiving.
    assert_eq!(watcher.state().to_string(), "connected");
    let before = arrivals.lock().expect("arrivals").len();
    let deadline = Instant::now() + PATIENCE;
    while arrivals.lock().expect("arrivals").len() == before {
        assert!(Instant::now() < deadline, "the watcher stopped receiving");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    recorder.abort();
    watcher.close().await;
}

/// How long a new viewer waits from its offer to its first decoded picture.
async fn first_picture(addr: SocketAddr) -> Duration {
    let mut peer = ClientPeer::connect_addr(addr).await;
    let mut receiver = common::VideoReceiver::new();
    let picture = loop {
        let packet = peer.next_video_packet().await;
        if let Some(picture) = receiver.push(&packet) {
            break picture;
        }
    };
    let took = peer.posted_at.elapsed();
    assert_eq!((picture.width, picture.height), (640, 480));
    peer.close().await;
    took
}

/// A connection from 127.0.0.2 (another loopback address: another client to roverd).
async fn connect_from_other_address(addr: SocketAddr) -> Option<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().ok()?;
    socket.bind("127.0.0.2:0".parse().expect("address")).ok()?;
    socket.connect(addr).await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_from_one_address_leaves_roverd_to_everyone_else() {
    const FLOOD: usize = 1100;
    // roverd with 1,024 file descriptors, as a small service limit would give it, and the
    // default limits (256 connections, 32 per address).
    let dir = std::env::temp_dir().join(format!("roverd-flood-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("roverd.toml");
    std::fs::write(&file, "").expect("config");
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "ulimit -n 1024 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_roverd"))
        .args(["--simulate", "--listen", "127.0.0.1:0", "--config"])
        .arg(&file)
        .env("RUST_LOG", "warn,roverd::server=info");
    let process = Process::spawn(cmd);
    let addr = process.addr;
    let limits =
        std::fs::read_to_string(format!("/proc/{}/limits", process.pid())).expect("proc limits");
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains(" 1024 ")),
        "roverd does not run under ulimit -n 1024:\n{limits}"
    );
    let healthz = || async move {
        let start = Instant::now();
        let (code, body) = request(addr, "GET", "/healthz", &[], vec![]).await;
        assert_eq!((code, body.as_str()), (200, "ok"));
        start.elapsed()
    };
    // Healthy first: the encoders have produced their first frames.
    let start = Instant::now();
    while request(addr, "GET", "/healthz", &[], vec![]).await.0 != 200 {
        assert!(start.elapsed() < PATIENCE, "roverd never became healthy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let quiet = healthz().await;
    // A viewer's first picture without the flood, on this machine as loaded as it is now:
    // the flood may not make it much slower.
    let quiet_picture = first_picture(addr).await;
    let picture_bound = Duration::from_secs(2).max(quiet_picture * 2 + Duration::from_secs(1));

    // 1,100 idle connections from 127.0.0.2, all kept open by this side...
    let mut idle = Vec::with_capacity(FLOOD);
    while idle.len() < FLOOD {
        if let Some(stream) = connect_from_other_address(addr).await {
            idle.push(stream);
        }
    }
    // ...and more coming all the time while the others are served.
    let flooding = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let churn = {
        let flooding = Arc::clone(&flooding);
        tokio::spawn(async move {
            let mut made = 0usize;
            while flooding.load(std::sync::atomic::Ordering::Relaxed) {
                if connect_from_other_address(addr).await.is_some() {
                    made += 1;
                }
            }
            made
        })
    };

    // From 127.0.0.1, /healthz answers at once, every time.
    let mut latencies = Vec::new();
    for _ in 0..20 {
        let took = healthz().await;
        assert!(
            took < Duration::from_secs(2),
            "/healthz took {took:?} during the flood"
        );
        latencies.push(took);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // And a viewer connects and decodes a picture within 2 s of its offer (or, on a
    // machine busy with other work, not much later than without the flood).
    let first_picture = first_picture(addr).await;
    assert!(
        first_picture < picture_bound,
        "first picture {first_picture:?} after the offer during the flood, {quiet_picture:?} \
         without it"
    );
    flooding.store(false, std::sync::atomic::Ordering::Relaxed);
    let churned = churn.await.expect("churn");
    let fds = std::fs::read_dir(format!("/proc/{}/fd", process.pid()))
        .expect("proc fd")
        .count();
    latencies.sort();
    eprintln!(
        "flood: {FLOOD} idle connections + {churned} more from 127.0.0.2; /healthz from \
         127.0.0.1 took {:?} before, median {:?} and max {:?} during; first picture {:?} after \
         the offer ({:?} without the flood); roverd holds {fds} fds",
        quiet,
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
        first_picture,
        quiet_picture
    );
    // The flood holds its 32 places, no more, and is logged once.
    assert!(fds < 256, "roverd holds {fds} descriptors");
    let log = process.log();
    let lines = log
        .matches("closing new connections from 127.0.0.2")
        .count();
    assert_eq!(lines, 1, "one log line per flood:\n{log}");
    drop(idle);
    let _ = std::fs::remove_dir_all(&dir);
}
