//! `cargo xtask`: project chores that plain cargo does not do.
//!
//! - `setup`: install the Debian packages the build and the tests need (root or sudo).
//! - `test`: setup, then formatting, lints and the whole test suite (what CI runs).
//! - `demo`: setup, then a live session on this machine: rendezvous on loopback, a host, and a
//!   headless controller printing stats.
//! - `bench`: setup, then the codec benchmarks and an end-to-end session, printed as a table.
//!
//! Few dependencies on purpose: std, anyhow, serde_json.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Debian packages needed to build and test (see shared platform notes).
const PACKAGES: &[&str] = &[
    "build-essential",
    "pkg-config",
    // openh264's assembly: without it encoding is ~3x slower and the build only warns.
    "nasm",
    // scrap links xcb, xcb-shm, xcb-randr.
    "libxcb1-dev",
    "libxcb-shm0-dev",
    "libxcb-randr0-dev",
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
];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        print_help();
        bail!("no command given");
    };
    let rest = &args[1..];
    match cmd.as_str() {
        "setup" => setup(),
        "test" => test(rest),
        "demo" => demo(rest),
        "bench" => bench(rest),
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

fn print_help() {
    eprintln!(
        "cargo xtask <command>

commands:
  setup    install the Debian packages the build and tests need (needs root or sudo)
  test     setup + cargo fmt --check + clippy -D warnings + the whole test suite
  demo     setup + a live session on loopback: rendezvous, host, headless controller
           (demo --seconds N to change the length, default 10)
  bench    setup + codec benchmarks (criterion) + an end-to-end session, as a table"
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
    fuzz_smoke()
}

const FUZZ_TARGETS: &[&str] = &[
    "input_decode",
    "rendezvous_messages",
    "peer_session",
    "h264_decode",
];

/// Builds the fuzz targets and gives each a short run. On stable Rust libFuzzer runs without
/// coverage guidance (plain random inputs); `cargo +nightly fuzz run T` does the real thing.
fn fuzz_smoke() -> Result<()> {
    eprintln!("\n== fuzz targets: build and a short run each ==");
    let dir = target_dir().join("fuzz");
    run(cargo()
        .args(["build", "--release", "--manifest-path", "fuzz/Cargo.toml"])
        .env("CARGO_TARGET_DIR", &dir))?;
    for t in FUZZ_TARGETS {
        run(Command::new(dir.join("release").join(t)).args(["-runs=30000", "-max_total_time=20"]))?;
    }
    Ok(())
}

/// The programs as a user runs them: rendezvous, `peer host`, `peer connect --headless` with an
/// input script, then checks on what came out.
fn cli_smoke() -> Result<()> {
    eprintln!("\n== command-line session on loopback ==");
    let s = loopback_session("debug", 4, "640x360", Some(SMOKE_SCRIPT))?;
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
fn spawn_lines(mut cmd: Command, name: &'static str) -> Result<(Guard, mpsc::Receiver<String>)> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
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

/// Rendezvous + host + headless controller on loopback, with the binaries of `profile`. With
/// `script`, the controller sends it and the host logs what it receives.
fn loopback_session(
    profile: &str,
    seconds: u32,
    size: &str,
    script: Option<&str>,
) -> Result<Session> {
    let mut build = cargo();
    build.args(["build", "-p", "rendezvous", "-p", "peer", "--bins"]);
    if profile == "release" {
        build.arg("--release");
    }
    run(&mut build)?;
    let bin = target_dir().join(profile);
    let work = std::env::temp_dir().join(format!("quicdesk-demo-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let rv_dir = work.join("rendezvous");
    let port = free_udp_port()?;
    let rv_addr = format!("127.0.0.1:{port}");

    let out = Command::new(bin.join("rendezvous"))
        .args(["fingerprint", "--data-dir"])
        .arg(&rv_dir)
        .output()
        .context("running rendezvous fingerprint")?;
    if !out.status.success() {
        bail!(
            "rendezvous fingerprint failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let fp = String::from_utf8(out.stdout)?.trim().to_string();

    let mut rv = Command::new(bin.join("rendezvous"));
    rv.args(["--listen", &rv_addr, "--data-dir"]).arg(&rv_dir);
    let (_rv, rv_lines) = spawn_lines(rv, "rendezvous")?;
    wait_line(
        &rv_lines,
        "rendezvous listening on",
        Duration::from_secs(10),
    )?;

    let mut host = Command::new(bin.join("peer"));
    host.args([
        "host",
        "--rendezvous",
        &rv_addr,
        "--rendezvous-fingerprint",
        &fp,
    ])
    .args(["--source", "synthetic", "--size", size, "--data-dir"])
    .arg(work.join("host"))
    .arg("--input-log")
    .arg(work.join("input.log"));
    let (_host, host_lines) = spawn_lines(host, "host")?;
    let code = wait_line(&host_lines, "code:", Duration::from_secs(15))?;
    let password = wait_line(&host_lines, "password:", Duration::from_secs(5))?;

    let stats_path = work.join("stats.json");
    let mut ctl = Command::new(bin.join("peer"));
    ctl.args(["connect", &code, "--password", &password, "--headless"])
        .args(["--rendezvous", &rv_addr, "--rendezvous-fingerprint", &fp])
        .args(["--duration", &seconds.to_string(), "--stats-json"])
        .arg(&stats_path)
        .args(["--record"])
        .arg(work.join("session.h264"))
        .arg("--data-dir")
        .arg(work.join("controller"));
    if let Some(script) = script {
        let path = work.join("input.script");
        std::fs::write(&path, script)?;
        ctl.arg("--input-script").arg(path);
    }
    let (mut ctl, _ctl_lines) = spawn_lines(ctl, "viewer")?;
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

fn demo(rest: &[String]) -> Result<()> {
    let seconds = match rest {
        [] => 10,
        [flag, n] if flag == "--seconds" => n.parse().context("--seconds takes a number")?,
        _ => bail!("usage: cargo xtask demo [--seconds N]"),
    };
    setup()?;
    let s = loopback_session("debug", seconds, "1280x720", None)?;
    println!(
        "\nsession stats:\n{}",
        serde_json::to_string_pretty(&s.stats)?
    );
    Ok(())
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
    let bytes: BTreeMap<String, f64> =
        std::fs::read(target_dir().join("bench-report/codec-bytes.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
    let e2e = loopback_session("release", 10, "1920x1080", None)?;

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
    let s = &e2e.stats;
    println!("\nend-to-end, loopback, synthetic 1920x1080, release, 10 s:");
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
    Ok(())
}
