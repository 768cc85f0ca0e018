//! The mapping-flush option (`--flush host|controller|both --flush-at S`): a router forgets
//! every NAT mapping mid-session, as a rebooted or overloaded NAT does, and the lab measures
//! from a packet capture at the controller how long until frames flow again, and on which path.
//!
//! ```text
//!   router nat1/nat2:  nft flush map ip nat fullcone   (cone kinds: the port map)
//!                      conntrack -F                     (every NAT binding and filter state)
//!   lan2 (controller): tcpdump -i eth0 udp ──► capture.txt ──► resumed after N ms, via S
//! ```
//!
//! "Flowing" on a path S (the relay's address or a direct address of the host) means, in a
//! 250 ms bucket, at least [`MIN_DATA`] packets of [`DATA_BYTES`] or more from S to the controller
//! *and* at least one packet from the controller to S: the controller takes what S sends
//! (it acknowledges to it). Packets the controller's socket ignores (from a port the NAT made up
//! after the flush) do not count. Frames have resumed at the first data packet of the first
//! flowing bucket after the flush that is followed by [`SUSTAIN`] more flowing buckets (or by
//! the end of the capture).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::topology::{Nat, in_ns, run_in};

/// Which routers lose their mappings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Host,
    Controller,
    Both,
}

impl Side {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "host" => Ok(Side::Host),
            "controller" => Ok(Side::Controller),
            "both" => Ok(Side::Both),
            _ => bail!("--flush takes host, controller or both, not {s:?}"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Side::Host => "host",
            Side::Controller => "controller",
            Side::Both => "both",
        }
    }

    /// The routers (1: the host's, 2: the controller's) to flush.
    pub fn routers(self) -> &'static [u8] {
        match self {
            Side::Host => &[1],
            Side::Controller => &[2],
            Side::Both => &[1, 2],
        }
    }
}

/// When and where to flush.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Flush {
    pub side: Side,
    /// After the controller starts.
    pub at: Duration,
}

/// Frames must flow again within this long after a flush (issue #12).
pub const RESUME_WITHIN_MS: f64 = 2000.0;
/// A packet this large or larger from the host's side carries video (the lab's 640x360
/// synthetic frames are 130-600 bytes; acknowledgements and relay binds are under 80).
const DATA_BYTES: u32 = 100;
/// Data packets a bucket needs to count as flowing.
const MIN_DATA: u32 = 3;
const BUCKET_MS: f64 = 250.0;
/// Flowing buckets that must follow the first one (1 s in all).
const SUSTAIN: usize = 3;

/// What a flush did and what followed.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// Conntrack entries deleted, per flushed router.
    pub deleted: Vec<u64>,
    /// From the flush to the first packet of sustained flow, if it came back.
    pub resumed_ms: Option<f64>,
    /// "direct" or "relay": the path frames came back on.
    pub path: Option<&'static str>,
}

/// Makes `router` (NAT kind `nat`) forget every mapping: the cone kinds' port map, then the
/// whole conntrack table (NAT bindings and the state the filtering kinds let in by). Returns
/// how many conntrack entries there were just before.
pub fn flush_router(router: &str, nat: Nat) -> Result<u64> {
    if matches!(nat, Nat::FullCone | Nat::PortRestricted) {
        run_in(router, "nft", &["flush", "map", "ip", "nat", "fullcone"])?;
    }
    let count = in_ns(router, "conntrack")
        .arg("-C")
        .output()
        .context("running conntrack (cargo xtask setup installs the conntrack package)")?;
    let entries = String::from_utf8_lossy(&count.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let out = in_ns(router, "conntrack").arg("-F").output()?;
    if !out.status.success() {
        bail!(
            "conntrack -F in {router}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(entries)
}

/// One UDP packet of a `tcpdump -n -tt` capture.
#[derive(Debug, Clone, PartialEq)]
struct Packet {
    /// Seconds since the Unix epoch.
    at: f64,
    from: String,
    to: String,
    len: u32,
}

/// Reads `1764130000.123456 IP 198.51.100.1.7702 > 10.2.0.2.40000: UDP, length 1200`.
fn parse_line(line: &str) -> Option<Packet> {
    let mut w = line.split_whitespace();
    let at = w.next()?.parse().ok()?;
    if w.next()? != "IP" {
        return None;
    }
    let from = w.next()?.to_owned();
    if w.next()? != ">" {
        return None;
    }
    let to = w.next()?.trim_end_matches(':').to_owned();
    let len = line.rsplit_once("length ")?.1.trim().parse().ok()?;
    Some(Packet { at, from, to, len })
}

/// `198.51.100.1.7702` (tcpdump's address.port) split at the last dot.
fn ip_of(addr: &str) -> &str {
    addr.rsplit_once('.').map_or(addr, |(ip, _)| ip)
}

/// When frames flowed again after a flush at `flushed_at` (Unix seconds), from the capture
/// taken at the controller's interface (`controller_ip`) until the controller ended (`until`);
/// the rendezvous's own ports (7700, 7701) are not a path.
fn resumed(
    capture: &str,
    (flushed_at, until): (f64, f64),
    controller_ip: &str,
    relay: &str,
) -> Option<(f64, &'static str)> {
    // bucket → source → (data packets in, first data packet's time, packets out to it)
    let mut buckets: BTreeMap<i64, BTreeMap<String, (u32, f64, u32)>> = BTreeMap::new();
    let rendezvous_ip = ip_of(relay);
    for p in capture.lines().filter_map(parse_line) {
        if p.at < flushed_at {
            continue;
        }
        let bucket = ((p.at - flushed_at) * 1000.0 / BUCKET_MS).floor() as i64;
        let (incoming, peer) = if ip_of(&p.to) == controller_ip {
            (true, p.from)
        } else if ip_of(&p.from) == controller_ip {
            (false, p.to)
        } else {
            continue;
        };
        if ip_of(&peer) == rendezvous_ip && peer != relay {
            continue;
        }
        let e = buckets
            .entry(bucket)
            .or_default()
            .entry(peer)
            .or_insert((0, f64::MAX, 0));
        if incoming && p.len >= DATA_BYTES {
            e.0 += 1;
            e.1 = e.1.min(p.at);
        } else if !incoming {
            e.2 += 1;
        }
    }
    let flowing = |b: i64| -> Option<(f64, String)> {
        buckets
            .get(&b)?
            .iter()
            .find_map(|(peer, &(data, first, out))| {
                (data >= MIN_DATA && out > 0).then(|| (first, peer.clone()))
            })
    };
    // The last whole bucket before the controller ended.
    let last = ((until - flushed_at) * 1000.0 / BUCKET_MS).floor() as i64 - 1;
    (0..=last).find_map(|b| {
        let (first, peer) = flowing(b)?;
        let sustained = (1..=SUSTAIN as i64)
            .take_while(|k| b + k <= last)
            .all(|k| flowing(b + k).is_some());
        let path = if peer == relay { "relay" } else { "direct" };
        sustained.then_some(((first - flushed_at) * 1000.0, path))
    })
}

/// Reads the capture file and measures.
pub fn measure(
    capture: &Path,
    (flushed_at, until): (f64, f64),
    deleted: Vec<u64>,
    controller_ip: &str,
    relay: &str,
) -> Result<Measured> {
    let text = std::fs::read_to_string(capture)
        .with_context(|| format!("reading the capture {}", capture.display()))?;
    let found = resumed(&text, (flushed_at, until), controller_ip, relay);
    Ok(Measured {
        deleted,
        resumed_ms: found.map(|f| f.0),
        path: found.map(|f| f.1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELAY: &str = "198.51.100.1.7702";
    const HOST: &str = "198.51.100.11.40000";
    const CTL: &str = "10.2.0.2";

    /// A flow from `peer` between `from` and `to` seconds: 30 data packets a second in, and an
    /// acknowledgement out for every second one.
    fn flow(peer: &str, from: f64, to: f64, answered: bool) -> Vec<String> {
        let mut lines = Vec::new();
        let mut t = from;
        let mut n = 0;
        while t < to {
            lines.push(format!("{t:.6} IP {peer} > {CTL}.5000: UDP, length 400"));
            if answered && n % 2 == 0 {
                lines.push(format!(
                    "{:.6} IP {CTL}.5000 > {peer}: UDP, length 60",
                    t + 0.001
                ));
            }
            t += 1.0 / 30.0;
            n += 1;
        }
        lines
    }

    fn capture(parts: Vec<Vec<String>>) -> String {
        let mut lines: Vec<String> = parts.into_iter().flatten().collect();
        lines.sort_by(|a, b| {
            let t = |l: &String| l.split(' ').next().unwrap().parse::<f64>().unwrap();
            t(a).total_cmp(&t(b))
        });
        lines.join("\n")
    }

    #[test]
    fn reads_tcpdump_lines() {
        let p =
            parse_line("1764130000.123456 IP 198.51.100.1.7702 > 10.2.0.2.40000: UDP, length 1200")
                .unwrap();
        assert_eq!(p.from, RELAY);
        assert_eq!(p.to, "10.2.0.2.40000");
        assert_eq!(p.len, 1200);
        assert!((p.at - 1_764_130_000.123_456).abs() < 1e-6);
        assert!(parse_line("tcpdump: listening on eth0").is_none());
        assert_eq!(ip_of(RELAY), "198.51.100.1");
    }

    #[test]
    fn an_unbroken_flow_resumes_at_once() {
        let c = capture(vec![flow(HOST, 99.0, 105.0, true)]);
        let (ms, path) = resumed(&c, (100.0, 105.0), CTL, RELAY).unwrap();
        assert!(ms < 40.0, "{ms}");
        assert_eq!(path, "direct");
    }

    #[test]
    fn a_stall_then_the_relay() {
        // Direct until the flush, 1.6 s of nothing, then the relay.
        let c = capture(vec![
            flow(HOST, 99.0, 100.02, true),
            flow(RELAY, 101.6, 105.0, true),
        ]);
        let (ms, path) = resumed(&c, (100.0, 105.0), CTL, RELAY).unwrap();
        assert!((1590.0..1640.0).contains(&ms), "{ms}");
        assert_eq!(path, "relay");
    }

    #[test]
    fn ignored_packets_from_a_new_port_are_no_flow() {
        // The NAT made up a new port: its packets arrive and nothing answers them.
        let c = capture(vec![
            flow(HOST, 99.0, 100.0, true),
            flow("198.51.100.11.41234", 100.05, 105.0, false),
            flow(RELAY, 102.5, 105.0, true),
        ]);
        let (ms, path) = resumed(&c, (100.0, 105.0), CTL, RELAY).unwrap();
        assert!((2490.0..2540.0).contains(&ms), "{ms}");
        assert_eq!(path, "relay");
    }

    #[test]
    fn a_blip_is_not_a_resumption_and_no_flow_is_none() {
        let c = capture(vec![
            flow(HOST, 100.0, 100.3, true),
            flow(RELAY, 103.0, 106.0, true),
        ]);
        let (ms, _) = resumed(&c, (100.0, 105.0), CTL, RELAY).unwrap();
        assert!(ms >= 2990.0, "{ms}");
        let dead = capture(vec![flow(HOST, 99.0, 100.1, true)]);
        assert_eq!(resumed(&dead, (100.0, 105.0), CTL, RELAY), None);
    }
}
