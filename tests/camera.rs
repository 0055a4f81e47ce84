//! The camera as configured, on a machine that may have none: "auto" falls back to the
//! test pattern and says why; a configured camera that is missing gives the "camera lost"
//! slate, the error in the status, and retries every 2 s.

mod common;

use common::{is_slate, test_config, ClientPeer, Server, VideoReceiver, PATIENCE};
use roverd::config::CameraDevice;
use roverd::testing::read_stamp;
use std::time::Duration;

/// Decodes pictures from `peer` for `window` and returns (slates, plain pictures).
async fn count_pictures(peer: &mut ClientPeer, window: Duration) -> (usize, usize) {
    let mut receiver = VideoReceiver::new();
    let (mut slates, mut plain) = (0, 0);
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(packet)) = tokio::time::timeout_at(deadline, peer.video.recv()).await {
        if let Some(p) = receiver.push(&packet) {
            assert!(
                read_stamp(&p.y, p.width, p.width, p.height).is_some(),
                "every picture, slate or not, carries the time stamp"
            );
            if is_slate(&p.y, p.width, p.height) {
                slates += 1;
            } else {
                plain += 1;
            }
        }
    }
    (slates, plain)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_without_a_camera_streams_the_pattern_and_says_why_in_the_status() {
    if roverd::testing::list_cameras()
        .iter()
        .any(|c| c.can_capture())
    {
        eprintln!("this machine has a camera: \"auto\" uses it, nothing to check here");
        return;
    }
    let mut config = test_config();
    config.camera.device = CameraDevice::Auto;
    let server = Server::start(config).await;
    let status = server.status().await;
    let video = &status["video"];
    assert_eq!(video["source"], "test", "{video}");
    assert_eq!(video["camera"]["state"], "off", "{video}");
    let note = video["camera"]["note"].as_str().unwrap_or_default();
    assert!(note.contains("\"auto\" found no camera"), "{video}");
    let mut peer = ClientPeer::connect(&server).await;
    let (slates, plain) = count_pictures(&mut peer, Duration::from_secs(1)).await;
    assert!(
        plain >= 15 && slates == 0,
        "the plain pattern: {plain} plain, {slates} slates"
    );
    peer.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_camera_gives_the_slate_at_the_full_rate_the_error_and_retries() {
    let mut config = test_config();
    config.camera.device = CameraDevice::Path("/dev/video99".into());
    let server = Server::start(config).await;
    let mut peer = ClientPeer::connect(&server).await;
    let (slates, plain) = count_pictures(&mut peer, Duration::from_secs(3)).await;
    assert!(
        slates >= 80 && plain == 0,
        "the slate at ~30 fps: {slates} slates, {plain} plain"
    );
    let status = server.status().await;
    let video = &status["video"];
    assert_eq!(video["source"], "/dev/video99", "{video}");
    let camera = &video["camera"];
    assert_eq!(camera["device"], "/dev/video99", "{camera}");
    assert_eq!(camera["state"], "lost", "{camera}");
    let error = camera["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("/dev/video99") && error.contains("does not exist"),
        "{camera}"
    );
    let retries = camera["retries"].as_u64().unwrap_or(0);
    assert!(retries >= 2, "one attempt every 2 s: {camera}");
    assert!(video["fps"].as_f64().unwrap_or(0.0) > 25.0, "{video}");
    tokio::time::timeout(PATIENCE, peer.close())
        .await
        .expect("close");
    server.stop().await;
}
