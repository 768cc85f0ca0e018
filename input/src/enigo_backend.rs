//! Performing events on a real X11 display with enigo's pure-Rust XTEST backend (x11rb; no
//! libxdo, no libei).
//!
//! Keys are physical: a [`Key`]'s USB HID usage maps to the Linux evdev code and X keycode
//! (evdev + 8, what the X servers' `evdev` keycodes use), injected raw, so the host's own layout
//! gives them meaning exactly as if its keyboard had been pressed. Text is typed as characters,
//! whatever the layout and whatever modifiers the controller holds: with the layout's own keys
//! where it has them, else on a spare keycode remapped to the character (see [`Spares`]).

use enigo::{Axis, Coordinate, Direction, Enigo, Keyboard, Mouse, Settings};
use x11rb::connection::Connection as _;
use x11rb::protocol::xproto::ConnectionExt as _;
use x11rb::rust_connection::RustConnection;

use crate::{HeldInputs, InputBackend, InputError, InputEvent, Key, ScreenSize, evdev_code};

/// Keys that change which character a key types: released around [`InputEvent::Text`].
const LEVEL_MODIFIERS: [Key; 3] = [Key::ShiftLeft, Key::ShiftRight, Key::AltRight];
/// Spare keycodes used in turn for characters the layout lacks.
const MAX_SPARES: usize = 8;
/// Wait after remapping a keycode before pressing it, so clients re-read the mapping first.
const REMAP_SETTLE: std::time::Duration = std::time::Duration::from_millis(20);

/// Keycodes with no keysyms, lent to characters the layout lacks. Each keeps its character until
/// it is needed for another (least recently used first) and all are cleared when the backend is
/// dropped. Remapping a key and pressing it at once races with clients, which read the new
/// mapping only when they handle MappingNotify, and may look the key up after a later change:
/// so a change is followed by a short pause, and a mapping is never undone right after its press.
#[derive(Debug, Default)]
struct Spares {
    /// (keycode, keysym on it; 0 for none yet), most recently used last.
    slots: Vec<(u8, u32)>,
    found: bool,
}

/// Performs input on an X11 display through XTEST.
pub struct EnigoBackend {
    enigo: Enigo,
    /// Our own connection, to read the keyboard mapping.
    conn: RustConnection,
    display: String,
    size: Option<ScreenSize>,
    origin: (i32, i32),
    held: HeldInputs,
    spares: Spares,
}

impl std::fmt::Debug for EnigoBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnigoBackend")
            .field("display", &self.display)
            .field("size", &self.size)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl EnigoBackend {
    /// Connects to `display` (`None`: `$DISPLAY`). Pointer positions map onto the area set
    /// with [`set_screen_size`](InputBackend::set_screen_size) and
    /// [`set_origin`](InputBackend::set_origin).
    ///
    /// # Errors
    ///
    /// [`InputError::Backend`] naming the display when it cannot be reached.
    pub fn new(display: Option<&str>) -> Result<Self, InputError> {
        let name = display
            .map(str::to_owned)
            .or_else(|| std::env::var("DISPLAY").ok())
            .ok_or_else(|| InputError::Backend("no X display: set DISPLAY".into()))?;
        let settings = Settings {
            x11_display: Some(name.clone()),
            // Live events: no artificial pause between them.
            linux_delay: 0,
            // A second line of defence behind release_all.
            release_keys_when_dropped: true,
            ..Settings::default()
        };
        let enigo = Enigo::new(&settings)
            .map_err(|e| InputError::Backend(format!("X display {name}: {e}")))?;
        let (conn, _) = x11rb::connect(Some(&name))
            .map_err(|e| InputError::Backend(format!("X display {name}: {e}")))?;
        Ok(Self {
            enigo,
            conn,
            display: name,
            size: None,
            origin: (0, 0),
            held: HeldInputs::new(),
            spares: Spares::default(),
        })
    }

    fn fail(&self, what: &str, e: impl std::fmt::Display) -> InputError {
        InputError::Backend(format!("X display {}: {what}: {e}", self.display))
    }

    fn key(&mut self, key: Key, pressed: bool) -> Result<(), InputError> {
        let dir = if pressed {
            Direction::Press
        } else {
            Direction::Release
        };
        self.enigo
            .raw(x_keycode(key), dir)
            .map_err(|e| self.fail(&format!("key {key}"), e))
    }

    /// Types `text` as characters. Characters the host's keyboard mapping already has (alone or
    /// with Shift) are typed with their own keys; only the others go on a spare keycode remapped
    /// to them ([`Spares`]), since changing the mapping races with clients that have not yet
    /// re-read it.
    fn text(&mut self, text: &str) -> Result<(), InputError> {
        let lifted: Vec<Key> = LEVEL_MODIFIERS
            .into_iter()
            .filter(|&k| self.held.is_key_held(k))
            .collect();
        for &k in &lifted {
            self.key(k, false)?;
        }
        let typed = self.type_chars(text);
        for &k in &lifted {
            self.key(k, true)?;
        }
        typed
    }

    fn type_chars(&mut self, text: &str) -> Result<(), InputError> {
        let map = KeyMap::read(&self.conn).map_err(|e| self.fail("keyboard mapping", e))?;
        let shift = x_keycode(Key::ShiftLeft);
        for ch in text.chars() {
            match map.find(xkeysym::Keysym::from_char(ch).raw()) {
                Some((code, shifted)) => {
                    let tap = |e: &mut Enigo, c: u16| -> enigo::InputResult<()> {
                        e.raw(c, Direction::Press)?;
                        e.raw(c, Direction::Release)
                    };
                    let r = if shifted {
                        self.enigo
                            .raw(shift, Direction::Press)
                            .and_then(|()| tap(&mut self.enigo, code))
                            .and_then(|()| self.enigo.raw(shift, Direction::Release))
                    } else {
                        tap(&mut self.enigo, code)
                    };
                    r.map_err(|e| self.fail("text", e))?;
                }
                None => {
                    let keysym = xkeysym::Keysym::from_char(ch).raw();
                    let code = self
                        .spare_for(keysym, &map)
                        .map_err(|e| self.fail("remapping a spare key", e))?;
                    let Some(code) = code else {
                        // No spare keycode at all: let enigo find its own way.
                        let mut buf = [0u8; 4];
                        self.enigo
                            .text(ch.encode_utf8(&mut buf))
                            .map_err(|e| self.fail("text", e))?;
                        continue;
                    };
                    self.enigo
                        .raw(u16::from(code), Direction::Press)
                        .and_then(|()| self.enigo.raw(u16::from(code), Direction::Release))
                        .map_err(|e| self.fail("text", e))?;
                }
            }
        }
        Ok(())
    }
}

impl EnigoBackend {
    /// A keycode that types `keysym`: one of the spares already carrying it, else the least
    /// recently used spare remapped to it (then a pause, see [`Spares`]). `None` when the
    /// mapping has no empty keycode.
    fn spare_for(&mut self, keysym: u32, map: &KeyMap) -> Result<Option<u8>, String> {
        if !self.spares.found {
            self.spares.found = true;
            self.spares.slots = map
                .empty_keycodes()
                .rev()
                .take(MAX_SPARES)
                .map(|c| (c, 0))
                .collect();
        }
        let slots = &mut self.spares.slots;
        if let Some(i) = slots.iter().position(|&(_, k)| k == keysym) {
            let slot = slots.remove(i);
            slots.push(slot);
            return Ok(Some(slot.0));
        }
        if slots.is_empty() {
            return Ok(None);
        }
        let (code, _) = slots.remove(0);
        self.conn
            .change_keyboard_mapping(1, code, 2, &[keysym, keysym])
            .map_err(|e| e.to_string())?;
        // A round trip: the server has applied the change (and sent MappingNotify) before any
        // key event enigo sends after this.
        self.conn
            .get_input_focus()
            .map_err(|e| e.to_string())?
            .reply()
            .map_err(|e| e.to_string())?;
        std::thread::sleep(REMAP_SETTLE);
        self.spares.slots.push((code, keysym));
        Ok(Some(code))
    }
}

impl Drop for EnigoBackend {
    fn drop(&mut self) {
        for &(code, keysym) in &self.spares.slots {
            if keysym != 0 {
                let _ = self.conn.change_keyboard_mapping(1, code, 2, &[0, 0]);
            }
        }
        let _ = self.conn.flush();
    }
}

/// The core keyboard mapping: keysyms per keycode, first group, levels 1 and 2.
struct KeyMap {
    min_keycode: u8,
    per_keycode: usize,
    keysyms: Vec<u32>,
}

impl KeyMap {
    fn read(conn: &RustConnection) -> Result<Self, String> {
        let setup = conn.setup();
        let (min, max) = (setup.min_keycode, setup.max_keycode);
        let reply = conn
            .get_keyboard_mapping(min, max.saturating_sub(min).saturating_add(1))
            .map_err(|e| e.to_string())?
            .reply()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            min_keycode: min,
            per_keycode: usize::from(reply.keysyms_per_keycode),
            keysyms: reply.keysyms,
        })
    }

    /// Keycodes that type nothing at any level.
    fn empty_keycodes(&self) -> impl DoubleEndedIterator<Item = u8> + '_ {
        self.keysyms
            .chunks(self.per_keycode.max(1))
            .enumerate()
            .filter(|(_, syms)| syms.iter().all(|&s| s == 0))
            .filter_map(|(i, _)| u8::try_from(usize::from(self.min_keycode) + i).ok())
    }

    /// The keycode that types `keysym`, and whether it needs Shift; unshifted keys first.
    fn find(&self, keysym: u32) -> Option<(u16, bool)> {
        if self.per_keycode == 0 || keysym == 0 {
            return None;
        }
        for level in 0..self.per_keycode.min(2) {
            for (i, syms) in self.keysyms.chunks(self.per_keycode).enumerate() {
                if syms.get(level) == Some(&keysym) {
                    let code = u16::from(self.min_keycode) + u16::try_from(i).ok()?;
                    return Some((code, level == 1));
                }
            }
        }
        None
    }
}

impl InputBackend for EnigoBackend {
    fn inject(&mut self, event: &InputEvent) -> Result<(), InputError> {
        match event {
            InputEvent::MouseMove { pos } => {
                let size = self.size.ok_or_else(|| {
                    InputError::Backend("pointer move before the screen size is known".into())
                })?;
                let p = pos.to_screen(size);
                let x = i64::from(self.origin.0) + i64::from(p.x());
                let y = i64::from(self.origin.1) + i64::from(p.y());
                let (Ok(x), Ok(y)) = (i16::try_from(x), i16::try_from(y)) else {
                    return Err(InputError::Backend(format!(
                        "position {x},{y} is outside X11's coordinate range"
                    )));
                };
                self.enigo
                    .move_mouse(i32::from(x), i32::from(y), Coordinate::Abs)
                    .map_err(|e| self.fail("pointer move", e))?;
            }
            InputEvent::MouseButton { button, pressed } => {
                let dir = if *pressed {
                    Direction::Press
                } else {
                    Direction::Release
                };
                self.enigo
                    .button(crate::enigo_button(*button), dir)
                    .map_err(|e| self.fail("button", e))?;
            }
            InputEvent::Wheel { dx, dy } => {
                // enigo and InputEvent agree: positive scrolls down / right.
                if *dy != 0 {
                    self.enigo
                        .scroll(i32::from(*dy), Axis::Vertical)
                        .map_err(|e| self.fail("wheel", e))?;
                }
                if *dx != 0 {
                    self.enigo
                        .scroll(i32::from(*dx), Axis::Horizontal)
                        .map_err(|e| self.fail("wheel", e))?;
                }
            }
            InputEvent::Key { key, pressed } => self.key(*key, *pressed)?,
            InputEvent::Text { text } => self.text(text.as_str())?,
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

/// The X keycode of a physical key: its Linux evdev code plus 8.
pub fn x_keycode(key: Key) -> u16 {
    evdev_code(key) + 8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_its_own_x_keycode() {
        let mut seen = std::collections::HashMap::new();
        for &k in Key::ALL {
            let code = x_keycode(k);
            assert!((9..=255).contains(&code), "{k}: {code}");
            if let Some(other) = seen.insert(code, k) {
                panic!("{k} and {other} share keycode {code}");
            }
        }
    }

    #[test]
    fn known_keycodes() {
        // X keycodes of a PC keyboard under the evdev rules (`xmodmap -pk`).
        for (k, code) in [
            (Key::KeyA, 38),
            (Key::KeyQ, 24),
            (Key::Digit1, 10),
            (Key::Enter, 36),
            (Key::Escape, 9),
            (Key::Space, 65),
            (Key::ShiftLeft, 50),
            (Key::ControlLeft, 37),
            (Key::AltRight, 108),
            (Key::SuperLeft, 133),
            (Key::ArrowUp, 111),
            (Key::F1, 67),
            (Key::F12, 96),
            (Key::Delete, 119),
            (Key::NumpadEnter, 104),
            (Key::IntlBackslash, 94),
        ] {
            assert_eq!(x_keycode(k), code, "{k}");
        }
    }
}
