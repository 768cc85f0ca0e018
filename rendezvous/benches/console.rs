//! The console at scale: a registry of 100 000 hosts (names included), 200 of them online, and
//! 100 open dashboards. Prints a table of answer times (p50/p95 over many requests, each on a
//! fresh TLS connection as a first page load is) for the pages and API calls an operator uses,
//! and how long a host's coming online takes to reach all 100 dashboards.
//!
//! `cargo bench -p rendezvous --bench console` (release). Target: p95 under 100 ms.

use std::time::{Duration, Instant};

use proto::AccessCode;

#[path = "../tests/console_support/mod.rs"]
mod console_support;
use console_support::log_in;
use console_support::rig::{ANN, Host, code_of, start_with};

const HOSTS: u32 = 100_000;
const ONLINE: usize = 200;
const DASHBOARDS: usize = 100;
const REQUESTS: usize = 200;

/// The registry: `HOSTS` made-up hosts, and `keys` (the ones that will come online, known
/// already, as hosts returning: new codes from one address are rate-limited).
fn fill(dir: &std::path::Path, keys: &[certs::Fingerprint]) {
    let path = dir.join(rendezvous::backup::DB_FILE);
    drop(rendezvous::registry::Store::open(&path).unwrap());
    let mut db = rusqlite::Connection::open(&path).unwrap();
    let tx = db.transaction().unwrap();
    {
        let mut host = tx
            .prepare("INSERT INTO hosts (code, fingerprint, last_seen) VALUES (?1, ?2, ?3)")
            .unwrap();
        let mut meta = tx
            .prepare("INSERT INTO host_meta (fingerprint, name, banned) VALUES (?1, ?2, 0)")
            .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        for i in 0..HOSTS + keys.len() as u32 {
            let mut payload = [0u8; 7];
            let mut n = i * 97 + 13;
            for d in payload.iter_mut().rev() {
                *d = (n % 10) as u8;
                n /= 10;
            }
            let code = AccessCode::from_payload(payload).unwrap();
            let mut fp = [0u8; 32];
            fp[..4].copy_from_slice(&i.to_be_bytes());
            fp[4] = 0xAB;
            if let Some(k) = keys.get((i as usize).wrapping_sub(HOSTS as usize)) {
                fp = *k.as_bytes();
            }
            host.execute(rusqlite::params![
                code.to_string(),
                &fp[..],
                now - i64::from(i % 3600)
            ])
            .unwrap();
            meta.execute(rusqlite::params![
                &fp[..],
                format!("desk-{i:06} floor {}", i % 40)
            ])
            .unwrap();
        }
    }
    tx.commit().unwrap();
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let ids: Vec<certs::Identity> = (0..ONLINE + 5)
        .map(|_| certs::Identity::ephemeral().unwrap())
        .collect();
    let keys: Vec<certs::Fingerprint> = ids.iter().map(|i| i.fingerprint()).collect();
    let mut ids = ids.into_iter();
    let filled = Instant::now();
    let rig = start_with(|dir| fill(dir, &keys)).await;
    eprintln!(
        "registry of {HOSTS} hosts made and loaded in {:.1} s",
        filled.elapsed().as_secs_f64()
    );
    let mut online = Vec::new();
    for (i, id) in ids.by_ref().take(ONLINE).enumerate() {
        // A few hosts per loopback address, as hosts behind a few NATs.
        let h = Host::with_key_from(&rig, id, &format!("127.0.1.{}", 1 + i / 8)).await;
        let (answer, send, recv) = h.register().await;
        online.push((code_of(&answer), h, send, recv));
    }
    let s = log_in(&rig.client, ANN.0, ANN.1).await.unwrap();
    let deep = online[ONLINE / 2].0;
    let cases: Vec<(&str, String)> = vec![
        (
            "API: first page of hosts (100)",
            "/api/v1/hosts?limit=100".into(),
        ),
        (
            "API: a page deep in the list",
            format!("/api/v1/hosts?limit=100&after={deep}"),
        ),
        (
            "API: online hosts",
            "/api/v1/hosts?online=true&limit=100".into(),
        ),
        (
            "API: search by name",
            "/api/v1/hosts?search=desk-0421&limit=100".into(),
        ),
        (
            "API: search by key prefix",
            "/api/v1/hosts?search=000003e8ab&limit=100".into(),
        ),
        ("API: one host", format!("/api/v1/hosts/{deep}")),
        ("API: stats", "/api/v1/stats".into()),
        ("API: audit log page", "/api/v1/audit".into()),
        ("ISR: /list", "/list?limit=100".into()),
        ("page: dashboard", "/".into()),
        ("page: hosts", "/hosts".into()),
        ("page: hosts, searched", "/hosts?search=floor%207".into()),
    ];
    println!(
        "\nconsole with {HOSTS} hosts ({ONLINE} online), {REQUESTS} requests each, a fresh TLS connection per request:"
    );
    println!("{:<36} {:>9} {:>9}", "what", "p50 ms", "p95 ms");
    let mut worst: f64 = 0.0;
    for (label, path) in &cases {
        let mut times = Vec::with_capacity(REQUESTS);
        for _ in 0..REQUESTS {
            let t = Instant::now();
            let a = rig.client.get(path, &s.reading()).await;
            times.push(t.elapsed());
            assert_eq!(a.status, 200, "{path}: {}", a.body);
        }
        times.sort();
        let p95 = percentile(&times, 0.95);
        worst = worst.max(p95);
        println!("{label:<36} {:>9.2} {p95:>9.2}", percentile(&times, 0.5));
    }

    // 100 dashboards open; a host comes online: how long until each has heard.
    let mut streams = Vec::new();
    for _ in 0..DASHBOARDS {
        let (status, rx) = rig.client.stream("/api/v1/events", &s.reading()).await;
        assert_eq!(status, 200);
        streams.push(rx);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut reach = Vec::new();
    for _ in 0..5 {
        for rx in &mut streams {
            while rx.try_recv().is_ok() {}
        }
        let h = Host::with_key(&rig, ids.next().unwrap()).await;
        let t = Instant::now();
        let (answer, _send, _recv) = h.register().await;
        let code = code_of(&answer).to_string();
        let waits = streams.iter_mut().map(|rx| {
            let code = code.clone();
            async move {
                let mut seen = String::new();
                while !seen.contains(&code) {
                    let chunk = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                        .await
                        .expect("the event reaches every dashboard")
                        .unwrap();
                    seen.push_str(&chunk);
                }
                t.elapsed()
            }
        });
        reach.extend(futures_util::future::join_all(waits).await);
    }
    reach.sort();
    println!(
        "{:<36} {:>9.2} {:>9.2}",
        format!("event to {DASHBOARDS} dashboards"),
        percentile(&reach, 0.5),
        percentile(&reach, 0.95)
    );
    println!(
        "\nslowest p95 of a page or API call: {worst:.1} ms (target: under 100 ms){}",
        if worst < 100.0 { "" } else { "  <-- OVER" }
    );
}
