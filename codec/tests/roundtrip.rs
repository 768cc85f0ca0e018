//! Synthetic screen → H.264 → pictures that match, down to the marker's exact numbers.

mod common;

use capture::mean_abs_diff;
use codec::{Decode, Decoder};
use common::{config, decoded_marker, encode_synthetic};

/// Mean absolute difference per colour sample allowed between source and decoded picture.
const TOLERANCE: f64 = 4.0;

fn round_trip(width: u32, height: u32, bitrate_bps: u32, count: u64) {
    let encoded = encode_synthetic(config(width, height, bitrate_bps), count);
    assert!(encoded[0].1.is_key_frame, "first frame must be a key frame");

    let mut decoder = Decoder::new().unwrap();
    let mut decoded_count = 0;
    let mut worst: f64 = 0.0;
    for (frame, enc) in &encoded {
        if enc.is_dropped() {
            continue;
        }
        let decoded = decoder
            .decode(&enc.data)
            .unwrap()
            .unwrap_or_else(|| panic!("frame {} decoded to nothing", frame.frame_no));
        assert_eq!((decoded.width, decoded.height), (width, height));
        assert_eq!(decoded.rgba.len(), (width * height * 4) as usize);
        let diff = mean_abs_diff(&decoded.rgba, width, height, frame).unwrap();
        worst = worst.max(diff);
        assert!(
            diff < TOLERANCE,
            "{width}x{height} frame {}: mean abs diff {diff:.2}",
            frame.frame_no
        );
        assert_eq!(
            decoded_marker(&decoded),
            Some((frame.frame_no, frame.captured_at_us)),
            "{width}x{height} frame {}",
            frame.frame_no
        );
        decoded_count += 1;
    }
    let dropped = count - decoded_count;
    let p_bytes: usize = encoded[1..].iter().map(|(_, e)| e.data.len()).sum();
    eprintln!(
        "{width}x{height} @ {bitrate_bps} bps: key {} B, P mean {} B, {dropped} dropped, worst diff {worst:.2}",
        encoded[0].1.data.len(),
        p_bytes / (count as usize - 1),
    );
    assert!(
        decoded_count >= count * 3 / 4,
        "{dropped} of {count} frames dropped"
    );
}

#[test]
fn synthetic_640x360_round_trip() {
    round_trip(640, 360, 1_000_000, 40);
}

#[test]
fn synthetic_1280x720_round_trip() {
    round_trip(1280, 720, 2_500_000, 12);
}

#[test]
fn sizes_not_multiple_of_16_round_trip() {
    // Cropping in the SPS: 1080 = 67.5 macroblocks, 330 = 20.6.
    round_trip(330, 186, 600_000, 8);
}
