//! Address discovery: which addresses a peer can offer, and how its NAT maps ports.
//!
//! ```text
//!  socket ──QUIC──► rendezvous:P     sees A1 (reported as `observed`)
//!  socket ──STUN──► rendezvous:P+1   sees A2 (XOR-MAPPED-ADDRESS)
//!  A1 == A2 ⇒ endpoint-independent mapping: A1 works from anywhere the NAT's filter lets in
//!  A1 != A2 ⇒ endpoint-dependent ("symmetric"): each destination gets its own port
//! ```
//!
//! Candidates offered to the other peer: the reflexive address, then the LAN addresses of the
//! machine's interfaces with the socket's port (so two peers behind the same NAT, or on one
//! LAN, reach each other without hairpinning).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};

use crate::net::{PeerSocket, STUN_RETRIES_MS, Via};

/// How long punch probes go on: long enough for the other side's probes, sent when it hears of
/// this session, to cross the NATs.
pub const PUNCH_FOR: Duration = Duration::from_secs(5);

/// How long the STUN probe may take.
pub const STUN_TIMEOUT: Duration = Duration::from_secs(3);
/// Most LAN addresses offered (the rendezvous accepts 16 candidates in all).
pub const MAX_LAN_CANDIDATES: usize = 8;

pub use proto::session::Mapping;

/// What [`discover`] learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Discovery {
    /// The address the rendezvous's QUIC port saw.
    pub observed: SocketAddr,
    /// The address its STUN port saw, if it answered.
    pub stun: Option<SocketAddr>,
    pub mapping: Mapping,
}

/// The mapping that two reflexive addresses of one socket, seen by two ports of one server, show.
pub fn classify(observed: SocketAddr, stun: Option<SocketAddr>) -> Mapping {
    match stun {
        Some(s) if s == observed => Mapping::EndpointIndependent,
        Some(_) => Mapping::EndpointDependent,
        None => Mapping::Unknown,
    }
}

/// Asks the rendezvous's STUN port (`stun_port` on the rendezvous's IP) which address this
/// socket has there, and compares it with what its QUIC port `observed`.
pub async fn discover(
    socket: &PeerSocket,
    rendezvous: SocketAddr,
    observed: SocketAddr,
    stun_port: Option<u16>,
) -> Discovery {
    let stun = match stun_port {
        Some(port) => {
            let server = SocketAddr::new(rendezvous.ip(), port);
            match socket.stun_binding(server, STUN_TIMEOUT).await {
                Ok(addr) => Some(addr),
                Err(e) => {
                    warn!("cannot tell the NAT's mapping: {e}");
                    None
                }
            }
        }
        None => {
            debug!("the rendezvous runs no STUN responder");
            None
        }
    };
    let d = Discovery {
        observed,
        stun,
        mapping: classify(observed, stun),
    };
    info!(
        reflexive = %d.observed,
        stun = ?d.stun,
        mapping = %d.mapping,
        "address discovery"
    );
    d
}

/// When no probe has been answered this long after the start, probe predicted ports too.
pub const PREDICT_AFTER: Duration = Duration::from_millis(500);
/// Ports tried on each side of a public candidate's port.
pub const PREDICT_SPAN: u16 = 16;
/// Sockets a side behind an endpoint-dependent NAT opens for birthday punching.
pub const POOL_SIZE: usize = 256;
/// Most random ports the other side probes in one session.
pub const SPRAY_MAX: usize = 2048;
/// Random-port probes sent per [`SPRAY_TICK`] (1000 a second).
const SPRAY_BATCH: usize = 16;
const SPRAY_TICK: Duration = Duration::from_millis(16);
/// The spray starts a little after the other side opens its pool, so most of the ports it
/// hits are already mapped.
const SPRAY_AFTER: Duration = Duration::from_millis(700);
/// When each pool socket sends to the peer (ms after the pool opens): each send opens (or
/// keeps) that socket's mapping towards the peer.
const POOL_SENDS_MS: [u64; 3] = [0, 1000, 2000];

/// What a side does beyond probing candidates when nothing answered within [`PREDICT_AFTER`]
/// (birthday punching). Against a NAT that maps endpoint-dependently with random ports, one
/// socket per side cannot meet: the hard side's single mapping towards the easy side is one
/// port among ~64k. So the hard side opens [`POOL_SIZE`] sockets, each sending to the easy
/// side's (endpoint-independent) public address, which gives [`POOL_SIZE`] mapped ports; the
/// easy side probes up to [`SPRAY_MAX`] random ports of the hard side's public IP. A probe
/// that hits a mapped port reaches that pool socket, whose answer passes the easy side's
/// filter (it just sent there): with 256 sockets and 2048 probes over 64,512 ports that
/// happens in 1 − (1 − 256/64512)^2048 ≈ 99.97 % of sessions. The winning socket then carries
/// the session's direct path; the rest close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Birthday {
    /// Nothing more: both sides map alike, or a mapping is unknown.
    Off,
    /// This side maps endpoint-dependently, the other independently: open a pool.
    Pool,
    /// This side maps endpoint-independently, the other dependently: probe random ports.
    Spray,
}

impl Birthday {
    pub fn for_mappings(ours: Mapping, theirs: Mapping) -> Self {
        use Mapping::{EndpointDependent as Dep, EndpointIndependent as Indep};
        match (ours, theirs) {
            (Dep, Indep) => Birthday::Pool,
            (Indep, Dep) => Birthday::Spray,
            _ => Birthday::Off,
        }
    }
}

/// Whether an address could be a NAT's public side (not private, loopback or link-local).
fn is_public(addr: &SocketAddr) -> bool {
    match addr.ip() {
        IpAddr::V4(v4) => !(v4.is_private() || v4.is_loopback() || v4.is_link_local()),
        IpAddr::V6(v6) => !(v6.is_loopback() || v6.is_unique_local() || v6.is_unicast_link_local()),
    }
}

/// Ports an endpoint-dependent NAT may have given the other peer for us: those near the
/// port it showed the rendezvous (NATs that allocate in sequence, or preserve ports nearby),
/// for each candidate that is not a private address. Bounded: `2 × PREDICT_SPAN` per candidate.
pub fn predicted(candidates: &[SocketAddr]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for c in candidates.iter().filter(|c| is_public(c)) {
        for d in 1..=PREDICT_SPAN {
            for port in [c.port().checked_add(d), c.port().checked_sub(d)]
                .into_iter()
                .flatten()
                .filter(|&p| p >= 1024)
            {
                let a = SocketAddr::new(c.ip(), port);
                if !candidates.contains(&a) && !out.contains(&a) {
                    out.push(a);
                }
            }
        }
    }
    out
}

/// [`SPRAY_MAX`] distinct random ports (1024 and up) of `target`'s IP, none of `skip`.
pub fn spray_targets(target: SocketAddr, skip: &[SocketAddr]) -> Vec<SocketAddr> {
    let mut rng = rand::rng();
    rand::seq::index::sample(
        &mut rng,
        usize::from(u16::MAX - 1023),
        SPRAY_MAX + skip.len(),
    )
    .into_iter()
    .map(|i| SocketAddr::new(target.ip(), 1024 + i as u16))
    .filter(|a| !skip.contains(a))
    .take(SPRAY_MAX)
    .collect()
}

/// What a punch found.
#[derive(Debug, Default)]
pub struct Punched {
    /// Candidates that answered.
    pub answered: Vec<SocketAddr>,
    /// The birthday pool sockets the peer reached (one of them may carry the direct path):
    /// keep them as long as the session lasts.
    pub pool: Option<crate::net::PoolGuard>,
}

/// Hole punching for one session: STUN Binding requests (retransmitted, see
/// [`PeerSocket::stun_binding`]) to every candidate of the other peer at once. The requests
/// open this side's NAT mapping and filter towards each candidate; an answer proves a path
/// both ways. Probes to candidates that do not answer go on until `within` ends (a filtering
/// NAT on the other side may let them in only once its own probes went out). Then, if nothing
/// answered within [`PREDICT_AFTER`], to [`predicted`] ports around the first candidate (the
/// peer's address as the rendezvous observed it, as the peer or the rendezvous reports it)
/// and, as `birthday` says, a [`Birthday`] pool or spray towards it; and to the peer-reflexive candidates the route (if given) learns meanwhile. Calls
/// `on_answer` with each candidate that answers and the socket it answered; returns when every
/// probe is done.
pub async fn punch_session(
    socket: &Arc<PeerSocket>,
    route: Option<SocketAddr>,
    candidates: &[SocketAddr],
    within: Duration,
    birthday: Birthday,
    mut on_answer: impl FnMut(SocketAddr, Via),
) -> Punched {
    let start = tokio::time::Instant::now();
    let deadline = start + within;
    let mut probes = tokio::task::JoinSet::new();
    let mut tried: Vec<(SocketAddr, Via)> = Vec::new();
    let probe = |probes: &mut tokio::task::JoinSet<_>,
                 tried: &mut Vec<(SocketAddr, Via)>,
                 c: SocketAddr,
                 via: Via,
                 schedule: &'static [u64]| {
        if tried.contains(&(c, via)) {
            return;
        }
        tried.push((c, via));
        let socket = socket.clone();
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        probes.spawn(async move {
            let r = socket.stun_binding_via(via, c, schedule, left).await;
            (c, via, r)
        });
    };
    for &c in candidates {
        probe(&mut probes, &mut tried, c, Via::Main, &STUN_RETRIES_MS);
    }
    let news = route
        .and_then(|r| socket.learned_candidates(r))
        .map(|(_, n)| n);
    // The peer's public address: its first candidate, the rendezvous's view of it as the
    // peer reports it once it proved the password (or as the rendezvous reports it). A peer
    // could name a stranger's IP here; what goes there is bounded (32 predicted ports, one
    // spray of SPRAY_MAX single probes or POOL_SIZE x 3 pool probes, once per session).
    let target = candidates.first().copied().filter(is_public);
    let birthday = if target.is_some() {
        birthday
    } else {
        Birthday::Off
    };
    let mut predicted_yet = false;
    let mut pool: Option<crate::net::PoolGuard> = None;
    let mut pool_sends = tokio::task::JoinSet::new();
    let pool_news = socket.pool_news();
    let mut spray: Vec<SocketAddr> = Vec::new();
    let mut spray_tick = tokio::time::interval_at(start + SPRAY_AFTER, SPRAY_TICK);
    spray_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut answered = Vec::new();
    // Pool sockets a probe from the peer reached, and whether one of them answered ours.
    let mut reached: Vec<u32> = Vec::new();
    let mut confirmed = false;
    loop {
        let predict_at = start + PREDICT_AFTER;
        tokio::select! {
            done = probes.join_next(), if !probes.is_empty() => match done {
                Some(Ok((candidate, via, Ok(_)))) => {
                    debug!(%candidate, ?via, "punch probe answered");
                    on_answer(candidate, via);
                    answered.push(candidate);
                    spray.clear();
                    if let (Via::Main, Some(p)) = (via, pool.as_mut()) {
                        // Found without the pool: only the sockets the peer reached may
                        // still matter.
                        if !confirmed && !p.keep_reached(&mut reached) {
                            pool = None;
                        }
                    }
                    if let (Via::Pool(id), Some(p), false) = (via, pool.as_mut(), confirmed) {
                        info!(%candidate, pool_socket = id, "birthday punch: a pool socket got through");
                        confirmed = true;
                        // The peer goes direct by whichever socket its probe reached first,
                        // which need not be this one: keep every one it reached.
                        if !reached.contains(&id) {
                            reached.push(id);
                        }
                        p.keep_reached(&mut reached);
                        pool_sends.abort_all();
                    }
                }
                Some(Ok((candidate, via, Err(e)))) => debug!(%candidate, ?via, "punch probe: {e}"),
                Some(Err(e)) => debug!("punch probe task: {e}"),
                None => {}
            },
            () = tokio::time::sleep_until(predict_at), if !predicted_yet => {
                predicted_yet = true;
                if answered.is_empty() {
                    // Only around the first candidate (the rendezvous's view): the others are
                    // what the peer adds, and guessing around all of them would let a peer aim
                    // this side's probes at a stranger.
                    let more = predicted(&candidates[..candidates.len().min(1)]);
                    debug!(ports = more.len(), "no answer yet: probing predicted ports");
                    for c in more {
                        probe(&mut probes, &mut tried, c, Via::Main, &STUN_RETRIES_MS);
                    }
                    match (birthday, target) {
                        (Birthday::Pool, Some(target)) => match socket.open_pool(POOL_SIZE, target.ip()) {
                            Ok(p) => {
                                info!(sockets = POOL_SIZE, peer = %target, "birthday punch: pool opened");
                                let (socket, ids) = (socket.clone(), p.ids().to_vec());
                                pool_sends.spawn(send_from_pool(socket, ids, target));
                                pool = Some(p);
                            }
                            Err(e) => warn!("birthday punch: cannot open the pool: {e}"),
                        },
                        (Birthday::Spray, Some(target)) => {
                            let skip: Vec<SocketAddr> = tried.iter().map(|(a, _)| *a).collect();
                            spray = spray_targets(target, &skip);
                            info!(probes = spray.len(), ip = %target.ip(), "birthday punch: probing random ports");
                        }
                        _ => {}
                    }
                }
            }
            _ = spray_tick.tick(), if !spray.is_empty() => {
                let at = spray.len().saturating_sub(SPRAY_BATCH);
                for c in spray.split_off(at) {
                    probe(&mut probes, &mut tried, c, Via::Main, &[0]);
                }
            }
            () = pool_news.notified(), if pool.is_some() && !confirmed => {
                let hits = pool.as_ref().map(|p| p.take_hits()).unwrap_or_default();
                for (id, from) in hits {
                    // A binding request from the peer reached this pool socket (they let in
                    // nothing else): confirm the path both ways from that socket.
                    debug!(%from, pool_socket = id, "birthday punch: probe came in");
                    if !reached.contains(&id) {
                        reached.push(id);
                    }
                    probe(&mut probes, &mut tried, from, Via::Pool(id), &STUN_RETRIES_MS);
                }
            }
            () = async { news.as_ref().expect("guarded").notified().await }, if news.is_some() => {
                if let Some((learned, _)) = route.and_then(|r| socket.learned_candidates(r)) {
                    for c in learned {
                        probe(&mut probes, &mut tried, c, Via::Main, &STUN_RETRIES_MS);
                    }
                }
            }
            () = tokio::time::sleep_until(deadline) => break,
        }
        let waiting_on_pool = pool.is_some() && !confirmed;
        if probes.is_empty()
            && predicted_yet
            && news.is_none()
            && spray.is_empty()
            && !waiting_on_pool
        {
            break;
        }
    }
    // Whatever answered, keep the pool sockets the peer reached (it may have gone direct by
    // one of them even if our own confirmation was lost); close the rest.
    let pool = pool.and_then(|mut p| {
        let kept = p.keep_reached(&mut reached);
        if !kept {
            debug!("birthday punch: no pool socket was reached");
        }
        kept.then_some(p)
    });
    Punched { answered, pool }
}

/// Each pool socket sends binding requests to the peer at [`POOL_SENDS_MS`], so each has a
/// mapping towards it (the peer's NAT drops them until its own probe opens the way).
async fn send_from_pool(socket: Arc<PeerSocket>, ids: Vec<u32>, to: SocketAddr) {
    let start = tokio::time::Instant::now();
    for at in POOL_SENDS_MS {
        tokio::time::sleep_until(start + Duration::from_millis(at)).await;
        for &id in &ids {
            let Ok((_, request)) = proto::stun::binding_request() else {
                return;
            };
            // A closed pool socket (another won) fails: nothing to do.
            let _ = socket.send_raw_via(Via::Pool(id), to, &request).await;
        }
    }
}

/// The addresses of this machine's interfaces that a peer on the same network could reach this
/// socket at: every up, non-loopback, non-link-local interface address with the socket's port
/// when the socket is bound to the unspecified address; just the bound address otherwise.
/// Loopback addresses are offered only when bound to one (tests on one machine).
pub fn lan_candidates(local: SocketAddr) -> Vec<SocketAddr> {
    if !local.ip().is_unspecified() {
        return vec![local];
    }
    let interfaces = match if_addrs::get_if_addrs() {
        Ok(i) => i,
        Err(e) => {
            warn!("cannot list network interfaces: {e}");
            return Vec::new();
        }
    };
    lan_from(
        local,
        interfaces
            .iter()
            .filter(|i| !i.is_loopback() && !i.is_link_local())
            .map(if_addrs::Interface::ip),
    )
}

fn lan_from(local: SocketAddr, ips: impl Iterator<Item = IpAddr>) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for ip in ips {
        // An IPv4 socket cannot use IPv6 addresses and the other way round.
        if ip.is_ipv4() != local.is_ipv4() {
            continue;
        }
        let addr = SocketAddr::new(ip, local.port());
        if !out.contains(&addr) && out.len() < MAX_LAN_CANDIDATES {
            out.push(addr);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicted_ports_are_near_public_candidates_only_and_bounded() {
        let public: SocketAddr = "198.51.100.11:40000".parse().unwrap();
        let lan: SocketAddr = "10.1.0.2:5000".parse().unwrap();
        let p = predicted(&[public, lan]);
        assert_eq!(p.len(), 2 * PREDICT_SPAN as usize);
        assert!(
            p.iter()
                .all(|a| a.ip() == public.ip() && a.port().abs_diff(40000) <= PREDICT_SPAN)
        );
        assert!(!p.contains(&public));
        assert_eq!(
            p[..2],
            [
                "198.51.100.11:40001".parse().unwrap(),
                "198.51.100.11:39999".parse().unwrap()
            ]
        );
        // Low ports are not guessed.
        let low: SocketAddr = "198.51.100.11:1030".parse().unwrap();
        assert!(predicted(&[low]).iter().all(|a| a.port() >= 1024));
    }

    #[test]
    fn birthday_roles_follow_both_mappings() {
        use Mapping::*;
        assert_eq!(
            Birthday::for_mappings(EndpointDependent, EndpointIndependent),
            Birthday::Pool
        );
        assert_eq!(
            Birthday::for_mappings(EndpointIndependent, EndpointDependent),
            Birthday::Spray
        );
        for (a, b) in [
            (EndpointDependent, EndpointDependent),
            (EndpointIndependent, EndpointIndependent),
            (Unknown, EndpointDependent),
            (EndpointDependent, Unknown),
        ] {
            assert_eq!(Birthday::for_mappings(a, b), Birthday::Off, "{a} {b}");
        }
    }

    #[test]
    fn spray_targets_are_distinct_random_high_ports_of_one_ip() {
        let target: SocketAddr = "198.51.100.11:40000".parse().unwrap();
        let skip: Vec<SocketAddr> = (1024..1100)
            .map(|p| SocketAddr::new(target.ip(), p))
            .collect();
        let ports = spray_targets(target, &skip);
        assert_eq!(ports.len(), SPRAY_MAX);
        let mut seen = std::collections::HashSet::new();
        for a in &ports {
            assert_eq!(a.ip(), target.ip());
            assert!(a.port() >= 1100, "{a}");
            assert!(seen.insert(*a), "{a} twice");
        }
        // Random: another draw differs (the chance of equal 2048-port draws is nil).
        assert_ne!(spray_targets(target, &skip), ports);
    }

    #[test]
    fn mapping_from_two_reflexive_addresses() {
        let a: SocketAddr = "198.51.100.11:40000".parse().unwrap();
        let b: SocketAddr = "198.51.100.11:40001".parse().unwrap();
        assert_eq!(classify(a, Some(a)), Mapping::EndpointIndependent);
        assert_eq!(classify(a, Some(b)), Mapping::EndpointDependent);
        assert_eq!(classify(a, None), Mapping::Unknown);
    }

    #[test]
    fn lan_candidates_keep_the_family_and_port_and_are_bounded() {
        let local: SocketAddr = "0.0.0.0:5000".parse().unwrap();
        let ips = [
            "10.1.0.2",
            "2001:db8::2",
            "192.168.1.9",
            "10.1.0.2",
            "172.16.0.1",
        ]
        .map(|s| s.parse::<IpAddr>().unwrap());
        assert_eq!(
            lan_from(local, ips.into_iter()),
            ["10.1.0.2:5000", "192.168.1.9:5000", "172.16.0.1:5000"]
                .map(|s| s.parse::<SocketAddr>().unwrap())
        );
        let many = (0..50u8).map(|i| IpAddr::from([10, 0, 0, i]));
        assert_eq!(lan_from(local, many).len(), MAX_LAN_CANDIDATES);
        // Bound to one address: that address only.
        let bound: SocketAddr = "127.0.0.1:7".parse().unwrap();
        assert_eq!(lan_candidates(bound), vec![bound]);
    }
}
