//! The host's media pipeline: capture → encode → [`Packet`]s, on a dedicated thread (capture
//! may block), steered by [`MediaCmd`]s, telling what changed as [`MediaEvent`]s.
//!
//! ```text
//!  control loop ── MediaCmd (KeyFrame, SetBitrate, SetFps, Stop, SwitchMonitor) ──┐
//!                                                                                 ▼
//!  Capturer::capture ──► codec::Encoder ──► Packet ──► (bounded channel) ──► video streams
//!        ├─ size change: new encoder (a key frame), MediaEvent::Resized ──► input thread
//!        └─ SwitchMonitor(i): capture::open on monitor i, new encoder (a key frame first),
//!           MediaEvent::Switched (area, monitor, count) ──► input thread, control loop;
//!           a bad index or a failed open: MediaEvent::SwitchFailed, the old monitor goes on
//! ```
//!
//! Paced to `fps`: between ticks the thread waits on its command channel, so a command (and
//! `Stop` above all) is taken at once, not a frame interval later. Sending blocks (never drops)
//! when the network is slower, so each captured frame is as fresh as the network allows; a still
//! screen gives no frames and costs next to nothing.
//!
//! Switching monitors reopens the source (`capture::open` with the new monitor of the same
//! [`SourceSpec`]) before anything of the old one is let go: the new capturer and its encoder
//! replace the old ones only once both exist, so a switch that fails leaves the stream as it
//! was. Each `SwitchMonitor` gets exactly one event, `Switched` or `SwitchFailed`, sent before
//! the next frame is captured; the first frame of the new monitor is a key frame (a new
//! encoder's first frame always is, and it is forced even on a still screen). Synthetic content
//! has no monitors: every switch fails.
//!
//! The rate controller (`host::rate`) watches the transport (quinn's path statistics) and steers
//! the pipeline with `SetBitrate`; the configured bitrate is its ceiling, and the frame rate
//! stays the host's configuration.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use capture::{Capturer, SourceSpec};
use proto::session::VideoHeader;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::content_for;

/// Lowest and highest bitrate a command may set, in bit/s.
pub const BITRATE_RANGE: (u32, u32) = (100_000, 100_000_000);
/// Lowest and highest frame rate a command may set.
pub const FPS_RANGE: (u32, u32) = (1, 120);

/// What the pipeline is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MediaCmd {
    /// The next frame is a key frame, even on a still screen.
    KeyFrame,
    /// Encode at this many bit/s from now on (clamped to [`BITRATE_RANGE`]; the running encoder
    /// takes it, without a key frame).
    SetBitrate(u32),
    /// Capture at most this many frames a second (clamped to [`FPS_RANGE`]).
    SetFps(u32),
    /// End the pipeline.
    Stop,
    /// Share monitor `index` (as [`capture::monitors`] counts) from now on; answered by
    /// [`MediaEvent::Switched`] or [`MediaEvent::SwitchFailed`].
    SwitchMonitor(usize),
}

/// What the pipeline tells its owner (from its own thread, before the next frame).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MediaEvent {
    /// The shared monitor changed size: frames have this size from now on.
    Resized { width: u32, height: u32 },
    /// Now sharing monitor `monitor` of `monitors`, which covers `area` of the desktop; frames
    /// have its size from the next one on, which is a key frame.
    Switched {
        area: capture::Area,
        monitor: usize,
        monitors: usize,
    },
    /// Monitor `index` cannot be shared, and why; the monitor shared before goes on.
    SwitchFailed { index: usize, reason: String },
}

/// One encoded frame on its way from the pipeline to the network.
#[derive(Debug)]
pub struct Packet {
    pub header: VideoHeader,
    pub data: Vec<u8>,
}

/// How to encode.
#[derive(Debug, Clone, Copy)]
pub struct MediaConfig {
    pub fps: u32,
    pub bitrate_bps: u32,
    /// Encoder mode; `None` picks by size ([`content_for`]).
    pub content: Option<codec::ContentType>,
}

/// A running pipeline; dropping it stops it (without waiting).
#[derive(Debug)]
pub struct Media {
    commands: Sender<MediaCmd>,
    thread: Option<JoinHandle<()>>,
}

impl Media {
    /// Starts the pipeline thread over `capturer`, which was opened from `spec` (reopened on
    /// another monitor by [`MediaCmd::SwitchMonitor`]). `on_event` hears every [`MediaEvent`].
    pub fn start(
        capturer: Box<dyn Capturer>,
        spec: SourceSpec,
        config: MediaConfig,
        video: mpsc::Sender<Packet>,
        on_event: impl Fn(MediaEvent) + Send + 'static,
    ) -> std::io::Result<Self> {
        let (commands, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("quicdesk-encode".into())
            .spawn(move || run(capturer, spec, config, &rx, &video, &on_event))?;
        Ok(Self {
            commands,
            thread: Some(thread),
        })
    }

    /// A handle to steer the pipeline from elsewhere (the control loop).
    pub fn commands(&self) -> Sender<MediaCmd> {
        self.commands.clone()
    }

    /// Stops the pipeline and waits for its thread (it stops at once unless a capture or an
    /// encode is under way).
    pub fn stop(mut self) {
        let _ = self.commands.send(MediaCmd::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Media {
    fn drop(&mut self) {
        let _ = self.commands.send(MediaCmd::Stop);
    }
}

/// The pipeline's own state between frames.
struct State {
    config: MediaConfig,
    encoder_config: codec::EncoderConfig,
    encoder: codec::Encoder,
    interval: Duration,
    key_frame: bool,
}

impl State {
    fn new(config: MediaConfig, width: u32, height: u32) -> Result<Self, codec::CodecError> {
        let encoder_config = codec::EncoderConfig {
            width,
            height,
            bitrate_bps: config.bitrate_bps,
            max_fps: config.fps as f32,
            content: config.content.unwrap_or_else(|| content_for(width, height)),
        };
        Ok(Self {
            config,
            encoder: codec::Encoder::new(encoder_config)?,
            encoder_config,
            interval: Duration::from_secs_f64(1.0 / f64::from(config.fps.max(1))),
            key_frame: false,
        })
    }

    /// Applies a command; false for `Stop`.
    fn apply(&mut self, cmd: MediaCmd) -> Result<bool, codec::CodecError> {
        match cmd {
            MediaCmd::KeyFrame => self.key_frame = true,
            MediaCmd::SetBitrate(b) => {
                let b = b.clamp(BITRATE_RANGE.0, BITRATE_RANGE.1);
                if b != self.config.bitrate_bps {
                    info!(bitrate_bps = b, "new bitrate");
                    // The running encoder takes it: no key frame.
                    self.encoder.set_bitrate(b)?;
                    self.config.bitrate_bps = b;
                    self.encoder_config.bitrate_bps = b;
                }
            }
            MediaCmd::SetFps(f) => {
                let f = f.clamp(FPS_RANGE.0, FPS_RANGE.1);
                if f != self.config.fps {
                    info!(fps = f, "new frame rate");
                    self.config.fps = f;
                    self.rebuild(self.encoder_config.width, self.encoder_config.height)?;
                }
            }
            MediaCmd::Stop => return Ok(false),
            // The pipeline's (`run`), since it replaces the capturer.
            MediaCmd::SwitchMonitor(_) => {}
        }
        Ok(true)
    }

    fn rebuild(&mut self, width: u32, height: u32) -> Result<(), codec::CodecError> {
        *self = Self::new(self.config, width, height)?;
        Ok(())
    }
}

fn run(
    mut capturer: Box<dyn Capturer>,
    mut spec: SourceSpec,
    config: MediaConfig,
    rx: &Receiver<MediaCmd>,
    video: &mpsc::Sender<Packet>,
    on_event: &dyn Fn(MediaEvent),
) {
    let (width, height) = capturer.size();
    let mut st = match State::new(config, width, height) {
        Ok(s) => s,
        Err(e) => {
            warn!("cannot create the encoder: {e}");
            return;
        }
    };
    let mut next = Instant::now();
    loop {
        // Wait for the tick, taking commands as they come.
        loop {
            let wait = next.saturating_duration_since(Instant::now());
            let cmd = if wait.is_zero() {
                match rx.try_recv() {
                    Ok(c) => c,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            } else {
                match rx.recv_timeout(wait) {
                    Ok(c) => c,
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            };
            if let MediaCmd::SwitchMonitor(index) = cmd {
                on_event(switch(&mut st, &mut capturer, &mut spec, index));
                continue;
            }
            match st.apply(cmd) {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    warn!("cannot create the encoder: {e}");
                    return;
                }
            }
        }
        if !tick(&mut st, capturer.as_mut(), video, on_event) {
            return;
        }
        next += st.interval;
        let now = Instant::now();
        if next < now {
            next = now; // running late: don't try to catch up with a burst
        }
    }
}

/// Moves the pipeline to monitor `index` of `spec`'s desktop: the new capturer and encoder
/// replace the old ones only once both exist (a key frame comes first); otherwise nothing
/// changes. The event says which.
fn switch(
    st: &mut State,
    capturer: &mut Box<dyn Capturer>,
    spec: &mut SourceSpec,
    index: usize,
) -> MediaEvent {
    let opened = open_monitor(spec, index).and_then(|(new_spec, opened, monitors)| {
        let (w, h) = opened.capturer.size();
        let state = State::new(st.config, w, h)
            .map_err(|e| format!("cannot encode monitor {index} ({w}x{h}): {e}"))?;
        Ok((new_spec, opened, monitors, state))
    });
    match opened {
        Ok((new_spec, opened, monitors, state)) => {
            info!(monitor = index, source = %opened.description, "switched monitors");
            *st = state;
            st.key_frame = true; // even if the new monitor is still
            *capturer = opened.capturer;
            *spec = new_spec;
            MediaEvent::Switched {
                area: opened.area,
                monitor: index,
                monitors,
            }
        }
        Err(reason) => {
            warn!(monitor = index, "cannot switch monitors: {reason}");
            MediaEvent::SwitchFailed { index, reason }
        }
    }
}

/// Opens monitor `index` of the desktop `spec` names: its spec, the opened source and how many
/// monitors there are; or why not, as text for the controller.
fn open_monitor(
    spec: &SourceSpec,
    index: usize,
) -> Result<(SourceSpec, capture::Opened, usize), String> {
    let SourceSpec::Screen(screen) = spec else {
        return Err("this host shares synthetic content, which has no monitors".into());
    };
    let monitors = capture::monitors(screen).map_err(|e| e.to_string())?;
    if index >= monitors.len() {
        return Err(format!(
            "no monitor {index}: the host has {} (0 to {})",
            monitors.len(),
            monitors.len().saturating_sub(1)
        ));
    }
    let spec = SourceSpec::Screen(capture::ScreenSpec {
        monitor: Some(index),
        ..screen.clone()
    });
    let opened = capture::open(&spec).map_err(|e| e.to_string())?;
    Ok((spec, opened, monitors.len()))
}

/// One capture and encode; false when the pipeline must end.
fn tick(
    st: &mut State,
    capturer: &mut dyn Capturer,
    video: &mpsc::Sender<Packet>,
    on_event: &dyn Fn(MediaEvent),
) -> bool {
    if st.key_frame {
        capturer.refresh(); // a key frame even if the screen is still
    }
    let frame = match capturer.capture() {
        Ok(Some(frame)) => frame,
        Ok(None) => return true, // screen unchanged: nothing to send
        Err(e) => {
            warn!("capture failed: {e}");
            return false;
        }
    };
    let (w, h) = (st.encoder_config.width, st.encoder_config.height);
    if (frame.width, frame.height) != (w, h) {
        info!(
            from = %format!("{w}x{h}"),
            to = %format!("{}x{}", frame.width, frame.height),
            "screen size changed; new encoder"
        );
        if let Err(e) = st.rebuild(frame.width, frame.height) {
            warn!("cannot create the encoder: {e}");
            return false;
        }
        on_event(MediaEvent::Resized {
            width: frame.width,
            height: frame.height,
        });
    }
    let force = std::mem::take(&mut st.key_frame);
    let encoded = st.encoder.encode(&frame.data, frame.stride, force);
    let header = VideoHeader {
        frame_no: frame.frame_no,
        captured_at_us: frame.captured_at_us,
        width: frame.width,
        height: frame.height,
        key_frame: false,
    };
    // A lent capture segment goes back to the capturer here.
    drop(frame);
    match encoded {
        Ok(enc) if !enc.data.is_empty() => {
            let packet = Packet {
                header: VideoHeader {
                    key_frame: enc.is_key_frame,
                    ..header
                },
                data: enc.data,
            };
            video.blocking_send(packet).is_ok()
        }
        Ok(_) => true, // rate control skipped this frame
        Err(e) => {
            warn!("encode failed: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests;
