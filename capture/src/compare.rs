//! Picture comparison for tests.

use crate::{Frame, fits};

/// Mean absolute difference between a decoded RGBA picture and the BGRA [`Frame`] it should
/// reproduce, averaged over every red, green and blue sample (alpha is ignored); 0.0 means
/// identical, 255.0 is the maximum.
///
/// `rgba` is tightly packed (`width * 4` bytes per row). Returns `None` if the sizes differ or
/// either buffer is too short for its size.
#[must_use]
pub fn mean_abs_diff(rgba: &[u8], width: u32, height: u32, expected: &Frame) -> Option<f64> {
    if (width, height) != (expected.width, expected.height)
        || !fits(rgba.len(), width, height, width as usize * 4)
        || !fits(expected.data.len(), width, height, expected.stride)
    {
        return None;
    }
    let row_len = width as usize * 4;
    let mut sum: u64 = 0;
    for y in 0..height as usize {
        let got = &rgba[y * row_len..][..row_len];
        let want = &expected.data[y * expected.stride..][..row_len];
        for (g, e) in got.chunks_exact(4).zip(want.chunks_exact(4)) {
            sum += u64::from(g[0].abs_diff(e[2]))
                + u64::from(g[1].abs_diff(e[1]))
                + u64::from(g[2].abs_diff(e[0]));
        }
    }
    let samples = f64::from(width) * f64::from(height) * 3.0;
    Some(sum as f64 / samples)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render_synthetic;

    fn to_rgba(frame: &Frame) -> Vec<u8> {
        let mut out = Vec::new();
        for row in frame.data.chunks(frame.stride) {
            for px in row[..frame.width as usize * 4].chunks_exact(4) {
                out.extend_from_slice(&[px[2], px[1], px[0], px[3]]);
            }
        }
        out
    }

    #[test]
    fn identical_and_shifted() {
        let frame = render_synthetic(320, 180, 5, 6);
        let mut rgba = to_rgba(&frame);
        assert_eq!(mean_abs_diff(&rgba, 320, 180, &frame), Some(0.0));
        // Alpha is ignored; every colour sample off by 3 gives 3.0.
        for px in rgba.chunks_exact_mut(4) {
            px[3] = 0;
            for c in &mut px[..3] {
                *c = if *c >= 3 { *c - 3 } else { *c + 3 };
            }
        }
        assert_eq!(mean_abs_diff(&rgba, 320, 180, &frame), Some(3.0));
    }

    #[test]
    fn mismatched_sizes_are_none() {
        let frame = render_synthetic(320, 180, 5, 6);
        let rgba = to_rgba(&frame);
        assert_eq!(mean_abs_diff(&rgba, 320, 178, &frame), None);
        assert_eq!(mean_abs_diff(&rgba[..100], 320, 180, &frame), None);
    }
}
