//! Attended access, the host's driver: asks the host's user to accept a controller in a window
//! process (`peer ui prompt`), and shows a session indicator with an "End session" button
//! (`peer ui indicator`) while a session runs. The decisions are [`crate::approve::Prompts`]'
//! (one question at a time, rate limit, timeout); the protocol with the window process is
//! [`crate::ui`]'s.
//!
//! The window process is untrusted in what it prints: only one strictly parsed answer line is
//! read from a prompt, and its only outcomes are accept-with-flags and deny; a crash, a kill,
//! garbage or silence until the deadline is a denial. An indicator that dies is logged and the
//! session goes on (the host's user can still end it by ending `peer host`). Each window
//! process is killed when its question is decided or its session ends.
//!
//! What it does not do: decide who may be asked (the guessing limits charged the attempt
//! before, `host::accept`), or draw anything (`peer::ui`, in the child).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::*;
use crate::approve::{Approval, DenyReason, PromptId, Verdict};
use crate::ui::{
    self, IndicatorReply, IndicatorRequest, IndicatorUpdate, PromptReply, PromptRequest,
};

/// How to start the window process: `program args… KIND` with `DISPLAY` set to `display`
/// (when given), where KIND is `prompt` or `indicator`.
#[derive(Debug, Clone)]
pub struct UiCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub display: Option<String>,
}

impl UiCommand {
    /// This program (`peer`) started again as `peer ui KIND`, on `display`.
    pub fn this_program(display: Option<String>) -> Self {
        Self {
            program: if cfg!(target_os = "linux") {
                "/proc/self/exe".into()
            } else {
                std::env::current_exe().unwrap_or_else(|_| "peer".into())
            },
            args: vec!["ui".into()],
            display,
        }
    }

    fn spawn(&self, kind: &str) -> std::io::Result<(Child, ChildStdin, ChildStdout)> {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .arg(kind)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(display) = &self.display {
            cmd.env("DISPLAY", display);
        }
        let mut child = cmd.spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(std::io::Error::other("the window process has no pipes"));
        };
        Ok((child, stdin, stdout))
    }
}

/// How the host decides and what it shows its user (`peer host --approve`).
#[derive(Debug, Clone)]
pub struct Attended {
    pub mode: Approval,
    /// How long the host's user has to answer before the host denies.
    pub timeout: Duration,
    /// The window process; `None`: no windows (only `--approve password` then).
    pub ui: Option<UiCommand>,
    /// Whether a session shows the indicator (needs `ui`).
    pub indicator: bool,
}

impl Default for Attended {
    fn default() -> Self {
        Self {
            mode: Approval::Password,
            timeout: crate::approve::DEFAULT_TIMEOUT,
            ui: None,
            indicator: false,
        }
    }
}

impl Attended {
    /// Whether these settings can work.
    ///
    /// # Errors
    ///
    /// [`Error::Setting`] for a mode that asks without windows, or a timeout out of range.
    pub fn check(&self) -> Result<(), Error> {
        use crate::approve::{MAX_TIMEOUT, MIN_TIMEOUT};
        if self.mode.asks_user() && self.ui.is_none() {
            return Err(Error::Setting {
                name: "approve",
                why: format!(
                    "`{}` asks the host's user in a window, and this host has none (a build \
                     without the `viewer` feature); use `password`",
                    self.mode
                ),
            });
        }
        if !(MIN_TIMEOUT..=MAX_TIMEOUT).contains(&self.timeout) {
            return Err(Error::Setting {
                name: "approve-timeout",
                why: format!(
                    "{} is not between {}s and {}s",
                    humantime::format_duration(self.timeout),
                    MIN_TIMEOUT.as_secs(),
                    MAX_TIMEOUT.as_secs()
                ),
            });
        }
        Ok(())
    }
}

/// Where a controller comes from, in words for the host's user.
pub(super) fn from_where(remote: SocketAddr) -> String {
    if net::is_virtual(remote) {
        "via the relay".into()
    } else {
        remote.to_string()
    }
}

/// Asks the host's user about `request` (question `id`, already opened in `shared.prompts`);
/// the verdict, which is a denial unless the user accepted in time. Ends early, denied, if the
/// controller leaves.
pub(super) async fn ask(
    shared: &Shared,
    conn: &quinn::Connection,
    id: PromptId,
    request: &PromptRequest,
) -> Verdict {
    let ui = shared.cfg.attended.ui.as_ref();
    let deadline = lock(&shared.prompts)
        .poll_timeout()
        .map_or_else(tokio::time::Instant::now, tokio::time::Instant::from_std);
    let answer = async {
        let ui = ui.ok_or_else(|| "no window process".to_string())?;
        let (_child, mut stdin, stdout) = ui.spawn("prompt").map_err(|e| e.to_string())?;
        stdin
            .write_all(ui::line(request).as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        // stdin stays open: the window closes itself (denying) if the host goes away.
        let line = read_line(stdout).await?;
        let reply = ui::parse_reply::<PromptReply>(&line).map_err(|e| e.to_string())?;
        drop(stdin);
        Ok::<_, String>(reply)
    };
    let verdict = tokio::select! {
        reply = answer => match reply {
            Ok(reply) => lock(&shared.prompts).answer(id, reply.answer(), Instant::now()),
            Err(why) => {
                warn!("the accept/deny window failed: {why}");
                lock(&shared.prompts).gone(id, DenyReason::UiFailed)
            }
        },
        () = tokio::time::sleep_until(deadline) => {
            lock(&shared.prompts).handle_timeout(Instant::now()).map(|(_, v)| v)
        }
        _ = conn.closed() => lock(&shared.prompts).gone(id, DenyReason::ControllerLeft),
    };
    // Whatever happened, the question is closed now (the window process is killed with it).
    lock(&shared.prompts).gone(id, DenyReason::UiFailed);
    verdict.unwrap_or(Verdict::Denied(DenyReason::UiFailed))
}

/// Reads the first line of `stdout`.
async fn read_line(stdout: ChildStdout) -> Result<String, String> {
    bounded_line(&mut BufReader::new(stdout))
        .await?
        .ok_or_else(|| "it ended without an answer".into())
}

/// Reads one line of at most [`ui::MAX_LINE`] bytes (`None` at the end). Not cancel-safe.
async fn bounded_line<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Option<String>, String> {
    let mut buf = Vec::new();
    let n = r
        .take(ui::MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut buf)
        .await
        .map_err(|e| format!("reading it: {e}"))?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(format!(
            "a line longer than {} bytes, or cut short",
            ui::MAX_LINE
        ));
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| "a line that is not UTF-8".into())
}

/// How long after the session's start the indicator opens: a window process starting its
/// renderer takes a few hundred milliseconds of CPU, which on a 2-core machine would otherwise
/// delay the session's first key frame.
const INDICATOR_DELAY: Duration = Duration::from_millis(300);

/// A running session's indicator window: [`Self::end_requested`] resolves when the host's user
/// clicks "End session". Dropping it closes the window.
pub(super) struct Indicator {
    end: Option<tokio::sync::oneshot::Receiver<()>>,
    _task: Option<crate::AbortOnDrop>,
}

impl Indicator {
    /// Shows the indicator for `request` when the host has one, updating its path from `view`.
    pub(super) fn start(
        shared: &Shared,
        request: IndicatorRequest,
        view: Option<watch::Receiver<net::RouteView>>,
    ) -> Self {
        let Some(ui) = shared
            .cfg
            .attended
            .ui
            .clone()
            .filter(|_| shared.cfg.attended.indicator)
        else {
            return Self {
                end: None,
                _task: None,
            };
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            tokio::time::sleep(INDICATOR_DELAY).await;
            match run_indicator(&ui, &request, view, tx).await {
                Ok(()) => {}
                Err(why) => warn!("the session indicator is gone ({why}); the session goes on"),
            }
        });
        Self {
            end: Some(rx),
            _task: Some(crate::AbortOnDrop(task)),
        }
    }

    /// Resolves when the host's user asked to end the session; never without an indicator.
    pub(super) async fn end_requested(&mut self) {
        match self.end.as_mut() {
            Some(rx) => {
                if rx.await.is_err() {
                    // The indicator is gone without a click (logged): the session goes on.
                    self.end = None;
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    }
}

async fn run_indicator(
    ui: &UiCommand,
    request: &IndicatorRequest,
    mut view: Option<watch::Receiver<net::RouteView>>,
    end: tokio::sync::oneshot::Sender<()>,
) -> Result<(), String> {
    let (_child, mut stdin, stdout) = ui.spawn("indicator").map_err(|e| e.to_string())?;
    stdin
        .write_all(ui::line(request).as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    // Read apart from the loop (a read is not cancel-safe; the loop also watches the path).
    let (line_tx, mut lines) = mpsc::channel(4);
    let _reader = crate::AbortOnDrop(tokio::spawn(async move {
        let mut reader = BufReader::new(stdout);
        loop {
            let line = bounded_line(&mut reader).await;
            let more = matches!(line, Ok(Some(_)));
            if line_tx.send(line).await.is_err() || !more {
                return;
            }
        }
    }));
    let mut shown = request.path.clone();
    loop {
        tokio::select! {
            line = lines.recv() => {
                let line = line.ok_or("its reader stopped")??.ok_or("it closed")?;
                match ui::parse_reply::<IndicatorReply>(&line) {
                    Ok(IndicatorReply::End) => {
                        info!("the host's user ended the session (indicator)");
                        let _ = end.send(());
                        return Ok(());
                    }
                    Err(e) => warn!("the session indicator said something else ({e}); ignored"),
                }
            }
            () = net::view_changed(&mut view) => {
                let path = view.as_ref().map(|v| v.borrow().path.to_string()).unwrap_or_default();
                if path != shown {
                    let update = IndicatorUpdate { path: path.clone() };
                    stdin.write_all(ui::line(&update).as_bytes()).await.map_err(|e| e.to_string())?;
                    shown = path;
                }
            }
        }
    }
}
