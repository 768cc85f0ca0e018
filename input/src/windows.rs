//! Performing events on the Windows desktop with `SendInput`: keys as scan codes
//! ([`crate::windows_key`]), so the host's own layout gives them meaning as if its keyboard
//! had been pressed; the pointer at absolute positions on the whole virtual desktop (every
//! monitor); buttons, the wheel and Unicode text through enigo's Windows backend.
//!
//! Why keys and pointer moves do not go through enigo (see ARCHITECTURE.md, "Decisions"):
//! enigo 0.6's absolute move maps onto the primary monitor only (no `MOUSEEVENTF_VIRTUALDESK`)
//! with a rounding that lands a pixel short, and its `raw` scan codes go out with the 0xE0
//! prefix in `wScan`. Both are a few lines of `SendInput` here.
//!
//! What it cannot do: input into the secure desktop (UAC prompts, the logon screen) or into a
//! window of a process with a higher integrity level than the agent's (Windows' UIPI drops
//! those events silently); a service-launched agent in the user's session has the user's level.

use enigo::{Axis, Direction, Enigo, Keyboard, Mouse, Settings};
use windows::Win32::Foundation::POINT;
use windows::Win32::UI::Input::KeyboardAndMouse::{
    INPUT, INPUT_0, INPUT_KEYBOARD, INPUT_MOUSE, KEYBD_EVENT_FLAGS, KEYBDINPUT,
    KEYEVENTF_EXTENDEDKEY, KEYEVENTF_KEYUP, KEYEVENTF_SCANCODE, MOUSEEVENTF_ABSOLUTE,
    MOUSEEVENTF_MOVE, MOUSEEVENTF_VIRTUALDESK, MOUSEINPUT, SendInput, VIRTUAL_KEY,
};
use windows::Win32::UI::WindowsAndMessaging::{
    GetCursorPos, GetSystemMetrics, SM_CXVIRTUALSCREEN, SM_CYVIRTUALSCREEN, SM_XVIRTUALSCREEN,
    SM_YVIRTUALSCREEN,
};

use crate::{
    HeldInputs, InputBackend, InputError, InputEvent, Key, ScreenSize, WindowsKey, windows_key,
};

/// Performs input on this Windows session's desktop.
pub struct WindowsBackend {
    enigo: Enigo,
    size: Option<ScreenSize>,
    origin: (i32, i32),
    held: HeldInputs,
}

impl std::fmt::Debug for WindowsBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowsBackend")
            .field("size", &self.size)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// The virtual desktop: left, top, width, height (every monitor's bounding box).
fn virtual_desktop() -> (i32, i32, i32, i32) {
    // SAFETY: plain queries of system metrics.
    unsafe {
        (
            GetSystemMetrics(SM_XVIRTUALSCREEN),
            GetSystemMetrics(SM_YVIRTUALSCREEN),
            GetSystemMetrics(SM_CXVIRTUALSCREEN),
            GetSystemMetrics(SM_CYVIRTUALSCREEN),
        )
    }
}

/// `SendInput`'s absolute coordinate (0..=65535 across the virtual desktop starting at
/// `start`, `extent` pixels long) that lands exactly on pixel `p`. Windows maps `v` back to
/// `floor(v * extent / 65536)`, so the smallest `v` whose pixel is `p` is the ceiling of
/// `(p - start) * 65536 / extent`.
pub fn absolute_coordinate(p: i32, start: i32, extent: i32) -> i32 {
    let extent = i64::from(extent.max(1));
    let off = (i64::from(p) - i64::from(start)).clamp(0, extent - 1);
    ((off * 65536 + extent - 1) / extent) as i32
}

fn send(inputs: &[INPUT]) -> Result<(), InputError> {
    // SAFETY: a slice of fully initialised INPUT structures and their size.
    let sent = unsafe { SendInput(inputs, size_of::<INPUT>() as i32) };
    if sent as usize == inputs.len() {
        Ok(())
    } else {
        Err(InputError::Backend(format!(
            "SendInput performed {sent} of {} events: {} (input into a window of a more \
             privileged process or the secure desktop is refused)",
            inputs.len(),
            windows::core::Error::from_thread()
        )))
    }
}

fn key_input(key: WindowsKey, pressed: bool) -> INPUT {
    let up = if pressed {
        KEYBD_EVENT_FLAGS(0)
    } else {
        KEYEVENTF_KEYUP
    };
    let ki = match key {
        WindowsKey::Scan { code, extended } => KEYBDINPUT {
            wScan: u16::from(code),
            dwFlags: KEYEVENTF_SCANCODE
                | up
                | if extended {
                    KEYEVENTF_EXTENDEDKEY
                } else {
                    KEYBD_EVENT_FLAGS(0)
                },
            ..Default::default()
        },
        WindowsKey::Virtual(vk) => KEYBDINPUT {
            wVk: VIRTUAL_KEY(vk),
            // NumLock is an extended key for the virtual-key path.
            dwFlags: up
                | if vk == 0x90 {
                    KEYEVENTF_EXTENDEDKEY
                } else {
                    KEYBD_EVENT_FLAGS(0)
                },
            ..Default::default()
        },
    };
    INPUT {
        r#type: INPUT_KEYBOARD,
        Anonymous: INPUT_0 { ki },
    }
}

impl WindowsBackend {
    /// The backend for this process's desktop.
    ///
    /// # Errors
    ///
    /// [`InputError::Backend`] when enigo cannot start.
    pub fn new() -> Result<Self, InputError> {
        let settings = Settings {
            release_keys_when_dropped: true,
            ..Settings::default()
        };
        let enigo = Enigo::new(&settings)
            .map_err(|e| InputError::Backend(format!("Windows input: {e}")))?;
        Ok(Self {
            enigo,
            size: None,
            origin: (0, 0),
            held: HeldInputs::new(),
        })
    }

    fn key(&mut self, key: Key, pressed: bool) -> Result<(), InputError> {
        let Some(w) = windows_key(key) else {
            return Err(InputError::Backend(format!(
                "{key} has no Windows scan code"
            )));
        };
        send(&[key_input(w, pressed)])
    }

    fn move_to(&mut self, x: i32, y: i32) -> Result<(), InputError> {
        let (vx, vy, vw, vh) = virtual_desktop();
        let mi = MOUSEINPUT {
            dx: absolute_coordinate(x, vx, vw),
            dy: absolute_coordinate(y, vy, vh),
            dwFlags: MOUSEEVENTF_MOVE | MOUSEEVENTF_ABSOLUTE | MOUSEEVENTF_VIRTUALDESK,
            ..Default::default()
        };
        send(&[INPUT {
            r#type: INPUT_MOUSE,
            Anonymous: INPUT_0 { mi },
        }])
    }

    fn fail(what: &str, e: impl std::fmt::Display) -> InputError {
        InputError::Backend(format!("Windows input: {what}: {e}"))
    }
}

/// Where the pointer is on the virtual desktop (tests, diagnosis).
pub fn pointer_position() -> Option<(i32, i32)> {
    let mut p = POINT::default();
    // SAFETY: `p` is a valid POINT to write to.
    unsafe { GetCursorPos(&mut p) }.ok()?;
    Some((p.x, p.y))
}

impl InputBackend for WindowsBackend {
    fn inject(&mut self, event: &InputEvent) -> Result<(), InputError> {
        match event {
            InputEvent::MouseMove { pos } => {
                let size = self.size.ok_or_else(|| {
                    InputError::Backend("pointer move before the screen size is known".into())
                })?;
                let p = pos.to_screen(size);
                let x = self
                    .origin
                    .0
                    .saturating_add(i32::try_from(p.x()).unwrap_or(i32::MAX));
                let y = self
                    .origin
                    .1
                    .saturating_add(i32::try_from(p.y()).unwrap_or(i32::MAX));
                self.move_to(x, y)?;
            }
            InputEvent::MouseButton { button, pressed } => {
                let dir = if *pressed {
                    Direction::Press
                } else {
                    Direction::Release
                };
                self.enigo
                    .button(crate::enigo_button(*button), dir)
                    .map_err(|e| Self::fail("button", e))?;
            }
            InputEvent::Wheel { dx, dy } => {
                // enigo and InputEvent agree: positive scrolls down / right.
                if *dy != 0 {
                    self.enigo
                        .scroll(i32::from(*dy), Axis::Vertical)
                        .map_err(|e| Self::fail("wheel", e))?;
                }
                if *dx != 0 {
                    self.enigo
                        .scroll(i32::from(*dx), Axis::Horizontal)
                        .map_err(|e| Self::fail("wheel", e))?;
                }
            }
            InputEvent::Key { key, pressed } => self.key(*key, *pressed)?,
            // KEYEVENTF_UNICODE per UTF-16 unit: the characters themselves, whatever the
            // layout and whatever modifiers are held.
            InputEvent::Text { text } => self
                .enigo
                .text(text.as_str())
                .map_err(|e| Self::fail("text", e))?,
        }
        self.held.note(event);
        Ok(())
    }

    fn release_all(&mut self) -> Result<(), InputError> {
        // Each release goes through inject as a controller's would (the note it takes of the
        // release changes nothing: the held set is empty by then).
        let mut held = std::mem::take(&mut self.held);
        held.release_each(|event| self.inject(event))
    }

    fn set_screen_size(&mut self, size: ScreenSize) {
        self.size = Some(size);
    }

    fn set_origin(&mut self, x: i32, y: i32) {
        self.origin = (x, y);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_coordinates_land_on_their_pixel() {
        // Windows maps v back to floor(v * extent / 65536).
        for extent in [800, 1280, 1920, 3840, 1366] {
            for p in [0, 1, 2, extent / 2, extent - 2, extent - 1] {
                let v = absolute_coordinate(p, 0, extent);
                assert_eq!(i64::from(v) * i64::from(extent) / 65536, i64::from(p));
            }
        }
        // A desktop starting left of the primary monitor.
        let v = absolute_coordinate(-1920, -1920, 3840);
        assert_eq!(v, 0);
        // Off the desktop: clamped to its edge.
        assert_eq!(
            absolute_coordinate(5000, 0, 1280),
            absolute_coordinate(1279, 0, 1280)
        );
    }

    /// Notepad's text, through its edit control (WM_GETTEXT crosses processes).
    fn notepad_text(notepad: windows::Win32::Foundation::HWND) -> String {
        use windows::Win32::Foundation::{LPARAM, WPARAM};
        use windows::Win32::UI::WindowsAndMessaging::{FindWindowExW, SendMessageW, WM_GETTEXT};
        // SAFETY: finding a child window by class; reading its text into our buffer, whose
        // length we pass.
        unsafe {
            let edit = FindWindowExW(Some(notepad), None, windows::core::w!("Edit"), None)
                .expect("Notepad's edit control");
            let mut buf = [0u16; 256];
            let n = SendMessageW(
                edit,
                WM_GETTEXT,
                Some(WPARAM(buf.len())),
                Some(LPARAM(buf.as_mut_ptr() as isize)),
            );
            String::from_utf16_lossy(&buf[..n.0 as usize])
        }
    }

    /// Keys (scan codes, Shift held), and Unicode text typed into Notepad read back from it.
    #[test]
    fn keys_and_text_reach_notepad() {
        use windows::Win32::UI::WindowsAndMessaging::{FindWindowW, SetForegroundWindow};
        let mut child = std::process::Command::new("notepad.exe")
            .spawn()
            .expect("starting notepad.exe");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let notepad = loop {
            // SAFETY: a lookup by class name.
            if let Ok(h) = unsafe { FindWindowW(windows::core::w!("Notepad"), None) } {
                break h;
            }
            assert!(std::time::Instant::now() < deadline, "no Notepad window");
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        std::thread::sleep(std::time::Duration::from_millis(500));
        // SAFETY: a window handle just found.
        let _ = unsafe { SetForegroundWindow(notepad) };
        std::thread::sleep(std::time::Duration::from_millis(300));
        let mut b = WindowsBackend::new().unwrap();
        let key = |b: &mut WindowsBackend, key, pressed| {
            b.inject(&InputEvent::Key { key, pressed }).unwrap();
        };
        for k in [Key::KeyQ, Key::Digit1] {
            key(&mut b, k, true);
            key(&mut b, k, false);
        }
        key(&mut b, Key::ShiftLeft, true);
        key(&mut b, Key::KeyA, true);
        key(&mut b, Key::KeyA, false);
        key(&mut b, Key::ShiftLeft, false);
        let text = crate::BoundedText::new(" héllo, wörld €").unwrap();
        b.inject(&InputEvent::Text { text }).unwrap();
        // Arrow left twice then Delete: the scan codes with the 0xE0 prefix.
        for k in [Key::ArrowLeft, Key::ArrowLeft, Key::Delete] {
            key(&mut b, k, true);
            key(&mut b, k, false);
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
        let got = notepad_text(notepad);
        let _ = child.kill();
        let _ = child.wait();
        // The two arrows land before the space, which Delete removes.
        assert_eq!(got, "q1A héllo, wörld€");
    }

    /// The real desktop (under Wine: the Xvfb screen): SendInput's moves read back exactly.
    #[test]
    fn the_pointer_lands_where_it_was_sent() {
        let mut b = WindowsBackend::new().unwrap();
        let (vx, vy, vw, vh) = virtual_desktop();
        for (x, y) in [
            (vx + 10, vy + 20),
            (vx + vw / 2, vy + vh / 3),
            (vx + vw - 1, vy + vh - 1),
        ] {
            b.move_to(x, y).unwrap();
            assert_eq!(pointer_position(), Some((x, y)));
        }
    }
}
