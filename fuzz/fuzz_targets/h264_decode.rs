//! The controller decodes whatever H.264 the network delivers: it must never panic, and what it
//! decodes stays within the decoder's size limit.
#![no_main]

use codec::Decode;
use libfuzzer_sys::fuzz_target;
use quicdesk_fuzz::{remember_input, write_seeds_if_asked};

fuzz_target!(
    init: write_seeds_if_asked("h264_decode", seeds),
    |data: &[u8]| {
        // OpenH264 is C++: a heap corruption it causes can hang libFuzzer's crash handler.
        remember_input(data);
        let Ok(mut d) = codec::Decoder::new() else {
            return;
        };
        if let Ok(Some(f)) = d.decode(data) {
            assert!(u64::from(f.width) * u64::from(f.height) <= codec::MAX_DECODED_PIXELS);
        }
        // and again, as a continuation of the same stream, into a reused buffer
        let mut out = codec::DecodedFrame::default();
        if let Ok(true) = d.decode_into(data, &mut out) {
            assert_eq!(out.rgba.len(), out.width as usize * out.height as usize * 4);
        }
    }
);

/// Key frames and a following P-frame from the project's own encoder on synthetic content.
fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (w, h, content) in [
        (64, 48, codec::ContentType::Screen),
        (160, 90, codec::ContentType::Camera),
    ] {
        let mut cfg = codec::EncoderConfig::new(w, h);
        cfg.content = content;
        let mut enc = codec::Encoder::new(cfg).expect("encoder");
        let stride = w as usize * 4;
        for n in 0..2u32 {
            let bgra: Vec<u8> = (0..h)
                .flat_map(|y| {
                    (0..w).flat_map(move |x| {
                        [
                            (x * 4 + n * 8) as u8,
                            (y * 5) as u8,
                            ((x ^ y) * 3) as u8,
                            255,
                        ]
                    })
                })
                .collect();
            let f = enc.encode(&bgra, stride, n == 0).expect("encodes");
            if !f.is_dropped() {
                out.push(f.data);
            }
        }
    }
    out
}
