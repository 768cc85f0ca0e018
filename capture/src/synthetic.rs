//! A synthetic "desktop" that looks like screen content and carries a [`Marker`].

use crate::marker::{Marker, draw_marker};
use crate::{CaptureError, Capturer, Frame, validate_size};

/// BGRA bytes of an opaque colour given as red, green, blue.
const fn rgb(r: u8, g: u8, b: u8) -> [u8; 4] {
    [b, g, r, 255]
}

const DESKTOP: [u8; 4] = rgb(38, 70, 104);
const TASKBAR: [u8; 4] = rgb(28, 30, 34);
const WINDOW_BORDER: [u8; 4] = rgb(90, 90, 96);
const TITLE_BAR: [u8; 4] = rgb(52, 56, 64);
const TITLE_TEXT: [u8; 4] = rgb(220, 220, 225);
const PAPER: [u8; 4] = rgb(250, 250, 248);
const INK: [u8; 4] = rgb(34, 34, 40);
const BUTTONS: [[u8; 4]; 3] = [rgb(230, 80, 70), rgb(240, 190, 60), rgb(90, 190, 90)];
const ICONS: [[u8; 4]; 4] = [
    rgb(70, 140, 220),
    rgb(220, 120, 50),
    rgb(120, 190, 90),
    rgb(200, 200, 210),
];
const STRIPE_A: [u8; 4] = rgb(232, 120, 40);
const STRIPE_B: [u8; 4] = rgb(40, 90, 200);
const SPRITE_BORDER: [u8; 4] = rgb(20, 20, 20);

/// Pixels the moving rectangle advances per frame (deliberately not a multiple of 16).
const SPRITE_SPEED: u64 = 6;
/// Text line height and glyph advance, in pixels (screen text has a fixed pixel size).
const LINE_HEIGHT: i64 = 18;
const GLYPH_ADVANCE: i64 = 8;

/// A deterministic test screen of a fixed size.
///
/// Each [`capture`](Capturer::capture) draws the next frame (`frame_no` 0, 1, 2, ...) with
/// [`render_synthetic`], stamped with the current wall-clock time. While
/// [frozen](SyntheticSource::set_frozen) it reports an unchanged screen (`Ok(None)`), like an idle
/// desktop.
#[derive(Debug)]
pub struct SyntheticSource {
    width: u32,
    height: u32,
    next_frame_no: u64,
    frozen: bool,
}

impl SyntheticSource {
    /// A source of `width` x `height` pixels.
    ///
    /// # Errors
    ///
    /// [`CaptureError::InvalidSize`] if a side is zero, odd, or above
    /// [`MAX_DIMENSION`](crate::MAX_DIMENSION).
    pub fn new(width: u32, height: u32) -> Result<Self, CaptureError> {
        validate_size(width, height)?;
        Ok(Self {
            width,
            height,
            next_frame_no: 0,
            frozen: false,
        })
    }

    /// Freezes or unfreezes the screen. While frozen, `capture` returns `Ok(None)` once a first
    /// frame has been delivered; frame numbers continue where they stopped when unfrozen.
    pub fn set_frozen(&mut self, frozen: bool) {
        self.frozen = frozen;
    }

    /// The `frame_no` the next captured frame will carry.
    #[must_use]
    pub fn next_frame_no(&self) -> u64 {
        self.next_frame_no
    }
}

impl Capturer for SyntheticSource {
    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn capture(&mut self) -> Result<Option<Frame>, CaptureError> {
        if self.frozen && self.next_frame_no > 0 {
            return Ok(None);
        }
        let frame = render_synthetic(
            self.width,
            self.height,
            self.next_frame_no,
            crate::unix_micros(),
        );
        self.next_frame_no += 1;
        Ok(Some(frame))
    }
}

/// Draws frame `frame_no` of the synthetic desktop: the same arguments always give the same
/// pixels.
///
/// The picture is a flat desktop with a taskbar, a window full of text-like glyphs, a striped
/// rectangle that moves a few pixels every frame (so consecutive frames always differ, by a little)
/// and, in the top-left corner, a [marker](crate::read_marker) holding `frame_no` and
/// `captured_at_us`. `stride` is `width * 4`.
///
/// The size is not validated (use [`SyntheticSource`] for that); a zero size gives an empty frame
/// and pictures below 64x40 carry no marker.
#[must_use]
pub fn render_synthetic(width: u32, height: u32, frame_no: u64, captured_at_us: u64) -> Frame {
    let stride = width as usize * 4;
    let mut data = vec![0; stride * height as usize];
    let mut canvas = Canvas {
        data: &mut data,
        width: i64::from(width),
        height: i64::from(height),
        stride,
    };
    draw_scene(&mut canvas, frame_no);
    draw_marker(
        &mut data,
        width,
        height,
        stride,
        Marker {
            frame_no,
            captured_at_us,
        },
    );
    Frame {
        width,
        height,
        stride,
        data: data.into(),
        frame_no,
        captured_at_us,
    }
}

fn draw_scene(c: &mut Canvas<'_>, frame_no: u64) {
    let (w, h) = (c.width, c.height);
    c.fill(0, 0, w, h, DESKTOP);

    // Taskbar with a row of icons.
    let bar = (h / 27).max(4);
    c.fill(0, h - bar, w, bar, TASKBAR);
    let icon = bar * 3 / 5;
    for i in 0..8 {
        let x = bar / 2 + i * (icon + bar / 2);
        c.fill(
            x,
            h - bar + (bar - icon) / 2,
            icon,
            icon,
            ICONS[i as usize % ICONS.len()],
        );
    }

    // A window: border, title bar with a title and three buttons, and a page of text.
    let (x0, y0, x1, y1) = (w * 3 / 10, h * 3 / 20, w * 9 / 10, h * 4 / 5);
    c.fill(x0 - 1, y0 - 1, x1 - x0 + 2, y1 - y0 + 2, WINDOW_BORDER);
    let title = (h / 40).clamp(6, 32);
    c.fill(x0, y0, x1 - x0, title, TITLE_BAR);
    draw_text(c, x0 + 8, y0 + (title - 8) / 2, 24, 0x0071_771e, TITLE_TEXT);
    let button = (title * 3 / 5).max(2);
    for (i, colour) in (1..).zip(BUTTONS) {
        c.fill(
            x1 - i * (button + 6),
            y0 + (title - button) / 2,
            button,
            button,
            colour,
        );
    }
    c.fill(x0, y0 + title, x1 - x0, y1 - y0 - title, PAPER);
    let max_glyphs = ((x1 - x0 - 24) / GLYPH_ADVANCE).max(0) as u64;
    let (mut line_y, mut line) = (y0 + title + 10, 0u64);
    let mut last = (x0 + 12, y0 + title + 10);
    while line_y + 12 <= y1 - 6 && max_glyphs > 0 {
        // Every seventh line is a paragraph break; other lines fill 40-100% of the width.
        if line % 7 != 6 {
            let len = max_glyphs * 2 / 5 + mix(line) % (max_glyphs * 3 / 5 + 1);
            draw_text(c, x0 + 12, line_y, len, line, INK);
            last = (x0 + 12 + len as i64 * GLYPH_ADVANCE, line_y);
        }
        line_y += LINE_HEIGHT;
        line += 1;
    }
    // A text cursor blinking every 15 frames after the last glyph.
    if (frame_no / 15).is_multiple_of(2) {
        c.fill(last.0 + 1, last.1 - 1, 2, 11, INK);
    }

    // The moving rectangle: a striped sprite bouncing left and right.
    let side = ((w.min(h) / 4) & !1).max(2);
    let travel = (w - side).max(1) as u64;
    let t = frame_no.wrapping_mul(SPRITE_SPEED) % (2 * travel);
    let x = if t < travel { t } else { 2 * travel - t } as i64;
    let y = h * 11 / 20 - side / 2;
    draw_sprite(c, x, y, side);
}

/// A square with a dark border and diagonal stripes fixed to its own origin, so that moving it is
/// a pure translation (what motion estimation is good at).
fn draw_sprite(c: &mut Canvas<'_>, x: i64, y: i64, side: i64) {
    c.fill(x, y, side, side, SPRITE_BORDER);
    for dy in 2..side - 2 {
        for dx in 2..side - 2 {
            let colour = if ((dx + dy) / 8) % 2 == 0 {
                STRIPE_A
            } else {
                STRIPE_B
            };
            c.dot(x + dx, y + dy, colour);
        }
    }
}

/// A line of `len` pseudo-random 5x8 glyphs with word gaps, fixed by `seed`.
fn draw_text(c: &mut Canvas<'_>, x: i64, y: i64, len: u64, seed: u64, colour: [u8; 4]) {
    for i in 0..len {
        let bits = mix(seed.wrapping_mul(0x1_0000).wrapping_add(i) ^ 0xA5A5_5A5A);
        // About one glyph in six is a space between words.
        if bits.is_multiple_of(6) {
            continue;
        }
        let gx = x + i as i64 * GLYPH_ADVANCE;
        for row in 0..8 {
            for col in 0..5 {
                if (bits >> (8 + row * 5 + col)) & 1 == 1 {
                    c.dot(gx + col as i64, y + row as i64, colour);
                }
            }
        }
    }
}

/// `SplitMix64` finaliser: a well-mixed deterministic hash of `x`.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A BGRA picture to draw on; all drawing is clipped to it.
struct Canvas<'a> {
    data: &'a mut [u8],
    width: i64,
    height: i64,
    stride: usize,
}

impl Canvas<'_> {
    fn dot(&mut self, x: i64, y: i64, colour: [u8; 4]) {
        if (0..self.width).contains(&x) && (0..self.height).contains(&y) {
            let at = y as usize * self.stride + x as usize * 4;
            self.data[at..at + 4].copy_from_slice(&colour);
        }
    }

    fn fill(&mut self, x: i64, y: i64, w: i64, h: i64, colour: [u8; 4]) {
        let (left, right) = (x.max(0), (x + w).min(self.width));
        let (top, bottom) = (y.max(0), (y + h).min(self.height));
        if left >= right || top >= bottom {
            return;
        }
        let (left, right) = (left as usize * 4, right as usize * 4);
        let first = top as usize * self.stride;
        for px in self.data[first + left..first + right].chunks_exact_mut(4) {
            px.copy_from_slice(&colour);
        }
        for row in top as usize + 1..bottom as usize {
            let at = row * self.stride;
            self.data
                .copy_within(first + left..first + right, at + left);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PixelLayout, SizeProblem, read_marker};

    #[test]
    fn render_then_read_marker() {
        for (w, h) in [(1920, 1080), (1280, 720), (640, 360), (256, 160), (64, 40)] {
            for (n, t) in [(0, 0), (1, 1_763_800_000_123_456), (u64::MAX, u64::MAX)] {
                let frame = render_synthetic(w, h, n, t);
                assert_eq!(frame.data.len(), frame.stride * h as usize);
                let marker = read_marker(&frame.data, w, h, frame.stride, PixelLayout::Bgra);
                assert_eq!(
                    marker,
                    Some(Marker {
                        frame_no: n,
                        captured_at_us: t
                    }),
                    "{w}x{h} frame {n}"
                );
            }
        }
    }

    #[test]
    fn deterministic_and_animated() {
        let a = render_synthetic(640, 360, 17, 99);
        let b = render_synthetic(640, 360, 17, 99);
        assert_eq!(a, b);
        assert!(a.data.chunks_exact(4).all(|px| px[3] == 255));
        // Away from the marker, consecutive frames differ (the sprite moved) but only a little.
        let c = render_synthetic(640, 360, 18, 99);
        let changed = a
            .data
            .chunks_exact(4)
            .zip(c.data.chunks_exact(4))
            .filter(|(p, q)| p != q)
            .count();
        let total = 640 * 360;
        assert!(changed > 0 && changed < total / 10, "{changed} of {total}");
    }

    #[test]
    fn degenerate_sizes_do_not_panic() {
        for (w, h) in [(0, 0), (0, 10), (1, 1), (3, 5), (17, 9)] {
            let frame = render_synthetic(w, h, 3, 4);
            assert_eq!(frame.data.len(), (w * h * 4) as usize);
        }
    }

    #[test]
    fn source_counts_frames_and_stamps_time() {
        let mut source = SyntheticSource::new(320, 240).unwrap();
        assert_eq!(source.size(), (320, 240));
        let before = crate::unix_micros();
        for n in 0..3 {
            let frame = source.capture().unwrap().unwrap();
            assert_eq!(frame.frame_no, n);
            assert!(frame.captured_at_us >= before);
            let marker = read_marker(&frame.data, 320, 240, frame.stride, PixelLayout::Bgra);
            assert_eq!(marker.map(|m| m.frame_no), Some(n));
        }
        source.set_frozen(true);
        assert!(source.capture().unwrap().is_none());
        source.set_frozen(false);
        assert_eq!(source.capture().unwrap().unwrap().frame_no, 3);
    }

    #[test]
    fn usable_as_a_boxed_capturer_on_another_thread() {
        let mut source: Box<dyn Capturer> = Box::new(SyntheticSource::new(64, 40).unwrap());
        let frame = std::thread::spawn(move || source.capture())
            .join()
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!((frame.width, frame.height, frame.frame_no), (64, 40, 0));
    }

    #[test]
    fn source_rejects_bad_sizes() {
        for (w, h, problem) in [
            (0, 240, SizeProblem::Zero),
            (321, 240, SizeProblem::Odd),
            (320, 8194, SizeProblem::TooLarge),
        ] {
            let err = SyntheticSource::new(w, h).unwrap_err();
            assert!(
                matches!(err, CaptureError::InvalidSize { problem: p, .. } if p == problem),
                "{err}"
            );
        }
    }
}
