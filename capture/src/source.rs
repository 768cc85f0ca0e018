//! The platform seam: what a host can share ([`SourceSpec`]), opened by [`open`] with the
//! backend this platform has, chosen here by `cfg` so that callers never name one.
//!
//! | platform | `Screen` backend |
//! |---|---|
//! | Linux and the BSDs | X11 ([`crate::x11`]: SHM, DAMAGE, RandR monitors, XFIXES cursor) |
//! | Windows | DXGI Desktop Duplication, else GDI ([`crate::windows`]) |
//! | macOS and others | none yet: [`CaptureError::Unsupported`] |

use crate::{CaptureError, Capturer, SyntheticSource};

/// What a host shares.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SourceSpec {
    /// Moving synthetic content carrying frame numbers and timestamps (tests, benches, demo).
    Synthetic { width: u32, height: u32 },
    /// One monitor of this machine's desktop.
    Screen(ScreenSpec),
}

/// Which screen, which monitor, and whether to draw the pointer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScreenSpec {
    /// X display name such as `:0`; `None` uses `$DISPLAY`. Ignored where there is no X.
    pub display: Option<String>,
    /// Index from [`monitors`]; `None` takes the primary monitor (or the first).
    pub monitor: Option<usize>,
    /// Draw the pointer into the frames.
    pub cursor: bool,
}

/// One monitor of a desktop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Monitor {
    /// Position in [`monitors`]' order: what `--monitor N` takes.
    pub index: usize,
    /// The system's name for it, e.g. `DP-1` (`screen` when there is only the whole screen).
    pub name: String,
    /// Whether the system marks it primary.
    pub primary: bool,
    /// Top-left corner on the whole desktop.
    pub x: i16,
    /// Top-left corner on the whole desktop.
    pub y: i16,
    /// Size in pixels.
    pub width: u16,
    /// Size in pixels.
    pub height: u16,
}

impl std::fmt::Display for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} {}x{}+{}+{}{}",
            self.index,
            self.name,
            self.width,
            self.height,
            self.x,
            self.y,
            if self.primary { " (primary)" } else { "" }
        )
    }
}

/// The part of the whole desktop a source covers: where an input backend puts the pointer for
/// a point of the shared picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Area {
    /// Top-left corner on the whole desktop.
    pub x: i32,
    pub y: i32,
    pub width: u32,
    pub height: u32,
}

/// An opened source.
pub struct Opened {
    pub capturer: Box<dyn Capturer>,
    /// What it covers.
    pub area: Area,
    /// For the log: which monitor, which backend.
    pub description: String,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("area", &self.area)
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

/// Opens `spec` with this platform's backend.
///
/// # Errors
///
/// The backend's error (a display that cannot be reached, a bad monitor index, an invalid
/// synthetic size), or [`CaptureError::Unsupported`] for a screen on a platform without a
/// backend.
pub fn open(spec: &SourceSpec) -> Result<Opened, CaptureError> {
    match spec {
        SourceSpec::Synthetic { width, height } => Ok(Opened {
            capturer: Box::new(SyntheticSource::new(*width, *height)?),
            area: Area {
                x: 0,
                y: 0,
                width: *width,
                height: *height,
            },
            description: format!("synthetic {width}x{height}"),
        }),
        SourceSpec::Screen(screen) => open_screen(screen),
    }
}

/// The monitors of the desktop `screen` names, in the order `--monitor N` counts them.
///
/// # Errors
///
/// As [`open`].
pub fn monitors(screen: &ScreenSpec) -> Result<Vec<Monitor>, CaptureError> {
    #[cfg(all(unix, not(target_os = "macos")))]
    return crate::x11::list_monitors(screen.display.as_deref());
    #[cfg(windows)]
    {
        let _ = screen;
        crate::windows::list_monitors()
    }
    #[cfg(not(any(windows, all(unix, not(target_os = "macos")))))]
    {
        let _ = screen;
        Err(CaptureError::Unsupported(UNSUPPORTED))
    }
}

#[cfg(not(any(windows, all(unix, not(target_os = "macos")))))]
const UNSUPPORTED: &str = "screen capture on this platform";

#[cfg(all(unix, not(target_os = "macos")))]
fn open_screen(screen: &ScreenSpec) -> Result<Opened, CaptureError> {
    let c = crate::x11::X11Capturer::open(screen)?;
    let m = c.monitor();
    let (width, height) = c.size();
    Ok(Opened {
        area: Area {
            x: i32::from(m.x),
            y: i32::from(m.y),
            width,
            height,
        },
        description: format!("X11 monitor {m}, shm {}", c.uses_shm()),
        capturer: Box::new(c),
    })
}

#[cfg(windows)]
fn open_screen(screen: &ScreenSpec) -> Result<Opened, CaptureError> {
    crate::windows::open_screen(screen)
}

#[cfg(not(any(windows, all(unix, not(target_os = "macos")))))]
fn open_screen(_: &ScreenSpec) -> Result<Opened, CaptureError> {
    Err(CaptureError::Unsupported(UNSUPPORTED))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_synthetic_source_covers_its_size_at_the_origin() {
        let o = open(&SourceSpec::Synthetic {
            width: 320,
            height: 240,
        })
        .unwrap();
        assert_eq!(
            o.area,
            Area {
                x: 0,
                y: 0,
                width: 320,
                height: 240
            }
        );
        assert_eq!(o.capturer.size(), (320, 240));
        assert!(matches!(
            open(&SourceSpec::Synthetic {
                width: 3,
                height: 2
            }),
            Err(CaptureError::InvalidSize { .. })
        ));
    }
}
