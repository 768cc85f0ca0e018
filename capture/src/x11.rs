//! The X11 screen source: MIT-SHM reads, DAMAGE-driven change detection, the XFIXES cursor and
//! RandR monitors, all over [x11rb]'s pure-Rust connection.
//!
//! ```text
//!   X server ── DamageNotify (area ∩ monitor?) ──► dirty ─┐
//!            ── XFixes cursor (pos, serial) ────► moved ─┤  neither: Ok(None), no pixels read
//!                                                         ▼
//!            ◄── DamageSubtract, ShmGetImage(monitor) ── X11Capturer::capture
//!   memfd segment (shared with the server only) ──► draw cursor ──► lent to the Frame
//! ```
//!
//! Frames are not copied out of shared memory: each frame borrows a whole segment the server
//! wrote into, and the segment returns to the capturer's free list when the frame is dropped. A
//! host that encodes one frame at a time cycles through one or two segments.
//!
//! Why not scrap's X11 backend (the design card's crate): see ARCHITECTURE.md, "Decisions". In
//! short, scrap 0.5 creates its SysV segment with mode 0777 (any local user can read the shared
//! screen), reads a RandR reply after freeing it, hands back the picture requested one call
//! earlier (a frame of extra latency), ignores request errors and cannot pick a display. Here the
//! segment is a memfd that only this process and the X server hold.

#![allow(unsafe_code)] // one `mmap` of our own memfd, see `ShmImage::new`

use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use memmap2::MmapMut;
use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::Event;
use x11rb::protocol::damage::{self, ConnectionExt as _};
use x11rb::protocol::randr::{self, ConnectionExt as _};
use x11rb::protocol::shm::{self, ConnectionExt as _};
use x11rb::protocol::xfixes::ConnectionExt as _;
use x11rb::protocol::xproto::{self, ConnectionExt as _, ImageFormat, ImageOrder};
use x11rb::rust_connection::RustConnection;

use crate::{CaptureError, Capturer, Frame, FrameData, Lent, MAX_DIMENSION, Monitor, ScreenSpec};

mod cursor;

use cursor::CursorState;

/// The monitors of `display` (`None`: `$DISPLAY`), primary or not, in RandR's order.
///
/// # Errors
///
/// [`CaptureError::X11`] when the display cannot be reached.
pub fn list_monitors(display: Option<&str>) -> Result<Vec<Monitor>, CaptureError> {
    let (conn, screen) = connect(display)?;
    let root = conn.setup().roots[screen].root;
    monitors(&conn, root, &screen_monitor(&conn, screen)).map_err(x11(display))
}

/// Captures one monitor of an X11 display; see the [module docs](self).
pub struct X11Capturer {
    conn: RustConnection,
    display: String,
    root: xproto::Window,
    wanted: Option<usize>,
    monitor: Monitor,
    /// The captured area: the monitor, cropped to even sizes for 4:2:0 video.
    width: u32,
    height: u32,
    images: Images,
    damage: damage::Damage,
    dirty: bool,
    geometry_changed: bool,
    cursor: Option<CursorState>,
    frame_no: u64,
}

impl std::fmt::Debug for X11Capturer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X11Capturer")
            .field("display", &self.display)
            .field("monitor", &self.monitor)
            .field("shm", &self.uses_shm())
            .finish_non_exhaustive()
    }
}

impl X11Capturer {
    /// Connects to the display, picks the monitor and sets up shared memory, damage tracking and
    /// the cursor.
    ///
    /// # Errors
    ///
    /// [`CaptureError::X11`] when the display is unreachable, lacks the DAMAGE extension or has a
    /// pixel format other than 32-bit little-endian true colour; [`CaptureError::NoSuchMonitor`]
    /// for a bad index.
    pub fn open(opts: &ScreenSpec) -> Result<Self, CaptureError> {
        let display = opts.display.as_deref();
        let (conn, screen) = connect(display)?;
        let err = x11(display);
        let setup = conn.setup();
        let root = setup.roots[screen].root;
        check_format(&conn, screen).map_err(&err)?;

        let fallback = screen_monitor(&conn, screen);
        let have_randr = conn
            .extension_information(randr::X11_EXTENSION_NAME)
            .map_err(|e| err(e.to_string()))?
            .is_some();
        if have_randr {
            conn.randr_query_version(1, 5)
                .map_err(|e| err(e.to_string()))?
                .reply()
                .map_err(|e| err(e.to_string()))?;
            conn.randr_select_input(root, randr::NotifyMask::SCREEN_CHANGE)
                .map_err(|e| err(e.to_string()))?;
        }
        let all = monitors(&conn, root, &fallback).map_err(&err)?;
        let monitor = pick(&all, opts.monitor)?;

        conn.damage_query_version(1, 1)
            .map_err(|e| err(e.to_string()))?
            .reply()
            .map_err(|e| err(format!("the DAMAGE extension is missing: {e}")))?;
        let damage = conn.generate_id().map_err(|e| err(e.to_string()))?;
        conn.damage_create(damage, root, damage::ReportLevel::BOUNDING_BOX)
            .map_err(|e| err(e.to_string()))?;

        let cursor = if opts.cursor {
            match conn.xfixes_query_version(4, 0).map(|c| c.reply()) {
                Ok(Ok(_)) => Some(CursorState::default()),
                _ => {
                    tracing::warn!("XFIXES is missing: the pointer is not drawn into frames");
                    None
                }
            }
        } else {
            None
        };

        let (width, height) = even_size(&monitor)?;
        let images = Images::new(&conn, width, height).map_err(&err)?;
        Ok(Self {
            conn,
            display: display_name(display),
            root,
            wanted: opts.monitor,
            monitor,
            width,
            height,
            images,
            damage,
            dirty: true,
            geometry_changed: false,
            cursor,
            frame_no: 0,
        })
    }

    /// The monitor being captured.
    pub fn monitor(&self) -> &Monitor {
        &self.monitor
    }

    /// Whether pixels travel through shared memory (false on a remote X server).
    pub fn uses_shm(&self) -> bool {
        matches!(self.images, Images::Shm { .. })
    }

    /// Reads pending events: damage on our monitor, screen size changes.
    fn drain_events(&mut self) -> Result<(), CaptureError> {
        let err = x11(Some(&self.display));
        while let Some(event) = self.conn.poll_for_event().map_err(|e| err(e.to_string()))? {
            match event {
                Event::DamageNotify(ev) => {
                    let m = &self.monitor;
                    if intersects(&ev.area, m) {
                        self.dirty = true;
                    }
                }
                Event::RandrScreenChangeNotify(_) => self.geometry_changed = true,
                Event::Error(e) => return Err(err(format!("X error {:?}", e.error_kind))),
                _ => {}
            }
        }
        Ok(())
    }

    fn reconfigure(&mut self) -> Result<(), CaptureError> {
        self.geometry_changed = false;
        let err = x11(Some(&self.display));
        let screen = screen_monitor(&self.conn, 0);
        let all = monitors(&self.conn, self.root, &screen).map_err(&err)?;
        let monitor = pick(&all, self.wanted)?;
        if monitor != self.monitor {
            tracing::info!(from = %self.monitor, to = %monitor, "captured monitor changed");
            let (width, height) = even_size(&monitor)?;
            if (width, height) != (self.width, self.height) {
                self.images.resize(&self.conn, width, height);
                self.width = width;
                self.height = height;
            }
            self.monitor = monitor;
        }
        self.dirty = true;
        Ok(())
    }

    /// Reads the monitor's pixels into a free segment (or a GetImage reply) for a new frame.
    fn grab(&mut self) -> Result<FrameData, CaptureError> {
        let err = x11(Some(&self.display));
        // Subtract first: damage that lands while the server copies is seen next time.
        self.conn
            .damage_subtract(self.damage, x11rb::NONE, x11rb::NONE)
            .map_err(|e| err(e.to_string()))?;
        let m = &self.monitor;
        let (w, h) = (self.width as u16, self.height as u16);
        let data = self
            .images
            .read(&self.conn, self.root, m.x, m.y, w, h)
            .map_err(&err)?;
        self.dirty = false;
        Ok(data)
    }
}

impl Capturer for X11Capturer {
    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn capture(&mut self) -> Result<Option<Frame>, CaptureError> {
        self.drain_events()?;
        if self.geometry_changed {
            self.reconfigure()?;
        }
        let cursor_changed = match self.cursor.as_mut() {
            Some(c) => c.refresh(&self.conn).map_err(x11(Some(&self.display)))?,
            None => false,
        };
        if !self.dirty && !cursor_changed {
            return Ok(None);
        }
        // A moved pointer alone reads the screen again too: the last frame has the pointer drawn
        // into it, and it is the consumer's now.
        let mut data = self.grab()?;
        let captured_at_us = crate::unix_micros();
        let (w, h) = (self.width as usize, self.height as usize);
        let stride = w * 4;
        if let Some(c) = &self.cursor {
            c.draw(
                &mut data,
                stride,
                (w, h),
                (i32::from(self.monitor.x), i32::from(self.monitor.y)),
            );
        }
        let frame = Frame {
            width: self.width,
            height: self.height,
            stride,
            data,
            frame_no: self.frame_no,
            captured_at_us,
        };
        self.frame_no += 1;
        Ok(Some(frame))
    }

    fn refresh(&mut self) {
        self.dirty = true;
    }
}

impl Drop for X11Capturer {
    fn drop(&mut self) {
        self.images.release_free(&self.conn);
        let _ = self.conn.damage_destroy(self.damage);
        let _ = self.conn.flush();
    }
}

/// Where the server puts the pixels.
enum Images {
    /// Shared-memory segments of `len` bytes; `free` holds those not lent to a frame.
    Shm {
        free: Arc<Mutex<Vec<ShmImage>>>,
        len: usize,
    },
    /// Plain GetImage through the socket (remote X servers): each reply's buffer becomes a frame.
    Plain { len: usize },
}

struct ShmImage {
    seg: shm::Seg,
    map: MmapMut,
}

impl ShmImage {
    /// A memfd of `len` bytes, mapped here and attached to the server.
    fn new(conn: &RustConnection, len: usize) -> Result<Self, String> {
        let fd = rustix::fs::memfd_create("quicdesk-capture", rustix::fs::MemfdFlags::CLOEXEC)
            .map_err(|e| format!("memfd_create: {e}"))?;
        let file = File::from(fd);
        file.set_len(len as u64)
            .map_err(|e| format!("sizing the capture buffer: {e}"))?;
        // SAFETY: the memfd is ours and unnamed; only this process and the X server hold it.
        // The server writes into it only while serving a ShmGetImage, which `Images::read` sends
        // for a segment on the free list (not lent to any frame, so no slice of it is alive) and
        // waits for the reply before lending the segment out. `set_len` above fixed its size,
        // and nothing truncates it.
        let map = unsafe { MmapMut::map_mut(&file) }.map_err(|e| format!("mmap: {e}"))?;
        let seg = conn.generate_id().map_err(|e| e.to_string())?;
        let server_fd = OwnedFd::from(file.try_clone().map_err(|e| e.to_string())?);
        conn.shm_attach_fd(seg, server_fd, false)
            .map_err(|e| e.to_string())?
            .check()
            .map_err(|e| format!("MIT-SHM attach: {e}"))?;
        Ok(Self { seg, map })
    }
}

/// A segment lent to a frame; back on its capturer's free list when the frame is dropped (or
/// unmapped, if the capturer is gone: its connection took the server's side along).
struct Lease {
    image: Option<ShmImage>,
    home: Weak<Mutex<Vec<ShmImage>>>,
}

impl Lent for Lease {
    fn bytes(&self) -> &[u8] {
        self.image.as_ref().map_or(&[], |i| &i.map[..])
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        self.image.as_mut().map_or(&mut [], |i| &mut i.map[..])
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let (Some(image), Some(home)) = (self.image.take(), self.home.upgrade()) {
            home.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(image);
        }
    }
}

impl Images {
    fn new(conn: &RustConnection, width: u32, height: u32) -> Result<Self, String> {
        let len = width as usize * height as usize * 4;
        let local = conn
            .extension_information(shm::X11_EXTENSION_NAME)
            .map_err(|e| e.to_string())?
            .is_some()
            && conn
                .shm_query_version()
                .ok()
                .and_then(|c| c.reply().ok())
                .is_some_and(|v| (v.major_version, v.minor_version) >= (1, 2));
        if local {
            match ShmImage::new(conn, len) {
                Ok(first) => {
                    return Ok(Images::Shm {
                        free: Arc::new(Mutex::new(vec![first])),
                        len,
                    });
                }
                Err(e) => tracing::warn!("MIT-SHM unavailable ({e}); capturing through the socket"),
            }
        } else {
            tracing::warn!(
                "the X server has no MIT-SHM 1.2: capturing through the socket (slower)"
            );
        }
        Ok(Images::Plain { len })
    }

    /// New frames are `width` x `height`; segments of the old size are dropped as they come back.
    fn resize(&mut self, conn: &RustConnection, width: u32, height: u32) {
        self.release_free(conn);
        match self {
            Images::Shm { len, .. } | Images::Plain { len } => {
                *len = width as usize * height as usize * 4;
            }
        }
    }

    /// Detaches the segments on the free list from the server.
    fn release_free(&self, conn: &RustConnection) {
        if let Images::Shm { free, .. } = self {
            let mut free = free.lock().unwrap_or_else(PoisonError::into_inner);
            for image in free.drain(..) {
                let _ = conn.shm_detach(image.seg);
            }
        }
    }

    fn read(
        &mut self,
        conn: &RustConnection,
        root: xproto::Window,
        x: i16,
        y: i16,
        w: u16,
        h: u16,
    ) -> Result<FrameData, String> {
        let format = u8::from(ImageFormat::Z_PIXMAP);
        match self {
            Images::Shm { free, len } => {
                // A free segment of the current size, else a new one.
                let image = loop {
                    let next = free.lock().unwrap_or_else(PoisonError::into_inner).pop();
                    match next {
                        Some(image) if image.map.len() == *len => break image,
                        Some(stale) => {
                            let _ = conn.shm_detach(stale.seg);
                        }
                        None => break ShmImage::new(conn, *len)?,
                    }
                };
                let lease = Lease {
                    image: Some(image),
                    home: Arc::downgrade(free),
                };
                let seg = lease.image.as_ref().map_or(x11rb::NONE, |i| i.seg);
                // On an error the lease goes back to the free list as it is dropped.
                conn.shm_get_image(root, x, y, w, h, !0, format, seg, 0)
                    .map_err(|e| e.to_string())?
                    .reply()
                    .map_err(|e| format!("ShmGetImage: {e}"))?;
                Ok(FrameData::lent(Box::new(lease)))
            }
            Images::Plain { len } => {
                let mut data = conn
                    .get_image(ImageFormat::Z_PIXMAP, root, x, y, w, h, !0)
                    .map_err(|e| e.to_string())?
                    .reply()
                    .map_err(|e| format!("GetImage: {e}"))?
                    .data;
                if data.len() < *len {
                    return Err(format!(
                        "GetImage returned {} bytes, expected {len}",
                        data.len()
                    ));
                }
                data.truncate(*len);
                Ok(data.into())
            }
        }
    }
}

fn display_name(display: Option<&str>) -> String {
    display
        .map(str::to_owned)
        .or_else(|| std::env::var("DISPLAY").ok())
        .unwrap_or_else(|| "(no DISPLAY set)".into())
}

/// Maps a reason to [`CaptureError::X11`] naming the display.
fn x11(display: Option<&str>) -> impl Fn(String) -> CaptureError {
    let display = display_name(display);
    move |reason| CaptureError::X11 {
        display: display.clone(),
        reason,
    }
}

fn connect(display: Option<&str>) -> Result<(RustConnection, usize), CaptureError> {
    if display.is_none() && std::env::var_os("DISPLAY").is_none() {
        return Err(x11(None)(
            "no X display: set DISPLAY or pass --display (Wayland-only sessions are not supported)"
                .into(),
        ));
    }
    let (conn, screen) = x11rb::connect(display).map_err(|e| x11(display)(e.to_string()))?;
    if screen >= conn.setup().roots.len() {
        return Err(x11(display)(format!("screen {screen} does not exist")));
    }
    Ok((conn, screen))
}

/// Capture reads the root window as 32-bit BGRX: check the server agrees.
fn check_format(conn: &RustConnection, screen: usize) -> Result<(), String> {
    let setup = conn.setup();
    let depth = setup.roots[screen].root_depth;
    let bpp = setup
        .pixmap_formats
        .iter()
        .find(|f| f.depth == depth)
        .map(|f| f.bits_per_pixel);
    if !(depth == 24 || depth == 32)
        || bpp != Some(32)
        || setup.image_byte_order != ImageOrder::LSB_FIRST
    {
        return Err(format!(
            "unsupported pixel format (depth {depth}, {bpp:?} bits per pixel, {:?}); \
             quicdesk captures 24/32-bit little-endian true colour",
            setup.image_byte_order
        ));
    }
    Ok(())
}

/// The whole screen as one monitor: the answer without RandR.
fn screen_monitor(conn: &RustConnection, screen: usize) -> Monitor {
    let s = &conn.setup().roots[screen.min(conn.setup().roots.len() - 1)];
    Monitor {
        index: 0,
        name: "screen".into(),
        primary: true,
        x: 0,
        y: 0,
        width: s.width_in_pixels,
        height: s.height_in_pixels,
    }
}

fn monitors(
    conn: &RustConnection,
    root: xproto::Window,
    fallback: &Monitor,
) -> Result<Vec<Monitor>, String> {
    let has_randr = conn
        .extension_information(randr::X11_EXTENSION_NAME)
        .map_err(|e| e.to_string())?
        .is_some();
    if !has_randr {
        return Ok(vec![fallback.clone()]);
    }
    let reply = conn
        .randr_get_monitors(root, true)
        .map_err(|e| e.to_string())?
        .reply()
        .map_err(|e| format!("RRGetMonitors: {e}"))?;
    let mut out = Vec::with_capacity(reply.monitors.len());
    for (index, m) in reply.monitors.iter().enumerate() {
        let name = conn
            .get_atom_name(m.name)
            .ok()
            .and_then(|c| c.reply().ok())
            .map_or_else(
                || format!("monitor-{index}"),
                |r| String::from_utf8_lossy(&r.name).into_owned(),
            );
        out.push(Monitor {
            index,
            name,
            primary: m.primary,
            x: m.x,
            y: m.y,
            width: m.width,
            height: m.height,
        });
    }
    if out.is_empty() {
        out.push(fallback.clone());
    }
    Ok(out)
}

fn pick(all: &[Monitor], wanted: Option<usize>) -> Result<Monitor, CaptureError> {
    match wanted {
        Some(index) => all.get(index).cloned().ok_or(CaptureError::NoSuchMonitor {
            index,
            count: all.len(),
        }),
        None => all
            .iter()
            .find(|m| m.primary)
            .or_else(|| all.first())
            .cloned()
            .ok_or(CaptureError::NoSuchMonitor { index: 0, count: 0 }),
    }
}

/// The monitor's size cropped to even numbers, as 4:2:0 video needs.
fn even_size(m: &Monitor) -> Result<(u32, u32), CaptureError> {
    let (w, h) = (u32::from(m.width) & !1, u32::from(m.height) & !1);
    crate::validate_size(w.min(MAX_DIMENSION + 1), h.min(MAX_DIMENSION + 1))?;
    Ok((w, h))
}

fn intersects(r: &xproto::Rectangle, m: &Monitor) -> bool {
    let (rx0, ry0) = (i32::from(r.x), i32::from(r.y));
    let (rx1, ry1) = (rx0 + i32::from(r.width), ry0 + i32::from(r.height));
    let (mx0, my0) = (i32::from(m.x), i32::from(m.y));
    let (mx1, my1) = (mx0 + i32::from(m.width), my0 + i32::from(m.height));
    rx0 < mx1 && mx0 < rx1 && ry0 < my1 && my0 < ry1
}

#[cfg(test)]
mod tests;
