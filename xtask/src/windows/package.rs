//! The Windows packages: release `peer.exe` and `rendezvous.exe`, stripped, checked to need no
//! DLL beyond Windows's own, and the NSIS installer (`peer/dist/windows/quicdesk.nsi`) built
//! from them into `target/windows/quicdesk-setup.exe`; then, under Wine, the installer's round
//! trip: a silent install puts the files, the Add/Remove Programs entry and the logon start in
//! place and the installed `peer.exe` runs; a silent uninstall takes all of it away.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::wine::{PREFIX, Wine};
use super::{Chroot, cargo_with};
use crate::proc::{run, target_dir};

/// Where the release build and the packages go, inside the chroot.
const RELEASE: &str = "/build/target/x86_64-pc-windows-gnu/release";
const DIST: &str = "/build/dist";

/// DLLs of the compilers' runtimes: finding one means the program would not start on a
/// Windows without them.
const FORBIDDEN: &[&str] = &["libstdc++", "libgcc", "libwinpthread"];

const UNINSTALL_KEY: &str = r"HKLM\Software\Microsoft\Windows\CurrentVersion\Uninstall\quicdesk";
const RUN_KEY: &str = r"HKLM\Software\Microsoft\Windows\CurrentVersion\Run";

/// Builds the release programs, strips them and builds the installer; returns the installer's
/// path in the chroot.
pub fn build(c: &Chroot) -> Result<String> {
    let t = Instant::now();
    cargo_with(
        c,
        &[
            "build",
            "--release",
            "-p",
            "peer",
            "-p",
            "rendezvous",
            "--bins",
        ],
        &[],
    )?;
    std::fs::create_dir_all(c.path(DIST))?;
    for exe in ["peer.exe", "rendezvous.exe"] {
        run(&mut c.command(
            "x86_64-w64-mingw32-strip",
            &["-o", &format!("{DIST}/{exe}"), &format!("{RELEASE}/{exe}")],
            &[],
        ))?;
    }
    let setup = format!("{DIST}/quicdesk-setup.exe");
    let version = format!("-DVERSION={}", env!("CARGO_PKG_VERSION"));
    run(&mut c.command(
        "makensis",
        &[
            "-V2",
            &format!("-DPEER={DIST}/peer.exe"),
            &format!("-DRENDEZVOUS={DIST}/rendezvous.exe"),
            &format!("-DOUTFILE={setup}"),
            &version,
            "/src/peer/dist/windows/quicdesk.nsi",
        ],
        &[],
    ))
    .context("makensis")?;
    let out = target_dir().join("windows");
    std::fs::create_dir_all(&out)?;
    std::fs::copy(c.path(&setup), out.join("quicdesk-setup.exe"))?;
    let size = |p: &str| std::fs::metadata(c.path(p)).map_or(0, |m| m.len()) as f64 / 1e6;
    eprintln!(
        "windows: release built and packaged in {:.0?}: peer.exe {:.1} MB, rendezvous.exe {:.1} \
         MB (stripped), quicdesk-setup.exe {:.1} MB (copied to {})",
        t.elapsed(),
        size(&format!("{DIST}/peer.exe")),
        size(&format!("{DIST}/rendezvous.exe")),
        size(&setup),
        out.display()
    );
    Ok(setup)
}

/// The DLLs a program imports (objdump's import table).
fn imports(c: &Chroot, exe: &str) -> Result<Vec<String>> {
    let out = c
        .command("x86_64-w64-mingw32-objdump", &["-p", exe], &[])
        .output()
        .context("objdump")?;
    if !out.status.success() {
        bail!("objdump -p {exe}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut dlls: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("DLL Name:"))
        .map(|n| n.trim().to_lowercase())
        .collect();
    dlls.sort();
    dlls.dedup();
    Ok(dlls)
}

/// Each program imports only DLLs that a Windows system has (the Wine prefix's system32 holds
/// Windows's own), and none of the compilers' runtimes.
pub fn check_self_contained(c: &Chroot) -> Result<()> {
    let system32 = c.path(&format!("{PREFIX}/drive_c/windows/system32"));
    let present: Vec<String> = std::fs::read_dir(&system32)
        .with_context(|| format!("{}", system32.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_lowercase())
        .collect();
    for exe in ["peer.exe", "rendezvous.exe"] {
        let dlls = imports(c, &format!("{DIST}/{exe}"))?;
        if dlls.is_empty() {
            bail!("objdump lists no DLL for {exe}: the check would prove nothing");
        }
        for dll in &dlls {
            let lower = dll.as_str();
            if FORBIDDEN.iter().any(|f| lower.starts_with(f)) {
                bail!("{exe} needs {dll}, a compiler runtime DLL: it is not self-contained");
            }
            // API sets (api-ms-win-*) are resolved by the loader, not files.
            if !lower.starts_with("api-ms-win-") && !present.iter().any(|p| p == lower) {
                bail!("{exe} needs {dll}, which is not a Windows system DLL");
            }
        }
        eprintln!(
            "windows: {exe} imports only system DLLs: {}",
            dlls.join(" ")
        );
    }
    Ok(())
}

fn installed(c: &Chroot) -> PathBuf {
    c.path(&format!("{PREFIX}/drive_c/Program Files/quicdesk"))
}

fn reg_has(wine: &Wine<'_>, key: &str, value: Option<&str>) -> bool {
    let mut args = vec!["query", key];
    if let Some(v) = value {
        args.extend(["/v", v]);
    }
    wine.output("reg", &args, Duration::from_secs(30)).is_ok()
}

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + within;
    while !done() {
        if Instant::now() > deadline {
            bail!("{what}: not within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(())
}

/// The installer's silent round trip under Wine.
pub fn installer(c: &Chroot, wine: &Wine<'_>, setup: &str) -> Result<()> {
    eprintln!("\n== the Windows installer under Wine ==");
    let dir = installed(c);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let t = Instant::now();
    wine.output(setup, &["/S"], Duration::from_secs(120))
        .context("quicdesk-setup.exe /S")?;
    wait_until("the installer's files", Duration::from_secs(60), || {
        dir.join("uninstall.exe").exists()
    })?;
    for f in ["peer.exe", "rendezvous.exe", "uninstall.exe"] {
        if !dir.join(f).is_file() {
            bail!("the installer did not install {f} into {}", dir.display());
        }
    }
    let installed_peer = r"C:\Program Files\quicdesk\peer.exe";
    let version = wine.output(installed_peer, &["--version"], Duration::from_secs(30))?;
    if !version.contains(env!("CARGO_PKG_VERSION")) {
        bail!("the installed peer.exe says {version:?}");
    }
    if !reg_has(wine, UNINSTALL_KEY, None) {
        bail!("no Add/Remove Programs entry {UNINSTALL_KEY} after installing");
    }
    let run_value = wine.output(
        "reg",
        &["query", RUN_KEY, "/v", "quicdesk-host"],
        Duration::from_secs(30),
    )?;
    if !run_value.contains(r"quicdesk\peer.exe") || !run_value.contains("host") {
        bail!("the logon start does not run the installed host: {run_value}");
    }
    eprintln!(
        "windows: installed in {:.1?}: files, Add/Remove Programs entry, logon start",
        t.elapsed()
    );

    let t = Instant::now();
    wine.output(
        r"C:\Program Files\quicdesk\uninstall.exe",
        &["/S"],
        Duration::from_secs(120),
    )
    .context("uninstall.exe /S")?;
    // NSIS's uninstaller copies itself away and removes the directory from there.
    wait_until(
        "the uninstaller removing the files",
        Duration::from_secs(60),
        || !dir.exists(),
    )?;
    if reg_has(wine, UNINSTALL_KEY, None) {
        bail!("{UNINSTALL_KEY} is still there after uninstalling");
    }
    if reg_has(wine, RUN_KEY, Some("quicdesk-host")) {
        bail!("the logon start is still there after uninstalling");
    }
    eprintln!(
        "windows: uninstalled in {:.1?}: files, entry and logon start gone",
        t.elapsed()
    );
    Ok(())
}
