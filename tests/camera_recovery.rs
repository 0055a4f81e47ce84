//! A camera whose reads hang for ever, through the real capture thread
//! (`media::capture`) and the fallback: the slate comes within 2 s, the camera is closed
//! and opened again, and ten such cycles leave no thread or file descriptor behind.
//!
//! Its own test binary because it counts the process's threads and descriptors.

use roverd::testing::camera::{
    CameraSource, CaptureFeed, Feed, Mode, Opener, RawCamera, SharedCameraStatus, Timing,
    VideoSource,
};
use roverd::testing::{I420Frame, PixelFormat};
use std::fs::File;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long one read may wait in this test (the product waits 2 s).
const READ_TIMEOUT: Duration = Duration::from_millis(150);

/// A YUYV camera that sends a few pictures and then hangs: nothing ever comes again, and
/// a read returns only when its own timeout is up. It holds a file descriptor, as a real
/// camera does, so a camera left open shows in /proc/self/fd.
struct HangsAfter {
    left: u32,
    raw: Vec<u8>,
    /// When this camera hung, for the test to time the slate from.
    hung_at: Arc<Mutex<Option<Instant>>>,
    _device: File,
}

impl RawCamera for HangsAfter {
    fn mode(&self) -> Mode {
        Mode {
            format: PixelFormat::Yuyv,
            width: 160,
            height: 120,
            fps: 50,
        }
    }

    fn read(&mut self, timeout: Duration) -> Result<&[u8], String> {
        if self.left > 0 {
            self.left -= 1;
            std::thread::sleep(Duration::from_millis(20));
            return Ok(&self.raw);
        }
        self.hung_at
            .lock()
            .expect("hung_at")
            .get_or_insert_with(Instant::now);
        std::thread::sleep(timeout);
        Err(format!("test camera: no picture for {timeout:?}"))
    }
}

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

fn threads() -> usize {
    count("/proc/self/task")
}

fn fds() -> usize {
    count("/proc/self/fd")
}

#[test]
fn a_camera_whose_reads_hang_is_closed_and_reopened_without_leaks() {
    let opens = Arc::new(AtomicU32::new(0));
    let opened = Arc::clone(&opens);
    let hung_at = Arc::new(Mutex::new(None));
    let camera_hung_at = Arc::clone(&hung_at);
    let open: Opener = Box::new(move || {
        opened.fetch_add(1, Ordering::SeqCst);
        let hung_at = Arc::clone(&camera_hung_at);
        CaptureFeed::start(
            "/dev/videoT",
            "capture-test".into(),
            move || {
                Ok(HangsAfter {
                    left: 3,
                    raw: [16u8, 128].repeat(160 * 120),
                    hung_at,
                    _device: File::open("/dev/null").map_err(|e| e.to_string())?,
                })
            },
            (160, 120),
            READ_TIMEOUT,
        )
        .map(|feed| Box::new(feed) as Box<dyn Feed>)
        .map_err(|e| e.to_string())
    });
    let timing = Timing {
        interval: Duration::from_millis(20),
        retry_every: Duration::from_millis(100),
        stall_limit: Duration::from_millis(300),
        start_limit: Duration::from_millis(500),
    };
    let status = SharedCameraStatus::default();
    let state = || status.lock().expect("status").state;
    let (threads_before, fds_before) = (threads(), fds());
    let mut source = CameraSource::new("/dev/videoT".into(), open, timing, Arc::clone(&status));
    let mut frame = I420Frame::new(160, 120);
    let (mut most_threads, mut most_fds) = (0, 0);
    let mut slates_after = Vec::new();
    let mut was_lost = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    // Ten whole cycles: streaming, hung, slate, reopened.
    while opens.load(Ordering::SeqCst) <= 10 {
        assert!(
            Instant::now() < deadline,
            "ten cycles did not happen in 60 s"
        );
        source
            .capture(&mut frame)
            .expect("the fallback never fails");
        let lost = state() == "lost";
        if lost && !was_lost {
            let hung = hung_at.lock().expect("hung_at").take();
            slates_after.push(hung.map_or(Duration::MAX, |t| t.elapsed()));
        }
        was_lost = lost;
        most_threads = most_threads.max(threads());
        most_fds = most_fds.max(fds());
    }
    println!(
        "slate after the camera hung: {slates_after:?}; threads {threads_before} → at most \
         {most_threads}, fds {fds_before} → at most {most_fds}"
    );
    assert!(
        slates_after.len() >= 9,
        "the slate came each cycle: {slates_after:?}"
    );
    assert!(
        slates_after.iter().all(|d| *d < Duration::from_secs(2)),
        "the slate within 2 s of the camera hanging: {slates_after:?}"
    );
    // One capture thread (and its camera) at a time, plus one still ending its last read.
    assert!(
        most_threads <= threads_before + 2,
        "threads grew over the cycles: {threads_before} → {most_threads}"
    );
    assert!(
        most_fds <= fds_before + 2,
        "file descriptors grew over the cycles: {fds_before} → {most_fds}"
    );
    // And once the source is gone, everything it started is gone too.
    drop(source);
    let deadline = Instant::now() + Duration::from_secs(2);
    while threads() > threads_before || fds() > fds_before {
        assert!(
            Instant::now() < deadline,
            "left behind: threads {threads_before} → {}, fds {fds_before} → {}",
            threads(),
            fds()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
