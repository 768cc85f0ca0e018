//! Screen capture for quicdesk: the [`Capturer`] trait that every screen source implements,
//! [`open`] which picks this platform's backend for a [`SourceSpec`] (X11 on Linux: [`x11`]),
//! and a deterministic [`SyntheticSource`] for tests and benchmarks.
//!
//! ```text
//!            dedicated capture thread (may block)                  elsewhere
//!   ┌──────────────────────────────────────────────┐
//!   │ Capturer::capture() ──► Some(Frame) ─────────┼──► codec::Encoder (BGRA → I420 → H.264)
//!   │        │                 BGRA, frame_no,     │
//!   │        │                 captured_at_us      │
//!   │        └──────────────► None (unchanged) ────┼──► nothing to send
//!   └──────────────────────────────────────────────┘
//!
//!   render_synthetic(w, h, n, t) ──► Frame with a marker ──► … H.264 … ──► read_marker() == (n, t)
//! ```
//!
//! A [`Frame`] is a BGRA picture (alpha always 255) stamped with a frame number and the wall-clock
//! time it was captured, so that an end-to-end benchmark can measure latency from the pixels the
//! viewer decoded: the synthetic picture carries both values as a barcode ([`read_marker`]) that
//! survives H.264 compression.
//!
//! What this crate does **not** do: it does not encode, send or schedule frames, and it owns no
//! async runtime. [`Capturer::capture`] may block (an X11 `XShm` read waits while the server copies
//! the screen), so it must run on a dedicated thread (or `spawn_blocking`), never inside an async
//! task. Windows has DXGI Desktop Duplication with a GDI fallback ([`windows`]); macOS has no
//! backend yet (it cannot be built here): [`open`] answers [`CaptureError::Unsupported`] for a
//! screen there.

// Unsafe code is denied workspace-wide; the X11 backend allows it for one mmap (see `x11`).
#![deny(unsafe_code)]

mod compare;
mod marker;
mod source;
mod synthetic;
#[cfg(all(unix, not(target_os = "macos")))]
pub mod x11;
#[cfg(unix)]
pub mod xvfb;
// Win32 and COM calls are FFI throughout; each unsafe block says why it holds.
#[cfg(windows)]
#[allow(unsafe_code)]
pub mod windows;

use std::fmt;

pub use compare::mean_abs_diff;
pub use marker::{MARKER_COLS, MARKER_ROWS, Marker, marker_cell_size, read_marker};
pub use source::{Area, Monitor, Opened, ScreenSpec, SourceSpec, monitors, open};
pub use synthetic::{SyntheticSource, render_synthetic};

/// Now, in microseconds since the Unix epoch: what every source stamps its frames with
/// ([`Frame::captured_at_us`]).
pub(crate) fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Largest width or height, in pixels, that the capture sources accept.
pub const MAX_DIMENSION: u32 = 8192;

/// One captured picture.
///
/// `data` holds `height` rows of `stride` bytes each; every row starts with `width` BGRA pixels
/// (blue in the lowest byte). The fourth byte of a pixel is padding with no promised value (an X
/// server leaves it as it likes; setting it would cost a pass over the whole screen), so consumers
/// ignore it. Bytes past `width * 4` in a row are padding too.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes per row, at least `width * 4`.
    pub stride: usize,
    /// BGRA pixels, `stride * height` bytes (alpha unspecified).
    pub data: FrameData,
    /// Sequence number from the source, starting at 0 and counting captured frames.
    pub frame_no: u64,
    /// When the picture was taken, in microseconds since the Unix epoch.
    pub captured_at_us: u64,
}

impl fmt::Debug for Frame {
    // The pixel data is megabytes long: show its length only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("stride", &self.stride)
            .field("data_len", &self.data.len())
            .field("frame_no", &self.frame_no)
            .field("captured_at_us", &self.captured_at_us)
            .finish()
    }
}

/// The bytes of a [`Frame`]: an ordinary buffer, or memory a capture backend lends out so that
/// the screen is not copied once more (the X11 backend hands out the shared-memory segment the X
/// server wrote into). Either way it reads and writes as a byte slice; lent memory goes back to
/// its backend when the frame is dropped.
pub struct FrameData(Storage);

enum Storage {
    Heap(Vec<u8>),
    // Only the X11 source lends memory so far.
    #[cfg_attr(not(all(unix, not(target_os = "macos"))), allow(dead_code))]
    Lent(Box<dyn Lent>),
}

/// Memory a backend lends to a frame; it takes the memory back in its `Drop`.
pub(crate) trait Lent: Send {
    fn bytes(&self) -> &[u8];
    fn bytes_mut(&mut self) -> &mut [u8];
}

impl FrameData {
    #[cfg(all(unix, not(target_os = "macos")))]
    pub(crate) fn lent(buffer: Box<dyn Lent>) -> Self {
        Self(Storage::Lent(buffer))
    }

    /// The bytes as an owned vector: free for a heap buffer, a copy for lent memory.
    #[must_use]
    pub fn into_vec(self) -> Vec<u8> {
        match self.0 {
            Storage::Heap(v) => v,
            Storage::Lent(l) => l.bytes().to_vec(),
        }
    }
}

impl From<Vec<u8>> for FrameData {
    fn from(v: Vec<u8>) -> Self {
        Self(Storage::Heap(v))
    }
}

impl std::ops::Deref for FrameData {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            Storage::Heap(v) => v,
            Storage::Lent(l) => l.bytes(),
        }
    }
}

impl std::ops::DerefMut for FrameData {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.0 {
            Storage::Heap(v) => v,
            Storage::Lent(l) => l.bytes_mut(),
        }
    }
}

impl Clone for FrameData {
    /// A copy on the heap (lent memory stays with its one frame).
    fn clone(&self) -> Self {
        Self(Storage::Heap(self.to_vec()))
    }
}

impl PartialEq for FrameData {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for FrameData {}

impl fmt::Debug for FrameData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.0 {
            Storage::Heap(_) => "heap",
            Storage::Lent(_) => "lent",
        };
        write!(f, "FrameData({kind}, {} bytes)", self.len())
    }
}

/// Order of the colour bytes in a 4-byte pixel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PixelLayout {
    /// Blue, green, red, alpha: what capture produces.
    Bgra,
    /// Red, green, blue, alpha: what the decoder produces.
    Rgba,
}

/// A screen source.
///
/// Call [`capture`](Capturer::capture) on a dedicated thread, at most at the frame rate you want:
/// it may block (for example while the X server copies the screen) and a real backend may wait up
/// to about one frame interval for new content. It returns `Ok(None)` when the screen has not
/// changed since the previous call, which costs next to nothing, so that an idle desktop sends
/// nothing.
///
/// The screen size can change at run time (a resolution switch): consumers must use each
/// [`Frame`]'s own `width` and `height` rather than cache [`size`](Capturer::size).
pub trait Capturer: Send {
    /// Current size of the captured area in pixels, `(width, height)`.
    fn size(&self) -> (u32, u32);

    /// Takes the next picture, or `Ok(None)` if nothing changed since the last call.
    ///
    /// # Errors
    ///
    /// A backend failure, for example a lost display connection; see [`CaptureError`].
    fn capture(&mut self) -> Result<Option<Frame>, CaptureError>;

    /// Makes the next [`capture`](Capturer::capture) return a picture even if nothing changed,
    /// e.g. when the viewer asks for a key frame on a static screen.
    fn refresh(&mut self) {}
}

/// Errors from capture sources.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// The requested capture size cannot be used.
    #[error("invalid capture size {width}x{height}: {problem}")]
    InvalidSize {
        /// Requested width.
        width: u32,
        /// Requested height.
        height: u32,
        /// What is wrong with it.
        problem: SizeProblem,
    },
    /// The backend failed to read the screen (for example the display connection was lost).
    #[error("capture backend i/o failed")]
    Io(#[from] std::io::Error),
    /// The X display cannot be used.
    #[error("X display {display}: {reason}")]
    X11 {
        /// The display name, e.g. `:0`.
        display: String,
        /// What went wrong.
        reason: String,
    },
    /// `--monitor` named a monitor that does not exist.
    #[error(
        "monitor {index} does not exist: the display has {count} (list them with `peer host --list-monitors`)"
    )]
    NoSuchMonitor {
        /// The index asked for.
        index: usize,
        /// How many monitors there are.
        count: usize,
    },
    /// This build has no backend for what was asked.
    #[error("{0} is not supported yet")]
    Unsupported(&'static str),
}

/// Why a size was refused, see [`CaptureError::InvalidSize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SizeProblem {
    /// Width or height is zero.
    #[error("width and height must be non-zero")]
    Zero,
    /// Width or height is odd; 4:2:0 video needs even sizes.
    #[error("width and height must be even")]
    Odd,
    /// Width or height is above [`MAX_DIMENSION`].
    #[error("width and height must be at most 8192")]
    TooLarge,
}

/// Checks a capture size: non-zero, even, and at most [`MAX_DIMENSION`] on each side.
///
/// # Errors
///
/// [`CaptureError::InvalidSize`] naming the first problem found.
pub fn validate_size(width: u32, height: u32) -> Result<(), CaptureError> {
    let problem = if width == 0 || height == 0 {
        Some(SizeProblem::Zero)
    } else if width > MAX_DIMENSION || height > MAX_DIMENSION {
        Some(SizeProblem::TooLarge)
    } else if !width.is_multiple_of(2) || !height.is_multiple_of(2) {
        Some(SizeProblem::Odd)
    } else {
        None
    };
    match problem {
        Some(problem) => Err(CaptureError::InvalidSize {
            width,
            height,
            problem,
        }),
        None => Ok(()),
    }
}

/// Whether `len` bytes hold a non-empty `width` x `height` 4-byte-per-pixel picture with `stride`
/// bytes per row (the last row may lack its padding). False on arithmetic overflow.
pub(crate) fn fits(len: usize, width: u32, height: u32, stride: usize) -> bool {
    let needed = || -> Option<usize> {
        let row = usize::try_from(width).ok()?.checked_mul(4)?;
        if width == 0 || height == 0 || stride < row {
            return None;
        }
        let rows_before_last = usize::try_from(height - 1).ok()?;
        stride.checked_mul(rows_before_last)?.checked_add(row)
    };
    needed().is_some_and(|needed| len >= needed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_validation() {
        assert!(validate_size(1920, 1080).is_ok());
        assert!(validate_size(2, 2).is_ok());
        assert!(validate_size(8192, 8192).is_ok());
        for (w, h, p) in [
            (0, 10, SizeProblem::Zero),
            (10, 0, SizeProblem::Zero),
            (641, 480, SizeProblem::Odd),
            (640, 479, SizeProblem::Odd),
            (8194, 480, SizeProblem::TooLarge),
            (640, 9000, SizeProblem::TooLarge),
        ] {
            match validate_size(w, h) {
                Err(CaptureError::InvalidSize {
                    width,
                    height,
                    problem,
                }) => {
                    assert_eq!((width, height, problem), (w, h, p));
                }
                other => panic!("{w}x{h}: expected {p:?}, got {other:?}"),
            }
        }
        let msg = validate_size(641, 480).unwrap_err().to_string();
        assert_eq!(
            msg,
            "invalid capture size 641x480: width and height must be even"
        );
    }

    #[test]
    fn extent_checks() {
        assert!(fits(16, 2, 2, 8));
        assert!(!fits(15, 2, 2, 8));
        // The last row needs no padding.
        assert!(fits(20, 2, 2, 12));
        assert!(!fits(16, 2, 2, 7));
        assert!(!fits(16, 0, 2, 8));
        assert!(!fits(usize::MAX, u32::MAX, u32::MAX, usize::MAX));
    }
}
