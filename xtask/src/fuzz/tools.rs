//! The fuzzing tools: cargo-fuzz installed into `~/.cache/quicdesk/tools`, the clang wrapper that
//! instruments OpenH264, and the instrumented build of every target in
//! `~/.cache/quicdesk/fuzz-target`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::proc::{cargo, root, run};

/// The cargo-fuzz release installed into the tools directory.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

pub fn cache_dir() -> Result<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("quicdesk"));
    }
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    Ok(PathBuf::from(home).join(".cache/quicdesk"))
}

/// The installed tools and where the build goes.
pub struct Tools {
    pub cache: PathBuf,
    pub cargo_fuzz: PathBuf,
    /// The C++ compiler wrapper for OpenH264, when clang is there.
    pub cxx: Option<PathBuf>,
    pub target_dir: PathBuf,
    /// Where the built targets are.
    pub bin_dir: PathBuf,
}

impl Tools {
    /// Installs what is missing and builds every target (cargo rebuilds what changed).
    pub fn prepare() -> Result<Self> {
        let cache = cache_dir()?;
        let tools = cache.join("tools");
        let cargo_fuzz = tools.join("bin/cargo-fuzz");
        let t = Instant::now();
        if !cargo_fuzz_works(&cargo_fuzz) {
            eprintln!(
                "fuzz: installing cargo-fuzz {CARGO_FUZZ_VERSION} into {}",
                tools.display()
            );
            run(cargo()
                .args(["install", "cargo-fuzz", "--locked", "--version"])
                .arg(format!("={CARGO_FUZZ_VERSION}"))
                .arg("--root")
                .arg(&tools)
                .env_remove("CARGO_TARGET_DIR"))
            .context("installing cargo-fuzz")?;
            if !cargo_fuzz_works(&cargo_fuzz) {
                bail!(
                    "{} does not run after its installation",
                    cargo_fuzz.display()
                );
            }
            eprintln!("fuzz: cargo-fuzz installed in {:.0?}", t.elapsed());
        }
        let cxx = coverage_cxx(&tools)?;
        let target_dir = cache.join("fuzz-target");
        let host = host_triple()?;
        let tools = Self {
            bin_dir: target_dir.join(&host).join("release"),
            cache,
            cargo_fuzz,
            cxx,
            target_dir,
        };
        tools.build()?;
        Ok(tools)
    }

    fn build(&self) -> Result<()> {
        let t = Instant::now();
        let mut cmd = Command::new(&self.cargo_fuzz);
        // cargo-fuzz runs `cargo`: the toolchain that runs xtask, not whatever PATH has first.
        cmd.current_dir(root())
            .args(["fuzz", "build", "-s", "none", "--target-dir"])
            .arg(&self.target_dir)
            .env("RUSTC_BOOTSTRAP", "1")
            .env("PATH", toolchain_path()?);
        if let Some(cxx) = &self.cxx {
            cmd.env("CXX", cxx);
        }
        run(&mut cmd).context("building the fuzz targets")?;
        eprintln!("fuzz: targets built in {:.0?}", t.elapsed());
        Ok(())
    }
}

fn cargo_fuzz_works(path: &Path) -> bool {
    Command::new(path)
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains(CARGO_FUZZ_VERSION)
        })
}

/// PATH with the directory of the cargo that runs xtask first.
pub fn toolchain_path() -> Result<std::ffi::OsString> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("CARGO")
        .map(PathBuf::from)
        .and_then(|c| c.parent().map(Path::to_path_buf))
    {
        dirs.push(dir);
    }
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).context("building PATH")
}

fn host_triple() -> Result<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(rustc)
        .arg("-vV")
        .env("PATH", toolchain_path()?)
        .output()
        .context("running rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .context("rustc -vV names no host")
}

/// The compiler wrapper that gives OpenH264 clang's coverage instrumentation, installing clang
/// (apt) if it is missing. `None` (with a warning) where clang cannot be had: the H.264 target
/// then sees only the Rust side's coverage.
fn coverage_cxx(tools: &Path) -> Result<Option<PathBuf>> {
    let has_clang = || {
        Command::new("clang++")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has_clang() && Path::new("/usr/bin/apt-get").exists() {
        eprintln!("fuzz: installing clang (OpenH264's coverage instrumentation)");
        let mut apt = if crate::setup::is_root() {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.arg("apt-get");
            c
        };
        apt.env("DEBIAN_FRONTEND", "noninteractive").args([
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "clang",
        ]);
        if let Err(e) = run(&mut apt) {
            eprintln!("fuzz: {e:#}");
        }
    }
    if !has_clang() {
        eprintln!(
            "warning: no clang++: OpenH264 is built without coverage instrumentation, so \
             h264_decode is guided by the Rust code around the decoder only"
        );
        return Ok(None);
    }
    // Only OpenH264's sources get the instrumentation; every other C++ file (libFuzzer's own
    // among them) goes to the default compiler as before.
    let script = "#!/bin/sh\n\
        # Written by `cargo xtask fuzz`: OpenH264 with clang's coverage for libFuzzer.\n\
        case \"$*\" in\n  \
        *openh264*) exec clang++ -fsanitize=fuzzer-no-link \"$@\" ;;\n  \
        *) exec c++ \"$@\" ;;\n\
        esac\n";
    let path = tools.join("bin/quicdesk-fuzz-cxx");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(script) {
        std::fs::create_dir_all(tools.join("bin"))?;
        std::fs::write(&path, script).with_context(|| format!("writing {}", path.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(Some(path))
}
