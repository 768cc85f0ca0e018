//! The best sustained rate at which an attacker can guess one host's password, measured against
//! a real host, and what it means for a one-time password.
//!
//! The attacker is as strong as loopback lets it be: many source addresses (127.0.0.2 ...
//! 127.0.0.250, each a different source prefix), a fresh key for every attempt, 16 attempts in
//! flight, each announced to the host by a look-up at the rendezvous (a rendezvous without a
//! relay, so the attacker dials the host directly), then a full password exchange with a random
//! guess. The host's limits decide how many attempts reach the password step; the rate over the
//! second half of the run is the sustained rate. The run fails if the expected time to guess a
//! one-time password is less than 10^4 times its lifetime.
//!
//! `cargo bench -p peer --bench guessing` (QUICDESK_GUESS_SECONDS to change the 40 s run).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;

use common::raw::{Attacker, guess};
use common::{start_host, start_rendezvous_without_relay, synthetic_host};
use proto::session::ControlMsg;

const TASKS: usize = 16;

#[derive(Default)]
struct Tally {
    tried: AtomicU64,
    look_up_refused: AtomicU64,
    dial_refused: AtomicU64,
    denied: AtomicU64,
    wrong: AtomicU64,
    other: AtomicU64,
}

fn main() {
    let seconds: u64 = std::env::var("QUICDESK_GUESS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let rv = start_rendezvous_without_relay(dir.path());
        let mut cfg = synthetic_host(
            &rv,
            &dir.path().join("host"),
            (320, 240),
            "unused fixed pass 1234",
            input::RecordingBackend::new(),
        );
        cfg.password = peer::host::HostPassword::default();
        let lifetime = match cfg.password {
            peer::host::HostPassword::OneTime { lifetime } => lifetime,
            _ => unreachable!("the default is a one-time password"),
        };
        let host = start_host(cfg).await;
        let code = host.status().code.expect("registered");
        let target = (rv.addr, rv.fingerprint);
        let tally = Arc::new(Tally::default());
        let next_source = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let end = start + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for _ in 0..TASKS {
            let (tally, next_source) = (tally.clone(), next_source.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < end {
                    let n = next_source.fetch_add(1, Ordering::Relaxed);
                    let source = format!("127.0.0.{}", 2 + n % 249);
                    let attacker = Attacker::new(&source);
                    tally.tried.fetch_add(1, Ordering::Relaxed);
                    let Ok((fp, addr)) = attacker.look_up(target, code).await else {
                        tally.look_up_refused.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let Ok(conn) = attacker.dial(fp, addr).await else {
                        tally.dial_refused.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let counter = match guess(&conn, &peer::password::one_time()).await {
                        Ok(ControlMsg::Denied { .. }) => &tally.denied,
                        Ok(ControlMsg::WrongPassword) => &tally.wrong,
                        _ => &tally.other,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    conn.close(0u32.into(), b"");
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(seconds / 2)).await;
        let halfway = host.status().password_attempts;
        let t_half = start.elapsed();
        for t in tasks {
            let _ = t.await;
        }
        let charged = host.status().password_attempts;
        let elapsed = start.elapsed();
        let sustained =
            (charged - halfway) as f64 / (elapsed - t_half).as_secs_f64().max(1e-9);
        let space = 2f64.powi(peer::password::ONE_TIME_BITS as i32);
        // Each guess is right with probability 1/space: on average `space` guesses (the
        // password changes, so the attacker cannot narrow the space down).
        let expected_secs = space / sustained.max(1e-9);
        let ratio = expected_secs / lifetime.as_secs_f64();
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        println!();
        println!(
            "| attacker | attempts tried | look-ups refused | connections refused | reached the password step's door | charged (password step) | denied (back-off/busy) | wrong password | sustained guesses/s | expected time to guess a one-time password | lifetime | ratio |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
        println!(
            "| 249 addresses, fresh key each try, {TASKS} in flight, {}s | {} | {} | {} | {} | {} | {} | {} | {:.3} | {:.2e} s ({:.0} years) | {} s | {:.1e} |",
            elapsed.as_secs(),
            g(&tally.tried),
            g(&tally.look_up_refused),
            g(&tally.dial_refused),
            g(&tally.denied) + g(&tally.wrong) + g(&tally.other),
            charged,
            g(&tally.denied),
            g(&tally.wrong),
            sustained,
            expected_secs,
            expected_secs / (365.25 * 86400.0),
            lifetime.as_secs(),
            ratio
        );
        assert!(
            ratio >= 1e4,
            "expected time to guess ({expected_secs:.0} s) is not 10^4 times the lifetime"
        );
        host.shutdown().await;
    });
}
