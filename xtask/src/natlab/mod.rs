//! `cargo xtask nat-lab`: real binaries behind real (nftables) NATs in network namespaces.
//!
//! ```text
//!                 inet (bridge lab0, 198.51.100.1 = rendezvous :7700, STUN :7701, relay :7702)
//!                  │                                   │
//!   nat1: 198.51.100.11 ── NAT kind A ──┐     ┌── NAT kind B ── nat2: 198.51.100.12
//!         10.1.0.1                      │     │                 10.2.0.1
//!   lan1: 10.1.0.2  peer host ──────────┘     └────────── peer connect  lan2: 10.2.0.2
//! ```
//!
//! One topology per pair of NAT kinds, named `qdlab<pid>-…`; every namespace is deleted when the
//! pair ends, on failure and on Ctrl-C, and stale ones from a killed run are deleted at start.
//! The NAT rules are those of `shared/nat-lab.md`: nftables `masquerade random` for symmetric
//! NATs, a dynamic map for full cone, plus an established-only forward filter for port-restricted
//! cone. "symmetric-seq" is a symmetric NAT that hands out ports in sequence (`snat to IP :
//! numgen inc …`, evaluated once per new flow), the kind port prediction can beat. "No NAT"
//! routes the LAN from the internet side; "blocked" lets UDP through only to and from the
//! rendezvous.
//!
//! `topology` builds and deletes the namespaces and applies the NAT rules (and what the lab does
//! to a running pair: cut the direct path); `session` runs rendezvous, host and controller in
//! them and reads what happened; `flush` makes routers forget their mappings mid-session and
//! measures when frames flow again (`--flush`); `wire` is the user-space delay-and-loss wire
//! (`--netem`).

mod flush;
mod session;
mod topology;
pub mod wire;

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use self::flush::{Flush, RESUME_WITHIN_MS, Side};
use self::session::{LAB_EVENTS, Outcome, run_pair};
use self::topology::{Nat, delete_stale, install_signal_cleanup};
use self::wire::Impairment;

/// What happens to the paths during a session.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conditions {
    /// netem-style delay and loss on the host's internet link, both ways.
    pub netem: Option<String>,
    /// Seconds after the controller starts at which the host's router starts dropping
    /// everything between the two peers' public addresses (the relay still works).
    pub cut_direct_after: Option<u32>,
    /// A router (or both) forgets every NAT mapping this long after the controller starts.
    pub flush: Option<Flush>,
}

impl std::fmt::Display for Conditions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(n) = &self.netem {
            parts.push(n.clone());
        }
        if let Some(s) = self.cut_direct_after {
            parts.push(format!("direct path cut at {s} s"));
        }
        if let Some(fl) = self.flush {
            parts.push(format!(
                "{} mappings flushed at {} s",
                fl.side.name(),
                fl.at.as_secs_f64()
            ));
        }
        if parts.is_empty() {
            f.write_str("-")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// The pairs CI runs, each with the path it must end on (`None`: either). Cone NATs, filtering
/// NATs on both sides (hole punching), a symmetric controller against a full cone
/// (peer-reflexive candidates), a sequential symmetric host against a filtering controller
/// (port prediction), random symmetric against port-restricted both ways (birthday punching),
/// and a pair no punching opens, which must end on the relay.
pub const CI_PAIRS: [(Nat, Nat, Option<&str>); 7] = [
    (Nat::FullCone, Nat::FullCone, Some("direct")),
    (Nat::PortRestricted, Nat::PortRestricted, Some("direct")),
    (Nat::FullCone, Nat::Symmetric, Some("direct")),
    (Nat::SymmetricSeq, Nat::PortRestricted, Some("direct")),
    (Nat::PortRestricted, Nat::Symmetric, Some("direct")),
    (Nat::Symmetric, Nat::PortRestricted, Some("direct")),
    (Nat::Symmetric, Nat::Symmetric, Some("relay")),
];

/// The cut CI runs: the direct path dies mid-session; the session must go on by the relay.
pub const CI_CUT: (Nat, Nat, u32) = (Nat::PortRestricted, Nat::PortRestricted, 2);

/// When CI's flushes happen, after the controller starts (the session is direct by then).
pub const CI_FLUSH_AT: Duration = Duration::from_secs(3);
/// `--flush-at` unless given.
pub const DEFAULT_FLUSH_AT: Duration = Duration::from_secs(3);

/// The flushes CI runs: a router forgets every mapping mid-session and frames must flow again
/// within 2 s. The controller's filtering NAT and its symmetric NAT forgetting (the controller's
/// next packet opens it again, or leaves from a new port); the host's filtering NAT forgetting
/// (the host's new port is dropped by the controller's NAT: both agents declare the direct path
/// dead after 1 s and fall back to the relay, then punch again); the host's symmetric NAT
/// forgetting on a direct session towards a filtering NAT (relay, then birthday punching
/// again), and on a relayed one (a new port towards the relay, which asks for a new bind); and
/// both routers at once. Each passed every lab run since the path agent drives the socket.
pub const CI_FLUSH: &[(Nat, Nat, Side)] = &[
    (Nat::PortRestricted, Nat::PortRestricted, Side::Controller),
    (Nat::FullCone, Nat::Symmetric, Side::Controller),
    (Nat::PortRestricted, Nat::PortRestricted, Side::Host),
    (Nat::Symmetric, Nat::PortRestricted, Side::Host),
    (Nat::Symmetric, Nat::Symmetric, Side::Host),
    (Nat::PortRestricted, Nat::Symmetric, Side::Both),
];

/// The lossy path CI runs: a session over it must deliver frames and every input event.
pub const CI_NETEM: (Nat, Nat, &str) = (
    Nat::PortRestricted,
    Nat::PortRestricted,
    "delay 50ms loss 5%",
);

/// `cargo xtask nat-lab [--pairs host:ctl,...] [--seconds N]`: prints the matrix.
pub fn nat_lab(rest: &[String]) -> Result<()> {
    let mut pairs: Vec<(Nat, Nat, Option<&str>)> = Nat::ALL
        .into_iter()
        .flat_map(|a| Nat::ALL.into_iter().map(move |b| (a, b, None)))
        .collect();
    let mut seconds = 3;
    let mut ci = false;
    let mut netem: Option<String> = None;
    let mut cut: Option<u32> = None;
    let mut flush_side: Option<Side> = None;
    let mut flush_at = DEFAULT_FLUSH_AT;
    let mut it = rest.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--pairs" => {
                let list = it.next().context("--pairs needs host:controller,...")?;
                pairs = list
                    .split(',')
                    .map(|p| {
                        let (a, b) = p
                            .split_once(':')
                            .with_context(|| format!("pair {p:?} is not host:controller"))?;
                        Ok((Nat::parse(a)?, Nat::parse(b)?, None))
                    })
                    .collect::<Result<_>>()?;
            }
            "--ci" => {
                pairs = CI_PAIRS.to_vec();
                ci = true;
            }
            "--netem" => {
                let arg = it
                    .next()
                    .context("--netem needs netem-style arguments, e.g. \"delay 50ms loss 5%\"")?;
                Impairment::parse(arg)?;
                netem = Some(arg.clone());
            }
            "--cut-direct-after" => {
                cut = Some(
                    it.next()
                        .context("--cut-direct-after needs seconds")?
                        .parse()
                        .context("--cut-direct-after needs whole seconds")?,
                );
            }
            "--flush" => {
                flush_side = Some(Side::parse(
                    it.next()
                        .context("--flush needs host, controller or both")?,
                )?);
            }
            "--flush-at" => {
                let s: f64 = it
                    .next()
                    .context("--flush-at needs seconds")?
                    .parse()
                    .context("--flush-at needs seconds, e.g. 3 or 2.5")?;
                if !(0.5..=600.0).contains(&s) {
                    bail!("--flush-at takes 0.5 to 600 seconds, not {s}");
                }
                flush_at = Duration::from_secs_f64(s);
            }
            "--seconds" => {
                seconds = it
                    .next()
                    .context("--seconds needs a number")?
                    .parse()
                    .context("--seconds needs a number")?;
            }
            other => bail!("unknown nat-lab option {other:?}"),
        }
    }
    if !crate::setup::is_root() {
        bail!("nat-lab needs root (network namespaces and nftables): run it with sudo");
    }
    let mut tools = vec!["nft", "ip", "ethtool"];
    if flush_side.is_some() || ci {
        tools.extend(["conntrack", "tcpdump"]);
    }
    for tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            bail!(
                "nat-lab needs {tool}: run `cargo xtask setup` (installs nftables, iproute2, ethtool, conntrack and tcpdump)"
            );
        }
    }
    crate::proc::run(crate::proc::cargo().args([
        "build",
        "-p",
        "rendezvous",
        "-p",
        "peer",
        "--bins",
    ]))?;
    delete_stale();
    install_signal_cleanup();
    let mut runs: Vec<(Nat, Nat, Option<&str>, Conditions)> = pairs
        .into_iter()
        .map(|(h, c, want)| {
            let conditions = Conditions {
                netem: netem.clone(),
                cut_direct_after: cut,
                flush: flush_side.map(|side| Flush { side, at: flush_at }),
            };
            (h, c, want, conditions)
        })
        .collect();
    if ci {
        let (h, c, n) = CI_NETEM;
        let lossy = Conditions {
            netem: Some(n.to_owned()),
            ..Conditions::default()
        };
        runs.push((h, c, None, lossy));
        let (h, c, at) = CI_CUT;
        let cut = Conditions {
            cut_direct_after: Some(at),
            ..Conditions::default()
        };
        runs.push((h, c, Some("relay"), cut));
        for &(h, c, side) in CI_FLUSH {
            let flushed = Conditions {
                flush: Some(Flush {
                    side,
                    at: CI_FLUSH_AT,
                }),
                ..Conditions::default()
            };
            runs.push((h, c, None, flushed));
        }
    }
    let mut outcomes = Vec::new();
    let mut failures = Vec::new();
    let mut flush_failures = Vec::new();
    for (h, c, want, conditions) in runs {
        eprintln!(
            "nat-lab: host behind {}, controller behind {}, {conditions}",
            h.name(),
            c.name(),
        );
        // Lossy or cut paths: long enough for the input to get through and frames to follow.
        // A flush: 5 s after it, to see the fallback and frames flowing on.
        let secs = match conditions.flush {
            Some(f) => seconds.max(f.at.as_secs_f64().ceil() as u32 + 5),
            None if conditions == Conditions::default() => seconds,
            None => seconds.max(6),
        };
        let o = run_pair(h, c, secs, &conditions)?;
        if let Some(e) = &o.error {
            eprintln!("nat-lab:   not connected: {e}");
        }
        let pair = format!("host {} / controller {} ({conditions})", h.name(), c.name());
        if !o.connected {
            failures.push(format!(
                "{pair} did not connect: {}",
                o.error.as_deref().unwrap_or("no frames")
            ));
        } else if o.input_events != LAB_EVENTS {
            failures.push(format!(
                "{pair}: the host got {} of {LAB_EVENTS} input events",
                o.input_events
            ));
        }
        if let Some(want) = want
            && o.connected
            && o.path != want
        {
            failures.push(format!("{pair} ended on the {} path, not {want}", o.path));
        }
        // A cut must be a real fallback (relay, then direct, then the relay again: 2 changes),
        // and frames must keep coming after it: counted from the last change, at least 2/3 of
        // 30 fps over what is left after the cut and the 1.5 s it takes to notice it.
        if let Some(at) = conditions.cut_direct_after {
            let after = u64::from(secs.saturating_sub(at + 2)) * 20;
            if o.path_changes < 2 {
                failures.push(format!(
                    "{pair}: {} path changes, not a fallback to the relay",
                    o.path_changes
                ));
            }
            if o.frames_since_change < after {
                failures.push(format!(
                    "{pair}: only {} frames after falling back (want {after})",
                    o.frames_since_change
                ));
            }
        }
        // A flush: frames must flow again within 2 s, on whichever path, and keep flowing.
        if let (Some(fl), true) = (conditions.flush, o.connected) {
            let measured = o.flush.as_ref();
            match measured.and_then(|m| m.resumed_ms.zip(m.path)) {
                Some((ms, path)) if ms <= RESUME_WITHIN_MS => {
                    eprintln!("nat-lab:   frames flowed again {ms:.0} ms after the flush, {path}");
                }
                Some((ms, path)) => flush_failures.push(format!(
                    "{pair}: frames flowed again only {ms:.0} ms after the {} flush (on the {path} \
                     path), not within {RESUME_WITHIN_MS:.0} ms",
                    fl.side.name()
                )),
                None => flush_failures.push(format!(
                    "{pair}: frames never flowed again for a second after the {} flush",
                    fl.side.name()
                )),
            }
            // ...and to the end: a flush may cost 2 s, the rest must come at 25 of 30 fps
            // (once a session resumed on the relay, then lost its video when one side went
            // direct on a path the other did not take packets from).
            let want = u64::from(secs.saturating_sub(2)) * 25;
            if o.frames < want {
                flush_failures.push(format!(
                    "{pair}: only {} frames in the session after the {} flush (want {want})",
                    o.frames,
                    fl.side.name()
                ));
            }
        }
        outcomes.push(o);
    }
    print_matrix(&outcomes);
    if outcomes.iter().any(|o| o.flush.is_some()) {
        print_flushes(&outcomes);
    }
    // A flush run by hand fails with its figures too: that is the requirement being checked.
    let flush_failed = !flush_failures.is_empty();
    failures.extend(flush_failures);
    for f in &failures {
        eprintln!("nat-lab: FAILED: {f}");
    }
    if (ci && !failures.is_empty()) || flush_failed {
        bail!("NAT lab: {}", failures.join("; "));
    }
    Ok(())
}

fn print_flushes(outcomes: &[Outcome]) {
    println!(
        "\n| host NAT | controller NAT | flushed | conntrack entries deleted | frames again after | on | path at the end (changes) | frames (since the last path change) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for o in outcomes {
        let (Some(fl), Some(m)) = (o.conditions.flush, &o.flush) else {
            continue;
        };
        let deleted: Vec<String> = m.deleted.iter().map(u64::to_string).collect();
        println!(
            "| {} | {} | {} at {} s | {} | {} | {} | {} ({}) | {} ({}) |",
            o.host.name(),
            o.controller.name(),
            fl.side.name(),
            fl.at.as_secs_f64(),
            deleted.join(" + "),
            m.resumed_ms
                .map_or("never".into(), |ms| format!("{ms:.0} ms")),
            m.path.unwrap_or("-"),
            o.path,
            o.path_changes,
            o.frames,
            o.frames_since_change
        );
    }
}

fn print_matrix(outcomes: &[Outcome]) {
    let ms = |v: Option<f64>| v.map_or("-".into(), |ms| format!("{ms:.0} ms"));
    println!(
        "\n| host NAT | controller NAT | path conditions | connected | path (changes) | time to first frame | time to direct | frames (since the last path change) | input events |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for o in outcomes {
        println!(
            "| {} | {} | {} | {} | {} ({}) | {} | {} | {} ({}) | {}/{LAB_EVENTS} |",
            o.host.name(),
            o.controller.name(),
            o.conditions,
            if o.connected { "yes" } else { "no" },
            o.path,
            o.path_changes,
            ms(o.time_to_first_frame_ms),
            ms(o.time_to_direct_ms),
            o.frames,
            o.frames_since_change,
            o.input_events
        );
    }
}
