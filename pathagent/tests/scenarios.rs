//! Single scenarios on the simulated network: determinism, a lossy and jittery path, relay-only
//! and relay-less sessions.

mod sim;

use std::time::Duration;

use sim::nat::Kind;
use sim::{CTL, HOST, Scenario, Sim};

/// The same seed gives the same trace, packet for packet; another seed gives another one.
#[test]
fn same_seed_same_trace() {
    let scenario = |seed| {
        let mut sc = Scenario::new(Kind::Symmetric, Kind::PortRestricted, seed);
        sc.jitter = Duration::from_millis(7);
        sc.loss = 0.02;
        sc.flushes = vec![(Duration::from_secs(4), HOST)];
        sc.end = Duration::from_secs(8);
        sc
    };
    let a = Sim::new(scenario(7)).run();
    let b = Sim::new(scenario(7)).run();
    assert_eq!(a.trace, b.trace, "same seed, different traces");
    assert_eq!(a.packets, b.packets);
    assert!(
        a.packets > 1000,
        "{} packets: not much of a trace",
        a.packets
    );
    let c = Sim::new(scenario(8)).run();
    assert_ne!(a.trace, c.trace, "another seed gave the very same trace");
}

/// 50 ms more delay, jitter and 5 % loss each way on the host's link (the lab's CI netem
/// run): the pair still goes direct, and survives a flush on the host's side.
#[test]
fn lossy_jittery_path_goes_direct_and_survives_a_flush() {
    for seed in 0..4 {
        let mut sc = Scenario::new(Kind::PortRestricted, Kind::PortRestricted, 300 + seed);
        sc.delay = Duration::from_millis(50);
        sc.jitter = Duration::from_millis(10);
        sc.loss = 0.05;
        sc.flushes = vec![(Duration::from_secs(5), HOST)];
        sc.end = Duration::from_secs(10);
        let o = Sim::new(sc).run();
        assert!(o.paths.iter().all(|p| p.is_direct()), "seed {seed}: {o:?}");
        assert!(
            o.time_to_direct.is_some_and(|t| t < Duration::from_secs(2)),
            "seed {seed}: {o:?}"
        );
        assert!(
            o.resumed[0].is_some_and(|t| t <= Duration::from_secs(2)),
            "seed {seed}: {o:?}"
        );
    }
}

/// A random-port cone on both sides loses its mappings: both sides see the other move, fall
/// back to the relay and punch again to the new ports.
#[test]
fn rebinding_on_both_sides_at_once() {
    let mut sc = Scenario::new(Kind::RandomCone, Kind::RandomCone, 41);
    sc.flushes = vec![
        (Duration::from_secs(3), HOST),
        (Duration::from_secs(3), CTL),
    ];
    sc.end = Duration::from_secs(8);
    let o = Sim::new(sc).run();
    assert!(o.paths.iter().all(|p| p.is_direct()), "{o:?}");
    for k in 0..2 {
        assert!(
            o.resumed[k].is_some_and(|t| t <= Duration::from_secs(2)),
            "{o:?}"
        );
        assert!(
            o.direct_again[k].is_some_and(|t| t <= Duration::from_secs(2)),
            "{o:?}"
        );
    }
}

/// `--force-relay`: no probes, the relay throughout, even between two open NATs.
#[test]
fn relay_only_stays_on_the_relay() {
    let mut sc = Scenario::new(Kind::FullCone, Kind::None, 5);
    sc.direct = false;
    let o = Sim::new(sc).run();
    assert!(o.paths.iter().all(|p| !p.is_direct()), "{o:?}");
    assert_eq!(o.path_changes, [0, 0]);
    assert!(o.received.iter().all(|&n| n > 200), "{o:?}");
}

/// No relay: packets go to every candidate until a probe proves one; two filtering NATs
/// punch through.
#[test]
fn without_a_relay_candidates_then_direct() {
    for (host, ctl) in [
        (Kind::PortRestricted, Kind::PortRestricted),
        (Kind::FullCone, Kind::Symmetric),
    ] {
        let mut sc = Scenario::new(host, ctl, 9);
        sc.relay = false;
        let o = Sim::new(sc).run();
        assert!(
            o.paths.iter().all(|p| p.is_direct()),
            "{host:?}/{ctl:?}: {o:?}"
        );
        assert!(
            o.received.iter().all(|&n| n > 200),
            "{host:?}/{ctl:?}: {o:?}"
        );
    }
}
