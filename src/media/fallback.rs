//! The camera, or the "camera lost" slate: a [`VideoSource`] that never fails and never
//! stops, over a [`Feed`] that may do both.
//!
//! [`CameraSource`] asks its feed for a picture with a deadline. A picture in time goes to
//! the encoder as it is (the camera sets the pace). A late picture is covered by repeating
//! the last one, so the stream keeps the configured rate. An error, or no picture for
//! [`Timing::stall_limit`], drops the feed: from then on the slate (the moving test pattern
//! reading CAMERA LOST) goes out at the configured rate, and a new feed is opened every
//! [`Timing::retry_every`] until one delivers a picture again.
//!
//! Not here: devices. The feed is anything behind [`Feed`] (a camera's capture thread in
//! `media::capture`, a test double in the tests), and opening one is a closure. The clock
//! is read here, to pace the slate and to wait on the feed, and nowhere else.

use crate::media::convert::Mode;
use crate::media::frame::I420Frame;
use crate::media::pattern;
use crate::media::video::{unix_ms, Captured, VideoError, VideoSource};
use crate::sync::lock;
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where pictures come from: a camera, already converted to the encoder's size.
pub trait Feed: Send {
    /// Waits at most `timeout` for the next picture and writes it into `frame`.
    /// `Ok(None)`: none came in time (the feed is still alive). `Err`: the feed is dead.
    fn next_picture(
        &mut self,
        frame: &mut I420Frame,
        timeout: Duration,
    ) -> Result<Option<Instant>, String>;
    /// The format the camera agreed to, once it is known.
    fn mode(&self) -> Option<Mode>;
}

/// Opens a feed; errors are messages that name the device and what to check.
pub type Opener = Box<dyn FnMut() -> Result<Box<dyn Feed>, String> + Send>;

/// What `/api/status` says about the camera.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CameraStatus {
    /// The device asked for ("/dev/video0"), or none when streaming the test pattern.
    pub device: Option<String>,
    /// "streaming", "starting", "lost", or "off" (the test pattern is the source).
    pub state: &'static str,
    /// What the camera negotiated, e.g. "YUYV 640x480 @ 30 fps".
    pub format: Option<String>,
    /// Pictures per second the camera delivered over the last second.
    pub capture_fps: f64,
    /// Failed attempts to open the camera since it was last streaming.
    pub retries: u64,
    pub last_error: Option<String>,
    /// Why this source: e.g. that "auto" found no camera.
    pub note: Option<String>,
}

pub type SharedCameraStatus = Arc<Mutex<CameraStatus>>;

/// How long to wait for what; the defaults are the product's, tests shorten them.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// The configured frame interval: the slate's pace, and the most a late camera
    /// picture is waited for before the last one is repeated (1.5 intervals).
    pub interval: Duration,
    /// Between attempts to open a lost camera.
    pub retry_every: Duration,
    /// A camera that sends nothing this long is lost.
    pub stall_limit: Duration,
    /// A camera just opened has this long to send its first picture.
    pub start_limit: Duration,
}

impl Timing {
    pub fn new(fps: u32) -> Self {
        Self {
            interval: Duration::from_secs(1) / fps.max(1),
            retry_every: Duration::from_secs(2),
            stall_limit: Duration::from_secs(2),
            start_limit: Duration::from_secs(5),
        }
    }
}

enum State {
    /// No feed: the slate, until `retry_at`.
    Lost { retry_at: Instant },
    /// A feed; `last_picture` is `None` until its first picture.
    Open {
        feed: Box<dyn Feed>,
        opened_at: Instant,
        last_picture: Option<Instant>,
    },
}

/// The camera behind the slate; see the module documentation.
pub struct CameraSource {
    name: String,
    open: Opener,
    state: State,
    timing: Timing,
    status: SharedCameraStatus,
    /// When the last picture (camera, repeat or slate) went to the encoder.
    last_out: Option<Instant>,
    /// Slate pictures drawn, for the pattern's motion.
    slates: u64,
    /// Camera pictures since `window_start`, for `capture_fps`.
    window: (Instant, u32),
}

impl CameraSource {
    pub fn new(name: String, open: Opener, timing: Timing, status: SharedCameraStatus) -> Self {
        let now = Instant::now();
        {
            let mut s = lock(&status);
            s.device = Some(name.clone());
            s.state = "starting";
        }
        Self {
            name,
            open,
            state: State::Lost { retry_at: now },
            timing,
            status,
            last_out: None,
            slates: 0,
            window: (now, 0),
        }
    }

    fn lose(&mut self, error: String, now: Instant) {
        log::warn!(
            "{error}; streaming the \"camera lost\" slate and retrying every {:?}",
            self.timing.retry_every
        );
        let mut s = lock(&self.status);
        s.state = "lost";
        s.capture_fps = 0.0;
        s.last_error = Some(error);
        drop(s);
        self.state = State::Lost {
            retry_at: now + self.timing.retry_every,
        };
    }

    /// Draws the slate once the interval since the last picture is up.
    fn slate(&mut self, frame: &mut I420Frame) -> Captured {
        if let Some(last) = self.last_out {
            let due = last + self.timing.interval;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let captured = Captured {
            at: Instant::now(),
            unix_ms: unix_ms(),
        };
        pattern::render_slate(frame, self.slates, captured.unix_ms);
        self.slates += 1;
        captured
    }

    fn count_picture(&mut self, at: Instant) {
        let (start, n) = &mut self.window;
        *n += 1;
        let span = at.saturating_duration_since(*start).as_secs_f64();
        if span >= 1.0 {
            lock(&self.status).capture_fps = (f64::from(*n) / span * 10.0).round() / 10.0;
            self.window = (at, 0);
        }
    }

    fn out(&mut self, captured: Captured) -> Result<Captured, VideoError> {
        self.last_out = Some(captured.at);
        Ok(captured)
    }
}

impl VideoSource for CameraSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn capture(&mut self, frame: &mut I420Frame) -> Result<Captured, VideoError> {
        let now = Instant::now();
        if let State::Lost { retry_at } = self.state {
            if now < retry_at {
                let c = self.slate(frame);
                return self.out(c);
            }
            match (self.open)() {
                Ok(feed) => {
                    log::info!(
                        "camera {}: opened, waiting for its first picture",
                        self.name
                    );
                    lock(&self.status).state = "starting";
                    self.state = State::Open {
                        feed,
                        opened_at: now,
                        last_picture: None,
                    };
                }
                Err(e) => {
                    lock(&self.status).retries += 1;
                    self.lose(e, now);
                    let c = self.slate(frame);
                    return self.out(c);
                }
            }
        }
        let State::Open {
            feed,
            opened_at,
            last_picture,
        } = &mut self.state
        else {
            let c = self.slate(frame);
            return self.out(c);
        };
        // Wait for the camera until the next picture is due: a little late is still in
        // time once it streams (1.5 of its intervals, or of the configured one if that is
        // longer); while it starts, the slate keeps the configured pace.
        let camera_interval = feed
            .mode()
            .filter(|m| m.fps > 0)
            .map_or(Duration::ZERO, |m| Duration::from_secs(1) / m.fps);
        let wait = match last_picture {
            Some(_) => self.timing.interval.max(camera_interval) * 3 / 2,
            None => self.timing.interval,
        };
        let deadline = self.last_out.map_or(now + wait, |t| t + wait);
        let timeout = deadline.saturating_duration_since(now);
        match feed.next_picture(frame, timeout) {
            Ok(Some(at)) => {
                if last_picture.is_none() {
                    let mode = feed.mode().map(|m| m.to_string());
                    log::info!(
                        "camera {}: streaming {}",
                        self.name,
                        mode.as_deref().unwrap_or("")
                    );
                    let mut s = lock(&self.status);
                    s.state = "streaming";
                    s.format = mode;
                    s.retries = 0;
                }
                *last_picture = Some(at);
                self.count_picture(at);
                self.out(Captured {
                    at,
                    unix_ms: unix_ms(),
                })
            }
            Ok(None) => {
                let now = Instant::now();
                match *last_picture {
                    // Late: repeat the last picture (still in `frame`) to keep the rate.
                    Some(t) if now.duration_since(t) < self.timing.stall_limit => {
                        self.out(Captured {
                            at: now,
                            unix_ms: unix_ms(),
                        })
                    }
                    Some(t) => {
                        let error = format!(
                            "camera {} sent no picture for {:.1} s: check its cable and power",
                            self.name,
                            now.duration_since(t).as_secs_f64()
                        );
                        self.lose(error, now);
                        let c = self.slate(frame);
                        self.out(c)
                    }
                    None if now.duration_since(*opened_at) >= self.timing.start_limit => {
                        let error = format!(
                            "camera {} opened but sent no picture within {:?}",
                            self.name, self.timing.start_limit
                        );
                        self.lose(error, now);
                        let c = self.slate(frame);
                        self.out(c)
                    }
                    None => {
                        let c = self.slate(frame);
                        self.out(c)
                    }
                }
            }
            Err(e) => {
                self.lose(e, Instant::now());
                let c = self.slate(frame);
                self.out(c)
            }
        }
    }
}

/// Test hook (the `test-support` feature): a feed of the test pattern that breaks after
/// `after` pictures, and an opener that then fails `fails` times before it gives a working
/// feed again. `Media` uses it for `ROVERD_TEST_FAIL_VIDEO`; the tests here use it directly.
#[cfg(any(test, feature = "test-support"))]
pub fn faulty_opener(fps: u32, after: u64, fails: u64) -> Opener {
    struct Flaky {
        source: crate::media::video::TestPattern,
        left: Option<u64>,
    }
    impl Feed for Flaky {
        fn next_picture(
            &mut self,
            frame: &mut I420Frame,
            _timeout: Duration,
        ) -> Result<Option<Instant>, String> {
            match &mut self.left {
                Some(0) => Err("test camera: unplugged (ROVERD_TEST_FAIL_VIDEO)".into()),
                left => {
                    if let Some(n) = left {
                        *n -= 1;
                    }
                    self.source
                        .capture(frame)
                        .map(|c| Some(c.at))
                        .map_err(|e| e.to_string())
                }
            }
        }
        fn mode(&self) -> Option<Mode> {
            None
        }
    }
    let mut opened = 0u64;
    let mut failed = 0u64;
    Box::new(move || {
        if opened > 0 && failed < fails {
            failed += 1;
            return Err(format!(
                "test camera: still unplugged (attempt {failed} of {fails})"
            ));
        }
        opened += 1;
        Ok(Box::new(Flaky {
            source: crate::media::video::TestPattern::new(fps),
            // Only the first feed breaks; the one after the retries works for good.
            left: (opened == 1).then_some(after),
        }) as Box<dyn Feed>)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::stamp::read_stamp;

    /// Short enough for quick tests, long enough that a busy machine's scheduling (tens
    /// of ms) stays well below what a broken rule gives: a stall of `stall_limit` or more.
    fn fast() -> Timing {
        Timing {
            interval: Duration::from_millis(20),
            retry_every: Duration::from_millis(100),
            stall_limit: Duration::from_millis(120),
            start_limit: Duration::from_millis(160),
        }
    }

    /// The longest gap between two outputs that still keeps the rate: 3 intervals, half
    /// the stall limit.
    const KEPT_RATE: Duration = Duration::from_millis(60);

    /// The slate's red band: a chroma row near the band's top edge (above the text) that
    /// is red across the whole width, which no bar layout of the plain pattern gives.
    fn is_slate(f: &I420Frame) -> bool {
        let band_y = (f.height / 2 - ((f.height / 4) & !1) / 2) & !1;
        let cw = f.width / 2;
        let row = (band_y + 2) / 2;
        f.v()[row * cw..][..cw].iter().all(|&v| v > 200)
    }

    fn source(open: Opener) -> (CameraSource, SharedCameraStatus) {
        let status = SharedCameraStatus::default();
        let s = CameraSource::new("/dev/videoT".into(), open, fast(), Arc::clone(&status));
        (s, status)
    }

    #[test]
    fn a_camera_that_fails_gives_the_slate_at_the_rate_then_comes_back() {
        let (mut src, status) = source(faulty_opener(50, 5, 2));
        let mut frame = I420Frame::new(320, 240);
        let mut kinds = Vec::new();
        let mut times = Vec::new();
        for _ in 0..40 {
            let c = src.capture(&mut frame).unwrap();
            times.push(c.at);
            kinds.push(is_slate(&frame));
            assert!(
                read_stamp(frame.y(), 320, 320, 240).is_some(),
                "every picture is stamped"
            );
            if kinds.len() == 8 {
                let s = lock(&status).clone();
                assert_eq!(s.state, "lost");
                assert!(s.last_error.unwrap().contains("unplugged"));
            }
        }
        // 5 camera pictures, then slates, then the camera again.
        assert!(kinds[..5].iter().all(|s| !s), "{kinds:?}");
        assert!(kinds[5], "the slate right after the failure: {kinds:?}");
        let back = kinds.iter().rposition(|s| *s).unwrap() + 1;
        assert!(back < 40 && kinds[back..].iter().all(|s| !s), "{kinds:?}");
        let gaps = times.windows(2).map(|w| w[1] - w[0]);
        let worst = gaps.max().unwrap();
        assert!(worst <= KEPT_RATE, "no gap over 3 intervals: {worst:?}");
        let s = lock(&status).clone();
        assert_eq!(s.state, "streaming");
        assert_eq!(s.retries, 0, "reset once streaming again");
    }

    #[test]
    fn a_camera_that_never_opens_counts_retries_and_keeps_the_slate_going() {
        let open: Opener = Box::new(|| Err("camera /dev/videoT does not exist".into()));
        let (mut src, status) = source(open);
        let mut frame = I420Frame::new(160, 120);
        let start = Instant::now();
        for _ in 0..20 {
            src.capture(&mut frame).unwrap();
            assert!(is_slate(&frame));
        }
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(360),
            "paced at the interval: {took:?}"
        );
        let s = lock(&status).clone();
        assert_eq!(
            (s.state, s.device.as_deref()),
            ("lost", Some("/dev/videoT"))
        );
        assert!(
            (3..=5).contains(&s.retries),
            "one try per 100 ms: {}",
            s.retries
        );
        assert_eq!(
            s.last_error.as_deref(),
            Some("camera /dev/videoT does not exist")
        );
    }

    /// A feed that hangs: never a picture, never an error.
    struct Hung {
        pictures: u32,
    }
    impl Feed for Hung {
        fn next_picture(
            &mut self,
            frame: &mut I420Frame,
            timeout: Duration,
        ) -> Result<Option<Instant>, String> {
            if self.pictures > 0 {
                self.pictures -= 1;
                pattern::render_test_pattern(frame, 0, 1);
                return Ok(Some(Instant::now()));
            }
            std::thread::sleep(timeout);
            Ok(None)
        }
        fn mode(&self) -> Option<Mode> {
            None
        }
    }

    #[test]
    fn a_hung_camera_repeats_its_last_picture_then_is_lost() {
        // One picture from the first feed; the reopened ones never send any.
        let mut first = true;
        let open: Opener = Box::new(move || {
            let pictures = u32::from(std::mem::take(&mut first));
            Ok(Box::new(Hung { pictures }) as Box<dyn Feed>)
        });
        let (mut src, status) = source(open);
        let mut frame = I420Frame::new(160, 120);
        let mut last = None;
        let mut kinds = Vec::new();
        for _ in 0..12 {
            let c = src.capture(&mut frame).unwrap();
            if let Some(l) = last {
                assert!(c.at - l <= KEPT_RATE, "kept the rate: {:?}", c.at - l);
            }
            last = Some(c.at);
            kinds.push(is_slate(&frame));
        }
        // The picture, repeats for the 120 ms stall limit, then the slate for good.
        assert!(!kinds[0] && !kinds[1], "{kinds:?}");
        let lost = kinds.iter().position(|s| *s).unwrap_or(kinds.len());
        assert!((2..=6).contains(&lost), "{kinds:?}");
        assert!(kinds[lost..].iter().all(|s| *s), "{kinds:?}");
        let s = lock(&status).clone();
        assert!(s.last_error.unwrap().contains("sent no picture"));
    }

    #[test]
    fn a_camera_that_opens_but_never_delivers_is_given_up_on() {
        let open: Opener = Box::new(|| Ok(Box::new(Hung { pictures: 0 }) as Box<dyn Feed>));
        let (mut src, status) = source(open);
        let mut frame = I420Frame::new(160, 120);
        for _ in 0..12 {
            src.capture(&mut frame).unwrap();
            assert!(is_slate(&frame), "the slate while it starts");
        }
        let s = lock(&status).clone();
        assert!(s.last_error.unwrap().contains("within"));
    }
}
