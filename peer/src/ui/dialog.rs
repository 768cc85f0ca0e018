//! The winit driver of the small windows: opens one fixed-size window, draws the dialog's
//! [`Canvas`] into it (uploaded by the viewer's wgpu renderer, `viewer::gpu`: the same CPU
//! frame buffer path the viewer uses, working under Xvfb on lavapipe), and feeds it clicks,
//! keys, timer ticks and the lines its parent writes on stdin, until the dialog has an
//! outcome or the window is closed.
//!
//! What a dialog decides (layout, what a click or key means, its outcome) is in the
//! [`Dialog`] implementations (`prompt`, `indicator`, `connect`), which know nothing of winit
//! beyond [`Key`]; this driver has no policy.

use std::io::BufRead;
use std::sync::Arc;
use std::time::Instant;

use winit::application::ApplicationHandler;
use winit::dpi::{PhysicalPosition, PhysicalSize};
use winit::event::{ElementState, MouseButton, StartCause, WindowEvent};
use winit::event_loop::{ActiveEventLoop, ControlFlow, EventLoop, EventLoopProxy};
use winit::keyboard::{Key as WKey, NamedKey};
use winit::window::{Window, WindowId, WindowLevel};

use super::canvas::Canvas;
use crate::viewer::{ViewerError, gpu, os_reason};

/// A key the dialogs understand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Enter,
    Escape,
    Tab,
    Backspace,
    /// Typed text (printable).
    Text(String),
}

/// Where the window goes on the screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Centre,
    /// The top right corner, a margin away from the edges.
    TopRight,
}

/// One window's content and behaviour; the driver calls it and redraws after every call.
pub trait Dialog {
    type Outcome;
    fn title(&self) -> String;
    /// The window's size in pixels (fixed).
    fn size(&self) -> (u32, u32);
    fn placement(&self) -> Placement;
    fn always_on_top(&self) -> bool;
    fn draw(&self, canvas: &mut Canvas, now: Instant);
    /// A left click at (x, y).
    fn click(&mut self, x: f64, y: f64, now: Instant) -> Option<Self::Outcome>;
    fn key(&mut self, key: Key, now: Instant) -> Option<Self::Outcome>;
    /// A line the parent wrote after its request.
    fn line(&mut self, line: &str) -> Option<Self::Outcome>;
    /// The parent closed stdin: `Some` ends the dialog with that outcome.
    fn parent_gone(&mut self) -> Option<Self::Outcome>;
    /// The window was closed (by a window manager, or the process is asked to end).
    fn closed(&mut self) -> Self::Outcome;
    /// Time passed; when to be called next (e.g. a countdown's next second).
    fn tick(&mut self, now: Instant) -> (Option<Self::Outcome>, Option<Instant>);
}

#[derive(Debug)]
enum Wake {
    Line(String),
    Eof,
}

/// Runs `dialog` in a window until it has an outcome. Lines on stdin after the first (which
/// the caller read) reach [`Dialog::line`]; stdin's end reaches [`Dialog::parent_gone`].
///
/// # Errors
///
/// [`ViewerError`] when the window cannot be opened or drawn.
pub fn run<D: Dialog>(dialog: D) -> Result<D::Outcome, ViewerError> {
    let event_loop = EventLoop::<Wake>::with_user_event()
        .build()
        .map_err(|e| ViewerError::NoDisplay(os_reason(&e)))?;
    let proxy = event_loop.create_proxy();
    std::thread::Builder::new()
        .name("quicdesk-ui-stdin".into())
        .spawn(move || read_stdin(&proxy))
        .map_err(|e| ViewerError::Window(e.to_string()))?;
    let (w, h) = dialog.size();
    let mut app = App {
        canvas: Canvas::new(w, h),
        dialog,
        window: None,
        gpu: None,
        outcome: None,
        error: None,
        cursor: (0.0, 0.0),
        next_tick: None,
        dirty: true,
    };
    event_loop
        .run_app(&mut app)
        .map_err(|e| ViewerError::EventLoop(os_reason(&e)))?;
    if let Some(e) = app.error {
        return Err(e);
    }
    Ok(match app.outcome {
        Some(o) => o,
        None => app.dialog.closed(),
    })
}

/// Lines of stdin (each at most `MAX_LINE` bytes), then its end.
fn read_stdin(proxy: &EventLoopProxy<Wake>) {
    let stdin = std::io::stdin();
    let mut lock = stdin.lock();
    loop {
        let mut buf = Vec::new();
        let read =
            std::io::Read::take(&mut lock, super::MAX_LINE as u64 + 1).read_until(b'\n', &mut buf);
        match read {
            Ok(0) | Err(_) => break,
            Ok(_) if buf.last() != Some(&b'\n') => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf).trim_end().to_owned();
                if proxy.send_event(Wake::Line(line)).is_err() {
                    return;
                }
            }
        }
    }
    let _ = proxy.send_event(Wake::Eof);
}

struct App<D: Dialog> {
    dialog: D,
    canvas: Canvas,
    window: Option<Arc<Window>>,
    gpu: Option<gpu::Renderer>,
    outcome: Option<D::Outcome>,
    error: Option<ViewerError>,
    cursor: (f64, f64),
    next_tick: Option<Instant>,
    dirty: bool,
}

impl<D: Dialog> App<D> {
    fn open(&mut self, event_loop: &ActiveEventLoop) -> Result<(), ViewerError> {
        let (w, h) = self.dialog.size();
        let mut attrs = Window::default_attributes()
            .with_title(self.dialog.title())
            .with_inner_size(PhysicalSize::new(w, h))
            .with_resizable(false);
        if self.dialog.always_on_top() {
            attrs = attrs.with_window_level(WindowLevel::AlwaysOnTop);
        }
        if let Some(m) = event_loop.primary_monitor() {
            let (mw, mh) = (m.size().width as i32, m.size().height as i32);
            let (x, y) = match self.dialog.placement() {
                Placement::Centre => ((mw - w as i32) / 2, (mh - h as i32) / 3),
                Placement::TopRight => (mw - w as i32 - 16, 16),
            };
            attrs = attrs.with_position(PhysicalPosition::new(x.max(0), y.max(0)));
        }
        let window = Arc::new(
            event_loop
                .create_window(attrs)
                .map_err(|e| ViewerError::Window(os_reason(&e)))?,
        );
        self.gpu = Some(gpu::Renderer::new(window.clone())?);
        window.request_redraw();
        self.window = Some(window);
        Ok(())
    }

    fn redraw(&mut self) {
        let Some(gpu) = self.gpu.as_mut() else {
            return;
        };
        if self.dirty {
            self.canvas.clear(super::canvas::BACKGROUND);
            self.dialog.draw(&mut self.canvas, Instant::now());
            let (w, h) = (self.canvas.width(), self.canvas.height());
            if let Err(e) = gpu.upload(w, h, self.canvas.rgba()) {
                self.error = Some(e);
                return;
            }
            self.dirty = false;
        }
        if gpu.render() == gpu::Drawn::Later {
            // Try again shortly (surface busy or out of date).
            self.next_tick = Some(Instant::now() + std::time::Duration::from_millis(50));
            self.dirty = false;
        }
    }

    /// Takes the dialog's answer to an event: an outcome ends the loop, anything redraws.
    fn after(&mut self, event_loop: &ActiveEventLoop, outcome: Option<D::Outcome>) {
        if let Some(o) = outcome {
            self.outcome = Some(o);
            event_loop.exit();
            return;
        }
        self.dirty = true;
        if let Some(w) = &self.window {
            w.request_redraw();
        }
    }
}

impl<D: Dialog> ApplicationHandler<Wake> for App<D> {
    fn new_events(&mut self, event_loop: &ActiveEventLoop, cause: StartCause) {
        if let StartCause::ResumeTimeReached { .. } | StartCause::Init = cause {
            let now = Instant::now();
            if self.next_tick.is_none_or(|t| now >= t) {
                let (outcome, next) = self.dialog.tick(now);
                self.next_tick = next;
                self.after(event_loop, outcome);
            }
        }
    }

    fn resumed(&mut self, event_loop: &ActiveEventLoop) {
        if self.window.is_none()
            && self.error.is_none()
            && let Err(e) = self.open(event_loop)
        {
            self.error = Some(e);
            event_loop.exit();
        }
    }

    fn user_event(&mut self, event_loop: &ActiveEventLoop, event: Wake) {
        let outcome = match event {
            Wake::Line(line) => self.dialog.line(&line),
            Wake::Eof => self.dialog.parent_gone(),
        };
        self.after(event_loop, outcome);
    }

    fn window_event(&mut self, event_loop: &ActiveEventLoop, _id: WindowId, event: WindowEvent) {
        let now = Instant::now();
        let outcome = match event {
            WindowEvent::CloseRequested | WindowEvent::Destroyed => {
                let o = self.dialog.closed();
                Some(o)
            }
            WindowEvent::RedrawRequested => {
                self.redraw();
                if self.error.is_some() {
                    event_loop.exit();
                }
                return;
            }
            WindowEvent::Resized(size) => {
                if let Some(gpu) = self.gpu.as_mut() {
                    gpu.resize(size.width, size.height);
                }
                None
            }
            WindowEvent::CursorMoved { position, .. } => {
                self.cursor = (position.x, position.y);
                return;
            }
            WindowEvent::MouseInput {
                state: ElementState::Pressed,
                button: MouseButton::Left,
                ..
            } => self.dialog.click(self.cursor.0, self.cursor.1, now),
            WindowEvent::KeyboardInput {
                event,
                is_synthetic: false,
                ..
            } if event.state == ElementState::Pressed => {
                let key = match &event.logical_key {
                    WKey::Named(NamedKey::Enter) => Some(Key::Enter),
                    WKey::Named(NamedKey::Escape) => Some(Key::Escape),
                    WKey::Named(NamedKey::Tab) => Some(Key::Tab),
                    WKey::Named(NamedKey::Backspace) => Some(Key::Backspace),
                    _ => event
                        .text
                        .as_ref()
                        .map(|t| t.chars().filter(|c| !c.is_control()).collect::<String>())
                        .filter(|t| !t.is_empty())
                        .map(Key::Text),
                };
                match key {
                    Some(key) => self.dialog.key(key, now),
                    None => return,
                }
            }
            _ => return,
        };
        self.after(event_loop, outcome);
    }

    fn about_to_wait(&mut self, event_loop: &ActiveEventLoop) {
        event_loop.set_control_flow(match self.next_tick {
            Some(at) => ControlFlow::WaitUntil(at),
            None => ControlFlow::Wait,
        });
    }
}
