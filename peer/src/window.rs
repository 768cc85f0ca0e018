//! The viewer window (winit + pixels): shows the decoded frames scaled to fit, forwards the
//! mouse and keyboard while focused, and shows the session's state in its title.
//!
//! ```text
//!  decode thread ── ViewerSink::frame ──► latest-frame slot ──► wake (coalesced) ─┐
//!  session tasks ── ViewerSink::tick/state/ended ─────────────► wake ─────────────┤
//!                                                                                 ▼
//!  main thread: winit event loop ── pixels (wgpu) ── window ── input ──► mpsc ──► input stream
//! ```
//!
//! Only the newest frame is kept: a renderer slower than the stream skips frames instead of
//! queueing them. Scaling is pixels' `ScalingMode::Fill` (up or down, aspect kept, letterboxed),
//! done on the GPU; [`pixels::Pixels::window_pos_to_pixel`] inverts it for the pointer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use input::{BoundedText, HeldInputs, InputEvent, Key, MAX_WHEEL, MouseButton, NormalizedPoint};
use pixels::{Pixels, ScalingMode, SurfaceTexture};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};
use winit::application::ApplicationHandler;
use winit::dpi::{LogicalSize, PhysicalSize};
use winit::event::{ElementState, KeyEvent, MouseScrollDelta, WindowEvent};
use winit::event_loop::{ActiveEventLoop, EventLoop, EventLoopProxy};
use winit::keyboard::{KeyCode, ModifiersState, PhysicalKey};
use winit::window::{Window, WindowId};

use crate::stats::Tick;

/// Errors of the viewer window.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ViewerError {
    #[error("cannot open a window: {0} (is a display available? set DISPLAY, or use --headless)")]
    NoDisplay(String),
    #[error(
        "cannot draw in the window: {0} (no usable GPU adapter? install mesa-vulkan-drivers: cargo xtask setup)"
    )]
    Graphics(String),
}

/// How to open the window.
#[derive(Debug, Clone)]
pub struct ViewerOptions {
    /// Shown first in the title, e.g. the host's code.
    pub title: String,
    /// Allow the event loop off the main thread (Linux only; tests).
    pub any_thread: bool,
}

/// Why the event loop is woken.
#[derive(Debug, Clone, Copy)]
enum Wake {
    Frame,
    Status,
    Ended,
}

/// The newest decoded frame, its buffer reused.
#[derive(Default)]
struct Slot {
    width: u32,
    height: u32,
    rgba: Vec<u8>,
    fresh: bool,
}

#[derive(Default)]
struct Status {
    state: String,
    tick: Option<Tick>,
    ended: Option<Option<String>>,
}

#[derive(Default)]
struct Shared {
    slot: Mutex<Slot>,
    frame_pending: AtomicBool,
    status: Mutex<Status>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data written in single steps: a poisoned lock holds nothing half-done.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Feeds the window from the session's threads. Cheap to clone.
#[derive(Clone)]
pub struct ViewerSink {
    shared: Arc<Shared>,
    proxy: EventLoopProxy<Wake>,
}

impl std::fmt::Debug for ViewerSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewerSink").finish_non_exhaustive()
    }
}

impl ViewerSink {
    /// A decoded frame to show (copied into the slot; older unshown frames are dropped).
    pub fn frame(&self, frame: &codec::DecodedFrame) {
        {
            let mut slot = lock(&self.shared.slot);
            slot.width = frame.width;
            slot.height = frame.height;
            slot.rgba.clear();
            slot.rgba.extend_from_slice(&frame.rgba);
            slot.fresh = true;
        }
        if !self.shared.frame_pending.swap(true, Ordering::AcqRel) {
            let _ = self.proxy.send_event(Wake::Frame);
        }
    }

    /// The last second's stats, for the title.
    pub fn tick(&self, tick: &Tick) {
        lock(&self.shared.status).tick = Some(*tick);
        let _ = self.proxy.send_event(Wake::Status);
    }

    /// The connection state, e.g. "connecting" or "connected".
    pub fn state(&self, state: &str) {
        lock(&self.shared.status).state = state.to_owned();
        let _ = self.proxy.send_event(Wake::Status);
    }

    /// The session is over (`why` if it failed): the window closes.
    pub fn ended(&self, why: Option<String>) {
        lock(&self.shared.status).ended = Some(why);
        let _ = self.proxy.send_event(Wake::Ended);
    }
}

/// The window and its event loop; must be created and run on the main thread.
pub struct Viewer {
    event_loop: EventLoop<Wake>,
    shared: Arc<Shared>,
    title: String,
}

impl std::fmt::Debug for Viewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Viewer")
            .field("title", &self.title)
            .finish_non_exhaustive()
    }
}

impl Viewer {
    /// Connects to the display; the window itself opens in [`run`](Self::run).
    ///
    /// # Errors
    ///
    /// [`ViewerError::NoDisplay`] when there is no display to open a window on.
    pub fn new(opts: ViewerOptions) -> Result<(Self, ViewerSink), ViewerError> {
        let mut builder = EventLoop::<Wake>::with_user_event();
        #[cfg(all(unix, not(target_os = "macos")))]
        if opts.any_thread {
            winit::platform::x11::EventLoopBuilderExtX11::with_any_thread(&mut builder, true);
            winit::platform::wayland::EventLoopBuilderExtWayland::with_any_thread(
                &mut builder,
                true,
            );
        }
        let event_loop = builder
            .build()
            .map_err(|e| ViewerError::NoDisplay(e.to_string()))?;
        let shared = Arc::new(Shared::default());
        let sink = ViewerSink {
            shared: shared.clone(),
            proxy: event_loop.create_proxy(),
        };
        Ok((
            Self {
                event_loop,
                shared,
                title: opts.title,
            },
            sink,
        ))
    }

    /// Runs the window until it is closed (then fires `stop`) or the session ends. Input while
    /// the window is focused goes to `input`.
    ///
    /// # Errors
    ///
    /// [`ViewerError`] when the window or its GPU surface cannot be made.
    pub fn run(
        self,
        input: mpsc::Sender<InputEvent>,
        stop: oneshot::Sender<()>,
    ) -> Result<(), ViewerError> {
        let mut app = App {
            shared: self.shared,
            title: self.title,
            window: None,
            pixels: None,
            buffer: (0, 0),
            sized_to_frame: false,
            input: Forwarder::new(input),
            stop: Some(stop),
            error: None,
            last_title: Instant::now() - Duration::from_secs(1),
        };
        self.event_loop
            .run_app(&mut app)
            .map_err(|e| ViewerError::NoDisplay(e.to_string()))?;
        app.error.map_or(Ok(()), Err)
    }
}

struct App {
    shared: Arc<Shared>,
    title: String,
    window: Option<Arc<Window>>,
    pixels: Option<Pixels<'static>>,
    /// Size of the pixel buffer (the frame size once one arrived).
    buffer: (u32, u32),
    sized_to_frame: bool,
    input: Forwarder,
    stop: Option<oneshot::Sender<()>>,
    error: Option<ViewerError>,
    last_title: Instant,
}

/// Placeholder size before the first frame.
const START_SIZE: (u32, u32) = (1280, 720);

impl App {
    fn open(&mut self, event_loop: &ActiveEventLoop) -> Result<(), ViewerError> {
        let attrs = Window::default_attributes()
            .with_title(format!("quicdesk · {} · connecting", self.title))
            .with_inner_size(LogicalSize::new(START_SIZE.0, START_SIZE.1));
        let window = Arc::new(
            event_loop
                .create_window(attrs)
                .map_err(|e| ViewerError::NoDisplay(e.to_string()))?,
        );
        let size = window.inner_size();
        let surface = SurfaceTexture::new(size.width.max(1), size.height.max(1), window.clone());
        let started = Instant::now();
        let mut pixels = Pixels::new(START_SIZE.0, START_SIZE.1, surface)
            .map_err(|e| ViewerError::Graphics(e.to_string()))?;
        pixels.set_scaling_mode(ScalingMode::Fill);
        pixels.clear_color(pixels::wgpu::Color::BLACK);
        info!(
            adapter = ?pixels.adapter().get_info().name,
            ms = started.elapsed().as_millis() as u64,
            "viewer window open"
        );
        self.buffer = START_SIZE;
        self.pixels = Some(pixels);
        self.window = Some(window);
        Ok(())
    }

    fn fail(&mut self, event_loop: &ActiveEventLoop, e: ViewerError) {
        warn!("{e}");
        self.error = Some(e);
        self.close(event_loop);
    }

    /// Ends the session from the viewer's side: releases held input, tells the session to stop.
    fn close(&mut self, event_loop: &ActiveEventLoop) {
        self.input.release_all();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        event_loop.exit();
    }

    fn show_frame(&mut self) {
        self.shared.frame_pending.store(false, Ordering::Release);
        let (Some(pixels), Some(window)) = (self.pixels.as_mut(), self.window.as_ref()) else {
            return;
        };
        let mut slot = lock(&self.shared.slot);
        if !slot.fresh {
            return;
        }
        slot.fresh = false;
        let (w, h) = (slot.width, slot.height);
        if (w, h) != self.buffer {
            if let Err(e) = pixels.resize_buffer(w, h) {
                warn!("cannot show a {w}x{h} frame: {e}");
                return;
            }
            self.buffer = (w, h);
        }
        let dst = pixels.frame_mut();
        if dst.len() == slot.rgba.len() {
            dst.copy_from_slice(&slot.rgba);
        }
        drop(slot);
        if !self.sized_to_frame {
            self.sized_to_frame = true;
            if let Some(size) = fit_to_monitor(window, w, h) {
                let _ = window.request_inner_size(size);
            }
        }
        window.request_redraw();
    }

    fn update_title(&mut self, force: bool) {
        if !force && self.last_title.elapsed() < Duration::from_millis(300) {
            return;
        }
        let Some(window) = self.window.as_ref() else {
            return;
        };
        self.last_title = Instant::now();
        let status = lock(&self.shared.status);
        window.set_title(&title(&self.title, &status.state, status.tick.as_ref()));
    }
}

/// `quicdesk · CODE · state · path · fps · latency`.
fn title(code: &str, state: &str, tick: Option<&Tick>) -> String {
    let mut t = format!("quicdesk · {code}");
    if !state.is_empty() {
        t.push_str(&format!(" · {state}"));
    }
    if let Some(tick) = tick {
        t.push_str(&format!(" · {} · {:.1} fps", tick.path, tick.fps));
        if let Some(ms) = tick.latency_ms_p50 {
            t.push_str(&format!(" · {ms:.0} ms"));
        }
    }
    t
}

/// The frame's size, shrunk (aspect kept) to fit 80% of the window's monitor.
fn fit_to_monitor(window: &Window, w: u32, h: u32) -> Option<PhysicalSize<u32>> {
    let monitor = window.current_monitor()?.size();
    let (mw, mh) = (
        f64::from(monitor.width) * 0.8,
        f64::from(monitor.height) * 0.8,
    );
    let scale = (mw / f64::from(w)).min(mh / f64::from(h)).min(1.0);
    Some(PhysicalSize::new(
        (f64::from(w) * scale).round().max(1.0) as u32,
        (f64::from(h) * scale).round().max(1.0) as u32,
    ))
}

impl ApplicationHandler<Wake> for App {
    fn resumed(&mut self, event_loop: &ActiveEventLoop) {
        if self.window.is_none()
            && let Err(e) = self.open(event_loop)
        {
            self.fail(event_loop, e);
        }
    }

    fn user_event(&mut self, event_loop: &ActiveEventLoop, event: Wake) {
        match event {
            Wake::Frame => self.show_frame(),
            Wake::Status => self.update_title(false),
            Wake::Ended => {
                let why = lock(&self.shared.status).ended.clone().flatten();
                match why {
                    Some(why) => warn!("session ended: {why}"),
                    None => info!("session ended"),
                }
                self.close(event_loop);
            }
        }
    }

    fn window_event(&mut self, event_loop: &ActiveEventLoop, _id: WindowId, event: WindowEvent) {
        match event {
            WindowEvent::CloseRequested => {
                info!("viewer window closed: ending the session");
                self.close(event_loop);
            }
            WindowEvent::Resized(size) => {
                if let Some(p) = self.pixels.as_mut()
                    && let Err(e) = p.resize_surface(size.width.max(1), size.height.max(1))
                {
                    warn!("resize failed: {e}");
                }
                if let Some(w) = &self.window {
                    w.request_redraw();
                }
            }
            WindowEvent::RedrawRequested => {
                if let Some(p) = &self.pixels
                    && let Err(e) = p.render()
                {
                    let e = ViewerError::Graphics(e.to_string());
                    self.fail(event_loop, e);
                }
            }
            WindowEvent::Focused(focused) => {
                self.input.focused = focused;
                if !focused {
                    self.input.release_all();
                }
            }
            WindowEvent::ModifiersChanged(m) => self.input.modifiers = m.state(),
            WindowEvent::CursorMoved { position, .. } => {
                if let Some(p) = &self.pixels {
                    let (x, y) = p
                        .window_pos_to_pixel((position.x as f32, position.y as f32))
                        .unwrap_or_else(|pos| p.clamp_pixel_pos(pos));
                    let (w, h) = self.buffer;
                    self.input.pointer(x as f64, y as f64, w, h);
                }
            }
            WindowEvent::MouseInput { state, button, .. } => {
                if let Some(b) = mouse_button(button) {
                    self.input.button(b, state == ElementState::Pressed);
                }
            }
            WindowEvent::MouseWheel { delta, .. } => self.input.wheel(delta),
            WindowEvent::KeyboardInput { event, .. } => self.input.key(&event),
            WindowEvent::Ime(winit::event::Ime::Commit(text)) => self.input.text(&text),
            _ => {}
        }
        if self.stop.is_some() {
            self.update_title(false);
        }
    }
}

fn mouse_button(b: winit::event::MouseButton) -> Option<MouseButton> {
    use winit::event::MouseButton as W;
    Some(match b {
        W::Left => MouseButton::Left,
        W::Right => MouseButton::Right,
        W::Middle => MouseButton::Middle,
        W::Back => MouseButton::Back,
        W::Forward => MouseButton::Forward,
        W::Other(_) => return None,
    })
}

/// Pixels of smooth scrolling that make one notch.
const PIXELS_PER_NOTCH: f64 = 40.0;

/// Turns window input into [`InputEvent`]s and sends them; tracks what it holds.
struct Forwarder {
    tx: mpsc::Sender<InputEvent>,
    held: HeldInputs,
    modifiers: ModifiersState,
    focused: bool,
    wheel: WheelAccumulator,
    last_pointer: Option<NormalizedPoint>,
}

impl Forwarder {
    fn new(tx: mpsc::Sender<InputEvent>) -> Self {
        Self {
            tx,
            held: HeldInputs::new(),
            modifiers: ModifiersState::empty(),
            focused: true,
            wheel: WheelAccumulator::default(),
            last_pointer: None,
        }
    }

    fn send(&mut self, event: InputEvent) {
        self.held.note(&event);
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(e)) => debug!(?e, "input queue full; dropped"),
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn pointer(&mut self, x: f64, y: f64, w: u32, h: u32) {
        if !self.focused {
            return;
        }
        let pos = NormalizedPoint::from_frame(x, y, w, h);
        if self.last_pointer != Some(pos) {
            self.last_pointer = Some(pos);
            self.send(InputEvent::MouseMove { pos });
        }
    }

    fn button(&mut self, button: MouseButton, pressed: bool) {
        if self.focused {
            self.send(InputEvent::MouseButton { button, pressed });
        }
    }

    fn wheel(&mut self, delta: MouseScrollDelta) {
        if !self.focused {
            return;
        }
        if let Some((dx, dy)) = self.wheel.add(delta) {
            self.send(InputEvent::Wheel { dx, dy });
        }
    }

    fn text(&mut self, text: &str) {
        if let Ok(text) = BoundedText::new(text) {
            self.send(InputEvent::Text { text });
        }
    }

    fn key(&mut self, event: &KeyEvent) {
        if !self.focused {
            return;
        }
        let PhysicalKey::Code(code) = event.physical_key else {
            return;
        };
        let pressed = event.state == ElementState::Pressed;
        let key = key_of(code);
        match decide(
            key,
            pressed,
            event.text.as_deref(),
            self.modifiers,
            &self.held,
        ) {
            Action::Text(t) => self.text(&t),
            Action::Key(key) => self.send(InputEvent::Key { key, pressed }),
            Action::Nothing => {}
        }
    }

    fn release_all(&mut self) {
        for e in self.held.take_releases() {
            let _ = self.tx.try_send(e);
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Action {
    Text(String),
    Key(Key),
    Nothing,
}

/// What a key event becomes. A press that types printable text while no Ctrl, Alt or Super is
/// held travels as text, so it prints the same on the host whatever its keyboard layout; every
/// other key (modifiers, arrows, Enter, shortcuts) travels as the physical key. A release is
/// sent only for a key whose press was.
fn decide(
    key: Option<Key>,
    pressed: bool,
    text: Option<&str>,
    modifiers: ModifiersState,
    held: &HeldInputs,
) -> Action {
    if !pressed {
        return match key {
            Some(k) if held.is_key_held(k) => Action::Key(k),
            _ => Action::Nothing,
        };
    }
    let shortcut = modifiers.control_key() || modifiers.alt_key() || modifiers.super_key();
    let printable = text.filter(|t| !t.is_empty() && !t.chars().any(char::is_control));
    match (printable, shortcut, key) {
        (Some(t), false, _) => Action::Text(t.to_owned()),
        (_, _, Some(k)) => Action::Key(k),
        (Some(t), true, None) => Action::Text(t.to_owned()),
        (None, _, None) => Action::Nothing,
    }
}

/// Sums wheel movement into whole notches: lines as they come, smooth-scroll pixels by
/// [`PIXELS_PER_NOTCH`]. Positive `dy` scrolls down (winit's positive y scrolls up).
#[derive(Debug, Default)]
struct WheelAccumulator {
    x: f64,
    y: f64,
}

impl WheelAccumulator {
    fn add(&mut self, delta: MouseScrollDelta) -> Option<(i16, i16)> {
        match delta {
            MouseScrollDelta::LineDelta(x, y) => {
                self.x -= f64::from(x);
                self.y -= f64::from(y);
            }
            MouseScrollDelta::PixelDelta(p) => {
                self.x -= p.x / PIXELS_PER_NOTCH;
                self.y -= p.y / PIXELS_PER_NOTCH;
            }
        }
        let limit = f64::from(MAX_WHEEL);
        let take = |v: &mut f64| -> i16 {
            let whole = v.trunc().clamp(-limit, limit);
            *v -= whole;
            if !v.is_finite() || v.abs() > limit {
                *v = 0.0;
            }
            whole as i16
        };
        let (dx, dy) = (take(&mut self.x), take(&mut self.y));
        (dx != 0 || dy != 0).then_some((dx, dy))
    }
}

macro_rules! key_table {
    ($($name:ident),* $(,)?) => {
        /// The physical key of a winit key code (same W3C names), if quicdesk knows it.
        fn key_of(code: KeyCode) -> Option<Key> {
            match code {
                $(KeyCode::$name => Some(Key::$name),)*
                _ => None,
            }
        }

        #[cfg(test)]
        const MAPPED: &[Key] = &[$(Key::$name),*];
    };
}

key_table! {
    KeyA, KeyB, KeyC, KeyD, KeyE, KeyF, KeyG, KeyH, KeyI, KeyJ, KeyK, KeyL, KeyM, KeyN, KeyO,
    KeyP, KeyQ, KeyR, KeyS, KeyT, KeyU, KeyV, KeyW, KeyX, KeyY, KeyZ,
    Digit1, Digit2, Digit3, Digit4, Digit5, Digit6, Digit7, Digit8, Digit9, Digit0,
    Enter, Escape, Backspace, Tab, Space, Minus, Equal, BracketLeft, BracketRight, Backslash,
    Semicolon, Quote, Backquote, Comma, Period, Slash, CapsLock,
    F1, F2, F3, F4, F5, F6, F7, F8, F9, F10, F11, F12,
    PrintScreen, ScrollLock, Pause, Insert, Home, PageUp, Delete, End, PageDown,
    ArrowRight, ArrowLeft, ArrowDown, ArrowUp, NumLock, NumpadDivide, NumpadMultiply,
    NumpadSubtract, NumpadAdd, NumpadEnter, Numpad1, Numpad2, Numpad3, Numpad4, Numpad5,
    Numpad6, Numpad7, Numpad8, Numpad9, Numpad0, NumpadDecimal, IntlBackslash, ContextMenu,
    NumpadEqual, F13, F14, F15, F16, F17, F18, F19, F20, F21, F22, F23, F24,
    NumpadComma, IntlRo, KanaMode, IntlYen, Convert, NonConvert, Lang1, Lang2, Lang3, Lang4,
    Lang5, ControlLeft, ShiftLeft, AltLeft, SuperLeft, ControlRight, ShiftRight, AltRight,
    SuperRight,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_quicdesk_knows_comes_from_a_winit_key() {
        let mut mapped = MAPPED.to_vec();
        mapped.sort_by_key(|k| k.hid_usage());
        assert_eq!(mapped, Key::ALL.to_vec());
        assert_eq!(key_of(KeyCode::KeyA), Some(Key::KeyA));
        assert_eq!(key_of(KeyCode::SuperRight), Some(Key::SuperRight));
        assert_eq!(key_of(KeyCode::MediaPlayPause), None);
    }

    #[test]
    fn typing_goes_as_text_and_shortcuts_as_keys() {
        let none = ModifiersState::empty();
        let held = HeldInputs::new();
        // A letter (any layout): its text.
        assert_eq!(
            decide(Some(Key::KeyQ), true, Some("a"), none, &held),
            Action::Text("a".into())
        );
        assert_eq!(
            decide(
                Some(Key::Digit2),
                true,
                Some("é"),
                ModifiersState::SHIFT,
                &held
            ),
            Action::Text("é".into())
        );
        // Ctrl+C: the physical key.
        assert_eq!(
            decide(
                Some(Key::KeyC),
                true,
                Some("c"),
                ModifiersState::CONTROL,
                &held
            ),
            Action::Key(Key::KeyC)
        );
        // Enter and Backspace produce control characters: keys.
        assert_eq!(
            decide(Some(Key::Enter), true, Some("\r"), none, &held),
            Action::Key(Key::Enter)
        );
        assert_eq!(
            decide(Some(Key::ArrowUp), true, None, none, &held),
            Action::Key(Key::ArrowUp)
        );
        // Releases only for keys whose press went out as a key.
        assert_eq!(
            decide(Some(Key::KeyQ), false, None, none, &held),
            Action::Nothing
        );
        let mut held = HeldInputs::new();
        held.note(&InputEvent::Key {
            key: Key::ShiftLeft,
            pressed: true,
        });
        assert_eq!(
            decide(Some(Key::ShiftLeft), false, None, none, &held),
            Action::Key(Key::ShiftLeft)
        );
        assert_eq!(decide(None, true, None, none, &held), Action::Nothing);
    }

    #[test]
    fn wheel_turns_into_whole_notches_the_right_way_round() {
        let mut w = WheelAccumulator::default();
        // winit: positive y is "up"; quicdesk: positive dy scrolls down.
        assert_eq!(w.add(MouseScrollDelta::LineDelta(0.0, 1.0)), Some((0, -1)));
        assert_eq!(w.add(MouseScrollDelta::LineDelta(0.0, -2.0)), Some((0, 2)));
        // Smooth scrolling adds up.
        let px = |y| MouseScrollDelta::PixelDelta(winit::dpi::PhysicalPosition::new(0.0, y));
        assert_eq!(w.add(px(-25.0)), None);
        assert_eq!(w.add(px(-25.0)), Some((0, 1)));
        // Huge or silly values are clamped, never overflow.
        assert_eq!(
            w.add(MouseScrollDelta::LineDelta(0.0, -1e9)),
            Some((0, MAX_WHEEL))
        );
        assert_eq!(w.add(MouseScrollDelta::LineDelta(f32::NAN, 0.0)), None);
    }

    #[test]
    fn title_shows_state_path_fps_and_latency() {
        let tick = Tick {
            fps: 29.96,
            mbps: 1.0,
            latency_ms_p50: Some(23.4),
            latency_ms_p95: None,
            frames_decoded: 10,
            path: crate::stats::PathKind::Direct,
        };
        assert_eq!(
            title("ISR-12345678", "connected", Some(&tick)),
            "quicdesk · ISR-12345678 · connected · direct · 30.0 fps · 23 ms"
        );
        assert_eq!(title("ISR-1", "", None), "quicdesk · ISR-1");
    }
}
