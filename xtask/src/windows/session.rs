//! Whole sessions across the platforms, each with a Linux rendezvous on loopback:
//!
//! - [`windows_host`]: `peer.exe host` under Wine shares the Wine desktop (GDI capture) and
//!   performs input with SendInput; a Linux `peer connect --headless` decodes its frames and
//!   clicks into a Wine Notepad, types text, then saves it with Ctrl+S: the saved file proves
//!   that the pointer, the scan-code keys and the Unicode text all arrived.
//! - [`windows_viewer`]: `peer.exe connect` under Wine shows a Linux host's screen in its
//!   window (wgpu on Wine's Vulkan); a click and keys typed into the window with xdotool
//!   (its pointer and keyboard capture) reach the Linux host, which logs what it received.
//!
//! The two sides share nothing but loopback UDP and the files the check reads. Screenshots of
//! the Wine desktop land in `target/windows/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use capture::xvfb::VirtualDisplay;

use super::Chroot;
use super::wine::{Wine, windows_path};
use crate::loopback::{code_and_password, give_password, peer_join, rendezvous_invite};
use crate::proc::{Guard, free_udp_port, spawn_lines, target_dir, wait_line, x_output};

/// `peer.exe` as the chroot sees it.
pub const PEER_EXE: &str = "/build/target/x86_64-pc-windows-gnu/debug/peer.exe";

/// What the controller types into the Windows host's Notepad.
const TYPED: &str = "quicdesk typed this on Windows";

/// A working directory in the chroot's /tmp: (path inside, path on the host).
pub(super) fn work_dir(c: &Chroot, name: &str) -> Result<(String, PathBuf)> {
    let inside = format!("/tmp/quicdesk-{name}-{}", std::process::id());
    let host = c.path(&inside);
    let _ = std::fs::remove_dir_all(&host);
    std::fs::create_dir_all(&host)?;
    Ok((inside, host))
}

/// A Linux rendezvous on a free loopback port: the guard and its invite.
pub(super) fn rendezvous(bin: &Path, dir: &Path) -> Result<(Guard, String)> {
    let addr = format!("127.0.0.1:{}", free_udp_port()?);
    let invite = rendezvous_invite(bin, dir, &addr)?;
    let mut rv = Command::new(bin.join("rendezvous"));
    rv.args(["--listen", &addr, "--data-dir"]).arg(dir);
    let (guard, lines) = spawn_lines(rv, "rendezvous")?;
    wait_line(&lines, "rendezvous listening on", Duration::from_secs(10))?;
    Ok((guard, invite))
}

pub(super) fn screenshot(x: &VirtualDisplay, name: &str) {
    let dir = target_dir().join("windows");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(name);
    match x_output(
        x.name(),
        "import",
        &["-window", "root", &path.to_string_lossy()],
    ) {
        Ok(_) => eprintln!("screenshot: {}", path.display()),
        Err(e) => eprintln!("no screenshot {name}: {e}"),
    }
}

pub(super) fn stats(path: &Path) -> Result<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(path).with_context(|| format!("{}", path.display()))?)
        .with_context(|| format!("parsing {}", path.display()))
}

pub(super) fn frames(stats: &serde_json::Value) -> u64 {
    stats["frames_decoded"].as_u64().unwrap_or(0)
}

/// `peer.exe join INVITE` for the data directory `dir` (a Windows path).
fn wine_join(wine: &Wine<'_>, invite: &str, dir: &str) -> Result<()> {
    wine.output(
        PEER_EXE,
        &["join", invite, "--data-dir", dir],
        Duration::from_secs(60),
    )
    .context("peer.exe join")
    .map(drop)
}

/// A Linux `peer connect CODE --headless` that joins first, runs `script` for `seconds` and
/// writes `work/stats.json`: its guard (the password, if any, already given) and the stats'
/// path.
fn linux_controller(
    linux: &Path,
    work: &Path,
    invite: &str,
    code: &str,
    password: Option<&str>,
    script: &str,
    seconds: u32,
) -> Result<(Guard, PathBuf)> {
    std::fs::write(work.join("input.script"), script)?;
    let ctl_dir = work.join("controller");
    peer_join(Command::new(linux.join("peer")), invite, &ctl_dir)?;
    let stats_path = work.join("stats.json");
    let mut ctl = Command::new(linux.join("peer"));
    ctl.args(["connect", code, "--headless"])
        .arg(if password.is_some() {
            "--password-stdin"
        } else {
            "--no-password"
        })
        .args(["--duration", &seconds.to_string(), "--stats-json"])
        .arg(&stats_path)
        .arg("--input-script")
        .arg(work.join("input.script"))
        .arg("--data-dir")
        .arg(&ctl_dir)
        .stdin(if password.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let (mut ctl, _) = spawn_lines(ctl, "linux controller")?;
    if let Some(pw) = password {
        give_password(&mut ctl, pw)?;
    }
    Ok((ctl, stats_path))
}

/// A Windows host under Wine, a Linux controller.
pub fn windows_host(c: &Chroot, wine: &Wine<'_>, x: &VirtualDisplay, linux: &Path) -> Result<()> {
    eprintln!("\n== session: Windows host (Wine), Linux controller ==");
    let (inside, work) = work_dir(c, "winhost")?;
    let (_rv, invite) = rendezvous(linux, &work.join("rendezvous"))?;
    let host_dir = windows_path(&format!("{inside}/host"));
    wine_join(wine, &invite, &host_dir)?;

    let _notepad = Guard(
        wine.exe("notepad", &[])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting Wine's notepad")?,
        "notepad",
    );
    let id = x.wait_window("Notepad", Duration::from_secs(60))?;
    let (wx, wy, ww, wh) = x.window_geometry(&id)?;

    let host = wine.exe(
        PEER_EXE,
        &["host", "--data-dir", &host_dir, "--source", "screen"],
    );
    let (_host, host_lines) = spawn_lines(host, "windows host")?;
    let (code, password) = code_and_password(&host_lines)?;

    // The click lands in the middle of Notepad's text area; the file name goes into the Save
    // As dialog that Ctrl+S opens.
    let (sw, sh) = (1280.0, 800.0);
    let cx = (f64::from(wx) + f64::from(ww) / 2.0) / sw;
    let cy = (f64::from(wy) + f64::from(wh) / 2.0) / sh;
    let saved_inside = format!("{inside}/typed.txt");
    let script = format!(
        "wait 1500ms\nmove {cx:.4} {cy:.4}\nclick left\nwait 500ms\ntext {TYPED}\nwait 500ms\n\
         keydown ControlLeft\nkey KeyS\nkeyup ControlLeft\nwait 2000ms\ntext {}\nwait 300ms\n\
         key Enter\nwait 1500ms\n",
        windows_path(&saved_inside)
    );
    let (mut ctl, stats_path) =
        linux_controller(linux, &work, &invite, &code, Some(&password), &script, 12)?;
    let status = ctl.0.wait()?;
    screenshot(x, "windows-host.png");
    if !status.success() {
        bail!("the Linux controller failed ({status})");
    }
    let s = stats(&stats_path)?;
    if frames(&s) < 10 {
        bail!(
            "the Linux controller decoded only {} frames: {s}",
            frames(&s)
        );
    }
    let saved = c.path(&saved_inside);
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        match std::fs::read_to_string(&saved) {
            Ok(t) if !t.is_empty() => break t,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            r => bail!(
                "Notepad did not save what the controller typed ({}: {r:?}); see \
                 target/windows/windows-host.png",
                saved.display()
            ),
        }
    };
    if text.trim_start_matches('\u{feff}').trim() != TYPED {
        bail!("Notepad saved {text:?}, the controller typed {TYPED:?}");
    }
    eprintln!(
        "Windows host: {} frames decoded on Linux ({} fps), Notepad saved the typed text",
        frames(&s),
        s["fps"]
    );
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// A Linux host, the Windows viewer under Wine.
pub fn windows_viewer(c: &Chroot, wine: &Wine<'_>, x: &VirtualDisplay, linux: &Path) -> Result<()> {
    eprintln!("\n== session: Linux host, Windows viewer (Wine) ==");
    let (inside, work) = work_dir(c, "winviewer")?;
    let (_rv, invite) = rendezvous(linux, &work.join("rendezvous"))?;
    let host_dir = work.join("host");
    peer_join(Command::new(linux.join("peer")), &invite, &host_dir)?;
    let mut host = Command::new(linux.join("peer"));
    host.arg("host")
        .arg("--data-dir")
        .arg(&host_dir)
        .args(["--source", "synthetic", "--size", "640x360", "--input-log"])
        .arg(work.join("input.log"));
    let (_host, host_lines) = spawn_lines(host, "linux host")?;
    let (code, password) = code_and_password(&host_lines)?;

    let ctl_dir = windows_path(&format!("{inside}/controller"));
    wine_join(wine, &invite, &ctl_dir)?;
    let stats_inside = format!("{inside}/stats.json");
    let mut ctl = wine.exe(
        PEER_EXE,
        &[
            "connect",
            &code,
            "--password-stdin",
            "--duration",
            "12",
            "--stats-json",
            &windows_path(&stats_inside),
            "--data-dir",
            &ctl_dir,
        ],
    );
    ctl.stdin(Stdio::piped());
    let (mut ctl, _) = spawn_lines(ctl, "windows viewer")?;
    give_password(&mut ctl, &password)?;

    // The viewer window's pointer and keyboard capture: a click and keys typed into it with
    // xdotool, as a user's would be, reach the host.
    let id = x.wait_window("ISR-", Duration::from_secs(30))?;
    std::thread::sleep(Duration::from_secs(3));
    let (wx, wy, ww, wh) = x.window_geometry(&id)?;
    let (cx, cy) = (wx + ww as i32 / 2, wy + wh as i32 / 2);
    let xdo = |args: &[&str]| x_output(x.name(), "xdotool", args);
    xdo(&["mousemove", &cx.to_string(), &cy.to_string()])?;
    xdo(&["click", "1"])?;
    std::thread::sleep(Duration::from_millis(500));
    xdo(&["windowfocus", "--sync", &id])?;
    // Printable presses travel as text, the others (arrows, shortcuts) as physical keys.
    xdo(&["key", "--delay", "80", "q", "w", "e", "Left", "ctrl+a"])?;
    std::thread::sleep(Duration::from_secs(1));
    screenshot(x, "windows-viewer.png");
    let status = ctl.0.wait()?;
    if !status.success() {
        bail!("the Windows viewer failed ({status})");
    }
    let s = stats(&c.path(&stats_inside))?;
    if frames(&s) < 10 {
        bail!("the Windows viewer decoded only {} frames: {s}", frames(&s));
    }
    let log = std::fs::read_to_string(work.join("input.log")).context("the host's input log")?;
    for want in [
        "MouseMove",
        "MouseButton { button: Left, pressed: true }",
        "Text { text: \"q\" }",
        "Text { text: \"e\" }",
        "Key { key: ArrowLeft, pressed: true }",
        "Key { key: ControlLeft, pressed: true }",
        "Key { key: KeyA, pressed: true }",
        "Key { key: ControlLeft, pressed: false }",
    ] {
        if !log.contains(want) {
            bail!("the Linux host did not receive {want:?} from the Windows viewer:\n{log}");
        }
    }
    eprintln!(
        "Windows viewer: {} frames decoded under Wine ({} fps); its click and typed keys arrived",
        frames(&s),
        s["fps"]
    );
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// Attended access on Windows: `peer.exe host --approve prompt` under Wine opens its accept/deny
/// window (a `peer.exe ui prompt` child), Enter accepts, the session indicator shows while the
/// session runs, and a Linux controller that gave no password gets frames and its input in.
pub fn windows_prompt(c: &Chroot, wine: &Wine<'_>, x: &VirtualDisplay, linux: &Path) -> Result<()> {
    eprintln!("\n== attended access: Windows host (Wine) asks its user, Linux controller ==");
    let (inside, work) = work_dir(c, "winprompt")?;
    let (_rv, invite) = rendezvous(linux, &work.join("rendezvous"))?;
    let host_dir = windows_path(&format!("{inside}/host"));
    wine_join(wine, &invite, &host_dir)?;
    let input_log = format!("{inside}/input.log");
    let host = wine.exe(
        PEER_EXE,
        &[
            "host",
            "--data-dir",
            &host_dir,
            "--approve",
            "prompt",
            "--source",
            "synthetic",
            "--size",
            "640x360",
            "--input-log",
            &windows_path(&input_log),
        ],
    );
    let (_host, host_lines) = spawn_lines(host, "windows host")?;
    let code = wait_line(&host_lines, "code:", Duration::from_secs(30))?;

    let script = "wait 500ms\ntext accepted on Windows\n";
    let (mut ctl, stats_path) = linux_controller(linux, &work, &invite, &code, None, script, 5)?;

    let prompt = x.wait_window("^quicdesk: accept this connection", Duration::from_secs(30))?;
    // The prompt ignores keys for its first second (a keystroke meant for another window must
    // not answer it).
    std::thread::sleep(Duration::from_millis(1500));
    screenshot(x, "windows-prompt.png");
    x_output(x.name(), "xdotool", &["windowfocus", "--sync", &prompt])?;
    x_output(x.name(), "xdotool", &["key", "Return"])?;
    x.wait_window("^quicdesk: session", Duration::from_secs(20))
        .context("the session indicator after accepting")?;
    screenshot(x, "windows-indicator.png");
    let status = ctl.0.wait()?;
    if !status.success() {
        bail!("the Linux controller failed ({status}) after the prompt was accepted");
    }
    let s = stats(&stats_path)?;
    if frames(&s) < 10 {
        bail!(
            "the Linux controller decoded only {} frames: {s}",
            frames(&s)
        );
    }
    let log = std::fs::read_to_string(c.path(&input_log)).context("the host's input log")?;
    if !log.contains("accepted on Windows") {
        bail!("the Windows host did not perform the controller's text after accepting:\n{log}");
    }
    eprintln!(
        "Windows prompt: accepted with Enter, indicator shown, {} frames, input arrived",
        frames(&s)
    );
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
