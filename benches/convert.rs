//! Camera conversion cost against encode cost: `cargo bench --bench convert`.
//!
//! For 640x480 and 1280x720, the time to turn one YUYV, NV12 or MJPEG (4:2:2, quality 85)
//! picture into the encoder's I420 (`media::convert::Converter`, as the capture thread
//! does), against the time roverd's `VideoEncoder` takes to encode the same pictures
//! (openh264, one thread, 1.2 / 2.5 Mbps). The goal is under 10 % of the encode time; MJPEG
//! includes the JPEG decode, which no camera-side setting avoids.
//!
//! The pictures are the moving test pattern, so the encoder sees motion as it would live;
//! being mostly flat, the pattern encodes faster than a real camera's noisy picture, so
//! the shares printed here are upper bounds. Each input picture is a different buffer, as
//! a camera's DMA buffers are (cold in the cache). Conversion runs on the capture thread,
//! beside the encoder thread, so on a multi-core Pi it adds CPU but not latency to the
//! encode. The machine may be shared: each figure is the median of 5 runs.

use roverd::testing::render_test_pattern;
use roverd::testing::I420Frame;
use roverd::testing::{Converter, PixelFormat, RawFrame};
use roverd::testing::{VideoEncoder, VideoSettings};
use std::time::{Duration, Instant};

const FRAMES: usize = 60;
const RUNS: usize = 5;

fn to_yuyv(f: &I420Frame) -> Vec<u8> {
    let (w, h, cw) = (f.width, f.height, f.width / 2);
    let mut out = Vec::with_capacity(w * h * 2);
    for y in 0..h {
        for x in (0..w).step_by(2) {
            let c = (y / 2) * cw + x / 2;
            out.extend_from_slice(&[f.y()[y * w + x], f.u()[c], f.y()[y * w + x + 1], f.v()[c]]);
        }
    }
    out
}

fn to_nv12(f: &I420Frame) -> Vec<u8> {
    let mut out = f.y().to_vec();
    for (u, v) in f.u().iter().zip(f.v()) {
        out.extend_from_slice(&[*u, *v]);
    }
    out
}

fn to_jpeg(f: &I420Frame) -> Vec<u8> {
    let (w, h, cw) = (f.width, f.height, f.width / 2);
    let mut ycbcr = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let c = (y / 2) * cw + x / 2;
            ycbcr.extend_from_slice(&[f.y()[y * w + x], f.u()[c], f.v()[c]]);
        }
    }
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, 85);
    enc.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_1);
    enc.encode(&ycbcr, w as u16, h as u16, jpeg_encoder::ColorType::Ycbcr)
        .expect("encode JPEG");
    out
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Median over runs of the mean time per picture of `body` over all pictures.
fn per_frame(mut body: impl FnMut(usize)) -> Duration {
    median(
        (0..RUNS)
            .map(|_| {
                let start = Instant::now();
                for i in 0..FRAMES {
                    body(i);
                }
                start.elapsed() / FRAMES as u32
            })
            .collect(),
    )
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    println!("conversion to I420 vs openh264 encode, per picture (median of {RUNS} runs of {FRAMES} pictures)");
    let mut summary = Vec::new();
    for (w, h, kbps) in [(640usize, 480usize, 1200u32), (1280, 720, 2500)] {
        let pictures: Vec<I420Frame> = (0..FRAMES)
            .map(|i| {
                let mut f = I420Frame::new(w, h);
                render_test_pattern(&mut f, i as u64, 1_700_000_000_000 + i as u64 * 33);
                f
            })
            .collect();
        let settings = VideoSettings {
            width: w as u32,
            height: h as u32,
            fps: 30,
            bitrate_kbps: kbps,
            keyframe_interval_s: 2.0,
        };
        let mut encoder = VideoEncoder::new(&settings).expect("encoder");
        let encode = per_frame(|i| {
            encoder.encode(&pictures[i]).expect("encode");
        });
        println!("{w}x{h}: encode {:>7.0} µs", encode.as_secs_f64() * 1e6);
        let inputs: [(PixelFormat, Vec<Vec<u8>>); 3] = [
            (PixelFormat::Yuyv, pictures.iter().map(to_yuyv).collect()),
            (PixelFormat::Nv12, pictures.iter().map(to_nv12).collect()),
            (PixelFormat::Mjpeg, pictures.iter().map(to_jpeg).collect()),
        ];
        let mut out = I420Frame::new(w, h);
        let mut converter = Converter::new();
        for (format, raws) in &inputs {
            let took = per_frame(|i| {
                let raw = RawFrame {
                    format: *format,
                    width: w,
                    height: h,
                    data: &raws[i],
                };
                converter.convert(&raw, &mut out).expect("convert");
            });
            let share = took.as_secs_f64() / encode.as_secs_f64() * 100.0;
            println!(
                "{w}x{h}: {format:<4}   {:>7.0} µs  = {share:5.1} % of encode{}",
                took.as_secs_f64() * 1e6,
                if share < 10.0 {
                    ""
                } else {
                    "  (over the 10 % goal)"
                }
            );
            summary.push(format!("{w}x{h} {format}: {share:.1} %"));
        }
        // Scaling, for a camera that cannot give the configured size: 1280x720 YUYV to
        // this size (or 640x480 to this size for the larger one).
        let (sw, sh) = if w == 640 { (1280, 720) } else { (640, 480) };
        let mut src = I420Frame::new(sw, sh);
        render_test_pattern(&mut src, 0, 0);
        let yuyv = to_yuyv(&src);
        let took = per_frame(|_| {
            let raw = RawFrame {
                format: PixelFormat::Yuyv,
                width: sw,
                height: sh,
                data: &yuyv,
            };
            converter.convert(&raw, &mut out).expect("convert");
        });
        println!(
            "{w}x{h}: YUYV {sw}x{sh} scaled  {:>7.0} µs  = {:5.1} % of encode",
            took.as_secs_f64() * 1e6,
            took.as_secs_f64() / encode.as_secs_f64() * 100.0
        );
    }
    println!("summary: {}", summary.join("; "));
}
