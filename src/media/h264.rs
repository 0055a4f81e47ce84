//! What roverd says about its H.264 stream, and making the stream say the same.
//!
//! openh264 writes Constrained Baseline with constraint flags `c0` and a level picked from
//! the picture size. Browsers negotiate Constrained Baseline as `42e0xx`, and webrtc-rs only
//! pairs codecs whose profile bytes are equal, so roverd advertises `42e0` with a level
//! computed from the configured size and rate, and rewrites the SPS header bytes of each
//! keyframe to match. Setting `constraint_set2` is truthful: Constrained Baseline is exactly
//! the part of Baseline that Main decoders also accept. Safari checks that what is sent is
//! what was advertised; after the rewrite it is, byte for byte.

/// `profile_idc` 66 (Baseline) with constraint_set0, set1 and set2: Constrained Baseline.
const PROFILE_IDC: u8 = 0x42;
const CONSTRAINTS: u8 = 0xe0;

/// H.264 levels (Table A-1) as `(level_idc, max macroblocks per second, max frame size in
/// macroblocks)`, the ones a Pi camera can plausibly need.
const LEVELS: &[(u8, u32, u32)] = &[
    (30, 40_500, 1_620),
    (31, 108_000, 3_600),
    (32, 216_000, 5_120),
    (40, 245_760, 8_192),
    (42, 522_240, 8_704),
    (50, 589_824, 22_080),
    (51, 983_040, 36_864),
];

/// The smallest level that allows `width`x`height` at `fps`, but never below 3.1, which is
/// what every browser offers and expects to see.
pub fn level_idc(width: u32, height: u32, fps: u32) -> u8 {
    let mbs = width.div_ceil(16) * height.div_ceil(16);
    let mbps = mbs.saturating_mul(fps);
    LEVELS
        .iter()
        .find(|&&(idc, max_mbps, max_fs)| idc >= 31 && mbps <= max_mbps && mbs <= max_fs)
        .map_or(51, |&(idc, _, _)| idc)
}

/// The SDP `profile-level-id` for the stream roverd sends, e.g. `42e01f`.
pub fn profile_level_id(level_idc: u8) -> String {
    format!("{PROFILE_IDC:02x}{CONSTRAINTS:02x}{level_idc:02x}")
}

/// The fmtp line roverd registers: packetization-mode 1 (FU-A, so frames are not limited to
/// one MTU) and the profile above.
pub fn fmtp_line(level_idc: u8) -> String {
    format!(
        "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id={}",
        profile_level_id(level_idc)
    )
}

/// Rewrites the profile bytes of every SPS in an Annex-B access unit so they read
/// `42 e0 <level_idc>`. Returns how many SPS NAL units were rewritten.
///
/// The three bytes right after the SPS NAL header are fixed-length fields, so no
/// emulation-prevention bytes can sit among them and they can be rewritten in place.
pub fn rewrite_sps_profile(annexb: &mut [u8], level_idc: u8) -> usize {
    let starts: Vec<usize> = nal_starts(annexb).collect();
    let mut rewritten = 0;
    for start in starts {
        let is_sps = annexb.get(start).is_some_and(|h| h & 0x1f == 7);
        if is_sps && start + 3 < annexb.len() {
            annexb[start + 1] = PROFILE_IDC;
            annexb[start + 2] = CONSTRAINTS;
            annexb[start + 3] = level_idc;
            rewritten += 1;
        }
    }
    rewritten
}

/// Offsets of the first byte (the NAL header) of every NAL unit in an Annex-B stream.
pub fn nal_starts(annexb: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        while i + 3 <= annexb.len() {
            if annexb[i] == 0 && annexb[i + 1] == 0 && annexb[i + 2] == 1 {
                i += 3;
                return Some(i);
            }
            i += 1;
        }
        None
    })
}

/// The NAL unit types in an Annex-B access unit, in order (7 SPS, 8 PPS, 5 IDR slice, 1 slice).
#[cfg(test)]
pub fn nal_types(annexb: &[u8]) -> Vec<u8> {
    nal_starts(annexb)
        .filter_map(|s| annexb.get(s).map(|h| h & 0x1f))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_follows_size_and_rate_with_a_floor_of_3_1() {
        assert_eq!(level_idc(320, 240, 30), 31);
        assert_eq!(level_idc(640, 480, 30), 31);
        assert_eq!(level_idc(1280, 720, 30), 31);
        assert_eq!(level_idc(1280, 720, 60), 32);
        assert_eq!(level_idc(1920, 1080, 30), 40);
        assert_eq!(level_idc(4096, 2304, 30), 51);
        assert_eq!(profile_level_id(31), "42e01f");
    }

    #[test]
    fn sps_profile_bytes_are_rewritten_and_nothing_else() {
        // SPS (67 42 c0 1e ...), PPS (68 ...), IDR slice (65 ...).
        let mut au = vec![
            0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80, 0, 0,
            1, 0x65, 0x88, 0x84,
        ];
        let original = au.clone();
        assert_eq!(rewrite_sps_profile(&mut au, 31), 1);
        assert_eq!(&au[5..8], &[0x42, 0xe0, 0x1f]);
        assert_eq!(&au[8..], &original[8..]);
        assert_eq!(nal_types(&au), vec![7, 8, 5]);
    }

    #[test]
    fn a_p_frame_has_no_sps_to_rewrite() {
        let mut au = vec![0, 0, 0, 1, 0x41, 0x9a, 0x02];
        assert_eq!(rewrite_sps_profile(&mut au, 31), 0);
        assert_eq!(au, vec![0, 0, 0, 1, 0x41, 0x9a, 0x02]);
    }
}
