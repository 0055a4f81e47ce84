//! The internals that roverd's own integration tests, benches and fuzz targets reach
//! into. Not part of the library's interface: anything here may change in any release.

pub use crate::control::Control;
pub use crate::media::convert::{Converter, PixelFormat, RawFrame};
pub use crate::media::devices::{list_cameras, list_microphones};
pub use crate::media::fanout::{Fanout, Next};
pub use crate::media::frame::I420Frame;
pub use crate::media::mic_list::format_microphones;
pub use crate::media::pattern::render_test_pattern;
pub use crate::media::stamp::read_stamp;
pub use crate::media::video::{VideoEncoder, VideoSettings};
pub use crate::media::Media;
pub use crate::motors::{MotorError, Motors};
pub use crate::protocol::MAX_MESSAGE_BYTES;
pub use crate::safety::{MotorLimits, Wheel};
pub use crate::session::{Access, ChannelPolicy, Session, Step};

/// The audio pipeline's pieces, for the audio bench.
pub mod audio {
    pub use crate::media::audio::{new_encoder, run_encoder, AudioShared, RingSource};
    pub use crate::media::dsp::{ring, FRAME_SAMPLES};
}

/// The camera's capture thread and fallback, for the camera recovery tests.
pub mod camera {
    pub use crate::media::capture::{CaptureFeed, RawCamera};
    pub use crate::media::convert::Mode;
    pub use crate::media::fallback::{
        CameraSource, CameraStatus, Feed, Opener, SharedCameraStatus, Timing,
    };
    pub use crate::media::video::VideoSource;
}
