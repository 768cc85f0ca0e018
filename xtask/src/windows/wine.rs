//! Wine in the chroot, drawing on an X display of this machine: a prefix kept in the chroot
//! (`/root/.wine-quicdesk`, made once by `wineboot`, about 15 s) and a persistent wineserver
//! for the life of a [`Wine`], so each program starts in ~0.4 s instead of ~1.3 s.
//!
//! The X display is an Xvfb started on the host: Wine reaches it through the abstract X
//! socket, which lives in the network namespace the chroot shares.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::Chroot;
use crate::proc::Guard;

/// The prefix inside the chroot.
pub const PREFIX: &str = "/root/.wine-quicdesk";

/// A running wineserver on a prefix, for one display.
pub struct Wine<'a> {
    chroot: &'a Chroot,
    display: String,
    server: Option<Guard>,
}

impl<'a> Wine<'a> {
    /// Starts the wineserver (and makes the prefix if it is missing).
    pub fn start(chroot: &'a Chroot, display: &str) -> Result<Self> {
        let mut w = Self {
            chroot,
            display: display.to_owned(),
            server: None,
        };
        let booted = chroot.path(PREFIX).join(".quicdesk-booted");
        w.serve()?;
        // Booting starts Wine's own background processes (services.exe, rpcss, ...). They
        // must not inherit a pipe of ours, or whoever reads that pipe to its end waits for
        // them: so they start here, with nothing attached. A prefix just made is booted again
        // under a new server: in the first server's life after `--init`, a service could not
        // reach the service manager (StartServiceCtrlDispatcher failed, the start timed out).
        if !booted.exists() {
            eprintln!("windows: making the Wine prefix {PREFIX} (about 15 s)");
            w.boot(&["--init"])?;
            w.stop_server();
            w.serve()?;
            std::fs::write(&booted, "")?;
        }
        w.boot(&[])?;
        Ok(w)
    }

    /// Starts the persistent wineserver, kept until [`Wine::stop_server`] or drop.
    fn serve(&mut self) -> Result<()> {
        let mut server = self.command("wineserver", &["--foreground", "--persistent"]);
        server
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.server = Some(Guard(
            server.spawn().context("starting wineserver")?,
            "wineserver",
        ));
        Ok(())
    }

    /// Ends every Wine program of the prefix and the server.
    fn stop_server(&mut self) {
        let _ = self
            .command("wineserver", &["--kill"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        self.server.take();
    }

    fn boot(&self, args: &[&str]) -> Result<()> {
        let status = self
            .command("wineboot", args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("running wineboot")?;
        if !status.success() {
            bail!("wineboot {args:?} failed ({status})");
        }
        Ok(())
    }

    /// What every Wine program gets: the display, the prefix, no debug channels, and no
    /// prompts to install Mono or Gecko.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DISPLAY", self.display.clone()),
            ("WINEPREFIX", PREFIX.into()),
            ("WINEDEBUG", "-all".into()),
            ("WINEDLLOVERRIDES", "mscoree,mshtml=".into()),
        ]
    }

    /// `program` (a Unix program of the chroot, e.g. `wine`) with Wine's environment.
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        self.chroot.command(program, args, &self.env())
    }

    /// `wine EXE ARGS...`.
    pub fn exe(&self, exe: &str, args: &[&str]) -> Command {
        let mut all = vec![exe];
        all.extend_from_slice(args);
        self.command("wine", &all)
    }

    /// Runs `wine EXE ARGS...` to its end within `limit`; its standard output.
    pub fn output(&self, exe: &str, args: &[&str], limit: Duration) -> Result<String> {
        let mut c = self.exe(exe, args);
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = c.spawn().with_context(|| format!("wine {exe}"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = rx
            .recv_timeout(limit)
            .map_err(|_| anyhow::anyhow!("wine {exe} {args:?} did not end within {limit:?}"))??;
        if !out.status.success() {
            bail!(
                "wine {exe} {args:?} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Wine<'_> {
    fn drop(&mut self) {
        self.stop_server();
    }
}

/// A path in the chroot as Windows programs under Wine name it (Wine maps `/` to `Z:`).
pub fn windows_path(inside: &str) -> String {
    format!("Z:{}", inside.replace('/', "\\"))
}
