//! `peer service`: the host agent started by the platform, for unattended access. This module is
//! what every platform shares: the [`Install`] request, the checks an unattended host needs first
//! (a rendezvous from `peer join`, a fixed password from `peer password set`; [`check_ready`]),
//! and the dispatch to the platform's own file:
//!
//! ```text
//!              user (no privileges)                     --system (root / Administrator)
//!  Linux    systemd.rs: ~/.config/systemd/user unit     /etc/systemd/system unit, from boot
//!  Windows  windows.rs: HKCU\…\Run value, logon start   windows.rs: the `quicdesk-host` service,
//!                                                       which runs `peer service run`
//!                                                       (windows_service.rs) from boot
//! ```
//!
//! [`windows_plan`] holds the Windows decisions (command lines, the Run value, the supervisor
//! that keeps the host in the console session) as pure functions, compiled and tested on every
//! platform; the Windows files only make the OS calls. What this module does not do: start the
//! host itself, or anything platform-specific.

use std::path::{Path, PathBuf};

#[cfg(not(windows))]
pub mod systemd;
#[cfg(not(windows))]
use systemd as platform;

// Win32 calls (registry, WTS user tokens, CreateProcessAsUserW); each unsafe block says why it is sound.
#[cfg(windows)]
#[allow(unsafe_code)]
pub mod windows;
#[cfg(windows)]
use self::windows as platform;

// The service's own process (dispatcher, session tokens, CreateProcessAsUserW); each unsafe block says why.
#[cfg(windows)]
#[allow(unsafe_code)]
mod windows_service;

pub mod windows_plan;

/// The service's name everywhere: the systemd unit `quicdesk-host.service`, the Windows service
/// and the Windows Run value `quicdesk-host`.
pub const NAME: &str = "quicdesk-host";

/// Which service: the user's (a logged-in desktop, no privileges needed) or the system's (from
/// boot, for whoever logs in; root or Administrator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    User,
    System,
}

/// Where and how to install.
#[derive(Debug, Clone)]
pub struct Install {
    /// The `peer` executable the service starts.
    pub program: PathBuf,
    pub data_dir: PathBuf,
    /// The configuration file (it must name a rendezvous).
    pub config: PathBuf,
    /// The user's home directory (systemd's user units live there).
    pub home: PathBuf,
    /// Write below this directory and start nothing (packaging, tests; systemd only).
    pub root: Option<PathBuf>,
    pub scope: Scope,
}

/// What an unattended host needs before it is installed: a rendezvous in `config` and a fixed
/// password in `data_dir`.
///
/// # Errors
///
/// Which step is missing (`peer join`, `peer password set`), or why the files cannot be read.
pub fn check_ready(config: &Path, data_dir: &Path) -> Result<(), String> {
    let cfg = crate::config::load(config).map_err(|e| e.to_string())?;
    if cfg.rendezvous.is_none() {
        return Err(format!(
            "no rendezvous in {}: run `peer join INVITE` first",
            config.display()
        ));
    }
    let fixed = crate::password::Stored::load(data_dir).map_err(|e| e.to_string())?;
    if fixed.is_none() {
        return Err(
            "no fixed password: run `peer password set` first (an unattended host \
                    has nobody to show a one-time password to)"
                .into(),
        );
    }
    Ok(())
}

/// Checks [`check_ready`], then installs and starts the service the platform's way. Returns
/// what was done.
///
/// # Errors
///
/// What is missing, a path the platform cannot take, or what failed, each said plainly.
pub fn install(i: &Install) -> Result<String, String> {
    check_ready(&i.config, &i.data_dir)?;
    platform::install(i)
}

/// Stops the service and removes it. Returns what was done (or that nothing was installed).
///
/// # Errors
///
/// What failed, said plainly.
pub fn uninstall(root: Option<&Path>, home: &Path, scope: Scope) -> Result<String, String> {
    platform::uninstall(root, home, scope)
}

/// Whether the service is installed, what it runs and, where the platform says, whether it runs.
pub fn status(root: Option<&Path>, home: &Path, scope: Scope) -> String {
    platform::status(root, home, scope)
}

/// `peer service run`: the body of the Windows service (the service manager starts it); blocks
/// until the service is stopped.
///
/// # Errors
///
/// Not on Windows, or not started by the service manager, said plainly.
pub fn run(data_dir: &Path) -> Result<(), String> {
    platform::run(data_dir)
}

/// The system service's data directory when none is given: `/var/lib/quicdesk-host`, or on
/// Windows `%ProgramData%\quicdesk-host`.
pub fn system_data_dir() -> PathBuf {
    platform::system_data_dir()
}

/// This program, as the service should name it: absolute, links resolved, and on Windows
/// without the `\\?\` prefix that resolving adds.
///
/// # Errors
///
/// When the OS cannot say where this program is.
pub fn this_program() -> Result<PathBuf, String> {
    let exe = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .map_err(|e| format!("locating this program: {e}"))?;
    Ok(platform::program_path(exe))
}
