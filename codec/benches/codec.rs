//! Codec benchmarks on screen-like synthetic content (`capture::render_synthetic`):
//!
//! * `bgra_to_i420/{720p,1080p}`: colour conversion into a reused buffer.
//! * `encode/{720p,1080p}`: `Encoder::encode` (conversion included) of steady-state P-frames.
//!   The encoder is warmed up first; each iteration encodes the next frame of the moving scene
//!   (rendering it is not timed). Mean bytes per P-frame go to
//!   `target/bench-report/codec-bytes.json`.
//! * `decode/{720p,1080p}`: `Decoder::decode_into` (RGBA conversion included, output buffer
//!   reused as a viewer would) of a pre-encoded sequence of P-frames in order; at the end of the
//!   sequence the key frame is fed again, untimed, and the P-frames start over.
//!
//! * `encode_camera/…`, `decode_camera/…`: the same with `ContentType::Camera`, which encodes
//!   about twice as fast for P-frames about twice as large.
//!
//! Settings: `EncoderConfig::new` (screen content, 4 Mbps, 30 fps).

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use capture::render_synthetic;
use codec::{
    ContentType, Decode, DecodedFrame, Decoder, Encoder, EncoderConfig, I420Buffer, bgra_to_i420,
};
use criterion::{Criterion, criterion_group, criterion_main};

const SIZES: [(&str, u32, u32); 2] = [("720p", 1280, 720), ("1080p", 1920, 1080)];
/// Frames encoded before measuring: the key frame and the frames rate control drops after it.
const WARM_UP_FRAMES: u64 = 15;
/// P-frames in the pre-encoded decode sequence.
const DECODE_SEQUENCE: u64 = 60;

fn bench_convert(c: &mut Criterion) {
    let mut group = c.benchmark_group("bgra_to_i420");
    for (name, width, height) in SIZES {
        let frame = render_synthetic(width, height, 0, 0);
        let mut out = I420Buffer::with_size(width, height).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| {
                bgra_to_i420(
                    black_box(&frame.data),
                    width,
                    height,
                    frame.stride,
                    &mut out,
                )
                .unwrap();
            });
        });
    }
    group.finish();
}

fn config(width: u32, height: u32, content: ContentType) -> EncoderConfig {
    EncoderConfig {
        content,
        ..EncoderConfig::new(width, height)
    }
}

/// Mean bytes per P-frame of every encode bench run so far.
static REPORT: std::sync::Mutex<Vec<(String, f64)>> = std::sync::Mutex::new(Vec::new());

fn bench_encode(c: &mut Criterion) {
    encode_group(c, "encode", ContentType::Screen);
    encode_group(c, "encode_camera", ContentType::Camera);
}

fn bench_decode(c: &mut Criterion) {
    decode_group(c, "decode", ContentType::Screen);
    decode_group(c, "decode_camera", ContentType::Camera);
}

fn encode_group(c: &mut Criterion, group_name: &str, content: ContentType) {
    let mut group = c.benchmark_group(group_name);
    // 20 samples of a 1080p encode need more than the default 4 s.
    group.measurement_time(Duration::from_secs(7));
    for (name, width, height) in SIZES {
        let mut encoder = Encoder::new(config(width, height, content)).unwrap();
        let mut next = 0;
        for _ in 0..WARM_UP_FRAMES {
            let frame = render_synthetic(width, height, next, next);
            encoder.encode(&frame.data, frame.stride, false).unwrap();
            next += 1;
        }
        let (mut p_bytes, mut p_frames, mut other_frames) = (0u64, 0u64, 0u64);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    let frame = render_synthetic(width, height, next, next);
                    next += 1;
                    let start = Instant::now();
                    let encoded = encoder
                        .encode(black_box(&frame.data), frame.stride, false)
                        .unwrap();
                    elapsed += start.elapsed();
                    if encoded.is_key_frame || encoded.is_dropped() {
                        other_frames += 1;
                    } else {
                        p_bytes += encoded.data.len() as u64;
                        p_frames += 1;
                    }
                }
                elapsed
            });
        });
        if p_frames == 0 {
            continue; // filtered out on the command line
        }
        let mean = p_bytes as f64 / p_frames as f64;
        eprintln!(
            "{group_name}/{name}: {p_frames} P-frames, mean {mean:.0} bytes; {other_frames} key or dropped frames"
        );
        let mut report = REPORT.lock().unwrap();
        report.push((format!("{group_name}/{name}"), mean));
        write_report(&report);
    }
    group.finish();
}

fn decode_group(c: &mut Criterion, group_name: &str, content: ContentType) {
    let mut group = c.benchmark_group(group_name);
    for (name, width, height) in SIZES {
        let mut encoder = Encoder::new(config(width, height, content)).unwrap();
        let first = render_synthetic(width, height, 0, 0);
        let key = encoder.encode(&first.data, first.stride, false).unwrap();
        assert!(key.is_key_frame);
        let p_frames: Vec<Vec<u8>> = (1..=DECODE_SEQUENCE)
            .map(|n| {
                let frame = render_synthetic(width, height, n, n);
                encoder.encode(&frame.data, frame.stride, false).unwrap()
            })
            .filter(|enc| !enc.is_dropped())
            .map(|enc| {
                assert!(
                    !enc.is_key_frame,
                    "unexpected key frame in the P-frame sequence"
                );
                enc.data
            })
            .collect();

        let mut decoder = Decoder::new().unwrap();
        let mut out = DecodedFrame::default();
        let mut at = p_frames.len();
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    if at == p_frames.len() {
                        assert!(decoder.decode_into(&key.data, &mut out).unwrap());
                        at = 0;
                    }
                    let start = Instant::now();
                    let got = decoder
                        .decode_into(black_box(&p_frames[at]), &mut out)
                        .unwrap();
                    elapsed += start.elapsed();
                    assert!(got, "P-frame {at} gave no picture");
                    at += 1;
                }
                elapsed
            });
        });
    }
    group.finish();
}

/// Writes `{"encode/720p": <mean bytes per P-frame>, ...}` to `<target>/bench-report/codec-bytes.json`.
fn write_report(entries: &[(String, f64)]) {
    let target = match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir,
        // A relative target dir is relative to where cargo was started: the workspace root.
        Some(dir) => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join(dir),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")),
    };
    let dir = target.join("bench-report");
    let body: Vec<String> = entries
        .iter()
        .map(|(key, value)| format!("  \"{key}\": {value:.1}"))
        .collect();
    let json = format!("{{\n{}\n}}\n", body.join(",\n"));
    let path = dir.join("codec-bytes.json");
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, json)) {
        panic!("cannot write {}: {e}", path.display());
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = bench_convert, bench_encode, bench_decode
}
criterion_main!(benches);
