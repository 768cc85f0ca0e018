//! `cargo xtask`: project chores that plain cargo does not do.
//!
//! - `setup`: install the Debian packages the build and the tests need (root or sudo).
//! - `test`: setup, then formatting, lints and the whole test suite (what CI runs).
//! - `demo`: setup, then a live session on this machine: rendezvous on loopback, a host sharing
//!   the screen, and the viewer window (on a machine without a display, both on private Xvfb
//!   displays, with a screenshot of the viewer at the end).
//! - `bench`: setup, then the codec and capture benchmarks and end-to-end sessions, as tables.
//! - `fuzz`: coverage-guided fuzzing of every target in `fuzz/` (cargo-fuzz on stable), as a
//!   table.
//!
//! Few dependencies on purpose: std, anyhow, serde_json, and `capture` for its Xvfb helper.

mod fuzz;
mod natlab;
mod wire;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Debian packages needed to build and test (see shared platform notes).
const PACKAGES: &[&str] = &[
    "build-essential",
    "pkg-config",
    // openh264's assembly: without it encoding is ~3x slower and the build only warns.
    "nasm",
    // ffprobe reads the recorded H.264 in tests.
    "ffmpeg",
    // A virtual X display and X tools for the real-desktop tests and the demo without a display.
    "xvfb",
    "xdotool",
    "x11-utils",
    "x11-apps",
    "x11-xserver-utils",
    "xterm",
    "imagemagick",
    // winit/wgpu load X11 and Vulkan at run time; lavapipe renders without a GPU.
    "mesa-vulkan-drivers",
    "libvulkan1",
    "libxkbcommon-x11-0",
    // STUN interop: coturn's client queries our responder, its server answers our client.
    "coturn",
    // The NAT lab: network namespaces, NAT rules, delay and loss.
    "iproute2",
    "nftables",
    "ethtool",
    // The relay test captures the relay's packets to show they carry no plaintext.
    "tcpdump",
];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        print_help();
        bail!("no command given");
    };
    let rest = &args[1..];
    // `cargo xtask nat-lab --help` asks for help, not for a run that fails on the flag.
    // (Not past `--`: what follows is for the tools a command runs.)
    if rest
        .iter()
        .take_while(|a| *a != "--")
        .any(|a| a == "--help" || a == "-h")
    {
        if cmd == "fuzz" {
            eprintln!("{}", fuzz::USAGE);
        } else {
            print_help();
        }
        return Ok(());
    }
    match cmd.as_str() {
        "setup" => setup(),
        "test" => test(rest),
        "demo" => demo(rest),
        "bench" => bench(rest),
        "fuzz" => fuzz::fuzz(rest),
        "attack" => attack(rest),
        "nat-lab" => {
            setup()?;
            natlab::nat_lab(rest)
        }
        // Internal: the NAT lab's delay-and-loss wire, run inside a lab namespace.
        "netem-wire" => match rest {
            [router_if, bridge_if, router_mac, netem] => wire::run(
                router_if,
                bridge_if,
                router_mac,
                wire::Impairment::parse(netem)?,
            ),
            _ => bail!(
                "usage: xtask netem-wire ROUTER_IF BRIDGE_IF ROUTER_MAC \"delay 50ms loss 5%\""
            ),
        },
        "help" | "--help" | "-h" => {
            print_help();
            Ok(())
        }
        other => {
            print_help();
            bail!("unknown command {other:?}")
        }
    }
}

/// The attack suites (`rendezvous/tests/attack.rs`, `peer/tests/attack.rs`), one at a time so
/// their measurements are not disturbed, with what they print shown.
fn attack(rest: &[String]) -> Result<()> {
    setup()?;
    run(cargo()
        .args(["test", "-p", "rendezvous", "--test", "attack"])
        .args(["-p", "peer", "--test", "attack"])
        .args(rest)
        .args(["--", "--nocapture", "--test-threads=1"]))
}

fn print_help() {
    eprintln!(
        "cargo xtask <command>

commands:
  setup    install the Debian packages the build and tests need (needs root or sudo)
  test     setup + cargo fmt --check + clippy -D warnings + the whole test suite, then a
           coverage-guided run of every fuzz target (20 s each)
  demo     setup + a live session on this machine: rendezvous on loopback, a host sharing the
           screen, the viewer window; without a display both run on private Xvfb displays and
           screenshots land in target/demo (demo --seconds N to change the length, default 20)
  bench    setup + codec benchmarks (criterion) + an end-to-end session, as a table
  attack   the hostile clients of the security suite (raw UDP, raw QUIC, a hostile host, a man in
           the middle) against the rendezvous, the relay, a host and a controller, with what each
           measures printed (amplification per service, memory under a pre-auth flood, ...);
           also part of `test`
  nat-lab  setup + rendezvous, host and controller behind nftables NATs in network namespaces
           (root), for every pair of NAT kinds; prints the matrix. Options: --pairs
           host:controller,... (kinds: none, cone, port-restricted, symmetric, symmetric-seq,
           blocked), --seconds N, --netem \"delay 50ms loss 5%\" (on the host's internet link,
           both ways), --cut-direct-after S (drop all traffic between the peers S seconds in),
           --ci (the pairs and the lossy run the test suite requires)
  fuzz     coverage-guided fuzzing of the targets in fuzz/ (cargo-fuzz on stable, installed
           into ~/.cache/quicdesk): [--minutes N | --seconds N] [--runs N] [--write-seeds]
           [TARGET...]; prints executions, exec/s and coverage per target (fuzz --help)"
    );
}

fn root() -> PathBuf {
    // xtask lives one level below the workspace root
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent directory")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root());
    c
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("+ {cmd:?}");
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn setup() -> Result<()> {
    if !Path::new("/usr/bin/dpkg-query").exists() {
        bail!(
            "setup supports Debian/Ubuntu (dpkg and apt). On other systems install the \
             equivalents of: {}",
            PACKAGES.join(" ")
        );
    }
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        eprintln!("setup: all {} system packages present", PACKAGES.len());
        return Ok(());
    }
    eprintln!("setup: installing {}", missing.join(" "));
    let sudo = !is_root();
    let apt = |args: &[&str]| -> Command {
        let mut c = if sudo {
            let mut c = Command::new("sudo");
            c.arg("apt-get");
            c
        } else {
            Command::new("apt-get")
        };
        c.env("DEBIAN_FRONTEND", "noninteractive").args(args);
        c
    };
    run(&mut apt(&["update", "-q"])).context("apt-get update (setup needs root or sudo)")?;
    let mut install = apt(&["install", "-y", "-q", "--no-install-recommends"]);
    install.args(&missing);
    run(&mut install).context("apt-get install")?;
    if missing.contains(&"nasm") {
        // openh264 silently builds without assembly when nasm was missing at its first build.
        let _ = cargo().args(["clean", "-p", "openh264-sys2"]).status();
    }
    Ok(())
}

fn test(rest: &[String]) -> Result<()> {
    setup()?;
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(cargo()
        .args(["test", "--workspace", "--no-fail-fast"])
        .args(rest))?;
    cli_smoke()?;
    eprintln!("\n== NAT lab: the pairs that must connect ==");
    natlab::nat_lab(&["--ci".to_owned()])?;
    fuzz::ci()
}

/// The programs as a user runs them: rendezvous, `peer host`, `peer connect --headless` with an
/// input script, then checks on what came out.
fn cli_smoke() -> Result<()> {
    eprintln!("\n== command-line session on loopback ==");
    let s = loopback_session(
        &Plan {
            profile: "debug",
            seconds: 4,
            share: Share::Synthetic("640x360"),
            view: View::Headless,
            script: Some(SMOKE_SCRIPT),
        },
        |_| Ok(()),
    )?;
    let frames = s.stats["frames_decoded"].as_u64().unwrap_or(0);
    if frames < 10 {
        bail!("the viewer decoded only {frames} frames: {}", s.stats);
    }
    if s.stats["path"] != "direct" {
        bail!("expected path direct: {}", s.stats);
    }
    for key in [
        "fps",
        "mbps",
        "latency_ms_p50",
        "latency_ms_p95",
        "time_to_first_frame_ms",
    ] {
        if !s.stats[key].is_number() {
            bail!("stats lack {key}: {}", s.stats);
        }
    }
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-show_streams", "-of", "json"])
        .arg(s.work.join("session.h264"))
        .output()
        .context("running ffprobe (installed by cargo xtask setup)")?;
    if !probe.status.success() {
        bail!(
            "ffprobe cannot read the recording: {}",
            String::from_utf8_lossy(&probe.stderr)
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&probe.stdout)?;
    let st = &v["streams"][0];
    if st["codec_name"] != "h264" || st["width"] != 640 || st["height"] != 360 {
        bail!("ffprobe sees an unexpected stream: {st}");
    }
    let log = std::fs::read_to_string(s.work.join("input.log"))
        .context("reading the host's input log")?;
    // move, click (2), wheel, key (2), text
    let lines = log.lines().count();
    if lines != 7 || !log.contains("smoke test") {
        bail!("host received {lines} input events, expected 7:\n{log}");
    }
    eprintln!("command-line session: {frames} frames, recording and input log check out");
    std::fs::remove_dir_all(&s.work).ok();
    Ok(())
}

/// A child process killed when dropped, so a failing demo leaves nothing behind.
struct Guard(Child, &'static str);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            eprintln!("stopping {}", self.1);
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_udp_port() -> Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts a process whose stdout lines are sent to a channel (and echoed with a prefix).
fn spawn_lines(cmd: Command, name: &'static str) -> Result<(Guard, mpsc::Receiver<String>)> {
    spawn_lines_to(cmd, name, Stdio::inherit())
}

/// [`spawn_lines`] with the process's stderr (its log) going to `stderr`.
fn spawn_lines_to(
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

fn wait_line(rx: &mpsc::Receiver<String>, prefix: &str, within: Duration) -> Result<String> {
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

struct Session {
    stats: serde_json::Value,
    /// Where the recording, stats, input log and data dirs are.
    work: PathBuf,
}

const SMOKE_SCRIPT: &str =
    "wait 300ms\nmove 0.25 0.75\nclick left\nwheel 0 -2\nkey KeyQ\ntext smoke test\n";

/// What the host shares in a scripted session.
enum Share<'a> {
    /// `--source synthetic --size WxH`, with the input it receives logged to `input.log`.
    Synthetic(&'a str),
    /// `--source screen --display D`: the real X11 capture and input injection.
    Display(&'a str),
}

/// How the controller shows the session.
enum View<'a> {
    /// `--headless`: stats on the terminal only.
    Headless,
    /// The viewer window, on this X display.
    Window(&'a str),
}

struct Plan<'a> {
    /// Cargo profile of the binaries: "debug" or "release".
    profile: &'a str,
    seconds: u32,
    share: Share<'a>,
    view: View<'a>,
    /// An input script for the controller to send.
    script: Option<&'a str>,
}

/// The running session, for actions taken while it runs.
struct Running {
    host_pid: u32,
}

static SESSIONS: AtomicU32 = AtomicU32::new(0);

/// Rendezvous + host + controller on loopback with the binaries of `plan.profile`; runs `during`
/// once the controller has started, then waits for the controller to end the session.
fn loopback_session(
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

    let fp = rendezvous_fingerprint(&bin, &rv_dir)?;

    let mut rv = Command::new(bin.join("rendezvous"));
    rv.args(["--listen", &rv_addr, "--data-dir"]).arg(&rv_dir);
    let (_rv, rv_lines) = spawn_lines(rv, "rendezvous")?;
    wait_line(
        &rv_lines,
        "rendezvous listening on",
        Duration::from_secs(10),
    )?;

    let mut host = Command::new(bin.join("peer"));
    peer_host(&mut host, (&rv_addr, &fp), &work.join("host"));
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
    peer_connect(
        &mut ctl,
        &code,
        (&rv_addr, &fp),
        plan.seconds,
        &stats_path,
        &work.join("controller"),
    );
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
fn rendezvous_fingerprint(bin: &Path, rv_dir: &Path) -> Result<String> {
    let out = Command::new(bin.join("rendezvous"))
        .args(["fingerprint", "--data-dir"])
        .arg(rv_dir)
        .output()
        .context("running rendezvous fingerprint")?;
    if !out.status.success() {
        bail!(
            "rendezvous fingerprint failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// Adds `host`, the rendezvous `(address, fingerprint)` and the data dir to a `peer` command.
fn peer_host(cmd: &mut Command, (rv_addr, fp): (&str, &str), data_dir: &Path) {
    cmd.args([
        "host",
        "--rendezvous",
        rv_addr,
        "--rendezvous-fingerprint",
        fp,
    ])
    .arg("--data-dir")
    .arg(data_dir);
}

/// Adds `connect` for `code`, the rendezvous, a duration, the stats file and the data dir to a
/// `peer` command, which reads its password from standard input: once started, hand it over
/// with [`give_password`] (a password never goes on a command line).
fn peer_connect(
    cmd: &mut Command,
    code: &str,
    (rv_addr, fp): (&str, &str),
    seconds: u32,
    stats: &Path,
    data_dir: &Path,
) {
    cmd.args(["connect", code, "--password-stdin"])
        .stdin(Stdio::piped())
        .args(["--rendezvous", rv_addr, "--rendezvous-fingerprint", fp])
        .args(["--duration", &seconds.to_string(), "--stats-json"])
        .arg(stats)
        .arg("--data-dir")
        .arg(data_dir);
}

/// Writes the password to a started `peer connect --password-stdin`.
fn give_password(child: &mut Guard, password: &str) -> Result<()> {
    use std::io::Write;
    let mut stdin = child.0.stdin.take().context("the controller's stdin")?;
    writeln!(stdin, "{password}").context("giving the controller its password")
}

/// The code and password a starting `peer host` prints.
fn code_and_password(host_lines: &mpsc::Receiver<String>) -> Result<(String, String)> {
    let code = wait_line(host_lines, "code:", Duration::from_secs(15))?;
    let password = wait_line(host_lines, "password:", Duration::from_secs(5))?;
    Ok((code, password))
}

/// Runs an X client on `display` to completion and returns its standard output.
fn x_output(display: &str, program: &str, args: &[&str]) -> Result<String> {
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
fn x_spawn(display: &str, program: &str, args: &[&str], name: &'static str) -> Result<Guard> {
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

fn virtual_display(width: u32, height: u32) -> Result<capture::xvfb::VirtualDisplay> {
    capture::xvfb::VirtualDisplay::start(width, height)
        .context("starting Xvfb (installed by cargo xtask setup)")
}

/// CPU time (user + system) a process has used so far, in seconds.
fn cpu_seconds(pid: u32) -> Result<f64> {
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

/// Where pixel `at` of a `host_w` x `host_h` picture appears on screen in a viewer window that
/// scales it to fit, given the window's `xdotool getwindowgeometry --shell` output.
fn on_viewer(geometry: &str, at: (f64, f64), host_w: f64, host_h: f64) -> Result<(i64, i64)> {
    let field = |k: &str| -> Result<f64> {
        geometry
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .with_context(|| format!("no {k} in {geometry:?}"))?
            .trim()
            .parse::<f64>()
            .context("window geometry")
    };
    let (x, y) = (field("X=")?, field("Y=")?);
    let (w, h) = (field("WIDTH=")?, field("HEIGHT=")?);
    let scale = (w / host_w).min(h / host_h);
    let (ox, oy) = ((w - host_w * scale) / 2.0, (h - host_h * scale) / 2.0);
    Ok((
        (x + ox + at.0 * scale).round() as i64,
        (y + oy + at.1 * scale).round() as i64,
    ))
}

/// Waits for the viewer's window (title starting with "quicdesk") on `display`; its X id.
fn wait_window(display: &str, within: Duration) -> Result<String> {
    let deadline = Instant::now() + within;
    loop {
        let found = x_output(
            display,
            "xdotool",
            &["search", "--onlyvisible", "--name", "^quicdesk"],
        );
        if let Some(id) = found.ok().as_deref().and_then(|o| o.lines().next()) {
            return Ok(id.trim().to_owned());
        }
        if Instant::now() > deadline {
            bail!("the viewer window did not appear on {display} within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The demo on a machine without a display: the host shares a private Xvfb showing an xterm and
/// an xclock; the viewer window opens on a second Xvfb; the demo types a command into the xterm
/// through the viewer window and keeps screenshots of both displays.
fn demo_virtual(seconds: u32) -> Result<()> {
    let host_d = virtual_display(1280, 720)?;
    let hd = host_d.name();
    x_output(hd, "xsetroot", &["-solid", "#2e4a62"])?;
    let xterm_args = [
        "-geometry",
        "80x20+40+40",
        "-bg",
        "#fdf6e3",
        "-fg",
        "#073642",
    ];
    let _xterm = x_spawn(hd, "xterm", &xterm_args, "xterm")?;
    let clock_args = ["-geometry", "220x220+960+60", "-update", "1"];
    let _xclock = x_spawn(hd, "xclock", &clock_args, "xclock")?;
    let view_d = virtual_display(1600, 1000)?;
    let vd = view_d.name().to_owned();
    let out_dir = target_dir().join("demo");
    std::fs::create_dir_all(&out_dir)?;
    let viewer_png = out_dir.join("viewer.png");
    let host_png = out_dir.join("host.png");
    eprintln!("demo: the host shares Xvfb {hd} (xterm, xclock); the viewer opens on Xvfb {vd}");
    let s = loopback_session(
        &Plan {
            profile: "debug",
            seconds: seconds.max(10),
            share: Share::Display(hd),
            view: View::Window(&vd),
            script: None,
        },
        |_| {
            let window = wait_window(&vd, Duration::from_secs(30))?;
            std::thread::sleep(Duration::from_secs(2));
            let geo = x_output(&vd, "xdotool", &["getwindowgeometry", "--shell", &window])?;
            // A point inside the host's xterm, where the viewer shows it.
            let (x, y) = on_viewer(&geo, (300.0, 150.0), 1280.0, 720.0)?;
            x_output(&vd, "xdotool", &["windowfocus", "--sync", &window])?;
            x_output(
                &vd,
                "xdotool",
                &["mousemove", &x.to_string(), &y.to_string()],
            )?;
            std::thread::sleep(Duration::from_millis(300));
            x_output(&vd, "xdotool", &["click", "1"])?;
            let typed = [
                "type",
                "--delay",
                "40",
                "echo hello from the quicdesk viewer",
            ];
            x_output(&vd, "xdotool", &typed)?;
            x_output(&vd, "xdotool", &["key", "Return"])?;
            std::thread::sleep(Duration::from_secs(2));
            let shot = |d: &str, path: &Path| -> Result<()> {
                let path = path.to_str().context("non-UTF-8 path")?;
                x_output(d, "import", &["-window", "root", path]).map(drop)
            };
            shot(&vd, &viewer_png)?;
            shot(hd, &host_png)
        },
    )?;
    println!(
        "\nsession stats:\n{}",
        serde_json::to_string_pretty(&s.stats)?
    );
    println!(
        "screenshots: {} (the viewer window) and {} (the shared screen)",
        viewer_png.display(),
        host_png.display()
    );
    Ok(())
}

fn demo(rest: &[String]) -> Result<()> {
    let seconds = match rest {
        [] => 20,
        [flag, n] if flag == "--seconds" => n.parse().context("--seconds takes a number")?,
        _ => bail!("usage: cargo xtask demo [--seconds N]"),
    };
    setup()?;
    match std::env::var("DISPLAY") {
        Ok(d) if !d.is_empty() => {
            eprintln!("demo: sharing this display ({d}); the viewer window opens on it too");
            let s = loopback_session(
                &Plan {
                    profile: "debug",
                    seconds,
                    share: Share::Display(&d),
                    view: View::Window(&d),
                    script: None,
                },
                |_| Ok(()),
            )?;
            println!(
                "\nsession stats:\n{}",
                serde_json::to_string_pretty(&s.stats)?
            );
            Ok(())
        }
        _ => demo_virtual(seconds),
    }
}

fn criterion_median_ms(group: &str, id: &str) -> Option<f64> {
    let path = target_dir()
        .join("criterion")
        .join(group)
        .join(id)
        .join("new")
        .join("estimates.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    Some(v["median"]["point_estimate"].as_f64()? / 1e6)
}

fn bench(rest: &[String]) -> Result<()> {
    if !rest.is_empty() {
        bail!("usage: cargo xtask bench");
    }
    setup()?;
    run(cargo().args(["bench", "-p", "codec", "--bench", "codec", "--", "--noplot"]))?;
    run(cargo().args(["bench", "-p", "capture", "--bench", "x11", "--", "--noplot"]))?;
    // Direct vs relayed goodput and round-trip time; prints its own table.
    run(cargo().args(["bench", "-p", "peer", "--bench", "relay"]))?;
    let bytes: BTreeMap<String, f64> =
        std::fs::read(target_dir().join("bench-report/codec-bytes.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
    let e2e = loopback_session(
        &Plan {
            profile: "release",
            seconds: 10,
            share: Share::Synthetic("1920x1080"),
            view: View::Headless,
            script: None,
        },
        |_| Ok(()),
    )?;

    println!(
        "\n| stage | 720p median ms/frame | 1080p median ms/frame | bytes/frame 720p | bytes/frame 1080p |"
    );
    println!("|---|---|---|---|---|");
    for stage in [
        "bgra_to_i420",
        "encode",
        "decode",
        "encode_camera",
        "decode_camera",
    ] {
        let cell = |res: &str| {
            criterion_median_ms(stage, res).map_or_else(|| "n/a".to_string(), |v| format!("{v:.2}"))
        };
        let b = |res: &str| {
            bytes
                .get(&format!("{stage}/{res}"))
                .map_or_else(|| "".to_string(), |v| format!("{v:.0}"))
        };
        println!(
            "| {stage} | {} | {} | {} | {} |",
            cell("720p"),
            cell("1080p"),
            b("720p"),
            b("1080p")
        );
    }
    let (screen, still_cpu) = real_capture_sessions()?;
    println!("\nX11 capture on Xvfb (MIT-SHM), median ms:");
    println!("| what | 720p | 1080p |");
    println!("|---|---|---|");
    for (what, id) in [
        ("grab a changed screen", "grab"),
        ("tick on a still screen", "still"),
    ] {
        let cell = |res: &str| {
            criterion_median_ms("x11_capture", &format!("{id}_{res}"))
                .map_or_else(|| "n/a".to_string(), |v| format!("{v:.3}"))
        };
        println!("| {what} | {} | {} |", cell("720p"), cell("1080p"));
    }
    println!(
        "\nhost CPU with a still 1920x1080 screen shared (real capture, 30 fps ticks): {:.2}% of one core",
        still_cpu * 100.0
    );
    print_e2e("synthetic 1920x1080", &e2e.stats);
    print_e2e(
        "real X11 capture of a 1920x1080 Xvfb with a scrolling xterm",
        &screen.stats,
    );
    Ok(())
}

/// Two release sessions sharing a 1920x1080 Xvfb: one with a terminal scrolling text (the
/// end-to-end figures with real capture), one with a still screen (the host's CPU share,
/// measured from /proc between seconds 3 and 10).
fn real_capture_sessions() -> Result<(Session, f64)> {
    let busy = virtual_display(1920, 1080)?;
    let scroll = [
        "-geometry",
        "160x50+100+100",
        "-e",
        "sh",
        "-c",
        "while :; do date; ls -l /usr/bin | head -n 5; sleep 0.03; done",
    ];
    let _xterm = x_spawn(busy.name(), "xterm", &scroll, "xterm")?;
    let screen = loopback_session(
        &Plan {
            profile: "release",
            seconds: 10,
            share: Share::Display(busy.name()),
            view: View::Headless,
            script: None,
        },
        |_| Ok(()),
    )?;
    drop(busy);

    let still = virtual_display(1920, 1080)?;
    x_output(still.name(), "xsetroot", &["-solid", "#404850"])?;
    let mut share = 0.0;
    loopback_session(
        &Plan {
            profile: "release",
            seconds: 11,
            share: Share::Display(still.name()),
            view: View::Headless,
            script: None,
        },
        |r| {
            std::thread::sleep(Duration::from_secs(3));
            let (t0, c0) = (Instant::now(), cpu_seconds(r.host_pid)?);
            std::thread::sleep(Duration::from_secs(7));
            share = (cpu_seconds(r.host_pid)? - c0) / t0.elapsed().as_secs_f64();
            Ok(())
        },
    )?;
    Ok((screen, share))
}

fn print_e2e(what: &str, s: &serde_json::Value) {
    println!("\nend-to-end on loopback, {what}, release, 10 s:");
    println!("| fps | Mbit/s | latency p50 ms | latency p95 ms | time to first frame ms | path |");
    println!("|---|---|---|---|---|---|");
    let f = |k: &str| {
        s[k].as_f64()
            .map_or_else(|| "n/a".into(), |v| format!("{v:.1}"))
    };
    println!(
        "| {} | {} | {} | {} | {} | {} |",
        f("fps"),
        f("mbps"),
        f("latency_ms_p50"),
        f("latency_ms_p95"),
        f("time_to_first_frame_ms"),
        s["path"].as_str().unwrap_or("?")
    );
}
