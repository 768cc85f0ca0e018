//! The NAT lab's delay-and-loss wire: it joins two network interfaces and copies every Ethernet
//! frame read from one onto the other after a fixed delay, dropping a share of them at random,
//! and optionally through a bottleneck of a given rate (frames leave one after another at that
//! rate from a queue of [`QUEUE_LIMIT`]; what would wait longer is dropped, as a router's
//! tail-drop queue does).
//!
//! It stands in for `tc qdisc … netem`, which this kernel lacks (`CONFIG_NET_SCH_NETEM` is not
//! set: `tc` answers "Specified qdisc kind is unknown"). It runs as `xtask netem-wire` inside the
//! lab's internet namespace, between a router's link (`up<n>`) and a veth whose other end is on
//! the internet bridge (`w<n>`):
//!
//! ```text
//!   router pub0 ══ up<n> ──[ wire: delay, loss ]── w<n> ══ w<n>b ─ bridge lab0
//! ```
//!
//! A packet socket also sees the frames written to its own interface; frames are told apart by
//! their source MAC: from the router side only those sent by the router's `pub0`, from the
//! bridge side all others. Segmentation offloads are off on the links (see `natlab`), so every
//! frame read is one wire-sized packet.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use pnet_datalink::{Channel, DataLinkReceiver, DataLinkSender, MacAddr, NetworkInterface};

/// What the wire does to frames.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Impairment {
    /// One-way delay, each direction.
    pub delay: Duration,
    /// Share of frames dropped, each direction (0..1).
    pub loss: f64,
    /// Bottleneck rate in bit/s, each direction, if any.
    pub rate_bps: Option<u64>,
}

/// Longest a frame waits in the bottleneck's queue before it is dropped instead.
pub const QUEUE_LIMIT: Duration = Duration::from_millis(100);

impl std::fmt::Display for Impairment {
    /// The arguments [`Impairment::parse`] reads back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "delay {}ms loss {}%",
            self.delay.as_millis(),
            self.loss * 100.0
        )?;
        if let Some(r) = self.rate_bps {
            write!(f, " rate {}kbit", r / 1000)?;
        }
        Ok(())
    }
}

impl Impairment {
    /// Reads netem-style arguments: `delay 50ms loss 5% rate 2mbit` (any part may be left
    /// out; rates in `kbit` or `mbit`).
    pub fn parse(s: &str) -> Result<Self> {
        let mut imp = Impairment {
            delay: Duration::ZERO,
            loss: 0.0,
            rate_bps: None,
        };
        let mut words = s.split_whitespace();
        while let Some(w) = words.next() {
            let value = words
                .next()
                .with_context(|| format!("{w:?} needs a value in {s:?}"))?;
            match w {
                "delay" => {
                    let ms = value.strip_suffix("ms").with_context(|| {
                        format!("delay {value:?}: give milliseconds, e.g. 50ms")
                    })?;
                    imp.delay = Duration::from_millis(ms.parse().context("delay in ms")?);
                }
                "loss" => {
                    let pct: f64 = value
                        .trim_end_matches('%')
                        .parse()
                        .with_context(|| format!("loss {value:?}: give a percentage, e.g. 5%"))?;
                    if !(0.0..100.0).contains(&pct) {
                        bail!("loss {value:?} must be from 0% to below 100%");
                    }
                    imp.loss = pct / 100.0;
                }
                "rate" => {
                    let (n, unit) = if let Some(n) = value.strip_suffix("mbit") {
                        (n, 1_000_000)
                    } else if let Some(n) = value.strip_suffix("kbit") {
                        (n, 1_000)
                    } else {
                        bail!("rate {value:?}: give kbit or mbit, e.g. 2mbit");
                    };
                    let n: u64 = n.parse().with_context(|| format!("rate {value:?}"))?;
                    if !(64_000..=10_000_000_000).contains(&(n * unit)) {
                        bail!("rate {value:?} must be from 64kbit to 10000mbit");
                    }
                    imp.rate_bps = Some(n * unit);
                }
                other => bail!("unknown impairment {other:?} (delay, loss, rate)"),
            }
        }
        Ok(imp)
    }
}

fn interface(name: &str) -> Result<NetworkInterface> {
    pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == name)
        .with_context(|| format!("no interface {name}"))
}

fn channel(
    iface: &NetworkInterface,
) -> Result<(Box<dyn DataLinkSender>, Box<dyn DataLinkReceiver>)> {
    let cfg = pnet_datalink::Config {
        read_buffer_size: 65536,
        write_buffer_size: 65536,
        promiscuous: true,
        ..Default::default()
    };
    match pnet_datalink::channel(iface, cfg)
        .with_context(|| format!("packet socket on {} (needs root)", iface.name))?
    {
        Channel::Ethernet(tx, rx) => Ok((tx, rx)),
        _ => bail!("{}: not an Ethernet channel", iface.name),
    }
}

/// A uniform number in [0, 1) (std's per-instance random hash keys; good enough for loss).
fn uniform(state: &RandomState, n: u64) -> f64 {
    let mut h = state.build_hasher();
    h.write_u64(n);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Runs the wire between `router_side` and `bridge_side` until an interface goes away.
pub fn run(router_side: &str, bridge_side: &str, router_mac: &str, imp: Impairment) -> Result<()> {
    let router_mac: MacAddr = router_mac
        .parse()
        .map_err(|e| anyhow::anyhow!("router MAC {router_mac:?}: {e:?}"))?;
    let (a, b) = (interface(router_side)?, interface(bridge_side)?);
    let (tx_a, rx_a) = channel(&a)?;
    let (tx_b, rx_b) = channel(&b)?;
    let mut threads = Vec::new();
    // Router → bridge: frames the router sent. Bridge → router: frames it did not send.
    for (rx, tx, from_router) in [(rx_a, tx_b, true), (rx_b, tx_a, false)] {
        let (queue, delayed) = mpsc::channel::<(Instant, Vec<u8>)>();
        threads.push(std::thread::spawn(move || {
            direction(rx, queue, router_mac, from_router, imp)
        }));
        threads.push(std::thread::spawn(move || deliver(delayed, tx)));
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

fn direction(
    mut rx: Box<dyn DataLinkReceiver>,
    queue: mpsc::Sender<(Instant, Vec<u8>)>,
    router_mac: MacAddr,
    from_router: bool,
    imp: Impairment,
) {
    let random = RandomState::new();
    let mut n = 0u64;
    // When the bottleneck is next free to send.
    let mut free_at = Instant::now();
    while let Ok(frame) = rx.next() {
        if frame.len() < 14 {
            continue;
        }
        let src = MacAddr::new(frame[6], frame[7], frame[8], frame[9], frame[10], frame[11]);
        if (src == router_mac) != from_router {
            continue;
        }
        n += 1;
        if imp.loss > 0.0 && uniform(&random, n) < imp.loss {
            continue;
        }
        let now = Instant::now();
        let mut leaves = now;
        if let Some(rate) = imp.rate_bps {
            let start = free_at.max(now);
            if start - now > QUEUE_LIMIT {
                continue; // the queue is full
            }
            let bits = frame.len() as u64 * 8;
            leaves = start + Duration::from_nanos(bits * 1_000_000_000 / rate);
            free_at = leaves;
        }
        if queue.send((leaves + imp.delay, frame.to_vec())).is_err() {
            return;
        }
    }
}

fn deliver(delayed: mpsc::Receiver<(Instant, Vec<u8>)>, mut tx: Box<dyn DataLinkSender>) {
    for (at, frame) in delayed {
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        match tx.send_to(&frame, None) {
            Some(Ok(())) => {}
            Some(Err(e)) => eprintln!("netem-wire: send: {e}"),
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netem_style_arguments() {
        let i = Impairment::parse("delay 50ms loss 5%").unwrap();
        assert_eq!(i.delay, Duration::from_millis(50));
        assert!((i.loss - 0.05).abs() < 1e-9);
        assert_eq!(Impairment::parse("loss 1%").unwrap().delay, Duration::ZERO);
        assert!(Impairment::parse("delay 50").is_err());
        assert!(Impairment::parse("loss 100%").is_err());
        assert!(Impairment::parse("jitter 5ms").is_err());
        let r = Impairment::parse("rate 2mbit delay 10ms").unwrap();
        assert_eq!(r.rate_bps, Some(2_000_000));
        assert_eq!(Impairment::parse(&r.to_string()).unwrap(), r);
        assert_eq!(
            Impairment::parse("rate 500kbit").unwrap().rate_bps,
            Some(500_000)
        );
        assert!(Impairment::parse("rate 2gbit").is_err());
        assert!(Impairment::parse("rate 1kbit").is_err());
        assert!(Impairment::parse("rate mbit").is_err());
        assert!(Impairment::parse("delay").is_err());
    }

    #[test]
    fn loss_draws_are_uniform_enough() {
        let r = RandomState::new();
        let dropped = (0..100_000).filter(|&n| uniform(&r, n) < 0.05).count();
        assert!((4_000..6_000).contains(&dropped), "{dropped}");
    }
}
