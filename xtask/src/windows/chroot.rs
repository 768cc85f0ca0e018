//! The Windows build environment: a Debian trixie chroot in `~/.cache/quicdesk/trixie` with
//! trixie-backports' rustc and rust-src (for `-Zbuild-std`; Debian ships no prebuilt std for
//! x86_64-pc-windows-gnu any more), the mingw-w64 toolchain, nasm, Wine 10, Xvfb and NSIS.
//!
//! Made once (debootstrap about 1 min, the packages about 4 min) and kept outside the checkout,
//! since CI clones afresh; a stamp per stage says what was installed, so a changed package list
//! installs again and a half-made chroot is made anew. Commands run in it through
//! `unshare --mount`: the bind mounts (proc, sys, dev, the checkout at `/src`) live in a private
//! mount namespace and vanish with the command, so nothing is left mounted on the host whatever
//! happens to the command.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::proc::{root, run};
use crate::setup::is_root;

/// The Debian release the chroot follows (Wine 10, NSIS 3.11, mingw-w64 GCC 14).
const SUITE: &str = "trixie";

/// From trixie-backports: a rustc new enough for the workspace, its `rust-src` and clippy (the
/// lints of the Windows-only code).
const RUST: &[&str] = &[
    "rustc",
    "cargo",
    "rust-src",
    "rust-clippy",
    "ca-certificates",
];

/// From trixie: the cross toolchain, Wine and what the tests under Wine use.
const PACKAGES: &[&str] = &[
    "gcc-mingw-w64-x86-64",
    "g++-mingw-w64-x86-64",
    // openh264's assembly (it silently builds plain C, 3x slower, without it).
    "nasm",
    "wine",
    "wine64",
    // winit and wgpu under Wine: OpenGL/Vulkan on llvmpipe and the X libraries Wine loads.
    "libgl1",
    "libegl1",
    "libgl1-mesa-dri",
    "libvulkan1",
    "mesa-vulkan-drivers",
    "libxcomposite1",
    "libxcursor1",
    "libxfixes3",
    "libxi6",
    "libxinerama1",
    "libxrandr2",
    "libxrender1",
    "libxxf86vm1",
    "libgnutls30t64",
    "libdbus-1-3",
    "fonts-wine",
    // The display Wine draws on, and reading it back.
    "xvfb",
    "xauth",
    "x11-utils",
    "xdotool",
    "imagemagick",
    "procps",
    "file",
    // The installer.
    "nsis",
];

/// Bumped when the chroot's set-up changes in a way the package list does not show.
const RECIPE: &str = "1";

pub struct Chroot {
    pub dir: PathBuf,
}

impl Chroot {
    pub fn dir() -> Result<PathBuf> {
        Ok(crate::fuzz::tools::cache_dir()?.join(SUITE))
    }

    /// Makes the chroot, or what of it is missing or stale.
    pub fn ensure() -> Result<Self> {
        if !is_root() {
            bail!(
                "cargo xtask windows needs root: it makes a Debian chroot (debootstrap), mounts \
                 into it and runs the Windows build and Wine there"
            );
        }
        let dir = Self::dir()?;
        let c = Self { dir };
        let base = c.dir.join(".quicdesk-base");
        if !base.exists() {
            c.debootstrap()?;
            std::fs::write(&base, RECIPE)?;
        }
        let want = format!("{RECIPE}\n{}\n{}\n", RUST.join(" "), PACKAGES.join(" "));
        let stamp = c.dir.join(".quicdesk-packages");
        if std::fs::read_to_string(&stamp).ok().as_deref() != Some(want.as_str()) {
            c.packages()?;
            std::fs::write(&stamp, want)?;
        }
        Ok(c)
    }

    fn debootstrap(&self) -> Result<()> {
        if !Path::new("/usr/sbin/debootstrap").exists() {
            bail!("debootstrap is missing (cargo xtask setup installs it)");
        }
        if self.dir.exists() {
            eprintln!(
                "windows: {} is incomplete; making it anew",
                self.dir.display()
            );
            std::fs::remove_dir_all(&self.dir)
                .with_context(|| format!("removing {}", self.dir.display()))?;
        }
        std::fs::create_dir_all(self.dir.parent().context("cache dir")?)?;
        let mirror = crate::setup::debian_mirror();
        eprintln!(
            "windows: making the {SUITE} chroot in {} from {mirror} (about a minute)",
            self.dir.display()
        );
        run(Command::new("debootstrap")
            .args(["--variant=minbase", SUITE])
            .arg(&self.dir)
            .arg(&mirror))
        .context("debootstrap")?;
        let security = format!("{}-security", mirror.trim_end_matches('/'));
        std::fs::write(
            self.dir.join("etc/apt/sources.list"),
            format!(
                "deb {mirror} {SUITE} main\ndeb {mirror} {SUITE}-updates main\n\
                 deb {mirror} {SUITE}-backports main\ndeb {security} {SUITE}-security main\n"
            ),
        )?;
        Ok(())
    }

    fn packages(&self) -> Result<()> {
        // apt and cargo in the chroot reach the registries only with this machine's extra CA
        // certificates (a proxy may re-sign), and resolve names as it does.
        let cas = Path::new("/usr/local/share/ca-certificates");
        let into = self.dir.join("usr/local/share/ca-certificates");
        std::fs::create_dir_all(&into)?;
        if let Ok(rd) = std::fs::read_dir(cas) {
            for e in rd.flatten() {
                std::fs::copy(e.path(), into.join(e.file_name()))?;
            }
        }
        std::fs::copy("/etc/resolv.conf", self.dir.join("etc/resolv.conf")).ok();
        let apt = "DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Dpkg::Use-Pty=0";
        let script = format!(
            "set -e
             {apt} update
             {apt} install --no-install-recommends -t {SUITE}-backports {rust}
             update-ca-certificates
             {apt} install --no-install-recommends {packages}
             apt-get clean",
            rust = RUST.join(" "),
            packages = PACKAGES.join(" "),
        );
        eprintln!("windows: installing the chroot's packages (about 4 minutes)");
        run(&mut self.command("/bin/sh", &["-c", &script], &[]))
            .context("installing the chroot's packages")
    }

    /// A command run inside the chroot, in a mount namespace of its own with proc, sys, dev and
    /// the checkout (at `/src`) mounted; `env` is all the environment it gets beyond HOME, PATH
    /// and LANG.
    pub fn command(&self, program: &str, args: &[&str], env: &[(&str, String)]) -> Command {
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"]);
        c.arg(
            r#"set -e
R="$1"; SRC="$2"; shift 2
mount -t proc proc "$R/proc"
mount --rbind /sys "$R/sys"
mount --rbind /dev "$R/dev"
mkdir -p "$R/src"
mount --bind "$SRC" "$R/src"
exec chroot "$R" "$@""#,
        );
        c.arg("sh").arg(&self.dir).arg(root());
        c.args([
            "/usr/bin/env",
            "-i",
            "HOME=/root",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG=C.UTF-8",
        ]);
        for (k, v) in env {
            c.arg(format!("{k}={v}"));
        }
        c.arg(program).args(args);
        c
    }

    /// A path inside the chroot, seen from the host.
    pub fn path(&self, inside: &str) -> PathBuf {
        self.dir.join(inside.trim_start_matches('/'))
    }
}
