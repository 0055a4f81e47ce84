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

use crate::media::frame::I420Frame;
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
/// 32 or 64 bytes) and only the buffer reaches the converter, so it is worked out from the
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

/// The largest JPEG decoded when the camera's size is not known: 8K.
pub const MAX_JPEG_SIDE: usize = 8192;

/// Decodes one MJPEG picture to YCbCr in `scratch` (reused between pictures) and returns
/// its size. The decoder is told to keep YCbCr: no RGB step.
///
/// `expect` is the size the camera was set to (`None`: any up to [`MAX_JPEG_SIDE`]). The
/// header is read first and a picture of another size is refused before anything is
/// allocated for it: a corrupt or hostile header claiming 16384×16384 would otherwise
/// cost 800 MB.
pub fn decode_jpeg(
    jpeg: &[u8],
    expect: Option<(usize, usize)>,
    scratch: &mut Vec<u8>,
) -> Result<(usize, usize), ConvertError> {
    let (max_w, max_h) = expect.unwrap_or((MAX_JPEG_SIDE, MAX_JPEG_SIDE));
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::YCbCr)
        .set_max_width(max_w.max(1))
        .set_max_height(max_h.max(1));
    let mut decoder = JpegDecoder::new_with_options(jpeg, options);
    // The header's size, read before the decoder (whose own limit check words it less
    // well) or this function allocates anything for the picture.
    if let Some((got_w, got_h)) = jpeg_size(jpeg) {
        let fits = match expect {
            Some(want) => (got_w, got_h) == want,
            None => got_w <= max_w && got_h <= max_h,
        };
        if !fits {
            return Err(ConvertError::JpegSize {
                got_w,
                got_h,
                want_w: max_w,
                want_h: max_h,
            });
        }
    }
    decoder
        .decode_headers()
        .map_err(|e| ConvertError::Jpeg(e.to_string()))?;
    let info = decoder
        .info()
        .ok_or_else(|| ConvertError::Jpeg("no image header".into()))?;
    let (w, h) = (usize::from(info.width), usize::from(info.height));
    if let Some(want) = expect.filter(|&want| want != (w, h)) {
        return Err(ConvertError::JpegSize {
            got_w: w,
            got_h: h,
            want_w: want.0,
            want_h: want.1,
        });
    }
    let size = decoder
        .output_buffer_size()
        .ok_or_else(|| ConvertError::Jpeg("no image size".into()))?;
    scratch.resize(size, 0);
    // zune-jpeg checks some invariants of its bit reader with debug assertions only, and a
    // corrupt scan can trip one (found by the `convert` fuzz target): in a build with debug
    // assertions that picture must be refused like any other that does not decode, not end
    // the capture thread. Without them the decoder saturates and goes on.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        decoder.decode_into(scratch)
    }));
    match decoded {
        Ok(result) => result.map_err(|e| ConvertError::Jpeg(e.to_string()))?,
        Err(_) => {
            return Err(ConvertError::Jpeg(
                "the decoder gave up on a corrupt scan".into(),
            ))
        }
    }
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

/// The width and height in a JPEG's first start-of-frame header, if it has one: a walk
/// over the marker segments, reading nothing but their lengths.
fn jpeg_size(jpeg: &[u8]) -> Option<(usize, usize)> {
    let mut i = 2; // after SOI
    if jpeg.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    loop {
        // Fill bytes (0xFF) may precede a marker.
        while *jpeg.get(i)? == 0xFF && *jpeg.get(i + 1)? == 0xFF {
            i += 1;
        }
        if *jpeg.get(i)? != 0xFF {
            return None;
        }
        let marker = *jpeg.get(i + 1)?;
        let len = usize::from(u16::from_be_bytes([*jpeg.get(i + 2)?, *jpeg.get(i + 3)?]));
        // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
        if (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            let h = u16::from_be_bytes([*jpeg.get(i + 5)?, *jpeg.get(i + 6)?]);
            let w = u16::from_be_bytes([*jpeg.get(i + 7)?, *jpeg.get(i + 8)?]);
            return Some((usize::from(w), usize::from(h)));
        }
        if marker == 0xDA || len < 2 {
            return None; // the scan started without a frame header
        }
        i += 2 + len;
    }
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
            let expect = (width != 0).then_some((width, height));
            (width, height) = decode_jpeg(raw.data, expect, &mut self.ycbcr)?;
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
mod tests;
