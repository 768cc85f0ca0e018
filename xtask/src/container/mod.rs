//! `cargo xtask container [build|test]` (root): the rendezvous's container image
//! (`rendezvous/dist/Dockerfile`) built with Podman, then run and checked as an operator uses it
//! (`check.rs`).
//!
//! What stands in for what an operator's machine has: no container registry is reachable where
//! this runs, so the two images the Dockerfile starts from are made here from Debian's packages
//! and handed to it through its build arguments: `BASE_IMAGE`, a Debian trixie made with
//! debootstrap (minbase, as `debian:trixie-slim` is), and `RUST_IMAGE`, that plus
//! trixie-backports' Rust (`xtask/container/rust-slim.Containerfile`). The Dockerfile itself is
//! built as a user builds it. Podman runs with settings of the project's own
//! (`CONTAINERS_CONF`, `CONTAINERS_STORAGE_CONF`) and keeps its images, volumes and build caches
//! in `~/.cache/quicdesk/containers`: runc, since crun 1.8 refuses this machine's hybrid cgroup
//! hierarchy, and resource limits no higher than the ones this process has, since a container
//! manager without CAP_SYS_RESOURCE cannot raise them (Podman's defaults would).

mod check;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::proc::{root, run};
use crate::setup::{debian_mirror, is_root, setup};

/// The Debian release of both base images (the official images' `-trixie` tags).
const SUITE: &str = "trixie";
/// Bumped when the base image's recipe changes, so a cached one is made anew.
const BASE_RECIPE: &str = "1";
const BASE_IMAGE: &str = "localhost/quicdesk-ci/debian:trixie";
const RUST_IMAGE: &str = "localhost/quicdesk-ci/rust:slim-trixie";
/// The image the tests build from the Dockerfile.
pub const IMAGE: &str = "localhost/quicdesk-rendezvous:test";

pub fn container(rest: &[String]) -> Result<()> {
    match rest.first().map(String::as_str) {
        Some("build") => {
            let podman = Podman::ready()?;
            podman.build()?;
            let size = podman.output(&["image", "inspect", "--format", "{{.Size}}", IMAGE])?;
            eprintln!("container: built {IMAGE} ({} bytes)", size.trim());
            Ok(())
        }
        None | Some("test") => test(),
        Some(other) => bail!("container: unknown command {other:?} (build or test)"),
    }
}

/// Builds the image and runs the operator's checks on it (part of `cargo xtask test`).
pub fn test() -> Result<()> {
    let podman = Podman::ready()?;
    podman.build()?;
    check::operator_checks(&podman)
}

/// The `podman` command with the project's settings.
pub struct Podman {
    dir: PathBuf,
}

impl Podman {
    /// Installs what is missing (`cargo xtask setup`) and writes Podman's settings.
    fn ready() -> Result<Self> {
        if !is_root() {
            bail!(
                "cargo xtask container needs root: Podman runs the rendezvous's image rootful \
                 here (run it as root, as CI does)"
            );
        }
        setup()?;
        let dir = crate::fuzz::tools::cache_dir()?.join("containers");
        std::fs::create_dir_all(&dir)?;
        let storage = dir.join("storage");
        std::fs::create_dir_all(dir.join("tmp"))?;
        std::fs::write(
            dir.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\n\
                 runroot = \"/run/quicdesk-containers\"\n",
                storage.display()
            ),
        )?;
        let (nofile, nproc) = limits()?;
        std::fs::write(
            dir.join("containers.conf"),
            format!(
                "[containers]\ndefault_ulimits = [\"nofile={nofile}:{nofile}\", \
                 \"nproc={nproc}:{nproc}\"]\n\n\
                 [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"file\"\n"
            ),
        )?;
        Ok(Self { dir })
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"))
            // Buildah keeps the Dockerfile's cache mounts (registry, target) under TMPDIR.
            .env("TMPDIR", self.dir.join("tmp"));
        c
    }

    /// Runs podman with `args`; its standard output, or an error with what it said.
    pub fn output(&self, args: &[&str]) -> Result<String> {
        let out = self
            .cmd()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running podman (cargo xtask setup installs it)")?;
        if !out.status.success() {
            bail!(
                "podman {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The base image, the Rust image on it, then the Dockerfile's image on both.
    fn build(&self) -> Result<()> {
        self.base_image()?;
        eprintln!("container: the Rust build image ({RUST_IMAGE})");
        let context = self.rust_context()?;
        run(self
            .cmd()
            .args(["build", "--pull=never", "--network=host"])
            .args(["--build-arg", &format!("BASE_IMAGE={BASE_IMAGE}")])
            .args(["-t", RUST_IMAGE, "-f"])
            .arg(context.join("Containerfile"))
            .arg(&context))
        .context("building the Rust build image")?;
        eprintln!("container: rendezvous/dist/Dockerfile ({IMAGE})");
        run(self
            .cmd()
            // Docker's image format: OCI's has no HEALTHCHECK.
            .args(["build", "--pull=never", "--network=host", "--format=docker"])
            .args(["--build-arg", &format!("RUST_IMAGE={RUST_IMAGE}")])
            .args(["--build-arg", &format!("BASE_IMAGE={BASE_IMAGE}")])
            .args(["-t", IMAGE, "-f"])
            .arg(root().join("rendezvous/dist/Dockerfile"))
            .arg(root()))
        .context("building rendezvous/dist/Dockerfile")
    }

    /// The Rust image's build context: its Containerfile and this machine's extra CA
    /// certificates, which a proxy that re-signs TLS needs the build to trust.
    fn rust_context(&self) -> Result<PathBuf> {
        let context = self.dir.join("rust-context");
        let _ = std::fs::remove_dir_all(&context);
        let cas = context.join("extra-ca");
        std::fs::create_dir_all(&cas)?;
        std::fs::copy(
            root().join("xtask/container/rust-slim.Containerfile"),
            context.join("Containerfile"),
        )?;
        std::fs::write(cas.join("README"), "this machine's extra CA certificates\n")?;
        if let Ok(dir) = std::fs::read_dir("/usr/local/share/ca-certificates") {
            for e in dir.flatten() {
                if e.path().extension().is_some_and(|x| x == "crt") {
                    std::fs::copy(e.path(), cas.join(e.file_name()))?;
                }
            }
        }
        Ok(context)
    }

    /// Makes the Debian base image with debootstrap unless one of this recipe is there.
    fn base_image(&self) -> Result<()> {
        let mirror = debian_mirror();
        let recipe = format!("{SUITE} {mirror} {BASE_RECIPE}");
        let have = self
            .output(&[
                "image",
                "inspect",
                "--format",
                "{{index .Labels \"quicdesk.recipe\"}}",
                BASE_IMAGE,
            ])
            .unwrap_or_default();
        if have.trim() == recipe {
            return Ok(());
        }
        let rootfs = self.dir.join("rootfs");
        if rootfs.exists() {
            std::fs::remove_dir_all(&rootfs)
                .with_context(|| format!("removing {}", rootfs.display()))?;
        }
        eprintln!("container: making the {SUITE} base image with debootstrap (about 30 s)");
        run(Command::new("debootstrap")
            .args(["--variant=minbase", SUITE])
            .arg(&rootfs)
            .arg(&mirror))
        .context("debootstrap")?;
        let security = format!("{}-security", mirror.trim_end_matches('/'));
        std::fs::write(
            rootfs.join("etc/apt/sources.list"),
            format!(
                "deb {mirror} {SUITE} main\ndeb {mirror} {SUITE}-updates main\n\
                 deb {security} {SUITE}-security main\n"
            ),
        )?;
        // As the slim images: no package lists or downloaded packages inside.
        for dir in ["var/lib/apt/lists", "var/cache/apt/archives"] {
            for e in std::fs::read_dir(rootfs.join(dir))? {
                let p = e?.path();
                if p.is_file() {
                    std::fs::remove_file(p)?;
                }
            }
        }
        let mut tar = Command::new("tar")
            .args(["--numeric-owner", "-C"])
            .arg(&rootfs)
            .args(["-cf", "-", "."])
            .stdout(Stdio::piped())
            .spawn()
            .context("running tar")?;
        let tar_out = tar.stdout.take().context("tar's output")?;
        let import = self
            .cmd()
            .args([
                "import",
                "--change",
                &format!("LABEL quicdesk.recipe=\"{recipe}\""),
            ])
            .args(["--change", "CMD [\"/bin/bash\"]", "-", BASE_IMAGE])
            .stdin(Stdio::from(tar_out))
            .status()
            .context("running podman import")?;
        let tarred = tar.wait()?;
        if !tarred.success() || !import.success() {
            bail!("importing the base image failed (tar {tarred}, podman import {import})");
        }
        std::fs::remove_dir_all(&rootfs)?;
        Ok(())
    }
}

/// The open-files limit this process has, and a process limit no higher than its own (Podman
/// would ask for more than a process without CAP_SYS_RESOURCE may set).
fn limits() -> Result<(String, String)> {
    let text = std::fs::read_to_string("/proc/self/limits").context("reading /proc/self/limits")?;
    let hard = |name: &str| -> Result<u64> {
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name:?} in /proc/self/limits"))?;
        // "Max open files   1024   1048576   files": soft, hard, unit after the name.
        let v = line[name.len()..]
            .split_whitespace()
            .nth(1)
            .with_context(|| format!("odd line {line:?}"))?;
        if v == "unlimited" {
            return Ok(u64::MAX);
        }
        v.parse().with_context(|| format!("odd line {line:?}"))
    };
    let nofile = hard("Max open files")?.min(1 << 20);
    // Seen here: a hard limit of 96365 processes that runc still could not set; 32768 it could.
    let nproc = hard("Max processes")?.min(32768);
    Ok((nofile.to_string(), nproc.to_string()))
}
