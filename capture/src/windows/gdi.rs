//! The GDI screen source: `BitBlt` from the screen's device context into a top-down 32-bit DIB
//! section, the pointer drawn in with `DrawIconEx`, and the picture compared with the last one
//! to tell whether anything changed (GDI has no change signal of its own).
//!
//! The fallback where DXGI Desktop Duplication is missing (Wine, some remote and virtual
//! sessions). A 1280x800 copy takes 12-16 ms under Wine; the comparison about 1 ms. It does
//! not follow a change of the monitor's resolution (the host reopens the source when asked to
//! switch monitors) and cannot see the secure desktop.

use windows::Win32::Foundation::POINT;
use windows::Win32::Graphics::Gdi::{
    BI_RGB, BITMAPINFO, BITMAPINFOHEADER, BitBlt, CAPTUREBLT, CreateCompatibleDC, CreateDIBSection,
    DIB_RGB_COLORS, DeleteDC, DeleteObject, GdiFlush, GetDC, HBITMAP, HDC, HGDIOBJ, ReleaseDC,
    SRCCOPY, SelectObject,
};
use windows::Win32::UI::WindowsAndMessaging::{
    CURSOR_SHOWING, CURSORINFO, DI_NORMAL, DrawIconEx, GetCursorInfo, GetIconInfo, HICON, ICONINFO,
};

use super::win_error;
use crate::{Area, CaptureError, Capturer, Frame, FrameData};

/// The GDI objects a capture draws with. Owned by one capturer, used by one thread at a time.
struct Surfaces {
    screen: HDC,
    mem: HDC,
    bitmap: HBITMAP,
    /// What `mem` held before the bitmap was selected into it (put back before deleting).
    previous: HGDIOBJ,
    /// The DIB section's pixels: `len` bytes, top-down BGRA rows of `width * 4` bytes.
    bits: *mut u8,
    len: usize,
}

// SAFETY: the handles and the pixel pointer belong to this struct alone; GDI objects may be
// used from any thread as long as one thread at a time does, which `&mut self` ensures.
unsafe impl Send for Surfaces {}

impl Surfaces {
    fn new(width: u32, height: u32) -> Result<Self, CaptureError> {
        // SAFETY: GetDC(None) is the screen's DC, released in Drop.
        let screen = unsafe { GetDC(None) };
        if screen.is_invalid() {
            return Err(win_error("GetDC"));
        }
        // SAFETY: a memory DC compatible with a valid DC; deleted in Drop (or below).
        let mem = unsafe { CreateCompatibleDC(Some(screen)) };
        if mem.is_invalid() {
            // SAFETY: `screen` came from GetDC(None).
            unsafe { ReleaseDC(None, screen) };
            return Err(win_error("CreateCompatibleDC"));
        }
        let info = BITMAPINFO {
            bmiHeader: BITMAPINFOHEADER {
                biSize: size_of::<BITMAPINFOHEADER>() as u32,
                biWidth: width as i32,
                // Negative: rows top-down, as Frame wants them.
                biHeight: -(height as i32),
                biPlanes: 1,
                biBitCount: 32,
                biCompression: BI_RGB.0,
                ..Default::default()
            },
            ..Default::default()
        };
        let mut bits = std::ptr::null_mut();
        // SAFETY: `info` describes a 32-bit top-down DIB; `bits` receives its pixel pointer.
        let bitmap =
            match unsafe { CreateDIBSection(Some(mem), &info, DIB_RGB_COLORS, &mut bits, None, 0) }
            {
                Ok(b) if !bits.is_null() => b,
                _ => {
                    let e = win_error("CreateDIBSection");
                    // SAFETY: both made above and not used again.
                    unsafe {
                        let _ = DeleteDC(mem);
                        ReleaseDC(None, screen);
                    }
                    return Err(e);
                }
            };
        // SAFETY: selecting our bitmap into our DC; the previous object is put back in Drop.
        let previous = unsafe { SelectObject(mem, HGDIOBJ::from(bitmap)) };
        Ok(Self {
            screen,
            mem,
            bitmap,
            previous,
            bits: bits.cast(),
            len: width as usize * height as usize * 4,
        })
    }

    fn pixels(&self) -> &[u8] {
        // SAFETY: the DIB section's memory is `len` bytes and lives as long as `bitmap`, which
        // lives as long as `self`; GdiFlush ran after the last GDI write.
        unsafe { std::slice::from_raw_parts(self.bits, self.len) }
    }
}

impl Drop for Surfaces {
    fn drop(&mut self) {
        // SAFETY: the objects made in `new`, each released once, in reverse order.
        unsafe {
            SelectObject(self.mem, self.previous);
            let _ = DeleteObject(HGDIOBJ::from(self.bitmap));
            let _ = DeleteDC(self.mem);
            ReleaseDC(None, self.screen);
        }
    }
}

/// A monitor's picture through GDI.
pub struct GdiCapturer {
    area: Area,
    cursor: bool,
    gdi: Surfaces,
    /// The last picture handed out, to tell whether the next one differs.
    last: Vec<u8>,
    frame_no: u64,
    force: bool,
    /// The hotspot of the last pointer shape drawn, by its handle's value (asking for it
    /// allocates two bitmaps).
    hotspot: Option<(usize, POINT)>,
}

impl std::fmt::Debug for GdiCapturer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GdiCapturer")
            .field("area", &self.area)
            .field("frame_no", &self.frame_no)
            .finish_non_exhaustive()
    }
}

impl GdiCapturer {
    /// Captures `area` of the desktop (physical pixels), with the pointer drawn in if
    /// `cursor`.
    pub fn open(area: Area, cursor: bool) -> Result<Self, CaptureError> {
        super::dpi_aware();
        let gdi = Surfaces::new(area.width, area.height)?;
        Ok(Self {
            area,
            cursor,
            gdi,
            last: Vec::new(),
            frame_no: 0,
            force: true,
            hotspot: None,
        })
    }

    fn draw_cursor(&mut self) {
        let mut ci = CURSORINFO {
            cbSize: size_of::<CURSORINFO>() as u32,
            ..Default::default()
        };
        // SAFETY: `ci` has its size set, as the call asks.
        if unsafe { GetCursorInfo(&mut ci) }.is_err()
            || ci.flags.0 & CURSOR_SHOWING.0 == 0
            || ci.hCursor.is_invalid()
        {
            return;
        }
        let hot = match self.hotspot {
            Some((h, p)) if h == ci.hCursor.0 as usize => p,
            _ => {
                let mut ii = ICONINFO::default();
                // SAFETY: a valid cursor handle; the two bitmaps it returns are deleted here.
                if unsafe { GetIconInfo(HICON::from(ci.hCursor), &mut ii) }.is_err() {
                    return;
                }
                // SAFETY: as above: these bitmaps are ours to delete.
                unsafe {
                    if !ii.hbmMask.is_invalid() {
                        let _ = DeleteObject(HGDIOBJ::from(ii.hbmMask));
                    }
                    if !ii.hbmColor.is_invalid() {
                        let _ = DeleteObject(HGDIOBJ::from(ii.hbmColor));
                    }
                }
                let p = POINT {
                    x: ii.xHotspot as i32,
                    y: ii.yHotspot as i32,
                };
                self.hotspot = Some((ci.hCursor.0 as usize, p));
                p
            }
        };
        let x = ci.ptScreenPos.x - hot.x - self.area.x;
        let y = ci.ptScreenPos.y - hot.y - self.area.y;
        // SAFETY: drawing a valid cursor into our memory DC; GDI clips to the bitmap.
        let _ = unsafe {
            DrawIconEx(
                self.gdi.mem,
                x,
                y,
                HICON::from(ci.hCursor),
                0,
                0,
                0,
                None,
                DI_NORMAL,
            )
        };
    }
}

impl Capturer for GdiCapturer {
    fn size(&self) -> (u32, u32) {
        (self.area.width, self.area.height)
    }

    fn capture(&mut self) -> Result<Option<Frame>, CaptureError> {
        let (w, h) = (self.area.width as i32, self.area.height as i32);
        // SAFETY: copying the screen's DC into our DIB section, both valid for `self`.
        unsafe {
            BitBlt(
                self.gdi.mem,
                0,
                0,
                w,
                h,
                Some(self.gdi.screen),
                self.area.x,
                self.area.y,
                SRCCOPY | CAPTUREBLT,
            )
        }
        .map_err(|e| CaptureError::Io(std::io::Error::other(format!("BitBlt failed: {e}"))))?;
        if self.cursor {
            self.draw_cursor();
        }
        // SAFETY: a plain call: GDI finishes its batched drawing before we read the pixels.
        let _ = unsafe { GdiFlush() };
        let captured_at_us = crate::unix_micros();
        let pixels = self.gdi.pixels();
        if !std::mem::take(&mut self.force) && pixels == self.last.as_slice() {
            return Ok(None);
        }
        self.last.clear();
        self.last.extend_from_slice(pixels);
        let frame = Frame {
            width: self.area.width,
            height: self.area.height,
            stride: self.area.width as usize * 4,
            data: FrameData::from(pixels.to_vec()),
            frame_no: self.frame_no,
            captured_at_us,
        };
        self.frame_no += 1;
        Ok(Some(frame))
    }

    fn refresh(&mut self) {
        self.force = true;
    }
}
