//! Process helpers shared by every command: the workspace's paths and `cargo`, running and
//! spawning programs (with their output lines on a channel), X clients on a display, and what
//! a process has used.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub fn root() -> PathBuf {
    // xtask lives one level below the workspace root
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent directory")
        .to_path_buf()
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root());
    c
}

pub fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("+ {cmd:?}");
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// A child process killed when dropped, so a failing demo leaves nothing behind.
pub struct Guard(pub Child, pub &'static str);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            eprintln!("stopping {}", self.1);
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_udp_port() -> Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub fn free_tcp_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts a process whose stdout lines are sent to a channel (and echoed with a prefix).
pub fn spawn_lines(cmd: Command, name: &'static str) -> Result<(Guard, mpsc::Receiver<String>)> {
    spawn_lines_to(cmd, name, Stdio::inherit())
}

/// [`spawn_lines`] with the process's stderr (its log) going to `stderr`.
pub fn spawn_lines_to(
    mut cmd: Command,
    name: &'static str,
    stderr: Stdio,
) -> Result<(Guard, mpsc::Receiver<String>)> {
    cmd.stdout(Stdio::piped()).stderr(stderr);
    let mut child = cmd.spawn().with_context(|| format!("starting {name}"))?;
    let stdout = child.stdout.take().context("child stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("[{name}] {line}");
            if tx.send(line).is_err() {
                // nobody listens any more; keep echoing
            }
        }
    });
    Ok((Guard(child, name), rx))
}

pub fn wait_line(rx: &mpsc::Receiver<String>, prefix: &str, within: Duration) -> Result<String> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(v) = line.strip_prefix(prefix) {
                    return Ok(v.trim().to_string());
                }
            }
            Err(_) => bail!("no line starting with {prefix:?} within {within:?}"),
        }
    }
}

/// Runs an X client on `display` to completion and returns its standard output.
pub fn x_output(display: &str, program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .env("DISPLAY", display)
        .output()
        .with_context(|| format!("running {program} (installed by cargo xtask setup)"))?;
    if !out.status.success() {
        bail!(
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Starts a long-running X client on `display`, stopped when the guard drops.
pub fn x_spawn(display: &str, program: &str, args: &[&str], name: &'static str) -> Result<Guard> {
    let child = Command::new(program)
        .args(args)
        .env("DISPLAY", display)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {program} (installed by cargo xtask setup)"))?;
    Ok(Guard(child, name))
}

pub fn virtual_display(width: u32, height: u32) -> Result<capture::xvfb::VirtualDisplay> {
    capture::xvfb::VirtualDisplay::start(width, height)
        .context("starting Xvfb (installed by cargo xtask setup)")
}

/// CPU time (user + system) a process has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').context("odd /proc stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks =
        f.get(11).context("utime")?.parse::<f64>()? + f.get(12).context("stime")?.parse::<f64>()?;
    let hz: f64 = String::from_utf8(Command::new("getconf").arg("CLK_TCK").output()?.stdout)?
        .trim()
        .parse()?;
    Ok(ticks / hz)
}
