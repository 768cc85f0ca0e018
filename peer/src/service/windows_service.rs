//! `peer service run`: the body of the Windows service `quicdesk-host` (installed by `peer
//! service install --system`, run by the service manager as LocalSystem). It enters the service
//! control dispatcher, reports Running, and keeps one `peer host --data-dir DIR` running in the
//! session of whoever is logged on at the console:
//!
//! ```text
//!  WTSGetActiveConsoleSessionId → WTSQueryUserToken (LocalSystem only) → CreateEnvironmentBlock
//!  → CreateProcessAsUserW(token, "peer.exe" host --data-dir DIR, desktop winsta0\default,
//!                         stdout/stderr appended to DIR\host.log, the only handle it
//!                         inherits; no window)
//! ```
//!
//! What to do and when (start, restart [`BACKOFF`] after an exit, move to another session when
//! the console changes, wait while nobody is logged on) is `windows_plan::Supervisor`'s, tested
//! on every platform; this file only makes the calls. It looks every [`POLL`] and at each
//! session event (SERVICE_ACCEPT_SESSIONCHANGE). Stop or shutdown: the host is terminated, then
//! Stopped is reported. Its own lines go to DIR\service.log.
//!
//! What it does not do: share the logon screen or UAC's secure desktop (the host runs as the
//! user, before logon there is no user token and it waits), end the host gracefully (it is
//! terminated, not asked to end, and processes the host started are not ended with it), or run
//! outside the service manager (started by hand it says so and exits).
//!
//! Tested under Wine 10 by `cargo xtask windows test service`: the service starts and reports
//! Running, WTSGetActiveConsoleSessionId says 1 and WTSQueryUserToken gives Wine's token, the
//! host starts with its output in host.log, registers and serves a controller, is started
//! again 2 s after it is killed, and is ended on stop; by hand: the service starts at
//! `wineboot` (boot). Under Wine a process started with a desktop in another window station
//! gets it on its main thread only (its other threads stay on the service's desktop, and Wine
//! refuses their SendInput), so the host's input is not tested there; Windows gives every
//! thread the process's desktop.
//!
//! Not tried, because Wine has neither: the logon screen before anyone logs on (no user token:
//! ERROR_NO_TOKEN), a second session and the session events (fast user switching), or a
//! service account other than LocalSystem; those decisions are covered by `windows_plan`'s
//! tests only and need a real Windows to run whole.

use std::ffi::{OsString, c_void};
use std::fs::File;
use std::io::Write as _;
use std::os::windows::io::AsRawHandle;
use std::path::{Path, PathBuf};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant, SystemTime};

use ::windows::Win32::Foundation::{
    HANDLE, HANDLE_FLAG_INHERIT, SetHandleInformation, WAIT_OBJECT_0, WIN32_ERROR,
};
use ::windows::Win32::System::Environment::{CreateEnvironmentBlock, DestroyEnvironmentBlock};
use ::windows::Win32::System::RemoteDesktop::{WTSGetActiveConsoleSessionId, WTSQueryUserToken};
use ::windows::Win32::System::Threading::{
    CREATE_NO_WINDOW, CREATE_UNICODE_ENVIRONMENT, CreateProcessAsUserW,
    DeleteProcThreadAttributeList, EXTENDED_STARTUPINFO_PRESENT, GetExitCodeProcess,
    InitializeProcThreadAttributeList, LPPROC_THREAD_ATTRIBUTE_LIST,
    PROC_THREAD_ATTRIBUTE_HANDLE_LIST, PROCESS_INFORMATION, STARTF_USESTDHANDLES, STARTUPINFOEXW,
    STARTUPINFOW, TerminateProcess, UpdateProcThreadAttribute, WaitForSingleObject,
};
use ::windows::core::{Owned, PCWSTR, PWSTR};
use windows_service::service::{
    ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{
    self, ServiceControlHandlerResult, ServiceStatusHandle,
};
use windows_service::{define_windows_service, service_dispatcher};

use super::NAME;
use super::windows::open_log;
use super::windows_plan::{
    BACKOFF, DESKTOP, LaunchFailure, POLL, Step, Supervisor, host_command_line,
};

/// The data directory `peer service run --data-dir` was given, for the service's thread.
static DATA_DIR: OnceLock<PathBuf> = OnceLock::new();

/// The service manager's "this process is not a service" (started by hand).
const ERROR_FAILED_SERVICE_CONTROLLER_CONNECT: i32 = 1063;

define_windows_service!(ffi_service_main, service_main);

/// Enters the service control dispatcher, which runs the service on its own thread and returns
/// when it has stopped.
pub fn run(data_dir: &Path) -> Result<(), String> {
    let _ = DATA_DIR.set(data_dir.to_path_buf());
    service_dispatcher::start(NAME, ffi_service_main).map_err(|e| match e {
        windows_service::Error::Winapi(io)
            if io.raw_os_error() == Some(ERROR_FAILED_SERVICE_CONTROLLER_CONNECT) =>
        {
            format!(
                "`peer service run` is the service {NAME}'s body, started by the service \
                 manager, not by hand: `peer service install --system` installs it, `sc start \
                 {NAME}` starts it ({io})"
            )
        }
        e => format!("entering the service dispatcher: {e}"),
    })
}

/// What the control handler tells the service's loop.
enum Control {
    Stop,
    Session,
}

fn service_main(_arguments: Vec<OsString>) {
    let data_dir = DATA_DIR
        .get()
        .cloned()
        .unwrap_or_else(super::system_data_dir);
    let log = Log::open(&data_dir);
    let (tx, rx) = mpsc::channel();
    let handler = move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            let _ = tx.send(Control::Stop);
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::SessionChange(_) => {
            let _ = tx.send(Control::Session);
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let status = match service_control_handler::register(NAME, handler) {
        Ok(status) => status,
        Err(e) => {
            // windows-service's error hides the OS error in its source.
            let os = std::error::Error::source(&e).map_or(String::new(), |s| format!(": {s}"));
            log.line(&format!("registering with the service manager: {e}{os}"));
            return;
        }
    };
    let exit = match serve(&status, &rx, &data_dir, &log) {
        Ok(()) => ServiceExitCode::NO_ERROR,
        Err(e) => {
            log.line(&format!("the service failed: {e}"));
            ServiceExitCode::ServiceSpecific(1)
        }
    };
    log.line("stopped");
    if let Err(e) = report(&status, ServiceState::Stopped, exit) {
        log.line(&e);
    }
}

/// The service's own log, DIR\service.log (a service has no console; the lines also go to
/// tracing).
struct Log(Option<File>);

impl Log {
    fn open(data_dir: &Path) -> Self {
        Self(open_log(data_dir, "service.log").ok())
    }

    fn line(&self, message: &str) {
        tracing::info!("{message}");
        if let Some(mut file) = self.0.as_ref() {
            let now = humantime::format_rfc3339_seconds(SystemTime::now());
            let _ = writeln!(file, "{now} {message}");
        }
    }
}

fn report(
    status: &ServiceStatusHandle,
    state: ServiceState,
    exit_code: ServiceExitCode,
) -> Result<(), String> {
    let controls_accepted = if state == ServiceState::Running {
        ServiceControlAccept::STOP
            | ServiceControlAccept::SHUTDOWN
            | ServiceControlAccept::SESSION_CHANGE
    } else {
        ServiceControlAccept::empty()
    };
    status
        .set_service_status(ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted,
            exit_code,
            checkpoint: 0,
            wait_hint: if state == ServiceState::StopPending {
                Duration::from_secs(10)
            } else {
                Duration::ZERO
            },
            process_id: None,
        })
        .map_err(|e| format!("reporting {state:?} to the service manager: {e}"))
}

/// Reports Running, keeps the host running until told to stop, then ends it. The caller reports
/// Stopped.
fn serve(
    status: &ServiceStatusHandle,
    controls: &mpsc::Receiver<Control>,
    data_dir: &Path,
    log: &Log,
) -> Result<(), String> {
    let program = std::env::current_exe().map_err(|e| format!("locating this program: {e}"))?;
    let command = host_command_line(&super::windows::program_path(program), data_dir)?;
    report(status, ServiceState::Running, ServiceExitCode::NO_ERROR)?;
    log.line(&format!(
        "running: keeps `{command}` running in the console's session (looks every {} s and at \
         each session event; restarts it {} s after it ends)",
        POLL.as_secs(),
        BACKOFF.as_secs()
    ));

    let mut supervisor = Supervisor::new();
    let mut child: Option<Child> = None;
    loop {
        let now = Instant::now();
        if let Some(code) = child.as_ref().and_then(Child::exit_code) {
            child = None;
            log.line(&supervisor.exited(now, code));
        }
        match supervisor.step(now, console_session()) {
            Step::Wait(news) => {
                if let Some(why) = news {
                    log.line(&why.to_string());
                }
            }
            Step::Launch(session) => match launch(session, &command, data_dir) {
                Ok(c) => {
                    let pid = c.pid;
                    child = Some(c);
                    log.line(&format!("{} (process {pid})", supervisor.launched(session)));
                }
                Err(why) => {
                    if let Some(news) = supervisor.launch_failed(now, session, why) {
                        log.line(&news.to_string());
                    }
                }
            },
            Step::Stop { running, console } => {
                log.line(&format!(
                    "the console moved from session {running} to session {console}: ending \
                     the host in session {running}"
                ));
                if let Some(c) = child.take() {
                    c.terminate();
                }
                supervisor.stopped();
                continue;
            }
        }
        match controls.recv_timeout(POLL) {
            Ok(Control::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Ok(Control::Session) => supervisor.session_changed(),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }

    if let Err(e) = report(status, ServiceState::StopPending, ServiceExitCode::NO_ERROR) {
        log.line(&e);
    }
    if let Some(c) = child.take() {
        log.line(&format!(
            "stopping: ending the host (process {}) in session {}",
            c.pid,
            supervisor.running().unwrap_or_default()
        ));
        c.terminate();
    }
    Ok(())
}

/// The session attached to the console, raw (0xFFFFFFFF when none).
fn console_session() -> u32 {
    // SAFETY: takes nothing, returns a number.
    unsafe { WTSGetActiveConsoleSessionId() }
}

/// The host's process.
struct Child {
    process: Owned<HANDLE>,
    pid: u32,
}

impl Child {
    /// Its exit code once it has ended.
    fn exit_code(&self) -> Option<u32> {
        // SAFETY: the handle is our open process handle; a zero timeout only polls.
        if unsafe { WaitForSingleObject(*self.process, 0) } != WAIT_OBJECT_0 {
            return None;
        }
        let mut code = 0u32;
        // SAFETY: as above; `code` is a valid place for the exit code.
        match unsafe { GetExitCodeProcess(*self.process, &mut code) } {
            Ok(()) => Some(code),
            Err(_) => Some(u32::MAX),
        }
    }

    /// Ends it and waits (at most 5 s) until it has.
    fn terminate(self) {
        // SAFETY: the handle is our open process handle, with the all-access rights
        // CreateProcessAsUserW gives its creator; Owned closes it afterwards.
        unsafe {
            let _ = TerminateProcess(*self.process, 1);
            WaitForSingleObject(*self.process, 5000);
        }
    }
}

/// An environment block from CreateEnvironmentBlock, destroyed on drop.
struct Environment(*mut c_void);

impl Drop for Environment {
    fn drop(&mut self) {
        // SAFETY: the block came from CreateEnvironmentBlock and is destroyed once, here.
        let _ = unsafe { DestroyEnvironmentBlock(self.0) };
    }
}

/// A process attribute list naming the only handles a new process inherits
/// (PROC_THREAD_ATTRIBUTE_HANDLE_LIST): the host gets the log file's handle and nothing else of
/// this LocalSystem process, whatever else in it (the system, a library) made inheritable.
struct InheritOnly {
    /// The list's memory (pointer-aligned), which the list lives in.
    memory: Vec<usize>,
    /// The handles it names; the list points into this, so it is boxed and kept.
    handles: Box<[HANDLE]>,
}

impl InheritOnly {
    fn new(handles: &[HANDLE]) -> Result<Self, LaunchFailure> {
        let mut size = 0usize;
        // SAFETY: with no list the call only writes the size it needs to `size` (and fails with
        // ERROR_INSUFFICIENT_BUFFER, which is expected).
        let _ = unsafe { InitializeProcThreadAttributeList(None, 1, None, &mut size) };
        let mut memory = vec![0usize; size.div_ceil(std::mem::size_of::<usize>()).max(1)];
        // SAFETY: `memory` has at least `size` writable bytes, pointer-aligned.
        unsafe {
            InitializeProcThreadAttributeList(
                Some(LPPROC_THREAD_ATTRIBUTE_LIST(memory.as_mut_ptr().cast())),
                1,
                None,
                &mut size,
            )
        }
        .map_err(|e| failure("InitializeProcThreadAttributeList", &e))?;
        // From here on the list is initialised, and dropping `list` deletes it.
        let mut list = Self {
            memory,
            handles: handles.into(),
        };
        // SAFETY: the list was initialised for one attribute; the value is the array of
        // handles, boxed in `list` so that it outlives every use of the list, with its size in
        // bytes.
        unsafe {
            UpdateProcThreadAttribute(
                list.raw(),
                0,
                PROC_THREAD_ATTRIBUTE_HANDLE_LIST as usize,
                Some(list.handles.as_ptr().cast()),
                std::mem::size_of_val(&*list.handles),
                None,
                None,
            )
        }
        .map_err(|e| failure("UpdateProcThreadAttribute", &e))?;
        Ok(list)
    }

    fn raw(&mut self) -> LPPROC_THREAD_ATTRIBUTE_LIST {
        LPPROC_THREAD_ATTRIBUTE_LIST(self.memory.as_mut_ptr().cast())
    }
}

impl Drop for InheritOnly {
    fn drop(&mut self) {
        // SAFETY: a list is only ever made from initialised memory (see `new`), and is deleted
        // once, here.
        unsafe { DeleteProcThreadAttributeList(self.raw()) };
    }
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(Some(0)).collect()
}

/// A failed call as the supervisor takes it.
fn failure(what: &str, e: &::windows::core::Error) -> LaunchFailure {
    let code = WIN32_ERROR::from_error(e).map_or(e.code().0.cast_unsigned(), |w| w.0);
    LaunchFailure::from_win32(code, &format!("{what}: {}", e.message()))
}

/// Starts `command` as the user logged on in `session`, on their interactive desktop, with
/// their environment, its output appended to DIR\host.log.
fn launch(session: u32, command: &str, data_dir: &Path) -> Result<Child, LaunchFailure> {
    let mut token = HANDLE::default();
    // SAFETY: `token` is a valid place for the handle the call returns.
    unsafe { WTSQueryUserToken(session, &mut token) }
        .map_err(|e| failure("WTSQueryUserToken", &e))?;
    // SAFETY: the token handle was just returned to us; Owned closes it once, on drop.
    let token = unsafe { Owned::new(token) };

    let mut block: *mut c_void = std::ptr::null_mut();
    // SAFETY: `block` is a valid place for the block's address; the token is a primary token
    // with the query and duplicate rights WTSQueryUserToken's tokens have.
    unsafe { CreateEnvironmentBlock(&mut block, Some(*token), false) }
        .map_err(|e| failure("CreateEnvironmentBlock", &e))?;
    let environment = Environment(block);

    let log = open_log(data_dir, "host.log").map_err(|e| {
        LaunchFailure::Other(format!("{}: {e}", data_dir.join("host.log").display()))
    })?;
    let log_handle = HANDLE(log.as_raw_handle());
    // SAFETY: `log_handle` is the open file's, valid while `log` lives (past the
    // CreateProcessAsUserW below); making it inheritable lets the host write to it.
    unsafe { SetHandleInformation(log_handle, HANDLE_FLAG_INHERIT.0, HANDLE_FLAG_INHERIT) }
        .map_err(|e| failure("SetHandleInformation", &e))?;

    let mut inherit = InheritOnly::new(&[log_handle])?;
    let mut desktop = wide(DESKTOP);
    let mut command_line = wide(command);
    let startup = STARTUPINFOEXW {
        StartupInfo: STARTUPINFOW {
            cb: u32::try_from(std::mem::size_of::<STARTUPINFOEXW>()).unwrap_or(u32::MAX),
            lpDesktop: PWSTR(desktop.as_mut_ptr()),
            dwFlags: STARTF_USESTDHANDLES,
            hStdInput: HANDLE::default(),
            hStdOutput: log_handle,
            hStdError: log_handle,
            ..Default::default()
        },
        lpAttributeList: inherit.raw(),
    };
    let mut info = PROCESS_INFORMATION::default();
    // SAFETY: every pointer is to a live local for the whole call: the command line is a
    // mutable NUL-terminated buffer (the call may write to it), the desktop name is
    // NUL-terminated, the environment is CreateEnvironmentBlock's Unicode block (hence
    // CREATE_UNICODE_ENVIRONMENT), `startup` is a STARTUPINFOEXW sized as one (hence
    // EXTENDED_STARTUPINFO_PRESENT) whose attribute list, alive in `inherit`, limits the
    // inherited handles to the log file's, and `info` is the structure the call fills.
    unsafe {
        CreateProcessAsUserW(
            Some(*token),
            PCWSTR::null(),
            Some(PWSTR(command_line.as_mut_ptr())),
            None,
            None,
            true,
            CREATE_NO_WINDOW | CREATE_UNICODE_ENVIRONMENT | EXTENDED_STARTUPINFO_PRESENT,
            Some(environment.0.cast_const()),
            PCWSTR::null(),
            &startup.StartupInfo,
            &mut info,
        )
    }
    .map_err(|e| failure("CreateProcessAsUserW", &e))?;
    // SAFETY: both handles were just returned to us; each Owned closes its handle once.
    let (process, _thread) = unsafe { (Owned::new(info.hProcess), Owned::new(info.hThread)) };
    Ok(Child {
        process,
        pid: info.dwProcessId,
    })
}
