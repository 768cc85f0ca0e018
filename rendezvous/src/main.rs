//! `rendezvous`: the server an operator runs so quicdesk peers can find each other.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use rendezvous::server::{self, Server};

/// quicdesk rendezvous server: registers host codes, tells controllers how to reach hosts.
///
/// Peers pin this server's fingerprint, printed at start (and by `rendezvous fingerprint`).
#[derive(Parser, Debug)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (the default).
    Run(RunArgs),
    /// Print this server's fingerprint (creating its key if needed) and exit.
    Fingerprint {
        #[arg(long, env = "QUICDESK_DATA_DIR", default_value_os_t = default_data_dir())]
        data_dir: PathBuf,
    },
}

#[derive(Args, Debug)]
struct RunArgs {
    /// UDP address for QUIC.
    #[arg(long, default_value = "0.0.0.0:7700")]
    listen: SocketAddr,
    /// UDP address of the STUN responder (RFC 8489 Binding), which peers compare with the QUIC
    /// port to learn how their NAT maps ports. Default: the QUIC address, port + 1.
    #[arg(long, conflicts_with = "no_stun")]
    stun_listen: Option<SocketAddr>,
    /// Run no STUN responder (peers then cannot tell their NAT's mapping behaviour).
    #[arg(long)]
    no_stun: bool,
    /// Where the key (mode 0600) and the registry database live.
    #[arg(long, env = "QUICDESK_DATA_DIR", default_value_os_t = default_data_dir())]
    data_dir: PathBuf,
    /// Forget hosts (and free their codes) after they have been offline this long.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    forget_after: Duration,
}

fn default_data_dir() -> PathBuf {
    dirs::data_local_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("quicdesk")
        .join("rendezvous")
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Fingerprint { data_dir }) => {
            let id = server::identity(&data_dir)
                .with_context(|| format!("loading identity from {}", data_dir.display()))?;
            println!("{}", id.fingerprint());
            Ok(())
        }
        Some(Command::Run(args)) => run(args),
        None => run(cli.run),
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async {
        let server = Server::bind(&server::Config {
            listen: args.listen,
            stun_listen: stun_listen(&args)?,
            data_dir: args.data_dir.clone(),
            forget_after: args.forget_after,
        })
        .with_context(|| format!("starting rendezvous (data dir {})", args.data_dir.display()))?;
        let addr = server.local_addr()?;
        println!("rendezvous listening on {addr}");
        if let Some(stun) = server.stun_addr() {
            println!("stun responder on {stun}");
        }
        println!("fingerprint: {}", server.fingerprint());
        let closer = server.closer();
        let serving = tokio::spawn(server.run());
        shutdown_signal().await;
        tracing::info!("shutting down");
        closer.close();
        serving.await.context("server task")?;
        Ok(())
    })
}

/// The STUN address: as given, else the QUIC address with the next port (port 0 stays 0).
fn stun_listen(args: &RunArgs) -> anyhow::Result<Option<SocketAddr>> {
    if args.no_stun {
        return Ok(None);
    }
    if let Some(addr) = args.stun_listen {
        return Ok(Some(addr));
    }
    let mut addr = args.listen;
    if addr.port() != 0 {
        let port = addr.port().checked_add(1).context(
            "the QUIC port is 65535, so the STUN responder has no next port: give --stun-listen",
        )?;
        addr.set_port(port);
    }
    Ok(Some(addr))
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
