//! End-to-end: roverd on 127.0.0.1:0 and real webrtc-rs client peers, decoding what they
//! receive. These are the tests that say "a browser sees and hears the robot".

mod common;

use common::*;
use roverd::testing::read_stamp;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answer_offers_constrained_baseline_h264_and_opus_with_candidates() {
    let server = Server::start(test_config()).await;
    let peer = ClientPeer::connect(&server).await;
    let sdp = &peer.answer;
    assert!(sdp.contains("H264/90000"), "no H.264 in the answer:\n{sdp}");
    assert!(sdp.contains("packetization-mode=1"), "{sdp}");
    assert!(sdp.contains("profile-level-id=42e01f"), "{sdp}");
    assert!(
        sdp.to_lowercase().contains("opus/48000/2"),
        "no Opus in the answer:\n{sdp}"
    );
    assert!(
        sdp.contains("a=candidate:"),
        "the answer must carry its ICE candidates:\n{sdp}"
    );
    assert!(
        sdp.contains("a=sendonly") || sdp.contains("a=sendrecv"),
        "{sdp}"
    );
    assert!(peer.id.starts_with('p'), "peer id {:?}", peer.id);
    peer.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_decodes_to_moving_640x480_frames_stamped_with_the_capture_time() {
    let server = Server::start(test_config()).await;
    let mut peer = ClientPeer::connect(&server).await;
    let mut rx = VideoReceiver::new();
    let mut pictures = Vec::new();
    while pictures.len() < 10 {
        let packet = peer.next_video_packet().await;
        if let Some(picture) = rx.push(&packet) {
            let now = now_ms();
            assert_eq!((picture.width, picture.height), (640, 480));
            let stamp = read_stamp(&picture.y, picture.width, picture.width, picture.height)
                .expect("the decoded picture carries a readable bar code");
            let age = stamp_distance_ms(stamp, now as u32);
            assert!(
                age < 1000,
                "bar code {stamp} is {age} ms away from now {now}"
            );
            pictures.push(picture);
        }
    }
    // The pattern moves: the picture below the bar code changes between frames.
    let below = |p: &Picture| p.y[16 * p.width..].to_vec();
    assert_ne!(
        below(&pictures[0]),
        below(&pictures[9]),
        "the test pattern does not move"
    );
    // RTP timestamps follow the capture time at 90 kHz: the span between two pictures in
    // ticks matches the span between the capture times in their bar codes.
    let stamp = |p: &Picture| read_stamp(&p.y, p.width, p.width, p.height).expect("bar code");
    let captured_ms = stamp(&pictures[9]).wrapping_sub(stamp(&pictures[0]));
    let rtp_ms = pictures[9]
        .rtp_timestamp
        .wrapping_sub(pictures[0].rtp_timestamp)
        / 90;
    assert!(captured_ms > 0, "the capture times do not advance");
    assert!(
        rtp_ms.abs_diff(captured_ms) <= 2,
        "RTP says {rtp_ms} ms between the pictures, their bar codes {captured_ms} ms"
    );
    peer.close().await;
    server.stop().await;
}

/// Frequency by zero crossings, level as RMS, of decoded mono samples.
fn tone_of(samples: &[i16]) -> (f64, f64) {
    let crossings = samples
        .windows(2)
        .filter(|w| (w[0] < 0) != (w[1] < 0))
        .count();
    let seconds = samples.len() as f64 / 48_000.0;
    let rms =
        (samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / samples.len() as f64).sqrt();
    (crossings as f64 / 2.0 / seconds, rms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_decodes_to_the_440_hz_test_tone() {
    let server = Server::start(test_config()).await;
    let mut peer = ClientPeer::connect(&server).await;
    let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).expect("opus decoder");
    let mut samples = Vec::new();
    let mut buf = vec![0i16; 5760];
    // Half a second of audio, after skipping the codec's first frames (its ramp-up).
    for i in 0..40 {
        let packet = peer.next_audio_packet().await;
        let n = decoder
            .decode(&packet.payload, &mut buf, false)
            .expect("Opus decodes");
        assert_eq!(n, 960, "20 ms frames at 48 kHz");
        if i >= 15 {
            samples.extend_from_slice(&buf[..n]);
        }
    }
    let (hz, rms) = tone_of(&samples);
    assert!(
        (hz - 440.0).abs() < 440.0 * 0.02,
        "tone at {hz:.1} Hz, expected 440"
    );
    // Amplitude 0.25 of full scale: RMS 0.25 * 32767 / sqrt(2) ≈ 5793.
    assert!((4500.0..7000.0).contains(&rms), "tone level RMS {rms:.0}");
    peer.close().await;
    server.stop().await;
}

async fn frames_within(peer: &mut ClientPeer, window: Duration) -> (usize, Duration) {
    let mut rx = VideoReceiver::new();
    let start = Instant::now();
    let mut last = start;
    let mut worst_gap = Duration::ZERO;
    let mut frames = 0;
    while start.elapsed() < window {
        let packet = peer.next_video_packet().await;
        if packet.header.marker {
            let now = Instant::now();
            worst_gap = worst_gap.max(now - last);
            last = now;
            frames += 1;
        }
        let _ = rx.push(&packet);
    }
    (frames, worst_gap)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_peers_at_once_all_receive_video_and_audio() {
    let server = Server::start(test_config()).await;
    let mut peers = Vec::new();
    for _ in 0..3 {
        peers.push(ClientPeer::connect(&server).await);
    }
    assert_eq!(
        server.status().await["peers"].as_array().map(Vec::len),
        Some(3)
    );
    for peer in &mut peers {
        let mut rx = VideoReceiver::new();
        let picture = loop {
            if let Some(p) = rx.push(&peer.next_video_packet().await) {
                break p;
            }
        };
        assert_eq!((picture.width, picture.height), (640, 480));
        peer.next_audio_packet().await;
    }
    for peer in peers {
        peer.close().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_does_not_stall_the_others() {
    let server = Server::start(test_config()).await;
    // This peer reads one packet per track and then never polls its tracks again.
    let stalled = ClientPeer::connect_stalling(&server).await;
    let mut reader = ClientPeer::connect(&server).await;
    let frames_encoded =
        |s: serde_json::Value| s["video"]["frames_encoded"].as_u64().expect("counter");
    // Let the reader's stream settle on its first keyframe before counting.
    let mut rx = VideoReceiver::new();
    while rx.push(&reader.next_video_packet().await).is_none() {}
    let before = frames_encoded(server.status().await);
    let (frames, worst_gap) = frames_within(&mut reader, Duration::from_secs(2)).await;
    let encoded = frames_encoded(server.status().await) - before;
    // The reader gets (nearly) every frame the encoder made meanwhile, whatever the
    // machine's speed: the stalled peer takes nothing from it.
    assert!(
        frames as u64 + 3 >= encoded,
        "the reading peer got {frames} of the {encoded} frames encoded in 2 s"
    );
    let interval = Duration::from_secs(2) / encoded.max(1) as u32;
    assert!(
        // A reader held up by the stalled peer would wait seconds; a busy machine, less.
        worst_gap < interval * 4 + Duration::from_millis(500),
        "the reading peer saw a {worst_gap:?} gap (frame interval {interval:?})"
    );
    assert_eq!(
        server.status().await["peers"].as_array().map(Vec::len),
        Some(2)
    );
    stalled.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_picture_loss_indication_gets_a_keyframe_within_a_few_frames() {
    use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
    let mut config = test_config();
    // No periodic keyframes during the test: any new one answers the PLI.
    config.video.keyframe_interval_s = 60.0;
    let server = Server::start(config).await;
    let mut peer = ClientPeer::connect(&server).await;
    // The keyframe every new peer gets first.
    let mut rx = VideoReceiver::new();
    while rx.push(&peer.next_video_packet().await).is_none() {}
    let ssrc = peer.next_video_packet().await.header.ssrc;
    // Forced keyframes are at most one per 500 ms: let that time pass since the new peer's
    // one, so that this PLI is the first request after a quiet spell and goes at once.
    // (Reading on meanwhile, so that the pictures counted below are the ones after it.)
    let quiet = Instant::now();
    while quiet.elapsed() < KEYFRAME_GAP + Duration::from_millis(100) {
        peer.next_video_packet().await;
    }
    while peer.video.try_recv().is_ok() {}
    let keyframes = || async {
        server.status().await["video"]["keyframes"]
            .as_u64()
            .expect("keyframes")
    };
    let before = keyframes().await;
    let pli = PictureLossIndication {
        sender_ssrc: 1,
        media_ssrc: ssrc,
    };
    assert!(send_pli(&peer, pli).await, "could not send a PLI");
    // Count pictures until one is a keyframe (SPS present); allow a few for the round trip.
    let mut pictures = 0;
    loop {
        let packet = peer.next_video_packet().await;
        if is_keyframe_start(&packet.payload) {
            break;
        }
        if packet.header.marker {
            pictures += 1;
            assert!(pictures <= 5, "no keyframe within 5 pictures of a PLI");
        }
    }
    assert_eq!(
        keyframes().await,
        before + 1,
        "exactly one keyframe answers one PLI"
    );
    peer.close().await;
    server.stop().await;
}

/// The shortest time between two forced keyframes (`media::keyframe::MIN_GAP`).
const KEYFRAME_GAP: Duration = Duration::from_millis(500);

/// Sends `pli` from `peer`'s video receiver; false when it could not.
async fn send_pli(
    peer: &ClientPeer,
    pli: rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication,
) -> bool {
    let mut sent = false;
    for receiver in peer.pc.get_receivers().await {
        if receiver.track().kind().await == rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Video {
            sent |= receiver
                .track()
                .write_rtcp(vec![Box::new(pli.clone())])
                .await
                .is_ok();
        }
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_picture_loss_indications_is_throttled_and_a_new_viewer_starts_at_once() {
    use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
    let mut config = test_config();
    // No periodic keyframes during the test: every new one is a forced one.
    config.video.keyframe_interval_s = 60.0;
    let server = Server::start(config).await;
    let mut peer = ClientPeer::connect(&server).await;
    let mut rx = VideoReceiver::new();
    while rx.push(&peer.next_video_packet().await).is_none() {}
    let ssrc = peer.next_video_packet().await.header.ssrc;
    let keyframes = || async {
        server.status().await["video"]["keyframes"]
            .as_u64()
            .expect("keyframes")
    };
    tokio::time::sleep(KEYFRAME_GAP + Duration::from_millis(100)).await;
    let before = keyframes().await;
    // A second viewer joins while the flood goes on; it must still get its first picture
    // within about one gap of connecting, not be starved by the throttle.
    let addr = server.addr;
    let second = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut viewer = ClientPeer::connect_addr(addr).await;
        let connected = Instant::now();
        let mut rx = VideoReceiver::new();
        while rx.push(&viewer.next_video_packet().await).is_none() {}
        let waited = connected.elapsed();
        viewer.close().await;
        waited
    });
    // 30 PLIs in 1 s from one peer, as a receiver on a lossy link might send them.
    let started = Instant::now();
    let pli = PictureLossIndication {
        sender_ssrc: 1,
        media_ssrc: ssrc,
    };
    for i in 0..30u32 {
        tokio::time::sleep_until((started + Duration::from_millis(33) * i).into()).await;
        assert!(send_pli(&peer, pli.clone()).await, "could not send a PLI");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let made = keyframes().await - before;
    let span = started.elapsed();
    // One at once, then at most one per gap: 3 for a flood of 1 s (more only if this
    // machine was so slow that the flood and the status read took longer).
    let allowed = 1 + (span.as_millis() / KEYFRAME_GAP.as_millis()) as u64;
    println!("30 PLIs in {span:.2?} -> {made} keyframes (allowed {allowed})");
    assert!(
        made <= allowed,
        "30 PLIs in {span:?} made {made} keyframes; at most {allowed} may be forced"
    );
    assert!(made >= 1, "the flood was not answered at all");
    let waited = tokio::time::timeout(PATIENCE, second)
        .await
        .expect("the second viewer connects")
        .expect("the second viewer's task");
    assert!(
        waited < KEYFRAME_GAP * 3,
        "the second viewer waited {waited:?} for its first picture"
    );
    peer.close().await;
    server.stop().await;
}

/// An RTP payload that starts a keyframe: a STAP-A holding an SPS, or an SPS on its own.
fn is_keyframe_start(payload: &[u8]) -> bool {
    match payload.first().map(|b| b & 0x1f) {
        Some(7) => true,
        Some(24) => payload.get(3).is_some_and(|b| b & 0x1f == 7),
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_offer_alias_answers_in_the_same_shape() {
    let server = Server::start(test_config()).await;
    for path in ["/offer", "/connect", "/webrtc/offer"] {
        let peer = ClientPeer::connect_via(&server, path).await;
        assert!(peer.answer.contains("H264/90000"), "{path}");
        peer.close().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_encoder_never_waits_for_a_subscriber_that_does_not_read() {
    use roverd::testing::Next;
    let media = roverd::testing::Media::start(&test_config()).expect("pipeline starts");
    let mut stalled = media.subscribe_video();
    let mut reader = media.subscribe_video();
    for i in 0..40 {
        match reader.next().await {
            Next::Item(_) => {}
            other => panic!("the reading subscriber lost frames at {i}: {other:?}"),
        }
    }
    // 40 frames went out while the stalled subscriber held a backlog of 8: the encoder
    // went on without it, and it alone lost the oldest 32.
    match stalled.try_next() {
        Some(Next::Dropped(n)) => assert!(n >= 32, "dropped {n}"),
        other => panic!("the stalled subscriber should have lost frames, got {other:?}"),
    }
    media.stop(std::time::Duration::from_secs(5));
}
