//! Window input → [`InputEvent`]s: the pure mappings (keys, pointer through the letterbox, wheel,
//! text or key) and the [`Forwarder`] that applies them and sends the result without blocking.

use input::{BoundedText, HeldInputs, InputEvent, Key, MAX_WHEEL, MouseButton, NormalizedPoint};
use tokio::sync::mpsc::{self, error::TrySendError};
use tracing::debug;
use winit::event::{ElementState, KeyEvent, MouseScrollDelta};
use winit::keyboard::{KeyCode, ModifiersState, PhysicalKey};

use super::Fit;
use crate::controller::Request;

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
    /// Where the viewer's own keys (monitor switches) go.
    requests: Option<mpsc::Sender<Request>>,
}

impl Forwarder {
    pub(super) fn new(
        tx: mpsc::Sender<InputEvent>,
        requests: Option<mpsc::Sender<Request>>,
    ) -> Self {
        Self {
            tx,
            held: HeldInputs::new(),
            modifiers: ModifiersState::empty(),
            focused: false,
            wheel: Wheel::default(),
            last_pointer: None,
            backlog: Vec::new(),
            buttons: 0,
            requests,
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
        if let (true, Some(requests), Some(monitor)) = (
            pressed,
            &self.requests,
            monitor_key(self.modifiers, event.physical_key),
        ) {
            // The viewer's own key: never forwarded (its release finds it not held).
            if !event.repeat {
                debug!(monitor, "asking for another monitor");
                let _ = requests.try_send(Request::SwitchMonitor(monitor));
            }
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

/// The monitor (0..=8) that Ctrl+Alt+Shift+1..9 asks for; `None` for any other key or
/// modifiers (Super must not be held).
pub(super) fn monitor_key(modifiers: ModifiersState, key: PhysicalKey) -> Option<u32> {
    let wanted = ModifiersState::CONTROL | ModifiersState::ALT | ModifiersState::SHIFT;
    if modifiers != wanted {
        return None;
    }
    let digits = [
        KeyCode::Digit1,
        KeyCode::Digit2,
        KeyCode::Digit3,
        KeyCode::Digit4,
        KeyCode::Digit5,
        KeyCode::Digit6,
        KeyCode::Digit7,
        KeyCode::Digit8,
        KeyCode::Digit9,
    ];
    match key {
        PhysicalKey::Code(code) => digits
            .iter()
            .position(|&d| d == code)
            .and_then(|i| u32::try_from(i).ok()),
        PhysicalKey::Unidentified(_) => None,
    }
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
mod tests;
