//! `cargo xtask bench`: the criterion benches (codec, X11 capture, relay) and end-to-end
//! release sessions on loopback, printed as tables.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::loopback::{Plan, Session, Share, View, loopback_session};
use crate::proc::{cargo, cpu_seconds, run, target_dir, virtual_display, x_output, x_spawn};
use crate::setup::setup;

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

pub fn bench(rest: &[String]) -> Result<()> {
    if !rest.is_empty() {
        bail!("usage: cargo xtask bench");
    }
    setup()?;
    run(cargo().args(["bench", "-p", "codec", "--bench", "codec", "--", "--noplot"]))?;
    run(cargo().args(["bench", "-p", "capture", "--bench", "x11", "--", "--noplot"]))?;
    // Direct vs relayed goodput and round-trip time; prints its own table.
    run(cargo().args(["bench", "-p", "peer", "--bench", "relay"]))?;
    // The console with 100 000 hosts and 100 dashboards; prints its own table.
    run(cargo().args(["bench", "-p", "rendezvous", "--bench", "console"]))?;
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
