//! The HTTP API and the data channel, against a running roverd: every status code in
//! docs/protocol.md, and that no bad request disturbs a connected peer.

mod common;

use common::*;
use std::time::Duration;

fn error_text(body: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|_| panic!("error body is not JSON: {body}"));
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no \"error\" in {body}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_health_and_status_are_served() {
    let server = Server::start(test_config()).await;
    let (code, page) = server.get("/").await;
    assert_eq!(code, 200);
    assert!(page.contains("<video"), "the page has no video element");
    for asset in ["/app.js", "/style.css"] {
        let (code, body) = server.get(asset).await;
        assert_eq!(code, 200, "{asset}");
        assert!(!body.is_empty(), "{asset} is empty");
    }
    assert_eq!(server.get("/healthz").await, (200, "ok".to_owned()));

    let status = server.status().await;
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["video"]["source"], "test");
    assert_eq!(status["video"]["width"], 640);
    assert_eq!(status["video"]["height"], 480);
    assert!(status["video"]["frames_encoded"].as_u64() > Some(0));
    assert_eq!(status["audio"]["source"], "test");
    assert_eq!(status["audio"]["sample_rate"], 48_000);
    assert_eq!(status["audio"]["channels"], 1);
    assert_eq!(status["peers"], serde_json::json!([]));
    assert_eq!(status["motors"]["backend"], "sim");
    assert_eq!(status["motors"]["estop"], false);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_right_status_and_the_stream_goes_on() {
    let server = Server::start(test_config()).await;
    let mut watcher = ClientPeer::connect(&server).await;
    watcher.next_video_packet().await;
    let addr = server.addr;

    let huge = vec![b'x'; 64 * 1024 + 1];
    let offer = |body: &[u8]| body.to_vec();
    let cases = [
        Bad::new(
            "POST",
            "/api/offer",
            offer(b"this is not json"),
            400,
            "not JSON",
        ),
        Bad::new(
            "POST",
            "/api/offer",
            offer(br#"{"hello": 1}"#),
            400,
            "not an offer",
        ),
        Bad::new(
            "POST",
            "/api/offer",
            offer(br#"{"sdp": "v=0", "type": "answer"}"#),
            400,
            "only \"offer\"",
        ),
        Bad::new(
            "POST",
            "/offer",
            offer(br#"{"sdp": "garbage", "type": "offer"}"#),
            400,
            "not a valid SDP",
        ),
        Bad::new(
            "POST",
            "/connect",
            offer(br#"{"sdp": "", "type": "offer"}"#),
            400,
            "not a valid SDP",
        ),
        Bad::new("POST", "/webrtc/offer", huge, 413, "larger than 64 KiB"),
        Bad::new("GET", "/api/offer", vec![], 405, "not allowed"),
        Bad::new("GET", "/nothing-here", vec![], 404, "nothing at"),
        Bad::new("DELETE", "/api/peers/p999", vec![], 404, "no peer"),
        Bad::new("POST", "/api/offer", offer(b"{}"), 403, "another site")
            .header("origin", "http://evil.example"),
        Bad::new(
            "GET",
            "/api/status",
            vec![],
            403,
            "not one of this robot's names",
        )
        .header("host", "evil.example"),
        Bad::new("GET", "/", vec![], 403, "not one of this robot's names")
            .header("host", "evil.example:8080"),
    ];
    for bad in cases {
        let (code, text) = request(addr, bad.method, bad.path, &bad.headers, bad.body).await;
        let what = format!("{} {} {:?}", bad.method, bad.path, bad.headers);
        assert_eq!(code, bad.status, "{what}: {text}");
        let message = error_text(&text);
        assert!(
            message.contains(bad.says),
            "{what}: {message:?} lacks {:?}",
            bad.says
        );
    }

    // Accepted names still work: IP literal, localhost, and the page's own origin.
    for host in ["localhost:8080", "127.0.0.1", "[::1]:8080"] {
        let (code, _) = request(addr, "GET", "/api/status", &[("host", host)], vec![]).await;
        assert_eq!(code, 200, "Host {host}");
    }
    let origin = format!("http://{addr}");
    let (code, _) = request(
        addr,
        "POST",
        "/api/offer",
        &[("origin", &origin)],
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(code, 400, "same-origin requests pass the Origin check");

    // The watcher never noticed: it still receives, and is still listed.
    let (frames, worst_gap) = frames_within_secs(&mut watcher, 1).await;
    // 30 a second on an idle machine; a stream that stopped gets none.
    assert!(
        frames >= 10,
        "the watcher got {frames} frames after the bad requests"
    );
    assert!(
        // About 33 ms on an idle machine; a stall the bad requests caused would be seconds.
        worst_gap < Duration::from_secs(1),
        "gap of {worst_gap:?}"
    );
    assert_eq!(
        server.status().await["peers"].as_array().map(Vec::len),
        Some(1)
    );
    watcher.close().await;
    server.stop().await;
}

/// A request that must be refused, and what the refusal must say.
struct Bad {
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    body: Vec<u8>,
    status: u16,
    says: &'static str,
}

impl Bad {
    fn new(
        method: &'static str,
        path: &'static str,
        body: Vec<u8>,
        status: u16,
        says: &'static str,
    ) -> Self {
        Self {
            method,
            path,
            headers: Vec::new(),
            body,
            status,
            says,
        }
    }

    fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }
}

async fn frames_within_secs(peer: &mut ClientPeer, secs: u64) -> (usize, Duration) {
    let start = std::time::Instant::now();
    let mut last = start;
    let mut worst = Duration::ZERO;
    let mut frames = 0;
    while start.elapsed() < Duration::from_secs(secs) {
        if peer.next_video_packet().await.header.marker {
            worst = worst.max(last.elapsed());
            last = std::time::Instant::now();
            frames += 1;
        }
    }
    (frames, worst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_peers_an_offer_gets_503_and_a_freed_place_is_reusable() {
    let mut config = test_config();
    config.http.max_peers = 1;
    let server = Server::start(config).await;
    let first = ClientPeer::connect(&server).await;
    let (code, body) = server
        .post_json(
            "/api/offer",
            &serde_json::json!({"sdp": first.answer, "type": "offer"}),
        )
        .await;
    assert_eq!(code, 503, "{body}");
    assert!(error_text(&body).contains("max_peers"));

    let (code, _) = request(
        server.addr,
        "DELETE",
        &format!("/api/peers/{}", first.id),
        &[],
        vec![],
    )
    .await;
    assert_eq!(code, 204);
    assert_eq!(server.status().await["peers"], serde_json::json!([]));
    let second = ClientPeer::connect(&server).await;
    second.close().await;
    first.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_closes_is_forgotten() {
    let server = Server::start(test_config()).await;
    let peer = ClientPeer::connect(&server).await;
    // The client may see its connection up a moment before roverd sees its own.
    let deadline = std::time::Instant::now() + PATIENCE;
    while server.status().await["peers"][0]["state"] != "connected" {
        assert!(
            std::time::Instant::now() < deadline,
            "roverd never listed the peer as connected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    peer.close().await;
    let deadline = std::time::Instant::now() + PATIENCE;
    while server.status().await["peers"] != serde_json::json!([]) {
        assert!(
            std::time::Instant::now() < deadline,
            "closed peer still listed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_token_is_required_for_the_api_but_not_the_page() {
    let mut config = test_config();
    config.http.token = Some("correct-horse-battery".into());
    let server = Server::start(config).await;
    let addr = server.addr;
    assert_eq!(server.get("/").await.0, 200);
    let (code, body) = server.get("/api/status").await;
    assert_eq!(code, 401);
    assert!(error_text(&body).contains("Bearer"));
    let wrong = [("authorization", "Bearer wrong")];
    assert_eq!(
        request(addr, "GET", "/api/status", &wrong, vec![]).await.0,
        401
    );
    assert_eq!(
        request(addr, "POST", "/api/offer", &wrong, b"{}".to_vec())
            .await
            .0,
        401
    );
    let right = [("authorization", "Bearer correct-horse-battery")];
    assert_eq!(
        request(addr, "GET", "/api/status", &right, vec![]).await.0,
        200
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_channel_says_hello_answers_ping_and_refuses_the_rest() {
    let server = Server::start(test_config()).await;
    let mut peer = ClientPeer::connect(&server).await;
    let hello = peer.next_reply().await;
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["id"], peer.id.as_str());
    assert_eq!(hello["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(hello["deadman_ms"], 500);

    peer.send(r#"{"type":"ping","t":123.5}"#).await;
    assert_eq!(
        peer.next_reply().await,
        serde_json::json!({"type": "pong", "t": 123.5})
    );

    for (msg, seq) in [
        ("not json", None),
        (r#"{"type":"warp","seq":4}"#, Some(4)),
        (r#"{"type":"drive","left":1,"seq":5}"#, Some(5)),
        (
            r#"{"type":"drive","left":"fast","right":1,"seq":6}"#,
            Some(6),
        ),
    ] {
        peer.send(msg).await;
        let reply = peer.next_reply().await;
        assert_eq!(reply["type"], "error", "{msg} → {reply}");
        assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(reply["seq"].as_i64(), seq, "{msg} → {reply}");
    }
    // Still answering after all that.
    peer.send(r#"{"type":"ping","t":7}"#).await;
    assert_eq!(peer.next_reply().await["t"], 7);
    assert_eq!(server.status().await["motors"]["left"], 0.0);
    peer.close().await;
    server.stop().await;
}

/// The keys of a JSON object, sorted.
fn keys(body: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(body).expect("JSON");
    let mut keys: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {body}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_offer_route_answers_in_the_shape_its_client_expects() {
    let server = Server::start(test_config()).await;
    // What each client sends and accepts back. RTCBot does RTCSessionDescription(**answer),
    // which raises on any key but sdp and type; FastRTC sends a webrtc_id and reads the
    // session description; WebGear_RTC (vidgear) posts and reads a bare description.
    let cases = [
        ("/api/offer", "roverd's page", vec!["id", "sdp", "type"]),
        ("/connect", "RTCBot", vec!["sdp", "type"]),
        ("/webrtc/offer", "FastRTC", vec!["sdp", "type"]),
        ("/offer", "WebGear_RTC", vec!["sdp", "type"]),
    ];
    for (path, client, want) in cases {
        let sdp = client_offer_sdp().await;
        let mut offer = serde_json::json!({"sdp": sdp, "type": "offer"});
        if client == "FastRTC" {
            offer["webrtc_id"] = "fastrtc-session-1".into();
        }
        let (code, headers, body) = request_full(
            server.addr,
            "POST",
            path,
            &[],
            offer.to_string().into_bytes(),
        )
        .await;
        assert_eq!(code, 200, "{client} via {path}: {body}");
        assert_eq!(keys(&body), want, "{client} via {path}: {body}");
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["type"], "answer", "{client}");
        assert!(
            answer["sdp"].as_str().unwrap_or("").starts_with("v=0"),
            "{client}: {body}"
        );
        // Every answer names its peer and carries the secret that closes it.
        let location = headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{client}: no Location"));
        let (id, secret) = location
            .strip_prefix("/api/peers/")
            .and_then(|rest| rest.split_once("?secret="))
            .unwrap_or_else(|| panic!("{client}: Location {location}"));
        assert!(
            id.starts_with('p') && id[1..].bytes().all(|b| b.is_ascii_digit()),
            "{location}"
        );
        assert!(
            secret.len() == 32 && secret.bytes().all(|b| b.is_ascii_hexdigit()),
            "{location}"
        );
        if let Some(body_id) = answer.get("id") {
            assert_eq!(body_id, id, "{client}");
        }
        let (code, text) = request(server.addr, "DELETE", location, &[], vec![]).await;
        assert_eq!(code, 204, "{client}: DELETE {location}: {text}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_the_security_headers() {
    let server = Server::start(test_config()).await;
    let cases: [(&str, &str, &[u8], u16); 7] = [
        ("GET", "/", b"", 200),
        ("GET", "/app.js", b"", 200),
        ("GET", "/style.css", b"", 200),
        ("GET", "/api/status", b"", 200),
        ("GET", "/healthz", b"", 200),
        ("GET", "/no/such/page", b"", 404),
        ("POST", "/api/offer", b"not json", 400),
    ];
    for (method, path, body, want) in cases {
        let (code, headers, text) =
            request_full(server.addr, method, path, &[], body.to_vec()).await;
        assert_eq!(code, want, "{method} {path}: {text}");
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_else(|| panic!("{method} {path}: no {name}"))
                .to_owned()
        };
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        let csp = header("content-security-policy");
        let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
        for want in [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
            "object-src 'none'",
        ] {
            assert!(
                directives.contains(&want),
                "{path}: {want:?} not in {csp:?}"
            );
        }
        // Nothing inline, nothing from elsewhere.
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval") && !csp.contains('*'),
            "{path}: {csp}"
        );
    }
    server.stop().await;
}
