//! The host's media pipeline: capture → encode → [`Packet`]s, on a dedicated thread (capture
//! may block), steered by [`MediaCmd`]s.
//!
//! ```text
//!  control loop ── MediaCmd (KeyFrame, SetBitrate, SetFps, Stop) ──┐
//!                                                                  ▼
//!  Capturer::capture ──► codec::Encoder ──► Packet ──► (bounded channel) ──► video streams
//!        └─ size change: new encoder (a key frame), on_resize(w, h) ──► input thread
//! ```
//!
//! Paced to `fps`: between ticks the thread waits on its command channel, so a command (and
//! `Stop` above all) is taken at once, not a frame interval later. Sending blocks (never drops)
//! when the network is slower, so each captured frame is as fresh as the network allows; a still
//! screen gives no frames and costs next to nothing.
//!
//! This is where a rate controller plugs in: whatever watches the transport (quinn's path
//! statistics) steers the pipeline with `SetBitrate`/`SetFps`. None is written yet; today the
//! bitrate and frame rate are the host's configuration. Switching monitors mid-session is not
//! here yet either (it needs the input backend to follow the new area).

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use capture::Capturer;
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
    /// Encode at this many bit/s from now on (clamped to [`BITRATE_RANGE`]; a new encoder, so
    /// a key frame).
    SetBitrate(u32),
    /// Capture at most this many frames a second (clamped to [`FPS_RANGE`]).
    SetFps(u32),
    /// End the pipeline.
    Stop,
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
    /// Starts the pipeline thread over `capturer`. `on_resize` hears every new captured size.
    pub fn start(
        capturer: Box<dyn Capturer>,
        config: MediaConfig,
        video: mpsc::Sender<Packet>,
        on_resize: impl Fn(u32, u32) + Send + 'static,
    ) -> std::io::Result<Self> {
        let (commands, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("quicdesk-encode".into())
            .spawn(move || run(capturer, config, &rx, &video, &on_resize))?;
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
                    self.config.bitrate_bps = b;
                    self.rebuild(self.encoder_config.width, self.encoder_config.height)?;
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
    config: MediaConfig,
    rx: &Receiver<MediaCmd>,
    video: &mpsc::Sender<Packet>,
    on_resize: &dyn Fn(u32, u32),
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
            match st.apply(cmd) {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    warn!("cannot create the encoder: {e}");
                    return;
                }
            }
        }
        if !tick(&mut st, capturer.as_mut(), video, on_resize) {
            return;
        }
        next += st.interval;
        let now = Instant::now();
        if next < now {
            next = now; // running late: don't try to catch up with a burst
        }
    }
}

/// One capture and encode; false when the pipeline must end.
fn tick(
    st: &mut State,
    capturer: &mut dyn Capturer,
    video: &mpsc::Sender<Packet>,
    on_resize: &dyn Fn(u32, u32),
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
        on_resize(frame.width, frame.height);
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
mod tests {
    use super::*;

    fn start(fps: u32) -> (Media, mpsc::Receiver<Packet>) {
        let (tx, rx) = mpsc::channel(64);
        let source = capture::SyntheticSource::new(320, 240).unwrap();
        let media = Media::start(
            Box::new(source),
            MediaConfig {
                fps,
                bitrate_bps: 1_000_000,
                content: None,
            },
            tx,
            |_, _| {},
        )
        .unwrap();
        (media, rx)
    }

    fn next(rx: &mut mpsc::Receiver<Packet>) -> Packet {
        for _ in 0..500 {
            match rx.try_recv() {
                Ok(p) => return p,
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        panic!("no packet within 5 s");
    }

    /// Packets until (and including) the first key frame after `cmd`; how many came before it.
    fn frames_to_key_after(media: &Media, rx: &mut mpsc::Receiver<Packet>, cmd: MediaCmd) -> usize {
        // Drain, then steer: a key frame must follow within a few frames.
        while rx.try_recv().is_ok() {}
        media.commands().send(cmd).unwrap();
        (0..10)
            .position(|_| next(rx).header.key_frame)
            .unwrap_or_else(|| panic!("no key frame within 10 frames after {cmd:?}"))
    }

    #[test]
    fn commands_steer_the_running_pipeline() {
        let (media, mut rx) = start(30);
        assert!(
            next(&mut rx).header.key_frame,
            "the first frame is a key frame"
        );
        for _ in 0..3 {
            assert!(!next(&mut rx).header.key_frame, "then predicted frames");
        }
        for cmd in [
            MediaCmd::KeyFrame,
            MediaCmd::SetBitrate(2_000_000),
            MediaCmd::SetFps(20),
        ] {
            assert!(frames_to_key_after(&media, &mut rx, cmd) <= 3, "{cmd:?}");
        }
        media.stop();
    }

    #[test]
    fn stop_is_taken_at_once_even_at_one_frame_a_second() {
        let (media, mut rx) = start(1);
        let _ = next(&mut rx);
        let t = Instant::now();
        media.stop();
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "stopping took {:?}",
            t.elapsed()
        );
    }

    #[test]
    fn out_of_range_settings_are_clamped() {
        let mut st = State::new(
            MediaConfig {
                fps: 30,
                bitrate_bps: 1_000_000,
                content: None,
            },
            320,
            240,
        )
        .unwrap();
        assert!(st.apply(MediaCmd::SetFps(0)).unwrap());
        assert_eq!(st.config.fps, 1);
        assert!(st.apply(MediaCmd::SetBitrate(u32::MAX)).unwrap());
        assert_eq!(st.config.bitrate_bps, BITRATE_RANGE.1);
        assert!(!st.apply(MediaCmd::Stop).unwrap());
    }
}
