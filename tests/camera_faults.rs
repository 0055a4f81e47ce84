//! A camera that fails mid-stream, through a real peer: the slate follows at once at the
//! configured rate, roverd retries every 2 s, and the picture comes back, with no gap in
//! the RTP timestamps longer than two frame intervals.
//!
//! Its own test binary because it sets the `ROVERD_TEST_FAIL_VIDEO` test hook, which is
//! process-wide.

mod common;

use common::{is_slate, test_config, ClientPeer, Server, VideoReceiver};
use roverd::config::CameraDevice;
use std::time::Duration;

/// 90 kHz ticks in one frame interval at the default 30 fps.
const INTERVAL_TICKS: u32 = 3000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_that_fails_gives_the_slate_then_recovers_with_no_gap() {
    // 75 pictures (2.5 s), then lost; the reopen 2 s later fails, the one after works.
    std::env::set_var("ROVERD_TEST_FAIL_VIDEO", "75:1");
    let mut config = test_config();
    config.camera.device = CameraDevice::Path("/dev/video99".into());
    let server = Server::start(config).await;
    let mut peer = ClientPeer::connect(&server).await;

    let mut receiver = VideoReceiver::new();
    // (is the picture a slate, its RTP timestamp), in order.
    let mut pictures: Vec<(bool, u32)> = Vec::new();
    let mut timestamps: Vec<u32> = Vec::new();
    let mut lost_status = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Ok(Some(packet)) = tokio::time::timeout_at(deadline, peer.video.recv()).await {
        if timestamps.last() != Some(&packet.header.timestamp) {
            timestamps.push(packet.header.timestamp);
        }
        if let Some(p) = receiver.push(&packet) {
            let slate = is_slate(&p.y, p.width, p.height);
            if slate && lost_status.is_none() {
                lost_status = Some(server.status().await);
            }
            pictures.push((slate, p.rtp_timestamp));
        }
    }
    let kinds: Vec<bool> = pictures.iter().map(|p| p.0).collect();
    let first_slate = kinds.iter().position(|s| *s).expect("the slate appeared");
    let last_slate = kinds.iter().rposition(|s| *s).expect("the slate appeared");
    assert!(first_slate > 10, "the picture first: {kinds:?}");
    assert!(
        kinds[first_slate..=last_slate].iter().all(|s| *s),
        "one run of slates: {kinds:?}"
    );
    assert!(
        last_slate + 30 < kinds.len(),
        "the picture came back: {kinds:?}"
    );
    let slate_s =
        f64::from(pictures[last_slate].1.wrapping_sub(pictures[first_slate].1)) / 90_000.0;
    assert!(
        (3.0..6.0).contains(&slate_s),
        "lost for two retry periods (4 s): {slate_s:.2} s"
    );

    let worst = timestamps
        .windows(2)
        .map(|w| w[1].wrapping_sub(w[0]))
        .max()
        .unwrap_or(0);
    eprintln!(
        "{} pictures, slates {first_slate}..={last_slate} ({slate_s:.2} s), worst RTP gap {worst} ticks",
        pictures.len()
    );
    assert!(
        worst <= 2 * INTERVAL_TICKS,
        "no gap over two frame intervals: {worst} ticks ({} ms)",
        worst / 90
    );

    let lost = lost_status.expect("status while lost");
    let camera = &lost["video"]["camera"];
    assert_eq!(camera["state"], "lost", "{camera}");
    assert!(
        camera["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("unplugged"),
        "{camera}"
    );
    let back = server.status().await;
    assert_eq!(back["video"]["camera"]["state"], "streaming", "{back}");
    assert!(
        back["video"]["camera"]["capture_fps"]
            .as_f64()
            .unwrap_or(0.0)
            > 25.0,
        "{back}"
    );
    peer.close().await;
    server.stop().await;
}
