//! Driving through the data channel against roverd with the `sim` motors: every way the
//! motors must stop, over real WebRTC peers.

mod common;

use common::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn moving(s: &serde_json::Value) -> bool {
    s["left"].as_f64() != Some(0.0) || s["right"].as_f64() != Some(0.0)
}

fn stopped(s: &serde_json::Value) -> bool {
    !moving(s)
}

async fn motors(server: &Server) -> (f64, f64) {
    let m = &server.status().await["motors"];
    (
        m["left"].as_f64().expect("left"),
        m["right"].as_f64().expect("right"),
    )
}

/// No ramp and a long deadman, so that only the path under test can stop the motors.
fn config(deadman_ms: u64) -> roverd::config::Config {
    let mut c = test_config();
    c.motors.ramp_per_s = 1000.0;
    c.control.deadman_ms = deadman_ms;
    c
}

const DRIVE: &str = r#"{"type":"drive","left":0.5,"right":0.5}"#;
const LET_GO: &str = r#"{"type":"drive","left":0,"right":0}"#;

/// A held control: `msg` every 50 ms on `peer`'s data channel, as the page repeats a drive
/// while a control is held, until dropped.
struct Repeat(tokio::task::JoinHandle<()>);

impl Repeat {
    fn start(peer: &ClientPeer, msg: &'static str) -> Repeat {
        let dc = Arc::clone(&peer.dc);
        Repeat(tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(50));
            loop {
                every.tick().await;
                if dc.send_text(msg).await.is_err() {
                    break;
                }
            }
        }))
    }
}

impl Drop for Repeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Polls `/api/status` until the motors are at `want`; the time it took.
async fn until_motors(server: &Server, want: (f64, f64)) -> Duration {
    let start = Instant::now();
    loop {
        let now = motors(server).await;
        if now == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < PATIENCE,
            "the motors never reached {want:?}; they are at {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Samples the motors through `/api/status` every 15 ms for a second and checks that each
/// sample is `want`.
async fn motors_stay(server: &Server, want: (f64, f64), why: &str) {
    let start = Instant::now();
    let mut samples = 0;
    while start.elapsed() < Duration::from_secs(1) {
        let now = motors(server).await;
        assert_eq!(now, want, "{why}: {:?} into the second", start.elapsed());
        samples += 1;
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    // Even a loaded machine answers a status request in well under 100 ms.
    assert!(samples >= 10, "only {samples} samples in a second");
}

/// Every message that has already arrived on `peer`'s channel.
fn arrived(peer: &mut ClientPeer) -> Vec<serde_json::Value> {
    std::iter::from_fn(|| peer.messages.try_recv().ok())
        .map(|m| serde_json::from_str(&m).expect("roverd sends JSON"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drive_reaches_the_motors_and_the_deadman_stops_them_on_time() {
    let server = Server::start(config(500)).await;
    let mut peer = ClientPeer::connect(&server).await;
    // Before the send: roverd cannot have the drive before this instant.
    let sent = Instant::now();
    peer.send(r#"{"type":"drive","linear":0.5,"angular":0.25,"seq":1}"#)
        .await;
    let state = peer.wait_state(moving).await;
    assert_eq!(
        (state["left"].as_f64(), state["right"].as_f64()),
        (Some(0.25), Some(0.75))
    );
    assert_eq!(state["driver"], true);
    assert_eq!(motors(&server).await, (0.25, 0.75));
    assert_eq!(server.status().await["peers"][0]["driver"], true);
    peer.wait_state(stopped).await;
    let after = sent.elapsed();
    assert!(
        // The deadman's timing is checked in virtual time (safety's unit tests); end to end,
        // a wide bound that a busy machine keeps, and that a missing deadman breaks.
        after < Duration::from_millis(1500),
        "deadman fired {after:?} after the last drive"
    );
    assert!(
        after >= Duration::from_millis(500),
        "deadman fired early, {after:?}"
    );
    assert_eq!(motors(&server).await, (0.0, 0.0));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_peer_is_refused_while_the_first_drives_and_accepted_after_it_leaves() {
    let server = Server::start(config(5_000)).await;
    let mut first = ClientPeer::connect(&server).await;
    let mut second = ClientPeer::connect(&server).await;
    first.send(DRIVE).await;
    first.wait_state(moving).await;
    second
        .send(r#"{"type":"drive","left":-1,"right":-1,"seq":9}"#)
        .await;
    let refusal = second.next_error().await;
    assert_eq!(refusal["type"], "error");
    assert_eq!(refusal["seq"], 9);
    assert!(
        refusal["message"]
            .as_str()
            .is_some_and(|m| m.contains("another viewer")),
        "{refusal}"
    );
    assert_eq!(
        motors(&server).await,
        (0.5, 0.5),
        "the refused drive moved nothing"
    );
    // The first peer's browser goes away without a word; roverd notices the silence.
    first.close().await;
    second.wait_state(stopped).await;
    second
        .send(r#"{"type":"drive","left":-1,"right":-1}"#)
        .await;
    let state = second.wait_state(moving).await;
    assert_eq!(state["left"], -1.0);
    assert_eq!(state["driver"], true);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_estop_from_a_viewer_stops_the_driver_and_latches_until_reset() {
    let server = Server::start(config(5_000)).await;
    let mut driver = ClientPeer::connect(&server).await;
    let viewer = ClientPeer::connect(&server).await;
    driver.send(DRIVE).await;
    driver.wait_state(moving).await;
    viewer.send(r#"{"type":"estop"}"#).await;
    let state = driver.wait_state(|s| s["estop"] == true).await;
    assert!(stopped(&state), "{state}");
    assert_eq!(server.status().await["motors"]["estop"], true);
    driver
        .send(r#"{"type":"drive","left":1,"right":1,"seq":2}"#)
        .await;
    let refusal = driver.next_error().await;
    assert!(
        refusal["message"]
            .as_str()
            .is_some_and(|m| m.contains("latched")),
        "{refusal}"
    );
    assert_eq!(motors(&server).await, (0.0, 0.0));
    viewer.send(r#"{"type":"reset"}"#).await;
    driver.wait_state(|s| s["estop"] == false).await;
    // The driver held its control through the e-stop: the reset does not set it going...
    driver
        .send(r#"{"type":"drive","left":0.5,"right":0.5,"seq":3}"#)
        .await;
    let refusal = driver.next_error().await;
    assert_eq!(refusal["seq"], 3);
    assert!(
        refusal["message"]
            .as_str()
            .is_some_and(|m| m.contains("has since been reset: let go of the controls")),
        "{refusal}"
    );
    assert_eq!(motors(&server).await, (0.0, 0.0));
    // ...until it lets go.
    driver.send(LET_GO).await;
    driver.send(DRIVE).await;
    driver.wait_state(moving).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_from_any_peer_stops_the_motors() {
    let server = Server::start(config(5_000)).await;
    let mut driver = ClientPeer::connect(&server).await;
    let viewer = ClientPeer::connect(&server).await;
    // The driver holds its control: drive(0.5, 0.5) every 50 ms, as the page repeats it.
    let held = Repeat::start(&driver, DRIVE);
    driver.wait_state(moving).await;
    viewer.send(r#"{"type":"stop"}"#).await;
    driver.wait_state(stopped).await;
    assert_eq!(motors(&server).await, (0.0, 0.0));
    // The stop wins: the repeats cannot undo it, for as long as they go on...
    arrived(&mut driver);
    motors_stay(&server, (0.0, 0.0), "a repeated drive undid the stop").await;
    let refusals: Vec<_> = arrived(&mut driver)
        .into_iter()
        .filter(|m| m["type"] == "error")
        .collect();
    assert!(
        refusals.len() >= 5,
        "the repeats went on for a second, each refused: {refusals:?}"
    );
    for refusal in &refusals {
        assert_eq!(
            refusal["message"],
            "a stop was sent (by you or another viewer): let go of the controls \
             (send a zero drive) before driving again"
        );
    }
    // ...but letting go and driving again works at once.
    drop(held);
    driver.send(LET_GO).await;
    let _held = Repeat::start(&driver, DRIVE);
    until_motors(&server, (0.5, 0.5)).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_leaving_stops_the_motors_and_a_viewer_leaving_does_not() {
    let mut config = config(5_000);
    // A slow ramp: were the motors cut, however briefly, they would take half a second to
    // come back to speed under the repeats, in plain view of the samples.
    config.motors.ramp_per_s = 1.0;
    let server = Server::start(config).await;
    let mut driver = ClientPeer::connect(&server).await;
    let viewer = ClientPeer::connect(&server).await;
    let _held = Repeat::start(&driver, DRIVE);
    until_motors(&server, (0.5, 0.5)).await;
    // The viewer leaves while the driver keeps driving: the motors keep moving.
    let delete = |id: String| async move {
        let path = format!("/api/peers/{id}");
        request(server.addr, "DELETE", &path, &[], vec![]).await.0
    };
    assert_eq!(delete(viewer.id.clone()).await, 204);
    let peers = |s: &serde_json::Value| s["peers"].as_array().map_or(0, Vec::len);
    let start = Instant::now();
    while peers(&server.status().await) > 1 {
        assert!(start.elapsed() < PATIENCE, "the viewer never left");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    arrived(&mut driver);
    motors_stay(&server, (0.5, 0.5), "the viewer leaving moved the motors").await;
    let states: Vec<_> = arrived(&mut driver)
        .into_iter()
        .filter(|m| m["type"] == "state")
        .collect();
    assert!(!states.is_empty());
    assert!(
        states.iter().all(|s| moving(s) && s["driver"] == true),
        "{states:?}"
    );
    // The driver leaves: the motors stop, long before the deadman (5 s).
    let left = Instant::now();
    assert_eq!(delete(driver.id.clone()).await, 204);
    until_motors(&server, (0.0, 0.0)).await;
    assert!(
        left.elapsed() < Duration::from_secs(2),
        "stopped {:?} after the driver left",
        left.elapsed()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_drivers_data_channel_stops_the_motors() {
    let server = Server::start(config(5_000)).await;
    let driver = ClientPeer::connect(&server).await;
    let mut viewer = ClientPeer::connect(&server).await;
    driver.send(DRIVE).await;
    viewer.wait_state(moving).await;
    driver.dc.close().await.expect("close the data channel");
    viewer.wait_state(stopped).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_drivers_peer_stops_the_motors_long_before_the_deadman() {
    let server = Server::start(config(5_000)).await;
    let mut viewer = ClientPeer::connect(&server).await;

    // Closed by roverd on request (DELETE /api/peers/<id>).
    let driver = ClientPeer::connect(&server).await;
    driver.send(DRIVE).await;
    viewer.wait_state(moving).await;
    let (code, _) = request(
        server.addr,
        "DELETE",
        &format!("/api/peers/{}", driver.id),
        &[],
        vec![],
    )
    .await;
    assert_eq!(code, 204);
    viewer.wait_state(stopped).await;

    // Gone from the network: its connection falls silent.
    let driver = ClientPeer::connect(&server).await;
    driver.send(DRIVE).await;
    viewer.wait_state(moving).await;
    let closed = Instant::now();
    driver.close().await;
    viewer.wait_state(stopped).await;
    // A close frees the peer within a second; 3 s keeps well clear of the 5 s deadman.
    assert!(
        closed.elapsed() < Duration::from_secs(3),
        "stopped {:?} after the peer vanished",
        closed.elapsed()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_hostile_messages_get_errors_and_move_nothing() {
    let server = Server::start(config(5_000)).await;
    let mut peer = ClientPeer::connect(&server).await;
    let hostile = [
        r#"{"type":"drive","left":null,"right":1}"#.to_owned(),
        r#"{"type":"drive","left":1e308,"right":1e308,"linear":1,"angular":1}"#.to_owned(),
        r#"{"type":"drive","left":[1],"right":{"x":1}}"#.to_owned(),
        r#"{"type":"DRIVE","left":1,"right":1}"#.to_owned(),
        r#"{"type":"drive","left":1,"right":1,"seq":"1"}"#.to_owned(),
        format!(
            r#"{{"type":"drive","left":1,"right":1,"pad":"{}"}}"#,
            "x".repeat(5000)
        ),
        "\u{0}\u{1}garbage".to_owned(),
        "[]".to_owned(),
        "null".to_owned(),
    ];
    for msg in &hostile {
        peer.send(msg).await;
        let reply = peer.next_error().await;
        assert!(
            reply["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{msg:.60} → {reply}"
        );
        assert_eq!(motors(&server).await, (0.0, 0.0), "{msg:.60} moved a motor");
    }
    assert_eq!(server.status().await["motors"]["estop"], false);
    assert_eq!(
        server.status().await["peers"][0]["driver"],
        false,
        "nobody became the driver"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_a_driving_roverd_stops_the_motors_before_it_exits() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = std::env::temp_dir().join(format!("roverd-drive-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("roverd.toml");
    std::fs::write(
        &file,
        "[control]\ndeadman_ms = 5000\n[motors]\nramp_per_s = 1000\n",
    )
    .expect("config");
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_roverd"))
            .args(["--simulate", "--listen", "127.0.0.1:0", "--config"])
            .arg(&file)
            .env("RUST_LOG", "info")
            .env_remove("JOURNAL_STREAM")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start roverd"),
    );
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    let stderr = child.0.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let addr = loop {
        let line = tokio::time::timeout(PATIENCE, lines.recv())
            .await
            .expect("roverd starts")
            .expect("stderr");
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.trim_end_matches('/').parse().expect("address");
        }
    };
    let mut peer = ClientPeer::connect_addr(addr).await;
    peer.send(DRIVE).await;
    peer.wait_state(moving).await;
    let kill = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let mut log = Vec::new();
    while let Some(line) = tokio::time::timeout(PATIENCE, lines.recv())
        .await
        .expect("roverd exits")
    {
        log.push(line);
    }
    let status = child.0.wait().expect("wait");
    assert!(status.success(), "exit {status}: {log:#?}");
    let stopped = log
        .iter()
        .position(|l| l.contains("motors stopped for shutdown"));
    let exited = log
        .iter()
        .position(|l| l.ends_with("roverd::server: stopped"));
    assert!(stopped.is_some(), "no motor stop in the log: {log:#?}");
    assert!(
        stopped < exited,
        "motors must stop before the process ends: {log:#?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A roverd process that cannot outlive a failing test.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
