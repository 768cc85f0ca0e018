//! Helpers shared by the codec integration tests.

#![allow(dead_code)] // Each test binary uses its own subset.

use capture::{Frame, PixelLayout, read_marker, render_synthetic};
use codec::{ContentType, DecodedFrame, EncodedFrame, Encoder, EncoderConfig};

/// A fixed, plausible capture time for frame `n` (30 fps from 2025-11-22).
pub fn stamp(n: u64) -> u64 {
    1_763_800_000_000_000 + n * 33_333
}

pub fn config(width: u32, height: u32, bitrate_bps: u32) -> EncoderConfig {
    EncoderConfig {
        width,
        height,
        bitrate_bps,
        max_fps: 30.0,
        content: ContentType::Screen,
    }
}

/// Renders and encodes synthetic frames `0..count`, returning each source frame with its encoding.
pub fn encode_synthetic(cfg: EncoderConfig, count: u64) -> Vec<(Frame, EncodedFrame)> {
    let mut encoder = Encoder::new(cfg).expect("valid config");
    (0..count)
        .map(|n| {
            let frame = render_synthetic(cfg.width, cfg.height, n, stamp(n));
            let encoded = encoder
                .encode(&frame.data, frame.stride, false)
                .expect("encode");
            (frame, encoded)
        })
        .collect()
}

/// The marker in a decoded picture.
pub fn decoded_marker(decoded: &DecodedFrame) -> Option<(u64, u64)> {
    read_marker(
        &decoded.rgba,
        decoded.width,
        decoded.height,
        decoded.width as usize * 4,
        PixelLayout::Rgba,
    )
    .map(|m| (m.frame_no, m.captured_at_us))
}

/// A deterministic xorshift generator for noise and garbage.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| (self.next_u64() >> 32) as u8).collect()
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}
