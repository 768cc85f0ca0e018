//! The `peer` program's windows outside the viewer: the hidden `peer ui KIND` subcommand that
//! runs one small window (`peer::ui`), and `peer connect`'s way to its code and password
//! (the command line and the terminal, or the connect window in a child process). Part of the
//! binary, not of the `peer` library.

#[cfg(feature = "viewer")]
use anyhow::Context;
use anyhow::bail;

#[cfg(feature = "viewer")]
use crate::cli_args::ConnectArgs;
use crate::cli_args::UiKind;
#[cfg(feature = "viewer")]
use crate::read_password;

/// `peer ui KIND`: one of the windows, in this process (started by `peer host` or `peer
/// connect`; see `peer::ui`).
pub(crate) fn ui_command(kind: UiKind) -> anyhow::Result<()> {
    #[cfg(feature = "viewer")]
    {
        use peer::ui;
        match kind {
            UiKind::Prompt => ui::prompt::run_stdio(),
            UiKind::Indicator => ui::indicator::run_stdio(),
            UiKind::Connect => ui::connect::run_stdio(),
        }
        .map_err(Into::into)
    }
    #[cfg(not(feature = "viewer"))]
    {
        let _ = kind;
        bail!("this peer was built without windows (feature `viewer`)")
    }
}

#[cfg(feature = "viewer")]
/// The code and password of `peer connect`: from the command line and the terminal, or, with
/// no code given, from the connect window (`peer ui connect`, a child process: the viewer's
/// window needs this process's one event loop). `None` if the user closed the window.
pub(crate) fn connect_details(
    mut args: ConnectArgs,
) -> anyhow::Result<Option<(ConnectArgs, Option<String>)>> {
    if args.code.is_some() {
        let password = read_password(&args)?;
        return Ok(Some((args, password)));
    }
    let known = peer::controller::known::KnownHosts::load(&args.common.data_dir)?;
    let request = peer::ui::ConnectRequest {
        recent: known.recent(8),
        now: unix_now(),
    };
    let mut child =
        std::process::Command::new(std::env::current_exe().context("locating this program")?)
            .args(["ui", "connect"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("opening the connect window")?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().context("the window's stdin")?;
        stdin.write_all(peer::ui::line(&request).as_bytes())?;
    }
    let mut line = String::new();
    {
        use std::io::{BufRead, Read};
        let stdout = child.stdout.take().context("the window's stdout")?;
        std::io::BufReader::new(stdout.take(peer::ui::MAX_LINE as u64 + 1)).read_line(&mut line)?;
    }
    let status = child.wait()?;
    if line.is_empty() {
        if status.success() {
            return Ok(None); // closed without connecting
        }
        bail!("the connect window failed ({status})");
    }
    let reply: peer::ui::ConnectReply = peer::ui::parse_reply(&line)?;
    args.code = Some(reply.code.parse().context("the code typed in the window")?);
    if reply.save_as.is_some() {
        args.save_as = reply.save_as;
    }
    let password = Some(reply.password).filter(|p| !p.is_empty());
    Ok(Some((args, password)))
}

#[cfg(feature = "viewer")]
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
