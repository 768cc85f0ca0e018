//! `cargo xtask demo`: a live session on this machine, on its own display or, without one, on
//! two private Xvfb displays driven through the viewer window, with screenshots.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::loopback::{Plan, Share, View, loopback_session};
use crate::proc::{target_dir, virtual_display, x_output, x_spawn};
use crate::setup::setup;

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

pub fn demo(rest: &[String]) -> Result<()> {
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
