//! The Windows sources against the real desktop (under Wine in CI: the Xvfb screen): windows
//! of known colours are drawn and read back through GDI.

use std::time::{Duration, Instant};

use windows::Win32::Foundation::{COLORREF, HWND, LPARAM, LRESULT, WPARAM};
use windows::Win32::Graphics::Gdi::CreateSolidBrush;
use windows::Win32::UI::WindowsAndMessaging::{
    CreateWindowExW, DefWindowProcW, DestroyWindow, DispatchMessageW, HWND_TOPMOST, MSG, PM_REMOVE,
    PeekMessageW, RegisterClassW, SWP_NOSIZE, SetWindowPos, WINDOW_EX_STYLE, WNDCLASSW, WS_POPUP,
    WS_VISIBLE,
};
use windows::core::{HSTRING, PCWSTR};

use super::*;
use crate::{Capturer, Frame};

unsafe extern "system" fn window_proc(h: HWND, m: u32, w: WPARAM, l: LPARAM) -> LRESULT {
    // SAFETY: the default handling of the message Windows passed us.
    unsafe { DefWindowProcW(h, m, w, l) }
}

/// A top-most borderless window filled with one colour by its class's background brush.
struct Solid(HWND);

impl Solid {
    fn new(name: &str, (r, g, b): (u8, u8, u8), (x, y, w, h): (i32, i32, i32, i32)) -> Self {
        let class = HSTRING::from(format!("quicdesk-test-{name}"));
        // SAFETY: a class whose name and brush outlive the test process; a plain window of it.
        unsafe {
            let brush = CreateSolidBrush(COLORREF(
                u32::from(r) | u32::from(g) << 8 | u32::from(b) << 16,
            ));
            let wc = WNDCLASSW {
                lpfnWndProc: Some(window_proc),
                hbrBackground: brush,
                lpszClassName: PCWSTR(class.as_ptr()),
                ..Default::default()
            };
            assert_ne!(RegisterClassW(&wc), 0, "RegisterClassW");
            let hwnd = CreateWindowExW(
                WINDOW_EX_STYLE(0),
                &class,
                &class,
                WS_POPUP | WS_VISIBLE,
                x,
                y,
                w,
                h,
                None,
                None,
                None,
                None,
            )
            .expect("CreateWindowExW");
            let _ = SetWindowPos(hwnd, Some(HWND_TOPMOST), x, y, 0, 0, SWP_NOSIZE);
            std::mem::forget(class);
            Self(hwnd)
        }
    }

    fn move_to(&self, x: i32, y: i32) {
        // SAFETY: our own window.
        unsafe { SetWindowPos(self.0, Some(HWND_TOPMOST), x, y, 0, 0, SWP_NOSIZE) }
            .expect("SetWindowPos");
    }
}

impl Drop for Solid {
    fn drop(&mut self) {
        // SAFETY: our own window, destroyed once.
        let _ = unsafe { DestroyWindow(self.0) };
    }
}

/// Handles this thread's window messages for `d` (painting happens there).
fn pump(d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        let mut msg = MSG::default();
        // SAFETY: a message loop over this thread's queue.
        while unsafe { PeekMessageW(&mut msg, None, 0, 0, PM_REMOVE) }.as_bool() {
            // SAFETY: a message PeekMessage filled in.
            unsafe { DispatchMessageW(&msg) };
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn pixel(f: &Frame, x: u32, y: u32) -> (u8, u8, u8) {
    let i = y as usize * f.stride + x as usize * 4;
    (f.data[i + 2], f.data[i + 1], f.data[i])
}

#[test]
fn gdi_reads_windows_of_known_colours_and_sees_them_move() {
    let magenta = Solid::new("magenta", (255, 0, 255), (100, 120, 200, 150));
    let _teal = Solid::new("teal", (0, 128, 128), (500, 300, 120, 90));
    pump(Duration::from_millis(500));
    let primary = list_monitors()
        .unwrap()
        .into_iter()
        .find(|m| m.primary)
        .unwrap();
    let area = Area {
        x: i32::from(primary.x),
        y: i32::from(primary.y),
        width: u32::from(primary.width) & !1,
        height: u32::from(primary.height) & !1,
    };
    let mut c = GdiCapturer::open(area, false).unwrap();
    let f = c
        .capture()
        .unwrap()
        .expect("the first capture is a picture");
    assert_eq!((f.width, f.height), (area.width, area.height));
    assert_eq!(
        pixel(&f, 200, 195),
        (255, 0, 255),
        "inside the magenta window"
    );
    assert_eq!(pixel(&f, 100, 120), (255, 0, 255), "its top-left pixel");
    assert_eq!(pixel(&f, 299, 269), (255, 0, 255), "its bottom-right pixel");
    assert_ne!(pixel(&f, 300, 270), (255, 0, 255), "just outside it");
    assert_eq!(pixel(&f, 560, 345), (0, 128, 128), "inside the teal window");

    // Nothing changed: no picture, until asked for one.
    pump(Duration::from_millis(100));
    assert!(c.capture().unwrap().is_none());
    c.refresh();
    assert!(c.capture().unwrap().is_some());

    magenta.move_to(700, 500);
    pump(Duration::from_millis(300));
    let f = c.capture().unwrap().expect("a moved window is a change");
    assert_eq!(pixel(&f, 750, 550), (255, 0, 255));
    assert_ne!(pixel(&f, 200, 195), (255, 0, 255));
}

#[test]
fn the_seam_opens_a_screen_with_even_sizes() {
    let o = crate::open(&crate::SourceSpec::Screen(ScreenSpec::default())).unwrap();
    assert_eq!(o.area.width % 2, 0);
    assert_eq!(o.area.height % 2, 0);
    assert!(o.description.contains("GDI") || o.description.contains("DXGI"));
}
