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
    /// Print an invite: one string with this server's addresses and key that a peer takes with
    /// `peer join INVITE`, after which `peer host` and `peer connect CODE` need no rendezvous
    /// flags. It holds no secret (peers pin the key it names).
    Invite {
        /// Address peers reach this server's QUIC port at, host:port (a DNS name, an IPv4
        /// address or [IPv6]); repeat for up to 4, tried in order.
        #[arg(long = "address", required = true, value_name = "HOST:PORT")]
        addresses: Vec<String>,
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
    /// UDP address of the relay, which forwards the encrypted packets of peers that cannot
    /// reach each other directly. Default: the QUIC address, port + 2.
    #[arg(long, conflicts_with = "no_relay")]
    relay_listen: Option<SocketAddr>,
    /// Run no relay. Peers behind NATs that defeat hole punching then cannot connect, and
    /// look-ups have to hand out hosts' addresses before any password is proven (with a relay
    /// the peers swap them only after the proof).
    #[arg(long)]
    no_relay: bool,
    /// Most bytes a second one relayed session may use (both directions), e.g. 8MiB.
    #[arg(long, default_value = "8MiB", value_parser = parse_rate)]
    relay_session_rate: u64,
    /// Most bytes a second all relayed sessions together may use, e.g. 64MiB.
    #[arg(long, default_value = "64MiB", value_parser = parse_rate)]
    relay_total_rate: u64,
    /// Close a relayed session after this long without a packet.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    relay_idle: Duration,
    /// Most relayed sessions at once. A look-up that would need one more is refused (never
    /// answered with addresses instead).
    #[arg(long, default_value_t = 1000)]
    relay_max_sessions: usize,
    /// Most relayed sessions one controller key may hold at once.
    #[arg(long, default_value_t = 4)]
    relay_sessions_per_key: usize,
    /// Most relayed sessions controllers at one address (an IPv4 address or an IPv6 /64) may
    /// hold at once.
    #[arg(long, default_value_t = 16)]
    relay_sessions_per_address: usize,
    /// Where the key (mode 0600) and the registry database live.
    #[arg(long, env = "QUICDESK_DATA_DIR", default_value_os_t = default_data_dir())]
    data_dir: PathBuf,
    /// Forget hosts after they have been offline this long. A forgotten host's code is
    /// quarantined (see --quarantine); the host gets it back if it returns meanwhile.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    forget_after: Duration,
    /// How long a forgotten host's code is kept from every other host key, so someone who was
    /// told the old code cannot be led to a stranger's machine.
    #[arg(long, default_value = "90days", value_parser = humantime::parse_duration)]
    quarantine: Duration,
}

fn default_data_dir() -> PathBuf {
    dirs::data_local_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("quicdesk")
        .join("rendezvous")
}

fn main() -> anyhow::Result<()> {
    proto::logging::init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Fingerprint { data_dir }) => {
            let id = server::identity(&data_dir)
                .with_context(|| format!("loading identity from {}", data_dir.display()))?;
            println!("{}", id.fingerprint());
            Ok(())
        }
        Some(Command::Invite {
            addresses,
            data_dir,
        }) => {
            let id = server::identity(&data_dir)
                .with_context(|| format!("loading identity from {}", data_dir.display()))?;
            let invite = proto::invite::Invite::new(addresses, id.fingerprint())?;
            eprintln!("Give peers this invite; each runs `peer join INVITE` once:");
            println!("{invite}");
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
        })
        .with_context(|| format!("starting rendezvous (data dir {})", args.data_dir.display()))?;
        let addr = server.local_addr()?;
        println!("rendezvous listening on {addr}");
        if let Some(stun) = server.stun_addr() {
            println!("stun responder on {stun}");
        }
        if let Some(relay) = server.relay_addr() {
            println!("relay on {relay}");
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
