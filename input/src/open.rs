//! The platform seam: [`open`] gives the backend that performs input on this machine, chosen
//! here by `cfg` and features so that callers never name one.
//!
//! | platform | backend |
//! |---|---|
//! | Linux and the BSDs, feature `enigo` | [`crate::EnigoBackend`] (XTEST on the X display) |
//! | Windows, feature `enigo` | `WindowsBackend` (SendInput; scan codes, the virtual desktop) |
//! | macOS, others, or without the feature | none yet: [`InputError::Unsupported`] |

use crate::{InputBackend, InputError};

/// Where to perform input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputSpec {
    /// X display name such as `:0`; `None` uses `$DISPLAY`. Ignored where there is no X.
    pub display: Option<String>,
    /// Top-left corner, on the whole desktop, of the monitor the session shares: a point of the
    /// shared picture lands there plus its offset.
    pub origin: (i32, i32),
}

/// This machine's input backend for `spec`.
///
/// # Errors
///
/// The backend's error (a display that cannot be reached), or [`InputError::Unsupported`] where
/// this build has no backend.
pub fn open(spec: &InputSpec) -> Result<Box<dyn InputBackend>, InputError> {
    #[cfg(all(feature = "enigo", unix, not(target_os = "macos")))]
    {
        let mut b = crate::EnigoBackend::new(spec.display.as_deref())?;
        b.set_origin(spec.origin.0, spec.origin.1);
        Ok(Box::new(b))
    }
    #[cfg(all(feature = "enigo", windows))]
    {
        let mut b = crate::WindowsBackend::new()?;
        b.set_origin(spec.origin.0, spec.origin.1);
        Ok(Box::new(b))
    }
    #[cfg(not(any(
        all(feature = "enigo", windows),
        all(feature = "enigo", unix, not(target_os = "macos"))
    )))]
    {
        let _ = spec;
        Err(InputError::Unsupported(
            "performing input on this platform (or in a build without the `enigo` feature)",
        ))
    }
}
