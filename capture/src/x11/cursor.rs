//! The pointer, drawn into each frame: XFIXES tells where it is and what it looks like (its
//! image is fetched again only when its serial changes), and it is alpha-blended onto the
//! captured monitor.

use super::*;

/// The pointer as last drawn.
#[derive(Default)]
pub(super) struct CursorState {
    x: i32,
    y: i32,
    xhot: i32,
    yhot: i32,
    serial: u32,
    width: usize,
    height: usize,
    /// Premultiplied ARGB, as XFIXES sends it.
    argb: Vec<u32>,
    known: bool,
}

impl CursorState {
    /// Asks the server where the pointer is and what it looks like; true if that changed.
    pub(super) fn refresh(&mut self, conn: &RustConnection) -> Result<bool, String> {
        let c = conn
            .xfixes_get_cursor_image()
            .map_err(|e| e.to_string())?
            .reply()
            .map_err(|e| format!("XFixesGetCursorImage: {e}"))?;
        let (width, height) = (usize::from(c.width), usize::from(c.height));
        let changed = !self.known
            || (self.x, self.y) != (i32::from(c.x), i32::from(c.y))
            || self.serial != c.cursor_serial;
        if changed && c.cursor_image.len() >= width * height {
            *self = Self {
                x: i32::from(c.x),
                y: i32::from(c.y),
                xhot: i32::from(c.xhot),
                yhot: i32::from(c.yhot),
                serial: c.cursor_serial,
                width,
                height,
                argb: c.cursor_image,
                known: true,
            };
        }
        Ok(changed)
    }

    /// Blends the pointer over a BGRA picture of `size` whose top-left is `origin` on the screen.
    pub(super) fn draw(
        &self,
        data: &mut [u8],
        stride: usize,
        size: (usize, usize),
        origin: (i32, i32),
    ) {
        if !self.known {
            return;
        }
        let left = self.x - self.xhot - origin.0;
        let top = self.y - self.yhot - origin.1;
        for cy in 0..self.height {
            let Some(py) = offset(top, cy, size.1) else {
                continue;
            };
            for cx in 0..self.width {
                let Some(px) = offset(left, cx, size.0) else {
                    continue;
                };
                let src = self.argb[cy * self.width + cx];
                let a = src >> 24;
                if a == 0 {
                    continue;
                }
                let at = py * stride + px * 4;
                let Some(dst) = data.get_mut(at..at + 3) else {
                    continue;
                };
                for (i, d) in dst.iter_mut().enumerate() {
                    // premultiplied: out = src + dst * (255 - a) / 255, channel order B, G, R
                    let s = (src >> (8 * i)) & 0xff;
                    let v = s + (u32::from(*d) * (255 - a) + 127) / 255;
                    *d = v.min(255) as u8;
                }
            }
        }
    }
}

/// `base + i` if it falls in `0..len`.
pub(super) fn offset(base: i32, i: usize, len: usize) -> Option<usize> {
    let v = i64::from(base) + i as i64;
    usize::try_from(v).ok().filter(|&v| v < len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_blends_premultiplied_and_clips_at_edges() {
        let c = CursorState {
            x: 1,
            y: 1,
            xhot: 1,
            yhot: 1,
            serial: 1,
            width: 2,
            height: 2,
            // opaque red, half-transparent white (premultiplied), transparent, opaque blue
            argb: vec![0xffff_0000, 0x8080_8080, 0, 0xff00_00ff],
            known: true,
        };
        let mut data = vec![0u8; 3 * 3 * 4];
        for px in data.chunks_exact_mut(4) {
            px.copy_from_slice(&[0, 0, 0, 255]);
        }
        c.draw(&mut data, 12, (3, 3), (0, 0));
        assert_eq!(&data[0..4], &[0, 0, 255, 255]); // red, BGRA
        assert_eq!(&data[4..8], &[128, 128, 128, 255]); // half white over black
        assert_eq!(&data[12..16], &[0, 0, 0, 255]); // transparent: untouched
        assert_eq!(&data[16..20], &[255, 0, 0, 255]); // blue
        // Off the top-left: clipped, no panic.
        let far = CursorState { x: -5, y: -5, ..c };
        far.draw(&mut data, 12, (3, 3), (0, 0));
    }
}
