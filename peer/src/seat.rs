//! `peer host --display session`: a host that follows whoever is logged in to the machine's
//! graphical session, for the system service that starts at boot, before anyone logs in.
//!
//! ```text
//!  every few seconds: loginctl list-sessions / show-session  ──►  active_x11(...)  (pure)
//!      no graphical session ──► no host running (nothing to share yet)
//!      a new one (display, its X authority file) ──► (re)start `peer host --display :N`
//!                                                  with DISPLAY and XAUTHORITY set for it
//! ```
//!
//! The parsing and choice are pure functions over `loginctl`'s `KEY=VALUE` output and a file
//! test, so they are tested on fixtures; the driver only runs `loginctl` and the child. The
//! child is this same program, so a logout (the X server gone) or a switch of user ends it and
//! the next one starts for the new session. It needs read access to the session user's X
//! authority file (the system unit runs as root).
//!
//! What it does not do: Wayland sessions (no X display to capture), several seats (seat0's
//! active session only), or sharing the login screen itself (a greeter is taken only when no
//! user session is active).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tracing::{info, warn};

/// A graphical session `loginctl` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub user: String,
    pub uid: u32,
    /// The X display, e.g. `:0`.
    pub display: String,
    /// `user`, `greeter`, ...
    pub class: String,
    /// The session's leader process (its environment may name the X authority file).
    pub leader: Option<u32>,
}

/// The sessions in `loginctl show-session ID... -p Id -p Name -p User -p Type -p Display -p
/// Active -p Class -p Seat` output (blocks of `KEY=VALUE`, separated by blank lines) that are
/// active X11 sessions with a display on seat0.
pub fn active_x11(show: &str) -> Vec<Session> {
    let mut out = Vec::new();
    for block in show.split("\n\n") {
        let get = |k: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
                .unwrap_or("")
                .trim()
        };
        let display = get("Display");
        let ok = get("Active") == "yes"
            && get("Type") == "x11"
            && matches!(get("Seat"), "seat0" | "")
            && display.starts_with(':')
            && display[1..]
                .split('.')
                .next()
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        let Ok(uid) = get("User").parse::<u32>() else {
            continue;
        };
        if ok {
            out.push(Session {
                id: get("Id").to_owned(),
                user: get("Name").to_owned(),
                uid,
                display: display.to_owned(),
                class: get("Class").to_owned(),
                leader: get("Leader").parse().ok(),
            });
        }
    }
    out
}

/// The session to share: a user's session before a greeter's.
pub fn choose(sessions: &[Session]) -> Option<&Session> {
    sessions
        .iter()
        .find(|s| s.class == "user")
        .or_else(|| sessions.first())
}

/// The `XAUTHORITY` in a process's environment (`/proc/PID/environ`'s bytes).
pub fn xauthority_in_environ(environ: &[u8]) -> Option<PathBuf> {
    environ
        .split(|&b| b == 0)
        .find_map(|kv| kv.strip_prefix(b"XAUTHORITY="))
        .and_then(|v| std::str::from_utf8(v).ok())
        .filter(|v| v.starts_with('/'))
        .map(PathBuf::from)
}

/// Where a session user's X authority file may be (the first that `exists` wins): the one the
/// session's leader was given (`leader_env`), GDM's, the home directory's `.Xauthority` (from
/// `passwd`), LightDM's.
pub fn xauthority(
    s: &Session,
    leader_env: Option<PathBuf>,
    passwd: &str,
    exists: impl Fn(&Path) -> bool,
) -> Option<PathBuf> {
    let home = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 6 && f[0] == s.user && f[2] == s.uid.to_string()).then(|| PathBuf::from(f[5]))
    });
    let mut candidates: Vec<PathBuf> = leader_env.into_iter().collect();
    candidates.push(PathBuf::from(format!("/run/user/{}/gdm/Xauthority", s.uid)));
    if let Some(h) = home {
        candidates.push(h.join(".Xauthority"));
    }
    candidates.push(PathBuf::from(format!("/run/lightdm/{}/xauthority", s.user)));
    candidates.into_iter().find(|p| exists(p))
}

fn loginctl(args: &[&str]) -> Option<String> {
    let out = Command::new("loginctl").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The session to share now, with its X authority file (if one was found), by asking
/// `loginctl`.
pub fn current() -> Option<(Session, Option<PathBuf>)> {
    let list = loginctl(&["list-sessions", "--no-legend", "--no-pager"])?;
    let ids: Vec<&str> = list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|id| id.bytes().all(|b| b.is_ascii_alphanumeric()))
        .collect();
    if ids.is_empty() {
        return None;
    }
    let mut args = vec!["show-session"];
    args.extend(ids);
    for p in [
        "Id", "Name", "User", "Type", "Display", "Active", "Class", "Seat", "Leader",
    ] {
        args.extend(["-p", p]);
    }
    let show = loginctl(&args)?;
    let sessions = active_x11(&show);
    let s = choose(&sessions)?.clone();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let leader_env = s
        .leader
        .and_then(|pid| std::fs::read(format!("/proc/{pid}/environ")).ok())
        .and_then(|e| xauthority_in_environ(&e));
    let auth = xauthority(&s, leader_env, &passwd, Path::exists);
    Some((s, auth))
}

/// How often the session is looked at.
pub const POLL: Duration = Duration::from_secs(3);

/// Runs the host for whichever session is active, forever: `host(display)` makes the child's
/// command (this program's `host` with `--display DISPLAY`); it is started with `DISPLAY` and
/// `XAUTHORITY` set, restarted when the session changes or it ends, stopped when no session is
/// left.
pub async fn follow(host: impl Fn(&str) -> Command) -> ! {
    let mut running: Option<((Session, Option<PathBuf>), tokio::process::Child)> = None;
    loop {
        let now = tokio::task::spawn_blocking(current).await.ok().flatten();
        let same = matches!((&running, &now), (Some((a, _)), Some(b)) if a == b);
        let exited = match &mut running {
            Some((_, child)) => child.try_wait().ok().flatten().is_some(),
            None => false,
        };
        if !same || exited {
            if let Some((_, mut child)) = running.take() {
                let _ = child.kill().await;
            }
            match now {
                Some((s, auth)) => {
                    info!(session = %s.id, user = %s.user, display = %s.display, xauthority = ?auth, "sharing the graphical session");
                    let mut cmd = host(&s.display);
                    cmd.env("DISPLAY", &s.display);
                    if let Some(a) = &auth {
                        cmd.env("XAUTHORITY", a);
                    }
                    match tokio::process::Command::from(cmd)
                        .kill_on_drop(true)
                        .spawn()
                    {
                        Ok(child) => running = Some(((s, auth), child)),
                        Err(e) => warn!("cannot start the host for the session: {e}"),
                    }
                }
                None => info!("no graphical session: waiting for someone to log in"),
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The command line `argv` (without the program) with its `--display` replaced by `display`
/// (added when the display came from the configuration file).
pub fn with_display(argv: &[std::ffi::OsString], display: &str) -> Vec<std::ffi::OsString> {
    let mut out = Vec::with_capacity(argv.len() + 2);
    let mut skip = false;
    for a in argv {
        if skip {
            skip = false;
            continue;
        }
        match a.to_str() {
            Some("--display") => skip = true,
            Some(s) if s.starts_with("--display=") => {}
            _ => out.push(a.clone()),
        }
    }
    out.extend(["--display".into(), display.into()]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOW: &str = "Id=c1\nName=gdm\nUser=120\nType=x11\nDisplay=:1024\nActive=no\nClass=greeter\nSeat=seat0\n\n\
Id=2\nName=ann\nUser=1000\nType=x11\nDisplay=:0\nActive=yes\nClass=user\nSeat=seat0\n\n\
Id=5\nName=bob\nUser=1001\nType=wayland\nDisplay=\nActive=yes\nClass=user\nSeat=seat0\n\n\
Id=7\nName=eve\nUser=1002\nType=x11\nDisplay=:0;rm -rf /\nActive=yes\nClass=user\nSeat=seat0\n\n\
Id=9\nName=tty\nUser=1003\nType=tty\nDisplay=\nActive=yes\nClass=user\nSeat=\n";

    #[test]
    fn the_active_x11_user_session_is_chosen_and_odd_displays_are_not() {
        let s = active_x11(SHOW);
        assert_eq!(s.len(), 1, "{s:?}");
        let chosen = choose(&s).unwrap();
        assert_eq!(
            (chosen.user.as_str(), chosen.uid, chosen.display.as_str()),
            ("ann", 1000, ":0")
        );
        // Only a greeter: it is taken (the login screen).
        let greeter = SHOW.replacen("Active=no", "Active=yes", 1);
        let s = active_x11(&greeter);
        assert_eq!(choose(&s).unwrap().user, "ann");
        assert_eq!(choose(&s[..1]).unwrap().class, "greeter");
        assert!(active_x11("").is_empty());
        assert!(active_x11("garbage\n\n=\n\nUser=x").is_empty());
    }

    #[test]
    fn the_child_gets_the_sessions_display() {
        let argv: Vec<std::ffi::OsString> = ["host", "--display", "session", "--data-dir", "/d"]
            .iter()
            .map(Into::into)
            .collect();
        assert_eq!(
            with_display(&argv, ":0"),
            ["host", "--data-dir", "/d", "--display", ":0"]
        );
        let eq: Vec<std::ffi::OsString> = ["host", "--display=session"]
            .iter()
            .map(Into::into)
            .collect();
        assert_eq!(with_display(&eq, ":1"), ["host", "--display", ":1"]);
    }

    #[test]
    fn the_authority_file_is_looked_for_where_display_managers_put_it() {
        let s = &active_x11(SHOW)[0];
        let passwd = "root:x:0:0::/root:/bin/sh\nann:x:1000:1000::/home/ann:/bin/bash\n";
        let gdm = Path::new("/run/user/1000/gdm/Xauthority");
        assert_eq!(
            xauthority(s, None, passwd, |p| p == gdm).as_deref(),
            Some(gdm)
        );
        let home = Path::new("/home/ann/.Xauthority");
        assert_eq!(
            xauthority(s, None, passwd, |p| p == home).as_deref(),
            Some(home)
        );
        assert_eq!(xauthority(s, None, passwd, |_| false), None);
        // The leader's own, first.
        let env = b"HOME=/home/ann\0XAUTHORITY=/tmp/xauth-ann\0LANG=C\0";
        let leader = xauthority_in_environ(env);
        assert_eq!(leader.as_deref(), Some(Path::new("/tmp/xauth-ann")));
        assert_eq!(
            xauthority(s, leader, passwd, |_| true).as_deref(),
            Some(Path::new("/tmp/xauth-ann"))
        );
        assert_eq!(xauthority_in_environ(b"XAUTHORITY=relative\0"), None);
        // A passwd line for another uid with the same name is not trusted for the home.
        let spoof = "ann:x:0:0::/root:/bin/sh\n";
        assert_eq!(
            xauthority(s, None, spoof, |p| p == Path::new("/root/.Xauthority")),
            None
        );
    }
}
