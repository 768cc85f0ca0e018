//! Drawing the small windows: a CPU frame buffer (RGBA) with filled rectangles, text in
//! embedded-graphics' ISO 8859-1 bitmap fonts, buttons, check boxes and text fields; and the
//! rectangles clicks are tested against. Pure: no window, no GPU (the dialog driver uploads
//! the buffer, `dialog`).
//!
//! Characters outside ISO 8859-1 are drawn as `?` by the fonts: a self-declared name in
//! another script shows as question marks, never as look-alikes of Latin letters.

use std::convert::Infallible;

use embedded_graphics::mono_font::{MonoFont, MonoTextStyle, iso_8859_1};
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::text::{Baseline, Text};

/// Fonts used: a title, body text, bold body text, small print.
pub const TITLE: &MonoFont<'static> = &iso_8859_1::FONT_10X20;
pub const BODY: &MonoFont<'static> = &iso_8859_1::FONT_9X15;
pub const BOLD: &MonoFont<'static> = &iso_8859_1::FONT_9X15_BOLD;
pub const SMALL: &MonoFont<'static> = &iso_8859_1::FONT_6X13;

/// The palette (RGB). Button colours are distinct enough for a screenshot test to find them.
pub const BACKGROUND: [u8; 3] = [0xf4, 0xf4, 0xf2];
pub const TEXT: [u8; 3] = [0x1c, 0x1c, 0x1c];
pub const MUTED: [u8; 3] = [0x60, 0x60, 0x60];
pub const WARN: [u8; 3] = [0xa0, 0x50, 0x00];
pub const ERROR: [u8; 3] = [0xb0, 0x10, 0x10];
pub const ACCEPT: [u8; 3] = [0x2e, 0x7d, 0x32];
pub const DENY: [u8; 3] = [0xc6, 0x28, 0x28];
pub const PRIMARY: [u8; 3] = [0x15, 0x65, 0xc0];
pub const WHITE: [u8; 3] = [0xff, 0xff, 0xff];
pub const FIELD: [u8; 3] = [0xff, 0xff, 0xff];
pub const BORDER: [u8; 3] = [0x9e, 0x9e, 0x9e];
pub const HOVER: [u8; 3] = [0xe3, 0xea, 0xf5];

/// A rectangle in window pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: i32,
    pub y: i32,
    pub w: u32,
    pub h: u32,
}

impl Rect {
    pub const fn new(x: i32, y: i32, w: u32, h: u32) -> Self {
        Self { x, y, w, h }
    }

    /// Whether the point is inside.
    pub fn contains(&self, x: f64, y: f64) -> bool {
        let (x0, y0) = (f64::from(self.x), f64::from(self.y));
        x >= x0 && y >= y0 && x < x0 + f64::from(self.w) && y < y0 + f64::from(self.h)
    }

    /// Its centre, in whole pixels.
    pub fn centre(&self) -> (i32, i32) {
        (self.x + self.w as i32 / 2, self.y + self.h as i32 / 2)
    }
}

/// An RGBA frame buffer to draw on (alpha always opaque).
#[derive(Debug, Clone)]
pub struct Canvas {
    width: u32,
    height: u32,
    rgba: Vec<u8>,
}

impl Canvas {
    pub fn new(width: u32, height: u32) -> Self {
        let mut c = Self {
            width,
            height,
            rgba: vec![0; width as usize * height as usize * 4],
        };
        c.clear(BACKGROUND);
        c
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// The pixels, RGBA, row by row.
    pub fn rgba(&self) -> &[u8] {
        &self.rgba
    }

    /// The colour at (x, y), if inside.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = (y as usize * self.width as usize + x as usize) * 4;
        Some([self.rgba[i], self.rgba[i + 1], self.rgba[i + 2]])
    }

    fn put(&mut self, x: i32, y: i32, c: [u8; 3]) {
        if x < 0 || y < 0 || x as u32 >= self.width || y as u32 >= self.height {
            return;
        }
        let i = (y as usize * self.width as usize + x as usize) * 4;
        self.rgba[i..i + 4].copy_from_slice(&[c[0], c[1], c[2], 0xff]);
    }

    pub fn clear(&mut self, c: [u8; 3]) {
        for px in self.rgba.chunks_exact_mut(4) {
            px.copy_from_slice(&[c[0], c[1], c[2], 0xff]);
        }
    }

    pub fn fill(&mut self, r: Rect, c: [u8; 3]) {
        for y in r.y..r.y + r.h as i32 {
            for x in r.x..r.x + r.w as i32 {
                self.put(x, y, c);
            }
        }
    }

    /// A one-pixel outline.
    pub fn outline(&mut self, r: Rect, c: [u8; 3]) {
        let (x1, y1) = (r.x + r.w as i32 - 1, r.y + r.h as i32 - 1);
        for x in r.x..=x1 {
            self.put(x, r.y, c);
            self.put(x, y1, c);
        }
        for y in r.y..=y1 {
            self.put(r.x, y, c);
            self.put(x1, y, c);
        }
    }

    /// `text` with its top-left corner at (x, y); returns its width in pixels.
    pub fn text(&mut self, x: i32, y: i32, text: &str, font: &MonoFont<'_>, c: [u8; 3]) -> u32 {
        let style = MonoTextStyle::new(font, Rgb888::new(c[0], c[1], c[2]));
        // Drawing into this target cannot fail (its error type is Infallible).
        let _ = Text::with_baseline(text, Point::new(x, y), style, Baseline::Top).draw(self);
        text_width(text, font)
    }

    /// `text` centred in `r`.
    pub fn text_centred(&mut self, r: Rect, text: &str, font: &MonoFont<'_>, c: [u8; 3]) {
        let w = text_width(text, font) as i32;
        let h = font.character_size.height as i32;
        let (cx, cy) = r.centre();
        self.text(cx - w / 2, cy - h / 2, text, font, c);
    }

    /// A filled button with its label centred in white.
    pub fn button(&mut self, r: Rect, label: &str, fill: [u8; 3]) {
        self.fill(r, fill);
        self.text_centred(r, label, BOLD, WHITE);
    }

    /// A check box at `r` (its box is `r.h` square) with `label` to its right.
    pub fn checkbox(&mut self, r: Rect, checked: bool, label: &str) {
        let b = Rect::new(r.x, r.y, r.h, r.h);
        self.fill(b, FIELD);
        self.outline(b, TEXT);
        if checked {
            self.fill(
                Rect::new(
                    b.x + 4,
                    b.y + 4,
                    b.w.saturating_sub(8),
                    b.h.saturating_sub(8),
                ),
                PRIMARY,
            );
        }
        let y = r.y + (r.h as i32 - BODY.character_size.height as i32) / 2;
        self.text(r.x + r.h as i32 + 8, y, label, BODY, TEXT);
    }

    /// A one-line text field showing `shown`, outlined in the accent colour when it has the
    /// focus (with a caret).
    pub fn field(&mut self, r: Rect, shown: &str, focused: bool) {
        self.fill(r, FIELD);
        self.outline(r, if focused { PRIMARY } else { BORDER });
        let y = r.y + (r.h as i32 - BODY.character_size.height as i32) / 2;
        let w = self.text(r.x + 6, y, shown, BODY, TEXT) as i32;
        if focused {
            self.fill(
                Rect::new(r.x + 7 + w, r.y + 5, 2, r.h.saturating_sub(10)),
                TEXT,
            );
        }
    }
}

/// How wide `text` is in `font`, in pixels.
pub fn text_width(text: &str, font: &MonoFont<'_>) -> u32 {
    let n = text.chars().count() as u32;
    n * font.character_size.width + n.saturating_sub(1) * font.character_spacing
}

/// `text` cut to at most `max` pixels wide in `font` ("..." marks a cut: the fonts have no
/// ellipsis character).
pub fn fit(text: &str, font: &MonoFont<'_>, max: u32) -> String {
    if text_width(text, font) <= max {
        return text.to_owned();
    }
    let per = font.character_size.width + font.character_spacing;
    let keep = (max / per).saturating_sub(3) as usize;
    let mut s: String = text.chars().take(keep).collect();
    s.push_str("...");
    s
}

impl OriginDimensions for Canvas {
    fn size(&self) -> Size {
        Size::new(self.width, self.height)
    }
}

impl DrawTarget for Canvas {
    type Color = Rgb888;
    type Error = Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        for Pixel(p, c) in pixels {
            self.put(p.x, p.y, [c.r(), c.g(), c.b()]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_buttons_and_boxes_draw_where_they_say() {
        let mut c = Canvas::new(200, 80);
        assert_eq!(c.pixel(0, 0), Some(BACKGROUND));
        let w = c.text(2, 2, "Hi", BODY, TEXT);
        assert_eq!(w, text_width("Hi", BODY));
        let inked = (0..w)
            .flat_map(|x| (2..17).map(move |y| (x + 2, y)))
            .filter(|&(x, y)| c.pixel(x, y) == Some(TEXT))
            .count();
        assert!(inked > 10, "text drew {inked} pixels");
        let b = Rect::new(100, 40, 80, 30);
        c.button(b, "OK", ACCEPT);
        assert_eq!(c.pixel(101, 41), Some(ACCEPT));
        assert!(b.contains(100.0, 40.0) && !b.contains(180.0, 40.0));
        c.checkbox(Rect::new(2, 40, 0, 18), true, "x");
        assert_eq!(c.pixel(2 + 9, 40 + 9), Some(PRIMARY));
        // Off-canvas drawing is clipped, never a panic.
        c.fill(Rect::new(-10, -10, 500, 500), DENY);
        assert_eq!(c.pixel(199, 79), Some(DENY));
        assert_eq!(fit("abcdefghij", BODY, 50), "ab...");
        assert_eq!(fit("abc", BODY, 50), "abc");
    }
}
