//! The decoder takes bytes from the network: garbage, truncation, corruption and size changes
//! give errors or pictures, never a panic.

mod common;

use codec::{Decode, Decoder, EncodedFrame};
use common::{Rng, config, decoded_marker, encode_synthetic, stamp};

fn stream(width: u32, height: u32, count: u64) -> Vec<EncodedFrame> {
    encode_synthetic(config(width, height, 1_000_000), count)
        .into_iter()
        .map(|(_, enc)| enc)
        .filter(|enc| !enc.is_dropped())
        .collect()
}

/// Feeds every input; any `Ok` or `Err` is fine, only a panic (or crash) fails.
fn feed_all<'a>(decoder: &mut Decoder, inputs: impl IntoIterator<Item = &'a [u8]>) -> usize {
    let mut pictures = 0;
    for input in inputs {
        if let Ok(Some(picture)) = decoder.decode(input) {
            assert_eq!(
                picture.rgba.len(),
                picture.width as usize * picture.height as usize * 4
            );
            pictures += 1;
        }
    }
    pictures
}

#[test]
fn random_bytes() {
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let mut decoder = Decoder::new().unwrap();
    for i in 0..3000 {
        let len = rng.below(4096) as usize;
        let mut input = rng.bytes(len);
        // Most inputs look like NAL units, so the parser gets past the start code.
        if i % 4 != 0 && len > 5 {
            input[..4].copy_from_slice(&[0, 0, 0, 1]);
            input[4] = [0x67, 0x68, 0x65, 0x41, 0x06][rng.below(5) as usize];
        }
        feed_all(&mut decoder, [input.as_slice()]);
        if i % 500 == 0 {
            decoder = Decoder::new().unwrap();
        }
    }
}

#[test]
fn garbage_after_valid_parameter_sets() {
    // A real key frame teaches the decoder SPS and PPS; random slices then reach the slice
    // decoder itself.
    let frames = stream(320, 180, 2);
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let mut decoder = Decoder::new().unwrap();
    for i in 0..1500 {
        if i % 100 == 0 {
            decoder.decode(&frames[0].data).unwrap().unwrap();
        }
        let mut input = vec![0, 0, 0, 1, [0x65, 0x41, 0x25, 0x21][rng.below(4) as usize]];
        let len = rng.below(3000) as usize;
        input.extend(rng.bytes(len));
        feed_all(&mut decoder, [input.as_slice()]);
    }
}

#[test]
fn truncated_frames() {
    let frames = stream(320, 180, 6);
    let mut decoder = Decoder::new().unwrap();
    for frame in &frames {
        let len = frame.data.len();
        let step = (len / 97).max(1);
        for cut in (0..len).step_by(step) {
            feed_all(&mut decoder, [&frame.data[..cut]]);
        }
    }
    // Truncated key frames alone, in a fresh decoder each.
    let key = &frames[0].data;
    for cut in (0..key.len()).step_by((key.len() / 53).max(1)) {
        let mut fresh = Decoder::new().unwrap();
        feed_all(&mut fresh, [&key[..cut]]);
    }
}

#[test]
fn corrupted_streams() {
    let frames = stream(320, 180, 12);
    let mut rng = Rng(0x5eed_5eed_5eed_5eed);
    for _ in 0..300 {
        let mut corrupted: Vec<Vec<u8>> = frames.iter().map(|f| f.data.clone()).collect();
        for _ in 0..=rng.below(8) {
            let frame = &mut corrupted[rng.below(frames.len() as u64) as usize];
            let at = rng.below(frame.len() as u64) as usize;
            frame[at] ^= 1 << rng.below(8);
        }
        // Also drop or duplicate a frame now and then.
        match rng.below(4) {
            0 => {
                corrupted.remove(1 + rng.below(corrupted.len() as u64 - 1) as usize);
            }
            1 => {
                let dup = corrupted[rng.below(corrupted.len() as u64) as usize].clone();
                corrupted.push(dup);
            }
            _ => {}
        }
        let mut decoder = Decoder::new().unwrap();
        feed_all(&mut decoder, corrupted.iter().map(Vec::as_slice));
    }
}

#[test]
fn size_changes_mid_stream() {
    let mut decoder = Decoder::new().unwrap();
    for (width, height) in [(640, 360), (320, 240), (1280, 720), (640, 360)] {
        for (frame, enc) in encode_synthetic(config(width, height, 2_000_000), 4) {
            if enc.is_dropped() {
                continue;
            }
            let picture = decoder.decode(&enc.data).unwrap().expect("picture");
            assert_eq!((picture.width, picture.height), (width, height));
            assert_eq!(
                decoded_marker(&picture),
                Some((frame.frame_no, frame.captured_at_us))
            );
        }
    }
}

#[test]
fn recovers_at_the_next_key_frame_after_garbage() {
    let frames = stream(320, 180, 3);
    let mut decoder = Decoder::new().unwrap();
    let mut rng = Rng(77);
    let mut garbage = vec![0, 0, 0, 1, 0x65];
    garbage.extend(rng.bytes(2000));
    feed_all(
        &mut decoder,
        [frames[0].data.as_slice(), &garbage, &frames[2].data],
    );
    let picture = decoder
        .decode(&frames[0].data)
        .unwrap()
        .expect("key frame decodes");
    assert_eq!(decoded_marker(&picture), Some((0, stamp(0))));
    let picture = decoder
        .decode(&frames[1].data)
        .unwrap()
        .expect("next frame decodes");
    assert_eq!(decoded_marker(&picture), Some((1, stamp(1))));
}

#[test]
fn several_frames_in_one_call_do_not_panic() {
    // Not the documented use (one frame per call), but a peer may send it.
    let frames = stream(320, 180, 4);
    let all: Vec<u8> = frames.iter().flat_map(|f| f.data.iter().copied()).collect();
    let mut decoder = Decoder::new().unwrap();
    feed_all(&mut decoder, [all.as_slice()]);
}
