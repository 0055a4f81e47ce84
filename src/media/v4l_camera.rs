//! The V4L2 camera: listing what is plugged in (`roverd devices`, `camera.device =
//! "auto"`), and a [`Feed`] that captures through nokhwa on its own thread. Only built
//! with the `camera-v4l` feature.
//!
//! The capture thread opens the camera, negotiates the mode nearest to the configured
//! one ([`choose_mode`]), and for each picture takes the driver's bytes (`frame_raw`),
//! converts them straight into an I420 picture of the encoder's size ([`Converter`]) and
//! hands that over a one-slot channel; the encoder thread hands used pictures back, so
//! nothing is allocated per picture. A read that hangs holds up only this thread: the
//! encoder side waits with a deadline (see `media::fallback`).
//!
//! Not here: retrying and the slate (`media::fallback`), pixel formats (`media::convert`).

use crate::media::camera::CameraInfo;
use crate::media::convert::{choose_mode, Converter, Mode, PixelFormat, RawFrame};
use crate::media::fallback::Feed;
use crate::media::frame::I420Frame;
use crate::sync::lock;
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use v4l::video::Capture as _;

/// The formats roverd converts, as nokhwa names them.
const FORMATS: [FrameFormat; 3] = [FrameFormat::YUYV, FrameFormat::NV12, FrameFormat::MJPEG];

/// Consecutive pictures that fail to convert (a corrupt MJPEG now and then is normal on
/// USB) before the camera counts as failed.
const BAD_PICTURE_LIMIT: u32 = 30;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CameraError {
    #[error("camera {device} does not exist: check the cable, and `roverd devices` for the cameras there are")]
    Missing { device: String },
    #[error("{device} is not a camera path like /dev/video0")]
    BadPath { device: String },
    #[error("could not open camera {device}: {message} (is another program using it? is roverd's user in the video group?)")]
    Open { device: String, message: String },
    #[error("camera {device} offers none of YUYV, NV12 or MJPEG{offered}")]
    NoFormat { device: String, offered: String },
    #[error("camera {device} refused {mode}: {message}")]
    Mode {
        device: String,
        mode: String,
        message: String,
    },
    #[error("reading camera {device} failed: {message} (unplugged, or short of USB power?)")]
    Read { device: String, message: String },
    #[error("camera {device} sent {count} pictures in a row that could not be converted, the last: {message}")]
    Convert {
        device: String,
        count: u32,
        message: String,
    },
    #[error("could not start the capture thread for camera {device}: {message}")]
    Thread { device: String, message: String },
}

/// The `/dev/videoN` nodes in index order. A missing `/dev` is no nodes.
fn video_nodes() -> Vec<(u32, PathBuf)> {
    let mut nodes: Vec<(u32, PathBuf)> = std::fs::read_dir("/dev")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let index = name.to_str()?.strip_prefix("video")?.parse().ok()?;
            Some((index, entry.path()))
        })
        .collect();
    nodes.sort();
    nodes
}

/// The index nokhwa needs for a device path: `/dev/video2` (or a symlink to it, such as
/// `/dev/v4l/by-id/...`) is 2.
pub fn index_of(path: &Path) -> Result<u32, CameraError> {
    let device = path.display().to_string();
    let real = std::fs::canonicalize(path).map_err(|_| CameraError::Missing {
        device: device.clone(),
    })?;
    real.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("video"))
        .and_then(|n| n.parse().ok())
        .ok_or(CameraError::BadPath { device })
}

/// Every `/dev/video*` node, with its name and the modes roverd can use. Read-only: it
/// asks the driver what it offers and changes nothing, so it is safe while roverd streams.
pub fn list_cameras() -> Vec<CameraInfo> {
    video_nodes()
        .into_iter()
        .map(|(index, path)| {
            // v4l unwraps the driver's name strings as UTF-8; a camera whose 32-byte name
            // field cuts a character in half must not take roverd down with it.
            let node = path.clone();
            std::panic::catch_unwind(move || describe(index, path)).unwrap_or_else(|_| CameraInfo {
                path: node,
                index,
                name: String::new(),
                modes: Vec::new(),
                problem: Some("its driver's answers could not be read".into()),
            })
        })
        .collect()
}

fn describe(index: u32, path: PathBuf) -> CameraInfo {
    let mut info = CameraInfo {
        name: String::new(),
        path,
        index,
        modes: Vec::new(),
        problem: None,
    };
    let device = match v4l::Device::with_path(&info.path) {
        Ok(d) => d,
        Err(e) => {
            info.problem = Some(format!("cannot open: {e}"));
            return info;
        }
    };
    match device.query_caps() {
        Ok(caps) => {
            info.name = caps.card.clone();
            if let Some(why) = not_a_camera(&caps.driver, caps.capabilities) {
                info.problem = Some(why.into());
                return info;
            }
        }
        Err(e) => {
            info.problem = Some(format!("cannot query: {e}"));
            return info;
        }
    }
    let formats = device.enum_formats().unwrap_or_default();
    let mut others = Vec::new();
    for desc in formats {
        let Some(format) = pixel_format(desc.fourcc.str().unwrap_or("")) else {
            others.push(desc.fourcc.to_string());
            continue;
        };
        for size in device.enum_framesizes(desc.fourcc).unwrap_or_default() {
            for (w, h) in sizes(&size.size) {
                let rates = device
                    .enum_frameintervals(desc.fourcc, w, h)
                    .unwrap_or_default();
                for fps in rates.iter().flat_map(|r| frame_rates(&r.interval)) {
                    info.modes.push(Mode {
                        format,
                        width: w,
                        height: h,
                        fps,
                    });
                }
            }
        }
    }
    if info.modes.is_empty() {
        info.problem = Some(if others.is_empty() {
            "offers no capture formats".into()
        } else {
            format!(
                "offers only {}, which roverd does not convert",
                others.join(", ")
            )
        });
    }
    info
}

/// Why a V4L2 node is no camera, if it is not: a metadata or output node, or one of the
/// Raspberry Pi's codec and ISP nodes (`/dev/video10` and up), which accept capture
/// formats but only ever return what is fed into them.
fn not_a_camera(driver: &str, flags: v4l::capability::Flags) -> Option<&'static str> {
    use v4l::capability::Flags;
    const PI_MEMORY_TO_MEMORY: [&str; 5] = [
        "bcm2835-codec",
        "bcm2835-isp",
        "pispbe",
        "rpivid",
        "rpi-hevc-dec",
    ];
    if PI_MEMORY_TO_MEMORY.contains(&driver)
        || flags.intersects(Flags::VIDEO_M2M | Flags::VIDEO_M2M_MPLANE)
    {
        Some("a codec or ISP node, not a camera")
    } else if !flags.contains(Flags::VIDEO_CAPTURE) {
        Some("not a capture device (a metadata or output node)")
    } else {
        None
    }
}

fn pixel_format(fourcc: &str) -> Option<PixelFormat> {
    match fourcc {
        "YUYV" => Some(PixelFormat::Yuyv),
        "NV12" => Some(PixelFormat::Nv12),
        "MJPG" => Some(PixelFormat::Mjpeg),
        _ => None,
    }
}

/// Discrete sizes as they are; a stepwise range as the common sizes inside it.
fn sizes(size: &v4l::framesize::FrameSizeEnum) -> Vec<(u32, u32)> {
    match size {
        v4l::framesize::FrameSizeEnum::Discrete(d) => vec![(d.width, d.height)],
        v4l::framesize::FrameSizeEnum::Stepwise(s) => [
            (320, 240),
            (640, 480),
            (800, 600),
            (1280, 720),
            (1920, 1080),
        ]
        .into_iter()
        .filter(|&(w, h)| {
            (s.min_width..=s.max_width).contains(&w) && (s.min_height..=s.max_height).contains(&h)
        })
        .collect(),
    }
}

/// Whole frame rates: 1/30 s is 30 fps; a stepwise range gives its ends.
fn frame_rates(interval: &v4l::frameinterval::FrameIntervalEnum) -> Vec<u32> {
    let fps = |f: &v4l::fraction::Fraction| {
        (f.numerator > 0).then(|| (f.denominator + f.numerator / 2) / f.numerator)
    };
    match interval {
        v4l::frameinterval::FrameIntervalEnum::Discrete(f) => fps(f).into_iter().collect(),
        v4l::frameinterval::FrameIntervalEnum::Stepwise(s) => {
            let mut v: Vec<u32> = [fps(&s.max), fps(&s.min)].into_iter().flatten().collect();
            v.dedup();
            v
        }
    }
}

/// What the capture thread sends the encoder side.
enum Msg {
    Picture(I420Frame, Instant),
    Failed(CameraError),
}

/// A V4L2 camera being captured on its own thread; see the module documentation.
pub struct V4lFeed {
    pictures: Receiver<Msg>,
    used: Sender<I420Frame>,
    stop: Arc<AtomicBool>,
    mode: Arc<Mutex<Option<Mode>>>,
    dead: Option<String>,
}

/// What to ask the camera for, and the size to deliver.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

impl V4lFeed {
    /// Starts capturing `path`. Opening happens on the capture thread, so this returns at
    /// once; a camera that cannot be opened reports that as its first "picture".
    pub fn start(path: &Path, want: Request) -> Result<Self, CameraError> {
        let device = path.display().to_string();
        let index = index_of(path)?;
        let (tx, pictures) = mpsc::sync_channel(1);
        let (used, used_rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let mode = Arc::new(Mutex::new(None));
        let (thread_stop, thread_mode, thread_device) =
            (Arc::clone(&stop), Arc::clone(&mode), device.clone());
        std::thread::Builder::new()
            .name(format!("capture-video{index}"))
            .spawn(move || {
                let result = capture_loop(
                    &thread_device,
                    index,
                    want,
                    &tx,
                    &used_rx,
                    &thread_stop,
                    &thread_mode,
                );
                if let Err(e) = result {
                    let _ = tx.send(Msg::Failed(e));
                }
            })
            .map_err(|e| CameraError::Thread {
                device,
                message: e.to_string(),
            })?;
        Ok(Self {
            pictures,
            used,
            stop,
            mode,
            dead: None,
        })
    }
}

impl Drop for V4lFeed {
    fn drop(&mut self) {
        // The thread stops after its current read; a read that never returns leaves it
        // behind, holding nothing but the device.
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Feed for V4lFeed {
    fn next_picture(
        &mut self,
        frame: &mut I420Frame,
        timeout: Duration,
    ) -> Result<Option<Instant>, String> {
        if let Some(e) = &self.dead {
            return Err(e.clone());
        }
        match self.pictures.recv_timeout(timeout) {
            Ok(Msg::Picture(mut picture, at)) => {
                if (picture.width, picture.height) == (frame.width, frame.height) {
                    std::mem::swap(frame, &mut picture);
                }
                let _ = self.used.send(picture);
                Ok(Some(at))
            }
            Ok(Msg::Failed(e)) => {
                let e = e.to_string();
                self.dead = Some(e.clone());
                Err(e)
            }
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => {
                Err("the camera capture thread ended".to_owned())
            }
        }
    }

    fn mode(&self) -> Option<Mode> {
        *lock(&self.mode)
    }
}

fn to_frame_format(f: PixelFormat) -> FrameFormat {
    match f {
        PixelFormat::Yuyv => FrameFormat::YUYV,
        PixelFormat::Nv12 => FrameFormat::NV12,
        PixelFormat::Mjpeg => FrameFormat::MJPEG,
    }
}

fn to_mode(f: &CameraFormat) -> Option<Mode> {
    let format = match f.format() {
        FrameFormat::YUYV => PixelFormat::Yuyv,
        FrameFormat::NV12 => PixelFormat::Nv12,
        FrameFormat::MJPEG => PixelFormat::Mjpeg,
        _ => return None,
    };
    Some(Mode {
        format,
        width: f.width(),
        height: f.height(),
        fps: f.frame_rate(),
    })
}

/// Opens the camera, negotiates, and converts pictures until told to stop or it fails.
fn capture_loop(
    device: &str,
    index: u32,
    want: Request,
    tx: &SyncSender<Msg>,
    used: &Receiver<I420Frame>,
    stop: &AtomicBool,
    mode_out: &Mutex<Option<Mode>>,
) -> Result<(), CameraError> {
    let open_err = |e: nokhwa::NokhwaError| CameraError::Open {
        device: device.to_owned(),
        message: e.to_string(),
    };
    let any = RequestedFormat::with_formats(RequestedFormatType::None, &FORMATS);
    let mut camera =
        nokhwa::Camera::with_backend(CameraIndex::Index(index), any, ApiBackend::Video4Linux)
            .map_err(open_err)?;
    let offered: Vec<Mode> = camera
        .compatible_camera_formats()
        .map_err(open_err)?
        .iter()
        .filter_map(to_mode)
        .collect();
    let mode = choose_mode(&offered, want.width, want.height, want.fps).ok_or_else(|| {
        CameraError::NoFormat {
            device: device.to_owned(),
            offered: String::new(),
        }
    })?;
    let exact = CameraFormat::new_from(
        mode.width,
        mode.height,
        to_frame_format(mode.format),
        mode.fps,
    );
    let formats = [to_frame_format(mode.format)];
    camera
        .set_camera_requset(RequestedFormat::with_formats(
            RequestedFormatType::Exact(exact),
            &formats,
        ))
        .map_err(|e| CameraError::Mode {
            device: device.to_owned(),
            mode: mode.to_string(),
            message: e.to_string(),
        })?;
    camera.open_stream().map_err(open_err)?;
    *lock(mode_out) = Some(mode);
    if (mode.width, mode.height) != (want.width, want.height) {
        log::info!(
            "camera {device}: asked for {}x{} @ {} fps, got {mode}; scaling to {}x{}",
            want.width,
            want.height,
            want.fps,
            want.width,
            want.height
        );
    }
    let mut converter = Converter::new();
    let mut spare: Vec<I420Frame> = Vec::new();
    let mut bad = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let raw = camera.frame_raw().map_err(|e| CameraError::Read {
            device: device.to_owned(),
            message: e.to_string(),
        })?;
        let at = Instant::now();
        let mut picture = used
            .try_recv()
            .ok()
            .or_else(|| spare.pop())
            .unwrap_or_else(|| I420Frame::new(want.width as usize, want.height as usize));
        let frame = RawFrame {
            format: mode.format,
            width: mode.width as usize,
            height: mode.height as usize,
            data: &raw,
        };
        if let Err(e) = converter.convert(&frame, &mut picture) {
            bad += 1;
            spare.push(picture);
            if bad >= BAD_PICTURE_LIMIT {
                return Err(CameraError::Convert {
                    device: device.to_owned(),
                    count: bad,
                    message: e.to_string(),
                });
            }
            log::debug!("camera {device}: skipped a picture: {e}");
            continue;
        }
        bad = 0;
        match tx.try_send(Msg::Picture(picture, at)) {
            Ok(()) => {}
            // The encoder has not taken the previous picture yet: this one is dropped
            // rather than queued, so the picture sent is always a fresh one.
            Err(TrySendError::Full(Msg::Picture(p, _))) => spare.push(p),
            Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Disconnected(_)) => return Ok(()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_isp_and_metadata_nodes_are_not_cameras() {
        use v4l::capability::Flags;
        let capture = Flags::VIDEO_CAPTURE | Flags::STREAMING;
        assert_eq!(not_a_camera("uvcvideo", capture), None);
        assert_eq!(not_a_camera("bm2835 mmal", capture), None);
        assert!(not_a_camera("uvcvideo", Flags::META_CAPTURE | Flags::STREAMING).is_some());
        assert!(not_a_camera("bcm2835-isp", capture).is_some());
        assert!(not_a_camera("vicodec", capture | Flags::VIDEO_M2M).is_some());
    }

    #[test]
    fn frame_intervals_become_whole_rates() {
        use v4l::fraction::Fraction;
        use v4l::frameinterval::FrameIntervalEnum;
        let f = |numerator, denominator| Fraction {
            numerator,
            denominator,
        };
        assert_eq!(frame_rates(&FrameIntervalEnum::Discrete(f(1, 30))), [30]);
        assert_eq!(
            frame_rates(&FrameIntervalEnum::Discrete(f(1001, 30000))),
            [30]
        );
        assert!(frame_rates(&FrameIntervalEnum::Discrete(f(0, 30))).is_empty());
    }

    #[test]
    fn a_path_that_does_not_exist_is_missing_not_a_panic() {
        assert_eq!(
            index_of(Path::new("/dev/video99")),
            Err(CameraError::Missing {
                device: "/dev/video99".into()
            })
        );
        assert!(matches!(
            index_of(Path::new("/dev/null")),
            Err(CameraError::BadPath { .. })
        ));
        assert!(matches!(
            V4lFeed::start(
                Path::new("/dev/video99"),
                Request {
                    width: 640,
                    height: 480,
                    fps: 30
                }
            ),
            Err(CameraError::Missing { .. })
        ));
    }

    #[test]
    fn listing_on_this_machine_does_not_panic() {
        // Whatever is plugged in (usually nothing in CI): every entry has a reason or modes.
        for cam in list_cameras() {
            assert!(cam.can_capture() || cam.problem.is_some(), "{cam:?}");
        }
    }
}
