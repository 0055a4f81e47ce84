//! Camera pixels to the encoder's I420, straight from the driver's bytes: YUYV (4:2:2
//! packed), NV12 (4:2:0, interleaved chroma) and MJPEG (decoded to YCbCr by `zune-jpeg`,
//! never to RGB). Also the choice of a camera format, and scaling when the camera cannot
//! give the configured size.
//!
//! Invariant: pure. No devices, no clock, no threads; every function works on slices it
//! is given, never panics on any input (a short or odd buffer is an error or a clipped
//! picture), and writes the output in one pass with no intermediate copy except where
//! the step needs one (a JPEG's decoded YCbCr, a picture that must be scaled).
//!
//! Range: YUYV and NV12 from V4L2 cameras are video range (Y 16..235), like the encoder's
//! input, and are copied as they are. JPEG is full range (JFIF), so MJPEG is squeezed to
//! video range on the way.
//!
//! Odd sizes: I420 needs even sides, so a source with an odd width or height loses its
//! last column or row (or is scaled, when the configured size differs).

use crate::media::pattern::I420Frame;
use std::fmt;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

/// The camera formats roverd takes. Anything else a camera offers is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PixelFormat {
    Yuyv,
    Nv12,
    Mjpeg,
}

impl PixelFormat {
    /// The V4L2 fourcc, as `v4l2-ctl --list-formats` prints it.
    pub fn fourcc(self) -> &'static str {
        match self {
            Self::Yuyv => "YUYV",
            Self::Nv12 => "NV12",
            Self::Mjpeg => "MJPG",
        }
    }
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.fourcc())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("a {format} picture of {width}x{height} needs at least {needed} bytes, the camera gave {got}")]
    Short {
        format: PixelFormat,
        width: usize,
        height: usize,
        needed: usize,
        got: usize,
    },
    #[error("a {width}x{height} picture is too small to convert (it needs at least 2x2)")]
    TooSmall { width: usize, height: usize },
    #[error("the camera sent a JPEG that does not decode: {0}")]
    Jpeg(String),
    #[error("the camera's JPEG is {got_w}x{got_h}, not the {want_w}x{want_h} it was set to")]
    JpegSize {
        got_w: usize,
        got_h: usize,
        want_w: usize,
        want_h: usize,
    },
}

/// One picture as the driver gave it.
#[derive(Debug, Clone, Copy)]
pub struct RawFrame<'a> {
    pub format: PixelFormat,
    pub width: usize,
    pub height: usize,
    pub data: &'a [u8],
}

/// Bytes per row of a raw picture. V4L2 drivers may pad rows (the Pi's ISP aligns them to
/// 32 or 64 bytes) and nokhwa does not pass `bytesperline` on, so it is worked out from the
/// buffer's length; a length that fits no padding means tight rows.
pub fn infer_stride(format: PixelFormat, width: usize, height: usize, len: usize) -> usize {
    let (tight, num, den) = match format {
        PixelFormat::Yuyv => (width * 2, 1, 1),
        // Y rows then half as many interleaved UV rows of the same stride.
        PixelFormat::Nv12 => (width, 2, 3),
        PixelFormat::Mjpeg => return 0,
    };
    let rows = height * den; // len = stride * height * 3/2 for NV12
    if rows == 0 || (len * num) % rows != 0 {
        return tight;
    }
    let stride = len * num / rows;
    if stride >= tight && stride < tight + 256 {
        stride
    } else {
        tight
    }
}

/// YUYV (Y0 U Y1 V for each pair of pixels, `stride` bytes per row) to I420. The output's
/// size is the picture's even part (`dst` must be `width & !1` by `height & !1`, or
/// smaller to crop). Chroma rows are the mean of the two source rows they cover.
pub fn yuyv_to_i420(
    src: &[u8],
    stride: usize,
    width: usize,
    height: usize,
    dst: &mut I420Frame,
) -> Result<(), ConvertError> {
    let (w, h) = (dst.width, dst.height);
    check_fits(w, h, width, height)?;
    let needed = (h - 1) * stride + w * 2;
    if stride < width.div_ceil(2) * 4 - 2 || src.len() < needed {
        return Err(short(PixelFormat::Yuyv, width, height, needed, src.len()));
    }
    let (y, u, v) = dst.planes_mut();
    let cw = w / 2;
    for row in 0..h / 2 {
        let top = &src[2 * row * stride..][..w * 2];
        let bottom = &src[(2 * row + 1) * stride..][..w * 2];
        let (y_top, y_rest) = y[2 * row * w..][..2 * w].split_at_mut(w);
        let u_row = &mut u[row * cw..][..cw];
        let v_row = &mut v[row * cw..][..cw];
        // Luma and chroma in separate, simple loops over zipped fixed-size chunks: no
        // bounds checks, and each is a plain shuffle the compiler vectorises.
        for (out, src) in [(y_top, top), (y_rest, bottom)] {
            for (d, s) in out.iter_mut().zip(src.chunks_exact(2)) {
                *d = s[0];
            }
        }
        let pixels = top.chunks_exact(4).zip(bottom.chunks_exact(4));
        for ((t, b), (u_out, v_out)) in pixels.zip(u_row.iter_mut().zip(v_row.iter_mut())) {
            *u_out = avg2(t[1], b[1]);
            *v_out = avg2(t[3], b[3]);
        }
    }
    Ok(())
}

/// NV12 (a Y plane, then one plane of interleaved U V at half height; both `stride` bytes
/// per row, the UV plane starting right after `height` Y rows) to I420, cropped to `dst`.
pub fn nv12_to_i420(
    src: &[u8],
    stride: usize,
    width: usize,
    height: usize,
    dst: &mut I420Frame,
) -> Result<(), ConvertError> {
    let (w, h) = (dst.width, dst.height);
    check_fits(w, h, width, height)?;
    let uv_start = stride * height;
    let needed = uv_start + (h / 2 - 1) * stride + w;
    if stride < width || src.len() < needed {
        return Err(short(PixelFormat::Nv12, width, height, needed, src.len()));
    }
    let (y, u, v) = dst.planes_mut();
    for row in 0..h {
        y[row * w..][..w].copy_from_slice(&src[row * stride..][..w]);
    }
    let cw = w / 2;
    for row in 0..h / 2 {
        let uv = &src[uv_start + row * stride..][..w];
        let u_row = &mut u[row * cw..][..cw];
        let v_row = &mut v[row * cw..][..cw];
        for (pair, (u_out, v_out)) in uv
            .chunks_exact(2)
            .zip(u_row.iter_mut().zip(v_row.iter_mut()))
        {
            *u_out = pair[0];
            *v_out = pair[1];
        }
    }
    Ok(())
}

/// Full-range (JPEG) to video-range (H.264) luma and chroma, as lookup tables.
struct RangeTables {
    luma: [u8; 256],
    chroma: [u8; 256],
}

const RANGE: RangeTables = {
    let mut luma = [0u8; 256];
    let mut chroma = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        // Rounded: 16 + i*219/255 and 128 + (i-128)*224/255.
        luma[i] = (16 + (i * 219 * 2 + 255) / 510) as u8;
        let c = (i as i32 - 128) * 224 * 2;
        let c = if c >= 0 {
            (c + 255) / 510
        } else {
            (c - 255) / 510
        };
        chroma[i] = (128 + c) as u8;
        i += 1;
    }
    RangeTables { luma, chroma }
};

/// Interleaved full-range YCbCr 4:4:4 (what the JPEG decoder hands out, 3 bytes a pixel,
/// `width` pixels a row) to video-range I420, cropped to `dst`. Each chroma sample is the
/// mean of the 2x2 it covers.
pub fn ycbcr444_to_i420(
    src: &[u8],
    width: usize,
    height: usize,
    dst: &mut I420Frame,
) -> Result<(), ConvertError> {
    let (w, h) = (dst.width, dst.height);
    check_fits(w, h, width, height)?;
    let stride = width * 3;
    let needed = (h - 1) * stride + w * 3;
    if src.len() < needed {
        return Err(short(PixelFormat::Mjpeg, width, height, needed, src.len()));
    }
    let (y, u, v) = dst.planes_mut();
    let cw = w / 2;
    for row in 0..h / 2 {
        let top = &src[2 * row * stride..][..w * 3];
        let bottom = &src[(2 * row + 1) * stride..][..w * 3];
        let (y_top, y_rest) = y[2 * row * w..][..2 * w].split_at_mut(w);
        let u_row = &mut u[row * cw..][..cw];
        let v_row = &mut v[row * cw..][..cw];
        let pixels = top.chunks_exact(6).zip(bottom.chunks_exact(6));
        let outputs = y_top
            .chunks_exact_mut(2)
            .zip(y_rest.chunks_exact_mut(2))
            .zip(u_row.iter_mut().zip(v_row.iter_mut()));
        for ((t, b), ((yt, yb), (u_out, v_out))) in pixels.zip(outputs) {
            yt[0] = RANGE.luma[usize::from(t[0])];
            yt[1] = RANGE.luma[usize::from(t[3])];
            yb[0] = RANGE.luma[usize::from(b[0])];
            yb[1] = RANGE.luma[usize::from(b[3])];
            let cb = u16::from(t[1]) + u16::from(t[4]) + u16::from(b[1]) + u16::from(b[4]);
            let cr = u16::from(t[2]) + u16::from(t[5]) + u16::from(b[2]) + u16::from(b[5]);
            *u_out = RANGE.chroma[usize::from((cb + 2) / 4) & 255];
            *v_out = RANGE.chroma[usize::from((cr + 2) / 4) & 255];
        }
    }
    Ok(())
}

/// Decodes one MJPEG picture to YCbCr in `scratch` (reused between pictures) and returns
/// its size. The decoder is told to keep YCbCr: no RGB step.
pub fn decode_jpeg(jpeg: &[u8], scratch: &mut Vec<u8>) -> Result<(usize, usize), ConvertError> {
    let options = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::YCbCr);
    let mut decoder = JpegDecoder::new_with_options(jpeg, options);
    decoder
        .decode_headers()
        .map_err(|e| ConvertError::Jpeg(e.to_string()))?;
    let info = decoder
        .info()
        .ok_or_else(|| ConvertError::Jpeg("no image header".into()))?;
    let (w, h) = (usize::from(info.width), usize::from(info.height));
    let size = decoder
        .output_buffer_size()
        .ok_or_else(|| ConvertError::Jpeg("no image size".into()))?;
    scratch.resize(size, 0);
    decoder
        .decode_into(scratch)
        .map_err(|e| ConvertError::Jpeg(e.to_string()))?;
    if decoder.get_output_colorspace() != Some(ColorSpace::YCbCr) {
        // A greyscale JPEG decodes to one byte a pixel: spread it to neutral chroma.
        let luma: Vec<u8> = scratch[..w * h].to_vec();
        scratch.resize(w * h * 3, 0);
        for (px, l) in scratch.chunks_exact_mut(3).zip(luma) {
            px.copy_from_slice(&[l, 128, 128]);
        }
    }
    Ok((w, h))
}

/// Bilinear scaling of one I420 picture onto another of any (even) size, plane by plane.
pub fn scale_i420(src: &I420Frame, dst: &mut I420Frame) {
    let (sw, sh, dw, dh) = (src.width, src.height, dst.width, dst.height);
    let (y, u, v) = dst.planes_mut();
    scale_plane(src.y(), sw, sh, y, dw, dh);
    scale_plane(src.u(), sw / 2, sh / 2, u, dw / 2, dh / 2);
    scale_plane(src.v(), sw / 2, sh / 2, v, dw / 2, dh / 2);
}

/// Bilinear, 8-bit fixed-point weights, sample centres aligned (the corners map onto the
/// corners). Planes too short for their sizes are left alone.
fn scale_plane(src: &[u8], sw: usize, sh: usize, dst: &mut [u8], dw: usize, dh: usize) {
    if sw == 0 || sh == 0 || dw == 0 || dh == 0 || src.len() < sw * sh || dst.len() < dw * dh {
        return;
    }
    // Source position of each destination column: (index, weight of the next one).
    let pos = |d: usize, dn: usize, sn: usize| -> (usize, u32) {
        let x = ((2 * d + 1) * sn * 256 / (2 * dn)).saturating_sub(128);
        let i = (x >> 8).min(sn - 1);
        let f = if i + 1 < sn { (x & 255) as u32 } else { 0 };
        (i, f)
    };
    let cols: Vec<(usize, u32)> = (0..dw).map(|d| pos(d, dw, sw)).collect();
    for (dy, out_row) in dst.chunks_exact_mut(dw).take(dh).enumerate() {
        let (sy, fy) = pos(dy, dh, sh);
        let r0 = &src[sy * sw..][..sw];
        let r1 = &src[(sy + usize::from(fy > 0)) * sw..][..sw];
        for (out, &(sx, fx)) in out_row.iter_mut().zip(&cols) {
            let nx = sx + usize::from(fx > 0);
            let top = u32::from(r0[sx]) * (256 - fx) + u32::from(r0[nx]) * fx;
            let bottom = u32::from(r1[sx]) * (256 - fx) + u32::from(r1[nx]) * fx;
            *out = ((top * (256 - fy) + bottom * fy + (1 << 15)) >> 16) as u8;
        }
    }
}

/// Converts camera pictures to the encoder's size, keeping its scratch buffers between
/// pictures: no allocation per picture once the sizes are known.
#[derive(Debug, Default)]
pub struct Converter {
    /// The picture at the camera's size, when it must then be scaled.
    unscaled: Option<I420Frame>,
    /// A JPEG's decoded YCbCr.
    ycbcr: Vec<u8>,
}

impl Converter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes `raw` into `out`, scaling when the sizes differ (beyond an odd last
    /// row or column, which is cropped).
    pub fn convert(&mut self, raw: &RawFrame<'_>, out: &mut I420Frame) -> Result<(), ConvertError> {
        let (mut width, mut height) = (raw.width, raw.height);
        if raw.format == PixelFormat::Mjpeg {
            let (w, h) = decode_jpeg(raw.data, &mut self.ycbcr)?;
            if (w, h) != (width, height) && width != 0 {
                return Err(ConvertError::JpegSize {
                    got_w: w,
                    got_h: h,
                    want_w: width,
                    want_h: height,
                });
            }
            (width, height) = (w, h);
        }
        let (ew, eh) = (width & !1, height & !1);
        if ew < 2 || eh < 2 {
            return Err(ConvertError::TooSmall { width, height });
        }
        let stride = infer_stride(raw.format, width, height, raw.data.len());
        let write = |target: &mut I420Frame, ycbcr: &[u8]| match raw.format {
            PixelFormat::Yuyv => yuyv_to_i420(raw.data, stride, width, height, target),
            PixelFormat::Nv12 => nv12_to_i420(raw.data, stride, width, height, target),
            PixelFormat::Mjpeg => ycbcr444_to_i420(ycbcr, width, height, target),
        };
        if (ew, eh) == (out.width, out.height) {
            return write(out, &self.ycbcr);
        }
        let unscaled = match &mut self.unscaled {
            Some(f) if (f.width, f.height) == (ew, eh) => f,
            slot => slot.insert(I420Frame::new(ew, eh)),
        };
        write(unscaled, &self.ycbcr)?;
        scale_i420(unscaled, out);
        Ok(())
    }
}

/// One format a camera offers: pixel format, size and frame rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mode {
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}x{} @ {} fps",
            self.format, self.width, self.height, self.fps
        )
    }
}

/// The offered mode nearest to the configured size and rate: the size first (the
/// smallest that is at least as large, since scaling down looks better than up; else the
/// largest), then the rate (the lowest at or above the wanted one, else the highest),
/// then the cheapest format to convert (YUYV, NV12, then MJPEG).
pub fn choose_mode(offered: &[Mode], width: u32, height: u32, fps: u32) -> Option<Mode> {
    let want_area = u64::from(width) * u64::from(height);
    offered.iter().copied().min_by_key(|m| {
        let area = u64::from(m.width) * u64::from(m.height);
        let covers = m.width >= width && m.height >= height;
        let size_rank = if covers {
            (0, area - want_area)
        } else {
            (1, u64::MAX - area)
        };
        let fps_rank = if m.fps >= fps {
            (0, m.fps - fps)
        } else {
            (1, fps - m.fps)
        };
        (size_rank, fps_rank, m.format)
    })
}

fn check_fits(w: usize, h: usize, width: usize, height: usize) -> Result<(), ConvertError> {
    if w < 2 || h < 2 || w > width || h > height {
        return Err(ConvertError::TooSmall { width, height });
    }
    Ok(())
}

fn short(
    format: PixelFormat,
    width: usize,
    height: usize,
    needed: usize,
    got: usize,
) -> ConvertError {
    ConvertError::Short {
        format,
        width,
        height,
        needed,
        got,
    }
}

fn avg2(a: u8, b: u8) -> u8 {
    (u16::from(a) + u16::from(b)).div_ceil(2) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A picture whose every sample is a known function of its position, so any misplaced
    /// byte shows: Y = 16 + (3x + 7y) mod 220, U = 30 + (5x + y) mod 200, V = 40 + (x + 9y)
    /// mod 190, with chroma given per pixel (4:4:4) and subsampled by the helpers below.
    fn y_at(x: usize, y: usize) -> u8 {
        (16 + (3 * x + 7 * y) % 220) as u8
    }
    fn u_at(x: usize, y: usize) -> u8 {
        (30 + (5 * x + y) % 200) as u8
    }
    fn v_at(x: usize, y: usize) -> u8 {
        (40 + (x + 9 * y) % 190) as u8
    }

    /// YUYV with chroma taken at each pair's left pixel, rows padded to `stride`.
    fn make_yuyv(width: usize, height: usize, stride: usize) -> Vec<u8> {
        let mut buf = vec![0xEE; stride * height];
        for y in 0..height {
            for pair in 0..width.div_ceil(2) {
                let x = 2 * pair;
                let o = y * stride + 4 * pair;
                buf[o] = y_at(x, y);
                buf[o + 1] = u_at(x, y);
                buf[o + 2] = if x + 1 < width { y_at(x + 1, y) } else { 0 };
                buf[o + 3] = v_at(x, y);
            }
        }
        buf
    }

    /// NV12 with chroma taken at each 2x2 block's top-left pixel.
    fn make_nv12(width: usize, height: usize, stride: usize) -> Vec<u8> {
        let mut buf = vec![0xEE; stride * height + stride * height.div_ceil(2)];
        for y in 0..height {
            for x in 0..width {
                buf[y * stride + x] = y_at(x, y);
            }
        }
        for cy in 0..height.div_ceil(2) {
            for cx in 0..width.div_ceil(2) {
                let o = stride * height + cy * stride + 2 * cx;
                buf[o] = u_at(2 * cx, 2 * cy);
                buf[o + 1] = v_at(2 * cx, 2 * cy);
            }
        }
        buf
    }

    fn check_luma(f: &I420Frame) {
        for y in 0..f.height {
            for x in 0..f.width {
                assert_eq!(f.y()[y * f.width + x], y_at(x, y), "Y at {x},{y}");
            }
        }
    }

    #[test]
    fn yuyv_gives_exact_luma_and_vertically_averaged_chroma() {
        for (w, h, pad) in [
            (8, 6, 0),
            (640, 480, 0),
            (22, 10, 24),
            (10, 7, 0),
            (14, 9, 12),
        ] {
            let stride = w * 2 + pad;
            let src = make_yuyv(w, h, stride);
            let mut out = I420Frame::new(w & !1, h & !1);
            yuyv_to_i420(&src, stride, w, h, &mut out).unwrap();
            check_luma(&out);
            let cw = out.width / 2;
            for cy in 0..out.height / 2 {
                for cx in 0..cw {
                    let (x, y) = (2 * cx, 2 * cy);
                    let mean = |f: fn(usize, usize) -> u8| {
                        (u16::from(f(x, y)) + u16::from(f(x, y + 1))).div_ceil(2) as u8
                    };
                    assert_eq!(out.u()[cy * cw + cx], mean(u_at), "U {cx},{cy} in {w}x{h}");
                    assert_eq!(out.v()[cy * cw + cx], mean(v_at), "V {cx},{cy} in {w}x{h}");
                }
            }
        }
    }

    #[test]
    fn nv12_splits_chroma_and_honours_the_stride() {
        for (w, h, pad) in [(8, 6, 0), (640, 480, 0), (16, 8, 16), (11, 7, 5)] {
            let stride = w + pad;
            let src = make_nv12(w, h, stride);
            let mut out = I420Frame::new(w & !1, h & !1);
            nv12_to_i420(&src, stride, w, h, &mut out).unwrap();
            check_luma(&out);
            let cw = out.width / 2;
            for cy in 0..out.height / 2 {
                for cx in 0..cw {
                    assert_eq!(out.u()[cy * cw + cx], u_at(2 * cx, 2 * cy));
                    assert_eq!(out.v()[cy * cw + cx], v_at(2 * cx, 2 * cy));
                }
            }
        }
    }

    #[test]
    fn short_buffers_are_errors_not_panics() {
        let mut out = I420Frame::new(8, 6);
        let yuyv = make_yuyv(8, 6, 16);
        for len in [0, 1, 50, yuyv.len() - 1] {
            assert!(matches!(
                yuyv_to_i420(&yuyv[..len], 16, 8, 6, &mut out),
                Err(ConvertError::Short { .. })
            ));
        }
        let nv12 = make_nv12(8, 6, 8);
        assert!(nv12_to_i420(&nv12[..nv12.len() - 1], 8, 8, 6, &mut out).is_err());
        assert!(
            nv12_to_i420(&nv12, 4, 8, 6, &mut out).is_err(),
            "stride < width"
        );
        assert!(ycbcr444_to_i420(&[0; 10], 8, 6, &mut out).is_err());
        // A destination larger than the source is refused too.
        assert!(yuyv_to_i420(&yuyv, 16, 4, 4, &mut out).is_err());
        let raw = RawFrame {
            format: PixelFormat::Mjpeg,
            width: 8,
            height: 6,
            data: b"not a jpeg",
        };
        assert!(matches!(
            Converter::new().convert(&raw, &mut out),
            Err(ConvertError::Jpeg(_))
        ));
    }

    #[test]
    fn the_stride_is_inferred_from_the_buffer_length() {
        assert_eq!(
            infer_stride(PixelFormat::Yuyv, 640, 480, 640 * 2 * 480),
            1280
        );
        assert_eq!(
            infer_stride(PixelFormat::Yuyv, 630, 480, 640 * 2 * 480),
            1280
        );
        assert_eq!(infer_stride(PixelFormat::Nv12, 630, 480, 640 * 720), 640);
        assert_eq!(
            infer_stride(PixelFormat::Nv12, 640, 480, 640 * 720 + 3),
            640
        );
        // A length that means no sane padding falls back to tight rows.
        assert_eq!(
            infer_stride(PixelFormat::Yuyv, 640, 480, 4096 * 2 * 480),
            1280
        );
        assert_eq!(infer_stride(PixelFormat::Yuyv, 640, 0, 100), 1280);
    }

    #[test]
    fn full_range_is_squeezed_to_video_range() {
        assert_eq!(
            (RANGE.luma[0], RANGE.luma[255], RANGE.luma[128]),
            (16, 235, 126)
        );
        assert_eq!(
            (RANGE.chroma[0], RANGE.chroma[255], RANGE.chroma[128]),
            (16, 240, 128)
        );
        let mut out = I420Frame::new(2, 2);
        // Four pixels, full-range Y 0, 255, 0, 255; chroma averaging to 100 and 200.
        let px = [0, 90, 190, 255, 110, 210, 0, 90, 190, 255, 110, 210];
        ycbcr444_to_i420(&px, 2, 2, &mut out).unwrap();
        assert_eq!(out.y(), [16, 235, 16, 235]);
        assert_eq!(out.u(), [RANGE.chroma[100]]);
        assert_eq!(out.v(), [RANGE.chroma[200]]);
    }

    /// A real JPEG of a known picture: left half one colour, right half another, made by
    /// the `jpeg-encoder` crate with 4:2:2 (what UVC cameras send) or 4:2:0 chroma.
    fn make_jpeg(w: u16, h: u16, sampling: jpeg_encoder::SamplingFactor) -> Vec<u8> {
        let mut ycbcr = Vec::with_capacity(usize::from(w) * usize::from(h) * 3);
        for _y in 0..h {
            for x in 0..w {
                ycbcr.extend_from_slice(if x < w / 2 {
                    &[60, 90, 200]
                } else {
                    &[200, 170, 60]
                });
            }
        }
        let mut out = Vec::new();
        let mut enc = jpeg_encoder::Encoder::new(&mut out, 95);
        enc.set_sampling_factor(sampling);
        enc.encode(&ycbcr, w, h, jpeg_encoder::ColorType::Ycbcr)
            .unwrap();
        out
    }

    #[test]
    fn mjpeg_decodes_to_the_picture_it_encodes_in_video_range() {
        use jpeg_encoder::SamplingFactor;
        for (w, h, s) in [
            (64, 48, SamplingFactor::F_2_1),
            (64, 48, SamplingFactor::F_2_2),
            (38, 23, SamplingFactor::F_2_1),
        ] {
            let jpeg = make_jpeg(w, h, s);
            let (w, h) = (usize::from(w), usize::from(h));
            let raw = RawFrame {
                format: PixelFormat::Mjpeg,
                width: w,
                height: h,
                data: &jpeg,
            };
            let mut out = I420Frame::new(w & !1, h & !1);
            Converter::new().convert(&raw, &mut out).unwrap();
            // Away from the edge between the halves (JPEG blurs it), the values are the
            // encoded ones mapped to video range, within JPEG's rounding.
            let near = |got: u8, want: u8, what: &str| {
                assert!(
                    got.abs_diff(want) <= 3,
                    "{what}: {got} vs {want} in {w}x{h}"
                );
            };
            let (ow, cw) = (out.width, out.width / 2);
            for y in 0..out.height {
                near(out.y()[y * ow + 2], RANGE.luma[60], "left Y");
                near(out.y()[y * ow + ow - 3], RANGE.luma[200], "right Y");
            }
            for cy in 0..out.height / 2 {
                near(out.u()[cy * cw + 1], RANGE.chroma[90], "left U");
                near(out.v()[cy * cw + 1], RANGE.chroma[200], "left V");
                near(out.u()[cy * cw + cw - 2], RANGE.chroma[170], "right U");
                near(out.v()[cy * cw + cw - 2], RANGE.chroma[60], "right V");
            }
        }
    }

    #[test]
    fn a_jpeg_of_another_size_than_negotiated_is_an_error() {
        let jpeg = make_jpeg(32, 16, jpeg_encoder::SamplingFactor::F_2_1);
        let raw = RawFrame {
            format: PixelFormat::Mjpeg,
            width: 64,
            height: 48,
            data: &jpeg,
        };
        let mut out = I420Frame::new(64, 48);
        assert!(matches!(
            Converter::new().convert(&raw, &mut out),
            Err(ConvertError::JpegSize { got_w: 32, .. })
        ));
    }

    #[test]
    fn scaling_keeps_flat_areas_and_corners_and_the_gradient() {
        let mut src = I420Frame::new(8, 4);
        {
            let (y, u, v) = src.planes_mut();
            for (i, p) in y.iter_mut().enumerate() {
                *p = (16 + 20 * (i % 8)) as u8; // a horizontal ramp
            }
            u.fill(90);
            v.fill(200);
        }
        let mut up = I420Frame::new(16, 8);
        scale_i420(&src, &mut up);
        assert!(up.u().iter().all(|&c| c == 90) && up.v().iter().all(|&c| c == 200));
        let row = &up.y()[..16];
        assert_eq!((row[0], row[15]), (16, 156), "corners map onto corners");
        assert!(
            row.windows(2).all(|p| p[0] <= p[1]),
            "the ramp stays a ramp: {row:?}"
        );
        let mut down = I420Frame::new(4, 2);
        scale_i420(&src, &mut down);
        assert_eq!(
            &down.y()[..4],
            [26, 66, 106, 146],
            "2:1 takes the mean of each pair"
        );
        let mut same = I420Frame::new(8, 4);
        scale_i420(&src, &mut same);
        assert_eq!(same, src);
    }

    #[test]
    fn the_converter_scales_when_the_camera_size_differs() {
        let src = make_yuyv(16, 12, 32);
        let raw = RawFrame {
            format: PixelFormat::Yuyv,
            width: 16,
            height: 12,
            data: &src,
        };
        let mut direct = I420Frame::new(16, 12);
        let mut conv = Converter::new();
        conv.convert(&raw, &mut direct).unwrap();
        check_luma(&direct);
        let mut scaled = I420Frame::new(8, 6);
        conv.convert(&raw, &mut scaled).unwrap();
        let mut expected = I420Frame::new(8, 6);
        scale_i420(&direct, &mut expected);
        assert_eq!(scaled, expected);
        let tiny = RawFrame {
            width: 1,
            height: 12,
            ..raw
        };
        assert!(matches!(
            conv.convert(&tiny, &mut direct),
            Err(ConvertError::TooSmall { .. })
        ));
    }

    #[test]
    fn the_nearest_mode_wins() {
        use PixelFormat::*;
        let m = |format, width, height, fps| Mode {
            format,
            width,
            height,
            fps,
        };
        let offered = [
            m(Mjpeg, 1280, 720, 30),
            m(Yuyv, 1280, 720, 10),
            m(Yuyv, 640, 480, 30),
            m(Mjpeg, 640, 480, 30),
            m(Yuyv, 320, 240, 30),
            m(Nv12, 800, 600, 15),
        ];
        assert_eq!(
            choose_mode(&offered, 640, 480, 30),
            Some(offered[2]),
            "exact, cheapest"
        );
        assert_eq!(
            choose_mode(&offered, 1280, 720, 30),
            Some(offered[0]),
            "rate beats format"
        );
        assert_eq!(
            choose_mode(&offered, 1920, 1080, 30),
            Some(offered[0]),
            "largest when none covers"
        );
        assert_eq!(
            choose_mode(&offered, 700, 500, 15),
            Some(offered[5]),
            "smallest that covers"
        );
        assert_eq!(choose_mode(&offered, 160, 120, 60), Some(offered[4]));
        assert_eq!(choose_mode(&[], 640, 480, 30), None);
    }

    /// The pattern as a camera would send it, in each format (chroma repeated for YUYV's
    /// second row, JPEG from the I420 upsampled to 4:4:4).
    fn camera_bytes(f: &I420Frame, format: PixelFormat) -> Vec<u8> {
        let (w, h, cw) = (f.width, f.height, f.width / 2);
        let c = |x: usize, y: usize| (y / 2) * cw + x / 2;
        match format {
            PixelFormat::Yuyv => (0..h)
                .flat_map(|y| (0..w).step_by(2).map(move |x| (x, y)))
                .flat_map(|(x, y)| {
                    [
                        f.y()[y * w + x],
                        f.u()[c(x, y)],
                        f.y()[y * w + x + 1],
                        f.v()[c(x, y)],
                    ]
                })
                .collect(),
            PixelFormat::Nv12 => {
                let mut out = f.y().to_vec();
                out.extend(f.u().iter().zip(f.v()).flat_map(|(u, v)| [*u, *v]));
                out
            }
            PixelFormat::Mjpeg => {
                // Full range in the JPEG, as a camera's: the inverse of RANGE.
                let full = |v: u8, lo: f64, span: f64| {
                    ((f64::from(v) - lo) * 255.0 / span)
                        .round()
                        .clamp(0.0, 255.0) as u8
                };
                let mut ycbcr = Vec::with_capacity(w * h * 3);
                for y in 0..h {
                    for x in 0..w {
                        ycbcr.extend_from_slice(&[
                            full(f.y()[y * w + x], 16.0, 219.0),
                            full(f.u()[c(x, y)], 16.0, 224.0),
                            full(f.v()[c(x, y)], 16.0, 224.0),
                        ]);
                    }
                }
                let mut out = Vec::new();
                let mut enc = jpeg_encoder::Encoder::new(&mut out, 95);
                enc.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_1);
                enc.encode(&ycbcr, w as u16, h as u16, jpeg_encoder::ColorType::Ycbcr)
                    .unwrap();
                out
            }
        }
    }

    fn psnr(a: &[u8], b: &[u8]) -> f64 {
        let mse = a
            .iter()
            .zip(b)
            .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
            .sum::<f64>()
            / a.len() as f64;
        10.0 * (255.0 * 255.0 / mse.max(1e-9)).log10()
    }

    /// Encodes with roverd's encoder, undoes the RTP packetization, decodes with openh264.
    fn round_trip(frame: &I420Frame) -> I420Frame {
        use crate::media::video::{VideoEncoder, VideoSettings};
        use openh264::formats::YUVSource;
        use rtc::rtp::packetizer::Depacketizer;
        let settings = VideoSettings {
            width: frame.width as u32,
            height: frame.height as u32,
            fps: 30,
            bitrate_kbps: 1200,
            keyframe_interval_s: 2.0,
        };
        let mut encoder = VideoEncoder::new(&settings).unwrap();
        encoder.force_keyframe();
        let (payloads, keyframe) = encoder.encode(frame).unwrap().unwrap();
        assert!(keyframe);
        let mut depacketizer = rtc::rtp::codec::h264::H264Packet::default();
        let mut au = Vec::new();
        for p in &payloads {
            au.extend_from_slice(&depacketizer.depacketize(p).unwrap());
        }
        let mut decoder = openh264::decoder::Decoder::new().unwrap();
        let decoded = decoder.decode(&au).unwrap().unwrap();
        let (w, h) = decoded.dimensions();
        let (ys, us, vs) = decoded.strides();
        let mut out = I420Frame::new(w, h);
        let (y, u, v) = out.planes_mut();
        for row in 0..h {
            y[row * w..][..w].copy_from_slice(&decoded.y()[row * ys..][..w]);
        }
        for row in 0..h / 2 {
            u[row * w / 2..][..w / 2].copy_from_slice(&decoded.u()[row * us..][..w / 2]);
            v[row * w / 2..][..w / 2].copy_from_slice(&decoded.v()[row * vs..][..w / 2]);
        }
        out
    }

    #[test]
    fn each_format_survives_conversion_the_encoder_and_the_decoder() {
        use crate::media::pattern::{read_stamp, render_test_pattern};
        let mut original = I420Frame::new(640, 480);
        render_test_pattern(&mut original, 42, 0x1234_5678);
        for format in [PixelFormat::Yuyv, PixelFormat::Nv12, PixelFormat::Mjpeg] {
            let bytes = camera_bytes(&original, format);
            let raw = RawFrame {
                format,
                width: 640,
                height: 480,
                data: &bytes,
            };
            let mut converted = I420Frame::new(640, 480);
            Converter::new().convert(&raw, &mut converted).unwrap();
            let conv_db = psnr(converted.y(), original.y());
            if format != PixelFormat::Mjpeg {
                assert_eq!(converted, original, "{format} is lossless");
            } else {
                assert!(conv_db > 35.0, "{format} luma {conv_db:.1} dB");
                assert!(psnr(converted.v(), original.v()) > 30.0, "{format} chroma");
            }
            let decoded = round_trip(&converted);
            assert_eq!((decoded.width, decoded.height), (640, 480));
            let y_db = psnr(decoded.y(), original.y());
            let u_db = psnr(decoded.u(), original.u());
            let v_db = psnr(decoded.v(), original.v());
            assert!(
                y_db > 30.0 && u_db > 30.0 && v_db > 30.0,
                "{format}: Y {y_db:.1}, U {u_db:.1}, V {v_db:.1} dB"
            );
            assert_eq!(
                read_stamp(decoded.y(), 640, 640, 480),
                Some(0x1234_5678),
                "{format}"
            );
        }
    }

    #[test]
    fn a_larger_camera_picture_is_scaled_to_the_configured_size_and_encodes() {
        use crate::media::pattern::{read_stamp, render_test_pattern};
        let mut original = I420Frame::new(1280, 720);
        render_test_pattern(&mut original, 7, 0x0bad_cafe);
        let bytes = camera_bytes(&original, PixelFormat::Yuyv);
        let raw = RawFrame {
            format: PixelFormat::Yuyv,
            width: 1280,
            height: 720,
            data: &bytes,
        };
        let mut out = I420Frame::new(640, 480);
        Converter::new().convert(&raw, &mut out).unwrap();
        let decoded = round_trip(&out);
        assert_eq!((decoded.width, decoded.height), (640, 480));
        // The bar code spans the full width, so it survives the squeeze.
        assert_eq!(read_stamp(decoded.y(), 640, 640, 480), Some(0x0bad_cafe));
    }
}
