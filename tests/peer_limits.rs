//! What one peer may hold: a few data channels sharing one message bucket, and a place
//! that is given back as soon as its client closes.

mod common;

use common::{ClientPeer, Process, PATIENCE};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent};

/// What one of the client's channels saw.
#[derive(Debug)]
enum Seen {
    Message(usize, serde_json::Value),
    Closed(usize),
}

/// Forwards what channel `index` sees to `sink`.
fn watch_channel(index: usize, dc: Arc<dyn DataChannel>, sink: mpsc::UnboundedSender<Seen>) {
    tokio::spawn(async move {
        while let Some(event) = dc.poll().await {
            let seen = match event {
                DataChannelEvent::OnMessage(m) => match serde_json::from_slice(&m.data) {
                    Ok(json) => Seen::Message(index, json),
                    Err(_) => continue,
                },
                DataChannelEvent::OnClose => {
                    let _ = sink.send(Seen::Closed(index));
                    break;
                }
                _ => continue,
            };
            let _ = sink.send(seen);
        }
    });
}

/// roverd as its own process (its log is read), with `limits.messages_per_s = per_s`.
fn roverd(name: &str, per_s: u32) -> (Process, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("roverd-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("roverd.toml");
    std::fs::write(
        &file,
        format!(
            "[limits]\nmessages_per_s = {per_s}\nconnect_timeout_s = 60\nidle_timeout_s = 60\n"
        ),
    )
    .expect("config");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_roverd"));
    cmd.args(["--simulate", "--listen", "127.0.0.1:0", "--config"])
        .arg(&file)
        .env("RUST_LOG", "info");
    (Process::spawn(cmd), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_gets_four_channels_and_one_message_bucket_for_all_of_them() {
    const PER_S: u32 = 5;
    let (roverd, dir) = roverd("channels", PER_S);
    let mut peer = ClientPeer::connect_addr(roverd.addr).await;
    assert_eq!(peer.next_message().await["type"], "hello");

    // Nine more channels: with the page's own, ten. roverd serves four.
    let (sink, mut seen) = mpsc::unbounded_channel();
    let mut extra = Vec::new();
    for i in 1..10 {
        let dc = peer
            .pc
            .create_data_channel(&format!("extra-{i}"), None)
            .await
            .expect("create data channel");
        watch_channel(i, Arc::clone(&dc), sink.clone());
        extra.push(dc);
    }
    let mut hello = std::collections::BTreeSet::new();
    let mut closed = std::collections::BTreeSet::new();
    let deadline = Instant::now() + PATIENCE;
    while hello.len() + closed.len() < 9 {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, seen.recv()).await {
            Ok(Some(Seen::Message(i, m))) if m["type"] == "hello" => {
                hello.insert(i);
            }
            Ok(Some(Seen::Closed(i))) => {
                closed.insert(i);
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => panic!(
                "after {PATIENCE:?}, hello on {hello:?} and closed {closed:?}; roverd said:\n{}",
                roverd.log()
            ),
        }
    }
    assert_eq!(
        hello.len(),
        3,
        "the page's channel and three more are served; hello on {hello:?}, closed {closed:?}"
    );
    assert_eq!(
        closed.len(),
        6,
        "the six beyond four are closed: {closed:?}"
    );
    assert!(
        hello.is_disjoint(&closed),
        "a served channel was closed: {hello:?} {closed:?}"
    );
    let warned = roverd
        .log_lines()
        .into_iter()
        .filter(|l| {
            l.contains(&format!(
                "peer {} opened more than 4 data channels",
                peer.id
            ))
        })
        .count();
    assert_eq!(warned, 1, "one warning naming the peer:\n{}", roverd.log());

    // Four served channels flood at once: one bucket of PER_S for all of them.
    let served: Vec<_> = hello.iter().map(|&i| Arc::clone(&extra[i - 1])).collect();
    let start = Instant::now();
    for t in 0..25 {
        peer.send(&format!(r#"{{"type":"ping","t":{t}}}"#)).await;
        for dc in &served {
            dc.send_text(&format!(r#"{{"type":"ping","t":{t}}}"#))
                .await
                .expect("send on a served channel");
        }
    }
    // Count the answers until none has come for a second.
    let mut pongs = 0;
    let mut errors = 0;
    let mut last = Instant::now();
    loop {
        tokio::select! {
            msg = peer.messages.recv() => {
                let msg: serde_json::Value =
                    serde_json::from_str(&msg.expect("control channel open")).expect("JSON");
                match msg["type"].as_str() {
                    Some("pong") => { pongs += 1; last = Instant::now(); }
                    Some("error") => { errors += 1; last = Instant::now(); }
                    _ => {}
                }
            }
            s = seen.recv() => {
                if let Some(Seen::Message(_, msg)) = s {
                    match msg["type"].as_str() {
                        Some("pong") => { pongs += 1; last = Instant::now(); }
                        Some("error") => { errors += 1; last = Instant::now(); }
                        _ => {}
                    }
                }
            }
            // The periodic `state` keeps coming: only a second without a pong or an error
            // ends the count.
            () = tokio::time::sleep_until((last + Duration::from_secs(1)).into()) => break,
        }
        assert!(start.elapsed() < PATIENCE, "the answers never stopped");
    }
    let span = last.duration_since(start).as_secs_f64();
    // The burst, plus what refilled while roverd was reading the flood.
    let bound = PER_S as f64 * (1.0 + span) + 1.0;
    eprintln!("{pongs} pongs and {errors} errors for 100 pings on 4 channels within {span:.2} s");
    assert!(
        (pongs as f64) <= bound,
        "{pongs} pongs for 100 pings on 4 channels within {span:.2} s: more than one bucket \
         of {PER_S} a second (at most {bound:.0})"
    );
    assert!(
        pongs >= PER_S as usize - 1,
        "{pongs} pongs: the burst was not answered"
    );
    assert_eq!(
        errors, 1,
        "one error for the peer's flood, not one per channel"
    );

    // One channel of several closed: the peer stays (only its last channel's close, or its
    // connection's, ends it), longer than the second a closed peer is given.
    served[0].close().await.expect("close one channel");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = roverd.status().await;
    assert_eq!(
        status["peers"].as_array().map(Vec::len),
        Some(1),
        "closing one of its channels ended the peer: {status}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await; // the bucket refills
    peer.send(r#"{"type":"ping","t":7}"#).await;
    let pong = peer.next_matching("pong", |m| m["type"] == "pong").await;
    assert_eq!(pong["t"], 7);
    peer.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Polls `/api/status` until it lists no peer, for at most `bound`; the time it took.
async fn until_no_peer(addr: std::net::SocketAddr, bound: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let (code, body) = common::request(addr, "GET", "/api/status", &[], vec![]).await;
        assert_eq!(code, 200, "{body}");
        let status: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
        if status["peers"].as_array().is_some_and(Vec::is_empty) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < bound,
            "a closed peer was still listed {bound:?} after its client closed: {status}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_closes_gives_its_place_back_within_a_second() {
    let server = common::Server::start(common::test_config()).await;
    // The connection closed (its one channel with it), the connection closed while it has a
    // second channel (both close), and the data channel alone closed (the page reconnects
    // then: its old peer is of no use).
    for how in [
        "close()",
        "close() with two channels",
        "data channel close()",
    ] {
        let mut peer = ClientPeer::connect(&server).await;
        assert_eq!(peer.next_message().await["type"], "hello");
        let mut second = None;
        if how == "close() with two channels" {
            let dc = peer
                .pc
                .create_data_channel("second", None)
                .await
                .expect("second data channel");
            let (sink, mut seen) = mpsc::unbounded_channel();
            watch_channel(1, Arc::clone(&dc), sink);
            let hello = tokio::time::timeout(PATIENCE, seen.recv()).await;
            assert!(
                matches!(&hello, Ok(Some(Seen::Message(1, m))) if m["type"] == "hello"),
                "the second channel is served: {hello:?}"
            );
            second = Some(dc);
        }
        peer.next_video_packet().await;
        assert_eq!(
            server.status().await["peers"].as_array().map(Vec::len),
            Some(1)
        );
        let closed = Instant::now();
        if how == "data channel close()" {
            peer.dc.close().await.expect("close the data channel");
        } else {
            peer.pc.close().await.expect("close the connection");
        }
        until_no_peer(server.addr, Duration::from_secs(1)).await;
        eprintln!(
            "no peer listed {:.3} s after the client's {how}",
            closed.elapsed().as_secs_f64()
        );
        drop(second);
        peer.close().await;
    }
    server.stop().await;
}
