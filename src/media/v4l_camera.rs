//! The V4L2 camera: listing what is plugged in (`roverd devices`, `camera.device =
//! "auto"`), and opening one for capture through `v4l` directly ([`start_feed`]). Only
//! built with the `camera-v4l` feature.
//!
//! Opening negotiates the mode nearest to the configured one ([`choose_mode`]) and maps
//! the driver's buffers (`v4l`'s mmap stream). Every read polls with a timeout
//! ([`READ_TIMEOUT`]), so a camera that stops delivering ends its capture thread, which
//! closes the device, instead of hanging it for ever (nokhwa's V4L2 backend polls with
//! none). The capture thread itself, the conversion and the handoff to the encoder are
//! `media::capture`.
//!
//! Not here: retrying and the slate (`media::fallback`), pixel formats (`media::convert`).

use crate::media::camera::CameraInfo;
use crate::media::capture::{CaptureFeed, RawCamera};
use crate::media::convert::{choose_mode, Mode, PixelFormat};
use std::path::{Path, PathBuf};
use std::time::Duration;
use v4l::buffer::Type;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture as _;
use v4l::FourCC;

/// A camera that delivers no picture for this long is hung: its capture ends, the
/// device is closed, and `media::fallback` opens it again.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Driver buffers mapped per camera.
const BUFFERS: u32 = 4;

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
    #[error(
        "camera {device} sent no picture for {waited:?}: it is hung (check its cable and power)"
    )]
    Hung { device: String, waited: Duration },
    #[error(transparent)]
    Capture(#[from] crate::media::capture::CaptureError),
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

/// The index of a device path (for the capture thread's name): `/dev/video2` (or a symlink to it, such as
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
    let others;
    (info.modes, others) = offered_modes(&device);
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

/// The modes a camera offers that roverd converts, and the fourccs of the others.
fn offered_modes(device: &v4l::Device) -> (Vec<Mode>, Vec<String>) {
    let mut modes = Vec::new();
    let mut others = Vec::new();
    for desc in device.enum_formats().unwrap_or_default() {
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
                    modes.push(Mode {
                        format,
                        width: w,
                        height: h,
                        fps,
                    });
                }
            }
        }
    }
    (modes, others)
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

/// What to ask the camera for, and the size to deliver.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

/// Starts capturing `path` on its own thread. Opening happens on that thread, so this
/// returns at once; a camera that cannot be opened reports that as its first "picture".
pub fn start_feed(path: &Path, want: Request) -> Result<CaptureFeed, CameraError> {
    let device = path.display().to_string();
    let index = index_of(path)?;
    let open_path = path.to_owned();
    let feed = CaptureFeed::start(
        &device,
        format!("capture-video{index}"),
        move || open(&open_path, want).map_err(|e| e.to_string()),
        (want.width, want.height),
        READ_TIMEOUT,
    )?;
    Ok(feed)
}

/// An open, negotiated V4L2 camera. Dropping it stops the stream, unmaps the buffers and
/// closes the device.
struct V4lCamera {
    device: String,
    mode: Mode,
    stream: Stream<'static>,
}

impl RawCamera for V4lCamera {
    fn mode(&self) -> Mode {
        self.mode
    }

    fn read(&mut self, timeout: Duration) -> Result<&[u8], String> {
        self.stream.set_timeout(timeout);
        match CaptureStream::next(&mut self.stream) {
            // The buffer is the whole mapping; the picture is what the driver filled.
            Ok((buf, meta)) => Ok(&buf[..(meta.bytesused as usize).min(buf.len())]),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Err(CameraError::Hung {
                device: self.device.clone(),
                waited: timeout,
            }
            .to_string()),
            Err(e) => Err(CameraError::Read {
                device: self.device.clone(),
                message: e.to_string(),
            }
            .to_string()),
        }
    }
}

fn fourcc(format: PixelFormat) -> FourCC {
    match format {
        PixelFormat::Yuyv => FourCC::new(b"YUYV"),
        PixelFormat::Nv12 => FourCC::new(b"NV12"),
        PixelFormat::Mjpeg => FourCC::new(b"MJPG"),
    }
}

/// Opens the camera, negotiates the mode nearest to `want` and maps its buffers.
fn open(path: &Path, want: Request) -> Result<V4lCamera, CameraError> {
    let device = path.display().to_string();
    let open_err = |e: std::io::Error| CameraError::Open {
        device: device.clone(),
        message: e.to_string(),
    };
    let dev = v4l::Device::with_path(path).map_err(open_err)?;
    let (offered, others) = offered_modes(&dev);
    let mode = choose_mode(&offered, want.width, want.height, want.fps).ok_or_else(|| {
        CameraError::NoFormat {
            device: device.clone(),
            offered: if others.is_empty() {
                String::new()
            } else {
                format!(" (it offers {})", others.join(", "))
            },
        }
    })?;
    let mode_err = |message: String| CameraError::Mode {
        device: device.clone(),
        mode: mode.to_string(),
        message,
    };
    let wanted = v4l::Format::new(mode.width, mode.height, fourcc(mode.format));
    let set = dev
        .set_format(&wanted)
        .map_err(|e| mode_err(e.to_string()))?;
    if (set.width, set.height, set.fourcc) != (mode.width, mode.height, wanted.fourcc) {
        return Err(mode_err(format!(
            "the driver set {} {}x{} instead",
            set.fourcc, set.width, set.height
        )));
    }
    // A camera that keeps its own rate still streams; the encoder follows its pace.
    if let Err(e) = dev.set_params(&v4l::video::capture::Parameters::with_fps(mode.fps)) {
        log::debug!("camera {device}: could not set {} fps: {e}", mode.fps);
    }
    let stream = Stream::with_buffers(&dev, Type::VideoCapture, BUFFERS).map_err(open_err)?;
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
    Ok(V4lCamera {
        device,
        mode,
        stream,
    })
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
            start_feed(
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
