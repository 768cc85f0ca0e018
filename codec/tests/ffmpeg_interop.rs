//! Interop: ffprobe and ffmpeg (which nobody here wrote) read the stream the encoder writes.

mod common;

use std::io::ErrorKind;
use std::path::Path;
use std::process::{Command, Output};

use capture::{PixelLayout, mean_abs_diff, read_marker};
use common::{config, encode_synthetic};

/// Runs an ffmpeg tool, failing (not skipping) with a clear message if it is not installed.
fn run(tool: &str, args: &[&str]) -> Output {
    match Command::new(tool).args(args).output() {
        Ok(output) => {
            assert!(
                output.status.success(),
                "{tool} {args:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            output
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            panic!("{tool} is not installed: run `cargo xtask setup` (it installs ffmpeg)")
        }
        Err(e) => panic!("cannot run {tool}: {e}"),
    }
}

/// Writes an Annex-B file of synthetic frames; returns the source frames that were not dropped.
fn write_stream(path: &Path, width: u32, height: u32, count: u64) -> Vec<capture::Frame> {
    let mut bytes = Vec::new();
    let mut kept = Vec::new();
    for (frame, enc) in encode_synthetic(config(width, height, 1_500_000), count) {
        if !enc.is_dropped() {
            bytes.extend_from_slice(&enc.data);
            kept.push(frame);
        }
    }
    std::fs::write(path, bytes).unwrap();
    kept
}

fn stream_info(path: &Path) -> Vec<(String, String)> {
    let out = run(
        "ffprobe",
        &["-v", "error", "-show_streams", path.to_str().unwrap()],
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn field<'a>(info: &'a [(String, String)], key: &str) -> &'a str {
    info.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("ffprobe reported no {key}: {info:?}"))
}

#[test]
fn ffprobe_reads_codec_and_size() {
    let dir = tempfile::tempdir().unwrap();
    for (width, height) in [(640, 360), (330, 186)] {
        let path = dir.path().join(format!("{width}x{height}.h264"));
        write_stream(&path, width, height, 10);
        let info = stream_info(&path);
        assert_eq!(field(&info, "codec_name"), "h264");
        assert_eq!(field(&info, "width"), width.to_string());
        assert_eq!(field(&info, "height"), height.to_string());
        // The VUI says what colour conversion the encoder used.
        assert_eq!(field(&info, "color_space"), "smpte170m");
        assert_eq!(field(&info, "color_range"), "tv");
    }
}

#[test]
fn ffmpeg_decodes_every_frame_with_its_marker() {
    let (width, height) = (640, 360);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stream.h264");
    let kept = write_stream(&path, width, height, 20);
    let out = run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-f",
            "h264",
            "-i",
            path.to_str().unwrap(),
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgba",
            "-",
        ],
    );
    let frame_len = (width * height * 4) as usize;
    assert_eq!(out.stdout.len() % frame_len, 0);
    let pictures: Vec<&[u8]> = out.stdout.chunks_exact(frame_len).collect();
    assert_eq!(
        pictures.len(),
        kept.len(),
        "ffmpeg decoded a different number of frames"
    );
    for (rgba, frame) in pictures.into_iter().zip(&kept) {
        let marker = read_marker(rgba, width, height, width as usize * 4, PixelLayout::Rgba)
            .map(|m| (m.frame_no, m.captured_at_us));
        assert_eq!(marker, Some((frame.frame_no, frame.captured_at_us)));
        let diff = mean_abs_diff(rgba, width, height, frame).unwrap();
        assert!(
            diff < 5.0,
            "frame {}: mean abs diff {diff:.2}",
            frame.frame_no
        );
    }
}
