//! The agent's state, its inputs and outputs, and the demultiplexing of received datagrams.
//! Route choice and liveness are in `path`, punch rounds in `punch`.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::discovery::Discovery;
use crate::path::{Direct, RelayState};
use crate::punch::Round;
use crate::tx::{Due, Key, Purpose, Txs};
use crate::wire::{self, RelayFrame, StunKind, Ticket};
use crate::{
    Event, Input, MAX_CANDIDATES, MAX_LEARNED, MAX_REQUESTERS, Mapping, Path, STUN_ANSWERS_PER_SEC,
    Transmit, Via,
};

/// How an agent behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Seeds every random choice (transaction ids, spray ports): same seed, same inputs, same
    /// outputs.
    pub seed: u64,
    /// Whether the session may leave the relay for a direct path (`false`: relay only).
    pub direct: bool,
    /// Hold a move to a direct path until [`Agent::release_direct`] (a QUIC server drops
    /// handshake packets from a new address: a controller holds until its handshake is done).
    pub hold_direct: bool,
    /// Whether to punch birthday-style (pool or spray) when the two mappings call for it.
    pub birthday: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            seed: 0,
            direct: true,
            hold_direct: false,
            birthday: true,
        }
    }
}

/// A token bucket (answers to Binding requests).
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Option<Instant>,
}

impl Bucket {
    fn take(&mut self, now: Instant) -> bool {
        let rate = f64::from(STUN_ANSWERS_PER_SEC);
        let elapsed = self
            .at
            .map_or(1.0, |t| now.saturating_duration_since(t).as_secs_f64());
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The sans-IO path agent of one session (see the crate docs).
#[derive(Debug)]
pub struct Agent {
    pub(crate) cfg: Config,
    pub(crate) rng: StdRng,
    pub(crate) now: Instant,
    pub(crate) txs: Txs,
    pub(crate) transmits: VecDeque<Transmit>,
    pub(crate) events: VecDeque<Event>,
    answers: Bucket,
    // This side.
    pub(crate) lan: Vec<SocketAddr>,
    pub(crate) observed: Option<SocketAddr>,
    pub(crate) reflexive: Option<SocketAddr>,
    pub(crate) mapping: Mapping,
    pub(crate) stun_servers: Vec<SocketAddr>,
    pub(crate) discovery: Discovery,
    pub(crate) announced: Option<(Vec<SocketAddr>, Mapping)>,
    // The peer.
    pub(crate) remote: Vec<SocketAddr>,
    pub(crate) remote_mapping: Mapping,
    pub(crate) learned: Vec<SocketAddr>,
    /// Addresses at the peer's IPs whose Binding requests this agent answered (most recent
    /// last, at most [`MAX_REQUESTERS`]): having answered, it takes the peer's packets from
    /// them, since the peer may adopt that path on the answer (a birthday pool's many sockets
    /// probe at once, more than [`MAX_LEARNED`]).
    pub(crate) requesters: VecDeque<SocketAddr>,
    // Paths.
    pub(crate) relay: Option<RelayState>,
    pub(crate) direct: Option<Direct>,
    pub(crate) pending_direct: Option<(SocketAddr, Via)>,
    pub(crate) path: Path,
    pub(crate) path_changes: u32,
    pub(crate) direct_since: Option<Instant>,
    // Punching.
    pub(crate) punching: bool,
    pub(crate) round: Option<Round>,
    pub(crate) rounds: u32,
    pub(crate) next_round_at: Option<Instant>,
    pub(crate) deaths: u32,
    pub(crate) next_pool_id: u32,
    /// Pool sockets open now (the driver was told to open them and not yet to close them).
    pub(crate) pool_open: Vec<u32>,
}

impl Agent {
    pub fn new(cfg: Config, now: Instant) -> Self {
        Self {
            cfg,
            rng: StdRng::seed_from_u64(cfg.seed),
            now,
            txs: Txs::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            answers: Bucket {
                tokens: f64::from(STUN_ANSWERS_PER_SEC),
                at: None,
            },
            lan: Vec::new(),
            observed: None,
            reflexive: None,
            mapping: Mapping::Unknown,
            stun_servers: Vec::new(),
            discovery: Discovery::default(),
            announced: None,
            remote: Vec::new(),
            remote_mapping: Mapping::Unknown,
            learned: Vec::new(),
            requesters: VecDeque::new(),
            relay: None,
            direct: None,
            pending_direct: None,
            path: Path::Nowhere,
            path_changes: 0,
            direct_since: None,
            punching: false,
            round: None,
            rounds: 0,
            next_round_at: None,
            deaths: 0,
            next_pool_id: 0,
            pool_open: Vec::new(),
        }
    }

    /// Time only moves forward, whatever the driver passes.
    pub(crate) fn tick(&mut self, now: Instant) -> Instant {
        self.now = self.now.max(now);
        self.now
    }

    // ── Inputs about the peer and the relay ────────────────────────────────────────────────

    /// The peer's candidates (the first one: its reflexive address, around which ports are
    /// predicted) and its NAT's mapping, from the rendezvous or the peer. Replaces earlier ones;
    /// a changed list starts a new punch round if punching is on and no direct path works.
    /// The driver filters them first (today: `sane_candidates`).
    pub fn set_remote_candidates(&mut self, now: Instant, addrs: &[SocketAddr], mapping: Mapping) {
        let now = self.tick(now);
        let mut list: Vec<SocketAddr> = Vec::new();
        for &a in addrs {
            if !list.contains(&a) && list.len() < MAX_CANDIDATES {
                list.push(a);
            }
        }
        let changed = list != self.remote || mapping != self.remote_mapping;
        self.remote = list;
        self.remote_mapping = mapping;
        if self.path == Path::Nowhere && self.relay.is_none() && !self.remote.is_empty() {
            self.set_path(Path::Candidates, crate::Reason::Configured);
        }
        if changed && self.punching && !self.direct_healthy(now) && !self.extend_round(now) {
            self.next_round_at = Some(now);
        }
        self.drive(now);
    }

    /// The relay and this side's ticket: binds at once (retransmitted until the relay answers)
    /// and starts the session on it. `first_counter` is the first bind's counter; every later
    /// bind's is larger (the relay takes each counter once; today's driver starts from the
    /// clock so that a restarted process still grows it).
    pub fn set_relay(
        &mut self,
        now: Instant,
        relay: SocketAddr,
        ticket: Ticket,
        first_counter: u64,
    ) {
        let now = self.tick(now);
        self.relay = Some(RelayState::new(relay, ticket, first_counter));
        self.start_bind(now, &crate::BIND_RETRIES_MS, Duration::from_secs(10));
        if !self.path.is_direct() {
            self.set_path(Path::Relay(relay), crate::Reason::Configured);
        }
        self.drive(now);
    }

    /// Starts punching towards the peer's candidates (again after [`Self::stop_punching`]).
    pub fn start_punching(&mut self, now: Instant) {
        let now = self.tick(now);
        if self.cfg.direct && !self.punching {
            self.punching = true;
            if !self.direct_healthy(now) {
                self.next_round_at = Some(now);
            }
        }
        self.drive(now);
    }

    /// Stops punching: the running round ends (pool sockets not carrying the path close);
    /// the path stays as it is.
    pub fn stop_punching(&mut self, now: Instant) {
        let now = self.tick(now);
        self.punching = false;
        self.next_round_at = None;
        self.end_round(now);
        self.drive(now);
    }

    /// The driver could not open the pool sockets it was asked for: punch without them.
    pub fn pool_unavailable(&mut self, now: Instant, ids: &[u32]) {
        let now = self.tick(now);
        self.pool_open.retain(|id| !ids.contains(id));
        self.txs
            .retain(|tx| !matches!(tx.via, Via::Pool(id) if ids.contains(&id)));
        self.drive(now);
    }

    // ── Datagrams ──────────────────────────────────────────────────────────────────────────

    /// Handles one datagram that came in on socket `via` from `from`. Never panics, whatever
    /// the bytes.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        via: Via,
        bytes: &[u8],
    ) -> Input {
        let now = self.tick(now);
        let from = canonical(from);
        if let Via::Pool(id) = via {
            // A pool socket is only for the peer's IP, and only while open.
            let peer_ip = self.round.as_ref().and_then(|r| r.target).map(|t| t.ip());
            let carries = self.direct.as_ref().is_some_and(|d| d.via == via);
            if !self.pool_open.contains(&id) || (peer_ip != Some(from.ip()) && !carries) {
                return Input::NotMine;
            }
        }
        let input = if wire::is_stun(bytes) {
            match wire::stun_kind(bytes) {
                StunKind::BindingRequest => self.on_binding_request(now, from, via, bytes),
                StunKind::BindingResponse => self.on_binding_response(now, from, via, bytes),
                StunKind::Other => Input::NotMine,
            }
        } else if wire::is_relay(bytes) {
            self.on_relay_frame(now, from, via, bytes)
        } else {
            self.on_other(now, from, via)
        };
        self.drive(now);
        input
    }

    fn on_binding_request(
        &mut self,
        now: Instant,
        from: SocketAddr,
        via: Via,
        bytes: &[u8],
    ) -> Input {
        self.heard_from(now, from, via);
        if !self.answers.take(now) {
            return Input::Consumed;
        }
        if let Ok(Some(answer)) = wire::binding_answer(bytes, from) {
            self.transmits.push_back(Transmit {
                via,
                to: from,
                bytes: answer,
            });
        }
        match via {
            Via::Pool(id) => self.pool_hit(now, id, from),
            Via::Main => {
                // Before the peer's candidates arrive, the driver gives this agent only the
                // requests that can be nobody else's (see `peer::net`).
                let peers = self.is_peer_ip(from.ip()) || self.remote.is_empty();
                if peers && !self.requesters.contains(&from) {
                    if self.requesters.len() == MAX_REQUESTERS {
                        self.requesters.pop_front();
                    }
                    self.requesters.push_back(from);
                }
                self.maybe_learn(now, from);
            }
        }
        Input::Consumed
    }

    fn on_binding_response(
        &mut self,
        now: Instant,
        from: SocketAddr,
        via: Via,
        bytes: &[u8],
    ) -> Input {
        let Some(id) = wire::transaction_id(bytes) else {
            return Input::NotMine;
        };
        let key = Key::Stun(id);
        // Only the address asked, on the socket asked from, may answer a transaction.
        if !self
            .txs
            .get(&key)
            .is_some_and(|tx| canonical(tx.to) == from && tx.via == via)
        {
            return Input::NotMine;
        }
        let Ok((_, reflexive)) = wire::parse_binding_response(bytes) else {
            return Input::Consumed;
        };
        let Some(tx) = self.txs.complete(&key) else {
            return Input::NotMine;
        };
        self.heard_from(now, from, via);
        match tx.purpose {
            Purpose::Discovery { round } => self.on_discovered(round, from, reflexive),
            Purpose::Probe { round } => self.on_probe_answered(now, round, from, via),
            Purpose::Check => {}
            Purpose::Bind => {}
        }
        Input::Consumed
    }

    fn on_relay_frame(&mut self, now: Instant, from: SocketAddr, via: Via, bytes: &[u8]) -> Input {
        let Some(relay) = self.relay.as_ref() else {
            return Input::NotMine;
        };
        if via != Via::Main || canonical(relay.addr) != from {
            return Input::NotMine;
        }
        let ours = relay.ticket.token;
        match wire::parse_relay(bytes) {
            Ok(RelayFrame::Data { token, .. }) if token == ours => Input::PeerData {
                offset: wire::RELAY_HEADER_LEN,
            },
            Ok(RelayFrame::Bound { token }) if token == ours => {
                self.on_bound();
                Input::Consumed
            }
            Ok(RelayFrame::Rebind { token }) if token == ours => {
                self.on_rebind(now);
                Input::Consumed
            }
            _ => Input::NotMine,
        }
    }

    /// Anything else (QUIC): the peer's if it comes from one of its known addresses.
    fn on_other(&mut self, now: Instant, from: SocketAddr, via: Via) -> Input {
        self.heard_from(now, from, via);
        let known = self.knows(from) || matches!(via, Via::Pool(_));
        if known {
            // Data straight from the peer: the path may work both ways; a probe proves it.
            if self.cfg.direct && !self.direct_healthy(now) && !self.is_direct_to(from, via) {
                self.probe_outside_round(now, from, via);
            }
            return Input::PeerData { offset: 0 };
        }
        self.maybe_learn(now, from);
        Input::NotMine
    }

    /// Notes `from` as a peer-reflexive candidate if it shares an IP with the peer's
    /// candidates or path and is new, and probes it (only a probe answer adopts it).
    fn maybe_learn(&mut self, now: Instant, from: SocketAddr) {
        if !self.cfg.direct || self.direct_healthy(now) {
            return;
        }
        let ips: Vec<IpAddr> = self
            .remote
            .iter()
            .chain(self.direct.as_ref().map(|d| &d.to))
            .map(|a| a.ip())
            .collect();
        if !ips.contains(&from.ip())
            || self.remote.contains(&from)
            || self.learned.contains(&from)
            || self.learned.len() >= MAX_LEARNED
        {
            return;
        }
        self.learned.push(from);
        self.events.push_back(Event::CandidateLearned(from));
        self.probe_learned(now, from);
    }

    // ── Outputs ────────────────────────────────────────────────────────────────────────────

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] should be called next.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        [
            self.txs.next_timeout(),
            self.path_timeout(),
            self.punch_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.tick(now);
        self.drive(now);
    }

    /// Does whatever is due by `now`: retransmissions and expiries, path checks, punch phases.
    pub(crate) fn drive(&mut self, now: Instant) {
        // Bounded: each pass sends or expires a transaction or moves a phase on.
        for _ in 0..100_000 {
            let mut busy = false;
            while let Some(due) = self.txs.poll_due(now) {
                busy = true;
                match due {
                    Due::Send(key) => self.send_tx(now, key),
                    Due::Expired(tx) => self.on_expired(tx),
                }
            }
            busy |= self.path_due(now);
            busy |= self.punch_due(now);
            if !busy {
                break;
            }
        }
    }

    fn send_tx(&mut self, now: Instant, key: Key) {
        let Some(tx) = self.txs.get(&key) else {
            return;
        };
        let (via, to, purpose) = (tx.via, tx.to, tx.purpose);
        let bytes = match purpose {
            Purpose::Bind => match self.relay.as_mut() {
                Some(relay) => relay.next_bind().to_vec(),
                None => return,
            },
            _ => tx.bytes.clone(),
        };
        self.note_sent(now, via, to);
        self.transmits.push_back(Transmit { via, to, bytes });
    }

    fn on_expired(&mut self, tx: crate::tx::Tx) {
        if let Purpose::Discovery { round } = tx.purpose
            && round == self.discovery.round
        {
            self.discovery.pending = self.discovery.pending.saturating_sub(1);
            self.classify();
            self.announce_if_ready();
        }
    }

    /// Starts a STUN Binding transaction with a fresh id.
    pub(crate) fn start_stun_tx(
        &mut self,
        now: Instant,
        purpose: Purpose,
        via: Via,
        to: SocketAddr,
        schedule: &'static [u64],
        within: Duration,
    ) {
        let id: [u8; 12] = rand::Rng::random(&mut self.rng);
        // Encoding a fixed-shape message cannot fail; if it ever did, nothing is sent.
        let Ok(bytes) = wire::binding_request(id) else {
            return;
        };
        self.txs.start(
            now,
            Key::Stun(id),
            purpose,
            via,
            to,
            bytes,
            schedule,
            within,
        );
    }

    // ── State, for drivers' logs and stats ────────────────────────────────────────────────

    /// Where the session's packets go now.
    pub fn path(&self) -> Path {
        self.path
    }

    /// How often the path moved between the relay and the peer's own addresses.
    pub fn path_changes(&self) -> u32 {
        self.path_changes
    }

    /// When the session first went direct.
    pub fn direct_since(&self) -> Option<Instant> {
        self.direct_since
    }

    /// The relay session's token, once [`Self::set_relay`] was called: the driver routes the
    /// relay's frames carrying it to this agent.
    pub fn relay_token(&self) -> Option<crate::Token> {
        self.relay.as_ref().map(|r| r.ticket.token)
    }

    /// Whether `addr` is one of the peer's addresses known now (given, learnt, or the direct
    /// path's): a driver offers the peer's other datagrams (QUIC) only from these.
    pub fn knows(&self, addr: SocketAddr) -> bool {
        let addr = canonical(addr);
        // The direct path first: it is every packet of a direct session.
        self.direct.as_ref().is_some_and(|d| d.to == addr)
            || self.remote.contains(&addr)
            || self.learned.contains(&addr)
            || self.requesters.contains(&addr)
    }

    /// Whether `ip` is one of the peer's IPs (of its candidates, learnt addresses or direct
    /// path): a driver offers a Binding request to the session whose peer may have sent it.
    pub fn is_peer_ip(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.remote
            .iter()
            .chain(&self.learned)
            .chain(self.direct.as_ref().map(|d| &d.to))
            .any(|a| a.ip() == ip)
    }

    /// The peer's candidates as known now (given and learnt).
    pub fn remote_candidates(&self) -> Vec<SocketAddr> {
        self.remote.iter().chain(&self.learned).copied().collect()
    }
}

/// The canonical form of an address (IPv4-mapped IPv6 → IPv4).
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}
