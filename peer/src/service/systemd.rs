//! `peer service` outside Windows: the host agent as a systemd user service, for unattended
//! access to a logged-in desktop. The unit starts `peer host` with the graphical session,
//! restarts it on failure, and its logs go to the journal (`journalctl --user -u
//! quicdesk-host`).
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
//! With `--system` (as root) it writes a system unit instead
//! (`/etc/systemd/system/quicdesk-host.service`), which starts at boot, before anyone logs in,
//! and runs `peer host --display session`: the host follows whoever is logged in to the
//! graphical session (`crate::seat`), so the machine is reachable from the first login on,
//! whoever logs in. Its data directory is a system one (default `/var/lib/quicdesk-host`).
//!
//! Not Windows (`windows.rs`). Tested: the unit's text and paths (below), and with `--root` the
//! whole command with systemd's own checker (`tests/cli.rs`); running systemctl is not.

use std::path::{Path, PathBuf};

use super::{Install, Scope};

/// The unit's name.
pub const UNIT: &str = "quicdesk-host.service";

/// The system service's data directory when none is given.
pub fn system_data_dir() -> PathBuf {
    "/var/lib/quicdesk-host".into()
}

/// The program as the unit names it (already absolute and resolved).
pub fn program_path(exe: PathBuf) -> PathBuf {
    exe
}

/// `peer service run` is the Windows service's body; here the service is a systemd unit.
pub fn run(_data_dir: &Path) -> Result<(), String> {
    Err(
        "`peer service run` is what the Windows service manager starts; on this platform the \
         service is a systemd unit: `peer service install [--system]`"
            .into(),
    )
}

/// Where the unit goes: the user's (whose home is `home`) or the system's; below `root` if
/// given.
pub fn unit_path(root: Option<&Path>, home: &Path, scope: Scope) -> PathBuf {
    let path = match scope {
        Scope::User => home.join(".config/systemd/user").join(UNIT),
        Scope::System => Path::new("/etc/systemd/system").join(UNIT),
    };
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
pub fn unit_text(program: &Path, data_dir: &Path, scope: Scope) -> Result<String, String> {
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
    if scope == Scope::System {
        return Ok(format!(
            "# Written by `peer service install --system`; `peer service uninstall --system` removes it.
[Unit]
Description=quicdesk host agent (shares whoever is logged in to this machine's graphical session)
After=network-online.target systemd-logind.service
Wants=network-online.target

[Service]
ExecStart={program} host --data-dir {data_dir} --display session
Restart=on-failure
RestartSec=2
NoNewPrivileges=yes
PrivateTmp=yes
ProtectSystem=full
ProtectHome=read-only

[Install]
WantedBy=multi-user.target
"
        ));
    }
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

/// Writes the unit and, without a root, enables and starts it. Returns what was done. The
/// caller has checked that the host is ready (`super::check_ready`).
///
/// # Errors
///
/// A path systemd cannot take, or what failed (writing the file, systemctl), each said plainly.
pub fn install(i: &Install) -> Result<String, String> {
    let text = unit_text(&i.program, &i.data_dir, i.scope)?;
    let path = unit_path(i.root.as_deref(), &i.home, i.scope);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    if i.root.is_some() {
        return Ok(format!("wrote {}", path.display()));
    }
    systemctl(i.scope, &["daemon-reload"])?;
    systemctl(i.scope, &["enable", "--now", UNIT])?;
    let user = if i.scope == Scope::User {
        " --user"
    } else {
        ""
    };
    Ok(format!(
        "wrote {} and started it; logs: journalctl{user} -u {UNIT}",
        path.display()
    ))
}

/// Stops and disables the unit (without a root) and removes its file.
///
/// # Errors
///
/// What failed, said plainly.
pub fn uninstall(root: Option<&Path>, home: &Path, scope: Scope) -> Result<String, String> {
    let path = unit_path(root, home, scope);
    if root.is_none() && path.exists() {
        systemctl(scope, &["disable", "--now", UNIT])?;
    }
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(format!("not installed ({} does not exist)", path.display()));
        }
        Err(e) => return Err(format!("{}: {e}", path.display())),
    }
    if root.is_none() {
        systemctl(scope, &["daemon-reload"])?;
    }
    Ok(format!("removed {}", path.display()))
}

/// Whether the unit is installed and, without a root, running.
pub fn status(root: Option<&Path>, home: &Path, scope: Scope) -> String {
    let path = unit_path(root, home, scope);
    if !path.exists() {
        return format!("not installed ({} does not exist)", path.display());
    }
    if root.is_some() {
        return format!("installed at {}", path.display());
    }
    let active = std::process::Command::new("systemctl")
        .args(scope_arg(scope))
        .args(["is-active", UNIT])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|e| format!("unknown (systemctl: {e})"));
    format!("installed at {}; {active}", path.display())
}

fn scope_arg(scope: Scope) -> &'static [&'static str] {
    match scope {
        Scope::User => &["--user"],
        Scope::System => &[],
    }
}

fn systemctl(scope: Scope, args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("systemctl")
        .args(scope_arg(scope))
        .args(args)
        .output()
        .map_err(|e| format!("cannot run systemctl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "systemctl {}{} failed: {} ({})",
            scope_arg(scope).join(" "),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim(),
            match scope {
                Scope::User => "is this a desktop session with a user systemd?",
                Scope::System => "a system unit needs root",
            }
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
            Scope::User,
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
                unit_text(Path::new("/usr/bin/peer"), Path::new(bad), Scope::System).is_err(),
                "{bad:?}"
            );
        }
        assert_eq!(
            unit_path(
                Some(Path::new("/scratch")),
                Path::new("/home/ann"),
                Scope::User
            ),
            Path::new("/scratch/home/ann/.config/systemd/user").join(UNIT)
        );
        assert_eq!(
            unit_path(
                Some(Path::new("/scratch")),
                Path::new("/home/ann"),
                Scope::System
            ),
            Path::new("/scratch/etc/systemd/system").join(UNIT)
        );
        let system = unit_text(
            Path::new("/usr/bin/peer"),
            Path::new("/var/lib/quicdesk-host"),
            Scope::System,
        )
        .unwrap();
        assert!(system.contains("--display session"), "{system}");
        assert!(system.contains("WantedBy=multi-user.target"), "{system}");
    }
}
