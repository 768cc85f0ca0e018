//! The Windows screen sources: monitors from `EnumDisplayMonitors`, pictures from DXGI Desktop
//! Duplication ([`dxgi`]) where the system offers it, else from GDI ([`gdi`]).
//!
//! ```text
//!   open_screen(spec) ── monitors() ── pick (index, primary, first) ── area on the desktop
//!        │
//!        ├─ DxgiCapturer::open(area)  dirty rectangles say what changed; the pointer drawn in
//!        └─ (fails: no DXGI 1.2, Wine, a remote session) GdiCapturer::open(area)
//!                                     BitBlt + compare with the last picture
//! ```
//!
//! `QUICDESK_CAPTURE=gdi` forces GDI (diagnosis). The process is made per-monitor DPI aware
//! first, so areas and pictures are in physical pixels, the ones SendInput and the viewer
//! use.
//!
//! What this does not do: capture the secure desktop (UAC, the logon screen; a service in
//! session 0 cannot reach it either without running on that desktop), or capture one window.
//! Wine has no Desktop Duplication (`DuplicateOutput` answers E_NOTIMPL), so the tests under
//! Wine exercise GDI and DXGI is compile-checked only.

mod dxgi;
mod gdi;
#[cfg(test)]
mod tests;

use std::sync::Once;

use windows::Win32::Foundation::{LPARAM, RECT};
use windows::Win32::Graphics::Gdi::{
    EnumDisplayMonitors, GetMonitorInfoW, HDC, HMONITOR, MONITORINFO, MONITORINFOEXW,
};
use windows::Win32::UI::HiDpi::{
    DPI_AWARENESS_CONTEXT_PER_MONITOR_AWARE_V2, SetProcessDpiAwarenessContext,
};
use windows::core::BOOL;

pub use dxgi::DxgiCapturer;
pub use gdi::GdiCapturer;

use crate::{Area, CaptureError, Monitor, Opened, ScreenSpec};

/// `MONITORINFOF_PRIMARY`: the flag GetMonitorInfo sets on the primary monitor.
const PRIMARY: u32 = 1;

/// Physical pixels everywhere: without this a scaled display reports (and GDI copies) a
/// shrunken desktop. Once per process; an error (an older Windows, or the manifest already
/// set it) leaves the default.
fn dpi_aware() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: a plain call with a predefined constant.
        if let Err(e) =
            unsafe { SetProcessDpiAwarenessContext(DPI_AWARENESS_CONTEXT_PER_MONITOR_AWARE_V2) }
        {
            tracing::debug!("SetProcessDpiAwarenessContext: {e}");
        }
    });
}

/// The monitors in the order Windows enumerates them.
pub fn list_monitors() -> Result<Vec<Monitor>, CaptureError> {
    dpi_aware();
    let mut found: Vec<HMONITOR> = Vec::new();
    unsafe extern "system" fn each(m: HMONITOR, _: HDC, _: *mut RECT, data: LPARAM) -> BOOL {
        // SAFETY: `data` is the `&mut Vec` passed below, alive for the whole enumeration.
        let found = unsafe { &mut *(data.0 as *mut Vec<HMONITOR>) };
        found.push(m);
        true.into()
    }
    // SAFETY: the callback only pushes into the vector `data` points to, which outlives the
    // call.
    let ok = unsafe {
        EnumDisplayMonitors(
            None,
            None,
            Some(each),
            LPARAM(&mut found as *mut Vec<HMONITOR> as isize),
        )
    };
    if !ok.as_bool() {
        return Err(win_error("EnumDisplayMonitors"));
    }
    let mut out = Vec::with_capacity(found.len());
    for (index, m) in found.into_iter().enumerate() {
        let mut info = MONITORINFOEXW::default();
        info.monitorInfo.cbSize = size_of::<MONITORINFOEXW>() as u32;
        // SAFETY: `info` is a MONITORINFOEXW with its size set, as the call asks.
        let ok =
            unsafe { GetMonitorInfoW(m, &mut info as *mut MONITORINFOEXW as *mut MONITORINFO) };
        if !ok.as_bool() {
            return Err(win_error("GetMonitorInfoW"));
        }
        let r = info.monitorInfo.rcMonitor;
        let name_len = info.szDevice.iter().position(|&c| c == 0).unwrap_or(0);
        out.push(monitor_from_rect(
            index,
            String::from_utf16_lossy(&info.szDevice[..name_len]),
            info.monitorInfo.dwFlags & PRIMARY != 0,
            (r.left, r.top, r.right, r.bottom),
        )?);
    }
    Ok(out)
}

/// A monitor from its desktop rectangle (left, top, right, bottom), checked to fit the
/// [`Monitor`] fields and [`crate::MAX_DIMENSION`].
fn monitor_from_rect(
    index: usize,
    name: String,
    primary: bool,
    (left, top, right, bottom): (i32, i32, i32, i32),
) -> Result<Monitor, CaptureError> {
    let (w, h) = (right - left, bottom - top);
    let too_big = |what: &str| {
        CaptureError::Io(std::io::Error::other(format!(
            "monitor {index} ({name}) has an unusable {what}: {w}x{h}+{left}+{top}"
        )))
    };
    let fits = |v: i32| v > 0 && v as u32 <= crate::MAX_DIMENSION;
    if !fits(w) || !fits(h) {
        return Err(too_big("size"));
    }
    Ok(Monitor {
        index,
        name: name.trim_start_matches(r"\\.\").to_string(),
        primary,
        x: i16::try_from(left).map_err(|_| too_big("position"))?,
        y: i16::try_from(top).map_err(|_| too_big("position"))?,
        width: w as u16,
        height: h as u16,
    })
}

/// Which monitor `spec` means: its index, else the primary, else the first.
fn pick(monitors: &[Monitor], spec: &ScreenSpec) -> Result<Monitor, CaptureError> {
    match spec.monitor {
        Some(i) => monitors.get(i).cloned().ok_or(CaptureError::NoSuchMonitor {
            index: i,
            count: monitors.len(),
        }),
        None => monitors
            .iter()
            .find(|m| m.primary)
            .or_else(|| monitors.first())
            .cloned()
            .ok_or_else(|| CaptureError::Io(std::io::Error::other("Windows reports no monitor"))),
    }
}

pub fn open_screen(spec: &ScreenSpec) -> Result<Opened, CaptureError> {
    let monitors = list_monitors()?;
    let m = pick(&monitors, spec)?;
    let area = Area {
        x: i32::from(m.x),
        y: i32::from(m.y),
        width: u32::from(m.width),
        height: u32::from(m.height),
    };
    // 4:2:0 video wants even sizes: an odd last column or row is left out, as on X11. DXGI
    // duplicates the whole output and crops its frames.
    let even = Area {
        width: area.width & !1,
        height: area.height & !1,
        ..area
    };
    let forced_gdi = std::env::var("QUICDESK_CAPTURE").is_ok_and(|v| v == "gdi");
    if !forced_gdi {
        match DxgiCapturer::open(area, spec.cursor) {
            Ok(c) => {
                return Ok(Opened {
                    capturer: Box::new(c),
                    area: even,
                    description: format!("Windows monitor {m}, DXGI desktop duplication"),
                });
            }
            Err(e) => {
                let why = std::error::Error::source(&e).map_or(e.to_string(), |s| s.to_string());
                tracing::info!("DXGI desktop duplication unavailable ({why}); using GDI")
            }
        }
    }
    let c = GdiCapturer::open(even, spec.cursor)?;
    Ok(Opened {
        capturer: Box::new(c),
        area: even,
        description: format!("Windows monitor {m}, GDI"),
    })
}

/// The last Win32 error, named by the call that failed.
fn win_error(call: &str) -> CaptureError {
    CaptureError::Io(std::io::Error::other(format!(
        "{call} failed: {}",
        windows::core::Error::from_thread()
    )))
}

#[cfg(test)]
mod seam_tests {
    use super::*;

    fn m(index: usize, primary: bool) -> Monitor {
        monitor_from_rect(
            index,
            format!(r"\\.\DISPLAY{index}"),
            primary,
            (0, 0, 800, 600),
        )
        .unwrap()
    }

    #[test]
    fn monitors_are_named_without_the_device_prefix_and_checked() {
        let a = monitor_from_rect(0, r"\\.\DISPLAY1".into(), true, (-1920, 0, 0, 1080)).unwrap();
        assert_eq!(
            (a.name.as_str(), a.x, a.width, a.height),
            ("DISPLAY1", -1920, 1920, 1080)
        );
        assert!(monitor_from_rect(0, "x".into(), false, (0, 0, 0, 10)).is_err());
        assert!(monitor_from_rect(0, "x".into(), false, (0, 0, 9000, 10)).is_err());
        assert!(monitor_from_rect(0, "x".into(), false, (40000, 0, 40100, 10)).is_err());
    }

    #[test]
    fn the_primary_monitor_is_the_default_and_an_index_is_checked() {
        let ms = [m(0, false), m(1, true)];
        let spec = ScreenSpec::default();
        assert_eq!(pick(&ms, &spec).unwrap().index, 1);
        let spec = ScreenSpec {
            monitor: Some(0),
            ..spec
        };
        assert_eq!(pick(&ms, &spec).unwrap().index, 0);
        let spec = ScreenSpec {
            monitor: Some(2),
            ..spec
        };
        assert!(matches!(
            pick(&ms, &spec),
            Err(CaptureError::NoSuchMonitor { index: 2, count: 2 })
        ));
    }

    /// The real desktop: under Wine, Xvfb's screen is one monitor.
    #[test]
    fn this_desktop_has_a_monitor() {
        let ms = list_monitors().unwrap();
        assert!(!ms.is_empty());
        assert!(ms.iter().any(|m| m.width > 0 && m.height > 0));
    }
}
