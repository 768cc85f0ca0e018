//! `peer service` on Windows, the OS calls only (the decisions are in `windows_plan`):
//!
//! ```text
//!  peer service install     → HKCU\Software\Microsoft\Windows\CurrentVersion\Run
//!                             quicdesk-host = "…\peer.exe" host --data-dir "…"; and starts it
//!                             now, windowless, its output appended to DATA_DIR\host.log
//!  peer service uninstall   → that value removed (a host started from it keeps running)
//!  peer service status      → the value and what it runs
//!  … --system (Administrator) → the auto-start service quicdesk-host (LocalSystem), running
//!                             `peer service run --data-dir DIR` (windows_service.rs), which
//!                             keeps `peer host` running in the console's session
//! ```
//!
//! Per user no privilege is needed and the host runs in the user's own logon, from logon on.
//! With `--system` the host is started by the service for whoever is logged on at the console
//! (it runs as that user: the data directory, default `%ProgramData%\quicdesk-host`, must be
//! readable by them, which makes its key and password verifier readable by every local user
//! who logs on).
//!
//! What this does not do: stop a host started from the Run value (it has no record of it; log
//! off, or end peer.exe), share the logon screen or UAC prompts (the host runs as the user, on
//! `winsta0\default`), or take `--root` (that is for systemd units).
//!
//! Tested under Wine 10 by `cargo xtask windows test service` (the unit tests cover only
//! `windows_plan`): the Run value is written (`reg query` reads it), reported and removed, and
//! the host it starts runs windowless with its log and registers; the service is created,
//! started, reported running (`sc query` agrees), stopped with its host and deleted. By hand:
//! `--root` is refused, `wineboot` starts the host from the value, an installed service is
//! updated. Not shown under Wine: that the host no longer inherits the standard handles of
//! `install` (Wine's own processes keep the caller's pipes open anyway).
//! Not tried: a user without administrator rights (Wine's user is an administrator), and
//! Explorer's logon start on a real Windows: peer.exe is a console program, so Windows gives
//! it a console window of its own there; `peer host` lets such a console go at once
//! ([`detach_from_own_console`]) and logs to `host.log`, so no window stays open for the user
//! to close.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ::windows::Win32::Foundation::{ERROR_FILE_NOT_FOUND, ERROR_MORE_DATA, WIN32_ERROR};
use ::windows::Win32::System::Registry::{
    HKEY, HKEY_CURRENT_USER, HKEY_LOCAL_MACHINE, KEY_SET_VALUE, REG_OPTION_NON_VOLATILE, REG_SZ,
    RRF_RT_REG_SZ, RegCreateKeyExW, RegDeleteValueW, RegGetValueW, RegOpenKeyExW, RegSetValueExW,
};
use ::windows::core::{Owned, PCWSTR};
use windows_service::service::{
    ServiceAccess, ServiceAction, ServiceActionType, ServiceErrorControl, ServiceFailureActions,
    ServiceFailureResetPeriod, ServiceInfo, ServiceStartType, ServiceState, ServiceType,
};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};

use super::windows_plan::{
    self, HostCommand, LOG_LIMIT, RUN_KEY, host_command_line, parse_host_command, quote_program,
    scm_hint, service_arguments,
};
use super::{Install, NAME, Scope};

const ROOT_NOT_HERE: &str =
    "--root writes systemd units below a directory; it has no meaning on Windows";

/// The system service's data directory when none is given: `%ProgramData%\quicdesk-host`.
pub fn system_data_dir() -> PathBuf {
    windows_plan::system_data_dir(std::env::var("ProgramData").ok().as_deref()).into()
}

/// The program as the Run value and the service name it: without the `\\?\` prefix.
pub fn program_path(exe: PathBuf) -> PathBuf {
    match exe.to_str() {
        Some(s) => windows_plan::strip_verbatim(s).into(),
        None => exe,
    }
}

/// `peer service run`: the service's body (`windows_service.rs`).
pub fn run(data_dir: &Path) -> Result<(), String> {
    super::windows_service::run(data_dir)
}

/// The host's log in `data_dir`, opened for appending; moved aside to `host.log.old` first when
/// it has grown past [`LOG_LIMIT`]. Shared with the service, which hands it to the host too.
pub(super) fn open_log(data_dir: &Path, name: &str) -> std::io::Result<File> {
    let path = data_dir.join(name);
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > LOG_LIMIT) {
        let _ = std::fs::rename(&path, data_dir.join(format!("{name}.old")));
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// A host whose console was made for it alone (Explorer running the logon start, a double
/// click) lets that console go, so no window stays on the desktop whose closing would end the
/// host, and sends its standard output and error (its log) to `host.log` in `data_dir`
/// instead. A host started from a terminal shares that console and keeps it. Returns whether
/// it detached.
///
/// # Errors
///
/// The log cannot be opened, or Windows refuses to let the console go.
pub fn detach_from_own_console(data_dir: &Path) -> std::io::Result<bool> {
    use ::windows::Win32::Foundation::HANDLE;
    use ::windows::Win32::System::Console::{
        FreeConsole, GetConsoleProcessList, STD_ERROR_HANDLE, STD_OUTPUT_HANDLE, SetStdHandle,
    };
    use std::os::windows::io::IntoRawHandle;
    let mut ids = [0u32; 2];
    // SAFETY: the buffer and its length; the call writes at most that many ids.
    let attached = unsafe { GetConsoleProcessList(&mut ids) };
    // 0: no console at all (the service's host, output already redirected); 2 or more: a
    // terminal's console, shared with the shell.
    if attached != 1 {
        return Ok(false);
    }
    std::fs::create_dir_all(data_dir)?;
    let log = open_log(data_dir, "host.log")?;
    let err = log.try_clone()?;
    // SAFETY: FreeConsole detaches this process from its console; the log handles are given
    // to the standard handles for the rest of the process's life (into_raw_handle keeps them
    // open), and Rust's stdout/stderr look the standard handles up on each write.
    unsafe {
        FreeConsole().map_err(std::io::Error::other)?;
        SetStdHandle(STD_OUTPUT_HANDLE, HANDLE(log.into_raw_handle()))
            .map_err(std::io::Error::other)?;
        SetStdHandle(STD_ERROR_HANDLE, HANDLE(err.into_raw_handle()))
            .map_err(std::io::Error::other)?;
    }
    Ok(true)
}

/// Installs the Run value or the system service; see the module's documentation.
pub fn install(i: &Install) -> Result<String, String> {
    if i.root.is_some() {
        return Err(ROOT_NOT_HERE.into());
    }
    match i.scope {
        Scope::User => install_user(i),
        Scope::System => install_system(i),
    }
}

/// Removes the Run value, or stops and deletes the system service.
pub fn uninstall(root: Option<&Path>, _home: &Path, scope: Scope) -> Result<String, String> {
    if root.is_some() {
        return Err(ROOT_NOT_HERE.into());
    }
    match scope {
        Scope::User => uninstall_user(),
        Scope::System => uninstall_system(),
    }
}

/// The Run value and what it runs, or the system service's configuration and state.
pub fn status(root: Option<&Path>, _home: &Path, scope: Scope) -> String {
    if root.is_some() {
        return ROOT_NOT_HERE.into();
    }
    let said = match scope {
        Scope::User => status_user(),
        Scope::System => status_system(),
    };
    said.unwrap_or_else(|e| format!("unknown: {e}"))
}

// ---- per user: the Run value ----------------------------------------------------------------

fn run_value_name(root: HKEY) -> String {
    let hive = if root == HKEY_LOCAL_MACHINE {
        "HKEY_LOCAL_MACHINE"
    } else {
        "HKEY_CURRENT_USER"
    };
    format!(r"{hive}\{RUN_KEY}\{NAME}")
}

fn install_user(i: &Install) -> Result<String, String> {
    let line = host_command_line(&i.program, &i.data_dir)?;
    let before = get_run_value(HKEY_CURRENT_USER)?;
    set_run_value(&line)?;
    let mut said = format!("wrote {} = {line}", run_value_name(HKEY_CURRENT_USER));
    if before.as_deref() == Some(line.as_str()) {
        said.push_str(
            "\nit was already there, so no second host is started now; if none runs, log off and \
             on again",
        );
    } else {
        start_detached(&i.program, &i.data_dir)?;
        said.push_str(&format!(
            "\nstarted the host; it starts at each logon from now on; its log: {}",
            i.data_dir.join("host.log").display()
        ));
    }
    if let Some(all) = get_run_value(HKEY_LOCAL_MACHINE)? {
        said.push_str(&format!(
            "\nnote: the installer also starts a host for every user at logon ({} = {all}); \
             with both, two hosts start: keep one",
            run_value_name(HKEY_LOCAL_MACHINE)
        ));
    }
    Ok(said)
}

fn uninstall_user() -> Result<String, String> {
    let before = get_run_value(HKEY_CURRENT_USER)?;
    if !delete_run_value()? {
        return Ok(format!(
            "not installed ({} does not exist)",
            run_value_name(HKEY_CURRENT_USER)
        ));
    }
    Ok(format!(
        "removed {}{}; a host started from it keeps running until you log off or end it \
         (peer.exe in the Task Manager)",
        run_value_name(HKEY_CURRENT_USER),
        before.map_or(String::new(), |b| format!(" (it ran {b})"))
    ))
}

fn status_user() -> Result<String, String> {
    let mut said = match get_run_value(HKEY_CURRENT_USER)? {
        None => format!(
            "not installed ({} does not exist)",
            run_value_name(HKEY_CURRENT_USER)
        ),
        Some(value) => format!(
            "installed: {} = {value}{}; whether the host runs now is not checked",
            run_value_name(HKEY_CURRENT_USER),
            describe_command(&value)
        ),
    };
    if let Some(all) = get_run_value(HKEY_LOCAL_MACHINE)? {
        said.push_str(&format!(
            "\nalso for every user, from the installer: {} = {all}",
            run_value_name(HKEY_LOCAL_MACHINE)
        ));
    }
    Ok(said)
}

/// What is worth saying about a command read back: that it is not ours, or that its program is
/// gone.
fn describe_command(line: &str) -> String {
    match parse_host_command(line) {
        None => " (not a peer host command)".into(),
        Some(HostCommand { program, .. }) if !Path::new(&program).exists() => {
            format!(" (but {program} does not exist)")
        }
        Some(_) => String::new(),
    }
}

/// Starts `peer host` now, as the Run value will at logon, but without a window: its own
/// hidden console (CREATE_NO_WINDOW rather than DETACHED_PROCESS, so that the windows' and
/// decoder's processes it starts share that console instead of each opening one), its output
/// appended to `host.log`. Our own standard handles are made non-inheritable first: the host
/// would otherwise hold them open for its whole life (spawning passes on every inheritable
/// handle), and whoever reads this command's output through a pipe would wait for the host to
/// end, not for this command.
fn start_detached(program: &Path, data_dir: &Path) -> Result<(), String> {
    use ::windows::Win32::Foundation::{
        HANDLE, HANDLE_FLAG_INHERIT, HANDLE_FLAGS, SetHandleInformation,
    };
    use ::windows::Win32::System::Threading::{CREATE_NEW_PROCESS_GROUP, CREATE_NO_WINDOW};
    use std::os::windows::io::AsRawHandle;
    use std::os::windows::process::CommandExt;
    let ours = [
        std::io::stdin().as_raw_handle(),
        std::io::stdout().as_raw_handle(),
        std::io::stderr().as_raw_handle(),
    ];
    for handle in ours.into_iter().filter(|h| !h.is_null()) {
        // SAFETY: the handle is this process's standard handle, open for its whole life; only
        // its inherit flag changes. A failure (no such handle, a console's) leaves it as it was.
        let _ =
            unsafe { SetHandleInformation(HANDLE(handle), HANDLE_FLAG_INHERIT.0, HANDLE_FLAGS(0)) };
    }
    let log = open_log(data_dir, "host.log")
        .map_err(|e| format!("{}: {e}", data_dir.join("host.log").display()))?;
    let err = log
        .try_clone()
        .map_err(|e| format!("the host's log: {e}"))?;
    std::process::Command::new(program)
        .arg("host")
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err)
        .creation_flags((CREATE_NO_WINDOW | CREATE_NEW_PROCESS_GROUP).0)
        .spawn()
        .map(drop)
        .map_err(|e| format!("starting {}: {e}", program.display()))
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(Some(0)).collect()
}

fn win32(what: &str, e: WIN32_ERROR) -> String {
    format!(
        "{what}: {}",
        std::io::Error::from_raw_os_error(e.0.cast_signed())
    )
}

fn set_run_value(line: &str) -> Result<(), String> {
    let (key, name) = (wide(RUN_KEY), wide(NAME));
    let mut hkey = HKEY::default();
    // SAFETY: `key` is NUL-terminated and outlives the call; `hkey` is a valid place for the
    // opened key; the optional pointers are null.
    let e = unsafe {
        RegCreateKeyExW(
            HKEY_CURRENT_USER,
            PCWSTR(key.as_ptr()),
            None,
            PCWSTR::null(),
            REG_OPTION_NON_VOLATILE,
            KEY_SET_VALUE,
            None,
            &mut hkey,
            None,
        )
    };
    if e.is_err() {
        return Err(win32(&format!(r"opening HKEY_CURRENT_USER\{RUN_KEY}"), e));
    }
    // SAFETY: the key was just opened for us; Owned closes it once, on drop.
    let hkey = unsafe { Owned::new(hkey) };
    let data: Vec<u8> = wide(line).iter().flat_map(|u| u.to_le_bytes()).collect();
    // SAFETY: the key is open with KEY_SET_VALUE; `name` is NUL-terminated; `data` is a
    // NUL-terminated UTF-16 string, as REG_SZ wants, and the slice gives its length.
    let e = unsafe { RegSetValueExW(*hkey, PCWSTR(name.as_ptr()), None, REG_SZ, Some(&data)) };
    if e.is_err() {
        return Err(win32(
            &format!("writing {}", run_value_name(HKEY_CURRENT_USER)),
            e,
        ));
    }
    Ok(())
}

/// The `quicdesk-host` string value below `root`'s Run key, if there is one.
fn get_run_value(root: HKEY) -> Result<Option<String>, String> {
    let (key, name) = (wide(RUN_KEY), wide(NAME));
    let mut len: u32 = 0;
    // SAFETY: `key` and `name` are NUL-terminated; with no data pointer the call only writes
    // the value's size in bytes to `len`.
    let e = unsafe {
        RegGetValueW(
            root,
            PCWSTR(key.as_ptr()),
            PCWSTR(name.as_ptr()),
            RRF_RT_REG_SZ,
            None,
            None,
            Some(&mut len),
        )
    };
    for _ in 0..4 {
        if e == ERROR_FILE_NOT_FOUND {
            return Ok(None);
        }
        if e.is_err() && e != ERROR_MORE_DATA {
            break;
        }
        let mut buf = vec![0u16; (len as usize).div_ceil(2).max(1)];
        let mut got = u32::try_from(buf.len() * 2).unwrap_or(u32::MAX);
        // SAFETY: as above; `buf` has `got` writable bytes, and the call writes at most that
        // many (or fails with ERROR_MORE_DATA and the size it needs).
        let e = unsafe {
            RegGetValueW(
                root,
                PCWSTR(key.as_ptr()),
                PCWSTR(name.as_ptr()),
                RRF_RT_REG_SZ,
                None,
                Some(buf.as_mut_ptr().cast()),
                Some(&mut got),
            )
        };
        if e == ERROR_MORE_DATA {
            len = got;
            continue;
        }
        if e == ERROR_FILE_NOT_FOUND {
            return Ok(None);
        }
        if e.is_err() {
            return Err(win32(&format!("reading {}", run_value_name(root)), e));
        }
        let units = (got as usize / 2).min(buf.len());
        let text = String::from_utf16_lossy(&buf[..units]);
        return Ok(Some(text.trim_end_matches('\0').to_owned()));
    }
    Err(win32(&format!("reading {}", run_value_name(root)), e))
}

/// Removes the value; false when there was none.
fn delete_run_value() -> Result<bool, String> {
    let (key, name) = (wide(RUN_KEY), wide(NAME));
    let mut hkey = HKEY::default();
    // SAFETY: `key` is NUL-terminated; `hkey` is a valid place for the opened key.
    let e = unsafe {
        RegOpenKeyExW(
            HKEY_CURRENT_USER,
            PCWSTR(key.as_ptr()),
            None,
            KEY_SET_VALUE,
            &mut hkey,
        )
    };
    if e == ERROR_FILE_NOT_FOUND {
        return Ok(false);
    }
    if e.is_err() {
        return Err(win32(&format!(r"opening HKEY_CURRENT_USER\{RUN_KEY}"), e));
    }
    // SAFETY: the key was just opened for us; Owned closes it once, on drop.
    let hkey = unsafe { Owned::new(hkey) };
    // SAFETY: the key is open with KEY_SET_VALUE; `name` is NUL-terminated.
    let e = unsafe { RegDeleteValueW(*hkey, PCWSTR(name.as_ptr())) };
    if e == ERROR_FILE_NOT_FOUND {
        return Ok(false);
    }
    if e.is_err() {
        return Err(win32(
            &format!("removing {}", run_value_name(HKEY_CURRENT_USER)),
            e,
        ));
    }
    Ok(true)
}

// ---- --system: the service ------------------------------------------------------------------

/// The service manager's error said with what it means here, and its Win32 code.
fn scm(what: &str, e: windows_service::Error) -> String {
    match &e {
        windows_service::Error::Winapi(io) => match io.raw_os_error().and_then(scm_hint) {
            Some(hint) => format!("{what}: {hint} ({io})"),
            None => format!("{what}: {io}"),
        },
        other => format!("{what}: {other}"),
    }
}

fn code(e: &windows_service::Error) -> Option<i32> {
    match e {
        windows_service::Error::Winapi(io) => io.raw_os_error(),
        _ => None,
    }
}

const ERROR_SERVICE_DOES_NOT_EXIST: i32 = 1060;
const ERROR_SERVICE_NOT_ACTIVE: i32 = 1062;

fn install_system(i: &Install) -> Result<String, String> {
    // Checked here so that a bad path is said plainly, not by the service manager.
    quote_program(&i.program)?;
    let arguments = service_arguments(&i.data_dir)?;
    let info = ServiceInfo {
        name: NAME.into(),
        display_name: "quicdesk host".into(),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: i.program.clone(),
        launch_arguments: arguments.into_iter().map(OsString::from).collect(),
        dependencies: vec![],
        // LocalSystem: only it may take the logged-on user's token (WTSQueryUserToken).
        account_name: None,
        account_password: None,
    };
    let manager = ServiceManager::local_computer(
        None::<&str>,
        ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
    )
    .map_err(|e| scm("opening the service manager", e))?;
    let access = ServiceAccess::QUERY_STATUS
        | ServiceAccess::START
        | ServiceAccess::QUERY_CONFIG
        | ServiceAccess::CHANGE_CONFIG;
    let (service, done) = match manager.open_service(NAME, access) {
        Ok(service) => {
            service
                .change_config(&info)
                .map_err(|e| scm(&format!("updating the service {NAME}"), e))?;
            (service, "updated")
        }
        Err(e) if code(&e) == Some(ERROR_SERVICE_DOES_NOT_EXIST) => (
            manager
                .create_service(&info, access)
                .map_err(|e| scm(&format!("creating the service {NAME}"), e))?,
            "created",
        ),
        Err(e) => return Err(scm(&format!("opening the service {NAME}"), e)),
    };
    let mut notes = String::new();
    if let Err(e) = service.set_description(
        "Keeps the quicdesk host (peer host) running in the session of whoever is logged on \
         at the console, for unattended remote access.",
    ) {
        notes.push_str(&format!("\nnote: {}", scm("setting its description", e)));
    }
    // Should the service itself die, the service manager starts it again.
    let restart = ServiceAction {
        action_type: ServiceActionType::Restart,
        delay: Duration::from_secs(2),
    };
    if let Err(e) = service.update_failure_actions(ServiceFailureActions {
        reset_period: ServiceFailureResetPeriod::After(Duration::from_secs(24 * 3600)),
        reboot_msg: None,
        command: None,
        actions: Some(vec![restart.clone(), restart.clone(), restart]),
    }) {
        notes.push_str(&format!(
            "\nnote: {}",
            scm("setting its restart on failure", e)
        ));
    }
    let state = service
        .query_status()
        .map_err(|e| scm(&format!("querying the service {NAME}"), e))?
        .current_state;
    let started = if matches!(state, ServiceState::Running | ServiceState::StartPending) {
        "it was already running (`sc stop` and `sc start` it for the new settings)"
    } else {
        service
            .start::<&str>(&[])
            .map_err(|e| scm(&format!("starting the service {NAME}"), e))?;
        "started it"
    };
    let dir = i.data_dir.display();
    Ok(format!(
        "{done} the service {NAME} (starts at boot, as LocalSystem): {} {}; {started}. It \
         keeps `peer host` running in the session of whoever is logged on at the console; its \
         log: {dir}\\service.log, the host's: {dir}\\host.log{notes}",
        quote_program(&i.program)?,
        service_arguments(&i.data_dir)?.join(" "),
    ))
}

fn uninstall_system() -> Result<String, String> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .map_err(|e| scm("opening the service manager", e))?;
    let access = ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE;
    let service = match manager.open_service(NAME, access) {
        Ok(s) => s,
        Err(e) if code(&e) == Some(ERROR_SERVICE_DOES_NOT_EXIST) => {
            return Ok(format!("not installed (there is no service {NAME})"));
        }
        Err(e) => return Err(scm(&format!("opening the service {NAME}"), e)),
    };
    let query = |s: &windows_service::service::Service| {
        s.query_status()
            .map(|st| st.current_state)
            .map_err(|e| scm(&format!("querying the service {NAME}"), e))
    };
    let mut stopped = "it was not running";
    if query(&service)? != ServiceState::Stopped {
        match service.stop() {
            Ok(_) => {}
            Err(e) if code(&e) == Some(ERROR_SERVICE_NOT_ACTIVE) => {}
            Err(e) => return Err(scm(&format!("stopping the service {NAME}"), e)),
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while query(&service)? != ServiceState::Stopped {
            if Instant::now() > deadline {
                return Err(format!(
                    "the service {NAME} did not stop within 30 s; it is not deleted"
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        stopped = "stopped it (and the host it ran)";
    }
    service
        .delete()
        .map_err(|e| scm(&format!("deleting the service {NAME}"), e))?;
    Ok(format!(
        "deleted the service {NAME}; {stopped}. Its data directory is kept."
    ))
}

fn status_system() -> Result<String, String> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .map_err(|e| scm("opening the service manager", e))?;
    let service = match manager.open_service(
        NAME,
        ServiceAccess::QUERY_STATUS | ServiceAccess::QUERY_CONFIG,
    ) {
        Ok(s) => s,
        Err(e) if code(&e) == Some(ERROR_SERVICE_DOES_NOT_EXIST) => {
            return Ok(format!("not installed (there is no service {NAME})"));
        }
        Err(e) => return Err(scm(&format!("opening the service {NAME}"), e)),
    };
    let config = service
        .query_config()
        .map_err(|e| scm(&format!("reading the service {NAME}'s configuration"), e))?;
    let status = service
        .query_status()
        .map_err(|e| scm(&format!("querying the service {NAME}"), e))?;
    let start = match config.start_type {
        ServiceStartType::AutoStart => "starts at boot",
        ServiceStartType::OnDemand => "starts on demand only",
        ServiceStartType::Disabled => "disabled",
        _ => "a driver's start type",
    };
    let state = match status.current_state {
        ServiceState::Running => "running",
        ServiceState::Stopped => "stopped",
        ServiceState::StartPending => "starting",
        ServiceState::StopPending => "stopping",
        ServiceState::Paused => "paused",
        ServiceState::PausePending => "pausing",
        ServiceState::ContinuePending => "resuming",
    };
    let pid = status
        .process_id
        .map_or(String::new(), |p| format!(" (process {p})"));
    let command = config.executable_path.to_string_lossy().into_owned();
    let log = parse_host_command(&command)
        .and_then(|c| c.data_dir)
        .map_or(String::new(), |d| {
            format!("; logs: {d}\\service.log, {d}\\host.log")
        });
    Ok(format!(
        "installed: service {NAME} ({start}, as {}) runs {command}{}; {state}{pid}{log}",
        config
            .account_name
            .map_or("LocalSystem".into(), |a| a.to_string_lossy().into_owned()),
        describe_command(&command),
    ))
}
