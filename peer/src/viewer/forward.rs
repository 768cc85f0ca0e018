//! Window input → [`InputEvent`]s: the pure mappings (keys, pointer through the letterbox, wheel,
//! text or key) and the [`Forwarder`] that applies them and sends the result without blocking.

use input::{BoundedText, HeldInputs, InputEvent, Key, MAX_WHEEL, MouseButton, NormalizedPoint};
use tokio::sync::mpsc::{self, error::TrySendError};
use tracing::debug;
use winit::event::{ElementState, KeyEvent, MouseScrollDelta};
use winit::keyboard::{KeyCode, ModifiersState, PhysicalKey};

use super::Fit;

/// Smooth-scrolling pixels that make one wheel notch.
pub(super) const PIXELS_PER_NOTCH: f64 = 40.0;

/// Turns window input into [`InputEvent`]s and sends them while the window has the focus;
/// remembers what it holds down so that it can release it.
#[derive(Debug)]
pub(super) struct Forwarder {
    tx: mpsc::Sender<InputEvent>,
    held: HeldInputs,
    modifiers: ModifiersState,
    focused: bool,
    wheel: Wheel,
    last_pointer: Option<NormalizedPoint>,
    /// Releases that did not fit in the queue, sent before anything else.
    backlog: Vec<InputEvent>,
    /// The buttons held (bit = index in [`MouseButton::ALL`]); `held` has them too, but cannot
    /// be asked about buttons.
    buttons: u8,
}

impl Forwarder {
    pub(super) fn new(tx: mpsc::Sender<InputEvent>) -> Self {
        Self {
            tx,
            held: HeldInputs::new(),
            modifiers: ModifiersState::empty(),
            focused: false,
            wheel: Wheel::default(),
            last_pointer: None,
            backlog: Vec::new(),
            buttons: 0,
        }
    }

    /// Sends `event` without waiting. A release that does not fit in the queue waits in the
    /// backlog (so no key stays held on the host); anything else is dropped when the queue is
    /// full, and a press that was dropped is not counted as held.
    fn send(&mut self, event: InputEvent) {
        self.flush();
        let release = is_release(&event);
        if self.backlog.is_empty() {
            match self.tx.try_send(event.clone()) {
                Ok(()) | Err(TrySendError::Closed(_)) => {}
                Err(TrySendError::Full(e)) if release => self.backlog.push(e),
                Err(TrySendError::Full(e)) => {
                    debug!(event = ?e, "input queue full: dropped");
                    return;
                }
            }
        } else if release {
            self.backlog.push(event.clone());
        } else {
            debug!(kind = event.kind_name(), "input queue full: dropped");
            return;
        }
        self.held.note(&event);
        if let InputEvent::MouseButton { button, pressed } = event {
            let bit = 1u8 << button_index(button);
            self.buttons = if pressed {
                self.buttons | bit
            } else {
                self.buttons & !bit
            };
        }
    }

    /// Retries the backlog.
    pub(super) fn flush(&mut self) {
        while let Some(event) = self.backlog.first().cloned() {
            match self.tx.try_send(event) {
                Ok(()) => {
                    self.backlog.remove(0);
                }
                Err(TrySendError::Full(_)) => return,
                Err(TrySendError::Closed(_)) => {
                    self.backlog.clear();
                    return;
                }
            }
        }
    }

    pub(super) fn set_focused(&mut self, focused: bool) {
        self.focused = focused;
        if !focused {
            self.release_all();
            self.wheel = Wheel::default();
        }
    }

    pub(super) fn set_modifiers(&mut self, modifiers: ModifiersState) {
        self.modifiers = modifiers;
    }

    /// The pointer is at physical `position` in a `window`-sized window showing a `frame`-sized
    /// picture (none yet: nothing to point at).
    pub(super) fn pointer(
        &mut self,
        position: (f64, f64),
        window: (u32, u32),
        frame: Option<(u32, u32)>,
    ) {
        let Some(frame) = frame.filter(|_| self.focused) else {
            return;
        };
        let pos = pointer_on_frame(position, window, frame);
        if self.last_pointer != Some(pos) {
            self.last_pointer = Some(pos);
            self.send(InputEvent::MouseMove { pos });
        }
    }

    pub(super) fn button(&mut self, button: winit::event::MouseButton, state: ElementState) {
        let pressed = state == ElementState::Pressed;
        let Some(button) = mouse_button(button) else {
            return;
        };
        // A release goes out whenever its press did.
        let held = self.buttons & (1 << button_index(button)) != 0;
        if (self.focused && pressed) || (!pressed && held) {
            self.send(InputEvent::MouseButton { button, pressed });
        }
    }

    pub(super) fn wheel(&mut self, delta: MouseScrollDelta) {
        if !self.focused {
            return;
        }
        if let Some((dx, dy)) = self.wheel.add(delta) {
            self.send(InputEvent::Wheel { dx, dy });
        }
    }

    pub(super) fn key(&mut self, event: &KeyEvent) {
        let key = match event.physical_key {
            PhysicalKey::Code(code) => key_of(code),
            PhysicalKey::Unidentified(_) => None,
        };
        let pressed = event.state == ElementState::Pressed;
        if pressed && !self.focused {
            return;
        }
        let action = key_action(
            key,
            pressed,
            event.text.as_deref(),
            matches!(event.logical_key, winit::keyboard::Key::Dead(_)),
            is_shortcut(self.modifiers),
            key.is_some_and(|k| self.held.is_key_held(k)),
        );
        match action {
            KeyAction::Text(text) => self.text(&text),
            KeyAction::Key(key, pressed) => self.send(InputEvent::Key { key, pressed }),
            KeyAction::Nothing => {}
        }
    }

    /// Typed or composed text (an IME commit, or a key's text).
    pub(super) fn text(&mut self, text: &str) {
        if !self.focused {
            return;
        }
        for text in text_chunks(text) {
            self.send(InputEvent::Text { text });
        }
    }

    /// Releases everything held (focus lost, window closing), most recent press first.
    pub(super) fn release_all(&mut self) {
        for event in self.held.take_releases() {
            self.send(event);
        }
        self.buttons = 0;
    }
}

fn button_index(button: MouseButton) -> usize {
    MouseButton::ALL
        .iter()
        .position(|&b| b == button)
        .unwrap_or(0)
}

fn is_release(event: &InputEvent) -> bool {
    matches!(
        event,
        InputEvent::Key { pressed: false, .. } | InputEvent::MouseButton { pressed: false, .. }
    )
}

/// Whether these modifiers make a key a shortcut (sent as keys, never as text). AltGr is not
/// among them: it types characters.
pub(super) fn is_shortcut(modifiers: ModifiersState) -> bool {
    modifiers.control_key() || modifiers.alt_key() || modifiers.super_key()
}

/// What a key event becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum KeyAction {
    /// Type this text (layout-independent).
    Text(String),
    /// Press or release the physical key.
    Key(Key, bool),
    Nothing,
}

/// Decides how a key event travels.
///
/// - A press that types printable text while no Ctrl, Alt or Super is held (`shortcut`) is sent
///   as that text, so the host prints the same character whatever its keyboard layout.
/// - Every other press (modifiers, arrows, F-keys, Enter, Tab, Backspace, Escape, shortcuts) is
///   sent as the physical key, if quicdesk knows it.
/// - A dead key's press sends nothing: the character it composes arrives as the text of the
///   next key.
/// - A release is sent only for a key whose press was sent as a key (`held`); releases of keys
///   that typed text send nothing.
pub(super) fn key_action(
    key: Option<Key>,
    pressed: bool,
    text: Option<&str>,
    dead: bool,
    shortcut: bool,
    held: bool,
) -> KeyAction {
    if !pressed {
        return match key {
            Some(k) if held => KeyAction::Key(k, false),
            _ => KeyAction::Nothing,
        };
    }
    if dead {
        return KeyAction::Nothing;
    }
    let printable = text.filter(|t| !t.is_empty() && !t.chars().any(char::is_control));
    match (printable, key) {
        (Some(t), _) if !shortcut => KeyAction::Text(t.to_owned()),
        (_, Some(k)) => KeyAction::Key(k, true),
        (_, None) => KeyAction::Nothing,
    }
}

/// Text as [`BoundedText`] pieces: line breaks as `\n`, other control characters dropped, split
/// at character boundaries into pieces of at most [`BoundedText::MAX_LEN`] bytes.
pub(super) fn text_chunks(text: &str) -> Vec<BoundedText> {
    let clean = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut chunks = Vec::new();
    let mut piece = String::new();
    for c in clean.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            continue;
        }
        if piece.len() + c.len_utf8() > BoundedText::MAX_LEN {
            chunks.extend(BoundedText::new(&piece).ok());
            piece.clear();
        }
        piece.push(c);
    }
    chunks.extend(BoundedText::new(&piece).ok());
    chunks
}

/// The frame position under physical window position `position`, for a `frame` fit into a
/// `window` ([`Fit`], letterboxed). Positions on the bars clamp to the picture's nearest edge.
///
/// Window pixel `p` covers `p..p + 1`; its centre is mapped to frame pixel coordinates (pixel
/// `n`'s centre is `n`), which [`NormalizedPoint::from_frame`] normalises and clamps.
pub(super) fn pointer_on_frame(
    position: (f64, f64),
    window: (u32, u32),
    frame: (u32, u32),
) -> NormalizedPoint {
    let fit = Fit::new(frame, window);
    let axis = |p: f64, start: u32, shown: u32, size: u32| {
        (p + 0.5 - f64::from(start)) * f64::from(size) / f64::from(shown.max(1)) - 0.5
    };
    NormalizedPoint::from_frame(
        axis(position.0, fit.x, fit.width, frame.0),
        axis(position.1, fit.y, fit.height, frame.1),
        frame.0,
        frame.1,
    )
}

/// Sums wheel movement into whole notches: lines as they come, smooth-scroll pixels by
/// [`PIXELS_PER_NOTCH`]; each step clamped to ±[`MAX_WHEEL`]. Positive `dy` scrolls down and
/// positive `dx` right (winit's positive values move the content down and right: the opposite).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Wheel {
    x: f64,
    y: f64,
}

impl Wheel {
    pub(super) fn add(&mut self, delta: MouseScrollDelta) -> Option<(i16, i16)> {
        let (dx, dy) = match delta {
            MouseScrollDelta::LineDelta(x, y) => (f64::from(x), f64::from(y)),
            MouseScrollDelta::PixelDelta(p) => (p.x / PIXELS_PER_NOTCH, p.y / PIXELS_PER_NOTCH),
        };
        let limit = f64::from(MAX_WHEEL);
        let take = |acc: &mut f64, d: f64| -> i16 {
            if d.is_finite() {
                // Never let a huge delta pile up a backlog of scrolling.
                *acc = (*acc - d).clamp(-limit, limit);
            }
            let whole = acc.trunc();
            *acc -= whole;
            whole as i16 // |whole| <= MAX_WHEEL
        };
        let (x, y) = (take(&mut self.x, dx), take(&mut self.y, dy));
        (x != 0 || y != 0).then_some((x, y))
    }
}

fn mouse_button(button: winit::event::MouseButton) -> Option<MouseButton> {
    use winit::event::MouseButton as W;
    Some(match button {
        W::Left => MouseButton::Left,
        W::Right => MouseButton::Right,
        W::Middle => MouseButton::Middle,
        W::Back => MouseButton::Back,
        W::Forward => MouseButton::Forward,
        W::Other(_) => return None,
    })
}

macro_rules! key_table {
    ($($name:ident),* $(,)?) => {
        /// The physical key of a winit key code. Both use the W3C UI Events `code` names, so the
        /// table is one name per line; keys quicdesk does not send (media keys, `Fn`, `Power`)
        /// map to `None`.
        pub(super) fn key_of(code: KeyCode) -> Option<Key> {
            match code {
                $(KeyCode::$name => Some(Key::$name),)*
                _ => None,
            }
        }

        /// Every winit key code the table maps, for the tests.
        #[cfg(test)]
        const MAPPED: &[KeyCode] = &[$(KeyCode::$name),*];
    };
}

key_table! {
    KeyA, KeyB, KeyC, KeyD, KeyE, KeyF, KeyG, KeyH, KeyI, KeyJ, KeyK, KeyL, KeyM,
    KeyN, KeyO, KeyP, KeyQ, KeyR, KeyS, KeyT, KeyU, KeyV, KeyW, KeyX, KeyY, KeyZ,
    Digit1, Digit2, Digit3, Digit4, Digit5, Digit6, Digit7, Digit8, Digit9, Digit0,
    Enter, Escape, Backspace, Tab, Space, Minus, Equal, BracketLeft, BracketRight, Backslash,
    Semicolon, Quote, Backquote, Comma, Period, Slash, CapsLock,
    F1, F2, F3, F4, F5, F6, F7, F8, F9, F10, F11, F12,
    PrintScreen, ScrollLock, Pause, Insert, Home, PageUp, Delete, End, PageDown,
    ArrowRight, ArrowLeft, ArrowDown, ArrowUp,
    NumLock, NumpadDivide, NumpadMultiply, NumpadSubtract, NumpadAdd, NumpadEnter,
    Numpad1, Numpad2, Numpad3, Numpad4, Numpad5, Numpad6, Numpad7, Numpad8, Numpad9, Numpad0,
    NumpadDecimal, IntlBackslash, ContextMenu, NumpadEqual,
    F13, F14, F15, F16, F17, F18, F19, F20, F21, F22, F23, F24,
    NumpadComma, IntlRo, KanaMode, IntlYen, Convert, NonConvert,
    Lang1, Lang2, Lang3, Lang4, Lang5,
    ControlLeft, ShiftLeft, AltLeft, SuperLeft, ControlRight, ShiftRight, AltRight, SuperRight,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_table_covers_every_key_by_its_own_name() {
        let mut mapped: Vec<Key> = MAPPED.iter().filter_map(|&c| key_of(c)).collect();
        assert_eq!(mapped.len(), MAPPED.len());
        for &code in MAPPED {
            let key = key_of(code).unwrap();
            assert_eq!(format!("{code:?}"), key.name(), "{code:?} maps to {key}");
        }
        mapped.sort();
        mapped.dedup();
        assert_eq!(
            mapped,
            Key::ALL,
            "every quicdesk key, each from one winit code"
        );
        for other in [
            KeyCode::MediaPlayPause,
            KeyCode::Fn,
            KeyCode::Power,
            KeyCode::F25,
        ] {
            assert_eq!(key_of(other), None, "{other:?}");
        }
    }

    #[test]
    fn typing_goes_as_text_and_everything_else_as_keys() {
        use KeyAction::{Key as K, Nothing, Text};
        let act = |key, text, shortcut| key_action(Some(key), true, text, false, shortcut, false);
        // Printable text, whatever key made it (an AZERTY "a" is on KeyQ).
        assert_eq!(act(Key::KeyQ, Some("a"), false), Text("a".into()));
        assert_eq!(act(Key::Digit2, Some("é"), false), Text("é".into()));
        assert_eq!(act(Key::Space, Some(" "), false), Text(" ".into()));
        assert_eq!(act(Key::Numpad5, Some("5"), false), Text("5".into()));
        // Shortcuts: keys, even with text.
        assert_eq!(act(Key::KeyC, Some("c"), true), K(Key::KeyC, true));
        assert_eq!(act(Key::KeyC, Some("\u{3}"), true), K(Key::KeyC, true));
        // Keys whose text is a control character, or that have none.
        for (key, text) in [
            (Key::Enter, Some("\r")),
            (Key::Tab, Some("\t")),
            (Key::Backspace, Some("\u{8}")),
            (Key::Escape, Some("\u{1b}")),
            (Key::Delete, Some("\u{7f}")),
            (Key::ArrowLeft, None),
            (Key::F5, None),
            (Key::ShiftLeft, None),
            (Key::SuperLeft, None),
            (Key::Numpad5, None), // NumLock off
        ] {
            assert_eq!(act(key, text, false), K(key, true), "{key}");
        }
        // Text from a key quicdesk has no name for still types; without text it is dropped.
        assert_eq!(
            key_action(None, true, Some("ß"), false, false, false),
            Text("ß".into())
        );
        assert_eq!(key_action(None, true, None, false, false, false), Nothing);
        assert_eq!(
            key_action(None, true, Some("x"), false, true, false),
            Nothing
        );
        // A dead key waits for the character it composes.
        assert_eq!(
            key_action(Some(Key::Quote), true, None, true, false, false),
            Nothing
        );
    }

    #[test]
    fn releases_only_for_keys_sent_as_keys() {
        let release = |held| key_action(Some(Key::KeyA), false, None, false, false, held);
        assert_eq!(release(false), KeyAction::Nothing, "it typed text");
        assert_eq!(release(true), KeyAction::Key(Key::KeyA, false));
        assert_eq!(
            key_action(None, false, Some("a"), false, false, true),
            KeyAction::Nothing
        );
    }

    #[test]
    fn shortcut_modifiers() {
        assert!(!is_shortcut(ModifiersState::empty()));
        assert!(!is_shortcut(ModifiersState::SHIFT));
        for m in [
            ModifiersState::CONTROL,
            ModifiersState::ALT,
            ModifiersState::SUPER,
            ModifiersState::SHIFT | ModifiersState::CONTROL,
        ] {
            assert!(is_shortcut(m), "{m:?}");
        }
    }

    #[test]
    fn text_is_cleaned_and_split() {
        let texts = |s: &str| -> Vec<String> {
            text_chunks(s)
                .into_iter()
                .map(|t| t.as_str().to_owned())
                .collect()
        };
        assert_eq!(texts("日本語"), ["日本語"]);
        assert_eq!(texts("a\r\nb\rc\u{1b}d\te"), ["a\nb\ncd\te"]);
        assert!(texts("\u{7}").is_empty());
        assert!(texts("").is_empty());
        let long = "é".repeat(200); // 400 bytes
        let pieces = texts(&long);
        assert_eq!(pieces.len(), 2);
        assert!(pieces.iter().all(|p| p.len() <= BoundedText::MAX_LEN));
        assert_eq!(pieces.concat(), long);
    }

    /// Frame pixel `(x, y)` of `frame` → the normalised point, as the host will see it.
    fn norm(x: f64, y: f64, frame: (u32, u32)) -> NormalizedPoint {
        NormalizedPoint::from_frame(x, y, frame.0, frame.1)
    }

    #[test]
    fn pointer_maps_through_the_letterbox() {
        // 1:1, window the frame's size.
        let f = (640, 360);
        assert_eq!(
            pointer_on_frame((0.0, 0.0), (640, 360), f),
            norm(0.0, 0.0, f)
        );
        assert_eq!(
            pointer_on_frame((639.0, 359.0), (640, 360), f),
            norm(639.0, 359.0, f)
        );
        assert_eq!(
            pointer_on_frame((100.0, 50.0), (640, 360), f),
            norm(100.0, 50.0, f)
        );

        // A 1920x1080 screen shrunk into 800x600: 800x450 at y 75, 2.4 texels per pixel.
        let f = (1920, 1080);
        let p = pointer_on_frame((400.0, 300.0), (800, 600), f);
        let want = norm(960.7, 540.7, f);
        assert!(
            p.x().abs_diff(want.x()) <= 2 && p.y().abs_diff(want.y()) <= 2,
            "{p:?}"
        );
        // The bars clamp to the nearest edge of the picture.
        assert_eq!(pointer_on_frame((400.0, 10.0), (800, 600), f).y(), 0);
        assert_eq!(
            pointer_on_frame((400.0, 590.0), (800, 600), f).y(),
            u16::MAX
        );
        // The picture's corner pixels are within a window pixel (2.4 texels) of the frame's.
        let near_end = u16::MAX - 100;
        let p = pointer_on_frame((799.0, 524.0), (800, 600), f);
        assert!(p.x() > near_end && p.y() > near_end, "{p:?}");
        let p = pointer_on_frame((0.0, 75.0), (800, 600), f);
        assert!(p.x() < 100 && p.y() < 100, "{p:?}");

        // A frame enlarged into a wide window: pillarboxed.
        let f = (640, 480);
        let p = pointer_on_frame((10.0, 500.0), (1600, 960), f);
        assert_eq!((p.x(), p.y()), (0, norm(0.0, 249.75, f).y()));
        // Outside the window altogether, and silly values, clamp too.
        assert_eq!(
            pointer_on_frame((-50.0, 5000.0), (1600, 960), f),
            norm(0.0, 479.0, f)
        );
        assert_eq!(
            pointer_on_frame((f64::NAN, f64::INFINITY), (1600, 960), f),
            norm(0.0, 479.0, f)
        );
        // Degenerate sizes do not divide by zero.
        let _ = pointer_on_frame((5.0, 5.0), (0, 0), (0, 0));
    }

    #[test]
    fn wheel_turns_into_whole_notches_the_right_way_round() {
        let mut w = Wheel::default();
        // winit: positive y scrolls up; quicdesk: positive dy scrolls down.
        assert_eq!(w.add(MouseScrollDelta::LineDelta(0.0, 1.0)), Some((0, -1)));
        assert_eq!(w.add(MouseScrollDelta::LineDelta(0.0, -2.0)), Some((0, 2)));
        assert_eq!(w.add(MouseScrollDelta::LineDelta(1.0, 0.0)), Some((-1, 0)));
        // Fractional lines and smooth-scroll pixels add up.
        assert_eq!(w.add(MouseScrollDelta::LineDelta(0.0, -0.5)), None);
        assert_eq!(w.add(MouseScrollDelta::LineDelta(0.0, -0.5)), Some((0, 1)));
        let px = |y| MouseScrollDelta::PixelDelta(winit::dpi::PhysicalPosition::new(0.0, y));
        assert_eq!(w.add(px(-25.0)), None);
        assert_eq!(w.add(px(-25.0)), Some((0, 1)));
        assert_eq!(w.add(px(30.0)), None, "10 px left over");
        // Huge or silly values are clamped and never pile up.
        assert_eq!(
            w.add(MouseScrollDelta::LineDelta(0.0, -1e9)),
            Some((0, MAX_WHEEL))
        );
        assert_eq!(w.add(MouseScrollDelta::LineDelta(0.0, 0.0)), None);
        assert_eq!(
            w.add(MouseScrollDelta::LineDelta(1e9, 1e9)),
            Some((-MAX_WHEEL, -MAX_WHEEL))
        );
        assert_eq!(w.add(MouseScrollDelta::LineDelta(f32::NAN, 0.0)), None);
        assert_eq!(w.add(px(f64::INFINITY)), None);
    }

    fn forwarder(capacity: usize) -> (Forwarder, mpsc::Receiver<InputEvent>) {
        let (tx, rx) = mpsc::channel(capacity);
        let mut f = Forwarder::new(tx);
        f.set_focused(true);
        (f, rx)
    }

    fn drain(rx: &mut mpsc::Receiver<InputEvent>) -> Vec<InputEvent> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    #[test]
    fn losing_the_focus_releases_what_is_held() {
        use winit::event::MouseButton as W;
        let (mut f, mut rx) = forwarder(64);
        f.send(InputEvent::Key {
            key: Key::ShiftLeft,
            pressed: true,
        });
        f.button(W::Left, ElementState::Pressed);
        f.set_focused(false);
        // Unfocused: nothing new goes out, but the release of a press sent earlier would.
        f.button(W::Right, ElementState::Pressed);
        f.wheel(MouseScrollDelta::LineDelta(0.0, 1.0));
        f.text("x");
        assert_eq!(
            drain(&mut rx),
            [
                InputEvent::Key {
                    key: Key::ShiftLeft,
                    pressed: true
                },
                InputEvent::MouseButton {
                    button: MouseButton::Left,
                    pressed: true
                },
                InputEvent::MouseButton {
                    button: MouseButton::Left,
                    pressed: false
                },
                InputEvent::Key {
                    key: Key::ShiftLeft,
                    pressed: false
                },
            ]
        );
    }

    #[test]
    fn releases_wait_for_room_when_the_queue_is_full() {
        let (mut f, mut rx) = forwarder(2);
        let key = |pressed| InputEvent::Key {
            key: Key::ControlLeft,
            pressed,
        };
        f.send(key(true));
        f.send(InputEvent::Wheel { dx: 0, dy: 1 });
        // Full: a move is dropped, the release waits.
        f.pointer((1.0, 1.0), (10, 10), Some((10, 10)));
        f.release_all();
        assert_eq!(f.backlog, [key(false)]);
        assert_eq!(drain(&mut rx).len(), 2);
        f.flush();
        assert_eq!(drain(&mut rx), [key(false)]);
        assert!(f.backlog.is_empty() && f.held.is_empty());
    }
}
