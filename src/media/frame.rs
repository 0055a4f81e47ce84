//! The picture every video stage hands on: an [`I420Frame`], and the video-range levels.
//!
//! All colours roverd draws are video range (BT.601 "limited": Y 16..=235, U/V 16..=240),
//! since openh264 and the browsers' decoders treat I420 that way: Y 235 shows as full
//! white and Y 16 as black.

/// Video-range black and white, and the neutral chroma value.
pub(crate) const BLACK: u8 = 16;
pub(crate) const WHITE: u8 = 235;
pub(crate) const NEUTRAL: u8 = 128;

/// An I420 picture: Y plane (width*height) then U then V (each
/// (width/2)*(height/2)), tightly packed, width and height even.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct I420Frame {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl I420Frame {
    /// A black picture in video range: Y 16, U and V 128.
    ///
    /// # Panics
    ///
    /// If `width` or `height` is odd (I420 subsamples chroma by two in both
    /// directions, so an odd size has no exact layout; the config rejects
    /// odd camera sizes before it gets here), or the size overflows memory.
    pub fn new(width: usize, height: usize) -> Self {
        assert!(
            width % 2 == 0 && height % 2 == 0,
            "I420 needs an even width and height, got {width}x{height}"
        );
        let luma = width * height;
        let mut data = vec![NEUTRAL; luma + luma / 2];
        data[..luma].fill(BLACK);
        Self {
            width,
            height,
            data,
        }
    }

    /// The luma plane, `width` bytes per row.
    pub fn y(&self) -> &[u8] {
        let (y_end, _) = self.plane_ends();
        &self.data[..y_end]
    }

    /// The blue-difference plane, `width/2` bytes per row, `height/2` rows.
    pub fn u(&self) -> &[u8] {
        let (y_end, u_end) = self.plane_ends();
        &self.data[y_end..u_end]
    }

    /// The red-difference plane, `width/2` bytes per row, `height/2` rows.
    pub fn v(&self) -> &[u8] {
        let (_, u_end) = self.plane_ends();
        &self.data[u_end..]
    }

    /// The three planes at once, for writers (a converter or the pattern).
    pub fn planes_mut(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        let (y_end, u_end) = self.plane_ends();
        let (y, rest) = self.data.split_at_mut(y_end);
        let (u, v) = rest.split_at_mut(u_end - y_end);
        (y, u, v)
    }

    /// Where the Y and U planes end in `data`. Clamped to `data.len()`
    /// because the fields are public: a frame someone built by hand with a
    /// short buffer gets short planes rather than a panic.
    fn plane_ends(&self) -> (usize, usize) {
        let len = self.data.len();
        let luma = self.width.saturating_mul(self.height);
        let chroma = (self.width / 2).saturating_mul(self.height / 2);
        let y_end = luma.min(len);
        (y_end, luma.saturating_add(chroma).min(len))
    }

    /// Whether `data` has exactly the I420 layout that `width` and `height`
    /// promise; the renderers draw nothing into a frame that does not.
    pub(crate) fn is_consistent(&self) -> bool {
        let luma = self.width.checked_mul(self.height);
        let chroma = (self.width / 2).checked_mul(self.height / 2);
        let expected = luma.zip(chroma).and_then(|(l, c)| l.checked_add(c * 2));
        self.width % 2 == 0 && self.height % 2 == 0 && expected == Some(self.data.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_frame_is_video_range_black_with_exact_planes() {
        let frame = I420Frame::new(8, 4);
        assert_eq!(frame.data.len(), 8 * 4 * 3 / 2);
        assert_eq!(frame.y(), &[16; 32][..]);
        assert_eq!(frame.u(), &[128; 8][..]);
        assert_eq!(frame.v(), &[128; 8][..]);
    }

    #[test]
    fn planes_mut_splits_at_the_plane_boundaries() {
        let mut frame = I420Frame::new(4, 2);
        let (y, u, v) = frame.planes_mut();
        assert_eq!((y.len(), u.len(), v.len()), (8, 2, 2));
        y.fill(1);
        u.fill(2);
        v.fill(3);
        assert_eq!(frame.data, [1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 3]);
    }

    #[test]
    #[should_panic(expected = "even width and height")]
    fn new_refuses_odd_sizes() {
        let _ = I420Frame::new(641, 480);
    }

    #[test]
    fn short_planes_instead_of_panics_for_hand_built_frames() {
        let frame = I420Frame {
            width: 640,
            height: 480,
            data: vec![9; 100],
        };
        assert_eq!(frame.y().len(), 100);
        assert!(frame.u().is_empty() && frame.v().is_empty());
        assert!(!frame.is_consistent());
    }
}
