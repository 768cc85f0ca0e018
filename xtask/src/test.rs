//! `cargo xtask test` (what CI runs: lints, the test suite, a command-line session, the NAT
//! lab's CI pairs, a short fuzz run, the container image's checks and the Windows build's tests
//! under Wine) and `cargo xtask attack` (the hostile suites alone).

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::loopback::{Plan, Share, View, loopback_session};
use crate::proc::{cargo, run};
use crate::setup::setup;
use crate::{container, fuzz, natlab, windows};

pub fn test(rest: &[String]) -> Result<()> {
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
    fuzz::ci()?;
    eprintln!("\n== the rendezvous's container image ==");
    container::test()?;
    eprintln!("\n== Windows: the build and its tests under Wine ==");
    windows::test(&[])
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

const SMOKE_SCRIPT: &str =
    "wait 300ms\nmove 0.25 0.75\nclick left\nwheel 0 -2\nkey KeyQ\ntext smoke test\n";

/// The attack suites (`rendezvous/tests/attack.rs`, `peer/tests/attack.rs`), one at a time so
/// their measurements are not disturbed, with what they print shown.
pub fn attack(rest: &[String]) -> Result<()> {
    setup()?;
    run(cargo()
        .args(["test", "-p", "rendezvous", "--test", "attack"])
        .args(["-p", "peer", "--test", "attack"])
        .args(rest)
        .args(["--", "--nocapture", "--test-threads=1"]))
}
