//! Relay frames arrive from anyone at the rendezvous's relay port. This target drives the
//! relay's sans-IO core and its driver's per-buffer step ([`relay::handle_buffer`]: GRO
//! splitting at any stride, empty buffers included, and the GSO decision) with a fuzzed sequence
//! of allocations, binds, data, raw datagrams, time steps and sweeps, and checks every datagram
//! against a model written from the relay's rules (module docs of `rendezvous::relay`):
//!
//! - frames parse as documented (a reference parser here);
//! - a side's address moves only with a bind whose MAC is right and whose counter grows;
//! - data is taken only from its side's proven address and goes only to the other side's
//!   proven address, with the receiver's token; data for an unbound side is held (8 frames,
//!   16 KiB) and released to the address of that side's next proven bind;
//! - anything else gets at most a rebind notice (once per 500 ms per side) back to the sender;
//!   every answer is no larger than the datagram that caused it;
//! - caps (total, per key, per prefix) hold; sessions close when idle or unbound in time;
//! - counters count exactly that.
//!
//! Size: over 600 lines because a fuzz target is one file (cargo-fuzz's layout) and this one
//! carries its own model of the relay's rules to check every datagram against.
#![no_main]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use quicdesk_fuzz::{Reader, Writer, write_seeds_if_asked};
use proto::limits::{Bucket, Prefix};
use rendezvous::relay::{
    self, Action, AllocError, BIND_LEN, Batch, Counters, Frame, HEADER_LEN, Limits, MAC_LEN, Owner,
    Relay, TOKEN_LEN, Ticket, Token,
};

// The relay's private constants, as its module docs state them.
const PENDING_MAX: usize = 8;
const PENDING_MAX_BYTES: usize = 16 * 1024;
const REBIND_NOTICE_EVERY: Duration = Duration::from_millis(500);
const DATA: u8 = 0x80;
const BIND: u8 = 0x81;
const BOUND: u8 = 0x82;
const REBIND: u8 = 0x83;

/// Small limits, so that caps, bandwidth limits and expiry are all within reach.
const LIMITS: Limits = Limits {
    session_bytes_per_sec: 100_000,
    total_bytes_per_sec: 250_000,
    idle: Duration::from_secs(60),
    max_sessions: 4,
    max_sessions_per_key: 2,
    max_sessions_per_prefix: 3,
    unbound_ttl: Duration::from_secs(10),
};

fn addrs() -> [SocketAddr; 6] {
    let v4 = Ipv4Addr::new(192, 0, 2, 1);
    [
        SocketAddr::new(v4.into(), 1000),
        // the same host after its NAT moved it
        SocketAddr::new(v4.into(), 1001),
        SocketAddr::new(Ipv4Addr::new(198, 51, 100, 2).into(), 2000),
        SocketAddr::new(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).into(), 3000),
        // the first address as a dual-stack socket may report it
        SocketAddr::new(v4.to_ipv6_mapped().into(), 1000),
        SocketAddr::new(Ipv4Addr::new(203, 0, 113, 5).into(), 5),
    ]
}

fn owner(b: u8) -> Owner {
    let ips: [IpAddr; 3] = [
        Ipv4Addr::new(192, 0, 2, 1).into(),
        Ipv4Addr::new(198, 51, 100, 2).into(),
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).into(),
    ];
    Owner {
        key: certs::Fingerprint::from_bytes([b % 3; 32]),
        prefix: Prefix::of(ips[usize::from(b / 3 % 3)]),
    }
}

fn byte_bucket(rate: u64, now: Instant) -> Bucket {
    let rate = rate as f64;
    Bucket::with_burst(rate, (rate / 4.0).max(64.0 * 1024.0), now)
}

/// The frame format, as documented, to compare `relay::parse` with.
#[derive(Debug, PartialEq, Eq)]
enum RefFrame {
    Data(Token, Vec<u8>),
    Bind(Token, u64, [u8; MAC_LEN]),
    Bound(Token),
    Rebind(Token),
    NotRelay,
    Short,
    Length(u8),
    Kind(u8),
}

fn reference_parse(d: &[u8]) -> RefFrame {
    let Some(&kind) = d.first() else {
        return RefFrame::NotRelay;
    };
    if kind & 0xC0 != 0x80 {
        return RefFrame::NotRelay;
    }
    if d.len() < 1 + TOKEN_LEN {
        return RefFrame::Short;
    }
    let token = Token(d[1..1 + TOKEN_LEN].try_into().expect("16 bytes"));
    let rest = &d[1 + TOKEN_LEN..];
    match (kind, rest.len()) {
        (DATA, _) => RefFrame::Data(token, rest.to_vec()),
        (BIND, 24) => RefFrame::Bind(
            token,
            u64::from_be_bytes(rest[..8].try_into().expect("8 bytes")),
            rest[8..].try_into().expect("16 bytes"),
        ),
        (BOUND, 0) => RefFrame::Bound(token),
        (REBIND, 0) => RefFrame::Rebind(token),
        (BIND | BOUND | REBIND, _) => RefFrame::Length(kind),
        _ => RefFrame::Kind(kind),
    }
}

fn parsed(d: &[u8]) -> RefFrame {
    match relay::parse(d) {
        Ok(Frame::Data { token, payload }) => RefFrame::Data(token, payload.to_vec()),
        Ok(Frame::Bind {
            token,
            counter,
            mac,
        }) => RefFrame::Bind(token, counter, mac),
        Ok(Frame::Bound { token }) => RefFrame::Bound(token),
        Ok(Frame::Rebind { token }) => RefFrame::Rebind(token),
        Err(relay::FrameError::NotRelay) => RefFrame::NotRelay,
        Err(relay::FrameError::Short) => RefFrame::Short,
        Err(relay::FrameError::Length(k)) => RefFrame::Length(k),
        Err(relay::FrameError::Kind(k)) => RefFrame::Kind(k),
        Err(e) => panic!("undocumented frame error {e:?}"),
    }
}

struct SideM {
    ticket: Ticket,
    addr: Option<SocketAddr>,
    /// Every address this side has proven, for held data released to it earlier.
    proven: Vec<SocketAddr>,
    counter: u64,
    last_notice: Option<Instant>,
}

struct SessionM {
    sides: [SideM; 2],
    owner: Owner,
    bucket: Bucket,
    created: Instant,
    last: Instant,
    pending: Vec<(usize, Vec<u8>)>,
    pending_bytes: usize,
    alive: bool,
}

/// What the relay must do, kept independently of it.
struct Model {
    sessions: Vec<SessionM>,
    tokens: HashMap<Token, (usize, usize)>,
    total: Bucket,
    counters: Counters,
    queued: Vec<(SocketAddr, Vec<u8>)>,
}

impl Model {
    fn new(now: Instant) -> Self {
        Self {
            sessions: Vec::new(),
            tokens: HashMap::new(),
            total: byte_bucket(LIMITS.total_bytes_per_sec, now),
            counters: Counters::default(),
            queued: Vec::new(),
        }
    }

    fn alive(&self) -> impl Iterator<Item = &SessionM> {
        self.sessions.iter().filter(|s| s.alive)
    }

    fn allocate(&mut self, owner: Owner) -> Result<(), AllocError> {
        let refused = if self.alive().count() >= LIMITS.max_sessions {
            Some(AllocError::Full)
        } else if self.alive().filter(|s| s.owner.key == owner.key).count()
            >= LIMITS.max_sessions_per_key
        {
            Some(AllocError::KeyCap)
        } else if self
            .alive()
            .filter(|s| s.owner.prefix == owner.prefix)
            .count()
            >= LIMITS.max_sessions_per_prefix
        {
            Some(AllocError::PrefixCap)
        } else {
            None
        };
        match refused {
            Some(e) => {
                self.counters.sessions_refused += 1;
                Err(e)
            }
            None => Ok(()),
        }
    }

    fn opened(&mut self, now: Instant, owner: Owner, tickets: [Ticket; 2]) {
        let id = self.sessions.len();
        for (side, t) in tickets.iter().enumerate() {
            let old = self.tokens.insert(t.token, (id, side));
            assert!(old.is_none(), "a token handed out twice");
        }
        let side = |ticket| SideM {
            ticket,
            addr: None,
            proven: Vec::new(),
            counter: 0,
            last_notice: None,
        };
        self.sessions.push(SessionM {
            sides: tickets.map(side),
            owner,
            bucket: byte_bucket(LIMITS.session_bytes_per_sec, now),
            created: now,
            last: now,
            pending: Vec::new(),
            pending_bytes: 0,
            alive: true,
        });
        self.counters.sessions_opened += 1;
    }

    /// One datagram: what the relay must answer, with `buf` rewritten as it must be.
    fn datagram(&mut self, now: Instant, from: SocketAddr, buf: &mut [u8]) -> Action {
        let (token, bind) = match reference_parse(buf) {
            RefFrame::Data(token, _) => (token, None),
            RefFrame::Bind(token, counter, mac) => (token, Some((counter, mac))),
            _ => {
                self.counters.dropped_malformed += 1;
                return Action::Drop;
            }
        };
        let Some(&(id, side)) = self.tokens.get(&token) else {
            self.counters.dropped_unknown += 1;
            return Action::Drop;
        };
        let s = &mut self.sessions[id];
        if let Some((counter, mac)) = bind {
            let me = &mut s.sides[side];
            let real = relay::bind_frame(&me.ticket, counter);
            if counter <= me.counter || real[HEADER_LEN + 8..] != mac {
                self.counters.dropped_unproven += 1;
                return Action::Drop;
            }
            me.counter = counter;
            me.addr = Some(from);
            if !me.proven.contains(&from) {
                me.proven.push(from);
            }
            s.last = now;
            self.counters.binds += 1;
            let token = me.ticket.token;
            let mut kept = Vec::new();
            for (to, mut frame) in std::mem::take(&mut s.pending) {
                if to == side {
                    s.pending_bytes -= frame.len();
                    frame[1..HEADER_LEN].copy_from_slice(&token.0);
                    self.counters.packets_forwarded += 1;
                    self.counters.bytes_forwarded += frame.len() as u64;
                    self.queued.push((from, frame));
                } else {
                    kept.push((to, frame));
                }
            }
            s.pending = kept;
            buf[0] = BOUND;
            return Action::Send {
                to: from,
                len: HEADER_LEN,
            };
        }
        let me = &mut s.sides[side];
        if me.addr != Some(from) {
            self.counters.dropped_unproven += 1;
            if me
                .last_notice
                .is_none_or(|t| now.saturating_duration_since(t) >= REBIND_NOTICE_EVERY)
            {
                me.last_notice = Some(now);
                self.counters.rebind_notices += 1;
                buf[0] = REBIND;
                return Action::Send {
                    to: from,
                    len: HEADER_LEN,
                };
            }
            return Action::Drop;
        }
        s.last = now;
        let len = buf.len();
        if !s.bucket.take_n(now, len as f64) || !self.total.take_n(now, len as f64) {
            self.counters.dropped_limited += 1;
            return Action::Drop;
        }
        let other = &s.sides[1 - side];
        let Some(to) = other.addr else {
            if s.pending.len() < PENDING_MAX && s.pending_bytes + len <= PENDING_MAX_BYTES {
                s.pending_bytes += len;
                s.pending.push((1 - side, buf.to_vec()));
            } else {
                self.counters.dropped_unbound += 1;
            }
            return Action::Drop;
        };
        buf[1..HEADER_LEN].copy_from_slice(&other.ticket.token.0);
        self.counters.packets_forwarded += 1;
        self.counters.bytes_forwarded += len as u64;
        Action::Send { to, len }
    }

    fn sweep(&mut self, now: Instant) -> usize {
        let mut closed = 0;
        for s in self.sessions.iter_mut().filter(|s| s.alive) {
            let unbound = s.sides.iter().any(|side| side.addr.is_none())
                && now.saturating_duration_since(s.created) > LIMITS.unbound_ttl;
            if unbound || now.saturating_duration_since(s.last) > LIMITS.idle {
                s.alive = false;
                closed += 1;
                self.counters.sessions_unbound += u64::from(unbound);
                self.counters.sessions_expired += 1;
                for side in &s.sides {
                    self.tokens.remove(&side.ticket.token);
                }
            }
        }
        closed
    }

    fn counters(&self) -> Counters {
        Counters {
            sessions_active: self.alive().count() as u64,
            ..self.counters
        }
    }

    /// Whether `to` is where some live side proved to be.
    fn is_proven(&self, to: SocketAddr) -> bool {
        self.alive()
            .any(|s| s.sides.iter().any(|side| side.addr == Some(to)))
    }
}

/// Properties of one answer, whatever the model says: never larger than its datagram; to a
/// stranger only a bound or rebind notice of header length; data only to a proven address.
fn check_answer(model: &Model, from: SocketAddr, len: usize, action: Action, out: &[u8]) {
    let Action::Send { to, len: n } = action else {
        return;
    };
    assert!(n <= len, "an answer of {n} bytes to a datagram of {len}");
    match out[0] {
        BOUND | REBIND => assert!(to == from && n == HEADER_LEN),
        DATA => assert!(
            n == len && model.is_proven(to),
            "data sent on to an unproven address"
        ),
        k => panic!("sent a frame of kind {k:#x}"),
    }
}

struct Run {
    relay: Relay,
    model: Model,
    now: Instant,
    addrs: [SocketAddr; 6],
}

impl Run {
    fn addr(&self, b: u8) -> SocketAddr {
        self.addrs[usize::from(b) % self.addrs.len()]
    }

    /// The ticket of session `s` (by index), side `side`, if any session was opened.
    fn ticket(&self, s: u8, side: bool) -> Option<Ticket> {
        let n = self.model.sessions.len();
        (n > 0).then(|| self.model.sessions[usize::from(s) % n].sides[usize::from(side)].ticket)
    }

    fn counter(&self, s: u8, side: bool) -> u64 {
        let n = self.model.sessions.len();
        self.model.sessions[usize::from(s) % n].sides[usize::from(side)].counter
    }

    fn one(&mut self, from: SocketAddr, mut buf: Vec<u8>) {
        assert_eq!(parsed(&buf), reference_parse(&buf));
        let len = buf.len();
        let mut expected = buf.clone();
        let want = self.model.datagram(self.now, from, &mut expected);
        let got = self.relay.on_datagram(self.now, from, &mut buf);
        assert_eq!(got, want, "datagram of {len} bytes from {from}");
        assert_eq!(buf, expected, "rewritten datagram");
        check_answer(&self.model, from, len, got, &buf);
    }

    fn gro(&mut self, from: SocketAddr, stride: usize, max_gso: usize, mut buf: Vec<u8>) {
        let mut expected = buf.clone();
        let limited_before = self.model.counters.dropped_limited;
        let eff = match stride {
            0 => buf.len(),
            s => s.min(buf.len()),
        };
        let mut want_actions = Vec::new();
        if eff == 0 {
            self.model.counters.dropped_malformed += 1;
        } else {
            for seg in expected.chunks_mut(eff) {
                assert_eq!(parsed(seg), reference_parse(seg));
                let len = seg.len();
                let a = self.model.datagram(self.now, from, seg);
                // Checked at its own step: a later segment may move a side.
                check_answer(&self.model, from, len, a, seg);
                want_actions.push(a);
            }
        }
        let want_whole = match want_actions.first() {
            Some(&Action::Send { to, .. })
                if want_actions.len() > 1 && want_actions.len() <= max_gso =>
            {
                let segs = expected.chunks(eff);
                want_actions
                    .iter()
                    .zip(segs)
                    .all(|(a, seg)| *a == Action::Send { to, len: seg.len() })
                    .then_some(to)
            }
            _ => None,
        };
        // An empty buffer is counted and nothing else happens (held data stays held).
        let want = if eff == 0 {
            Batch::default()
        } else {
            Batch {
                stride: eff,
                queued: std::mem::take(&mut self.model.queued),
                whole: want_whole,
                limited: self.model.counters.dropped_limited > limited_before,
            }
        };
        self.check_queued(&want.queued);
        let mut actions = vec![Action::Drop; 3]; // stale contents must be cleared
        let got = relay::handle_buffer(
            &mut self.relay,
            self.now,
            from,
            stride,
            &mut buf,
            max_gso,
            &mut actions,
        );
        assert_eq!(got, want, "batch of {} bytes at stride {stride}", buf.len());
        assert_eq!(actions, want_actions);
        assert_eq!(buf, expected, "rewritten batch");
        if let Some(to) = got.whole {
            assert!(
                actions
                    .iter()
                    .all(|a| matches!(a, Action::Send { to: t, .. } if *t == to))
            );
        }
    }

    /// Held data goes only to an address its receiver proved (it may have moved or closed
    /// since the release), under the receiver's token.
    fn check_queued(&self, queued: &[(SocketAddr, Vec<u8>)]) {
        for (to, frame) in queued {
            let proven = self.model.sessions.iter().any(|s| {
                s.sides.iter().any(|side| {
                    side.proven.contains(to) && frame[1..HEADER_LEN] == side.ticket.token.0
                })
            });
            assert!(proven, "held data released to an unproven address");
            assert_eq!(frame[0], DATA);
        }
    }
}

fn data_frame(token: Token, len: usize, fill: u8) -> Vec<u8> {
    let mut f = relay::data_header(token).to_vec();
    f.extend((0..len).map(|i| fill.wrapping_add(i as u8)));
    f
}

fn run(data: &[u8]) {
    let t0 = Instant::now();
    let mut run = Run {
        relay: Relay::new(LIMITS, t0),
        model: Model::new(t0),
        now: t0,
        addrs: addrs(),
    };
    let mut r = Reader::new(data);
    let mut ops = 0;
    while !r.is_empty() && ops < 400 {
        ops += 1;
        match r.u8() % 8 {
            0 => {
                let owner = owner(r.u8());
                let want = run.model.allocate(owner);
                let got = run.relay.allocate(run.now, owner);
                match (got, want) {
                    (Ok(tickets), Ok(())) => {
                        assert_ne!(tickets[0].token, tickets[1].token);
                        run.model.opened(run.now, owner, tickets);
                    }
                    (got, want) => assert_eq!(got.map(|_| ()), want),
                }
            }
            1 => {
                let (s, side, from, step) = (r.u8(), r.bool(), r.u8(), r.u8());
                let Some(ticket) = run.ticket(s, side) else {
                    continue;
                };
                let counter = match step {
                    255 => u64::MAX,
                    step => run.counter(s, side).saturating_add(u64::from(step)),
                };
                let from = run.addr(from);
                run.one(from, relay::bind_frame(&ticket, counter).to_vec());
            }
            2 => {
                let (s, side, from, len, fill) = (r.u8(), r.bool(), r.u8(), r.u16(), r.u8());
                let Some(ticket) = run.ticket(s, side) else {
                    continue;
                };
                let from = run.addr(from);
                run.one(
                    from,
                    data_frame(ticket.token, usize::from(len % 1400), fill),
                );
            }
            3 => {
                let (from, splice) = (r.u8(), r.u8());
                let mut raw = r.blob16().to_vec();
                // Put a live token into arbitrary bytes, so that odd kinds and lengths reach
                // the session lookup.
                if splice & 3 != 0
                    && let Some(t) = run.ticket(splice >> 3, splice & 4 != 0)
                {
                    let n = raw.len().saturating_sub(1).min(TOKEN_LEN);
                    if n > 0 {
                        raw[1..1 + n].copy_from_slice(&t.token.0[..n]);
                    }
                }
                let from = run.addr(from);
                run.one(from, raw);
            }
            4 => {
                let v = r.u16();
                let step = if v < 0x8000 {
                    Duration::from_millis(u64::from(v))
                } else {
                    Duration::from_millis(u64::from(v - 0x8000) * 10)
                };
                run.now += step;
            }
            5 => {
                let want = run.model.sweep(run.now);
                assert_eq!(run.relay.sweep(run.now), want, "sessions closed by a sweep");
            }
            6 => {
                let (from, stride, max_gso, count) = (r.u8(), r.u16(), r.u8(), r.u8());
                let stride = usize::from(stride % 2100);
                let mut buf = Vec::new();
                for _ in 0..count % 12 {
                    let (kind, s, side, b) = (r.u8(), r.u8(), r.bool(), r.u8());
                    let ticket = run.ticket(s, side);
                    match (kind % 3, ticket) {
                        (0, Some(t)) => {
                            // One GRO segment of data: padded to the stride when it can be.
                            let len = stride.saturating_sub(HEADER_LEN).min(1400);
                            buf.extend(data_frame(t.token, len, b));
                        }
                        (1, Some(t)) => {
                            let counter = run.counter(s, side).saturating_add(u64::from(b));
                            buf.extend(relay::bind_frame(&t, counter));
                        }
                        _ => buf.extend_from_slice(r.blob8()),
                    }
                }
                let from = run.addr(from);
                run.gro(from, stride, usize::from(max_gso % 64) + 1, buf);
            }
            _ => {
                let got = run.relay.take_queued();
                let want = std::mem::take(&mut run.model.queued);
                assert_eq!(got, want, "held datagrams released by binds");
                run.check_queued(&got);
                assert!(!run.relay.has_queued());
            }
        }
        assert_eq!(run.relay.counters(), run.model.counters(), "counters");
        assert_eq!(run.relay.has_queued(), !run.model.queued.is_empty());
    }
    // Long after, every session is closed and its tokens are dead.
    let later = run.now + Duration::from_secs(3600);
    assert_eq!(run.relay.sweep(later), run.model.sweep(later));
    assert_eq!(run.relay.counters().sessions_active, 0);
    for s in &run.model.sessions {
        let mut probe = relay::bind_frame(&s.sides[0].ticket, u64::MAX).to_vec();
        assert_eq!(
            run.relay.on_datagram(later, run.addrs[0], &mut probe),
            Action::Drop
        );
    }
    assert_eq!(
        run.relay.counters().dropped_unknown,
        run.model.counters.dropped_unknown + run.model.sessions.len() as u64
    );
}

fn seeds() -> Vec<Vec<u8>> {
    let mut w = Writer::new();
    let alloc = |w: &mut Writer, owner: u8| {
        w.u8(0).u8(owner);
    };
    let bind = |w: &mut Writer, s: u8, side: bool, from: u8, step: u8| {
        w.u8(1).u8(s).bool(side).u8(from).u8(step);
    };
    let data = |w: &mut Writer, s: u8, side: bool, from: u8, len: u16| {
        w.u8(2).u8(s).bool(side).u8(from).u16(len).u8(0x41);
    };
    let mut out = Vec::new();
    // A session: both sides bind, data both ways, a replayed bind.
    alloc(&mut w, 0);
    bind(&mut w, 0, false, 0, 1);
    bind(&mut w, 0, true, 2, 1);
    data(&mut w, 0, false, 0, 1200);
    data(&mut w, 0, true, 2, 50);
    bind(&mut w, 0, true, 2, 0);
    out.push(w.finish());
    // Data before the other side bound is held, then released by its bind.
    alloc(&mut w, 1);
    bind(&mut w, 0, false, 3, 1);
    data(&mut w, 0, false, 3, 100);
    data(&mut w, 0, false, 3, 200);
    bind(&mut w, 0, true, 5, 7);
    w.u8(7);
    out.push(w.finish());
    // A NAT moves a side: rebind notice, then a bind from the new address.
    alloc(&mut w, 2);
    bind(&mut w, 0, false, 0, 1);
    bind(&mut w, 0, true, 2, 1);
    data(&mut w, 0, false, 1, 30);
    data(&mut w, 0, false, 1, 30);
    w.u8(4).u16(600);
    data(&mut w, 0, false, 1, 30);
    bind(&mut w, 0, false, 1, 1);
    data(&mut w, 0, false, 1, 30);
    out.push(w.finish());
    // Caps: more sessions than the limits allow, then expiry of unbound ones.
    for owner in [0, 0, 0, 1, 2, 4, 5, 7] {
        alloc(&mut w, owner);
    }
    w.u8(4).u16(0x8000 + 1100).u8(5);
    alloc(&mut w, 0);
    out.push(w.finish());
    // A GRO batch of data at a stride of 200, and binds at a stride that splits them.
    alloc(&mut w, 0);
    bind(&mut w, 0, false, 0, 1);
    bind(&mut w, 0, true, 2, 1);
    w.u8(6).u8(0).u16(200).u8(63).u8(4);
    for _ in 0..4 {
        w.u8(0).u8(0).bool(false).u8(9);
    }
    w.u8(6).u8(2).u16(77).u8(1).u8(3);
    for _ in 0..3 {
        w.u8(1).u8(0).bool(true).u8(1);
    }
    // An empty buffer, and a single datagram (stride 0).
    w.u8(6).u8(0).u16(0).u8(0).u8(0);
    w.u8(6)
        .u8(0)
        .u16(0)
        .u8(0)
        .u8(1)
        .u8(1)
        .u8(0)
        .bool(false)
        .u8(3);
    out.push(w.finish());
    // Raw datagrams: short, unknown kind, a bound frame and a forged bind under a live token.
    alloc(&mut w, 0);
    w.u8(3).u8(5).u8(0).blob16(&[0x80]);
    w.u8(3).u8(5).u8(1).blob16(&[0x8f; 20]);
    w.u8(3).u8(5).u8(1).blob16(&[0x82; 17]);
    let mut forged = vec![BIND; BIND_LEN];
    forged[HEADER_LEN..HEADER_LEN + 8].copy_from_slice(&5u64.to_be_bytes());
    w.u8(3).u8(5).u8(1).blob16(&forged);
    out.push(w.finish());
    out
}

fuzz_target!(
    init: write_seeds_if_asked("relay", seeds),
    |data: &[u8]| run(data)
);
