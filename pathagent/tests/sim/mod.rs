//! A simulated network for path agents, on simulated time (after quinn-proto's `tests/util.rs`
//! `Pair` and str0m's netem): two peers, each behind a [`nat::Nat`], an "internet" with delay,
//! jitter and loss, and the rendezvous machine (QUIC port observing addresses, STUN, relay).
//!
//! ```text
//!  host agent ── lan 10.1.0.2 ── NAT 198.51.100.11 ─┐            ┌─ 198.51.100.1: rendezvous :7700
//!                                                   ├─ internet ─┤   STUN :7701, relay :7702
//!  ctl agent ─── lan 10.2.0.2 ── NAT 198.51.100.12 ─┘            └─
//! ```
//!
//! The harness plays both drivers: it gives each agent what the rendezvous said, sends a small
//! app packet every 20 ms each way along `send_path` (standing in for QUIC), carries the
//! candidates between the peers as control messages on that same path (resent until they
//! arrive, as a QUIC stream would), and records what happened.
#![allow(dead_code, clippy::unwrap_used)] // shared by several test binaries, each using part

pub mod control;
pub mod nat;
pub mod servers;

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use pathagent::wire::{BindKey, Ticket, Token};
use pathagent::{Agent, Config, Event, Input, Mapping, Path, SendPath, Via};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[allow(unused_imports)] // used by the matrix test only
pub use control::lab_expects_direct;
use control::{decode_candidates, encode_candidates};
use nat::{Kind, Nat};

pub const RV_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
pub const RV_QUIC: SocketAddr = SocketAddr::new(RV_IP, 7700);
pub const RV_STUN: SocketAddr = SocketAddr::new(RV_IP, 7701);
pub const RV_RELAY: SocketAddr = SocketAddr::new(RV_IP, 7702);
const MAIN_PORT: u16 = 5000;
const POOL_BASE: u16 = 10000;
const APP_EVERY: Duration = Duration::from_millis(20);
const CTL_EVERY: Duration = Duration::from_millis(100);
pub const HOST: usize = 0;
pub const CTL: usize = 1;

/// What one run looks like.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub kinds: [Kind; 2],
    pub seed: u64,
    /// One-way delay of each peer's link to the internet, and of the rendezvous's.
    pub delay: Duration,
    pub jitter: Duration,
    /// Loss on the host's link (each way).
    pub loss: f64,
    pub relay: bool,
    /// `false`: relay only (`--force-relay`).
    pub direct: bool,
    /// When a router loses every mapping, and whose.
    pub flushes: Vec<(Duration, usize)>,
    pub end: Duration,
}

impl Scenario {
    pub fn new(host: Kind, ctl: Kind, seed: u64) -> Self {
        Self {
            kinds: [host, ctl],
            seed,
            delay: Duration::from_millis(10),
            jitter: Duration::ZERO,
            loss: 0.0,
            relay: true,
            direct: true,
            flushes: Vec::new(),
            end: Duration::from_secs(6),
        }
    }
}

/// What a run showed.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub paths: [Path; 2],
    pub path_changes: [u32; 2],
    /// From the start of punching to the controller's first direct path.
    pub time_to_direct: Option<Duration>,
    /// Per flush: time until both sides received app data sent after it.
    pub resumed: Vec<Option<Duration>>,
    /// Per flush: time until both sides received app data sent after it on a direct path.
    pub direct_again: Vec<Option<Duration>>,
    /// Per flush: whether each side was direct when the next flush came (or the run ended).
    pub settled: Vec<[bool; 2]>,
    /// App packets each side received.
    pub received: [u64; 2],
    pub trace: u64,
    pub packets: u64,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Packet {
    src: SocketAddr,
    dst: SocketAddr,
    bytes: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Observed(usize, SocketAddr),
    Relay,
    Introduce,
    Auth,
    Flush(usize),
}

struct Peer {
    agent: Agent,
    nat: Nat,
    ip: IpAddr,
    pools: BTreeSet<u32>,
    /// The control message to send (sequence, bytes) and the last one received.
    ctl_out: Option<(u8, Vec<u8>)>,
    ctl_in: u8,
    ctl_seq: u8,
    /// Sim time (ns) of the last app packet received, and when it was sent.
    got_sent_after: Vec<Option<Duration>>,
    received: u64,
    direct_after: Vec<Option<Duration>>,
}

pub struct Sim {
    sc: Scenario,
    t0: Instant,
    now: Instant,
    rng: StdRng,
    seq: u64,
    wire: BinaryHeap<Reverse<(Instant, u64, Packet)>>,
    actions: BinaryHeap<Reverse<(Instant, u64, Action)>>,
    peers: [Peer; 2],
    relay: servers::Relay,
    tickets: [Ticket; 2],
    authed: Option<Instant>,
    next_app: Instant,
    next_ctl: Instant,
    hash: DefaultHasher,
    packets: u64,
    flush_times: Vec<Duration>,
    settled: Vec<[bool; 2]>,
}

impl Sim {
    pub fn new(sc: Scenario) -> Self {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(sc.seed);
        let ticket = |rng: &mut StdRng| Ticket {
            token: Token(rng.random()),
            key: BindKey(rng.random()),
        };
        let tickets = [ticket(&mut rng), ticket(&mut rng)];
        let peer = |i: usize, rng: &mut StdRng| {
            let kind = sc.kinds[i];
            let public = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 11 + i as u8));
            let ip = if kind == Kind::None {
                IpAddr::V4(Ipv4Addr::new(198, 51, 100, 21 + i as u8))
            } else {
                IpAddr::V4(Ipv4Addr::new(10, 1 + i as u8, 0, 2))
            };
            let cfg = Config {
                seed: rng.random(),
                direct: sc.direct,
                hold_direct: i == CTL,
                birthday: true,
            };
            Peer {
                agent: Agent::new(cfg, t0),
                nat: Nat::new(kind, public, RV_IP, rng.random()),
                ip,
                pools: BTreeSet::new(),
                ctl_out: None,
                ctl_in: 0,
                ctl_seq: 0,
                got_sent_after: vec![None; sc.flushes.len()],
                received: 0,
                direct_after: vec![None; sc.flushes.len()],
            }
        };
        let peers = [peer(HOST, &mut rng), peer(CTL, &mut rng)];
        let flush_times = sc.flushes.iter().map(|f| f.0).collect();
        let mut sim = Self {
            relay: servers::Relay::new(tickets),
            tickets,
            t0,
            now: t0,
            rng,
            seq: 0,
            wire: BinaryHeap::new(),
            actions: BinaryHeap::new(),
            peers,
            authed: None,
            next_app: t0 + Duration::from_millis(100),
            next_ctl: t0,
            hash: DefaultHasher::new(),
            packets: 0,
            settled: Vec::new(),
            flush_times,
            sc,
        };
        // Each peer reaches the rendezvous's QUIC port first (registration, resolution).
        for i in 0..2 {
            sim.send_from(i, Via::Main, RV_QUIC, b"\x40register".to_vec());
        }
        if sim.sc.relay {
            sim.at(Duration::from_millis(100), Action::Relay);
        } else {
            sim.at(Duration::from_millis(100), Action::Introduce);
        }
        for (at, side) in sim.sc.flushes.clone() {
            sim.at(at, Action::Flush(side));
        }
        sim
    }

    fn at(&mut self, after: Duration, a: Action) {
        self.seq += 1;
        self.actions.push(Reverse((self.t0 + after, self.seq, a)));
    }

    fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    /// One-way delay of a link (peer `Some(i)` or the rendezvous), `None` if the packet is lost.
    fn leg(&mut self, peer: Option<usize>) -> Option<Duration> {
        let Some(i) = peer else {
            return Some(Duration::from_millis(5));
        };
        if i == HOST && self.sc.loss > 0.0 && self.rng.random_bool(self.sc.loss) {
            return None;
        }
        let jitter = if self.sc.jitter.is_zero() {
            Duration::ZERO
        } else {
            self.sc.jitter.mul_f64(self.rng.random::<f64>())
        };
        Some(self.sc.delay + jitter)
    }

    fn public_of(&self, ip: IpAddr) -> Option<usize> {
        (0..2).find(|&i| {
            let p = &self.peers[i];
            if p.nat.kind == Kind::None {
                p.ip == ip
            } else {
                p.nat.public_ip == ip
            }
        })
    }

    fn put_on_wire(
        &mut self,
        from_peer: Option<usize>,
        src: SocketAddr,
        dst: SocketAddr,
        bytes: Vec<u8>,
    ) {
        let to_peer = self.public_of(dst.ip());
        let (Some(a), Some(b)) = (self.leg(from_peer), self.leg(to_peer)) else {
            return;
        };
        (self.elapsed().as_nanos(), src, dst, &bytes).hash(&mut self.hash);
        self.packets += 1;
        self.seq += 1;
        self.wire.push(Reverse((
            self.now + a + b,
            self.seq,
            Packet { src, dst, bytes },
        )));
    }

    fn send_from(&mut self, i: usize, via: Via, to: SocketAddr, bytes: Vec<u8>) {
        let port = match via {
            Via::Main => MAIN_PORT,
            Via::Pool(id) if self.peers[i].pools.contains(&id) => POOL_BASE.wrapping_add(id as u16),
            Via::Pool(_) => return,
        };
        // Private addresses of other networks are not routed.
        if let IpAddr::V4(v4) = to.ip()
            && v4.is_private()
        {
            return;
        }
        let local = SocketAddr::new(self.peers[i].ip, port);
        if let Some(src) = self.peers[i].nat.outbound(local, to) {
            self.put_on_wire(Some(i), src, to, bytes);
        }
    }

    fn deliver(&mut self, p: Packet) {
        let Packet { src, dst, bytes } = p;
        if dst.ip() == RV_IP {
            let from_peer = self.public_of(src.ip());
            match dst.port() {
                7700 => {
                    if let Some(i) = from_peer {
                        // The answer's round trip, then the peer knows how it was seen.
                        let back = self.sc.delay + Duration::from_millis(5);
                        let after = self.elapsed() + back;
                        self.at(after, Action::Observed(i, src));
                    }
                }
                7701 => {
                    if let Some(answer) = servers::stun_answer(&bytes, src) {
                        self.put_on_wire(None, RV_STUN, src, answer);
                    }
                }
                7702 => {
                    for (to, b) in self.relay.on_datagram(self.now, src, &bytes) {
                        self.put_on_wire(None, RV_RELAY, to, b);
                    }
                }
                _ => {}
            }
            return;
        }
        let Some(i) = self.public_of(dst.ip()) else {
            return;
        };
        let local = if self.peers[i].nat.kind == Kind::None {
            Some(dst)
        } else {
            self.peers[i].nat.inbound(src, dst.port())
        };
        let Some(local) = local else {
            return;
        };
        let via = if local.port() == MAIN_PORT {
            Via::Main
        } else {
            let id = u32::from(local.port().wrapping_sub(POOL_BASE));
            if !self.peers[i].pools.contains(&id) {
                return;
            }
            Via::Pool(id)
        };
        let now = self.now;
        match self.peers[i].agent.handle_datagram(now, src, via, &bytes) {
            Input::PeerData { offset } => self.on_app(i, bytes.get(offset..).unwrap_or(&[])),
            Input::Consumed | Input::NotMine => {}
        }
    }

    fn on_app(&mut self, i: usize, payload: &[u8]) {
        match payload.first() {
            Some(0x41) => {
                self.peers[i].received += 1;
                let direct = payload.get(1) == Some(&1);
                let sent = payload
                    .get(2..10)
                    .and_then(|b| b.try_into().ok())
                    .map(|b| Duration::from_nanos(u64::from_be_bytes(b)))
                    .unwrap_or_default();
                let elapsed = self.elapsed();
                for (k, &f) in self.flush_times.clone().iter().enumerate() {
                    let slot = &mut self.peers[i].got_sent_after[k];
                    if sent > f && slot.is_none() {
                        *slot = Some(elapsed - f);
                    }
                    let slot = &mut self.peers[i].direct_after[k];
                    if sent > f && direct && slot.is_none() {
                        *slot = Some(elapsed - f);
                    }
                }
                if i == CTL && self.authed.is_none() {
                    // The handshake is done once the host's first packet arrives; the password
                    // proof takes about one more round trip.
                    self.authed = Some(self.now);
                    let after = self.elapsed() + 4 * self.sc.delay;
                    self.at(after, Action::Auth);
                }
            }
            Some(0x42) => {
                if let Some((seq, addrs, mapping)) = decode_candidates(payload)
                    && seq > self.peers[i].ctl_in
                {
                    self.peers[i].ctl_in = seq;
                    let now = self.now;
                    self.peers[i]
                        .agent
                        .set_remote_candidates(now, &addrs, mapping);
                }
            }
            _ => {}
        }
    }

    fn send_app(&mut self, i: usize, mut payload: Vec<u8>) {
        let now = self.now;
        match self.peers[i].agent.send_path(now) {
            SendPath::Direct { via, to } => {
                if payload[0] == 0x41 {
                    payload[1] = 1;
                }
                self.send_from(i, via, to, payload)
            }
            SendPath::Relay { to, header } => {
                let mut b = header.to_vec();
                b.extend_from_slice(&payload);
                self.send_from(i, Via::Main, to, b);
            }
            SendPath::Each(all) => {
                for to in all {
                    self.send_from(i, Via::Main, to, payload.clone());
                }
            }
            SendPath::Nowhere => {}
        }
    }

    fn run_action(&mut self, a: Action) {
        let now = self.now;
        match a {
            Action::Observed(i, addr) => {
                let lan = SocketAddr::new(self.peers[i].ip, MAIN_PORT);
                let agent = &mut self.peers[i].agent;
                agent.add_local_candidates(now, &[lan]);
                agent.discover(now, Some(addr), &[RV_STUN]);
            }
            Action::Introduce => {
                // Without a relay the rendezvous hands each side the other's addresses.
                for i in 0..2 {
                    let theirs = self.peers[1 - i].agent.local_candidates();
                    let agent = &mut self.peers[i].agent;
                    agent.set_remote_candidates(now, &theirs, Mapping::Unknown);
                    agent.release_direct(now);
                    agent.start_punching(now);
                }
            }
            Action::Relay => {
                for i in 0..2 {
                    let t = self.tickets[i];
                    self.peers[i].agent.set_relay(now, RV_RELAY, t, 1);
                }
            }
            Action::Auth => {
                self.peers[CTL].agent.release_direct(now);
                for p in &mut self.peers {
                    p.agent.start_punching(now);
                }
            }
            Action::Flush(i) => {
                if !self.flush_times.is_empty() && self.elapsed() > self.flush_times[0] {
                    self.settled.push(self.directs());
                }
                self.peers[i].nat.flush();
            }
        }
    }

    fn drain(&mut self, i: usize) {
        while let Some(e) = self.peers[i].agent.poll_event() {
            format!("{:?} {i} {e:?}", self.elapsed()).hash(&mut self.hash);
            match e {
                Event::OpenPool { ids } => self.peers[i].pools.extend(ids),
                Event::ClosePool { ids } => {
                    for id in ids {
                        self.peers[i].pools.remove(&id);
                    }
                }
                Event::LocalCandidates { addrs, mapping } => {
                    let p = &mut self.peers[i];
                    p.ctl_seq += 1;
                    p.ctl_out = Some((p.ctl_seq, encode_candidates(p.ctl_seq, &addrs, mapping)));
                }
                _ => {}
            }
        }
        // After the events: a pool socket opens before its first send.
        while let Some(t) = self.peers[i].agent.poll_transmit() {
            self.send_from(i, t.via, t.to, t.bytes);
        }
    }

    fn directs(&self) -> [bool; 2] {
        [
            self.peers[0].agent.path().is_direct(),
            self.peers[1].agent.path().is_direct(),
        ]
    }

    /// Runs the scenario to its end.
    pub fn run(mut self) -> Outcome {
        let end = self.t0 + self.sc.end;
        for step in 0u64.. {
            assert!(step < 5_000_000, "the simulation does not progress");
            let mut next = [
                self.wire.peek().map(|Reverse((t, ..))| *t),
                self.actions.peek().map(|Reverse((t, ..))| *t),
                Some(self.next_app),
                Some(self.next_ctl),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(end);
            for p in &mut self.peers {
                if let Some(t) = p.agent.poll_timeout() {
                    next = next.min(t);
                }
            }
            if next > end {
                break;
            }
            self.now = self.now.max(next);
            let now = self.now;
            while self.wire.peek().is_some_and(|Reverse((t, ..))| *t <= now) {
                let Some(Reverse((_, _, p))) = self.wire.pop() else {
                    break;
                };
                self.deliver(p);
                self.drain(0);
                self.drain(1);
            }
            while self
                .actions
                .peek()
                .is_some_and(|Reverse((t, ..))| *t <= now)
            {
                let Some(Reverse((_, _, a))) = self.actions.pop() else {
                    break;
                };
                self.run_action(a);
            }
            for p in &mut self.peers {
                if p.agent.poll_timeout().is_some_and(|t| t <= now) {
                    p.agent.handle_timeout(now);
                }
            }
            if self.next_app <= now {
                self.next_app = now + APP_EVERY;
                for i in 0..2 {
                    let mut b = vec![0x41, 0];
                    b.extend_from_slice(&(self.elapsed().as_nanos() as u64).to_be_bytes());
                    self.send_app(i, b);
                }
            }
            if self.next_ctl <= now {
                self.next_ctl = now + CTL_EVERY;
                for i in 0..2 {
                    // Candidates go over the session once the password is proven, resent
                    // until they arrive (a QUIC stream would retransmit them).
                    let pending = self.peers[i].ctl_out.clone();
                    if let Some((seq, bytes)) = pending
                        && self.authed.is_some()
                        && self.peers[1 - i].ctl_in < seq
                    {
                        self.send_app(i, bytes);
                    }
                }
            }
            self.drain(0);
            self.drain(1);
        }
        if !self.flush_times.is_empty() {
            self.settled.push(self.directs());
        }
        let auth = self.authed.map(|a| a + 4 * self.sc.delay);
        let time_to_direct = self.peers[CTL]
            .agent
            .direct_since()
            .zip(auth)
            .map(|(d, a)| d.saturating_duration_since(a));
        let both = |a: &[Option<Duration>], b: &[Option<Duration>]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| x.zip(*y).map(|(x, y)| x.max(y)))
                .collect::<Vec<_>>()
        };
        Outcome {
            paths: [self.peers[0].agent.path(), self.peers[1].agent.path()],
            path_changes: [
                self.peers[0].agent.path_changes(),
                self.peers[1].agent.path_changes(),
            ],
            time_to_direct,
            resumed: both(&self.peers[0].got_sent_after, &self.peers[1].got_sent_after),
            direct_again: both(&self.peers[0].direct_after, &self.peers[1].direct_after),
            settled: self.settled.clone(),
            received: [self.peers[0].received, self.peers[1].received],
            trace: self.hash.finish(),
            packets: self.packets,
        }
    }
}
