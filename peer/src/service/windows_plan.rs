//! What `peer service` decides on Windows, as pure functions compiled and unit-tested on every
//! platform: the command lines it writes (the Run value, the service's arguments, the host it
//! starts) and their parsing back, the default paths, the meaning of Win32 error codes, and the
//! [`Supervisor`] that `peer service run` asks what to do next (which session, when to
//! (re)start the host, when to end it).
//!
//! What it does not do: any OS call (registry, service manager, tokens, processes), which are in
//! `windows.rs` and `windows_service.rs` and can only be exercised on Windows. Everything here is
//! tested on Linux and under Wine alike.

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use super::NAME;

/// The per-user (below HKEY_CURRENT_USER) and all-users (below HKEY_LOCAL_MACHINE) key whose
/// values Explorer runs at logon.
pub const RUN_KEY: &str = r"Software\Microsoft\Windows\CurrentVersion\Run";

/// How often `peer service run` looks at the console session and the host, besides the
/// service manager's session events.
pub const POLL: Duration = Duration::from_secs(2);

/// How long `peer service run` waits before starting the host again after it ended.
pub const BACKOFF: Duration = Duration::from_secs(2);

/// The host's log (its stdout and stderr, from `peer service run` or `peer service install`)
/// is moved aside to `host.log.old` when a start finds it larger than this.
pub const LOG_LIMIT: u64 = 8 << 20;

/// The desktop the host is started on: the interactive window station's default desktop.
pub const DESKTOP: &str = r"winsta0\default";

/// Whether `s` is an absolute Windows path (`C:\…` or `\\server\share\…`).
pub fn is_absolute(s: &str) -> bool {
    let b = s.as_bytes();
    (b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'\\')
        || (s.starts_with(r"\\") && !s.starts_with(r"\\?\") && !s.starts_with(r"\\.\"))
}

/// `path` as one checked string: Unicode, absolute, and free of what a Windows command line or
/// the service manager's expanded ImagePath would change (`"`, `%`, control characters).
fn checked<'a>(what: &str, path: &'a Path) -> Result<&'a str, String> {
    let s = path
        .to_str()
        .ok_or_else(|| format!("the {what} {} is not valid Unicode", path.display()))?;
    if s.chars().any(|c| c == '"' || c == '%' || c.is_control()) {
        return Err(format!(
            "the {what} {s:?} cannot go into a Windows command line as it is (a quote, % or \
             control character, which the command line or the service manager would change); \
             use a simpler path"
        ));
    }
    if !is_absolute(s) {
        return Err(format!("the {what} {s:?} is not an absolute path (C:\\…)"));
    }
    Ok(s)
}

/// A program path in quotes, as the first word of a command line (which Windows reads up to the
/// next quote, without escapes).
///
/// # Errors
///
/// A path [`checked`] refuses, or one ending in a backslash (a directory).
pub fn quote_program(program: &Path) -> Result<String, String> {
    let s = checked("program", program)?;
    if s.ends_with('\\') {
        return Err(format!("the program {s:?} ends in a backslash"));
    }
    Ok(format!("\"{s}\""))
}

/// A path in quotes as a later argument: backslashes stay as they are except before the closing
/// quote, where they are doubled (`"C:\\"` is read as `C:\`).
///
/// # Errors
///
/// A path [`checked`] refuses.
pub fn quote_arg(what: &str, path: &Path) -> Result<String, String> {
    let s = checked(what, path)?;
    let trailing = s.len() - s.trim_end_matches('\\').len();
    Ok(format!("\"{s}{}\"", "\\".repeat(trailing)))
}

/// The command that runs the host: the Run value's data, and what `peer service run` starts in
/// the console session. `"C:\…\peer.exe" host --data-dir "C:\…"`.
///
/// # Errors
///
/// A path that cannot be put into a command line as it is, said with the reason.
pub fn host_command_line(program: &Path, data_dir: &Path) -> Result<String, String> {
    Ok(format!(
        "{} host --data-dir {}",
        quote_program(program)?,
        quote_arg("data directory", data_dir)?
    ))
}

/// The service's arguments after the program (the service manager quotes them into the
/// ImagePath): `service run --data-dir DIR`.
///
/// # Errors
///
/// A data directory that cannot be put into a command line as it is.
pub fn service_arguments(data_dir: &Path) -> Result<Vec<String>, String> {
    let dir = checked("data directory", data_dir)?;
    Ok(["service", "run", "--data-dir", dir]
        .map(str::to_owned)
        .to_vec())
}

/// Splits a command line the way programs started with it read it (`CommandLineToArgvW`): the
/// program up to the closing quote or the first blank, without escapes; then arguments where
/// `2n` backslashes before a quote are `n` backslashes and a quote that opens or closes,
/// `2n+1` are `n` backslashes and a literal quote, `""` inside quotes is a literal quote, and
/// other backslashes are literal.
pub fn split_command_line(line: &str) -> Vec<String> {
    let blank = |c: char| c == ' ' || c == '\t';
    let mut chars = line.trim_start_matches(blank).chars().peekable();
    let mut args = Vec::new();
    let mut program = String::new();
    let mut quoted = false;
    for c in chars.by_ref() {
        match c {
            '"' => quoted = !quoted,
            c if blank(c) && !quoted => break,
            c => program.push(c),
        }
    }
    args.push(program);
    loop {
        while chars.next_if(|&c| blank(c)).is_some() {}
        if chars.peek().is_none() {
            return args;
        }
        let (mut arg, mut quoted) = (String::new(), false);
        loop {
            let mut backslashes = 0;
            while chars.next_if_eq(&'\\').is_some() {
                backslashes += 1;
            }
            match chars.peek().copied() {
                Some('"') => {
                    chars.next();
                    arg.extend(std::iter::repeat_n('\\', backslashes / 2));
                    // Escaped by an odd backslash, or doubled inside quotes: a literal quote.
                    let literal =
                        backslashes % 2 == 1 || (quoted && chars.next_if_eq(&'"').is_some());
                    if literal {
                        arg.push('"');
                    } else {
                        quoted = !quoted;
                    }
                }
                Some(c) if blank(c) && !quoted => {
                    arg.extend(std::iter::repeat_n('\\', backslashes));
                    break;
                }
                Some(c) => {
                    chars.next();
                    arg.extend(std::iter::repeat_n('\\', backslashes));
                    arg.push(c);
                }
                None => {
                    arg.extend(std::iter::repeat_n('\\', backslashes));
                    break;
                }
            }
        }
        args.push(arg);
    }
}

/// A host command read back from a Run value or an ImagePath.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCommand {
    /// The program it runs.
    pub program: String,
    /// The subcommand: `host` (the Run value) or `service run` (the service).
    pub command: String,
    /// Its `--data-dir`, if it has one (without, the host uses the user's default).
    pub data_dir: Option<String>,
}

/// Reads back a command that runs `peer host` or `peer service run`; `None` when it runs
/// something else (a value someone else wrote).
pub fn parse_host_command(line: &str) -> Option<HostCommand> {
    let args = split_command_line(line);
    let (program, rest) = args.split_first()?;
    let (command, rest) = match rest {
        [h, rest @ ..] if h == "host" => ("host", rest),
        [s, r, rest @ ..] if s == "service" && r == "run" => ("service run", rest),
        _ => return None,
    };
    let data_dir = rest
        .iter()
        .position(|a| a == "--data-dir")
        .and_then(|i| rest.get(i + 1))
        .cloned();
    Some(HostCommand {
        program: program.clone(),
        command: command.into(),
        data_dir,
    })
}

/// The system service's data directory when none is given: `%ProgramData%\quicdesk-host`
/// (`C:\ProgramData` when the variable is unset or odd).
pub fn system_data_dir(program_data: Option<&str>) -> String {
    let base = program_data
        .filter(|p| is_absolute(p))
        .unwrap_or(r"C:\ProgramData");
    format!("{}\\{NAME}", base.trim_end_matches('\\'))
}

/// A path without the `\\?\` prefix that resolving it (`canonicalize`) adds: `\\?\C:\x` is
/// `C:\x` and `\\?\UNC\server\share` is `\\server\share`, which every program takes.
pub fn strip_verbatim(path: &str) -> String {
    if let Some(unc) = path.strip_prefix(r"\\?\UNC\") {
        return format!(r"\\{unc}");
    }
    match path.strip_prefix(r"\\?\") {
        Some(rest) if is_absolute(rest) => rest.to_owned(),
        _ => path.to_owned(),
    }
}

/// What a Win32 error from the service manager means for `peer service … --system`.
pub fn scm_hint(code: i32) -> Option<&'static str> {
    Some(match code {
        5 => {
            "access denied: the system service needs an Administrator (run this from a prompt \
              started with \"Run as administrator\")"
        }
        1060 => "the service is not installed",
        1072 => {
            "the service is marked for deletion: close the Services window (and anything \
                 else that has it open), or restart Windows, then try again"
        }
        1073 => "the service already exists",
        _ => return None,
    })
}

/// How the host's process ended, from its exit code.
pub fn describe_exit(code: u32) -> String {
    match code {
        0 => "exited (code 0)".into(),
        // NTSTATUS error values: an exception (0xC0000005 access violation, 0xC0000409 a
        // Rust abort, …) or a forced end.
        c if c >= 0xC000_0000 => format!("crashed (status {c:#010X})"),
        c => format!("exited with code {c}"),
    }
}

/// The console's session, from `WTSGetActiveConsoleSessionId`'s raw answer: none while no
/// session is attached to the console (0xFFFFFFFF, during a switch), nor session 0, where only
/// services run and nobody logs on.
pub fn console_session(raw: u32) -> Option<u32> {
    match raw {
        0 | u32::MAX => None,
        s => Some(s),
    }
}

/// Why starting the host in a session failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaunchFailure {
    /// Nobody is logged on in that session (the logon screen): no user token yet.
    NoUser,
    /// The service does not run as LocalSystem, which alone may take a session's user token.
    NotSystem,
    /// Anything else, as the OS said it.
    Other(String),
}

impl LaunchFailure {
    /// From the Win32 error of `WTSQueryUserToken` (or later calls) and its message.
    pub fn from_win32(code: u32, message: &str) -> Self {
        match code {
            1008 => Self::NoUser,    // ERROR_NO_TOKEN
            1314 => Self::NotSystem, // ERROR_PRIVILEGE_NOT_HELD
            _ => Self::Other(format!("{message} (Win32 error {code})")),
        }
    }
}

/// Why the supervisor is waiting instead of running the host; logged once each time it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiting {
    /// No user session is attached to the console.
    NoConsole,
    /// The console's session has nobody logged on yet.
    NoUser(u32),
    /// Starting the host in that session failed.
    Failed(u32, LaunchFailure),
}

impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoConsole => write!(
                f,
                "no user session is attached to the console; waiting for one"
            ),
            Self::NoUser(s) | Self::Failed(s, LaunchFailure::NoUser) => write!(
                f,
                "nobody is logged on at the console (session {s}); waiting for a logon"
            ),
            Self::Failed(s, LaunchFailure::NotSystem) => write!(
                f,
                "cannot start the host in session {s}: taking a session's user token needs \
                 LocalSystem (the service's account is something else); retrying"
            ),
            Self::Failed(s, LaunchFailure::Other(why)) => {
                write!(f, "cannot start the host in session {s}: {why}; retrying")
            }
        }
    }
}

/// What `peer service run` should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing before the next look ([`POLL`] or a session event); with the reason when it is
    /// new, to log once.
    Wait(Option<Waiting>),
    /// Start the host in this session, then tell [`Supervisor::launched`] or
    /// [`Supervisor::launch_failed`].
    Launch(u32),
    /// The console moved to another session: end the host in `running` (then tell
    /// [`Supervisor::stopped`]); the next step starts it in `console`.
    Stop { running: u32, console: u32 },
}

/// Keeps one host running in the console's session: started when someone is logged on at the
/// console, started again [`BACKOFF`] after it ends, and moved when the console changes
/// session (fast user switching, logoff and another logon). Decisions only: the caller makes
/// the OS calls and reports what happened.
#[derive(Debug, Default)]
pub struct Supervisor {
    /// The session the host runs in, while it runs.
    running: Option<u32>,
    /// No start before this (after the host ended or a start failed).
    not_before: Option<Instant>,
    /// The last reason for waiting that was logged.
    waiting: Option<Waiting>,
}

impl Supervisor {
    pub fn new() -> Self {
        Self::default()
    }

    /// The session the host runs in, if it runs.
    pub fn running(&self) -> Option<u32> {
        self.running
    }

    /// What to do now, given `WTSGetActiveConsoleSessionId`'s raw answer.
    pub fn step(&mut self, now: Instant, console_raw: u32) -> Step {
        let console = console_session(console_raw);
        match (self.running, console) {
            (Some(running), Some(console)) if running != console => Step::Stop { running, console },
            // Running where the console is, or the console is between sessions (a switch in
            // progress): leave the host alone.
            (Some(_), _) => Step::Wait(None),
            (None, None) => Step::Wait(self.note(Waiting::NoConsole)),
            (None, Some(_)) if self.not_before.is_some_and(|t| now < t) => Step::Wait(None),
            (None, Some(console)) => Step::Launch(console),
        }
    }

    /// The host started in `session`. Returns the line to log.
    pub fn launched(&mut self, session: u32) -> String {
        self.running = Some(session);
        self.not_before = None;
        self.waiting = None;
        format!("started the host in session {session}")
    }

    /// Starting the host in `session` failed; the next try is one [`POLL`] later (or at the next
    /// session event). Returns the reason when it is new, to log once.
    pub fn launch_failed(
        &mut self,
        now: Instant,
        session: u32,
        why: LaunchFailure,
    ) -> Option<Waiting> {
        self.not_before = Some(now + POLL);
        let waiting = match why {
            LaunchFailure::NoUser => Waiting::NoUser(session),
            why => Waiting::Failed(session, why),
        };
        self.note(waiting)
    }

    /// The host ended by itself with `code`; it starts again after [`BACKOFF`]. Returns the
    /// line to log.
    pub fn exited(&mut self, now: Instant, code: u32) -> String {
        let session = self.running.take();
        self.not_before = Some(now + BACKOFF);
        self.waiting = None;
        let where_ = session.map_or(String::new(), |s| format!(" in session {s}"));
        format!(
            "the host{where_} {}; starting it again in {} s",
            describe_exit(code),
            BACKOFF.as_secs()
        )
    }

    /// The host was ended after a [`Step::Stop`]; the next step starts it where the console is.
    pub fn stopped(&mut self) {
        self.running = None;
        self.not_before = None;
        self.waiting = None;
    }

    /// The service manager reported a session event (logon, logoff, console connect, …):
    /// a start that waited for a logon or a console is tried at the next step, without waiting
    /// for the poll. A backoff after the host ended is kept.
    pub fn session_changed(&mut self) {
        if matches!(
            self.waiting,
            Some(Waiting::NoUser(_) | Waiting::NoConsole | Waiting::Failed(..))
        ) {
            self.not_before = None;
        }
    }

    /// Records a reason for waiting; returns it only when it differs from the last one.
    fn note(&mut self, waiting: Waiting) -> Option<Waiting> {
        if self.waiting.as_ref() == Some(&waiting) {
            return None;
        }
        self.waiting = Some(waiting.clone());
        Some(waiting)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: &str = r"C:\Program Files\quicdesk\peer.exe";

    #[test]
    fn the_host_command_is_quoted_so_windows_reads_back_the_same_paths() {
        let line = host_command_line(
            Path::new(PEER),
            Path::new(r"C:\Users\Ann Lee\AppData\Local\quicdesk\peer"),
        )
        .unwrap();
        assert_eq!(
            line,
            r#""C:\Program Files\quicdesk\peer.exe" host --data-dir "C:\Users\Ann Lee\AppData\Local\quicdesk\peer""#
        );
        assert_eq!(
            split_command_line(&line),
            [
                PEER,
                "host",
                "--data-dir",
                r"C:\Users\Ann Lee\AppData\Local\quicdesk\peer"
            ]
        );
        // A trailing backslash would escape the closing quote: doubled, it reads back as one.
        for dir in [r"D:\", r"C:\data dir\\", r"\\server\share\q"] {
            let line = host_command_line(Path::new(PEER), Path::new(dir)).unwrap();
            assert_eq!(split_command_line(&line)[3], dir, "{line}");
            assert_eq!(
                parse_host_command(&line),
                Some(HostCommand {
                    program: PEER.into(),
                    command: "host".into(),
                    data_dir: Some(dir.into()),
                })
            );
        }
    }

    #[test]
    fn paths_a_command_line_would_change_are_refused_not_escaped() {
        for bad in [
            r#"C:\a"b"#,
            r"C:\50%off",
            r"C:\%APPDATA%\q",
            "C:\\a\nb",
            r"relative\dir",
            r"\\?\C:\verbatim",
        ] {
            let err = host_command_line(Path::new(PEER), Path::new(bad)).unwrap_err();
            assert!(err.contains("data directory"), "{bad:?}: {err}");
            assert!(service_arguments(Path::new(bad)).is_err(), "{bad:?}");
        }
        assert!(host_command_line(Path::new(r"C:\a\"), Path::new(r"C:\d")).is_err());
        assert!(host_command_line(Path::new(r#"C:\a"\peer.exe"#), Path::new(r"C:\d")).is_err());
    }

    #[test]
    fn the_service_runs_itself_with_the_system_data_directory() {
        assert_eq!(
            service_arguments(Path::new(r"C:\ProgramData\quicdesk-host")).unwrap(),
            [
                "service",
                "run",
                "--data-dir",
                r"C:\ProgramData\quicdesk-host"
            ]
        );
        assert_eq!(
            parse_host_command(
                r#""C:\Program Files\quicdesk\peer.exe" service run --data-dir C:\ProgramData\quicdesk-host"#
            ),
            Some(HostCommand {
                program: PEER.into(),
                command: "service run".into(),
                data_dir: Some(r"C:\ProgramData\quicdesk-host".into()),
            })
        );
        assert_eq!(system_data_dir(None), r"C:\ProgramData\quicdesk-host");
        assert_eq!(system_data_dir(Some(r"D:\PD\")), r"D:\PD\quicdesk-host");
        assert_eq!(system_data_dir(Some("")), r"C:\ProgramData\quicdesk-host");
        assert_eq!(
            system_data_dir(Some("relative")),
            r"C:\ProgramData\quicdesk-host"
        );
    }

    #[test]
    fn command_lines_split_as_windows_splits_them() {
        let split = |s: &str| split_command_line(s);
        assert_eq!(split(r#""C:\a b\p.exe" x"#), [r"C:\a b\p.exe", "x"]);
        assert_eq!(split(r"C:\p.exe  x   y "), [r"C:\p.exe", "x", "y"]);
        // The program takes no escapes; the arguments do.
        assert_eq!(split(r#""C:\d\"p x"#), [r"C:\d\p", "x"]);
        assert_eq!(split(r#"p a\\\"b"#), ["p", r#"a\"b"#]);
        assert_eq!(split(r#"p "a\\" b"#), ["p", r"a\", "b"]);
        assert_eq!(split(r#"p a\b\\c"#), ["p", r"a\b\\c"]);
        assert_eq!(split(r#"p "a ""b"" c""#), ["p", r#"a "b" c"#]);
        assert_eq!(split(r#"p "" x"#), ["p", "", "x"]);
        assert_eq!(split("p"), ["p"]);
        // Someone else's value is not ours.
        assert_eq!(parse_host_command(r#""C:\x\other.exe" --tray"#), None);
        assert_eq!(
            parse_host_command(r#""C:\q\peer.exe" host"#),
            Some(HostCommand {
                program: r"C:\q\peer.exe".into(),
                command: "host".into(),
                data_dir: None,
            })
        );
    }

    #[test]
    fn resolved_paths_lose_the_verbatim_prefix() {
        assert_eq!(
            strip_verbatim(r"\\?\C:\Program Files\q\peer.exe"),
            r"C:\Program Files\q\peer.exe"
        );
        assert_eq!(
            strip_verbatim(r"\\?\UNC\srv\share\peer.exe"),
            r"\\srv\share\peer.exe"
        );
        assert_eq!(strip_verbatim(r"C:\x\peer.exe"), r"C:\x\peer.exe");
        assert_eq!(
            strip_verbatim(r"\\?\Volume{1}\peer.exe"),
            r"\\?\Volume{1}\peer.exe"
        );
        assert_eq!(strip_verbatim("/usr/bin/peer"), "/usr/bin/peer");
    }

    #[test]
    fn error_codes_and_exit_codes_are_said_plainly() {
        assert!(scm_hint(5).unwrap().contains("Administrator"));
        assert!(scm_hint(1072).unwrap().contains("marked for deletion"));
        assert_eq!(scm_hint(2), None);
        assert_eq!(describe_exit(0), "exited (code 0)");
        assert_eq!(describe_exit(3), "exited with code 3");
        assert_eq!(describe_exit(0xC000_0005), "crashed (status 0xC0000005)");
        assert_eq!(LaunchFailure::from_win32(1008, "x"), LaunchFailure::NoUser);
        assert_eq!(
            LaunchFailure::from_win32(1314, "x"),
            LaunchFailure::NotSystem
        );
        assert_eq!(
            LaunchFailure::from_win32(87, "The parameter is incorrect."),
            LaunchFailure::Other("The parameter is incorrect. (Win32 error 87)".into())
        );
        assert_eq!(console_session(u32::MAX), None);
        assert_eq!(console_session(0), None);
        assert_eq!(console_session(1), Some(1));
    }

    #[test]
    fn before_anyone_logs_on_the_supervisor_waits_and_says_so_once() {
        let t0 = Instant::now();
        let mut s = Supervisor::new();
        // No session at the console: one log line, then quiet.
        assert_eq!(s.step(t0, u32::MAX), Step::Wait(Some(Waiting::NoConsole)));
        assert_eq!(s.step(t0 + POLL, u32::MAX), Step::Wait(None));
        assert_eq!(s.step(t0 + POLL, 0), Step::Wait(None));
        // Session 1 shows the logon screen: the start fails for want of a user token.
        let t1 = t0 + 2 * POLL;
        assert_eq!(s.step(t1, 1), Step::Launch(1));
        let news = s.launch_failed(t1, 1, LaunchFailure::NoUser);
        assert_eq!(news, Some(Waiting::NoUser(1)));
        assert!(news.unwrap().to_string().contains("nobody is logged on"));
        // Tried again each poll, logged no more.
        assert_eq!(s.step(t1 + POLL / 2, 1), Step::Wait(None));
        assert_eq!(s.step(t1 + POLL, 1), Step::Launch(1));
        assert_eq!(s.launch_failed(t1 + POLL, 1, LaunchFailure::NoUser), None);
        // A logon event tries at once.
        s.session_changed();
        assert_eq!(s.step(t1 + POLL, 1), Step::Launch(1));
        assert_eq!(s.launched(1), "started the host in session 1");
        assert_eq!(s.running(), Some(1));
        assert_eq!(s.step(t1 + 2 * POLL, 1), Step::Wait(None));
    }

    #[test]
    fn the_host_is_restarted_after_a_backoff_and_follows_the_console() {
        let t0 = Instant::now();
        let mut s = Supervisor::new();
        assert_eq!(s.step(t0, 1), Step::Launch(1));
        s.launched(1);
        // It crashes: started again BACKOFF later, not before, even on a session event.
        let said = s.exited(t0, 0xC000_0409);
        assert!(
            said.contains("session 1 crashed") && said.contains("again in 2 s"),
            "{said}"
        );
        assert_eq!(s.step(t0 + BACKOFF / 2, 1), Step::Wait(None));
        s.session_changed();
        assert_eq!(s.step(t0 + BACKOFF / 2, 1), Step::Wait(None));
        assert_eq!(s.step(t0 + BACKOFF, 1), Step::Launch(1));
        s.launched(1);
        // While the console is between sessions the host is left alone.
        assert_eq!(s.step(t0 + BACKOFF, u32::MAX), Step::Wait(None));
        // Another user's session takes the console: the host moves there at once.
        assert_eq!(
            s.step(t0 + BACKOFF, 2),
            Step::Stop {
                running: 1,
                console: 2
            }
        );
        s.stopped();
        assert_eq!(s.step(t0 + BACKOFF, 2), Step::Launch(2));
        s.launched(2);
        assert_eq!(s.step(t0 + BACKOFF, 2), Step::Wait(None));
    }

    #[test]
    fn a_failing_start_is_logged_once_per_reason_and_retried() {
        let t0 = Instant::now();
        let mut s = Supervisor::new();
        assert_eq!(s.step(t0, 1), Step::Launch(1));
        let why = LaunchFailure::Other(
            "The system cannot find the file specified. (Win32 error 2)".into(),
        );
        let news = s.launch_failed(t0, 1, why.clone()).unwrap();
        assert!(news.to_string().contains("cannot find the file"), "{news}");
        assert_eq!(s.step(t0 + POLL, 1), Step::Launch(1));
        assert_eq!(s.launch_failed(t0 + POLL, 1, why), None);
        assert_eq!(s.step(t0 + 2 * POLL, 1), Step::Launch(1));
        let news = s
            .launch_failed(t0 + 2 * POLL, 1, LaunchFailure::NotSystem)
            .unwrap();
        assert!(news.to_string().contains("LocalSystem"), "{news}");
    }
}
