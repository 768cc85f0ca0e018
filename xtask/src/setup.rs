//! `cargo xtask setup`: installs the Debian packages the build, the tests, the demo and the NAT
//! lab need (apt-get, as root or through sudo).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::proc::{cargo, run};

/// Debian packages needed to build and test (see shared platform notes).
pub const PACKAGES: &[&str] = &[
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
    // The NAT lab's `--flush`: deleting a router's NAT mappings (its conntrack table).
    "conntrack",
    // The relay test captures the relay's packets to show they carry no plaintext.
    "tcpdump",
    // `systemd-analyze verify` checks the unit `peer service install` writes.
    "systemd",
    // The console's browser tests: headless Chromium driven over WebDriver.
    "chromium",
    "chromium-driver",
    // The API tests generated from the OpenAPI document (schemathesis, in a virtualenv).
    "python3-venv",
    // `cargo xtask windows` makes its Debian chroot with it, `container` its base image.
    "debootstrap",
    // `cargo xtask container`: the rendezvous's image built and run (runc: crun 1.8 refuses
    // hybrid cgroup hierarchies), its console reached with curl.
    "podman",
    "runc",
    "curl",
];

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The schemathesis release the API tests run (pinned: a new one may add checks).
pub const SCHEMATHESIS: &str = "4.32.5";

/// Makes the virtualenv with schemathesis (for `rendezvous/tests/schema.rs`) in the cache
/// directory unless it is there; the test finds it at the same place.
fn schemathesis() -> Result<()> {
    let venv = crate::fuzz::tools::cache_dir()?.join(format!("schemathesis-{SCHEMATHESIS}"));
    if venv.join("bin/schemathesis").exists() {
        return Ok(());
    }
    eprintln!(
        "setup: installing schemathesis {SCHEMATHESIS} into {}",
        venv.display()
    );
    let _ = std::fs::remove_dir_all(&venv);
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv))
        .context("python3 -m venv (python3-venv)")?;
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "-q",
        &format!("schemathesis=={SCHEMATHESIS}"),
    ]))
    .context("pip install schemathesis (from PyPI)")
}

pub fn setup() -> Result<()> {
    system_packages()?;
    schemathesis()
}

fn system_packages() -> Result<()> {
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

/// The Debian mirror this machine's apt uses (the Windows chroot and the container images use
/// the same one).
pub fn debian_mirror() -> String {
    let from_sources = std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("URIs:").map(|u| u.trim().to_string()))
        });
    let from_list = || {
        std::fs::read_to_string("/etc/apt/sources.list")
            .ok()?
            .lines()
            .find_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some("deb")).then(|| w.next().map(str::to_string))?
            })
    };
    from_sources
        .or_else(from_list)
        .filter(|m| !m.contains("security"))
        .unwrap_or_else(|| "http://deb.debian.org/debian".to_string())
}
