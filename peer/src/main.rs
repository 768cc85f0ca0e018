//! `peer`: share this screen (`peer host`) or view and control another (`peer connect CODE`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use certs::Fingerprint;
use clap::{Args, Parser, Subcommand};
use peer::{controller, host};
use proto::AccessCode;

/// quicdesk peer: a remote desktop over QUIC, end-to-end encrypted.
///
/// On the machine to be controlled run `peer host`; it prints a code and a one-time password.
/// On the controlling machine run `peer connect CODE` and give that password. For unattended
/// access set a fixed password once with `peer password set`.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Share this machine: register a code with the rendezvous and accept a controller.
    Host(HostArgs),
    /// View and control a host, given its code.
    ///
    /// In the window, Ctrl+Alt+Shift+N (N from 1 to 9) asks the host to share its monitor
    /// number N-1 in `peer host --list-monitors`; the window takes the new monitor's size, and a
    /// number the host does not have is refused with a message. That key is not sent to the
    /// host. With --headless, an input script's `monitor N` line (N as the host numbers it)
    /// does the same.
    Connect(ConnectArgs),
    /// Set or clear this host's fixed password (unattended access).
    #[command(subcommand)]
    Password(PasswordCommand),
}

#[derive(Subcommand, Debug)]
enum PasswordCommand {
    /// Set a fixed password: `peer host` then asks for it instead of one-time passwords. It is
    /// read without echo (twice) and stored only as an argon2id hash (`password.json`, mode
    /// 0600, in the data directory). At least 12 characters, and not guessable.
    Set {
        /// Where the host keeps its key and state.
        #[arg(long, env = "QUICDESK_DATA_DIR", default_value_os_t = default_data_dir())]
        data_dir: PathBuf,
        /// Read the password from the first line of standard input (scripts) instead of the
        /// terminal.
        #[arg(long)]
        stdin: bool,
    },
    /// Remove the fixed password: `peer host` goes back to one-time passwords.
    Clear {
        #[arg(long, env = "QUICDESK_DATA_DIR", default_value_os_t = default_data_dir())]
        data_dir: PathBuf,
    },
}

#[derive(Args, Debug)]
struct Common {
    /// Rendezvous server address, host:port or ip:port (required).
    #[arg(long, env = "QUICDESK_RENDEZVOUS")]
    rendezvous: Option<String>,
    /// The rendezvous server's fingerprint, as printed by `rendezvous fingerprint` (required).
    #[arg(long, env = "QUICDESK_RENDEZVOUS_FINGERPRINT")]
    rendezvous_fingerprint: Option<Fingerprint>,
    /// Where this peer keeps its key (mode 0600) and state.
    #[arg(long, env = "QUICDESK_DATA_DIR", default_value_os_t = default_data_dir())]
    data_dir: PathBuf,
    /// Local address of this peer's UDP socket.
    #[arg(long, default_value = "0.0.0.0:0")]
    bind: SocketAddr,
}

impl Common {
    /// The rendezvous address and fingerprint, which every command but `--list-monitors` needs.
    async fn rendezvous(&self) -> anyhow::Result<(SocketAddr, Fingerprint)> {
        let Some(addr) = self.rendezvous.as_deref() else {
            bail!(
                "missing --rendezvous ADDR (or QUICDESK_RENDEZVOUS): the rendezvous server to use"
            );
        };
        let Some(fp) = self.rendezvous_fingerprint else {
            bail!(
                "missing --rendezvous-fingerprint FP (or QUICDESK_RENDEZVOUS_FINGERPRINT): \
                 the server's key, as `rendezvous fingerprint` prints it on the server"
            );
        };
        Ok((resolve_addr(addr).await?, fp))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum SourceKind {
    /// This machine's screen (X11: `--display`, `--monitor`).
    Screen,
    /// Moving test content with frame numbers and timestamps drawn in (`--size`).
    Synthetic,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ContentKind {
    /// Screen-content tools up to 720p, camera mode above (fast enough for 1080p on 2 cores).
    Auto,
    /// OpenH264 screen-content mode: about half the bandwidth, about twice the encode time.
    Screen,
    /// Camera mode: fastest encode.
    Camera,
}

#[derive(Args, Debug)]
struct HostArgs {
    #[command(flatten)]
    common: Common,
    /// What to share.
    #[arg(long, value_enum, default_value = "screen")]
    source: SourceKind,
    /// X display to share, e.g. :0 (default: $DISPLAY).
    #[arg(long)]
    display: Option<String>,
    /// Monitor to share, by its number in `--list-monitors` (default: the primary one).
    #[arg(long)]
    monitor: Option<usize>,
    /// Print the display's monitors with their numbers, and exit.
    #[arg(long)]
    list_monitors: bool,
    /// Do not draw the pointer into the shared picture.
    #[arg(long)]
    hide_cursor: bool,
    /// Size of the synthetic screen, WIDTHxHEIGHT.
    #[arg(long, default_value = "1280x720", value_parser = parse_size)]
    size: (u32, u32),
    /// Frames per second to capture and send at most.
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Highest video bitrate in kbit/s. The host lowers it while the path loses packets or
    /// builds a queue, and raises it back as the path clears.
    #[arg(long, default_value_t = 4000)]
    bitrate_kbps: u32,
    /// Encoder mode.
    #[arg(long, value_enum, default_value = "auto")]
    content: ContentKind,
    /// How long each one-time password lasts before a new one replaces it (it is also
    /// replaced after every session). Ignored with a fixed password (`peer password set`).
    #[arg(long, default_value = "10min", value_parser = humantime::parse_duration)]
    password_lifetime: Duration,
    /// Write every input event received to this file, one per line, instead of performing it
    /// (tests, auditing).
    #[arg(long)]
    input_log: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct ConnectArgs {
    /// The host's code, e.g. ISR-48213370.
    code: AccessCode,
    #[command(flatten)]
    common: Common,
    /// Read the host's password from the first line of standard input (scripts). Without it
    /// the password is asked for on the terminal, without echo. It is never taken from the
    /// command line, where other users of the machine could see it.
    #[arg(long)]
    password_stdin: bool,
    /// No window: print stats each second (the only mode of a build without the `viewer`
    /// feature).
    #[arg(long)]
    headless: bool,
    /// End the session after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Write the received video as an Annex-B H.264 file (ffprobe/ffplay read it).
    #[arg(long)]
    record: Option<PathBuf>,
    /// Write session statistics as JSON here when the session ends.
    #[arg(long)]
    stats_json: Option<PathBuf>,
    /// Send the input events in this file (see `peer::script` for the format; `monitor N`
    /// switches the host's monitor).
    #[arg(long)]
    input_script: Option<PathBuf>,
    /// Use only the rendezvous's relay: no hole punching on either side (the session is still
    /// end-to-end encrypted; the relay sees only ciphertext).
    #[arg(long, conflicts_with = "no_relay")]
    force_relay: bool,
    /// Never use the relay: connect directly or fail. Works only with a rendezvous that runs no
    /// relay: one that does keeps hosts' addresses for controllers that proved the password
    /// over it.
    #[arg(long)]
    no_relay: bool,
}

fn default_data_dir() -> PathBuf {
    dirs::data_local_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("quicdesk")
        .join("peer")
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| "expected WIDTHxHEIGHT, e.g. 1280x720".to_string())?;
    let w: u32 = w.trim().parse().map_err(|_| format!("bad width {w:?}"))?;
    let h: u32 = h.trim().parse().map_err(|_| format!("bad height {h:?}"))?;
    Ok((w, h))
}

async fn resolve_addr(s: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    tokio::net::lookup_host(s)
        .await
        .with_context(|| format!("cannot resolve rendezvous address {s:?}"))?
        .next()
        .with_context(|| format!("rendezvous address {s:?} resolves to nothing"))
}

fn main() -> anyhow::Result<()> {
    // The sandboxed H.264 decoder is this program started again: it must not get further.
    codec::isolated::run_worker_if_requested();
    proto::logging::init();
    let cli = Cli::parse();
    let rt = || tokio::runtime::Runtime::new().context("starting the async runtime");
    match cli.command {
        Command::Host(args) => rt()?.block_on(run_host(args)),
        Command::Connect(args) if args.headless => rt()?.block_on(run_connect(args)),
        #[cfg(feature = "viewer")]
        Command::Connect(args) => run_connect_window(args),
        #[cfg(not(feature = "viewer"))]
        Command::Connect(_) => anyhow::bail!(
            "this peer was built without its viewer window (feature `viewer`): use --headless"
        ),
        Command::Password(cmd) => password_command(cmd),
    }
}

#[cfg(feature = "viewer")]
/// `peer connect` with the viewer window: the window owns the main thread (winit needs it); the
/// session runs on a tokio runtime in another thread and feeds the window through its sink.
fn run_connect_window(args: ConnectArgs) -> anyhow::Result<()> {
    let password = read_password(&args)?;
    let (viewer, sink) = peer::viewer::Viewer::new(peer::viewer::ViewerOptions {
        title: args.code.to_string(),
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
                    let hooks = controller::Hooks {
                        on_frame: Some(Box::new(move |_, f| frames.frame(f))),
                        on_tick: Some(Box::new(move |t| {
                            println!("{t}");
                            ticks.state("connected");
                            ticks.tick(t);
                        })),
                        input: Some(input_rx),
                        requests: Some(request_rx),
                        on_notice: Some(Box::new(|n| println!("{n}"))),
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

async fn run_host(args: HostArgs) -> anyhow::Result<()> {
    if args.list_monitors {
        return list_monitors(args.display.as_deref());
    }
    let (rendezvous, rendezvous_fingerprint) = args.common.rendezvous().await?;
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
    let handle = host::start(host::HostConfig {
        rendezvous,
        rendezvous_fingerprint,
        data_dir: args.common.data_dir.clone(),
        bind: args.common.bind,
        source,
        password,
        fps: args.fps,
        bitrate_bps: args.bitrate_kbps.saturating_mul(1000),
        content: match args.content {
            ContentKind::Auto => None,
            ContentKind::Screen => Some(codec::ContentType::Screen),
            ContentKind::Camera => Some(codec::ContentType::Camera),
        },
        input,
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
            match &s.password {
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

fn read_password(args: &ConnectArgs) -> anyhow::Result<String> {
    if args.password_stdin {
        return read_stdin_line();
    }
    rpassword::prompt_password(format!("password for {}: ", args.code))
        .context("reading the password from the terminal (use --password-stdin in scripts)")
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
async fn run_connect(args: ConnectArgs) -> anyhow::Result<()> {
    let password = read_password(&args)?;
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
    password: String,
    mut hooks: controller::Hooks,
) -> anyhow::Result<()> {
    let (rendezvous, rendezvous_fingerprint) = args.common.rendezvous().await?;
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
            code: args.code,
            password,
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
        },
        hooks,
    )
    .await
    .with_context(|| format!("session with {}", args.code))?;
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
