//! `peer service`: the host agent as a systemd user service, for unattended access to a
//! logged-in desktop. The unit starts `peer host` with the graphical session, restarts it on
//! failure, and its logs go to the journal (`journalctl --user -u quicdesk-host`).
//!
//! ```text
//!  peer service install → ~/.config/systemd/user/quicdesk-host.service
//!                         systemctl --user daemon-reload; enable --now quicdesk-host.service
//!  peer service status  → the unit file, and systemctl --user is-active
//!  peer service uninstall → disable --now; the unit file removed
//! ```
//!
//! Installing needs what an unattended host needs: a rendezvous (`peer join`) and a fixed
//! password (`peer password set`); without them it says which step is missing. With `--root
//! DIR` the unit is written below DIR and systemctl is not run (packaging, tests).
//!
//! Not done here yet: a system unit that starts at boot, before anyone logs in, and attaches to
//! the active X session's display once a user logs in.

use std::path::{Path, PathBuf};

/// The unit's name.
pub const UNIT: &str = "quicdesk-host.service";

/// Where the user unit goes for a user whose home is `home`: below `root` if given.
pub fn unit_path(root: Option<&Path>, home: &Path) -> PathBuf {
    let path = home.join(".config/systemd/user").join(UNIT);
    match root {
        Some(r) => r.join(path.strip_prefix("/").unwrap_or(&path)),
        None => path,
    }
}

/// The unit file's text for `program` (the `peer` executable) serving from `data_dir`.
///
/// # Errors
///
/// A path systemd cannot take in `ExecStart` (a quote, backslash, `%` or control character):
/// written out with a reason, never escaped into something else.
pub fn unit_text(program: &Path, data_dir: &Path) -> Result<String, String> {
    let arg = |p: &Path| -> Result<String, String> {
        let s = p
            .to_str()
            .ok_or_else(|| format!("{} is not UTF-8", p.display()))?;
        if s.chars()
            .any(|c| c.is_control() || matches!(c, '"' | '\'' | '\\' | '%' | '$'))
        {
            return Err(format!(
                "{s:?}: systemd cannot be given this path as it is (quotes, backslashes, % and $ \
                 are special to it); use a simpler path"
            ));
        }
        Ok(format!("\"{s}\""))
    };
    let (program, data_dir) = (arg(program)?, arg(data_dir)?);
    Ok(format!(
        "# Written by `peer service install`; `peer service uninstall` removes it.
[Unit]
Description=quicdesk host agent (shares this desktop)
After=graphical-session.target network-online.target
PartOf=graphical-session.target

[Service]
ExecStart={program} host --data-dir {data_dir}
Restart=on-failure
RestartSec=2
NoNewPrivileges=yes
PrivateTmp=yes

[Install]
WantedBy=graphical-session.target
"
    ))
}

/// Where and how to install.
#[derive(Debug, Clone)]
pub struct Install {
    /// The `peer` executable the unit starts.
    pub program: PathBuf,
    pub data_dir: PathBuf,
    /// The configuration file (it must name a rendezvous).
    pub config: PathBuf,
    /// The user's home directory.
    pub home: PathBuf,
    /// Write below this directory and run no systemctl.
    pub root: Option<PathBuf>,
}

/// Writes the unit and, without a root, enables and starts it. Returns what was done.
///
/// # Errors
///
/// What is missing (a rendezvous, a fixed password), a path systemd cannot take, or what
/// failed (writing the file, systemctl), each said plainly.
pub fn install(i: &Install) -> Result<String, String> {
    let cfg = crate::config::load(&i.config).map_err(|e| e.to_string())?;
    if cfg.rendezvous.is_none() {
        return Err(format!(
            "no rendezvous in {}: run `peer join INVITE` first",
            i.config.display()
        ));
    }
    let fixed = crate::password::Stored::load(&i.data_dir).map_err(|e| e.to_string())?;
    if fixed.is_none() {
        return Err(
            "no fixed password: run `peer password set` first (an unattended host \
                    has nobody to show a one-time password to)"
                .into(),
        );
    }
    let text = unit_text(&i.program, &i.data_dir)?;
    let path = unit_path(i.root.as_deref(), &i.home);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    if i.root.is_some() {
        return Ok(format!("wrote {}", path.display()));
    }
    systemctl(&["daemon-reload"])?;
    systemctl(&["enable", "--now", UNIT])?;
    Ok(format!(
        "wrote {} and started it; logs: journalctl --user -u {UNIT}",
        path.display()
    ))
}

/// Stops and disables the unit (without a root) and removes its file.
///
/// # Errors
///
/// What failed, said plainly.
pub fn uninstall(root: Option<&Path>, home: &Path) -> Result<String, String> {
    let path = unit_path(root, home);
    if root.is_none() && path.exists() {
        systemctl(&["disable", "--now", UNIT])?;
    }
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(format!("not installed ({} does not exist)", path.display()));
        }
        Err(e) => return Err(format!("{}: {e}", path.display())),
    }
    if root.is_none() {
        systemctl(&["daemon-reload"])?;
    }
    Ok(format!("removed {}", path.display()))
}

/// Whether the unit is installed and, without a root, running.
pub fn status(root: Option<&Path>, home: &Path) -> String {
    let path = unit_path(root, home);
    if !path.exists() {
        return format!("not installed ({} does not exist)", path.display());
    }
    if root.is_some() {
        return format!("installed at {}", path.display());
    }
    let active = std::process::Command::new("systemctl")
        .args(["--user", "is-active", UNIT])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|e| format!("unknown (systemctl: {e})"));
    format!("installed at {}; {active}", path.display())
}

fn systemctl(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("systemctl")
        .arg("--user")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run systemctl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "systemctl --user {} failed: {} (is this a desktop session with a user systemd?)",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_starts_the_host_with_its_data_directory() {
        let t = unit_text(
            Path::new("/usr/bin/peer"),
            Path::new("/home/ann/.local/share/q"),
        )
        .unwrap();
        assert!(
            t.contains("ExecStart=\"/usr/bin/peer\" host --data-dir \"/home/ann/.local/share/q\""),
            "{t}"
        );
        assert!(t.contains("Restart=on-failure"));
        assert!(t.contains("WantedBy=graphical-session.target"));
        for bad in [
            "/tmp/a\"b",
            "/tmp/50%",
            "/tmp/a\nExecStartPre=/bin/evil",
            "/tmp/$HOME",
        ] {
            assert!(
                unit_text(Path::new("/usr/bin/peer"), Path::new(bad)).is_err(),
                "{bad:?}"
            );
        }
        assert_eq!(
            unit_path(Some(Path::new("/scratch")), Path::new("/home/ann")),
            Path::new("/scratch/home/ann/.config/systemd/user").join(UNIT)
        );
    }
}
