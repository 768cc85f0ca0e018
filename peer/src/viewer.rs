//! The controller's viewer window (winit): shows the newest decoded frame fit into the window,
//! forwards the mouse and keyboard while it has the focus, and shows the session's state in its
//! title.
//!
//! Size: just over 600 lines, all of it the event loop's own state and handlers (drawing is in
//! `gpu`, input translation in `forward`, tests in `tests`); splitting the handlers from the
//! state they mutate would only add indirection.
//!
//! ```text
//!  decode thread ── ViewerSink::frame ──► one-frame slot ──► wake (coalesced) ──┐
//!  session tasks ── ViewerSink::tick/state ──► status ─────► wake (coalesced) ──┤
//!                └─ ViewerSink::ended ─────────────────────► wake ──────────────┤
//!                                                                               ▼
//!  main thread: winit event loop ─► gpu (wgpu: upload, scale, present) ─► window
//!                                ◄─ pointer/buttons/wheel/keys/IME ─► Forwarder ─► mpsc ─► host
//! ```
//!
//! Only the newest frame is kept: the sink copies each frame into a slot (reusing its buffer) and
//! wakes the loop only if no wake is pending, so a renderer slower than the stream skips frames
//! instead of queueing them. The loop swaps the slot's buffer with its own (no copy under the
//! lock), uploads it and draws it in one GPU pass (module `gpu`, which explains why it does not
//! use `Pixels::render`).
//!
//! The picture keeps its aspect ratio and is centred with black bars ([`Fit`]), whether the window
//! is larger or smaller than the frame; pointer positions go through the same [`Fit`] backwards.
//! Keys that type printable text without Ctrl/Alt/Super travel as text, every other key as the
//! physical key (module `forward`). Whatever the window holds down is released when it loses the
//! focus or closes. Ctrl+Alt+Shift+1..9 asks the host for its monitor 0..8 and is not forwarded
//! ([`Viewer::with_requests`]); the window is sized for the first frame only, later sizes (another
//! monitor) are fitted into it.
//!
//! Closing the window fires the session's `stop` and [`Viewer::run`] returns; the session ending
//! ([`ViewerSink::ended`]) closes the window.

mod forward;
pub(crate) mod gpu;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::lock;
use std::time::{Duration, Instant};

use input::InputEvent;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};
use winit::application::ApplicationHandler;
use winit::dpi::PhysicalSize;
use winit::event::{Ime, StartCause, WindowEvent};
use winit::event_loop::{ActiveEventLoop, ControlFlow, EventLoop, EventLoopProxy};
use winit::window::{Window, WindowId};

use crate::controller::Request;
use crate::stats::Tick;

/// Errors of the viewer window.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ViewerError {
    #[error("cannot open a window: no X display ({0}); set DISPLAY, or use --headless")]
    NoDisplay(String),
    #[error(
        "the viewer window must be made on the main thread (winit requires it), not on thread {0:?}"
    )]
    NotMainThread(String),
    #[error("cannot open a window: {0}")]
    Window(String),
    #[error(
        "cannot draw in the window: no usable GPU adapter ({0}); install mesa-vulkan-drivers \
         (cargo xtask setup), or use --headless"
    )]
    NoAdapter(String),
    #[error("cannot draw in the window: {0}")]
    Graphics(String),
    #[error("cannot show a {width}x{height} frame: the GPU takes at most {max}x{max}")]
    FrameTooLarge { width: u32, height: u32, max: u32 },
    #[error("the window's event loop failed: {0}")]
    EventLoop(String),
    /// A small window's process (`peer ui`) got no usable request, or cannot answer.
    #[error("the window's request: {0}")]
    Request(String),
}

/// How to open the window.
#[derive(Debug, Clone)]
pub struct ViewerOptions {
    /// Shown after "quicdesk" in the title: the host's code, e.g. `ISR-1234567-8`.
    pub title: String,
    /// Allow the event loop on a thread other than the main one (Linux only; for tests).
    pub any_thread: bool,
}

/// Size of the window before the first frame (it then takes the frame's size, up to
/// [`MONITOR_SHARE`] of the monitor).
pub const START_SIZE: (u32, u32) = (1280, 720);
/// The largest share of the monitor the window takes by itself, per side.
pub const MONITOR_SHARE: f64 = 0.8;
/// Title updates at most this often.
const TITLE_EVERY: Duration = Duration::from_millis(250);
/// A frame that could not be drawn (window covered, surface busy) is tried again after this.
const REDRAW_RETRY: Duration = Duration::from_millis(50);

/// Where a `frame`-sized picture goes in a `window`-sized window: as large as fits with its
/// aspect ratio kept, centred; whole pixels, at least 1x1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Fit {
    pub fn new(frame: (u32, u32), window: (u32, u32)) -> Self {
        let (fw, fh) = (f64::from(frame.0.max(1)), f64::from(frame.1.max(1)));
        let (ww, wh) = (window.0.max(1), window.1.max(1));
        let scale = (f64::from(ww) / fw).min(f64::from(wh) / fh);
        // Rounded, and never more than the window (the min of the two ratios makes one side
        // exact; rounding cannot push the other past its window side).
        let width = ((fw * scale).round() as u32).clamp(1, ww);
        let height = ((fh * scale).round() as u32).clamp(1, wh);
        Self {
            x: (ww - width) / 2,
            y: (wh - height) / 2,
            width,
            height,
        }
    }
}

/// The window size for a `frame`: the frame's own size, shrunk (aspect kept) to fit
/// [`MONITOR_SHARE`] of the monitor; without a known monitor, to fit [`START_SIZE`].
pub fn window_size_for(frame: (u32, u32), monitor: Option<(u32, u32)>) -> (u32, u32) {
    let bound = monitor.map_or(START_SIZE, |(w, h)| {
        (
            (f64::from(w) * MONITOR_SHARE) as u32,
            (f64::from(h) * MONITOR_SHARE) as u32,
        )
    });
    if frame.0 <= bound.0 && frame.1 <= bound.1 {
        return (frame.0.max(1), frame.1.max(1));
    }
    let fit = Fit::new(frame, bound);
    (fit.width, fit.height)
}

/// `quicdesk · CODE · state · path · fps · latency`, leaving out what is not known yet.
pub fn title(code: &str, state: &str, tick: Option<&Tick>) -> String {
    let mut t = format!("quicdesk · {code}");
    if !state.is_empty() {
        t.push_str(" · ");
        t.push_str(state);
    }
    if let Some(tick) = tick {
        t.push_str(&format!(" · {} · {:.1} fps", tick.path, tick.fps));
        if let Some(ms) = tick.latency_ms_p50 {
            t.push_str(&format!(" · {ms:.0} ms"));
        }
    }
    t
}

/// A winit error's message without the "os error at FILE:LINE: " winit puts before it.
pub(crate) fn os_reason(e: &impl std::fmt::Display) -> String {
    let text = e.to_string();
    match text
        .strip_prefix("os error at ")
        .and_then(|rest| rest.split_once(": "))
    {
        Some((_, reason)) => reason.trim_end_matches('.').to_owned(),
        None => text,
    }
}

/// Why the loop is woken.
#[derive(Debug, Clone, Copy)]
enum Wake {
    Frame,
    Status,
    Ended,
}

/// The newest decoded frame; its buffer is reused.
#[derive(Debug, Default)]
struct Slot {
    width: u32,
    height: u32,
    rgba: Vec<u8>,
    /// Not shown yet.
    fresh: bool,
}

#[derive(Debug, Default)]
struct Status {
    state: String,
    tick: Option<Tick>,
    /// `Some` once the session ended, with the reason if it failed.
    ended: Option<Option<String>>,
}

#[derive(Debug, Default)]
struct Shared {
    slot: Mutex<Slot>,
    /// A `Wake::Frame` is on its way or the loop has not taken the slot yet.
    frame_pending: AtomicBool,
    status: Mutex<Status>,
    status_pending: AtomicBool,
}

/// Feeds the window from the session's threads (the decode thread, tokio tasks). Cheap to clone;
/// every call returns at once, and calls after the window closed do nothing.
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
    /// A decoded frame to show: copied into the slot (replacing an older frame not shown yet);
    /// the loop is woken unless a wake is already pending.
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
        self.status_changed();
    }

    /// The connection state for the title, e.g. "connecting", "authenticating", "connected".
    pub fn state(&self, state: &str) {
        state.clone_into(&mut lock(&self.shared.status).state);
        self.status_changed();
    }

    /// The session is over (`why` it failed, if it did): the window closes and
    /// [`Viewer::run`] returns.
    pub fn ended(&self, why: Option<String>) {
        lock(&self.shared.status).ended = Some(why);
        let _ = self.proxy.send_event(Wake::Ended);
    }

    fn status_changed(&self) {
        if !self.shared.status_pending.swap(true, Ordering::AcqRel) {
            let _ = self.proxy.send_event(Wake::Status);
        }
    }
}

/// The viewer window and its event loop. Make it and run it on the main thread (winit requires
/// it on most platforms), and the session elsewhere (a tokio runtime on another thread) feeding
/// it through the [`ViewerSink`].
pub struct Viewer {
    event_loop: EventLoop<Wake>,
    shared: Arc<Shared>,
    code: String,
    requests: Option<mpsc::Sender<Request>>,
}

impl std::fmt::Debug for Viewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Viewer")
            .field("code", &self.code)
            .finish_non_exhaustive()
    }
}

impl Viewer {
    /// Connects to the display; the window itself opens in [`run`](Self::run).
    ///
    /// # Errors
    ///
    /// [`ViewerError::NoDisplay`] without a display to connect to;
    /// [`ViewerError::NotMainThread`] off the main thread without `any_thread`.
    pub fn new(opts: ViewerOptions) -> Result<(Self, ViewerSink), ViewerError> {
        // winit panics off the main thread; say so instead. Rust names the main thread "main".
        let thread = std::thread::current();
        if !opts.any_thread && thread.name() != Some("main") {
            return Err(ViewerError::NotMainThread(
                thread.name().unwrap_or("unnamed").to_owned(),
            ));
        }
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
            .map_err(|e| ViewerError::NoDisplay(os_reason(&e)))?;
        let shared = Arc::new(Shared::default());
        let sink = ViewerSink {
            shared: shared.clone(),
            proxy: event_loop.create_proxy(),
        };
        let viewer = Self {
            event_loop,
            shared,
            code: opts.title,
            requests: None,
        };
        Ok((viewer, sink))
    }

    /// Where Ctrl+Alt+Shift+digit's monitor switches go (without it, nowhere).
    #[must_use]
    pub fn with_requests(mut self, requests: mpsc::Sender<Request>) -> Self {
        self.requests = Some(requests);
        self
    }

    /// Opens the window and runs it until it is closed (then `stop` fires) or the sink says the
    /// session ended. Input while the window has the focus goes to `input`, never waiting: when
    /// the queue is full, moves and presses are dropped and releases wait for room.
    ///
    /// # Errors
    ///
    /// [`ViewerError`] when the window or its GPU surface cannot be made (`stop` fires then
    /// too), or the event loop fails.
    pub fn run(
        self,
        input: mpsc::Sender<InputEvent>,
        stop: oneshot::Sender<()>,
    ) -> Result<(), ViewerError> {
        let mut app = App {
            shared: self.shared,
            code: self.code,
            window: None,
            window_size: (0, 0),
            gpu: None,
            front: Vec::new(),
            sized_to_frame: false,
            forward: forward::Forwarder::new(input, self.requests),
            stop: Some(stop),
            error: None,
            shown_title: String::new(),
            title_dirty: true,
            next_title: Instant::now(),
            redraw_at: None,
            warned_size: None,
        };
        let ran = self.event_loop.run_app(&mut app);
        app.finish();
        if let Some(e) = app.error.take() {
            return Err(e);
        }
        ran.map_err(|e| ViewerError::EventLoop(os_reason(&e)))
    }
}

/// The event loop's state.
struct App {
    shared: Arc<Shared>,
    code: String,
    window: Option<Arc<Window>>,
    /// The window's inner size in physical pixels, from its resize events.
    window_size: (u32, u32),
    gpu: Option<gpu::Renderer>,
    /// The frame being shown, swapped with the slot's buffer.
    front: Vec<u8>,
    /// Whether the window was sized for the first frame.
    sized_to_frame: bool,
    forward: forward::Forwarder,
    stop: Option<oneshot::Sender<()>>,
    error: Option<ViewerError>,
    shown_title: String,
    title_dirty: bool,
    next_title: Instant,
    /// When to try drawing again after a frame could not be drawn.
    redraw_at: Option<Instant>,
    /// A frame size already complained about.
    warned_size: Option<(u32, u32)>,
}

impl App {
    fn open(&mut self, event_loop: &ActiveEventLoop) -> Result<(), ViewerError> {
        let monitor = event_loop
            .primary_monitor()
            .map(|m| (m.size().width, m.size().height));
        let (w, h) = window_size_for(START_SIZE, monitor);
        let attrs = Window::default_attributes()
            .with_title(self.title_text())
            .with_inner_size(PhysicalSize::new(w, h));
        let window = Arc::new(
            event_loop
                .create_window(attrs)
                .map_err(|e| ViewerError::Window(os_reason(&e)))?,
        );
        // IME commits (composed CJK text and the like) arrive as text to forward.
        window.set_ime_allowed(true);
        let started = Instant::now();
        let gpu = gpu::Renderer::new(window.clone())?;
        info!(
            adapter = gpu.adapter_name(),
            ms = started.elapsed().as_millis() as u64,
            "viewer window open"
        );
        let size = window.inner_size();
        self.window_size = (size.width, size.height);
        self.gpu = Some(gpu);
        // A frame may have arrived while the window was being made: draw whatever is there.
        window.request_redraw();
        self.window = Some(window);
        Ok(())
    }

    /// Ends the session from the viewer's side: releases what is held, fires `stop`, leaves the
    /// loop.
    fn close(&mut self, event_loop: &ActiveEventLoop) {
        self.finish();
        event_loop.exit();
    }

    /// What must happen however the loop ends; safe to repeat.
    fn finish(&mut self) {
        self.forward.release_all();
        self.forward.flush();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    fn fail(&mut self, event_loop: &ActiveEventLoop, e: ViewerError) {
        warn!("{e}");
        self.error = Some(e);
        self.close(event_loop);
    }

    /// Takes the newest frame (if there is one not shown yet), uploads it and draws.
    fn redraw(&mut self) {
        let Some(gpu) = self.gpu.as_mut() else {
            return;
        };
        // Clear before taking, so that a frame stored after this point wakes the loop again.
        self.shared.frame_pending.store(false, Ordering::Release);
        let fresh = {
            let mut slot = lock(&self.shared.slot);
            slot.fresh.then(|| {
                slot.fresh = false;
                std::mem::swap(&mut slot.rgba, &mut self.front);
                (slot.width, slot.height)
            })
        };
        if let Some((w, h)) = fresh {
            match gpu.upload(w, h, &self.front) {
                Ok(()) => {
                    // Sized for the first frame only: a frame of another size (another monitor,
                    // another resolution) is fitted into the window as it is, whose size stays
                    // the user's.
                    if !self.sized_to_frame
                        && let Some(window) = &self.window
                    {
                        self.sized_to_frame = true;
                        let monitor = window
                            .current_monitor()
                            .map(|m| (m.size().width, m.size().height));
                        let (w, h) = window_size_for((w, h), monitor);
                        let _ = window.request_inner_size(PhysicalSize::new(w, h));
                    }
                }
                Err(e) if self.warned_size != Some((w, h)) => {
                    self.warned_size = Some((w, h));
                    warn!("{e}");
                }
                Err(_) => {}
            }
        }
        self.redraw_at = match gpu.render() {
            gpu::Drawn::Shown => None,
            gpu::Drawn::Later => Some(Instant::now() + REDRAW_RETRY),
        };
    }

    fn title_text(&self) -> String {
        let status = lock(&self.shared.status);
        title(&self.code, &status.state, status.tick.as_ref())
    }

    fn update_title(&mut self, now: Instant) {
        let Some(window) = &self.window else {
            return;
        };
        if !self.title_dirty || now < self.next_title {
            return;
        }
        self.title_dirty = false;
        self.next_title = now + TITLE_EVERY;
        let text = self.title_text();
        if text != self.shown_title {
            window.set_title(&text);
            self.shown_title = text;
        }
    }
}

impl ApplicationHandler<Wake> for App {
    fn new_events(&mut self, _event_loop: &ActiveEventLoop, cause: StartCause) {
        if let StartCause::ResumeTimeReached { .. } = cause
            && let (Some(at), Some(window)) = (self.redraw_at, &self.window)
            && Instant::now() >= at
        {
            self.redraw_at = None;
            window.request_redraw();
        }
    }

    fn resumed(&mut self, event_loop: &ActiveEventLoop) {
        if self.window.is_none()
            && self.error.is_none()
            && let Err(e) = self.open(event_loop)
        {
            self.fail(event_loop, e);
        }
    }

    fn user_event(&mut self, event_loop: &ActiveEventLoop, event: Wake) {
        match event {
            Wake::Frame => {
                if let Some(window) = &self.window {
                    window.request_redraw();
                }
            }
            Wake::Status => {
                self.shared.status_pending.store(false, Ordering::Release);
                self.title_dirty = true;
            }
            Wake::Ended => {
                let why = lock(&self.shared.status).ended.clone();
                match why {
                    Some(Some(why)) => warn!("session ended: {why}"),
                    Some(None) => info!("session ended"),
                    None => return,
                }
                self.close(event_loop);
            }
        }
    }

    fn window_event(&mut self, event_loop: &ActiveEventLoop, _id: WindowId, event: WindowEvent) {
        match event {
            WindowEvent::CloseRequested | WindowEvent::Destroyed => {
                info!("viewer window closed: ending the session");
                self.close(event_loop);
            }
            WindowEvent::Resized(size) => {
                self.window_size = (size.width, size.height);
                if let Some(gpu) = self.gpu.as_mut() {
                    gpu.resize(size.width, size.height);
                }
                if let Some(window) = &self.window {
                    window.request_redraw();
                }
            }
            WindowEvent::RedrawRequested => self.redraw(),
            WindowEvent::Focused(focused) => self.forward.set_focused(focused),
            WindowEvent::ModifiersChanged(m) => self.forward.set_modifiers(m.state()),
            WindowEvent::CursorMoved { position, .. } => {
                let frame = self.gpu.as_ref().and_then(gpu::Renderer::picture_size);
                self.forward
                    .pointer((position.x, position.y), self.window_size, frame);
            }
            WindowEvent::MouseInput { state, button, .. } => self.forward.button(button, state),
            WindowEvent::MouseWheel { delta, .. } => self.forward.wheel(delta),
            // Synthetic key events are winit replaying keys held while the focus was elsewhere
            // (e.g. the Alt of Alt-Tab): not the user pressing them in this window.
            WindowEvent::KeyboardInput {
                event,
                is_synthetic: false,
                ..
            } => self.forward.key(&event),
            WindowEvent::Ime(Ime::Commit(text)) => self.forward.text(&text),
            _ => {}
        }
    }

    fn about_to_wait(&mut self, event_loop: &ActiveEventLoop) {
        let now = Instant::now();
        self.forward.flush();
        self.update_title(now);
        let wake_at = [self.redraw_at, self.title_dirty.then_some(self.next_title)]
            .into_iter()
            .flatten()
            .min();
        event_loop.set_control_flow(match wake_at {
            Some(at) => ControlFlow::WaitUntil(at),
            None => ControlFlow::Wait,
        });
    }

    fn exiting(&mut self, _event_loop: &ActiveEventLoop) {
        self.finish();
    }
}

#[cfg(test)]
mod tests;
