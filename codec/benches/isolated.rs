//! What the sandboxed decoder process costs per frame: `Decoder::decode_into` against
//! `IsolatedDecoder::decode_into` (worker: `quicdesk-decoder`), both with the RGBA conversion and
//! a reused output buffer, on the same screen-like 1080p P-frames as `codec`'s `decode/1080p`
//! bench (`capture::render_synthetic`, `EncoderConfig::new`: screen content, 4 Mbps, 30 fps).
//! At the end of the sequence the key frame is fed again, untimed, and the P-frames start over.
//!
//! * `decode_1080p/in_process`, `decode_1080p/isolated`: criterion's figures.
//! * Then, outside criterion, every frame of several passes is timed alone in each decoder
//!   (alternating, so both see the same machine load) and the medians and their difference are
//!   printed: the added latency per frame, whose budget is 1 ms.

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use capture::render_synthetic;
use codec::isolated::IsolatedDecoder;
use codec::{Decode, DecodedFrame, Decoder, Encoder, EncoderConfig};
use criterion::Criterion;

const WIDTH: u32 = 1920;
const HEIGHT: u32 = 1080;
/// P-frames in the pre-encoded sequence.
const SEQUENCE: u64 = 60;
/// Passes over the sequence for the per-frame medians.
const PASSES: usize = 5;

/// The key frame and the P-frames after it.
fn encode_sequence() -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut encoder = Encoder::new(EncoderConfig::new(WIDTH, HEIGHT)).unwrap();
    let first = render_synthetic(WIDTH, HEIGHT, 0, 0);
    let key = encoder.encode(&first.data, first.stride, false).unwrap();
    assert!(key.is_key_frame);
    let p_frames = (1..=SEQUENCE)
        .map(|n| {
            let frame = render_synthetic(WIDTH, HEIGHT, n, n);
            encoder.encode(&frame.data, frame.stride, false).unwrap()
        })
        .filter(|enc| !enc.is_dropped())
        .map(|enc| {
            assert!(!enc.is_key_frame, "unexpected key frame in the sequence");
            enc.data
        })
        .collect();
    (key.data, p_frames)
}

/// A decoder walking the sequence: `next` decodes the next P-frame and returns its time.
struct Player<D> {
    decoder: D,
    out: DecodedFrame,
    at: usize,
}

impl<D: Decode> Player<D> {
    fn new(decoder: D, p_frames: &[Vec<u8>]) -> Self {
        Self {
            decoder,
            out: DecodedFrame::default(),
            at: p_frames.len(),
        }
    }

    fn next(&mut self, key: &[u8], p_frames: &[Vec<u8>]) -> Duration {
        if self.at == p_frames.len() {
            assert!(self.decoder.decode_into(key, &mut self.out).unwrap());
            self.at = 0;
        }
        let start = Instant::now();
        let got = self
            .decoder
            .decode_into(black_box(&p_frames[self.at]), &mut self.out)
            .unwrap();
        let took = start.elapsed();
        assert!(got, "P-frame {} gave no picture", self.at);
        self.at += 1;
        took
    }
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort_unstable();
    times[times.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let worker = Command::new(env!("CARGO_BIN_EXE_quicdesk-decoder"));
    let isolated = match IsolatedDecoder::spawn(worker) {
        Ok(isolated) => isolated,
        Err(e) => {
            eprintln!("decode_1080p: nothing to compare: {e}");
            return;
        }
    };
    let (key, p_frames) = encode_sequence();
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    let mut group = c.benchmark_group("decode_1080p");
    let mut local = Player::new(Decoder::new().unwrap(), &p_frames);
    group.bench_function("in_process", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| local.next(&key, &p_frames)).sum());
    });
    let mut isolated = Player::new(isolated, &p_frames);
    group.bench_function("isolated", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| isolated.next(&key, &p_frames)).sum());
    });
    group.finish();
    c.final_summary();

    // Per-frame medians, both decoders on the same frames (from the key frame), alternating.
    local.at = p_frames.len();
    isolated.at = p_frames.len();
    let (mut local_times, mut isolated_times, mut added) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..PASSES * p_frames.len() {
        let l = local.next(&key, &p_frames);
        let i = isolated.next(&key, &p_frames);
        local_times.push(l);
        isolated_times.push(i);
        added.push(ms(i) - ms(l));
    }
    assert!(local.out == isolated.out, "the decoders disagree");
    let (l, i) = (median(&mut local_times), median(&mut isolated_times));
    added.sort_unstable_by(f64::total_cmp);
    println!(
        "decode_1080p per frame over {} frames: in-process p50 {:.3} ms, isolated p50 {:.3} ms, \
         added p50 {:.3} ms (median of differences {:.3} ms; budget 1 ms)",
        local_times.len(),
        ms(l),
        ms(i),
        ms(i.saturating_sub(l)),
        added[added.len() / 2],
    );
}
