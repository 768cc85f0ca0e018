//! `cargo xtask windows`: the Windows build (x86_64-pc-windows-gnu) and its tests under Wine,
//! in a Debian chroot cached outside the checkout (see `chroot`).
//!
//! ```text
//!   windows setup   the chroot (debootstrap + packages), once; ~2 min
//!   windows build   peer.exe, rendezvous.exe (debug) and the Windows crates' test binaries
//!   windows test [lint|unit|host|viewer|prompt|service|installer...]
//!                   build, then under Wine on a private Xvfb: the Windows crates' unit tests
//!                   (GDI capture of a known window, SendInput read back, Notepad typed into),
//!                   a Windows host with a Linux controller, a Linux host with the Windows
//!                   viewer, and the installer (part of `cargo xtask test`)
//!   windows cargo   any cargo command for the Windows target, in the chroot
//! ```

mod chroot;
mod package;
mod service;
mod session;
mod wine;

use std::time::Instant;

use anyhow::{Context, Result, bail};

pub use chroot::Chroot;
use wine::Wine;

use crate::proc::{cargo as host_cargo, run, target_dir, virtual_display};

pub const TARGET: &str = "x86_64-pc-windows-gnu";

/// The crates with Windows code or tests that run there, as `-p` arguments.
const CRATES: &[&str] = &[
    "-p",
    "capture",
    "-p",
    "input",
    "-p",
    "codec",
    "-p",
    "proto",
    "-p",
    "certs",
    "-p",
    "pathagent",
    "-p",
    "peer",
];

/// The environment of every cargo run in the chroot. The standard library is built from
/// rust-src (`-Zbuild-std`, allowed on a stable compiler by RUSTC_BOOTSTRAP); its crate set
/// is always `std,test` so that building and testing share one std (a different set rebuilds
/// std and every dependency). CXXSTDLIB is empty so that openh264's build links no libstdc++
/// DLL; `.cargo/config.toml` links the static one instead.
fn cargo_env() -> Vec<(&'static str, String)> {
    vec![
        ("RUSTC_BOOTSTRAP", "1".into()),
        ("CXXSTDLIB_x86_64_pc_windows_gnu", String::new()),
        ("CARGO_TARGET_DIR", "/build/target".into()),
        ("CARGO_TERM_COLOR", "never".into()),
    ]
}

/// The packages whose sources are in the checkout (the workspace and its patched quinn-udp).
const CHECKOUT_PACKAGES: &[&str] = &[
    "capture",
    "input",
    "codec",
    "proto",
    "certs",
    "pathagent",
    "peer",
    "rendezvous",
    "quinn-udp",
];

/// The chroot's one target directory serves whichever checkout runs this (mounted at `/src`),
/// and cargo tells what changed by modification times: files of another checkout that are
/// older than the last build would pass for built. So when the checkout is not the one that
/// built last, the checkout's own packages are built again (their fingerprints removed; a
/// fresh clone, CI's, rebuilds them anyway, its files being new).
fn follow_checkout(chroot: &Chroot) -> Result<()> {
    let stamp = chroot.path("/build/target/.quicdesk-checkout");
    let here = std::fs::canonicalize(crate::proc::root())?
        .display()
        .to_string();
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == here) {
        return Ok(());
    }
    for profile in ["debug", "release"] {
        let dir = chroot.path(&format!("/build/target/{TARGET}/{profile}/.fingerprint"));
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            // `<package>-<hash>`, one per unit (library, binary, test, build script).
            if name
                .rsplit_once('-')
                .is_some_and(|(package, _)| CHECKOUT_PACKAGES.contains(&package))
            {
                std::fs::remove_dir_all(e.path())
                    .with_context(|| format!("removing {}", e.path().display()))?;
            }
        }
    }
    std::fs::create_dir_all(chroot.path("/build/target"))?;
    std::fs::write(&stamp, here)?;
    Ok(())
}

/// Runs cargo in the chroot on the checkout for the Windows target, with `env` added (Wine's,
/// for commands that run test binaries).
pub fn cargo_with(chroot: &Chroot, args: &[&str], env: &[(&'static str, String)]) -> Result<()> {
    follow_checkout(chroot)?;
    let mut full = vec![args[0], "-Zbuild-std=std,test", "--target", TARGET];
    full.extend_from_slice(&args[1..]);
    let script = "cd /src && exec cargo \"$@\"";
    let mut sh_args = vec!["-c", script, "cargo"];
    sh_args.extend_from_slice(&full);
    let mut all = cargo_env();
    all.extend_from_slice(env);
    run(&mut chroot.command("/bin/sh", &sh_args, &all))
        .with_context(|| format!("cargo {} for {TARGET} in the chroot", args.join(" ")))
}

/// Builds the programs and the test binaries of the Windows crates.
fn build(c: &Chroot) -> Result<()> {
    let t = Instant::now();
    cargo_with(
        c,
        &["build", "-p", "peer", "-p", "rendezvous", "--bins"],
        &[],
    )?;
    let mut args = vec!["test", "--no-run", "--lib"];
    args.extend_from_slice(CRATES);
    cargo_with(c, &args, &[])?;
    eprintln!("windows: built in {:.0?}", t.elapsed());
    Ok(())
}

/// `cargo xtask windows test`: everything under Wine (see the module doc).
/// `parts` picks some of: lint, unit, host, viewer, prompt, service, installer (default:
/// all).
pub fn test(parts: &[String]) -> Result<()> {
    let want = |p: &str| parts.is_empty() || parts.iter().any(|x| x == p);
    let c = Chroot::ensure()?;
    if want("lint") {
        // The Windows-only code (capture, input, the service) is linted only here. Libraries
        // and programs: the benches and integration tests are Linux's (X11, namespaces).
        eprintln!("\n== clippy on the Windows build ==");
        let mut args = vec!["clippy", "--lib", "--bins"];
        args.extend_from_slice(CRATES);
        args.extend_from_slice(&["--", "-D", "warnings"]);
        cargo_with(&c, &args, &[])?;
    }
    build(&c)?;
    run(host_cargo().args(["build", "-p", "rendezvous", "-p", "peer", "--bins"]))?;
    let linux = target_dir().join("debug");
    let x = virtual_display(1280, 800)?;
    let wine = Wine::start(&c, x.name())?;

    if want("unit") {
        eprintln!("\n== Windows crates' unit tests under Wine ==");
        let t = Instant::now();
        let mut args = vec!["test", "--lib", "--no-fail-fast"];
        args.extend_from_slice(CRATES);
        // One test at a time: the desktop, pointer and keyboard are shared.
        args.extend_from_slice(&["--", "--test-threads=1"]);
        cargo_with(&c, &args, &wine.env())?;
        eprintln!("windows: unit tests under Wine in {:.0?}", t.elapsed());
    }
    if want("host") {
        session::windows_host(&c, &wine, &x, &linux)?;
    }
    if want("viewer") {
        session::windows_viewer(&c, &wine, &x, &linux)?;
    }
    if want("prompt") {
        session::windows_prompt(&c, &wine, &x, &linux)?;
    }
    if want("service") {
        service::windows_service(&c, &wine, &x, &linux)?;
    }
    if want("installer") {
        let setup = package::build(&c)?;
        package::check_self_contained(&c)?;
        package::installer(&c, &wine, &setup)?;
    }
    Ok(())
}

pub fn windows(rest: &[String]) -> Result<()> {
    match rest.first().map(String::as_str) {
        Some("setup") => Chroot::ensure().map(drop),
        Some("build") => build(&Chroot::ensure()?),
        Some("test") => test(&rest[1..]),
        Some("cargo") => {
            let c = Chroot::ensure()?;
            let args: Vec<&str> = rest[1..].iter().map(String::as_str).collect();
            if args.is_empty() {
                bail!("usage: cargo xtask windows cargo build|test|clippy ...");
            }
            cargo_with(&c, &args, &[])
        }
        other => bail!("usage: cargo xtask windows setup|build|test|cargo ... (got {other:?})"),
    }
}
