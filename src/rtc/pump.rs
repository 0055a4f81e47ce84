//! The RTP pumps: each copies already-packetized payloads from the media fan-out into RTP
//! packets on one peer's track, so a viewer costs a header and SRTP, not an encoder.

use crate::media::audio::AudioPacket;
use crate::media::fanout::{Next, Subscriber};
use crate::media::video::VideoFrame;
use crate::media::Media;
use std::sync::Arc;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;

fn rtp_packet(
    ssrc: u32,
    pt: u8,
    seq: u16,
    timestamp: u32,
    marker: bool,
    payload: bytes::Bytes,
) -> rtc::rtp::Packet {
    rtc::rtp::Packet {
        header: rtc::rtp::header::Header {
            version: 2,
            marker,
            payload_type: pt,
            sequence_number: seq,
            timestamp,
            ssrc,
            ..Default::default()
        },
        payload,
    }
}

/// Pictures a peer waiting for a keyframe lets go by before it asks again: the encoder
/// may skip the very picture it was told to make a keyframe (openh264 skips pictures to
/// hold the bitrate), and the request must not be lost with it.
const ASK_AGAIN_AFTER: u32 = 10;

/// Copies encoded pictures to one peer. After it falls behind, it skips to the next
/// keyframe (asking for one at once, and again every [`ASK_AGAIN_AFTER`] pictures until
/// it comes), because P-frames after a gap only decode to garbage.
pub(super) async fn pump_video(
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    pt: u8,
    mut frames: Subscriber<VideoFrame>,
    media: Arc<Media>,
) {
    let mut seq: u16 = rand::random();
    let mut need_keyframe = true;
    // P-frames let go by since the keyframe was last asked for.
    let mut waited = 0u32;
    media.request_keyframe();
    loop {
        match frames.next().await {
            Next::Item(frame) => {
                if need_keyframe && !frame.keyframe {
                    waited += 1;
                    if waited >= ASK_AGAIN_AFTER {
                        waited = 0;
                        media.request_keyframe();
                    }
                    continue;
                }
                need_keyframe = false;
                waited = 0;
                let last = frame.payloads.len().saturating_sub(1);
                for (i, payload) in frame.payloads.iter().enumerate() {
                    let packet = rtp_packet(
                        ssrc,
                        pt,
                        seq,
                        frame.rtp_timestamp,
                        i == last,
                        payload.clone(),
                    );
                    seq = seq.wrapping_add(1);
                    if let Err(e) = track.write_rtp(packet).await {
                        log::debug!("video track closed: {e}");
                        return;
                    }
                }
            }
            Next::Dropped(n) => {
                log::debug!("a slow peer skipped {n} video frames; waiting for a keyframe");
                need_keyframe = true;
                waited = 0;
                media.request_keyframe();
            }
            Next::Closed => return,
        }
    }
}

pub(super) async fn pump_audio(
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    pt: u8,
    mut packets: Subscriber<AudioPacket>,
) {
    let mut seq: u16 = rand::random();
    loop {
        match packets.next().await {
            Next::Item(p) => {
                let packet = rtp_packet(ssrc, pt, seq, p.rtp_timestamp, false, p.payload);
                seq = seq.wrapping_add(1);
                if let Err(e) = track.write_rtp(packet).await {
                    log::debug!("audio track closed: {e}");
                    return;
                }
            }
            // Audio needs no keyframe: the next packet decodes on its own.
            Next::Dropped(_) => {}
            Next::Closed => return,
        }
    }
}
