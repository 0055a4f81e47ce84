//! The capture thread a camera runs on, whatever the device: it opens the camera, reads
//! each picture with a deadline, converts it straight into an I420 picture of the
//! encoder's size ([`Converter`]) and hands it over a latest-wins slot ([`CaptureFeed`],
//! a [`Feed`] for `media::fallback`).
//!
//! Every read waits at most [`RawCamera::read`]'s timeout, so a camera that hangs ends its
//! thread instead of holding it for ever: the thread closes the device (its file
//! descriptor and its buffers go with it) and reports the failure, and the fallback opens
//! a new one. Dropping the feed stops the thread within one read timeout.
//!
//! The slot holds one picture. A new picture replaces one the encoder has not taken yet
//! (the stale one's buffer is reused), so a lagging encoder always gets the newest
//! picture. Buffers go back and forth, so nothing is allocated per picture.
//!
//! Not here: the device itself (`media::v4l_camera`, or a test double), retrying and the
//! slate (`media::fallback`), pixel formats (`media::convert`).

use crate::media::convert::{Converter, Mode, RawFrame};
use crate::media::fallback::Feed;
use crate::media::frame::I420Frame;
use crate::sync::lock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Consecutive pictures that fail to convert (a corrupt MJPEG now and then is normal on
/// USB) before the camera counts as failed.
const BAD_PICTURE_LIMIT: u32 = 30;

/// A camera as the capture thread sees it: opened, its mode agreed.
pub trait RawCamera {
    /// The mode the camera agreed to: the format and size of what [`RawCamera::read`]
    /// returns.
    fn mode(&self) -> Mode;
    /// Waits at most `timeout` for the next picture and returns the driver's bytes. An
    /// error (the camera failed, or sent nothing within `timeout`) ends the capture; the
    /// camera is then dropped, which must close it.
    fn read(&mut self, timeout: Duration) -> Result<&[u8], String>;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaptureError {
    #[error("camera {device} sent {count} pictures in a row that could not be converted, the last: {message}")]
    Convert {
        device: String,
        count: u32,
        message: String,
    },
    #[error("could not start the capture thread for camera {device}: {message}")]
    Thread { device: String, message: String },
}

/// What the capture thread and the encoder side share.
#[derive(Default)]
struct Slot {
    /// The newest picture the encoder has not taken yet.
    picture: Option<(I420Frame, Instant)>,
    /// Buffers to convert into.
    spare: Vec<I420Frame>,
    failed: Option<String>,
    /// The thread has ended (after `failed`, or when told to stop, or by a panic).
    ended: bool,
}

#[derive(Default)]
struct Handoff {
    slot: Mutex<Slot>,
    ready: Condvar,
}

impl Handoff {
    fn slot(&self) -> MutexGuard<'_, Slot> {
        lock(&self.slot)
    }

    /// Latest wins: a picture still waiting is replaced, and its buffer reused.
    fn put(&self, picture: I420Frame, at: Instant) {
        let mut slot = self.slot();
        if let Some((stale, _)) = slot.picture.replace((picture, at)) {
            slot.spare.push(stale);
        }
        drop(slot);
        self.ready.notify_one();
    }

    fn give_back(&self, picture: I420Frame) {
        self.slot().spare.push(picture);
    }

    fn spare(&self) -> Option<I420Frame> {
        self.slot().spare.pop()
    }

    fn fail(&self, message: String) {
        self.slot().failed = Some(message);
        self.ready.notify_one();
    }
}

/// Marks the thread ended however it ends, panics included, so the encoder side never
/// waits on a thread that is gone.
struct EndGuard(Arc<Handoff>);

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.0.slot().ended = true;
        self.0.ready.notify_one();
    }
}

/// A camera being captured on its own thread; see the module documentation.
pub struct CaptureFeed {
    handoff: Arc<Handoff>,
    stop: Arc<AtomicBool>,
    mode: Arc<Mutex<Option<Mode>>>,
    dead: Option<String>,
}

impl CaptureFeed {
    /// Starts the capture thread, which opens the camera with `open` (so this returns at
    /// once; a camera that cannot be opened reports that as its first "picture") and
    /// delivers pictures of `width`×`height`, waiting at most `read_timeout` for each.
    pub fn start<C, O>(
        device: &str,
        thread_name: String,
        open: O,
        (width, height): (u32, u32),
        read_timeout: Duration,
    ) -> Result<Self, CaptureError>
    where
        C: RawCamera,
        O: FnOnce() -> Result<C, String> + Send + 'static,
    {
        let handoff = Arc::new(Handoff::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mode = Arc::new(Mutex::new(None));
        let (thread_handoff, thread_stop, thread_mode) =
            (Arc::clone(&handoff), Arc::clone(&stop), Arc::clone(&mode));
        let thread_device = device.to_owned();
        std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || {
                let _end = EndGuard(Arc::clone(&thread_handoff));
                let result = open().and_then(|mut camera| {
                    *lock(&thread_mode) = Some(camera.mode());
                    capture_loop(
                        &thread_device,
                        &mut camera,
                        (width as usize, height as usize),
                        read_timeout,
                        &thread_handoff,
                        &thread_stop,
                    )
                });
                // The camera is closed here, before the failure is told.
                if let Err(e) = result {
                    thread_handoff.fail(e);
                }
            })
            .map_err(|e| CaptureError::Thread {
                device: device.to_owned(),
                message: e.to_string(),
            })?;
        Ok(Self {
            handoff,
            stop,
            mode,
            dead: None,
        })
    }
}

impl Drop for CaptureFeed {
    fn drop(&mut self) {
        // The thread stops after its current read, which waits at most its timeout.
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Feed for CaptureFeed {
    fn next_picture(
        &mut self,
        frame: &mut I420Frame,
        timeout: Duration,
    ) -> Result<Option<Instant>, String> {
        if let Some(e) = &self.dead {
            return Err(e.clone());
        }
        let deadline = Instant::now() + timeout;
        let mut slot = self.handoff.slot();
        loop {
            if let Some((mut picture, at)) = slot.picture.take() {
                if (picture.width, picture.height) == (frame.width, frame.height) {
                    std::mem::swap(frame, &mut picture);
                }
                slot.spare.push(picture);
                return Ok(Some(at));
            }
            if let Some(e) = slot.failed.take() {
                self.dead = Some(e.clone());
                return Err(e);
            }
            if slot.ended {
                let e = "the camera capture thread ended".to_owned();
                self.dead = Some(e.clone());
                return Err(e);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            slot = self
                .handoff
                .ready
                .wait_timeout(slot, left)
                .map_or_else(|e| e.into_inner().0, |(s, _)| s);
        }
    }

    fn mode(&self) -> Option<Mode> {
        *lock(&self.mode)
    }
}

/// Reads and converts pictures until told to stop or the camera fails.
fn capture_loop(
    device: &str,
    camera: &mut impl RawCamera,
    (width, height): (usize, usize),
    read_timeout: Duration,
    handoff: &Handoff,
    stop: &AtomicBool,
) -> Result<(), String> {
    let mode = camera.mode();
    let mut converter = Converter::new();
    let mut bad = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let raw = camera.read(read_timeout)?;
        let at = Instant::now();
        let mut picture = handoff
            .spare()
            .unwrap_or_else(|| I420Frame::new(width, height));
        let frame = RawFrame {
            format: mode.format,
            width: mode.width as usize,
            height: mode.height as usize,
            data: raw,
        };
        if let Err(e) = converter.convert(&frame, &mut picture) {
            bad += 1;
            handoff.give_back(picture);
            if bad >= BAD_PICTURE_LIMIT {
                return Err(CaptureError::Convert {
                    device: device.to_owned(),
                    count: bad,
                    message: e.to_string(),
                }
                .to_string());
            }
            log::debug!("camera {device}: skipped a picture: {e}");
            continue;
        }
        bad = 0;
        handoff.put(picture, at);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::convert::PixelFormat;
    use std::sync::atomic::AtomicU32;

    /// A YUYV camera that sends `pictures` pictures as fast as it is read, the n-th with
    /// every luma byte 10·n, then nothing (each read waits out its timeout).
    struct Numbered {
        sent: u32,
        pictures: u32,
        reads: Arc<AtomicU32>,
        raw: Vec<u8>,
    }

    impl RawCamera for Numbered {
        fn mode(&self) -> Mode {
            Mode {
                format: PixelFormat::Yuyv,
                width: 16,
                height: 8,
                fps: 30,
            }
        }
        fn read(&mut self, timeout: Duration) -> Result<&[u8], String> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            if self.sent == self.pictures {
                std::thread::sleep(timeout);
                return Err("test camera: nothing more".into());
            }
            self.sent += 1;
            let luma = (10 * self.sent) as u8;
            for pair in self.raw.chunks_exact_mut(2) {
                pair[0] = luma;
                pair[1] = 128;
            }
            Ok(&self.raw)
        }
    }

    fn numbered(pictures: u32, timeout: Duration) -> (CaptureFeed, Arc<AtomicU32>) {
        let reads = Arc::new(AtomicU32::new(0));
        let thread_reads = Arc::clone(&reads);
        let feed = CaptureFeed::start(
            "/dev/videoT",
            "capture-test".into(),
            move || {
                Ok(Numbered {
                    sent: 0,
                    pictures,
                    reads: thread_reads,
                    raw: vec![0; 16 * 8 * 2],
                })
            },
            (16, 8),
            timeout,
        )
        .expect("thread starts");
        (feed, reads)
    }

    fn wait_for(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn a_lagging_encoder_gets_the_newest_picture() {
        let (mut feed, reads) = numbered(5, Duration::from_secs(1));
        // The sixth read starts only once the fifth picture is in the slot.
        wait_for("all five pictures", || reads.load(Ordering::SeqCst) >= 6);
        let mut frame = I420Frame::new(16, 8);
        let at = feed.next_picture(&mut frame, Duration::from_secs(1));
        assert!(matches!(at, Ok(Some(_))), "{at:?}");
        assert_eq!(
            frame.y()[0],
            50,
            "the fifth (newest) picture, not a stale one"
        );
        // The stale ones were replaced, not queued: nothing else is waiting.
        let next = feed.next_picture(&mut frame, Duration::from_millis(20));
        assert!(matches!(next, Ok(None)), "{next:?}");
    }

    #[test]
    fn a_camera_that_stops_delivering_ends_its_thread_and_says_so() {
        let timeout = Duration::from_millis(100);
        let (mut feed, _) = numbered(1, timeout);
        let mut frame = I420Frame::new(16, 8);
        assert!(matches!(
            feed.next_picture(&mut frame, Duration::from_secs(2)),
            Ok(Some(_))
        ));
        let start = Instant::now();
        let mut result = Ok(None);
        while matches!(result, Ok(None)) && start.elapsed() < Duration::from_secs(2) {
            result = feed.next_picture(&mut frame, Duration::from_millis(50));
        }
        assert_eq!(result, Err("test camera: nothing more".to_owned()));
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
        // Dead for good: the fallback drops it and opens a new one.
        assert!(feed.next_picture(&mut frame, Duration::ZERO).is_err());
    }

    #[test]
    fn a_camera_that_cannot_open_says_why_as_its_first_picture() {
        let mut feed = CaptureFeed::start(
            "/dev/videoT",
            "capture-test".into(),
            || Err::<Numbered, _>("camera /dev/videoT does not exist".to_owned()),
            (16, 8),
            Duration::from_secs(1),
        )
        .expect("thread starts");
        let mut frame = I420Frame::new(16, 8);
        assert_eq!(
            feed.next_picture(&mut frame, Duration::from_secs(5)),
            Err("camera /dev/videoT does not exist".to_owned())
        );
        assert_eq!(feed.mode(), None);
    }
}
