//! Who may watch and drive, browser-borne attacks, every limit, and a driver
//! whose process dies. Real client peers against roverd on 127.0.0.1.

mod common;

use common::{request, test_config, ClientPeer, Server, PATIENCE};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

const FULL: &str = "drive-token-123";
const VIEWER: &str = "watch-token-456";
const DRIVE: &str = r#"{"type":"drive","left":0.5,"right":0.5}"#;

fn moving(s: &serde_json::Value) -> bool {
    s["left"].as_f64().unwrap_or(0.0) > 0.0
}

fn stopped(s: &serde_json::Value) -> bool {
    s["left"] == 0.0 && s["right"] == 0.0
}

fn error_text(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).expect("error body is JSON");
    v["error"].as_str().expect("error field").to_owned()
}

async fn status_with(addr: SocketAddr, token: &str) -> serde_json::Value {
    let auth = format!("Bearer {token}");
    let (code, body) = request(
        addr,
        "GET",
        "/api/status",
        &[("authorization", &auth)],
        vec![],
    )
    .await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("status JSON")
}

/// Polls `/api/status` until `want` holds; the time it took.
async fn until_status(
    addr: SocketAddr,
    token: Option<&str>,
    want: impl Fn(&serde_json::Value) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let status = match token {
            Some(t) => status_with(addr, t).await,
            None => {
                let (code, body) = request(addr, "GET", "/api/status", &[], vec![]).await;
                assert_eq!(code, 200, "{body}");
                serde_json::from_str(&body).expect("status JSON")
            }
        };
        if want(&status) {
            return start.elapsed();
        }
        assert!(start.elapsed() < PATIENCE, "status never matched: {status}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn tokens_config() -> roverd::config::Config {
    let mut config = test_config();
    config.http.token = Some(FULL.into());
    config.http.viewer_token = Some(VIEWER.into());
    config.motors.ramp_per_s = 1000.0;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_token_nothing_but_the_page_and_a_viewer_token_cannot_drive() {
    let server = Server::start(tokens_config()).await;
    let addr = server.addr;
    // No token, a wrong one, a token in the wrong scheme: refused everywhere but the page.
    assert_eq!(server.get("/").await.0, 200);
    assert_eq!(server.get("/healthz").await.0, 200);
    for auth in [
        None,
        Some("Bearer wrong-token-000"),
        Some(FULL),
        Some("Basic drive-token-123"),
    ] {
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", *a)).collect();
        for (method, path, body) in [
            ("GET", "/api/status", ""),
            ("POST", "/api/offer", "{}"),
            ("POST", "/offer", "{}"),
            ("DELETE", "/api/peers/p1", ""),
        ] {
            let (code, text) = request(addr, method, path, &headers, body.into()).await;
            assert_eq!(code, 401, "{method} {path} with {auth:?}: {text}");
            assert!(error_text(&text).contains("Bearer"), "{text}");
        }
    }

    // The viewer watches...
    let mut viewer = ClientPeer::connect_with_token(addr, VIEWER).await;
    assert!(!viewer.next_video_packet().await.payload.is_empty());
    assert_eq!(viewer.next_message().await["type"], "hello");
    // ...but every way of moving the robot is refused, and nothing moves.
    for (i, msg) in [
        r#"{"type":"drive","left":1,"right":1,"seq":1}"#,
        r#"{"type":"drive","linear":1,"angular":0,"seq":2}"#,
        r#"{"type":"reset","seq":3}"#,
    ]
    .into_iter()
    .enumerate()
    {
        viewer.send(msg).await;
        let err = viewer.next_error().await;
        assert!(
            err["message"]
                .as_str()
                .unwrap_or("")
                .contains("watch but not drive"),
            "{err}"
        );
        assert_eq!(err["seq"], i as i64 + 1);
    }
    let status = status_with(addr, VIEWER).await;
    assert_eq!(status["motors"]["left"], 0.0, "{status}");
    assert_eq!(status["motors"]["right"], 0.0, "{status}");
    assert!(
        status["peers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["driver"] == false),
        "a viewer must never hold the lease: {status}"
    );
    // Nor may it close another peer.
    let (code, text) = request(
        addr,
        "DELETE",
        &format!("/api/peers/{}", viewer.id),
        &[("authorization", &format!("Bearer {VIEWER}"))],
        vec![],
    )
    .await;
    assert_eq!(code, 403, "{text}");
    assert!(error_text(&text).contains("full token"), "{text}");

    // The full token drives, and the viewer's stop is still obeyed: stopping needs no rights.
    let mut driver = ClientPeer::connect_with_token(addr, FULL).await;
    driver.send(DRIVE).await;
    driver.wait_state(moving).await;
    viewer.send(r#"{"type":"stop"}"#).await;
    driver.wait_state(stopped).await;
    viewer.close().await;
    driver.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_works_from_every_accepted_host_and_from_no_other() {
    let mut config = test_config();
    config.http.allowed_hosts = vec!["rover.example.com".into()];
    let server = Server::start(config).await;
    let port = server.addr.port();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_owned();
    let accepted = [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        format!("192.168.1.50:{port}"),
        format!("{hostname}:{port}"),
        format!("{hostname}.local:{port}"),
        "rover.example.com".to_owned(),
    ];
    for host in &accepted {
        let origin = format!("http://{host}");
        for path in ["/", "/app.js", "/style.css", "/api/status"] {
            let (code, body) = request(
                server.addr,
                "GET",
                path,
                &[("host", host), ("origin", &origin)],
                vec![],
            )
            .await;
            assert_eq!(code, 200, "GET {path} with Host {host}: {body}");
        }
        // The offer route takes the same Host and Origin: a bad body, not a refusal.
        let (code, body) = request(
            server.addr,
            "POST",
            "/api/offer",
            &[("host", host), ("origin", &origin)],
            b"not json".to_vec(),
        )
        .await;
        assert_eq!(code, 400, "offer with Host {host}: {body}");
    }
    let own = format!("127.0.0.1:{port}");
    for (host, origin) in [
        ("evil.example", None),
        ("evil.example:8080", None),
        (own.as_str(), Some("http://evil.example")),
        (own.as_str(), Some("https://127.0.0.1.evil.example")),
        (own.as_str(), Some("null")),
    ] {
        let mut headers = vec![("host", host)];
        if let Some(o) = origin {
            headers.push(("origin", o));
        }
        let (code, body) =
            request(server.addr, "POST", "/api/offer", &headers, b"{}".to_vec()).await;
        assert_eq!(code, 403, "Host {host}, Origin {origin:?}: {body}");
        let (code, _) = request(server.addr, "GET", "/api/status", &headers, vec![]).await;
        assert_eq!(code, 403);
    }
    server.stop().await;
}

/// An HTTP request from another loopback address, as a second machine on the LAN would.
async fn request_from(
    from: &str,
    to: SocketAddr,
    path: &str,
    body: Vec<u8>,
) -> (u16, String, Option<String>) {
    use http_body_util::{BodyExt, Full};
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{from}:0").parse().expect("address"))
        .expect("bind another loopback address");
    let stream = socket.connect(to).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let req = hyper::Request::post(path)
        .header("host", to.to_string())
        .body(Full::new(bytes::Bytes::from(body)))
        .expect("request");
    let resp = sender.send_request(req).await.expect("send");
    let code = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (code, String::from_utf8_lossy(&body).into_owned(), retry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_past_the_rate_get_429_and_no_one_else_notices() {
    let mut config = test_config();
    config.limits.offers_per_minute = 2;
    let server = Server::start(config).await;
    let mut watcher = ClientPeer::connect(&server).await;
    let _second = ClientPeer::connect(&server).await;
    // The third offer from 127.0.0.1 within the minute is refused before any work is done.
    let (code, body, pc) = ClientPeer::post_offer_only(server.addr).await;
    let _ = pc.close().await;
    assert_eq!(code, 429, "{body}");
    assert!(
        error_text(&body).contains("limits.offers_per_minute = 2"),
        "{body}"
    );
    let (code, _, retry) =
        request_from("127.0.0.1", server.addr, "/api/offer", offer_body().await).await;
    assert_eq!(code, 429);
    let retry: u64 = retry.expect("Retry-After").parse().expect("seconds");
    assert!((1..=31).contains(&retry), "Retry-After {retry}");
    // Another address has its own allowance: it gets past the limit (to the SDP check).
    let (code, body, _) =
        request_from("127.0.0.2", server.addr, "/api/offer", offer_body().await).await;
    assert_eq!(code, 200, "{body}");
    // The connected peer never noticed.
    let before = watcher.next_video_packet().await.header.sequence_number;
    let after = watcher.next_video_packet().await.header.sequence_number;
    assert_eq!(after, before.wrapping_add(1));
    assert_eq!(server.status().await["peers"].as_array().unwrap().len(), 3);
    server.stop().await;
}

/// A real offer (a client peer's, with H.264, Opus and a data channel) as a JSON body.
async fn offer_body() -> Vec<u8> {
    let sdp = common::client_offer_sdp().await;
    serde_json::json!({"sdp": sdp, "type": "offer"})
        .to_string()
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_flood_is_cut_to_the_rate_but_a_stop_always_gets_through() {
    let mut config = test_config();
    config.limits.messages_per_s = 10;
    config.limits.message_bytes = 256;
    config.motors.ramp_per_s = 1000.0;
    config.control.deadman_ms = 5000;
    let server = Server::start(config).await;
    let mut peer = ClientPeer::connect(&server).await;
    assert_eq!(peer.next_message().await["type"], "hello");

    // Too big for limits.message_bytes, though the parser would take it.
    let big = format!(r#"{{"type":"ping","t":1,"pad":"{}"}}"#, "x".repeat(300));
    peer.send(&big).await;
    let err = peer.next_error().await;
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("at most 256 bytes"),
        "{err}"
    );

    peer.send(DRIVE).await;
    peer.wait_state(moving).await;
    // Moving right before the flood, and the deadman (5 s) far off: only the stop can stop
    // the motors within the bound below.
    let status = server.status().await;
    assert!(moving(&status["motors"]), "{status}");
    // 40 pings at once: at most the bucket's 10 are answered, one error says why...
    for t in 0..40 {
        peer.send(&format!(r#"{{"type":"ping","t":{t}}}"#)).await;
    }
    // ...and a stop in the middle of the flood is obeyed all the same.
    peer.send(r#"{"type":"stop"}"#).await;
    let stop_sent = Instant::now();
    peer.send(r#"{"type":"ping","t":999}"#).await;
    let mut pongs = 0;
    let mut errors = Vec::new();
    let mut motors_stopped = false;
    // The flood is over when the state says stopped and nothing else arrives: wait for the
    // stop, then drain what is already queued.
    while !motors_stopped {
        let msg = peer.next_message().await;
        match msg["type"].as_str() {
            Some("pong") => pongs += 1,
            Some("error") => errors.push(msg),
            Some("state") => motors_stopped = stopped(&msg),
            _ => {}
        }
    }
    let took = stop_sent.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "stopped {took:?} after the stop: the stop was not obeyed, the 5 s deadman was"
    );
    assert!(pongs <= 11, "{pongs} pongs: the rate was not applied");
    assert!(
        pongs >= 5,
        "{pongs} pongs: the burst should have been answered"
    );
    assert_eq!(errors.len(), 1, "one error per flood: {errors:?}");
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("at most 10 a second"),
        "{errors:?}"
    );
    let status = server.status().await;
    assert_eq!(status["motors"]["left"], 0.0);
    // The peer is still connected and streaming.
    peer.next_video_packet().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_connects_is_dropped_after_the_connect_timeout() {
    let mut config = test_config();
    config.limits.connect_timeout_s = 1;
    let server = Server::start(config).await;
    let (code, body, pc) = ClientPeer::post_offer_only(server.addr).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(server.status().await["peers"].as_array().unwrap().len(), 1);
    let took = until_status(server.addr, None, |s| {
        s["peers"].as_array().is_some_and(|p| p.is_empty())
    })
    .await;
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(5),
        "dropped after {took:?}, expected about 1 s"
    );
    let _ = pc.close().await;
    server.stop().await;
}

/// The child half of the next test: a driver in its own process, so that the parent can
/// kill it without a goodbye. Does nothing unless run by that test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by a_driver_whose_process_is_killed_stops_the_motors_and_is_reaped"]
async fn child_driver() {
    let Ok(addr) = std::env::var("ROVERD_TEST_CHILD_DRIVES") else {
        return;
    };
    let addr: SocketAddr = addr.parse().expect("address");
    let mut peer = ClientPeer::connect_addr(addr).await;
    peer.send(DRIVE).await;
    peer.wait_state(moving).await;
    println!("driving {}", peer.id);
    // Keep the lease, as a held joystick does, until killed.
    loop {
        peer.send(DRIVE).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_whose_process_is_killed_stops_the_motors_and_is_reaped() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut config = test_config();
    config.limits.idle_timeout_s = 1;
    config.motors.ramp_per_s = 1000.0;
    let deadman = Duration::from_millis(config.control.deadman_ms);
    let server = Server::start(config).await;
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "child_driver", "--ignored", "--nocapture"])
        .env("ROVERD_TEST_CHILD_DRIVES", server.addr.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the child driver");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let line = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.starts_with("driving "));
        let _ = tx.send(line);
    });
    let line = tokio::time::timeout(PATIENCE, rx)
        .await
        .expect("the child drives in time")
        .expect("reader")
        .expect("the child says it drives");
    let id = line.trim_start_matches("driving ").to_owned();
    let status = server.status().await;
    assert!(status["motors"]["left"].as_f64().unwrap() > 0.0, "{status}");

    // SIGKILL: no close, no goodbye, no more packets.
    child.kill().expect("kill the child");
    let killed = Instant::now();
    let _ = child.wait();
    until_status(server.addr, None, |s| s["motors"]["left"] == 0.0).await;
    let stop_after = killed.elapsed();
    eprintln!("motors stopped {stop_after:?} after SIGKILL to the driver");
    assert!(
        // Far below the 3 s of silence after which the connection would be called lost.
        stop_after < deadman + Duration::from_millis(1000),
        "motors stopped {stop_after:?} after the kill; the deadman is {deadman:?}"
    );
    until_status(server.addr, None, |s| {
        s["peers"].as_array().is_some_and(|p| p.is_empty())
    })
    .await;
    let reaped_after = killed.elapsed();
    eprintln!("peer reaped {reaped_after:?} after SIGKILL to the driver");
    // 3 s of silence before ICE calls the link lost, then limits.idle_timeout_s = 1 (the
    // default 5 s would take 8 s).
    assert!(
        reaped_after < Duration::from_millis(7000),
        "peer {id} reaped {reaped_after:?} after the kill"
    );
    // A new driver is welcome at once.
    let mut next = ClientPeer::connect(&server).await;
    next.send(DRIVE).await;
    next.wait_state(moving).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_may_close_itself_with_the_secret_of_its_location_whatever_its_token() {
    let server = Server::start(tokens_config()).await;
    let addr = server.addr;
    let viewer = ClientPeer::connect_with_token(addr, VIEWER).await;
    let other = ClientPeer::connect_with_token(addr, VIEWER).await;
    let bearer = format!("Bearer {VIEWER}");
    let auth = [("authorization", bearer.as_str())];
    let (path, secret) = viewer
        .location
        .split_once("?secret=")
        .expect("Location with a secret");
    let (_, other_secret) = other.location.split_once("?secret=").expect("secret");
    assert_ne!(secret, other_secret, "every peer has its own secret");
    let refused = [
        // Without the secret: as before, a viewer closes nothing.
        path.to_owned(),
        // A wrong secret, an empty one, another peer's, one a character short.
        format!("{path}?secret=00000000000000000000000000000000"),
        format!("{path}?secret="),
        format!("{path}?secret={other_secret}"),
        format!("{path}?secret={}", &secret[1..]),
    ];
    for target in &refused {
        let (code, text) = request(addr, "DELETE", target, &auth, vec![]).await;
        assert_eq!(code, 403, "DELETE {target}: {text}");
    }
    // The secret is no token: without one, 401 as for everything under /api/.
    let (code, text) = request(addr, "DELETE", &viewer.location, &[], vec![]).await;
    assert_eq!(code, 401, "{text}");
    let listed = |id: String| {
        move |s: &serde_json::Value| {
            s["peers"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["id"] == id.as_str()))
        }
    };
    until_status(addr, Some(VIEWER), listed(viewer.id.clone())).await;
    // With its own secret, the viewer closes its own peer, and only that one.
    let (code, text) = request(addr, "DELETE", &viewer.location, &auth, vec![]).await;
    assert_eq!(code, 204, "{text}");
    let gone = listed(viewer.id.clone());
    until_status(addr, Some(VIEWER), move |s| !gone(s)).await;
    until_status(addr, Some(VIEWER), listed(other.id.clone())).await;
    // Done twice, it is done (the page's DELETE may come just after its closing connection
    // freed the place); still only with the peer's own secret.
    let (code, text) = request(addr, "DELETE", &viewer.location, &auth, vec![]).await;
    assert_eq!(code, 204, "{text}");
    let wrong = format!("{path}?secret={other_secret}");
    let (code, text) = request(addr, "DELETE", &wrong, &auth, vec![]).await;
    assert_eq!(code, 403, "{text}");
    viewer.close().await;
    other.close().await;
    server.stop().await;
}

/// Waits until `/api/status` has listed no peer for `quiet` in a row, for at most
/// `bound`; the time it took.
async fn until_no_peer_for(addr: SocketAddr, quiet: Duration, bound: Duration) -> Duration {
    let start = Instant::now();
    let mut empty_since: Option<Instant> = None;
    loop {
        let (code, body) = request(addr, "GET", "/api/status", &[], vec![]).await;
        assert_eq!(code, 200, "{body}");
        let status: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
        let peers = status["peers"].as_array().map_or(0, Vec::len);
        if peers == 0 {
            let since = *empty_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= quiet {
                return start.elapsed();
            }
        } else {
            empty_since = None;
        }
        assert!(
            start.elapsed() < bound,
            "peers still listed {bound:?} after their clients left: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_whose_client_leaves_before_the_answer_leaves_no_peer() {
    // roverd as its own process, answering 300 ms late (a test hook), so that the clients
    // below are surely gone before their answers. A peer left behind would hold its place
    // until limits.connect_timeout_s = 60, or until ICE gives up on it, both far beyond
    // the bound of the wait below.
    let dir = std::env::temp_dir().join(format!("roverd-abandoned-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("roverd.toml");
    std::fs::write(
        &file,
        "[limits]\nconnect_timeout_s = 60\nidle_timeout_s = 60\n",
    )
    .expect("config");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_roverd"));
    cmd.args(["--simulate", "--listen", "127.0.0.1:0", "--config"])
        .arg(&file)
        .env("ROVERD_TEST_ANSWER_DELAY_MS", "300")
        .env("RUST_LOG", "warn,roverd::server=info");
    let roverd = common::Process::spawn(cmd);
    let addr = roverd.addr;
    let body = offer_body().await;
    for _ in 0..3 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "POST /api/offer HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.expect("write");
        stream.write_all(&body).await.expect("write");
        // roverd has the whole offer and is answering it: leave now.
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(stream);
    }
    // Each answer was made, and its peer closed at once.
    let start = Instant::now();
    while roverd.log().matches("left before its answer").count() < 3 {
        assert!(
            start.elapsed() < PATIENCE,
            "roverd did not see the clients leave:\n{}",
            roverd.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = until_no_peer_for(addr, Duration::from_secs(1), Duration::from_secs(4)).await;
    eprintln!("no peer listed for 1 s, {took:?} after the answers");
    // roverd still answers the next client.
    let peer = ClientPeer::connect_addr(addr).await;
    peer.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
