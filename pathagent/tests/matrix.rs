//! Every pair of the NAT lab's matrix on simulated time: which path it ends on (the lab's
//! answer), how long the direct path took, and how the session resumes after either router
//! loses its mappings.

mod sim;

use std::time::{Duration, Instant};

use sim::nat::Kind;
use sim::{CTL, HOST, Outcome, Scenario, Sim, lab_expects_direct};

/// Runs (host, controller) with a mapping flush on the host's router at 6 s and on the
/// controller's at 12 s; returns the outcome and what is wrong with it.
fn run_pair(host: Kind, ctl: Kind, direct: bool, seed: u64) -> (Outcome, Vec<String>) {
    let mut sc = Scenario::new(host, ctl, seed);
    sc.flushes = vec![
        (Duration::from_secs(6), HOST),
        (Duration::from_secs(12), CTL),
    ];
    sc.end = Duration::from_secs(18);
    let o = Sim::new(sc).run();
    let pair = format!("{}/{}", host.name(), ctl.name());
    let mut wrong = Vec::new();
    if o.paths.iter().any(|p| p.is_direct() != direct) {
        wrong.push(format!(
            "{pair}: ended on {:?}, want direct={direct}",
            o.paths
        ));
    }
    // Prediction and birthday punching take longer than plain probes.
    let hard = [host, ctl]
        .iter()
        .any(|k| matches!(k, Kind::Symmetric | Kind::SymmetricSeq | Kind::RandomCone));
    let budget = Duration::from_millis(if hard { 2500 } else { 300 });
    match o.time_to_direct {
        Some(t) if direct && t > budget => {
            wrong.push(format!("{pair}: direct after {t:?}, budget {budget:?}"))
        }
        None if direct => wrong.push(format!("{pair}: never direct")),
        Some(_) if !direct => wrong.push(format!("{pair}: went direct")),
        _ => {}
    }
    for (k, r) in o.resumed.iter().enumerate() {
        if !r.is_some_and(|r| r <= Duration::from_secs(2)) {
            wrong.push(format!("{pair}: flush {k}: resumed after {r:?}"));
        }
        // Six seconds after each flush the pair is where it was: direct if it can be punched.
        if o.settled.get(k) != Some(&[direct, direct]) {
            wrong.push(format!(
                "{pair}: flush {k}: settled on {:?}",
                o.settled.get(k)
            ));
        }
        // Back on a direct path: within 2 s unless it takes a birthday punch again.
        let again = o.direct_again[k];
        let budget = Duration::from_millis(if hard { 4000 } else { 2000 });
        if direct && again.is_none_or(|t| t > budget) {
            wrong.push(format!("{pair}: flush {k}: direct again after {again:?}"));
        }
    }
    (o, wrong)
}

fn print(host: Kind, ctl: Kind, o: &Outcome) {
    println!(
        "{:>15} / {:15} direct {:5} changes {:?} to-direct {:>9} resumed {:?} direct-again {:?} rx {:?}",
        host.name(),
        ctl.name(),
        o.paths[0].is_direct() && o.paths[1].is_direct(),
        o.path_changes,
        format!("{:?}", o.time_to_direct.unwrap_or_default()),
        o.resumed,
        o.direct_again,
        o.received
    );
}

#[test]
fn lab_matrix_paths_times_and_mapping_loss() {
    let started = Instant::now();
    let mut wrong = Vec::new();
    for (n, host) in Kind::LAB.into_iter().enumerate() {
        for (m, ctl) in Kind::LAB.into_iter().enumerate() {
            let seed = 1000 + (n * 10 + m) as u64;
            let (o, w) = run_pair(host, ctl, lab_expects_direct(host, ctl), seed);
            print(host, ctl, &o);
            wrong.extend(w);
        }
    }
    println!("lab matrix: {:?}", started.elapsed());
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// Kinds the lab does not build: an address-restricted cone, and a port-restricted cone that
/// allocates at random, whose lost mappings come back on new ports (a NAT rebinding).
#[test]
fn restricted_and_rebinding_cones_against_the_lab_kinds() {
    let mut wrong = Vec::new();
    for (n, extra) in [Kind::Restricted, Kind::RandomCone].into_iter().enumerate() {
        for (m, other) in Kind::LAB.into_iter().enumerate() {
            for (host, ctl) in [(extra, other), (other, extra)] {
                // Both are cones: direct with everyone but a blocked side; a random-port cone
                // is endpoint-independent, so it birthday-punches a symmetric NAT.
                let direct = other != Kind::Blocked;
                let seed = 5000 + (n * 100 + m * 2) as u64 + u64::from(host == extra);
                let (o, w) = run_pair(host, ctl, direct, seed);
                print(host, ctl, &o);
                wrong.extend(w);
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
