//! The core on simulated time, without sockets: registrations and their limits, quarantine,
//! look-ups and their limits, relay caps, uniform refusals, connections, snapshots.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::SeedableRng;

use super::*;
use crate::relay::Limits;

const FORGET_AFTER: Duration = Duration::from_secs(100);
const QUARANTINE: Duration = Duration::from_secs(1000);
const UNIX0: u64 = 1_700_000_000;
const PORTS: Ports = Ports {
    stun: Some(3479),
    relay: Some(3480),
};

fn key(n: u8) -> Fingerprint {
    Fingerprint::from_bytes([n; 32])
}

fn from(n: u8) -> SocketAddr {
    SocketAddr::from(([203, 0, 113, n], 4000))
}

/// Simulated time: a fixed start, both clocks moved together.
struct Clock(Instant);

impl Clock {
    fn new() -> Self {
        Self(Instant::now())
    }

    fn at(&self, secs: f64) -> Now {
        let d = Duration::from_secs_f64(secs);
        Now {
            instant: self.0 + d,
            unix: UNIX0 + d.as_secs(),
        }
    }
}

fn relay(limits: Limits, clock: &Clock) -> SharedRelay {
    Arc::new(Mutex::new(Relay::new(limits, clock.0)))
}

fn core(relay: Option<SharedRelay>) -> Core {
    Core::new(Registry::new(FORGET_AFTER, QUARANTINE), relay, [7; 32])
}

fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

fn register(core: &mut Core, now: Now, k: u8, at: u8) -> Result<Registered, Refused> {
    core.register(now, key(k), from(at), &[], PORTS, &mut rng(u64::from(k)))
}

fn lookup(
    k: u8,
    at: u8,
    code: AccessCode,
    lan_addrs: &[SocketAddr],
    relay_only: bool,
) -> Lookup<'_> {
    Lookup {
        key: key(k),
        source: from(at),
        code,
        lan_addrs,
        relay_only,
    }
}

fn resolve(core: &mut Core, now: Now, k: u8, at: u8, code: AccessCode) -> Resolution {
    let lan: [SocketAddr; 1] = ["10.0.0.9:4000".parse().unwrap()];
    core.resolve(now, lookup(k, at, code, &lan, false), PORTS)
}

fn refusal(answer: &ServerMsg) -> Option<Refusal> {
    match answer {
        ServerMsg::Refused { reason, .. } => Some(*reason),
        _ => None,
    }
}

fn drain(core: &mut Core) -> Vec<StoreOp> {
    std::iter::from_fn(|| core.poll_store()).collect()
}

#[test]
fn a_key_gets_one_code_is_online_and_its_record_goes_to_the_store() {
    let clock = Clock::new();
    let mut c = core(None);
    let first = register(&mut c, clock.at(0.0), 1, 1).unwrap();
    assert!(first.new && first.replaced.is_none());
    assert_eq!(
        first.answer,
        ServerMsg::Registered {
            code: first.code,
            observed: from(1),
            stun_port: Some(3479),
        }
    );
    assert_eq!(c.online(&first.code), Some(first.push));
    let rec = HostRecord {
        fingerprint: key(1),
        last_seen: UNIX0,
    };
    assert_eq!(drain(&mut c), [StoreOp::Upsert(first.code, rec)]);
    // Again, from elsewhere: the same code, a new registration that replaces the first.
    let again = register(&mut c, clock.at(5.0), 1, 2).unwrap();
    assert_eq!((again.code, again.new), (first.code, false));
    assert_eq!(again.replaced, Some(first.push));
    assert_ne!(again.push, first.push);
    // The replaced registration's end does not take the host offline; the current one's does.
    assert!(!c.disconnected(clock.at(6.0), first.code, first.push));
    assert_eq!(c.online(&first.code), Some(again.push));
    drain(&mut c);
    assert!(c.disconnected(clock.at(7.0), first.code, again.push));
    assert_eq!(c.online(&first.code), None);
    let left = HostRecord {
        fingerprint: key(1),
        last_seen: UNIX0 + 7,
    };
    assert_eq!(drain(&mut c), [StoreOp::Upsert(first.code, left)]);
    assert!(!c.disconnected(clock.at(8.0), first.code, again.push));
}

#[test]
fn registrations_are_limited_per_key_and_new_codes_per_prefix() {
    let clock = Clock::new();
    let mut c = core(None);
    let t0 = clock.at(0.0);
    let ok = (0..20)
        .filter(|_| register(&mut c, t0, 1, 1).is_ok())
        .count();
    assert_eq!(ok, 5, "one key: its burst");
    let refused = register(&mut c, t0, 1, 1).unwrap_err();
    assert_eq!(
        (refused.why, refused.reason),
        (Why::RegisterRateLimited, Refusal::RateLimited)
    );
    // Fresh keys from one prefix: 10 new codes at once (one spent above), then one a minute.
    let minted = (2..60u8)
        .filter(|&k| register(&mut c, t0, k, 1).is_ok())
        .count();
    assert_eq!(minted, 9);
    assert!(register(&mut c, clock.at(61.0), 100, 1).is_ok());
    assert!(register(&mut c, clock.at(61.0), 101, 1).is_err());
    // Another prefix is not held back.
    assert!(register(&mut c, t0, 102, 2).is_ok());
    let s = c.snapshot();
    assert_eq!(s.registrations, 5 + 9 + 1 + 1);
    assert_eq!(s.refusals.register_rate_limited, 15 + 1 + 49 + 1);
    assert_eq!(s.hosts_known, 12);
    assert_eq!(s.hosts.len(), 12);
    // The counts alone are the snapshot without its rows.
    assert_eq!(
        c.counts(),
        crate::core::Snapshot {
            hosts: Vec::new(),
            ..s
        }
    );
}

#[test]
fn a_forgotten_code_is_quarantined_from_other_keys_and_given_back_to_its_owner() {
    let clock = Clock::new();
    let mut c = core(None);
    let gone = register(&mut c, clock.at(0.0), 1, 1).unwrap();
    let stays = register(&mut c, clock.at(0.0), 2, 2).unwrap();
    assert!(c.disconnected(clock.at(1.0), gone.code, gone.push));
    drain(&mut c);
    // Online hosts are never forgotten; the sweep marks them seen.
    c.sweep(clock.at(200.0));
    assert!(c.registry().get(&gone.code).is_none());
    assert_eq!(
        c.registry().get(&stays.code).map(|r| r.last_seen),
        Some(UNIX0 + 200)
    );
    let ops = drain(&mut c);
    assert!(ops.contains(&StoreOp::Upsert(
        stays.code,
        HostRecord {
            fingerprint: key(2),
            last_seen: UNIX0 + 200
        }
    )));
    let Some(StoreOp::Expired(expired)) = ops.last() else {
        panic!("no expiry written: {ops:?}");
    };
    assert_eq!(expired.quarantined.len(), 1);
    assert_eq!(expired.quarantined[0].0, gone.code);
    assert_eq!(c.snapshot().codes_quarantined, 1);
    // Another key drawing the same numbers gets another code; the owner gets its own back.
    let other = c
        .register(clock.at(300.0), key(3), from(3), &[], PORTS, &mut rng(1))
        .unwrap();
    assert_ne!(other.code, gone.code);
    let back = register(&mut c, clock.at(301.0), 1, 9).unwrap();
    assert_eq!((back.code, back.new), (gone.code, true));
    assert_eq!(c.snapshot().codes_quarantined, 0);
}

#[test]
fn unknown_offline_and_forgotten_codes_get_one_answer() {
    let clock = Clock::new();
    let relay = relay(Limits::default(), &clock);
    let mut c = core(Some(relay.clone()));
    // Two hosts leave; one comes back before the sweep and leaves again (known, offline),
    // the other is forgotten.
    let offline = register(&mut c, clock.at(0.0), 1, 1).unwrap();
    assert!(c.disconnected(clock.at(0.0), offline.code, offline.push));
    let forgotten = register(&mut c, clock.at(0.0), 2, 1).unwrap();
    assert!(c.disconnected(clock.at(0.0), forgotten.code, forgotten.push));
    let again = register(&mut c, clock.at(150.0), 1, 1).unwrap();
    c.sweep(clock.at(150.0));
    assert!(c.disconnected(clock.at(150.0), again.code, again.push));
    assert!(c.registry().get(&forgotten.code).is_none());
    assert!(c.registry().get(&offline.code).is_some());
    let unknown = AccessCode::from_payload([9, 9, 9, 9, 9, 9, 1]).unwrap();
    let answers: Vec<(Option<Refusal>, String)> = [offline.code, forgotten.code, unknown]
        .into_iter()
        .map(|code| {
            let r = resolve(&mut c, clock.at(151.0), 5, 5, code);
            assert!(r.push.is_none());
            let ServerMsg::Refused { reason, message } = r.answer else {
                panic!("{:?}", r.answer);
            };
            (Some(reason), message.replace(&code.to_string(), "CODE"))
        })
        .collect();
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[1], answers[2]);
    assert_eq!(answers[0].0, Some(Refusal::Unavailable));
    // No relay session was opened for any of them.
    assert_eq!(lock(&relay).counters().sessions_opened, 0);
    assert_eq!(c.snapshot().refusals.unavailable, 3);
}

#[test]
fn look_ups_are_limited_per_controller_key_and_per_prefix() {
    let clock = Clock::new();
    let mut c = core(None);
    let host = register(&mut c, clock.at(0.0), 1, 1).unwrap();
    let t0 = clock.at(0.0);
    let ok = (0..30)
        .filter(|_| refusal(&resolve(&mut c, t0, 2, 2, host.code).answer).is_none())
        .count();
    assert_eq!(ok, 10, "one key: its burst");
    // Fresh keys from the same prefix: the prefix's 30 (10 spent) cap them.
    let ok = (10..80u8)
        .filter(|&k| refusal(&resolve(&mut c, t0, k, 2, host.code).answer).is_none())
        .count();
    assert_eq!(ok, 20);
    let r = resolve(&mut c, t0, 200, 2, host.code);
    assert_eq!(refusal(&r.answer), Some(Refusal::RateLimited));
    assert!(r.push.is_none(), "a refused look-up pushes nothing");
    // Two seconds later the key has one more.
    let t1 = clock.at(2.0);
    assert!(refusal(&resolve(&mut c, t1, 2, 3, host.code).answer).is_none());
    assert_eq!(
        refusal(&resolve(&mut c, t1, 2, 3, host.code).answer),
        Some(Refusal::RateLimited)
    );
    let s = c.snapshot();
    assert_eq!(s.resolves, 31);
    assert_eq!(s.refusals.resolve_rate_limited, 20 + 50 + 1 + 1);
}

#[test]
fn a_look_up_opens_one_relay_session_and_reveals_no_address() {
    let clock = Clock::new();
    let relay = relay(Limits::default(), &clock);
    let mut c = core(Some(relay.clone()));
    let host = c
        .register(
            clock.at(0.0),
            key(1),
            from(1),
            &["10.0.0.5:4000".parse().unwrap()],
            PORTS,
            &mut rng(1),
        )
        .unwrap();
    let r = resolve(&mut c, clock.at(1.0), 2, 2, host.code);
    let ServerMsg::Resolved {
        host: fp,
        candidates,
        observed,
        stun_port,
        relay: Some(offer),
    } = r.answer
    else {
        panic!("{:?}", r.answer);
    };
    assert_eq!((fp, observed, stun_port), (key(1), from(2), Some(3479)));
    assert!(
        candidates.is_empty(),
        "a look-up revealed the host's addresses"
    );
    let push = r.push.expect("the host is told");
    assert_eq!(push.to, host.push);
    let ServerMsg::ConnectRequest {
        controller,
        candidates,
        relay: Some(host_offer),
        source,
    } = push.msg
    else {
        panic!("{:?}", push.msg);
    };
    assert_eq!(controller, key(2));
    assert!(candidates.is_empty());
    assert_eq!((offer.port, host_offer.port), (3480, 3480));
    assert_ne!(offer.ticket.token, host_offer.ticket.token);
    assert_eq!(lock(&relay).counters().sessions_active, 1);
    // The source tag names the prefix, not the key, and tells prefixes apart.
    let tag = |c: &mut Core, k, at| match resolve(c, clock.at(2.0), k, at, host.code).push {
        Some(Push {
            msg: ServerMsg::ConnectRequest { source, .. },
            ..
        }) => source,
        other => panic!("{other:?}"),
    };
    assert_eq!(tag(&mut c, 3, 2), source);
    assert_ne!(tag(&mut c, 3, 4), source);
}

#[test]
fn without_a_relay_addresses_are_handed_out_unless_relay_only() {
    let clock = Clock::new();
    let mut c = core(None);
    let lan: SocketAddr = "10.0.0.5:4000".parse().unwrap();
    let host = c
        .register(clock.at(0.0), key(1), from(1), &[lan], PORTS, &mut rng(1))
        .unwrap();
    let r = resolve(&mut c, clock.at(1.0), 2, 2, host.code);
    let ServerMsg::Resolved {
        candidates, relay, ..
    } = r.answer
    else {
        panic!();
    };
    assert_eq!((candidates, relay), (vec![from(1), lan], None));
    let r = c.resolve(clock.at(1.0), lookup(2, 2, host.code, &[], true), PORTS);
    assert!(matches!(r.answer, ServerMsg::Resolved { candidates, .. } if candidates.is_empty()));
    assert!(matches!(
        r.push.unwrap().msg,
        ServerMsg::ConnectRequest { candidates, .. } if candidates.is_empty()
    ));
}

#[test]
fn relay_caps_and_a_relay_that_is_down_refuse_look_ups() {
    let clock = Clock::new();
    let relay = relay(
        Limits {
            max_sessions: 3,
            max_sessions_per_key: 1,
            max_sessions_per_prefix: 2,
            ..Limits::default()
        },
        &clock,
    );
    let mut c = core(Some(relay.clone()));
    let host = register(&mut c, clock.at(0.0), 1, 1).unwrap();
    let t = clock.at(1.0);
    let busy = |r: &Resolution| match &r.answer {
        ServerMsg::Refused { reason, message } => {
            assert!(r.push.is_none(), "a refused look-up pushed");
            assert!(!message.contains("203.0.113"), "{message}");
            *reason == Refusal::Busy
        }
        _ => false,
    };
    assert!(!busy(&resolve(&mut c, t, 2, 2, host.code)));
    assert!(busy(&resolve(&mut c, t, 2, 3, host.code)), "key cap");
    assert!(!busy(&resolve(&mut c, t, 3, 2, host.code)));
    assert!(busy(&resolve(&mut c, t, 4, 2, host.code)), "prefix cap");
    assert!(!busy(&resolve(&mut c, t, 5, 5, host.code)));
    assert!(busy(&resolve(&mut c, t, 6, 6, host.code)), "full");
    let down = c.resolve(
        t,
        lookup(7, 7, host.code, &[], false),
        Ports {
            relay: None,
            ..PORTS
        },
    );
    assert!(busy(&down), "relay down");
    // Sessions nobody bound close after the relay's sweep; then there is room again.
    lock(&relay).sweep(clock.0 + Duration::from_secs(12));
    assert!(!busy(&resolve(&mut c, clock.at(12.0), 6, 6, host.code)));
    let s = c.snapshot();
    let r = s.refusals;
    assert_eq!(
        (
            r.relay_key_cap,
            r.relay_prefix_cap,
            r.relay_full,
            r.relay_down
        ),
        (1, 1, 1, 1)
    );
    let relay = s.relay.unwrap();
    assert_eq!((relay.sessions_active, relay.sessions_opened), (1, 4));
}

#[test]
fn connections_are_retried_then_capped_per_prefix() {
    let mut c = core(None);
    assert_eq!(c.connection(from(1), false), Admit::Retry);
    for _ in 0..MAX_CONNECTIONS_PER_PREFIX {
        assert_eq!(c.connection(from(1), true), Admit::Accept);
    }
    assert_eq!(c.connection(from(1), true), Admit::Refuse);
    assert_eq!(c.connection(from(2), true), Admit::Accept);
    c.connection_closed(from(1));
    assert_eq!(c.connection(from(1), true), Admit::Accept);
    let s = c.snapshot();
    assert_eq!(s.connections, MAX_CONNECTIONS_PER_PREFIX + 1);
    assert_eq!(s.refusals.connection_cap, 1);
    assert!(matches!(
        c.bad_request("nonsense"),
        ServerMsg::Refused {
            reason: Refusal::BadRequest,
            ..
        }
    ));
    assert_eq!(c.snapshot().refusals.bad_request, 1);
}

#[test]
fn a_snapshot_lists_hosts_and_counts() {
    let clock = Clock::new();
    let relay = relay(Limits::default(), &clock);
    let mut c = core(Some(relay));
    let a = register(&mut c, clock.at(0.0), 1, 1).unwrap();
    let b = register(&mut c, clock.at(3.0), 2, 2).unwrap();
    assert!(c.disconnected(clock.at(4.0), b.code, b.push));
    resolve(&mut c, clock.at(5.0), 3, 3, a.code);
    resolve(&mut c, clock.at(5.0), 3, 3, b.code);
    c.service_restarted();
    let s = c.snapshot();
    assert_eq!(
        (s.hosts_known, s.hosts_online, s.codes_quarantined),
        (2, 1, 0)
    );
    assert_eq!((s.registrations, s.resolves, s.service_restarts), (2, 1, 1));
    assert_eq!(s.refusals.unavailable, 1);
    assert_eq!(s.refusals.total(), 1);
    assert_eq!(s.relay.map(|r| r.sessions_active), Some(1));
    let mut want = vec![
        HostRow {
            code: a.code,
            key: key(1),
            last_seen: UNIX0,
            online: Some((from(1), UNIX0)),
        },
        HostRow {
            code: b.code,
            key: key(2),
            last_seen: UNIX0 + 4,
            online: None,
        },
    ];
    want.sort_by_key(|h| h.code);
    assert_eq!(s.hosts, want);
}

/// Paging through hosts visits each exactly once, in code order, whatever the page size; the
/// filters count what matches.
#[test]
fn host_pages_cover_the_registry_once_in_order() {
    let clock = Clock::new();
    let mut c = core(None);
    for k in 1..=40u8 {
        register(&mut c, clock.at(0.0), k, k).unwrap();
    }
    // Half of them go offline.
    for k in (1..=40u8).step_by(2) {
        let code = c.registry().code_of(&key(k)).unwrap();
        let push = c.online(&code).unwrap();
        c.disconnected(clock.at(1.0), code, push);
    }
    for limit in [1, 7, 40, 1000] {
        let (mut seen, mut after) = (Vec::new(), None);
        loop {
            let page = c.hosts_page(&HostQuery {
                after,
                limit,
                ..HostQuery::default()
            });
            assert_eq!(page.total, 40);
            assert!(page.hosts.len() <= limit.min(MAX_PAGE));
            seen.extend(page.hosts.iter().map(|h| h.code));
            match page.next {
                Some(n) => after = Some(n.into()),
                None => break,
            }
        }
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!((seen.len(), &seen), (40, &sorted), "limit {limit}");
    }
    let online = c.hosts_page(&HostQuery {
        online: Some(true),
        limit: 100,
        ..HostQuery::default()
    });
    assert_eq!(online.total, 20);
    assert!(online.hosts.iter().all(|h| h.online.is_some()));
}

/// The operator's changes: a name is searchable, a banned key cannot register (and is counted),
/// a forgotten host's code is quarantined and given back to its key only; each change is queued
/// for the store and for open consoles.
#[test]
fn operators_rename_ban_and_forget_hosts() {
    let clock = Clock::new();
    let mut c = core(None);
    let code = register(&mut c, clock.at(0.0), 1, 1).unwrap().code;
    register(&mut c, clock.at(0.0), 2, 2).unwrap();
    while c.poll_event().is_some() {}
    while c.poll_store().is_some() {}
    assert_eq!(parse_name("  "), Err(AdminError::BadName));
    assert_eq!(parse_name("a\u{7}b"), Err(AdminError::BadName));
    assert_eq!(parse_name(&"x".repeat(65)), Err(AdminError::BadName));
    c.rename(&code, Some(parse_name(" Front desk ").unwrap()))
        .unwrap();
    assert_eq!(c.poll_event(), Some(Event::Host(code)));
    assert!(
        matches!(c.poll_store(), Some(StoreOp::Meta(k, m)) if k == key(1) && m.name.as_deref() == Some("Front desk"))
    );
    let found = c.hosts_page(&HostQuery {
        search: Some("FRONT".into()),
        limit: 10,
        ..HostQuery::default()
    });
    assert_eq!(
        found.hosts.iter().map(|h| h.code).collect::<Vec<_>>(),
        [code]
    );
    // Ban: offline at once, the registration to close is named, registering again is refused.
    let push = c.online(&code).unwrap();
    assert_eq!(c.set_banned(clock.at(1.0), &code, true), Ok(Some(push)));
    assert_eq!(c.online(&code), None);
    let refused = register(&mut c, clock.at(2.0), 1, 1).unwrap_err();
    assert_eq!(refused.why, Why::Banned);
    assert_eq!(c.counts().refusals.banned, 1);
    assert_eq!(c.set_banned(clock.at(3.0), &code, false), Ok(None));
    assert_eq!(register(&mut c, clock.at(3.0), 1, 1).unwrap().code, code);
    // Forget: gone from the list, its code quarantined for its key.
    assert!(c.forget(clock.at(4.0), &code).unwrap().is_some());
    assert_eq!(c.host(&code), None);
    assert_eq!(c.forget(clock.at(4.0), &code), Err(AdminError::NoSuchHost));
    assert_eq!(register(&mut c, clock.at(5.0), 1, 1).unwrap().code, code);
    let unknown: AccessCode = "ISR-00000000".parse().unwrap();
    assert_eq!(c.rename(&unknown, None), Err(AdminError::NoSuchHost));
}

#[test]
fn a_host_whose_connection_moved_is_looked_up_at_its_new_address() {
    let clock = Clock::new();
    // No relay: look-ups hand out the host's addresses, so the move shows.
    let mut c = core(None);
    let first = register(&mut c, clock.at(0.0), 1, 1).unwrap();
    let now = register(&mut c, clock.at(1.0), 1, 2).unwrap();
    let _ = std::iter::from_fn(|| c.poll_event()).count();
    assert_eq!(c.moved(now.code, now.push, from(2)), None, "not a move");
    assert_eq!(
        c.moved(now.code, first.push, from(3)),
        None,
        "a replaced registration moves nothing"
    );
    assert!(c.poll_event().is_none());
    assert_eq!(c.moved(now.code, now.push, from(4)), Some(from(2)));
    assert_eq!(c.poll_event(), Some(Event::Host(now.code)));
    let r = resolve(&mut c, clock.at(2.0), 2, 5, now.code);
    let ServerMsg::Resolved { candidates, .. } = r.answer else {
        panic!("{:?}", r.answer);
    };
    assert!(candidates.contains(&from(4)), "{candidates:?}");
    assert!(!candidates.contains(&from(2)), "{candidates:?}");
    assert_eq!(
        c.host(&now.code).and_then(|h| h.online).map(|o| o.0),
        Some(from(4))
    );
}
