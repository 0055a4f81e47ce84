//! The test pattern: a moving picture that stands in for the camera, so that
//! roverd runs, and is tested, on any machine (a laptop, CI) with no camera; and
//! the "camera lost" slate. Both carry the capture time in the bar code of
//! [`crate::media::stamp`].
//!
//! This module is pure: it never reads the clock, starts a thread or does I/O.
//! The frame number and the capture time come in as arguments, which is what
//! lets the unit tests below check every pixel that matters.
//!
//! # The picture
//!
//! Below the bar code: 75 % colour bars that scroll left by two pixels a
//! frame, a luma ramp under them, a white square that bounces around, and the
//! frame number in big digits. It is mostly bright (a browser test checks that
//! the video is not black), it visibly moves (a frozen stream is obvious), and
//! it is made of flat areas and plain translation, which H.264 compresses well
//! (noise would eat the bitrate and blur the bar code).
//!
//! All colours are video range (see [`crate::media::frame`]).

use crate::media::frame::{I420Frame, BLACK, NEUTRAL, WHITE};
use crate::media::stamp::{write_stamp, STAMP_ROWS};

/// Draws the moving test pattern for frame number `n` into `frame` (no
/// allocation), then stamps `capture_ms`.
///
/// A frame whose `data` does not match its size is left untouched (and trips
/// a debug assertion): drawing into it would mean guessing the layout.
pub fn render_test_pattern(frame: &mut I420Frame, n: u64, capture_ms: u64) {
    let Some(mut canvas) = Canvas::new(frame) else {
        return;
    };
    draw_pattern(&mut canvas, n);
    draw_stamp(&mut canvas, capture_ms);
}

/// Same as [`render_test_pattern`] but with a red band across the middle
/// reading "CAMERA LOST": the slate shown while the real camera is gone, so a
/// viewer can tell a lost camera from a frozen stream (the pattern behind it
/// still moves, and the bar code still carries the time).
pub fn render_slate(frame: &mut I420Frame, n: u64, capture_ms: u64) {
    let Some(mut canvas) = Canvas::new(frame) else {
        return;
    };
    draw_pattern(&mut canvas, n);
    draw_notice(&mut canvas, b"CAMERA LOST");
    draw_stamp(&mut canvas, capture_ms);
}

/// A colour in video-range Y, U, V.
#[derive(Debug, Clone, Copy)]
struct Yuv {
    y: u8,
    u: u8,
    v: u8,
}

const fn yuv(y: u8, u: u8, v: u8) -> Yuv {
    Yuv { y, u, v }
}

const YUV_BLACK: Yuv = yuv(BLACK, NEUTRAL, NEUTRAL);
const YUV_WHITE: Yuv = yuv(WHITE, NEUTRAL, NEUTRAL);
/// 100 % red (BT.601 limited), for the "camera lost" band.
const YUV_RED: Yuv = yuv(81, 90, 240);
/// 75 % colour bars (BT.601 limited): white, yellow, cyan, green, magenta,
/// red, blue. The familiar look tells a viewer at once that this is the test
/// source, and the mean luma (~110) keeps the picture far from black.
const BARS: [Yuv; 7] = [
    yuv(180, 128, 128),
    yuv(162, 44, 142),
    yuv(131, 156, 44),
    yuv(112, 72, 58),
    yuv(84, 184, 198),
    yuv(65, 100, 212),
    yuv(35, 212, 114),
];

/// A frame's three planes, with its size, checked once so the drawing code
/// below only has to clip.
struct Canvas<'a> {
    y: &'a mut [u8],
    u: &'a mut [u8],
    v: &'a mut [u8],
    width: usize,
    height: usize,
}

impl<'a> Canvas<'a> {
    fn new(frame: &'a mut I420Frame) -> Option<Self> {
        let consistent = frame.is_consistent();
        debug_assert!(
            consistent,
            "I420 frame {}x{} with {} bytes of data",
            frame.width,
            frame.height,
            frame.data.len()
        );
        if !consistent || frame.width == 0 || frame.height == 0 {
            return None;
        }
        let (width, height) = (frame.width, frame.height);
        let (y, u, v) = frame.planes_mut();
        Some(Self {
            y,
            u,
            v,
            width,
            height,
        })
    }

    /// Fills the luma rectangle `[x0, x1) × [y0, y1)`, clipped to the frame,
    /// and the chroma samples that cover it. Callers keep corners even where
    /// it matters, so that a shape's colour does not bleed into the 2×2
    /// chroma blocks of its neighbours.
    fn fill_rect(&mut self, x0: usize, y0: usize, x1: usize, y1: usize, colour: Yuv) {
        let (x1, y1) = (x1.min(self.width), y1.min(self.height));
        if x0 >= x1 || y0 >= y1 {
            return;
        }
        for row in y0..y1 {
            let line = row * self.width;
            self.y[line + x0..line + x1].fill(colour.y);
        }
        self.fill_chroma(x0, y0, x1, y1, colour.u, colour.v);
    }

    /// Sets the chroma under the luma rectangle `[x0, x1) × [y0, y1)`, which
    /// must already be clipped to the frame.
    fn fill_chroma(&mut self, x0: usize, y0: usize, x1: usize, y1: usize, u: u8, v: u8) {
        let chroma_width = self.width / 2;
        let (cx0, cx1) = (x0 / 2, x1.div_ceil(2));
        for row in y0 / 2..y1.div_ceil(2) {
            let line = row * chroma_width;
            self.u[line + cx0..line + cx1].fill(u);
            self.v[line + cx0..line + cx1].fill(v);
        }
    }

    /// Draws `text` in the built-in 5×7 font, each font pixel a
    /// `scale`×`scale` square, top-left corner at (`x0`, `y0`), clipped.
    fn draw_text(&mut self, x0: usize, y0: usize, scale: usize, text: &[u8], colour: Yuv) {
        let advance = (GLYPH_WIDTH + 1) * scale;
        for (i, &ch) in text.iter().enumerate() {
            let left = x0 + i * advance;
            if left >= self.width {
                break;
            }
            for (r, bits) in glyph(ch).iter().enumerate() {
                for c in 0..GLYPH_WIDTH {
                    if bits & (1 << (GLYPH_WIDTH - 1 - c)) != 0 {
                        let (x, y) = (left + c * scale, y0 + r * scale);
                        self.fill_rect(x, y, x + scale, y + scale, colour);
                    }
                }
            }
        }
    }
}

/// Draws everything below the bar code; the bar code rows are left for
/// [`draw_stamp`].
fn draw_pattern(c: &mut Canvas<'_>, n: u64) {
    let (w, h) = (c.width, c.height);
    let top = STAMP_ROWS.min(h);
    let bars_end = even(top + (h - top) * 2 / 3);

    // Colour bars scrolling left by 2 pixels a frame. The shift stays even
    // (w is even), so bar edges stay on chroma block boundaries.
    let shift = (n % w as u64) as usize * 2 % w;
    for (i, &colour) in BARS.iter().enumerate() {
        let start = even(i * w / BARS.len());
        let end = if i + 1 == BARS.len() {
            w
        } else {
            even((i + 1) * w / BARS.len())
        };
        let from = (start + w - shift) % w;
        let to = from + (end - start);
        c.fill_rect(from, top, to.min(w), bars_end, colour);
        if to > w {
            c.fill_rect(0, top, to - w, bars_end, colour);
        }
    }

    // A black-to-white luma ramp: shows level clipping and banding at a
    // glance. Computed for one row in 16.16 fixed point (no per-pixel
    // division), then copied down.
    if bars_end < h {
        c.fill_chroma(0, bars_end, w, h, NEUTRAL, NEUTRAL);
        let step = (u32::from(WHITE - BLACK) << 16) / (w.max(2) - 1) as u32;
        let first = bars_end * w;
        let mut level = u32::from(BLACK) << 16;
        for px in &mut c.y[first..first + w] {
            *px = (level >> 16) as u8;
            level += step;
        }
        for row in bars_end + 1..h {
            c.y.copy_within(first..first + w, row * w);
        }
    }

    // A white square with a black rim, bouncing: the motion a viewer (and a
    // test comparing two frames) notices first.
    let side = even(h / 5).max(2);
    let rim = even(side / 12).max(2);
    // Wrapping: a jump after 2^62 frames (a billion years at 30 fps) beats
    // a panic.
    let x = even(triangle(n.wrapping_mul(4), w.saturating_sub(side)));
    let y = top + even(triangle(n.wrapping_mul(3), (h - top).saturating_sub(side)));
    c.fill_rect(x, y, x + side, y + side, YUV_BLACK);
    c.fill_rect(x + rim, y + rim, x + side - rim, y + side - rim, YUV_WHITE);

    // The frame number, bottom left, white on a black box: makes dropped or
    // repeated frames visible to a person watching.
    let mut digits = [0u8; 20];
    let text = decimal(n, &mut digits);
    let scale = even(h / 80).max(2);
    let (text_w, text_h) = text_size(text.len(), scale);
    let box_h = text_h + 2 * scale;
    let box_y = even(h.saturating_sub(box_h + 2 * scale)).max(top);
    let box_x = 2 * scale;
    c.fill_rect(
        box_x,
        box_y,
        box_x + text_w + 2 * scale,
        box_y + box_h,
        YUV_BLACK,
    );
    c.draw_text(box_x + scale, box_y + scale, scale, text, YUV_WHITE);
}

/// A red band across the middle with `text` centred in white.
fn draw_notice(c: &mut Canvas<'_>, text: &[u8]) {
    let (w, h) = (c.width, c.height);
    let top = STAMP_ROWS.min(h);
    let band_h = even(h / 4).max(2);
    let band_y = even((h / 2).saturating_sub(band_h / 2)).max(top);
    c.fill_rect(0, band_y, w, band_y + band_h, YUV_RED);

    // As big as fits in 80 % of the width and 70 % of the band.
    let (unit_w, _) = text_size(text.len(), 1);
    let scale = even((w * 8 / 10 / unit_w.max(1)).min(band_h * 7 / 10 / GLYPH_HEIGHT)).max(2);
    let (text_w, text_h) = text_size(text.len(), scale);
    let x = even(w.saturating_sub(text_w) / 2);
    let y = band_y + even(band_h.saturating_sub(text_h) / 2);
    c.draw_text(x, y, scale, text, YUV_WHITE);
}

/// Stamps the capture time and makes the chroma under it neutral, so that the
/// cells are pure black and white whatever was drawn there before.
fn draw_stamp(c: &mut Canvas<'_>, capture_ms: u64) {
    write_stamp(c.y, c.width, c.width, capture_ms);
    c.fill_chroma(0, 0, c.width, STAMP_ROWS.min(c.height), NEUTRAL, NEUTRAL);
}

/// Rounds down to even, to keep shapes aligned with the 2×2 chroma blocks.
fn even(x: usize) -> usize {
    x & !1
}

/// A triangle wave going 0, 1, …, `span`, …, 1, 0, … as `t` counts up.
fn triangle(t: u64, span: usize) -> usize {
    if span == 0 {
        return 0;
    }
    let period = 2 * span as u64;
    let p = t % period;
    (if p <= span as u64 { p } else { period - p }) as usize
}

/// Writes `n` in decimal into the end of `buf` without allocating, and
/// returns the digits.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[start..]
}

const GLYPH_WIDTH: usize = 5;
const GLYPH_HEIGHT: usize = 7;

/// Width and height in pixels of `len` characters at `scale`, without the
/// spacing after the last one.
fn text_size(len: usize, scale: usize) -> (usize, usize) {
    let w = (len * (GLYPH_WIDTH + 1)).saturating_sub(1) * scale;
    (w, GLYPH_HEIGHT * scale)
}

/// The built-in 5×7 font: one byte a row, top first, bit 4 the leftmost
/// pixel. Only the characters the pattern and the slate use; any other is
/// drawn as a space.
fn glyph(ch: u8) -> [u8; GLYPH_HEIGHT] {
    match ch {
        b'0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        b'1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        b'2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        b'3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        b'4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        b'5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        b'6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        b'7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        b'8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        b'9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        b'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        b'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        b'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        b'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        b'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        b'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        b'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        b'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        b'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        _ => [0; GLYPH_HEIGHT],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::stamp::read_stamp;

    /// A real capture time (2024-06-01T12:00:00.123Z), larger than 32 bits.
    const EPOCH_MS: u64 = 1_717_243_200_123;

    fn stamped(width: usize, height: usize, capture_ms: u64) -> I420Frame {
        let mut frame = I420Frame::new(width, height);
        render_test_pattern(&mut frame, 7, capture_ms);
        frame
    }

    fn read(frame: &I420Frame) -> Option<u32> {
        read_stamp(frame.y(), frame.width, frame.width, frame.height)
    }

    /// Deterministic pseudo-noise in -amp..=amp (a 64-bit LCG, high bits).
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self, amp: i32) -> i32 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((self.0 >> 33) % (2 * amp as u64 + 1)) as i32 - amp
        }
    }

    fn add_noise(y: &mut [u8], amp: i32, seed: u64) {
        let mut lcg = Lcg(seed);
        for px in y {
            *px = (i32::from(*px) + lcg.next(amp)).clamp(0, 255) as u8;
        }
    }

    fn mean(bytes: &[u8]) -> f64 {
        bytes.iter().map(|&b| f64::from(b)).sum::<f64>() / bytes.len() as f64
    }

    #[test]
    fn stamp_round_trips_across_times_and_widths() {
        let times = [
            0,
            1,
            0x8000_0000,
            u64::from(u32::MAX),
            u64::from(u32::MAX) - 1,
            0xAAAA_AAAA,
            0x5555_5555,
            EPOCH_MS,
            u64::MAX,
        ];
        for width in [640, 320, 1280, 650, 128] {
            for &t in &times {
                let frame = stamped(width, 480, t);
                assert_eq!(read(&frame), Some(t as u32), "width {width}, time {t}");
            }
        }
    }

    #[test]
    fn only_the_low_32_bits_come_back() {
        let frame = stamped(640, 480, EPOCH_MS);
        assert_eq!(read(&frame), Some((EPOCH_MS % (1 << 32)) as u32));
        assert_ne!(u64::from(read(&frame).unwrap()), EPOCH_MS);
    }

    #[test]
    fn pattern_chroma_is_neutral_under_the_stamp() {
        let frame = stamped(640, 480, EPOCH_MS);
        let chroma_rows = STAMP_ROWS / 2 * 320;
        assert!(frame.u()[..chroma_rows].iter().all(|&c| c == 128));
        assert!(frame.v()[..chroma_rows].iter().all(|&c| c == 128));
    }

    #[test]
    fn read_stamp_survives_noise() {
        for (width, t) in [(640, EPOCH_MS), (320, 0x0F0F_F0F0), (650, 12_345_678)] {
            for seed in 1..5 {
                let mut frame = stamped(width, 480, t);
                add_noise(&mut frame.data[..width * 480], 30, seed);
                assert_eq!(read(&frame), Some(t as u32), "width {width}, seed {seed}");
            }
        }
    }

    #[test]
    fn read_stamp_survives_blurred_cell_edges() {
        // A 5-tap horizontal box blur, then noise: roughly what a lossy
        // encoder does to hard vertical edges.
        let (width, height) = (320, 240);
        let mut frame = stamped(width, height, EPOCH_MS);
        for row in 0..STAMP_ROWS {
            let line = frame.y()[row * width..(row + 1) * width].to_vec();
            for x in 0..width {
                let taps = (x.saturating_sub(2)..(x + 3).min(width)).map(|i| u32::from(line[i]));
                let n = taps.clone().count() as u32;
                frame.data[row * width + x] = (taps.sum::<u32>() / n) as u8;
            }
        }
        add_noise(&mut frame.data[..width * height], 20, 9);
        assert_eq!(read(&frame), Some(EPOCH_MS as u32));
    }

    #[test]
    fn read_stamp_refuses_flat_grey_and_unstamped_pictures() {
        let mut grey = I420Frame::new(640, 480);
        grey.data.fill(128);
        assert_eq!(read(&grey), None);
        // Just inside the ambiguity margin still counts as grey.
        grey.data[..640 * 480].fill(128 + 39);
        assert_eq!(read(&grey), None);
        // A picture with one grey cell among clean ones is not trusted.
        let mut frame = stamped(640, 480, EPOCH_MS);
        for row in 0..STAMP_ROWS {
            frame.data[row * 640 + 100..row * 640 + 120].fill(128);
        }
        assert_eq!(read(&frame), None);
    }

    #[test]
    fn read_stamp_refuses_pictures_too_small_or_short() {
        let frame = stamped(126, 480, 5);
        assert_eq!(read(&frame), None);
        let frame = stamped(640, 14, 5);
        assert_eq!(read(&frame), None);
        let frame = stamped(640, 480, 5);
        assert_eq!(read_stamp(&frame.y()[..640 * 10], 640, 640, 480), None);
        assert_eq!(read_stamp(frame.y(), 600, 640, 480), None);
    }

    #[test]
    fn pattern_moves_below_the_stamp() {
        let (width, height) = (640, 480);
        let below = STAMP_ROWS * width..width * height;
        let mut previous = I420Frame::new(width, height);
        render_test_pattern(&mut previous, 0, EPOCH_MS);
        for n in 1..100 {
            let mut frame = I420Frame::new(width, height);
            // Same capture time: any difference is the picture moving.
            render_test_pattern(&mut frame, n, EPOCH_MS);
            assert_ne!(
                frame.y()[below.clone()],
                previous.y()[below.clone()],
                "frame {n}"
            );
            previous = frame;
        }
    }

    #[test]
    fn rendering_is_deterministic_and_overwrites_everything() {
        let mut fresh = I420Frame::new(640, 480);
        render_test_pattern(&mut fresh, 42, EPOCH_MS);
        // A reused buffer with garbage in it ends up identical: no pixel
        // is left from before.
        let mut reused = I420Frame::new(640, 480);
        add_noise(&mut reused.data, 100, 3);
        render_test_pattern(&mut reused, 42, EPOCH_MS);
        assert_eq!(fresh, reused);
    }

    #[test]
    fn pattern_is_far_from_black() {
        // Video-range black is 16; the stamp of time 0 is all black cells.
        for (width, height) in [(640, 480), (320, 240), (1280, 720)] {
            for n in [0, 1, 50, 1000, u64::MAX] {
                let mut frame = I420Frame::new(width, height);
                render_test_pattern(&mut frame, n, 0);
                let luma = mean(frame.y());
                assert!(luma > 80.0, "{width}x{height} frame {n}: mean luma {luma}");
            }
        }
    }

    #[test]
    fn pattern_is_in_video_range() {
        let frame = stamped(640, 480, EPOCH_MS);
        assert!(frame.y().iter().all(|&p| (16..=235).contains(&p)));
        assert!(frame
            .u()
            .iter()
            .chain(frame.v())
            .all(|&c| (16..=240).contains(&c)));
    }

    #[test]
    fn slate_looks_different_and_keeps_the_stamp() {
        let mut pattern = I420Frame::new(640, 480);
        let mut slate = I420Frame::new(640, 480);
        render_test_pattern(&mut pattern, 3, EPOCH_MS);
        render_slate(&mut slate, 3, EPOCH_MS);
        assert_eq!(read(&slate), Some(EPOCH_MS as u32));
        // The red band: strong red chroma across the middle row.
        let chroma_row = 240 / 2 * 320;
        let band = &slate.v()[chroma_row..chroma_row + 320];
        assert!(band.iter().filter(|&&v| v == 240).count() > 160);
        let changed = pattern
            .data
            .iter()
            .zip(&slate.data)
            .filter(|(a, b)| a != b)
            .count();
        assert!(changed > 640 * 480 / 10, "only {changed} bytes differ");
        // The text is there: white luma inside the band.
        let y_row = 240 * 640;
        assert!(slate.y()[y_row - 640 * 20..y_row + 640 * 20].contains(&WHITE));
    }

    #[test]
    fn odd_and_tiny_frames_do_not_panic() {
        for (w, h) in [
            (0, 0),
            (2, 2),
            (2, 480),
            (640, 2),
            (32, 8),
            (64, 16),
            (130, 18),
        ] {
            let mut frame = I420Frame::new(w, h);
            render_test_pattern(&mut frame, 12_345, EPOCH_MS);
            render_slate(&mut frame, u64::MAX, EPOCH_MS);
        }
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "I420 frame 640x480 with 100 bytes")]
    fn inconsistent_frames_trip_a_debug_assertion() {
        let mut frame = I420Frame {
            width: 640,
            height: 480,
            data: vec![9; 100],
        };
        render_test_pattern(&mut frame, 1, 1);
    }

    #[test]
    #[cfg(not(debug_assertions))]
    fn inconsistent_frames_are_left_alone() {
        let mut frame = I420Frame {
            width: 640,
            height: 480,
            data: vec![9; 100],
        };
        render_test_pattern(&mut frame, 1, 1);
        assert_eq!(frame.data, vec![9; 100]);
        assert_eq!(frame.y().len(), 100);
        assert!(frame.u().is_empty() && frame.v().is_empty());
    }

    #[test]
    fn decimal_digits() {
        let mut buf = [0u8; 20];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(907, &mut buf), b"907");
        assert_eq!(decimal(u64::MAX, &mut buf), b"18446744073709551615");
    }

    #[test]
    fn triangle_bounces_between_the_ends() {
        let values: Vec<usize> = (0..9).map(|t| triangle(t, 3)).collect();
        assert_eq!(values, [0, 1, 2, 3, 2, 1, 0, 1, 2]);
        assert_eq!(triangle(u64::MAX, 0), 0);
    }
}
