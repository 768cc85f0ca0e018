//! `cargo xtask`: project chores that plain cargo does not do.
//!
//! - `setup`: install the Debian packages the build and the tests need (root or sudo).
//! - `test`: setup, then formatting, lints and the whole test suite (what CI runs).
//! - `demo`: setup, then a live session on this machine: rendezvous on loopback, a host sharing
//!   the screen, and the viewer window (on a machine without a display, both on private Xvfb
//!   displays, with a screenshot of the viewer at the end).
//! - `bench`: setup, then the codec and capture benchmarks and end-to-end sessions, as tables.
//! - `fuzz`: coverage-guided fuzzing of every target in `fuzz/` (cargo-fuzz on stable), as a
//!   table.
//! - `attack`: the hostile clients of the security suite alone, with what they measure.
//! - `nat-lab`: the real binaries behind nftables NATs in network namespaces (root).
//! - `windows`: the Windows programs cross-built in a cached Debian chroot and tested under
//!   Wine (root).
//! - `container`: the rendezvous's container image built with Podman and checked as an
//!   operator runs it (root).
//!
//! This file only dispatches and prints the help. One module per command (`setup`, `test` with
//! `attack`, `demo`, `bench`, `fuzz`, `natlab`); `proc` holds the process helpers every command
//! uses and `loopback` the scripted sessions the demo, the benches and the tests share.
//!
//! Few dependencies on purpose: std, anyhow, serde_json, ctrlc and pnet_datalink (the NAT lab)
//! and `capture` for its Xvfb helper.

mod bench;
mod container;
mod demo;
mod fuzz;
mod loopback;
mod natlab;
mod proc;
mod setup;
mod test;
mod windows;

use anyhow::{Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        print_help();
        bail!("no command given");
    };
    let rest = &args[1..];
    // `cargo xtask nat-lab --help` asks for help, not for a run that fails on the flag.
    // (Not past `--`: what follows is for the tools a command runs.)
    if rest
        .iter()
        .take_while(|a| *a != "--")
        .any(|a| a == "--help" || a == "-h")
    {
        if cmd == "fuzz" {
            eprintln!("{}", fuzz::USAGE);
        } else {
            print_help();
        }
        return Ok(());
    }
    match cmd.as_str() {
        "setup" => setup::setup(),
        "test" => test::test(rest),
        "demo" => demo::demo(rest),
        "bench" => bench::bench(rest),
        "fuzz" => fuzz::fuzz(rest),
        "attack" => test::attack(rest),
        "windows" => windows::windows(rest),
        "container" => container::container(rest),
        "nat-lab" => {
            setup::setup()?;
            natlab::nat_lab(rest)
        }
        // Internal: the NAT lab's delay-and-loss wire, run inside a lab namespace.
        "netem-wire" => match rest {
            [router_if, bridge_if, router_mac, netem] => natlab::wire::run(
                router_if,
                bridge_if,
                router_mac,
                natlab::wire::Impairment::parse(netem)?,
            ),
            _ => bail!(
                "usage: xtask netem-wire ROUTER_IF BRIDGE_IF ROUTER_MAC \"delay 50ms loss 5%\""
            ),
        },
        "help" | "--help" | "-h" => {
            print_help();
            Ok(())
        }
        other => {
            print_help();
            bail!("unknown command {other:?}")
        }
    }
}

fn print_help() {
    eprintln!(
        "cargo xtask <command>

commands:
  setup    install the Debian packages the build and tests need (needs root or sudo)
  test     setup + cargo fmt --check + clippy -D warnings + the whole test suite, then a
           coverage-guided run of every fuzz target (20 s each), then `container test` and
           `windows test`
  demo     setup + a live session on this machine: rendezvous on loopback, a host sharing the
           screen, the viewer window; without a display both run on private Xvfb displays and
           screenshots land in target/demo (demo --seconds N to change the length, default 20)
  bench    setup + codec benchmarks (criterion) + an end-to-end session, as a table
  attack   the hostile clients of the security suite (raw UDP, raw QUIC, a hostile host, a man in
           the middle) against the rendezvous, the relay, a host and a controller, with what each
           measures printed (amplification per service, memory under a pre-auth flood, ...);
           also part of `test`
  nat-lab  setup + rendezvous, host and controller behind nftables NATs in network namespaces
           (root), for every pair of NAT kinds; prints the matrix. Options: --pairs
           host:controller,... (kinds: none, cone, port-restricted, symmetric, symmetric-seq,
           blocked), --seconds N, --netem \"delay 50ms loss 5% rate 2mbit\" (on the host's internet link,
           both ways), --cut-direct-after S (drop all traffic between the peers S seconds in),
           --flush host|controller|both [--flush-at S] (that router forgets every NAT mapping
           S seconds in, default 3: conntrack -F and the cone map; a packet capture at the
           controller tells when frames flow again and on which path; fails unless within
           2 s), --ci (the pairs, the lossy, cut and flush runs the test suite requires)
  fuzz     coverage-guided fuzzing of the targets in fuzz/ (cargo-fuzz on stable, installed
           into ~/.cache/quicdesk): [--minutes N | --seconds N] [--runs N] [--write-seeds]
           [TARGET...]; prints executions, exec/s and coverage per target (fuzz --help)
  windows  the Windows build in a Debian chroot cached in ~/.cache/quicdesk/trixie (root):
           `windows setup` makes the chroot; `windows build` peer.exe, rendezvous.exe and the
           test binaries; `windows test [lint|unit|host|viewer|prompt|service|installer]` runs clippy on
           the Windows build, then runs them under
           Wine on a private Xvfb: the Windows crates' unit tests, a Windows host with a Linux
           controller, the Windows viewer with a Linux host, the accept/deny prompt, the
           Windows service, and the
           release build, its DLL check and the installer (all by default);
           `windows cargo ARGS` runs cargo for the Windows target in the chroot
  container  the rendezvous's image (rendezvous/dist/Dockerfile) built with Podman (root; base
           images made from Debian's packages, cached in ~/.cache/quicdesk/containers):
           `container build`; `container test` also runs it as an operator does (settings from
           the environment, uid 10001, first admin, console over HTTPS, a relayed session, a
           clean stop, a new container on the same volume); part of `test`"
    );
}
