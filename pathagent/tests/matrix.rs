//! Every pair of the NAT lab's matrix on simulated time: which path it ends on, how long the
//! direct path took, and how the session resumes after either router loses its mappings.

mod sim;

use std::time::{Duration, Instant};

use sim::nat::Kind;
use sim::{CTL, HOST, Scenario, Sim, lab_expects_direct};

#[test]
fn lab_matrix_paths_times_and_mapping_loss() {
    let started = Instant::now();
    let mut table = Vec::new();
    let mut failures = Vec::new();
    for (n, host) in Kind::LAB.into_iter().enumerate() {
        for (m, ctl) in Kind::LAB.into_iter().enumerate() {
            let mut sc = Scenario::new(host, ctl, 1000 + (n * 10 + m) as u64);
            sc.flushes = vec![
                (Duration::from_secs(6), HOST),
                (Duration::from_secs(12), CTL),
            ];
            sc.end = Duration::from_secs(18);
            let o = Sim::new(sc).run();
            let direct = lab_expects_direct(host, ctl);
            let pair = format!("{}/{}", host.name(), ctl.name());
            table.push(format!(
                "{pair:34} end {:?}/{:?} changes {:?} to-direct {:?} resumed {:?} direct-again {:?} rx {:?}",
                o.paths[0].is_direct(),
                o.paths[1].is_direct(),
                o.path_changes,
                o.time_to_direct,
                o.resumed,
                o.direct_again,
                o.received
            ));
            if o.paths.iter().any(|p| p.is_direct() != direct) {
                failures.push(format!(
                    "{pair}: ended on {:?}, lab: direct={direct}",
                    o.paths
                ));
            }
            for (k, r) in o.resumed.iter().enumerate() {
                if !r.is_some_and(|r| r <= Duration::from_secs(2)) {
                    failures.push(format!("{pair}: flush {k} resumed after {r:?}"));
                }
            }
        }
    }
    for line in &table {
        println!("{line}");
    }
    println!("matrix ran in {:?}", started.elapsed());
    assert!(failures.is_empty(), "{failures:#?}");
}
