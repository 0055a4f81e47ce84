//! The conversions on synthetic pictures and real JPEGs, and the mode choice.

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

/// A real JPEG whose frame header is changed to claim `w`x`h`.
fn jpeg_claiming(w: u16, h: u16) -> Vec<u8> {
    let mut jpeg = make_jpeg(16, 16, jpeg_encoder::SamplingFactor::F_2_1);
    let sof = jpeg
        .windows(2)
        .position(|m| m == [0xFF, 0xC0])
        .expect("a baseline frame header");
    jpeg[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    jpeg
}

#[test]
fn a_huge_jpeg_header_is_refused_before_anything_is_allocated() {
    let jpeg = jpeg_claiming(16384, 16384);
    assert_eq!(jpeg_size(&jpeg), Some((16384, 16384)));
    let raw = RawFrame {
        format: PixelFormat::Mjpeg,
        width: 640,
        height: 480,
        data: &jpeg,
    };
    let mut out = I420Frame::new(640, 480);
    let mut converter = Converter::new();
    let start = std::time::Instant::now();
    let result = converter.convert(&raw, &mut out);
    let took = start.elapsed();
    let err = result.expect_err("a 16384x16384 JPEG from a 640x480 camera");
    assert!(
        err.to_string().contains("16384x16384"),
        "the error names the size: {err}"
    );
    // 16384² YCbCr would be 768 MiB: the scratch buffer was never grown for it.
    assert!(
        converter.ycbcr.capacity() < 1 << 20,
        "allocated {} bytes for a refused picture",
        converter.ycbcr.capacity()
    );
    assert!(
        took < std::time::Duration::from_millis(200),
        "took {took:?}"
    );
    // Without a negotiated size, the 8K cap refuses it the same way.
    let mut scratch = Vec::new();
    let err = decode_jpeg(&jpeg, None, &mut scratch).expect_err("over 8K");
    assert!(err.to_string().contains("16384x16384"), "{err}");
    assert_eq!(scratch.capacity(), 0);
    // A header that fits is still decoded.
    let fine = make_jpeg(32, 16, jpeg_encoder::SamplingFactor::F_2_1);
    assert_eq!(decode_jpeg(&fine, None, &mut scratch), Ok((32, 16)));
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
    use crate::media::pattern::render_test_pattern;
    use crate::media::stamp::read_stamp;
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
    use crate::media::pattern::render_test_pattern;
    use crate::media::stamp::read_stamp;
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
