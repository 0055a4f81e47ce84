//! The time bar code of the test pattern: writing a capture time into the top rows of a
//! picture, and reading it back from a (possibly lossy) decoded picture.
//!
//! Pure: the time comes in as an argument.
//!
//! Every frame carries its capture time so that a receiver on the same clock
//! can measure glass-to-glass latency (docs/protocol.md, "The test pattern's time stamp"):
//!
//! - the top [`STAMP_ROWS`] (16) pixel rows hold [`STAMP_BITS`] (32) cells
//!   side by side across the full width;
//! - cell `i` spans `x` in `[i*width/32, (i+1)*width/32)`, so the cells fill
//!   the width exactly even when it is not a multiple of 32;
//! - cell 0 (leftmost) is the most significant bit; a white cell (Y 235) is a
//!   1, a black cell (Y 16) a 0; the chroma under the bar code is neutral (128);
//! - the 32 bits are the low 32 bits of the capture time in milliseconds since
//!   the Unix epoch (they wrap every ~49.7 days; a latency is a difference of
//!   two nearby times, so the wrap is harmless with wrapping arithmetic).
//!
//! [`read_stamp`] only looks at the central half of each cell in rows 4..12,
//! so blur and ringing at the cell edges after lossy compression do not
//! matter, and it accepts both video range (16/235) and full range (0/255).

use crate::media::frame::{BLACK, NEUTRAL, WHITE};
use std::ops::Range;

/// Height in pixel rows of the time bar code at the top of each test frame.
pub const STAMP_ROWS: usize = 16;
/// Number of cells (bits) in the time bar code.
pub const STAMP_BITS: usize = 32;

/// The rows [`read_stamp`] samples: away from the top edge of the picture and
/// from the boundary with the pattern below, both of which a lossy encoder
/// smears.
const SAMPLE_ROWS: Range<usize> = 4..12;
/// Narrowest picture whose bar code [`read_stamp`] trusts: 4-pixel cells.
/// Narrower cells are mostly edge after compression, and their central half
/// would be a single pixel.
const MIN_STAMP_WIDTH: usize = STAMP_BITS * 4;
/// A cell whose mean luma is closer than this to mid-grey is neither black
/// nor white: the picture is not a stamped test frame (or is badly damaged).
const AMBIGUITY: u32 = 40;

/// Writes the low 32 bits of `capture_ms` into the top [`STAMP_ROWS`] rows of
/// the Y plane `y` (rows `stride` bytes apart, `width` pixels wide), in the
/// layout the module documentation gives. Only Y is touched: the caller owns
/// the chroma (the renderers here set it neutral under the bar code).
///
/// Rows that do not fit in `y` are skipped, so a short buffer never panics.
pub fn write_stamp(y: &mut [u8], stride: usize, width: usize, capture_ms: u64) {
    let width = width.min(stride);
    if width == 0 {
        return;
    }
    let rows = (0..STAMP_ROWS)
        .take_while(|row| row * stride + width <= y.len())
        .count();
    if rows == 0 {
        return;
    }
    // Only the low 32 bits fit; the truncation is the contract.
    let bits = (capture_ms & u64::from(u32::MAX)) as u32;
    let first = &mut y[..width];
    for (i, cell) in cell_ranges(width).enumerate() {
        let bit = (bits >> (STAMP_BITS - 1 - i)) & 1;
        first[cell].fill(if bit == 1 { WHITE } else { BLACK });
    }
    // Every stamp row is the same: draw one, copy it down.
    for row in 1..rows {
        y.copy_within(0..width, row * stride);
    }
}

/// Reads the time bar code back from a Y plane (possibly lossy: H.264-decoded
/// and scaled to the same size), returning the low 32 bits of the capture time.
///
/// Each cell's verdict is the mean of its central half in rows 4..12,
/// thresholded at 128, so it works for video range (16/235) and full range
/// (0/255) alike, and edge ringing does not count. `None` when the picture is
/// too small to carry a bar code (under 128 pixels wide or 16 rows high, or a
/// buffer shorter than promised), or when any cell is not clearly black or
/// white (its mean within 40 of 128), which is how a picture without a stamp,
/// such as a real camera frame, is told apart.
pub fn read_stamp(y: &[u8], stride: usize, width: usize, height: usize) -> Option<u32> {
    if width < MIN_STAMP_WIDTH || height < STAMP_ROWS || stride < width {
        return None;
    }
    let mut bits = 0u32;
    for cell in cell_ranges(width) {
        // The central half of the cell: a quarter off each side.
        let quarter = cell.len() / 4;
        let sample = cell.start + quarter..cell.end - quarter;
        let mut sum = 0u32;
        let mut count = 0u32;
        for row in SAMPLE_ROWS {
            let line = y.get(row * stride..row * stride + width)?;
            sum += line[sample.clone()]
                .iter()
                .map(|&p| u32::from(p))
                .sum::<u32>();
            count += sample.len() as u32;
        }
        // count > 0: MIN_STAMP_WIDTH gives every cell at least 2 samples a row.
        let mean = sum / count;
        if mean.abs_diff(u32::from(NEUTRAL)) < AMBIGUITY {
            return None;
        }
        bits = (bits << 1) | u32::from(mean > u32::from(NEUTRAL));
    }
    Some(bits)
}

/// The x range of each bar-code cell, left (most significant) first.
fn cell_ranges(width: usize) -> impl Iterator<Item = Range<usize>> {
    (0..STAMP_BITS).map(move |i| i * width / STAMP_BITS..(i + 1) * width / STAMP_BITS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real capture time (2024-06-01T12:00:00.123Z), larger than 32 bits.
    const EPOCH_MS: u64 = 1_717_243_200_123;

    #[test]
    fn stamp_cells_follow_the_contract_layout() {
        // 650 is not a multiple of 32: cell i spans [i*650/32, (i+1)*650/32).
        let width = 650;
        let mut y = vec![0u8; width * STAMP_ROWS];
        write_stamp(&mut y, width, width, 0x8000_0001);
        for row in 0..STAMP_ROWS {
            let line = &y[row * width..(row + 1) * width];
            assert!(line[..650 / 32].iter().all(|&p| p == WHITE));
            assert!(line[650 / 32..31 * 650 / 32].iter().all(|&p| p == BLACK));
            assert!(line[31 * 650 / 32..].iter().all(|&p| p == WHITE));
        }
    }

    #[test]
    fn write_stamp_respects_stride_and_short_buffers() {
        let (width, stride) = (320, 336);
        let mut y = vec![77u8; stride * 20];
        write_stamp(&mut y, stride, width, EPOCH_MS);
        // The padding after each row and the rows below the stamp are untouched.
        for row in 0..20 {
            assert!(y[row * stride + width..(row + 1) * stride]
                .iter()
                .all(|&p| p == 77));
        }
        assert!(y[STAMP_ROWS * stride..].iter().all(|&p| p == 77));
        assert_eq!(read_stamp(&y, stride, width, 20), Some(EPOCH_MS as u32));

        // Fewer rows than the stamp needs: writes what fits, no panic, and
        // the reader refuses it.
        let mut short = vec![0u8; width * 5 + 10];
        write_stamp(&mut short, width, width, EPOCH_MS);
        assert_eq!(read_stamp(&short, width, width, 5), None);
        write_stamp(&mut [], 0, 0, 1);
    }

    #[test]
    fn read_stamp_accepts_full_range_levels() {
        let width = 640;
        let t = 0xDEAD_BEEF_u32;
        let mut y = vec![0u8; width * STAMP_ROWS];
        for (i, cell) in cell_ranges(width).enumerate() {
            let level = if (t >> (31 - i)) & 1 == 1 { 255 } else { 0 };
            for row in 0..STAMP_ROWS {
                y[row * width + cell.start..row * width + cell.end].fill(level);
            }
        }
        assert_eq!(read_stamp(&y, width, width, STAMP_ROWS), Some(t));
    }
}
