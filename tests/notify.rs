//! roverd under a stand-in for systemd: the test owns the `NOTIFY_SOCKET` datagram socket,
//! sets `WATCHDOG_USEC`, runs the real binary and reads what it says (`READY=1`,
//! `WATCHDOG=1`, `STOPPING=1`), as systemd would with `Type=notify` and `WatchdogSec=`.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_roverd");
/// systemd's WatchdogSec, as roverd sees it: 200 ms, so roverd pings every 100 ms.
const WATCHDOG_USEC: &str = "200000";
/// Bound for anything that should take well under a second.
const PATIENCE: Duration = Duration::from_secs(15);

/// The service manager's end: a datagram socket in a fresh directory.
struct Manager {
    socket: UnixDatagram,
    dir: PathBuf,
}

impl Manager {
    fn new() -> Manager {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "roverd-notify-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let socket = UnixDatagram::bind(dir.join("notify")).expect("bind the notify socket");
        Manager { socket, dir }
    }

    /// Starts `roverd --simulate` on 127.0.0.1:0 with this socket and the watchdog on.
    fn start_roverd(&self, extra_env: &[(&str, &str)]) -> Running {
        let mut command = Command::new(BIN);
        command
            .args(["--simulate", "--listen", "127.0.0.1:0"])
            .env("NOTIFY_SOCKET", self.dir.join("notify"))
            .env("WATCHDOG_USEC", WATCHDOG_USEC)
            .env("RUST_LOG", "info")
            .env_remove("WATCHDOG_PID")
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in extra_env {
            command.env(k, v);
        }
        let state = self.dir.join("state");
        command.env("STATE_DIRECTORY", &state);
        let mut child = command.spawn().expect("start roverd");
        let stderr = child.stderr.take().expect("stderr");
        let (addr_tx, addr) = std::sync::mpsc::channel();
        // Keep reading stderr so roverd never blocks on a full pipe.
        let log = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let _ = addr_tx.send(rest.trim_end_matches('/').to_owned());
                }
                lines.push(line);
            }
            lines
        });
        Running {
            child,
            log: Some(log),
            addr,
        }
    }

    /// The next notification, or `None` if none arrives within `timeout`.
    fn next(&self, timeout: Duration) -> Option<String> {
        self.socket
            .set_read_timeout(Some(timeout))
            .expect("set timeout");
        let mut buf = [0u8; 4096];
        match self.socket.recv(&mut buf) {
            Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("reading the notify socket: {e}"),
        }
    }

    /// Reads notifications until one has the line `line`; returns all read, that one last.
    fn until(&self, line: &str, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(msg) = self.next(left.max(Duration::from_millis(1))) else {
                panic!("no {line} within {within:?}; got {seen:?}");
            };
            let found = msg.lines().any(|l| l == line);
            seen.push(msg);
            if found {
                return seen;
            }
        }
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Running {
    child: Child,
    log: Option<JoinHandle<Vec<String>>>,
    /// Where it listens, once it says so.
    addr: std::sync::mpsc::Receiver<String>,
}

impl Running {
    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the exit, up to `within`.
    fn wait(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for roverd") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything roverd logged; kills it first if it still runs.
    fn log(&mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.log
            .take()
            .map(|h| h.join().expect("stderr reader"))
            .unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is(msg: &str, line: &str) -> bool {
    msg.lines().any(|l| l == line)
}

#[test]
fn sends_ready_then_watchdog_pings_then_stopping_on_sigterm() {
    let manager = Manager::new();
    let mut roverd = manager.start_roverd(&[]);

    let before_ready = manager.until("READY=1", PATIENCE);
    assert!(
        !before_ready.iter().any(|m| is(m, "WATCHDOG=1")),
        "no watchdog ping before READY=1: {before_ready:?}"
    );

    // Pings every 100 ms: five of them, each well within a second of the one before.
    let mut pings = 0;
    while pings < 5 {
        let msg = manager
            .next(Duration::from_secs(2))
            .unwrap_or_else(|| panic!("no WATCHDOG=1 after {pings} pings"));
        assert!(is(&msg, "WATCHDOG=1"), "unexpected notification {msg:?}");
        pings += 1;
    }

    roverd.signal("TERM");
    let rest = manager.until("STOPPING=1", Duration::from_secs(2));
    assert!(
        rest.iter()
            .all(|m| is(m, "WATCHDOG=1") || is(m, "STOPPING=1")),
        "{rest:?}"
    );
    let status = roverd.wait(Duration::from_secs(2));
    let log = roverd.log();
    let status = status.unwrap_or_else(|| panic!("roverd still running after SIGTERM: {log:?}"));
    assert!(status.success(), "roverd exited with {status}: {log:?}");
    // Nothing after STOPPING=1: no ping from a roverd that is going away.
    assert_eq!(manager.next(Duration::from_millis(1)), None);
}

#[test]
fn stops_pinging_the_watchdog_when_the_video_source_hangs() {
    let manager = Manager::new();
    // About 2 s of pictures at 30 fps, then the source hangs like a stuck camera driver.
    let mut roverd = manager.start_roverd(&[("ROVERD_TEST_STALL_VIDEO_AFTER_FRAMES", "60")]);
    manager.until("READY=1", PATIENCE);

    // Pings while frames flow; then silence. "Silence" is 2 s without a ping (20 ping
    // intervals), which no amount of machine load produces while frames still flow.
    let silence = Duration::from_secs(2);
    let deadline = Instant::now() + PATIENCE;
    let mut pings = 0;
    while let Some(msg) = manager.next(silence) {
        assert!(is(&msg, "WATCHDOG=1"), "unexpected notification {msg:?}");
        pings += 1;
        assert!(
            Instant::now() < deadline,
            "still pinging after {PATIENCE:?} ({pings} pings): the stall was not noticed"
        );
    }
    assert!(
        pings >= 3,
        "roverd pinged only {pings} times before the stall"
    );
    // Still running (systemd, not roverd, ends it), and it said why it stopped pinging.
    assert!(
        roverd.child.try_wait().expect("try_wait").is_none(),
        "roverd exited instead of hanging"
    );
    let log = roverd.log();
    assert!(
        log.iter()
            .any(|l| l.contains("not pinging systemd's watchdog")),
        "{log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_motor_task_that_died_fails_healthz_stops_the_watchdog_and_drives_are_told() {
    let manager = Manager::new();
    // The sim backend panics on the first drive (a test hook).
    let mut roverd = manager.start_roverd(&[("ROVERD_TEST_MOTORS_PANIC", "1")]);
    let addr: std::net::SocketAddr = roverd
        .addr
        .recv_timeout(PATIENCE)
        .expect("roverd listens")
        .parse()
        .expect("address");
    tokio::task::block_in_place(|| manager.until("READY=1", PATIENCE));
    let (code, body) = common::request(addr, "GET", "/healthz", &[], vec![]).await;
    assert_eq!(code, 200, "{body}");
    tokio::task::block_in_place(|| manager.until("WATCHDOG=1", PATIENCE));

    let mut peer = common::ClientPeer::connect_addr(addr).await;
    peer.send(r#"{"type":"drive","left":0.5,"right":0.5,"seq":1}"#)
        .await;
    // The first drive is accepted (the motor task takes it), then the write panics.
    let deadline = Instant::now() + PATIENCE;
    let health = loop {
        let (code, body) = common::request(addr, "GET", "/healthz", &[], vec![]).await;
        if code != 200 {
            break body;
        }
        assert!(Instant::now() < deadline, "/healthz stayed 200");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(health.contains("motor control failed"), "{health}");

    peer.send(r#"{"type":"drive","left":0.5,"right":0.5,"seq":2}"#)
        .await;
    let error = peer
        .next_matching("the refusal of seq 2", |m| {
            m["type"] == "error" && m["seq"] == 2
        })
        .await;
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("motor control failed"), "{error}");

    // Pings already on their way may arrive (late, on a busy machine); then none for 2 s
    // (20 ping intervals).
    tokio::task::block_in_place(|| {
        let quiet_from = Instant::now() + Duration::from_millis(1000);
        while let Some(msg) = manager.next(Duration::from_secs(2)) {
            assert!(
                Instant::now() < quiet_from,
                "still pinging the watchdog after motor control failed: {msg:?}"
            );
        }
    });
    peer.close().await;
    let log = roverd.log();
    assert!(
        log.iter()
            .any(|l| l.contains("not pinging systemd's watchdog")),
        "{log:?}"
    );
}
