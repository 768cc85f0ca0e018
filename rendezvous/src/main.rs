//! `rendezvous`: the server an operator runs so quicdesk peers can find each other.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, CommandFactory, Parser, Subcommand};
use rendezvous::server::{self, Server};

mod cli_config;
mod cli_console;
mod cli_health;

use cli_console::{UserCommand, console_config, user};

/// A line on standard output for whoever started the server. Unlike `println!` it never
/// panics: a server whose output pipe was closed (a supervisor gone, `| head`) keeps serving.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, $($arg)*);
        let _ = out.flush();
    }};
}

/// quicdesk rendezvous server: registers host codes, tells controllers how to reach hosts.
///
/// Peers pin this server's fingerprint, printed at start (and by `rendezvous fingerprint`).
/// Give them `rendezvous invite --address HOST:PORT` to join. Settings come from the command
/// line, then environment variables (`QUICDESK_RV_` and the flag's name: `QUICDESK_RV_LISTEN`,
/// `QUICDESK_RV_CONSOLE_NAME=a,b`; the data directory's is `QUICDESK_DATA_DIR`), then a TOML
/// file (`--config FILE` or `QUICDESK_RV_CONFIG`, one key per flag: `listen = "0.0.0.0:7700"`,
/// `relay-idle = "60s"`, `no-stun = true`), then defaults; `rendezvous check-config` shows what
/// would be used.
#[derive(Parser, Debug)]
#[command(
    version,
    args_conflicts_with_subcommands = true,
    args_override_self = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (the default).
    #[command(args_override_self = true)]
    Run(RunArgs),
    /// Check the settings (command line, environment, --config file) without starting: print
    /// what `run` would use, or what is wrong.
    #[command(args_override_self = true)]
    CheckConfig(RunArgs),
    /// Check that the server these settings describe answers: a QUIC handshake with its port
    /// (a wildcard address: this machine's loopback) that proves the key in the data
    /// directory. Exit status 0 if it did, 1 with the reason if not; for container health
    /// checks and monitoring.
    #[command(args_override_self = true)]
    Health(RunArgs),
    /// Print this server's fingerprint (creating its key if needed) and exit.
    Fingerprint {
        #[arg(long, env = "QUICDESK_DATA_DIR", default_value_os_t = default_data_dir())]
        data_dir: PathBuf,
    },
    /// Copy the registry to FILE (a new file), consistently, even while the server runs.
    Backup {
        /// Where the copy goes.
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
        #[arg(long, env = "QUICDESK_DATA_DIR", default_value_os_t = default_data_dir())]
        data_dir: PathBuf,
    },
    /// Replace the registry with a backup, after checking it (stop the server first).
    Restore {
        /// The backup (`rendezvous backup`, or one of DATA_DIR/backups).
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        #[arg(long, env = "QUICDESK_DATA_DIR", default_value_os_t = default_data_dir())]
        data_dir: PathBuf,
    },
    /// Print an invite: one string with this server's addresses and key that a peer takes with
    /// `peer join INVITE`, after which `peer host` and `peer connect CODE` need no rendezvous
    /// flags. It holds no secret (peers pin the key it names).
    Invite {
        /// Address peers reach this server's QUIC port at, host:port (a DNS name, an IPv4
        /// address or [IPv6]); repeat for up to 4, tried in order.
        #[arg(long = "address", required = true, value_name = "HOST:PORT")]
        addresses: Vec<String>,
        /// An enrollment token from the console (for `--access enrolled` or `closed`): the
        /// invite then carries it, and is a secret to hand over like a password.
        #[arg(long, value_name = "qde_…")]
        token: Option<String>,
        #[arg(long, env = "QUICDESK_DATA_DIR", default_value_os_t = default_data_dir())]
        data_dir: PathBuf,
    },
    /// Manage the console's users (the first admin is made here).
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// A TOML file of settings, one key per flag (see `rendezvous --help`).
    #[arg(long, env = "QUICDESK_RV_CONFIG")]
    config: Option<PathBuf>,
    /// UDP address for QUIC.
    #[arg(long, env = "QUICDESK_RV_LISTEN", default_value = "0.0.0.0:7700")]
    listen: SocketAddr,
    /// UDP address of the STUN responder (RFC 8489 Binding), which peers compare with the QUIC
    /// port to learn how their NAT maps ports. Default: the QUIC address, port + 1.
    #[arg(long, env = "QUICDESK_RV_STUN_LISTEN", conflicts_with = "no_stun")]
    stun_listen: Option<SocketAddr>,
    /// Run no STUN responder (peers then cannot tell their NAT's mapping behaviour).
    #[arg(long, env = "QUICDESK_RV_NO_STUN")]
    no_stun: bool,
    /// UDP address of the relay, which forwards the encrypted packets of peers that cannot
    /// reach each other directly. Default: the QUIC address, port + 2.
    #[arg(long, env = "QUICDESK_RV_RELAY_LISTEN", conflicts_with = "no_relay")]
    relay_listen: Option<SocketAddr>,
    /// Run no relay. Peers behind NATs that defeat hole punching then cannot connect, and
    /// look-ups have to hand out hosts' addresses before any password is proven (with a relay
    /// the peers swap them only after the proof).
    #[arg(long, env = "QUICDESK_RV_NO_RELAY")]
    no_relay: bool,
    /// Most bytes a second one relayed session may use (both directions), e.g. 8MiB.
    #[arg(long, env = "QUICDESK_RV_RELAY_SESSION_RATE", default_value = "8MiB", value_parser = parse_rate)]
    relay_session_rate: u64,
    /// Most bytes a second all relayed sessions together may use, e.g. 64MiB.
    #[arg(long, env = "QUICDESK_RV_RELAY_TOTAL_RATE", default_value = "64MiB", value_parser = parse_rate)]
    relay_total_rate: u64,
    /// Close a relayed session after this long without a packet.
    #[arg(long, env = "QUICDESK_RV_RELAY_IDLE", default_value = "60s", value_parser = humantime::parse_duration)]
    relay_idle: Duration,
    /// Most relayed sessions at once. A look-up that would need one more is refused (never
    /// answered with addresses instead).
    #[arg(long, env = "QUICDESK_RV_RELAY_MAX_SESSIONS", default_value_t = 1000)]
    relay_max_sessions: usize,
    /// Most relayed sessions one controller key may hold at once.
    #[arg(long, env = "QUICDESK_RV_RELAY_SESSIONS_PER_KEY", default_value_t = 4)]
    relay_sessions_per_key: usize,
    /// Most relayed sessions controllers at one address (an IPv4 address or an IPv6 /64) may
    /// hold at once.
    #[arg(
        long,
        env = "QUICDESK_RV_RELAY_SESSIONS_PER_ADDRESS",
        default_value_t = 16
    )]
    relay_sessions_per_address: usize,
    /// Where the key (mode 0600) and the registry database live.
    #[arg(long, env = "QUICDESK_DATA_DIR", default_value_os_t = default_data_dir())]
    data_dir: PathBuf,
    /// Forget hosts after they have been offline this long. A forgotten host's code is
    /// quarantined (see --quarantine); the host gets it back if it returns meanwhile.
    #[arg(long, env = "QUICDESK_RV_FORGET_AFTER", default_value = "24h", value_parser = humantime::parse_duration)]
    forget_after: Duration,
    /// Back the registry up this often into DATA_DIR/backups (0s: never); each backup is a
    /// consistent copy taken while the server runs, checked before it counts.
    #[arg(long, env = "QUICDESK_RV_BACKUP_EVERY", default_value = "30m", value_parser = humantime::parse_duration)]
    backup_every: Duration,
    /// How many scheduled backups to keep (the newest).
    #[arg(long, env = "QUICDESK_RV_BACKUP_KEEP", default_value_t = 48)]
    backup_keep: usize,
    /// Serve Prometheus metrics at http://ADDR/metrics (counts only: hosts, registrations,
    /// look-ups, refusals, STUN, relay). Off by default; use a private address or a firewall.
    #[arg(long, env = "QUICDESK_RV_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// Who may use this rendezvous: `open` (any key), `enrolled` (a host registers only with a
    /// key enrolled through an enrollment token from the console; any controller may look a
    /// code up, the host's password decides) or `closed` (controllers need an enrolled key
    /// too). Tokens ride in invites (`rendezvous invite --token`, or the console).
    #[arg(long, env = "QUICDESK_RV_ACCESS", default_value = "open")]
    access: rendezvous::core::AccessMode,
    /// Most relayed sessions one account's keys may hold at once, in enrolled and closed mode
    /// (the host's account when enrolled, the controller's when closed); 0: no cap.
    #[arg(
        long,
        env = "QUICDESK_RV_RELAY_SESSIONS_PER_ACCOUNT",
        default_value_t = 16
    )]
    relay_sessions_per_account: usize,
    /// Serve the operator's console and HTTP API at https://ADDR (e.g. 0.0.0.0:8443). Off by
    /// default. Make the first admin with `rendezvous user add NAME`.
    #[arg(long, env = "QUICDESK_RV_CONSOLE_LISTEN", value_name = "ADDR")]
    console_listen: Option<SocketAddr>,
    /// The console's certificate chain (PEM, leaf first), e.g. from an ACME client. Without it
    /// the console makes a self-signed certificate from the server's key for --console-name.
    #[arg(
        long,
        env = "QUICDESK_RV_CONSOLE_CERT",
        value_name = "FILE",
        requires = "console_key"
    )]
    console_cert: Option<PathBuf>,
    /// The private key of --console-cert (PEM, mode 0600).
    #[arg(
        long,
        env = "QUICDESK_RV_CONSOLE_KEY",
        value_name = "FILE",
        requires = "console_cert"
    )]
    console_key: Option<PathBuf>,
    /// A name the self-signed certificate is for (DNS name or IP address, as typed in the
    /// browser); repeat for several (in QUICDESK_RV_CONSOLE_NAME: comma-separated). Default:
    /// localhost, 127.0.0.1 and ::1.
    #[arg(
        long = "console-name",
        value_name = "NAME",
        env = "QUICDESK_RV_CONSOLE_NAME",
        value_delimiter = ','
    )]
    console_names: Vec<String>,
    /// Also answer plain HTTP at ADDR (e.g. 0.0.0.0:80) with a redirect to the console's HTTPS
    /// port (same host and path). Nothing else is served without TLS.
    #[arg(
        long,
        env = "QUICDESK_RV_CONSOLE_REDIRECT_FROM",
        value_name = "ADDR",
        requires = "console_listen"
    )]
    console_redirect_from: Option<SocketAddr>,
    /// How long a forgotten host's code is kept from every other host key, so someone who was
    /// told the old code cannot be led to a stranger's machine.
    #[arg(long, env = "QUICDESK_RV_QUARANTINE", default_value = "90days", value_parser = humantime::parse_duration)]
    quarantine: Duration,
}

fn default_data_dir() -> PathBuf {
    dirs::data_local_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("quicdesk")
        .join("rendezvous")
}

/// The command line with the `--config` file's settings merged in (see `cli_config`).
fn arguments() -> anyhow::Result<Vec<std::ffi::OsString>> {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut path = std::env::var_os("QUICDESK_RV_CONFIG").map(PathBuf::from);
    for (i, a) in argv.iter().enumerate() {
        match a.to_str() {
            Some("--config") => path = argv.get(i + 1).map(PathBuf::from),
            Some(a) if a.starts_with("--config=") => path = Some(a["--config=".len()..].into()),
            _ => {}
        }
    }
    let Some(path) = path else {
        return Ok(argv);
    };
    let cli = Cli::command();
    let sub = argv.get(1).and_then(|a| a.to_str());
    let cmd = match sub.and_then(|s| cli.find_subcommand(s)) {
        Some(sub) if matches!(sub.get_name(), "run" | "check-config" | "health") => sub.clone(),
        Some(_) => return Ok(argv),
        None => cli,
    };
    let file = cli_config::load(&path).map_err(anyhow::Error::msg)?;
    cli_config::merge(&cmd, &file, argv).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn main() -> anyhow::Result<()> {
    proto::logging::init();
    let cli = Cli::parse_from(arguments()?);
    match cli.command {
        Some(Command::Fingerprint { data_dir }) => {
            let id = server::identity(&data_dir)
                .with_context(|| format!("loading identity from {}", data_dir.display()))?;
            println!("{}", id.fingerprint());
            Ok(())
        }
        Some(Command::Invite {
            addresses,
            token,
            data_dir,
        }) => {
            let id = server::identity(&data_dir)
                .with_context(|| format!("loading identity from {}", data_dir.display()))?;
            let mut invite = proto::invite::Invite::new(addresses, id.fingerprint())?;
            if let Some(t) = token {
                invite = invite.with_token(&t)?;
            }
            eprintln!("Give peers this invite; each runs `peer join INVITE` once:");
            println!("{invite}");
            Ok(())
        }
        Some(Command::Backup { to, data_dir }) => {
            rendezvous::backup::backup(&data_dir, &to)?;
            eprintln!("registry copied to {} and checked", to.display());
            Ok(())
        }
        Some(Command::Restore { from, data_dir }) => {
            rendezvous::backup::restore(&data_dir, &from)?;
            eprintln!("registry restored from {}", from.display());
            Ok(())
        }
        Some(Command::User(cmd)) => user(cmd),
        Some(Command::Run(args)) => run(args),
        Some(Command::CheckConfig(args)) => check_config(&args),
        Some(Command::Health(args)) => {
            let said = cli_health::health(args.listen, &args.data_dir)?;
            say!("{said}");
            Ok(())
        }
        None => run(cli.run),
    }
}

/// `rendezvous check-config`: the settings `run` would use, checked as far as can be without
/// starting (addresses, the data directory's ownership and mode).
fn check_config(args: &RunArgs) -> anyhow::Result<()> {
    let cfg = server_config(args)?;
    if cfg.data_dir.exists() {
        certs::check_private_dir(&cfg.data_dir)
            .with_context(|| format!("data directory {}", cfg.data_dir.display()))?;
    }
    let ports: Vec<SocketAddr> = [
        Some(cfg.listen),
        cfg.stun_listen,
        cfg.relay.as_ref().map(|r| r.listen),
    ]
    .into_iter()
    .flatten()
    .collect();
    for (i, a) in ports.iter().enumerate() {
        if a.port() != 0 && ports[..i].contains(a) {
            anyhow::bail!("two services would listen on {a}");
        }
    }
    let off = |a: Option<SocketAddr>| a.map_or_else(|| "off".to_owned(), |a| a.to_string());
    println!("listen = {}", cfg.listen);
    println!("stun-listen = {}", off(cfg.stun_listen));
    println!(
        "relay-listen = {}",
        off(cfg.relay.as_ref().map(|r| r.listen))
    );
    if let Some(r) = &cfg.relay {
        println!(
            "relay-session-rate = {} B/s",
            r.limits.session_bytes_per_sec
        );
        println!("relay-total-rate = {} B/s", r.limits.total_bytes_per_sec);
        println!("relay-idle = {}", human(r.limits.idle));
        println!("relay-max-sessions = {}", r.limits.max_sessions);
        println!("relay-sessions-per-key = {}", r.limits.max_sessions_per_key);
        println!(
            "relay-sessions-per-address = {}",
            r.limits.max_sessions_per_prefix
        );
    }
    println!("data-dir = {}", cfg.data_dir.display());
    println!("forget-after = {}", human(cfg.forget_after));
    println!("quarantine = {}", human(cfg.quarantine));
    match cfg.backup_every {
        Some(every) => println!(
            "backup-every = {}\nbackup-keep = {}",
            human(every),
            cfg.backup_keep
        ),
        None => println!("backup-every = off"),
    }
    println!("access = {}", cfg.access);
    println!(
        "relay-sessions-per-account = {}",
        cfg.relay_sessions_per_account.unwrap_or(0)
    );
    match console_config(args) {
        Some(c) => {
            println!("console-listen = {}", c.listen);
            match c.certificate {
                rendezvous::console::Certificate::Files { chain, key } => {
                    println!(
                        "console-cert = {}\nconsole-key = {}",
                        chain.display(),
                        key.display()
                    );
                }
                rendezvous::console::Certificate::SelfSigned { names } => {
                    println!("console-name = {names:?} (self-signed)");
                }
            }
        }
        None => println!("console-listen = off"),
    }
    eprintln!("the configuration is valid");
    Ok(())
}

/// A duration as the flags take it: whole days as days (humantime would say "2months 29days
/// 2h 52m 48s" for 90 days), else humantime's form.
fn human(d: Duration) -> String {
    const DAY: u64 = 86_400;
    if d.as_secs() >= DAY && d.as_secs().is_multiple_of(DAY) && d.subsec_nanos() == 0 {
        format!("{}days", d.as_secs() / DAY)
    } else {
        humantime::format_duration(d).to_string()
    }
}

/// The server's configuration from the settings.
fn server_config(args: &RunArgs) -> anyhow::Result<server::Config> {
    Ok(server::Config {
        listen: args.listen,
        stun_listen: next_port(
            &args.listen,
            args.no_stun,
            args.stun_listen,
            1,
            "--stun-listen",
        )?,
        relay: next_port(
            &args.listen,
            args.no_relay,
            args.relay_listen,
            2,
            "--relay-listen",
        )?
        .map(|listen| server::RelayConfig {
            listen,
            limits: rendezvous::relay::Limits {
                session_bytes_per_sec: args.relay_session_rate,
                total_bytes_per_sec: args.relay_total_rate,
                idle: args.relay_idle,
                max_sessions: args.relay_max_sessions,
                max_sessions_per_key: args.relay_sessions_per_key,
                max_sessions_per_prefix: args.relay_sessions_per_address,
                ..rendezvous::relay::Limits::default()
            },
        }),
        data_dir: args.data_dir.clone(),
        forget_after: args.forget_after,
        quarantine: args.quarantine,
        backup_every: Some(args.backup_every).filter(|d| !d.is_zero()),
        backup_keep: args.backup_keep,
        access: args.access,
        relay_sessions_per_account: Some(args.relay_sessions_per_account).filter(|&n| n > 0),
    })
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async {
        let server = Server::bind(&server_config(&args)?).with_context(|| {
            format!("starting rendezvous (data dir {})", args.data_dir.display())
        })?;
        let addr = server.local_addr()?;
        say!("rendezvous listening on {addr}");
        if let Some(stun) = server.stun_addr() {
            say!("stun responder on {stun}");
        }
        if let Some(relay) = server.relay_addr() {
            say!("relay on {relay}");
        }
        say!("fingerprint: {}", server.fingerprint());
        let closer = server.closer();
        let logins = rendezvous::console::LoginCounters::default();
        let metrics = match args.metrics_listen {
            Some(listen) => {
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("metrics: cannot listen on {listen}"))?;
                say!("metrics on http://{}/metrics", listener.local_addr()?);
                let (snapshots, stun) = (server.snapshots(), server.stun_counters());
                let logins = logins.clone();
                let mut closed = closer.subscribe();
                Some(tokio::spawn(rendezvous::metrics::serve(
                    listener,
                    snapshots,
                    stun,
                    logins,
                    async move {
                        let _ = closed.wait_for(|c| *c).await;
                    },
                )))
            }
            None => None,
        };
        let console = match console_config(&args) {
            Some(cfg) => {
                let handles = rendezvous::console::Handles {
                    admin: server.admin(),
                    stun: server.stun_counters(),
                    logins: logins.clone(),
                };
                let bound = rendezvous::console::bind(&cfg, &args.data_dir, handles)
                    .await
                    .context("starting the console")?;
                say!("console on https://{}/", bound.local_addr);
                if let Some(sha) = &bound.self_signed_sha256 {
                    say!("console certificate (self-signed) SHA-256: {sha}");
                }
                if !bound.has_users {
                    say!(
                        "no console user yet: make the first admin with `rendezvous user add NAME`"
                    );
                }
                if let Some(plain) = args.console_redirect_from {
                    let listener = tokio::net::TcpListener::bind(plain)
                        .await
                        .with_context(|| format!("console redirect: cannot listen on {plain}"))?;
                    say!("http://{} redirects to the console", listener.local_addr()?);
                    let mut closed = closer.subscribe();
                    tokio::spawn(rendezvous::console::redirect_http(
                        listener,
                        bound.local_addr.port(),
                        async move {
                            let _ = closed.wait_for(|c| *c).await;
                        },
                    ));
                }
                let mut closed = closer.subscribe();
                Some(tokio::spawn(bound.serve(async move {
                    let _ = closed.wait_for(|c| *c).await;
                })))
            }
            None => None,
        };
        let serving = tokio::spawn(server.run());
        shutdown_signal().await;
        tracing::info!("shutting down");
        closer.close();
        serving.await.context("server task")?;
        if let Some(m) = metrics {
            m.await.context("metrics task")??;
        }
        if let Some(c) = console {
            c.await.context("console task")?;
        }
        Ok(())
    })
}

/// The address of a side service (STUN, relay): as given, else the QUIC address with the port
/// `offset` further (port 0 stays 0).
fn next_port(
    listen: &SocketAddr,
    off: bool,
    given: Option<SocketAddr>,
    offset: u16,
    flag: &str,
) -> anyhow::Result<Option<SocketAddr>> {
    if off {
        return Ok(None);
    }
    if let Some(addr) = given {
        return Ok(Some(addr));
    }
    let mut addr = *listen;
    if addr.port() != 0 {
        let port = addr.port().checked_add(offset).with_context(|| {
            format!(
                "the QUIC port {} leaves no room above it: give {flag}",
                addr.port()
            )
        })?;
        addr.set_port(port);
    }
    Ok(Some(addr))
}

/// A byte rate such as `8MiB`, `500KiB`, `1GB` or `1000000` (bytes a second).
fn parse_rate(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number of bytes, e.g. 8MiB"))?;
    let mult: u64 = match unit.trim().trim_end_matches("/s") {
        "" | "B" => 1,
        "K" | "KB" => 1_000,
        "KiB" => 1 << 10,
        "M" | "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "G" | "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        u => {
            return Err(format!(
                "{u:?}: unknown unit (B, KB, KiB, MB, MiB, GB, GiB)"
            ));
        }
    };
    match n.checked_mul(mult) {
        Some(0) => Err("a rate must be above 0".into()),
        Some(v) => Ok(v),
        None => Err(format!("{s:?} is too large")),
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_units_and_refuse_junk() {
        assert_eq!(parse_rate("8MiB"), Ok(8 << 20));
        assert_eq!(parse_rate("500KB/s"), Ok(500_000));
        assert_eq!(parse_rate("1234"), Ok(1234));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("5 parsecs").is_err());
        assert!(parse_rate("99999999999GiB").is_err());
    }
}
