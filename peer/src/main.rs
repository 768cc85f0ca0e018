//! `peer`: share this screen (`peer host`) or view and control another (`peer connect CODE`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use peer::{controller, host};
use proto::AccessCode;

mod cli_args;
mod cli_join;
mod cli_ui;
use cli_args::*;
#[cfg(feature = "viewer")]
use cli_ui::connect_details;
use cli_ui::ui_command;

fn main() -> anyhow::Result<()> {
    // The sandboxed H.264 decoder is this program started again: it must not get further.
    codec::isolated::run_worker_if_requested();
    let cli = Cli::parse();
    // Windows: a host whose console was made for it alone (the logon start) lets it go and
    // logs to host.log (peer::service::windows), before logging starts so that the log has
    // no terminal colours.
    #[cfg(windows)]
    let detached = match &cli.command {
        Command::Host(a) => peer::service::windows::detach_from_own_console(&a.common.data_dir)
            .context("leaving the console")?,
        _ => false,
    };
    proto::logging::init();
    #[cfg(windows)]
    if detached {
        tracing::info!("started without a terminal: logging here, in host.log");
    }
    let rt = || tokio::runtime::Runtime::new().context("starting the async runtime");
    match cli.command {
        Command::Host(args) => rt()?.block_on(run_host(args)),
        Command::Connect(args) if args.code.is_none() && args.headless => {
            bail!("--headless needs the host's code: peer connect CODE --headless")
        }
        Command::Connect(args) if args.headless => {
            let password = read_password(&args)?;
            rt()?.block_on(run_connect(args, password))
        }
        #[cfg(feature = "viewer")]
        Command::Connect(args) => {
            let Some((args, password)) = connect_details(args)? else {
                return Ok(());
            };
            run_connect_window(args, password)
        }
        #[cfg(not(feature = "viewer"))]
        Command::Connect(_) => anyhow::bail!(
            "this peer was built without its viewer window (feature `viewer`): use --headless"
        ),
        Command::Ui { kind } => ui_command(kind),
        Command::Password(cmd) => password_command(cmd),
        Command::Service(cmd) => service_command(cmd),
        Command::Join {
            invite,
            data_dir,
            config,
            no_check,
        } => rt()?.block_on(cli_join::join(
            &invite,
            &peer::config::path(config.as_deref(), &data_dir),
            &data_dir,
            no_check,
        )),
    }
}

/// `peer service`: the host as a service of this platform (`peer::service`: systemd units, or on
/// Windows the Run value and the system service).
fn service_command(cmd: ServiceCommand) -> anyhow::Result<()> {
    use peer::service;
    let scope = |system| {
        if system {
            service::Scope::System
        } else {
            service::Scope::User
        }
    };
    let home = || dirs::home_dir().context("no home directory (HOME is unset)");
    let said = match cmd {
        ServiceCommand::Install {
            mut data_dir,
            config,
            root,
            system,
        } => {
            // A system service keeps its state where system services do, not in the
            // administrator's home (which systemd's sandbox makes read-only, and which the
            // users a Windows service starts the host for cannot read).
            if system && data_dir == default_data_dir() {
                data_dir = service::system_data_dir();
            }
            service::install(&service::Install {
                scope: scope(system),
                program: service::this_program().map_err(anyhow::Error::msg)?,
                config: peer::config::path(config.as_deref(), &data_dir),
                data_dir: std::path::absolute(&data_dir).context("the data directory")?,
                home: home()?,
                root,
            })
        }
        ServiceCommand::Uninstall { root, system } => {
            service::uninstall(root.as_deref(), &home()?, scope(system))
        }
        ServiceCommand::Status { root, system } => {
            Ok(service::status(root.as_deref(), &home()?, scope(system)))
        }
        ServiceCommand::Run { data_dir } => {
            return service::run(&data_dir).map_err(anyhow::Error::msg);
        }
    };
    match said {
        Ok(said) => {
            println!("{said}");
            Ok(())
        }
        Err(why) => bail!("{why}"),
    }
}

#[cfg(feature = "viewer")]
/// `peer connect` with the viewer window: the window owns the main thread (winit needs it); the
/// session runs on a tokio runtime in another thread and feeds the window through its sink.
fn run_connect_window(args: ConnectArgs, password: Option<String>) -> anyhow::Result<()> {
    let code = args.code.context("no code")?;
    let (viewer, sink) = peer::viewer::Viewer::new(peer::viewer::ViewerOptions {
        title: code.to_string(),
        any_thread: false,
    })?;
    let (input_tx, input_rx) = tokio::sync::mpsc::channel(1024);
    let (request_tx, request_rx) = tokio::sync::mpsc::channel(16);
    let viewer = viewer.with_requests(request_tx);
    let (window_stop_tx, window_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let session_thread = {
        let sink = sink.clone();
        std::thread::Builder::new()
            .name("quicdesk-session".into())
            .spawn(move || -> anyhow::Result<()> {
                let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
                let result = rt.block_on(async {
                    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = shutdown_signal() => {}
                            _ = window_stop_rx => {}
                        }
                        let _ = stop_tx.send(());
                    });
                    let frames = sink.clone();
                    let ticks = sink.clone();
                    // The title says "view only" for a session the host granted no input.
                    let view_only = Arc::new(std::sync::atomic::AtomicBool::new(false));
                    let shown_view_only = view_only.clone();
                    let hooks = controller::Hooks {
                        on_frame: Some(Box::new(move |_, f| frames.frame(f))),
                        on_tick: Some(Box::new(move |t| {
                            println!("{t}");
                            let view_only =
                                shown_view_only.load(std::sync::atomic::Ordering::Relaxed);
                            ticks.state(if view_only { "view only" } else { "connected" });
                            ticks.tick(t);
                        })),
                        input: Some(input_rx),
                        requests: Some(request_rx),
                        on_notice: Some({
                            let sink = sink.clone();
                            Box::new(move |n| {
                                println!("{n}");
                                match n {
                                    controller::HostNotice::Asking { .. } => {
                                        sink.state("waiting for the host's user");
                                    }
                                    controller::HostNotice::Granted(p) if !p.input => {
                                        view_only.store(true, std::sync::atomic::Ordering::Relaxed);
                                        sink.state("view only");
                                    }
                                    _ => {}
                                }
                            })
                        }),
                        stop: Some(stop_rx),
                    };
                    session(args, password, hooks).await
                });
                sink.ended(result.as_ref().err().map(|e| format!("{e:#}")));
                result
            })?
    };
    sink.state("connecting");
    let shown = viewer.run(input_tx, window_stop_tx);
    let result = session_thread
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the session thread panicked")));
    shown?;
    result
}

fn list_monitors(display: Option<&str>) -> anyhow::Result<()> {
    let monitors = capture::monitors(&capture::ScreenSpec {
        display: display.map(str::to_owned),
        ..Default::default()
    })?;
    for m in monitors {
        println!("{m}");
    }
    Ok(())
}

async fn run_host(mut args: HostArgs) -> anyhow::Result<()> {
    let file = args.common.config()?;
    args.display = args.display.or(file.host.display.clone());
    if args.display.as_deref() == Some("session") {
        // The system service: follow the machine's graphical session (peer::seat).
        let program = std::env::current_exe().context("locating this program")?;
        let argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
        peer::seat::follow(move |display| {
            let mut c = std::process::Command::new(&program);
            c.args(peer::seat::with_display(&argv, display));
            c
        })
        .await
    }
    args.monitor = args.monitor.or(file.host.monitor);
    if args.list_monitors {
        return list_monitors(args.display.as_deref());
    }
    let fps = args.fps.or(file.host.fps).unwrap_or(30);
    let bitrate_kbps = args.bitrate_kbps.or(file.host.bitrate_kbps).unwrap_or(4000);
    let (rendezvous, rendezvous_fingerprint) = args.common.rendezvous(&file).await?;
    let (width, height) = args.size;
    let source = match args.source {
        SourceKind::Synthetic => host::Source::Synthetic { width, height },
        SourceKind::Screen => {
            let spec = host::Source::Screen(capture::ScreenSpec {
                display: args.display.clone(),
                monitor: args.monitor,
                cursor: !args.hide_cursor,
            });
            // Fail now, not at the first session, if the screen cannot be captured.
            let probe = capture::open(&spec).context(
                "cannot capture the screen (`--source synthetic` shares a test picture instead)",
            )?;
            tracing::info!(source = %probe.description, "sharing this monitor");
            spec
        }
    };
    let input: host::InputFactory = match (args.input_log.clone(), args.source) {
        (Some(path), _) => Arc::new(move |_: &host::ScreenArea| {
            Ok(Box::new(peer::script::LogBackend::new(path.clone()))
                as Box<dyn input::InputBackend>)
        }),
        (None, SourceKind::Screen) => {
            let display = args.display.clone();
            Arc::new(move |area: &host::ScreenArea| {
                input::open(&input::InputSpec {
                    display: display.clone(),
                    origin: (area.x, area.y),
                })
            })
        }
        (None, SourceKind::Synthetic) => Arc::new(|_: &host::ScreenArea| {
            Ok(Box::new(host::DiscardBackend::default()) as Box<dyn input::InputBackend>)
        }),
    };
    let password = match peer::password::Stored::load(&args.common.data_dir)? {
        Some(stored) => {
            tracing::info!("using the fixed password set with `peer password set`");
            host::HostPassword::Fixed(stored)
        }
        None => {
            if args.password_lifetime < Duration::from_secs(10) {
                bail!("--password-lifetime must be at least 10s");
            }
            host::HostPassword::OneTime {
                lifetime: args.password_lifetime,
            }
        }
    };
    let mode: peer::approve::Approval = args
        .approve
        .map(Into::into)
        .or(file.host.approve)
        .unwrap_or_default();
    let timeout = args
        .approve_timeout
        .or(file.host.approve_timeout_secs.map(Duration::from_secs))
        .unwrap_or(peer::approve::DEFAULT_TIMEOUT);
    let display = args
        .display
        .clone()
        .or_else(|| std::env::var("DISPLAY").ok().filter(|d| !d.is_empty()));
    let ui = cfg!(feature = "viewer")
        .then(|| host::UiCommand::this_program(display.clone()))
        .filter(|_| display.is_some() || !cfg!(target_os = "linux"));
    if mode.asks_user() && ui.is_none() {
        if cfg!(feature = "viewer") {
            bail!(
                "--approve {mode} asks the host's user in a window, and there is no display: \
                 give --display (or DISPLAY), or use --approve password"
            );
        }
        bail!(
            "--approve {mode} asks the host's user in a window, and this peer was built \
             without windows (feature `viewer`): use --approve password"
        );
    }
    let attended = host::Attended {
        mode,
        timeout,
        indicator: !args.no_indicator && ui.is_some(),
        ui,
    };
    if mode != peer::approve::Approval::Password {
        tracing::info!(%mode, timeout = ?attended.timeout, "the host's user accepts each controller");
    }
    let handle = host::start(host::HostConfig {
        rendezvous,
        rendezvous_fingerprint,
        data_dir: args.common.data_dir.clone(),
        bind: args.common.bind,
        source,
        password,
        fps,
        bitrate_bps: bitrate_kbps.saturating_mul(1000),
        content: match args.content {
            ContentKind::Auto => None,
            ContentKind::Screen => Some(codec::ContentType::Screen),
            ContentKind::Camera => Some(codec::ContentType::Camera),
        },
        input,
        attended,
    })
    .await
    .with_context(|| {
        format!(
            "starting the host (data dir {})",
            args.common.data_dir.display()
        )
    })?;
    tracing::info!(fingerprint = %handle.fingerprint, local = %handle.local_addr, "host started; registering");
    let mut status = handle.watch();
    let mut shown: Option<(Option<AccessCode>, Option<String>)> = None;
    let outcome = loop {
        let s = status.borrow_and_update().clone();
        if let Some(msg) = s.fatal {
            break Err(anyhow::anyhow!(msg));
        }
        let now = (s.code, s.password.clone());
        if s.registrations > 0 && shown.as_ref() != Some(&now) {
            if let Some(code) = s.code
                && shown.as_ref().map(|x| x.0) != Some(s.code)
            {
                println!("code: {code}");
            }
            let prompt_only = mode == peer::approve::Approval::Prompt;
            match &s.password {
                _ if prompt_only && shown.is_some() => {}
                _ if prompt_only => {
                    println!("no password: you accept or deny each controller in a window");
                }
                Some(pw) => println!("password: {pw}"),
                None if shown.is_none() => println!("password: the fixed one (peer password set)"),
                None => {}
            }
            shown = Some(now);
        }
        tokio::select! {
            r = status.changed() => if r.is_err() { break Ok(()) },
            _ = shutdown_signal() => break Ok(()),
        }
    };
    handle.shutdown().await;
    outcome
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The host's password: `None` with --no-password, or an empty line on the terminal (a host
/// whose user accepts each controller).
fn read_password(args: &ConnectArgs) -> anyhow::Result<Option<String>> {
    if args.no_password {
        return Ok(None);
    }
    if args.password_stdin {
        return read_stdin_line().map(Some);
    }
    let code = args.code.map(|c| c.to_string()).unwrap_or_default();
    let typed = rpassword::prompt_password(format!(
        "password for {code} (empty if the host's user accepts instead): "
    ))
    .context("reading the password from the terminal (use --password-stdin in scripts)")?;
    Ok(Some(typed).filter(|p| !p.is_empty()))
}

/// The name this controller declares: `--name`, else the configuration file's, else
/// user@hostname.
fn controller_name(args: &ConnectArgs, file: &peer::config::Config) -> String {
    if let Some(name) = args.name.clone().or(file.controller.name.clone()) {
        return name;
    }
    let user = ["USER", "LOGNAME", "USERNAME"]
        .into_iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .or_else(|| {
            // Services and containers may set none of those; the home directory's name
            // usually is the user's.
            dirs::home_dir().and_then(|h| h.file_name().map(|n| n.to_string_lossy().into_owned()))
        })
        .unwrap_or_else(|| "someone".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty());
    match host {
        Some(host) => format!("{user}@{host}"),
        None => user,
    }
}

/// The first line of standard input, without its line ending.
fn read_stdin_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let line = line.trim_end_matches(['\n', '\r']).to_string();
    if line.is_empty() {
        bail!("no password on standard input");
    }
    Ok(line)
}

/// `peer password set|clear`.
fn password_command(cmd: PasswordCommand) -> anyhow::Result<()> {
    use peer::password::{DEFAULT_COST, Stored, check_strength};
    match cmd {
        PasswordCommand::Set { data_dir, stdin } => {
            let pw = if stdin {
                read_stdin_line()?
            } else {
                let pw = rpassword::prompt_password("new fixed password: ")
                    .context("reading the password from the terminal (or use --stdin)")?;
                check_strength(&pw)?;
                let again = rpassword::prompt_password("again: ")?;
                if again != pw {
                    bail!("the two passwords differ; nothing changed");
                }
                pw
            };
            let stored = Stored::derive(&pw, DEFAULT_COST)?;
            stored.save(&data_dir)?;
            println!(
                "fixed password set ({}); `peer host` with this data directory now asks for it",
                Stored::path(&data_dir).display()
            );
            Ok(())
        }
        PasswordCommand::Clear { data_dir } => {
            if Stored::remove(&data_dir)
                .with_context(|| format!("removing {}", Stored::path(&data_dir).display()))?
            {
                println!("fixed password removed; `peer host` uses one-time passwords again");
            } else {
                println!("no fixed password was set");
            }
            Ok(())
        }
    }
}

/// `peer connect --headless`: stats on the terminal.
async fn run_connect(args: ConnectArgs, password: Option<String>) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(());
    });
    let hooks = controller::Hooks {
        on_tick: Some(Box::new(|t| println!("{t}"))),
        on_notice: Some(Box::new(|n| println!("{n}"))),
        stop: Some(stop_rx),
        ..Default::default()
    };
    session(args, password, hooks).await
}

/// Runs one controller session with `hooks` (plus `--input-script`), prints a summary and
/// writes `--stats-json`.
async fn session(
    args: ConnectArgs,
    password: Option<String>,
    mut hooks: controller::Hooks,
) -> anyhow::Result<()> {
    let code = args.code.context("no code")?;
    let file = args.common.config()?;
    let (rendezvous, rendezvous_fingerprint) = args.common.rendezvous(&file).await?;
    let name = controller_name(&args, &file);
    let duration = match args.duration {
        Some(d) if !(d.is_finite() && d > 0.0) => {
            bail!("--duration must be a positive number of seconds")
        }
        Some(d) => Some(Duration::from_secs_f64(d)),
        None => None,
    };
    if let Some(path) = &args.input_script {
        let script = peer::script::Script::load(path)?;
        if hooks.input.is_some() {
            bail!("--input-script works with --headless only");
        }
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let (requests_tx, requests_rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(script.play(tx, requests_tx));
        hooks.input = Some(rx);
        hooks.requests = Some(requests_rx);
    }
    let report = controller::run(
        controller::ConnectConfig {
            code,
            password,
            name,
            rendezvous,
            rendezvous_fingerprint,
            data_dir: args.common.data_dir,
            bind: args.common.bind,
            duration,
            record: args.record,
            relay: match (args.force_relay, args.no_relay) {
                (true, _) => controller::RelayMode::Force,
                (_, true) => controller::RelayMode::Off,
                _ => controller::RelayMode::Auto,
            },
            decoder: controller::DecoderMode::this_program(),
            accept_new_key: args.accept_new_key,
            save_as: args.save_as,
        },
        hooks,
    )
    .await
    .with_context(|| format!("session with {code}"))?;
    if let Some(why) = &report.ended_by_host {
        println!("the host ended the session: {why}");
    }
    println!(
        "session over: {} frames decoded, {:.1} fps, {:.2} Mbit/s, latency p50 {} ms, path {} ({} changes)",
        report.frames_decoded,
        report.fps,
        report.mbps,
        report
            .latency_ms_p50
            .map_or_else(|| "-".into(), |v| format!("{v:.1}")),
        report.path,
        report.path_changes
    );
    if let Some(path) = args.stats_json {
        let json = serde_json::to_vec_pretty(&report)?;
        std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
