//! Scripted sessions on loopback (rendezvous, `peer host`, `peer connect`) for the demo, the
//! benches and the command-line check of `test`, and the `peer` command lines the NAT lab
//! shares with them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::proc::{Guard, cargo, free_udp_port, run, spawn_lines, target_dir, wait_line};

/// What a finished session left: its stats and its working directory.
pub struct Session {
    pub stats: serde_json::Value,
    /// Where the recording, stats, input log and data dirs are.
    pub work: PathBuf,
}

/// What the host shares in a scripted session.
pub enum Share<'a> {
    /// `--source synthetic --size WxH`, with the input it receives logged to `input.log`.
    Synthetic(&'a str),
    /// `--source screen --display D`: the real X11 capture and input injection.
    Display(&'a str),
}

/// How the controller shows the session.
pub enum View<'a> {
    /// `--headless`: stats on the terminal only.
    Headless,
    /// The viewer window, on this X display.
    Window(&'a str),
}

/// A scripted session to run.
pub struct Plan<'a> {
    /// Cargo profile of the binaries: "debug" or "release".
    pub profile: &'a str,
    pub seconds: u32,
    pub share: Share<'a>,
    pub view: View<'a>,
    /// An input script for the controller to send.
    pub script: Option<&'a str>,
}

/// The running session, for actions taken while it runs.
pub struct Running {
    pub host_pid: u32,
}

static SESSIONS: AtomicU32 = AtomicU32::new(0);

/// Rendezvous + host + controller on loopback with the binaries of `plan.profile`; runs `during`
/// once the controller has started, then waits for the controller to end the session.
pub fn loopback_session(
    plan: &Plan<'_>,
    during: impl FnOnce(&Running) -> Result<()>,
) -> Result<Session> {
    let mut build = cargo();
    build.args(["build", "-p", "rendezvous", "-p", "peer", "--bins"]);
    if plan.profile == "release" {
        build.arg("--release");
    }
    run(&mut build)?;
    let bin = target_dir().join(plan.profile);
    let work = std::env::temp_dir().join(format!(
        "quicdesk-demo-{}-{}",
        std::process::id(),
        SESSIONS.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&work)?;
    let rv_dir = work.join("rendezvous");
    let port = free_udp_port()?;
    let rv_addr = format!("127.0.0.1:{port}");

    let invite = rendezvous_invite(&bin, &rv_dir, &rv_addr)?;

    let mut rv = Command::new(bin.join("rendezvous"));
    rv.args(["--listen", &rv_addr, "--data-dir"]).arg(&rv_dir);
    let (_rv, rv_lines) = spawn_lines(rv, "rendezvous")?;
    wait_line(
        &rv_lines,
        "rendezvous listening on",
        Duration::from_secs(10),
    )?;

    // Each peer joins with the operator's invite, then needs no rendezvous flags.
    let (host_dir, ctl_dir) = (work.join("host"), work.join("controller"));
    peer_join(Command::new(bin.join("peer")), &invite, &host_dir)?;
    peer_join(Command::new(bin.join("peer")), &invite, &ctl_dir)?;
    let mut host = Command::new(bin.join("peer"));
    peer_host(&mut host, &host_dir);
    match plan.share {
        Share::Synthetic(size) => {
            host.args(["--source", "synthetic", "--size", size])
                .arg("--input-log")
                .arg(work.join("input.log"));
        }
        Share::Display(display) => {
            host.args(["--source", "screen", "--display", display]);
        }
    }
    let (host, host_lines) = spawn_lines(host, "host")?;
    let (code, password) = code_and_password(&host_lines)?;

    let stats_path = work.join("stats.json");
    let mut ctl = Command::new(bin.join("peer"));
    peer_connect(&mut ctl, &code, plan.seconds, &stats_path, &ctl_dir);
    ctl.args(["--record"]).arg(work.join("session.h264"));
    match plan.view {
        View::Headless => {
            ctl.arg("--headless");
        }
        View::Window(display) => {
            ctl.env("DISPLAY", display);
        }
    }
    if let Some(script) = plan.script {
        let path = work.join("input.script");
        std::fs::write(&path, script)?;
        ctl.arg("--input-script").arg(path);
    }
    let (mut ctl, _ctl_lines) = spawn_lines(ctl, "viewer")?;
    give_password(&mut ctl, &password)?;
    during(&Running {
        host_pid: host.0.id(),
    })?;
    let status = ctl.0.wait()?;
    if !status.success() {
        bail!("the viewer failed ({status})");
    }
    let stats: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&stats_path).with_context(|| format!("reading {}", stats_path.display()))?,
    )?;
    eprintln!("recording and stats kept in {}", work.display());
    Ok(Session { stats, work })
}

/// The fingerprint of the rendezvous whose data dir is `rv_dir` (its key is made if needed).
pub fn rendezvous_invite(bin: &Path, rv_dir: &Path, rv_addr: &str) -> Result<String> {
    let out = Command::new(bin.join("rendezvous"))
        .args(["invite", "--address", rv_addr, "--data-dir"])
        .arg(rv_dir)
        .output()
        .context("running rendezvous invite")?;
    if !out.status.success() {
        bail!(
            "rendezvous invite failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// Runs `cmd` (a `peer` program, perhaps inside a namespace) as `peer join INVITE` for the
/// data directory `data_dir`, as a user does once before anything else.
pub fn peer_join(mut cmd: Command, invite: &str, data_dir: &Path) -> Result<()> {
    let out = cmd
        .args(["join", invite, "--data-dir"])
        .arg(data_dir)
        .output()
        .context("running peer join")?;
    if !out.status.success() {
        bail!("peer join failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Adds `host` and the data dir (which `peer join` gave its rendezvous) to a `peer` command.
pub fn peer_host(cmd: &mut Command, data_dir: &Path) {
    cmd.arg("host").arg("--data-dir").arg(data_dir);
}

/// Adds `connect` for `code`, a duration, the stats file and the data dir (which `peer join`
/// gave its rendezvous) to a `peer` command, which reads its password from standard input: once
/// started, hand it over with [`give_password`] (a password never goes on a command line).
pub fn peer_connect(cmd: &mut Command, code: &str, seconds: u32, stats: &Path, data_dir: &Path) {
    cmd.args(["connect", code, "--password-stdin"])
        .stdin(Stdio::piped())
        .args(["--duration", &seconds.to_string(), "--stats-json"])
        .arg(stats)
        .arg("--data-dir")
        .arg(data_dir);
}

/// Writes the password to a started `peer connect --password-stdin`.
pub fn give_password(child: &mut Guard, password: &str) -> Result<()> {
    use std::io::Write;
    let mut stdin = child.0.stdin.take().context("the controller's stdin")?;
    writeln!(stdin, "{password}").context("giving the controller its password")
}

/// The code and password a starting `peer host` prints.
pub fn code_and_password(host_lines: &mpsc::Receiver<String>) -> Result<(String, String)> {
    let code = wait_line(host_lines, "code:", Duration::from_secs(15))?;
    let password = wait_line(host_lines, "password:", Duration::from_secs(5))?;
    Ok((code, password))
}
