//! The DXGI Desktop Duplication screen source: one output duplicated on a D3D11 device of the
//! adapter that drives it, its dirty and move rectangles as the change signal, each changed
//! picture copied through a CPU-readable staging texture, and the pointer (position and shape
//! from the duplication) drawn into the frames.
//!
//! What it does not do: rotated outputs (refused, so the seam falls back to GDI), the secure
//! desktop (after a desktop switch `DuplicateOutput` fails until this thread's desktop is the
//! input desktop; the error is returned), protected content (Windows blacks it out), or copy only
//! the dirty rectangles (the whole texture is copied when anything changed).
//!
//! DXGI Desktop Duplication cannot run under Wine (`DuplicateOutput` returns E_NOTIMPL there),
//! so under Wine the seam uses the GDI path and this file is only compile-checked in CI; its
//! pure helpers (output matching, pointer drawing) are unit-tested.

use windows::Win32::Foundation::{E_UNEXPECTED, HMODULE, RECT};
use windows::Win32::Graphics::Direct3D::D3D_DRIVER_TYPE_UNKNOWN;
use windows::Win32::Graphics::Direct3D11::{
    D3D11_CPU_ACCESS_READ, D3D11_CREATE_DEVICE_BGRA_SUPPORT, D3D11_MAP_READ,
    D3D11_MAPPED_SUBRESOURCE, D3D11_SDK_VERSION, D3D11_TEXTURE2D_DESC, D3D11_USAGE_STAGING,
    D3D11CreateDevice, ID3D11Device, ID3D11DeviceContext, ID3D11Texture2D,
};
use windows::Win32::Graphics::Dxgi::Common::{
    DXGI_FORMAT_B8G8R8A8_UNORM, DXGI_MODE_ROTATION_IDENTITY, DXGI_MODE_ROTATION_UNSPECIFIED,
};
use windows::Win32::Graphics::Dxgi::{
    CreateDXGIFactory1, DXGI_ERROR_ACCESS_LOST, DXGI_ERROR_MORE_DATA, DXGI_ERROR_NOT_FOUND,
    DXGI_ERROR_WAIT_TIMEOUT, DXGI_OUTDUPL_FRAME_INFO, DXGI_OUTDUPL_MOVE_RECT,
    DXGI_OUTDUPL_POINTER_SHAPE_INFO, DXGI_OUTDUPL_POINTER_SHAPE_TYPE_COLOR,
    DXGI_OUTDUPL_POINTER_SHAPE_TYPE_MASKED_COLOR, DXGI_OUTDUPL_POINTER_SHAPE_TYPE_MONOCHROME,
    IDXGIAdapter1, IDXGIFactory1, IDXGIOutput1, IDXGIOutputDuplication, IDXGIResource,
};
use windows::core::Interface;

use crate::{Area, CaptureError, Capturer, Frame, FrameData};

/// A monitor's picture through DXGI Desktop Duplication; see the [module docs](self).
///
/// The windows crate marks the D3D/DXGI interfaces held here `Send` (free-threaded COM), and
/// `Capturer: Send` makes the compiler check it, so no `unsafe impl Send` is needed; a capturer
/// uses them from one thread at a time (`&mut self`).
pub struct DxgiCapturer {
    device: ID3D11Device,
    context: ID3D11DeviceContext,
    output: IDXGIOutput1,
    /// `None` after the duplication was lost and could not be made again yet.
    dup: Option<IDXGIOutputDuplication>,
    /// CPU-readable copy of the desktop texture, made at the texture's size on first use.
    staging: Option<(ID3D11Texture2D, u32, u32)>,
    area: Area,
    width: u32,
    height: u32,
    /// The last picture, BGRA, `width * 4` bytes a row, without the pointer; empty before the
    /// first one.
    last: Vec<u8>,
    cursor: bool,
    pointer: Pointer,
    force: bool,
    frame_no: u64,
}

impl std::fmt::Debug for DxgiCapturer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DxgiCapturer")
            .field("area", &self.area)
            .field("size", &(self.width, self.height))
            .field("frame_no", &self.frame_no)
            .finish_non_exhaustive()
    }
}

fn io(what: &str, e: windows::core::Error) -> CaptureError {
    other(format!("{what} failed: {e}"))
}

fn other(text: String) -> CaptureError {
    CaptureError::Io(std::io::Error::other(text))
}

impl DxgiCapturer {
    /// Duplicates the output whose desktop rectangle is `area` (x, y, width, height in desktop
    /// pixels, as from EnumDisplayMonitors/GetMonitorInfoW). `cursor`: draw the pointer shape
    /// into frames.
    pub fn open(area: Area, cursor: bool) -> Result<Self, CaptureError> {
        // SAFETY: a plain call; the factory is a COM object released on drop.
        let factory: IDXGIFactory1 =
            unsafe { CreateDXGIFactory1() }.map_err(|e| io("CreateDXGIFactory1", e))?;
        let (adapter, output) = find_output(&factory, area)?;
        let mut device = None;
        let mut context = None;
        // SAFETY: the out pointers are to locals that live through the call; an explicit adapter
        // requires D3D_DRIVER_TYPE_UNKNOWN and no software module.
        unsafe {
            D3D11CreateDevice(
                &adapter,
                D3D_DRIVER_TYPE_UNKNOWN,
                HMODULE::default(),
                D3D11_CREATE_DEVICE_BGRA_SUPPORT,
                None,
                D3D11_SDK_VERSION,
                Some(&mut device),
                None,
                Some(&mut context),
            )
        }
        .map_err(|e| io("D3D11CreateDevice", e))?;
        let (Some(device), Some(context)) = (device, context) else {
            return Err(other("D3D11CreateDevice returned no device".into()));
        };
        let mut this = Self {
            device,
            context,
            output,
            dup: None,
            staging: None,
            area,
            width: area.width,
            height: area.height,
            last: Vec::new(),
            cursor,
            pointer: Pointer::default(),
            force: true,
            frame_no: 0,
        };
        this.duplicate()?;
        Ok(this)
    }

    /// (Re)creates the duplication of our output; the old one is released first.
    fn duplicate(&mut self) -> Result<(), CaptureError> {
        self.dup = None;
        self.staging = None;
        // SAFETY: both are valid COM objects owned by `self`.
        let dup = unsafe { self.output.DuplicateOutput(&self.device) }
            .map_err(|e| io("IDXGIOutput1::DuplicateOutput", e))?;
        // SAFETY: a plain query on a valid duplication.
        let desc = unsafe { dup.GetDesc() };
        let (w, h, rot) = (desc.ModeDesc.Width, desc.ModeDesc.Height, desc.Rotation);
        // Odd sizes are cropped to even ones when a frame is handed out.
        let fits = |v| (1..=crate::MAX_DIMENSION).contains(&v);
        let upright = rot == DXGI_MODE_ROTATION_IDENTITY || rot == DXGI_MODE_ROTATION_UNSPECIFIED;
        if !upright || !fits(w) || !fits(h) {
            return Err(other(format!(
                "DXGI cannot capture a {w}x{h} output with {rot:?}"
            )));
        }
        if (w, h) != (self.width, self.height) {
            tracing::info!(from = ?(self.width, self.height), to = ?(w, h), "DXGI output resized");
            self.last.clear();
        }
        (self.width, self.height) = (w, h);
        self.dup = Some(dup);
        self.force = true;
        Ok(())
    }

    /// Acquires the next frame if there is one; true if a frame should be handed out.
    fn poll(&mut self) -> windows::core::Result<bool> {
        let Some(dup) = self.dup.clone() else {
            return Ok(false);
        };
        let mut info = DXGI_OUTDUPL_FRAME_INFO::default();
        let mut resource: Option<IDXGIResource> = None;
        // SAFETY: the out pointers are to locals that live through the call.
        match unsafe { dup.AcquireNextFrame(0, &mut info, &mut resource) } {
            Err(e) if e.code() == DXGI_ERROR_WAIT_TIMEOUT => return Ok(self.force),
            r => r?,
        }
        let changed = self.read_frame(&dup, &info, resource);
        // SAFETY: the frame acquired above, released once, on every path.
        let released = unsafe { dup.ReleaseFrame() };
        let changed = changed?;
        released?;
        Ok(changed || self.force)
    }

    /// Uses an acquired frame: the pointer update, and the picture if its content changed.
    fn read_frame(
        &mut self,
        dup: &IDXGIOutputDuplication,
        info: &DXGI_OUTDUPL_FRAME_INFO,
        resource: Option<IDXGIResource>,
    ) -> windows::core::Result<bool> {
        let pointer_changed = self.cursor && self.pointer.update(dup, info)?;
        let content = info.LastPresentTime != 0
            && (self.last.is_empty() || has_rects(dup, info.TotalMetadataBufferSize)?);
        if let (true, Some(resource)) = (content, resource) {
            self.copy_picture(&resource.cast()?)?;
            return Ok(true);
        }
        Ok(pointer_changed)
    }

    /// Copies the desktop texture into `last` through the staging texture.
    fn copy_picture(&mut self, texture: &ID3D11Texture2D) -> windows::core::Result<()> {
        let mut desc = D3D11_TEXTURE2D_DESC::default();
        // SAFETY: `desc` is a local the call fills.
        unsafe { texture.GetDesc(&mut desc) };
        if desc.Format != DXGI_FORMAT_B8G8R8A8_UNORM {
            return Err(windows::core::Error::new(
                E_UNEXPECTED,
                format!("desktop texture format {:?} is not BGRA", desc.Format),
            ));
        }
        let staging = match &self.staging {
            Some((t, w, h)) if (*w, *h) == (desc.Width, desc.Height) => t.clone(),
            _ => {
                // Size, format, one mip level, no multisampling: as the desktop texture.
                let sdesc = D3D11_TEXTURE2D_DESC {
                    Usage: D3D11_USAGE_STAGING,
                    BindFlags: 0,
                    CPUAccessFlags: D3D11_CPU_ACCESS_READ.0 as u32,
                    MiscFlags: 0,
                    ..desc
                };
                let mut t = None;
                // SAFETY: `sdesc` and the out pointer are locals that live through the call.
                unsafe { self.device.CreateTexture2D(&sdesc, None, Some(&mut t)) }?;
                let t = t.ok_or_else(|| windows::core::Error::from(E_UNEXPECTED))?;
                self.staging = Some((t.clone(), desc.Width, desc.Height));
                t
            }
        };
        let (w, h) = (desc.Width as usize, desc.Height as usize);
        let mut mapped = D3D11_MAPPED_SUBRESOURCE::default();
        // SAFETY: both textures are alive, same size and format; the staging one is CPU-readable
        // and mapped for reading into a local.
        unsafe {
            self.context.CopyResource(&staging, texture);
            self.context
                .Map(&staging, 0, D3D11_MAP_READ, 0, Some(&mut mapped))?;
        }
        let pitch = mapped.RowPitch as usize;
        let row = w * 4;
        let usable = !mapped.pData.is_null() && row > 0 && pitch >= row;
        self.last.resize(if usable { row * h } else { 0 }, 0);
        if usable {
            for (y, dst) in self.last.chunks_exact_mut(row).enumerate() {
                // SAFETY: while mapped, pData holds `h` rows of `pitch >= row` bytes each.
                let src = unsafe {
                    std::slice::from_raw_parts(mapped.pData.cast::<u8>().add(y * pitch), row)
                };
                dst.copy_from_slice(src);
            }
        }
        // SAFETY: mapped above; no slice of it outlives this point.
        unsafe { self.context.Unmap(&staging, 0) };
        if !usable {
            let text = format!("mapped staging texture: row pitch {pitch} < {row}");
            return Err(windows::core::Error::new(E_UNEXPECTED, text));
        }
        (self.width, self.height) = (desc.Width, desc.Height);
        Ok(())
    }
}

impl Capturer for DxgiCapturer {
    fn size(&self) -> (u32, u32) {
        (self.width & !1, self.height & !1)
    }

    fn capture(&mut self) -> Result<Option<Frame>, CaptureError> {
        if self.dup.is_none() {
            self.duplicate()?;
        }
        match self.poll() {
            Ok(true) if !self.last.is_empty() => {}
            Ok(_) => return Ok(None),
            Err(e) if e.code() == DXGI_ERROR_ACCESS_LOST => {
                tracing::info!("DXGI duplication lost (desktop switch or mode change); reopening");
                self.duplicate()?;
                return Ok(None);
            }
            Err(e) => return Err(io("DXGI desktop duplication", e)),
        }
        let captured_at_us = crate::unix_micros();
        let (w, h) = (self.width as usize, self.height as usize);
        let mut data = self.last.clone();
        if let (true, true, Some(shape)) = (self.cursor, self.pointer.visible, &self.pointer.shape)
        {
            draw_pointer(&mut data, w * 4, (w, h), self.pointer.at, shape);
        }
        self.force = false;
        // 4:2:0 video wants even sizes: an odd last column or row is left out, as on X11.
        let (even_w, even_h) = (self.width & !1, self.height & !1);
        data.truncate(w * 4 * even_h as usize);
        let frame = Frame {
            width: even_w,
            height: even_h,
            stride: w * 4,
            data: FrameData::from(data),
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

/// The attached output of any adapter whose desktop rectangle is `area`.
fn find_output(
    factory: &IDXGIFactory1,
    area: Area,
) -> Result<(IDXGIAdapter1, IDXGIOutput1), CaptureError> {
    let ended = |e: &windows::core::Error| e.code() == DXGI_ERROR_NOT_FOUND;
    for a in 0.. {
        // SAFETY: a plain enumeration call; DXGI_ERROR_NOT_FOUND ends it.
        let adapter = match unsafe { factory.EnumAdapters1(a) } {
            Err(e) if ended(&e) => break,
            r => r.map_err(|e| io("IDXGIFactory1::EnumAdapters1", e))?,
        };
        for o in 0.. {
            // SAFETY: as above.
            let output = match unsafe { adapter.EnumOutputs(o) } {
                Err(e) if ended(&e) => break,
                r => r.map_err(|e| io("IDXGIAdapter::EnumOutputs", e))?,
            };
            // SAFETY: a plain query on a valid output.
            let desc = unsafe { output.GetDesc() }.map_err(|e| io("IDXGIOutput::GetDesc", e))?;
            if desc.AttachedToDesktop.as_bool() && output_matches(&desc.DesktopCoordinates, area) {
                let output1 = output
                    .cast()
                    .map_err(|e| io("IDXGIOutput1 (DXGI 1.2)", e))?;
                return Ok((adapter, output1));
            }
        }
    }
    Err(other(format!(
        "no DXGI output has the desktop rectangle {area:?}"
    )))
}

/// Whether an output's desktop rectangle is exactly `area`.
fn output_matches(r: &RECT, area: Area) -> bool {
    let len = |from: i32, to: i32| i64::from(to) - i64::from(from);
    let size = (len(r.left, r.right), len(r.top, r.bottom));
    (r.left, r.top) == (area.x, area.y) && size == (area.width.into(), area.height.into())
}

/// Whether the acquired frame has move or dirty rectangles (`total`: the frame's metadata size).
fn has_rects(dup: &IDXGIOutputDuplication, total: u32) -> windows::core::Result<bool> {
    if total == 0 {
        return Ok(false);
    }
    let any = |r: windows::core::Result<()>, required: u32| match r {
        Err(e) if e.code() == DXGI_ERROR_MORE_DATA => Ok(true),
        r => r.map(|()| required > 0),
    };
    // One-element buffers: only "any?" matters, and MORE_DATA answers yes.
    let (mut mv, mut dirty) = ([DXGI_OUTDUPL_MOVE_RECT::default()], [RECT::default()]);
    let (mut n, mut m) = (0, 0);
    let (mv_len, dirty_len) = (size_of_val(&mv) as u32, size_of_val(&dirty) as u32);
    // SAFETY: each buffer is a local of the size passed; `n` and `m` are locals.
    let r = unsafe { dup.GetFrameMoveRects(mv_len, mv.as_mut_ptr(), &mut n) };
    if any(r, n)? {
        return Ok(true);
    }
    // SAFETY: as above.
    let r = unsafe { dup.GetFrameDirtyRects(dirty_len, dirty.as_mut_ptr(), &mut m) };
    any(r, m)
}

/// The pointer as the duplication last reported it.
#[derive(Default)]
struct Pointer {
    /// Top-left of the shape, relative to the output.
    at: (i32, i32),
    visible: bool,
    shape: Option<Shape>,
}

impl Pointer {
    /// Takes the frame's pointer update, if any; true if what would be drawn changed.
    fn update(
        &mut self,
        dup: &IDXGIOutputDuplication,
        info: &DXGI_OUTDUPL_FRAME_INFO,
    ) -> windows::core::Result<bool> {
        if info.LastMouseUpdateTime == 0 {
            return Ok(false); // PointerPosition is not valid
        }
        let p = info.PointerPosition;
        let (at, visible) = ((p.Position.x, p.Position.y), p.Visible.as_bool());
        let was_visible = self.visible;
        let mut changed = (at, visible) != (self.at, self.visible);
        (self.at, self.visible) = (at, visible);
        if info.PointerShapeBufferSize > 0 {
            let len = info.PointerShapeBufferSize;
            let mut buf = vec![0u8; len as usize];
            let (mut n, mut si) = (0, DXGI_OUTDUPL_POINTER_SHAPE_INFO::default());
            let ptr = buf.as_mut_ptr().cast();
            // SAFETY: `buf` has the length passed; the other out pointers are locals.
            unsafe { dup.GetFramePointerShape(len, ptr, &mut n, &mut si) }?;
            self.shape = Shape::new(&si, buf);
            changed = true;
        }
        // A change while hidden before and after shows nothing.
        Ok(changed && (was_visible || visible))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// BGRA, alpha-blended.
    Color,
    /// BGRX; X = 0: replace the pixel, otherwise XOR it.
    Masked,
    /// 1 bpp AND mask rows, then as many XOR mask rows.
    Monochrome,
}

/// A pointer shape, checked to hold `height` rows of `pitch` bytes (twice that for monochrome).
#[derive(Debug)]
struct Shape {
    kind: Kind,
    width: usize,
    height: usize,
    pitch: usize,
    data: Vec<u8>,
}

impl Shape {
    fn new(si: &DXGI_OUTDUPL_POINTER_SHAPE_INFO, data: Vec<u8>) -> Option<Self> {
        let kind = match si.Type as i32 {
            t if t == DXGI_OUTDUPL_POINTER_SHAPE_TYPE_COLOR.0 => Kind::Color,
            t if t == DXGI_OUTDUPL_POINTER_SHAPE_TYPE_MASKED_COLOR.0 => Kind::Masked,
            t if t == DXGI_OUTDUPL_POINTER_SHAPE_TYPE_MONOCHROME.0 => Kind::Monochrome,
            _ => return None,
        };
        let (width, rows, pitch) = (si.Width as usize, si.Height as usize, si.Pitch as usize);
        let (height, row) = match kind {
            Kind::Monochrome => (rows / 2, width.div_ceil(8)),
            _ => (rows, width * 4),
        };
        (pitch >= row && data.len() >= pitch.checked_mul(rows)?).then_some(Self {
            kind,
            width,
            height,
            pitch,
            data,
        })
    }
}

/// Draws `shape` with its top-left at `at` into a BGRA picture of `size`, clipped to it.
fn draw_pointer(
    data: &mut [u8],
    stride: usize,
    size: (usize, usize),
    at: (i32, i32),
    shape: &Shape,
) {
    // (index in the shape, index in the picture) of the shape's pixels that land in it
    let place = |base: i32, n: usize, len: usize| {
        let to = move |i| {
            usize::try_from(i64::from(base) + i as i64)
                .ok()
                .filter(|&v| v < len)
        };
        (0..n).filter_map(move |i| Some((i, to(i)?)))
    };
    for (cy, py) in place(at.1, shape.height, size.1) {
        for (cx, px) in place(at.0, shape.width, size.0) {
            let o = py * stride + px * 4;
            let Some(dst) = data.get_mut(o..o + 3) else {
                continue;
            };
            let s = &shape.data;
            match shape.kind {
                Kind::Color | Kind::Masked => {
                    let i = cy * shape.pitch + cx * 4;
                    let (src, a) = (&s[i..i + 3], s[i + 3]);
                    for (d, &c) in dst.iter_mut().zip(src) {
                        *d = match (shape.kind, a) {
                            (Kind::Color, a) => {
                                let a = u32::from(a);
                                ((u32::from(c) * a + u32::from(*d) * (255 - a) + 127) / 255) as u8
                            }
                            (_, 0) => c,
                            _ => *d ^ c,
                        };
                    }
                }
                Kind::Monochrome => {
                    let bit = |row: usize| s[row * shape.pitch + cx / 8] & (0x80 >> (cx % 8)) != 0;
                    let (and, xor) = (bit(cy), bit(cy + shape.height));
                    for d in dst.iter_mut() {
                        *d = (if and { *d } else { 0 }) ^ (if xor { 0xff } else { 0 });
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(kind: i32, width: u32, height: u32, pitch: u32) -> DXGI_OUTDUPL_POINTER_SHAPE_INFO {
        let mut i = DXGI_OUTDUPL_POINTER_SHAPE_INFO::default();
        (i.Type, i.Width, i.Height, i.Pitch) = (kind as u32, width, height, pitch);
        i
    }

    /// A 2x2 picture of one grey.
    fn grey() -> Vec<u8> {
        [100, 100, 100, 255].repeat(4)
    }

    #[test]
    fn outputs_match_their_exact_desktop_rectangle() {
        let (left, top, right, bottom) = (-1920, 0, 0, 1080);
        let r = RECT {
            left,
            top,
            right,
            bottom,
        };
        let area = |x, width| Area {
            x,
            y: 0,
            width,
            height: 1080,
        };
        assert!(output_matches(&r, area(-1920, 1920)));
        assert!(!output_matches(&r, area(0, 1920)));
        assert!(!output_matches(&r, area(-1920, 1280)));
    }

    #[test]
    fn shapes_are_checked_against_their_buffers() {
        let color = DXGI_OUTDUPL_POINTER_SHAPE_TYPE_COLOR.0;
        assert!(Shape::new(&info(color, 2, 2, 8), vec![0; 16]).is_some());
        assert!(Shape::new(&info(color, 2, 2, 8), vec![0; 15]).is_none());
        assert!(Shape::new(&info(color, 2, 2, 7), vec![0; 16]).is_none());
        assert!(Shape::new(&info(99, 2, 2, 8), vec![0; 16]).is_none());
        let mono = DXGI_OUTDUPL_POINTER_SHAPE_TYPE_MONOCHROME.0;
        let s = Shape::new(&info(mono, 9, 4, 2), vec![0; 8]).unwrap();
        assert_eq!((s.kind, s.width, s.height), (Kind::Monochrome, 9, 2));
    }

    #[test]
    fn color_pointers_blend_and_clip() {
        let kind = DXGI_OUTDUPL_POINTER_SHAPE_TYPE_COLOR.0;
        // opaque red, half-transparent white, transparent, opaque blue (BGRA, straight alpha)
        let px = [
            [0, 0, 255, 255],
            [255, 255, 255, 128],
            [9, 9, 9, 0],
            [255, 0, 0, 255],
        ];
        let s = Shape::new(&info(kind, 2, 2, 8), px.concat()).unwrap();
        let mut data = grey();
        draw_pointer(&mut data, 8, (2, 2), (0, 0), &s);
        assert_eq!(&data[0..3], &[0, 0, 255]);
        assert_eq!(&data[4..7], &[178, 178, 178]); // (255*128 + 100*127) / 255
        assert_eq!(&data[8..11], &[100, 100, 100]);
        assert_eq!(&data[12..15], &[255, 0, 0]);
        // Shifted half off the bottom-right: only its top-left pixel lands, on (1, 1).
        let mut data = grey();
        draw_pointer(&mut data, 8, (2, 2), (1, 1), &s);
        assert_eq!(&data[12..15], &[0, 0, 255]);
        assert_eq!(&data[0..12], &grey()[0..12]);
        draw_pointer(&mut data, 8, (2, 2), (-5, i32::MAX), &s); // far off: no panic
    }

    #[test]
    fn masked_pointers_replace_or_xor() {
        let kind = DXGI_OUTDUPL_POINTER_SHAPE_TYPE_MASKED_COLOR.0;
        let px = [1, 2, 3, 0, 0xff, 0xff, 0xff, 0xff];
        let s = Shape::new(&info(kind, 2, 1, 8), px.to_vec()).unwrap();
        let mut data = grey();
        draw_pointer(&mut data, 8, (2, 2), (0, 1), &s);
        assert_eq!(&data[8..11], &[1, 2, 3]); // replaced
        assert_eq!(&data[12..15], &[155, 155, 155]); // 100 ^ 0xff
        assert_eq!(&data[0..8], &grey()[0..8]);
    }

    #[test]
    fn monochrome_pointers_follow_the_and_and_xor_masks() {
        let kind = DXGI_OUTDUPL_POINTER_SHAPE_TYPE_MONOCHROME.0;
        // 4x1 pixels: AND row 0b0011, XOR row 0b0101 (MSB first), pitch 1 byte.
        let s = Shape::new(&info(kind, 4, 2, 1), vec![0b0011_0000, 0b0101_0000]).unwrap();
        let mut data = [100, 100, 100, 255].repeat(4);
        draw_pointer(&mut data, 16, (4, 1), (0, 0), &s);
        let rgb: Vec<_> = data.chunks(4).map(|p| p[0]).collect();
        // and=0 xor=0: black; and=0 xor=1: white; and=1 xor=0: unchanged; and=1 xor=1: inverted
        assert_eq!(rgb, [0, 255, 100, 155]);
    }
}
