//! Unattended access through `peer service` on Windows, under Wine, checked from outside:
//!
//! - `--system`: `peer.exe join` and `password set` for the service's default data directory
//!   (`%ProgramData%\quicdesk-host`), then `service install --system`. The host the service
//!   starts registers (its `code:` line in `host.log`); a Linux controller with the fixed
//!   password decodes frames of the Wine desktop while text is typed into a Notepad there, and
//!   a wrong password is refused with no frames. The host, killed from outside, is started
//!   again by the service, registers with the same code and serves a session again. `service
//!   status` and `sc query` say running; `uninstall` deletes the service (`sc query` and
//!   `status` no longer find it) and ends the host.
//! - Per user: `service install` writes the HKCU Run value (read back with `reg query`) and
//!   starts a host that registers; `status` reports the value; `uninstall` removes it (`reg
//!   query` fails); the host it started, which `uninstall` leaves running as documented, is
//!   ended here.
//!
//! What Wine cannot show: the logon screen before anyone logs on (Wine's user is always logged
//! on, so WTSQueryUserToken never fails with ERROR_NO_TOKEN), a second session or a session
//! switch (no session-change events), UIPI and UAC's secure desktop (no integrity levels that
//! refuse input), a user who is not an administrator, LocalSystem as an account of its own, the
//! data directory's permissions, and Explorer starting the Run value at logon. Nor the
//! controller's input through the service's host: Wine gives a process started with a desktop
//! in another window station that desktop on its main thread only, and refuses SendInput from
//! its other threads (windows_service.rs says more); so the typing comes from xdotool here.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use capture::xvfb::VirtualDisplay;

use super::Chroot;
use super::session::{PEER_EXE, frames, rendezvous, screenshot, stats, work_dir};
use super::wine::{PREFIX, Wine, windows_path};
use crate::loopback::peer_join;
use crate::proc::{Guard, x_spawn};

/// The fixed password set for both data directories, and a near miss of it.
const PASSWORD: &str = "unattended-Wine-7319-host";
const WRONG: &str = "unattended-Wine-7319-hosT";
/// The system service's data directory when none is given, as Wine names it.
const SYSTEM_DIR: &str = r"C:\ProgramData\quicdesk-host";
const RUN_KEY: &str = r"HKCU\Software\Microsoft\Windows\CurrentVersion\Run";
/// The longest any one command may take.
const LIMIT: Duration = Duration::from_secs(90);

/// Runs `cmd` (which the caller wraps in `timeout`) with `input` on its standard input and
/// its output, both streams, in the file `out`: under Wine the host that `service install`
/// starts, and its conhost, hold the pipes of whoever started `install` open for their whole
/// life, so reading a pipe to its end would wait for the host. Its status and output.
fn run(mut cmd: Command, input: Option<&str>, out: &Path) -> Result<(ExitStatus, String)> {
    let file = File::create(out)?;
    cmd.stdin(input.map_or_else(Stdio::null, |_| Stdio::piped()))
        .stdout(file.try_clone()?)
        .stderr(file);
    let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    if let (Some(line), Some(mut stdin)) = (input, child.stdin.take()) {
        writeln!(stdin, "{line}")?;
    }
    let status = child.wait()?;
    Ok((status, std::fs::read_to_string(out)?))
}

/// Wine and this test's work directory; on the way out, failed or not, both services are
/// uninstalled and the hosts of this test ended.
struct Rig<'a> {
    wine: &'a Wine<'a>,
    work: PathBuf,
    armed: bool,
}

impl Rig<'_> {
    /// `wine peer.exe ARGS...` (blank-separated), which must succeed within [`LIMIT`] and say
    /// each of `want`; its output.
    fn peer(&self, args: &str, input: Option<&str>, want: &[&str]) -> Result<String> {
        let mut all = vec!["90", "wine", PEER_EXE];
        all.extend(args.split_whitespace());
        let cmd = self.wine.command("timeout", &all);
        let (status, said) = run(cmd, input, &self.work.join("peer.out"))?;
        eprintln!("[peer.exe {args}] {}", said.trim());
        if !status.success() {
            bail!("peer.exe {args}: failed or hung ({status}):\n{said}");
        }
        match want.iter().find(|w| !said.contains(**w)) {
            Some(w) => bail!("peer.exe {args}: expected {w:?} in:\n{said}"),
            None => Ok(said),
        }
    }

    /// A Wine program (`sc`, `reg`) with blank-separated arguments: its output, or why it failed.
    fn query(&self, line: &str) -> Result<String> {
        let mut words = line.split_whitespace();
        let program = words.next().context("no program")?;
        self.wine.output(program, &words.collect::<Vec<_>>(), LIMIT)
    }

    fn clean(&self) {
        let _ = self.peer("service uninstall --system", None, &[]);
        let _ = self.peer("service uninstall", None, &[]);
        for dir in [SYSTEM_DIR, "quicdesk-winservice-"] {
            hosts(dir).into_iter().for_each(kill);
        }
    }
}

impl Drop for Rig<'_> {
    fn drop(&mut self) {
        if self.armed {
            eprintln!("service test: uninstalling both services and ending their hosts");
            self.clean();
        }
    }
}

/// Polls `f` every 200 ms until it gives something; fails saying `what` was expected.
fn wait_for<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("expected {what} within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The codes in a host's log, one `code:` line each time it registered anew (the host prints
/// it once the rendezvous has answered); waits up to 30 s for `n` of them.
fn wait_codes(log: &Path, n: usize, who: &str) -> Result<Vec<String>> {
    let read = || std::fs::read_to_string(log).unwrap_or_default();
    let what = format!("{who} to register ({n} `code:` lines in {})", log.display());
    wait_for(Duration::from_secs(30), &what, || {
        let codes: Vec<String> = (read().lines())
            .filter_map(|l| l.strip_prefix("code:").map(|c| c.trim().to_owned()))
            .collect();
        (codes.len() >= n).then_some(codes)
    })
    .with_context(|| format!("the log:\n{}", read()))
}

/// The processes whose command line contains every one of `words`: Wine gives its processes
/// the Windows command line, so they are seen in /proc as `pgrep -f` sees them.
fn processes(words: &[&str]) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let line = std::fs::read(e.path().join("cmdline")).ok()?;
            let line = String::from_utf8_lossy(&line).replace('\0', " ");
            words.iter().all(|w| line.contains(w)).then_some(pid)
        })
        .collect()
}

/// The `peer.exe host` processes for the data directory `dir`.
fn hosts(dir: &str) -> Vec<u32> {
    processes(&["peer.exe", " host ", dir])
}

/// Waits for exactly one host for `dir`, other than `not`.
fn one_host(dir: &str, not: Option<u32>, what: &str) -> Result<u32> {
    wait_for(Duration::from_secs(10), what, || match hosts(dir)[..] {
        [pid] if Some(pid) != not => Some(pid),
        _ => None,
    })
}

fn kill(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
}

/// Types into Notepad on the X display until dropped, so that the screen keeps changing. It
/// clicks into Notepad before each word: when a session starts, the host's indicator window
/// becomes the foreground window, which the keyboard follows.
fn typing(x: &VirtualDisplay, notepad: &str) -> Result<Guard> {
    let (wx, wy, ww, wh) = x.window_geometry(notepad)?;
    let (cx, cy) = (wx + ww as i32 / 2, wy + wh as i32 / 2);
    let script = format!(
        "while :; do xdotool mousemove {cx} {cy} click 1 type --delay 40 'typed '; sleep 0.1; done"
    );
    x_spawn(x.name(), "sh", &["-c", &script], "typing")
}

/// A Linux `peer connect CODE` for 4 s with `password`: whether it succeeded, what it said, the
/// frames it decoded.
fn connect(linux: &Path, work: &Path, code: &str, password: &str) -> Result<(bool, String, u64)> {
    let stats_path = work.join("stats.json");
    let _ = std::fs::remove_file(&stats_path);
    let mut cmd = Command::new("timeout");
    cmd.arg("60").arg(linux.join("peer"));
    cmd.args(["connect", code, "--password-stdin", "--headless"])
        .args(["--duration", "4", "--stats-json"])
        .arg(&stats_path)
        .arg("--data-dir")
        .arg(work.join("controller"));
    let (status, said) = run(cmd, Some(password), &work.join("controller.out"))?;
    let frames = stats(&stats_path).map_or(0, |s| frames(&s));
    eprintln!("[controller] {status}, {frames} frames:\n{}", said.trim());
    Ok((status.success(), said, frames))
}

/// A session with the fixed password while Notepad is typed into: at least 10 frames.
fn good_session(x: &VirtualDisplay, id: &str, linux: &Path, work: &Path, code: &str) -> Result<()> {
    let _typing = typing(x, id)?;
    let (ok, said, frames) = connect(linux, work, code, PASSWORD)?;
    if !ok || frames < 10 {
        bail!(
            "expected the controller with the fixed password to succeed and decode at least 10 \
             frames; ok={ok} frames={frames}:\n{said}"
        );
    }
    Ok(())
}

/// The Windows service and the per-user Run value under Wine; see the module doc.
pub fn windows_service(
    c: &Chroot,
    wine: &Wine<'_>,
    x: &VirtualDisplay,
    linux: &Path,
) -> Result<()> {
    eprintln!("\n== unattended access: peer service on Windows (Wine), Linux controller ==");
    let t = Instant::now();
    let (inside, work) = work_dir(c, "winservice")?;
    let (_rv, invite) = rendezvous(linux, &work.join("rendezvous"))?;
    let user_dir = windows_path(&format!("{inside}/user"));
    let system_host = c.path(&format!("{PREFIX}/drive_c/ProgramData/quicdesk-host"));
    let mut rig = Rig {
        wine,
        work: work.clone(),
        armed: true,
    };
    // Whatever an interrupted run left: both services, their hosts, the system's data.
    rig.clean();
    let _ = std::fs::remove_dir_all(&system_host);
    for dir in [SYSTEM_DIR, &user_dir] {
        rig.peer(&format!("join {invite} --data-dir {dir}"), None, &[])?;
        let set = format!("password set --stdin --data-dir {dir}");
        rig.peer(&set, Some(PASSWORD), &["fixed password set"])?;
    }
    let mut notepad = wine.exe("notepad", &[]);
    notepad
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _notepad = Guard(
        notepad.spawn().context("starting Wine's notepad")?,
        "notepad",
    );
    let id = x.wait_window("Notepad", Duration::from_secs(60))?;
    peer_join(
        Command::new(linux.join("peer")),
        &invite,
        &work.join("controller"),
    )?;

    // The system service, with its default data directory.
    let want = [
        "created the service quicdesk-host",
        "started it",
        SYSTEM_DIR,
    ];
    rig.peer("service install --system", None, &want)?;
    let log = system_host.join("host.log");
    let code = wait_codes(&log, 1, "the service's host")?.remove(0);
    let first = one_host(
        SYSTEM_DIR,
        None,
        "one host for the service's data directory",
    )?;
    eprintln!("the service's host registered as {code} (process {first})");
    good_session(x, &id, linux, &work, &code).context("a session with the fixed password")?;
    let (ok, said, frames) = connect(linux, &work, &code, WRONG)?;
    if ok || frames > 0 || !said.contains("wrong password") {
        bail!(
            "a wrong password: expected the controller to fail with `wrong password` and no \
             frames; ok={ok} frames={frames}:\n{said}"
        );
    }
    screenshot(x, "windows-service.png");

    // Killed from outside, the host is started again and registers with the same code.
    kill(first);
    let again = one_host(SYSTEM_DIR, Some(first), "the service to start a new host")?;
    let codes = wait_codes(&log, 2, "the restarted host")?;
    if codes.iter().any(|c| *c != code) {
        bail!("the restarted host registered as {codes:?}, expected {code} again");
    }
    eprintln!("killed the host {first}; the service started {again}, registered as {code}");
    good_session(x, &id, linux, &work, &code).context("a session after the restart")?;

    let want = [
        "installed: service quicdesk-host",
        "starts at boot",
        "; running",
    ];
    rig.peer("service status --system", None, &want)?;
    let sc = rig.query("sc query quicdesk-host")?;
    if !sc.contains("RUNNING") {
        bail!("sc query quicdesk-host: expected RUNNING in:\n{sc}");
    }
    let want = ["deleted the service quicdesk-host", "stopped it"];
    rig.peer("service uninstall --system", None, &want)?;
    if let Ok(sc) = rig.query("sc query quicdesk-host") {
        bail!("sc query quicdesk-host: expected it to fail after uninstall, got:\n{sc}");
    }
    rig.peer("service status --system", None, &["not installed"])?;
    wait_for(
        Duration::from_secs(10),
        "the service and its host to end",
        || {
            let service = processes(&["peer.exe", " service run ", SYSTEM_DIR]);
            (service.is_empty() && hosts(SYSTEM_DIR).is_empty()).then_some(())
        },
    )?;

    // Per user: the Run value, and the host `install` starts at once.
    let want = [r"wrote HKEY_CURRENT_USER\", &user_dir, "started the host"];
    rig.peer(
        &format!("service install --data-dir {user_dir}"),
        None,
        &want,
    )?;
    let query = format!("reg query {RUN_KEY} /v quicdesk-host");
    let reg = rig.query(&query)?;
    if !reg.contains(&user_dir) {
        bail!("{query}: expected the Run value to name {user_dir}:\n{reg}");
    }
    let user_code = wait_codes(&work.join("user/host.log"), 1, "the per-user host")?.remove(0);
    let user_host = one_host(&user_dir, None, "the per-user host's process")?;
    eprintln!("the per-user host registered as {user_code} (process {user_host})");
    rig.peer(
        "service status",
        None,
        &[r"installed: HKEY_CURRENT_USER\", &user_dir],
    )?;
    rig.peer("service uninstall", None, &[r"removed HKEY_CURRENT_USER\"])?;
    if let Ok(reg) = rig.query(&query) {
        bail!("{query}: expected no value after uninstall, got:\n{reg}");
    }
    rig.peer("service status", None, &["not installed"])?;
    kill(user_host);
    wait_for(Duration::from_secs(10), "the per-user host to end", || {
        hosts(&user_dir).is_empty().then_some(())
    })?;

    // The logon start as Explorer runs it: the host in a console of its own (`start`), which
    // it lets go at once, its output going to host.log instead.
    let status = wine
        .exe(
            "start",
            &["/unix", PEER_EXE, "host", "--data-dir", &user_dir],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("wine start peer.exe host")?;
    if !status.success() {
        bail!("wine start peer.exe host: {status}");
    }
    let log = work.join("user/host.log");
    let codes = wait_codes(&log, 2, "the host started in a console of its own")?;
    let text = std::fs::read_to_string(&log)?;
    if codes[1] != user_code || !text.contains("started without a terminal") {
        bail!("the host in its own console did not detach and log to host.log:\n{text}");
    }
    let detached = one_host(&user_dir, None, "the host started in its own console")?;
    kill(detached);
    wait_for(Duration::from_secs(10), "that host to end", || {
        hosts(&user_dir).is_empty().then_some(())
    })?;

    rig.armed = false;
    let _ = std::fs::remove_dir_all(&work);
    eprintln!(
        "Windows service: its host served the fixed password, refused a wrong one, came back \
         after a kill and went with the service; the Run value came and went; a host in a \
         console of its own let it go and logged to host.log ({:.0?})",
        t.elapsed()
    );
    Ok(())
}
