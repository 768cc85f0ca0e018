//! Direct vs relayed path on loopback: goodput (one QUIC stream written as fast as the path
//! allows) and round-trip time (small request/answer on one stream), through the real
//! rendezvous relay ([`rendezvous::relay::serve`]) and the real peer socket routes.
//!
//! `cargo bench -p peer --bench relay` (also run by `cargo xtask bench`) prints a table and
//! writes `target/bench-report/relay.json`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use certs::Identity;
use peer::net;
use proto::quic;
use rendezvous::relay::{self, Limits, Relay};

const ALPN: &[u8] = b"quicdesk-bench";
const BYTES: usize = 256 << 20;
const PINGS: usize = 2000;

struct Pair {
    client: quinn::Endpoint,
    client_socket: Arc<net::PeerSocket>,
    server: quinn::Endpoint,
    server_socket: Arc<net::PeerSocket>,
    client_cfg: quinn::ClientConfig,
}

fn pair(dir: &std::path::Path) -> Pair {
    let host = Identity::load_or_create(&dir.join("h"), "host").unwrap();
    let ctl = Identity::load_or_create(&dir.join("c"), "controller").unwrap();
    let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (server, server_socket) = net::bind(
        local,
        Some(quic::server_config(&host, &[ALPN], quic::Role::Host).unwrap()),
    )
    .unwrap();
    let (client, client_socket) = net::bind(local, None).unwrap();
    Pair {
        client,
        client_socket,
        server,
        server_socket,
        client_cfg: quic::client_config(&ctl, host.fingerprint(), ALPN, quic::Role::Controller)
            .unwrap(),
    }
}

/// Goodput in Mbit/s and median RTT in µs from the client to `to`.
async fn measure(p: &Pair, to: SocketAddr) -> (f64, f64) {
    let server = p.server.clone();
    let serving = tokio::spawn(async move {
        let conn = server.accept().await.unwrap().await.unwrap();
        // As after the password proof: streams and windows of a running session.
        quic::widen_after_auth(&conn, quic::Role::Host);
        // Echo on the first bidi stream, count bytes on the first uni stream.
        let (mut s, mut r) = conn.accept_bi().await.unwrap();
        let mut b = [0u8; 8];
        for _ in 0..PINGS {
            r.read_exact(&mut b).await.unwrap();
            s.write_all(&b).await.unwrap();
        }
        let mut uni = conn.accept_uni().await.unwrap();
        let start = Instant::now();
        let mut n = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        while let Some(k) = uni.read(&mut buf).await.unwrap() {
            n += k;
        }
        let secs = start.elapsed().as_secs_f64();
        s.write_all(b"done").await.unwrap();
        s.finish().unwrap();
        let _ = conn.closed().await;
        n as f64 * 8.0 / secs / 1e6
    });
    let conn = p
        .client
        .connect_with(p.client_cfg.clone(), to, "quicdesk.invalid")
        .unwrap()
        .await
        .unwrap();
    let (mut s, mut r) = conn.open_bi().await.unwrap();
    let mut rtts = Vec::with_capacity(PINGS);
    let mut b = [0u8; 8];
    for i in 0..PINGS {
        let t = Instant::now();
        s.write_all(&(i as u64).to_le_bytes()).await.unwrap();
        r.read_exact(&mut b).await.unwrap();
        rtts.push(t.elapsed().as_secs_f64() * 1e6);
    }
    rtts.sort_by(f64::total_cmp);
    let mut uni = conn.open_uni().await.unwrap();
    let chunk = vec![0x5au8; 1 << 16];
    let mut left = BYTES;
    while left > 0 {
        let k = left.min(chunk.len());
        uni.write_all(&chunk[..k]).await.unwrap();
        left -= k;
    }
    uni.finish().unwrap();
    let mut done = [0u8; 4];
    r.read_exact(&mut done).await.unwrap();
    conn.close(0u32.into(), b"done");
    let mbps = serving.await.unwrap();
    (mbps, rtts[rtts.len() / 2])
}

fn main() {
    // `cargo test --benches` runs this with --bench absent: keep it cheap then.
    if !std::env::args().any(|a| a == "--bench") {
        println!("relay bench: run with `cargo bench -p peer --bench relay`");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            session_bytes_per_sec: 1 << 40,
            total_bytes_per_sec: 1 << 40,
            ..Limits::default()
        };
        let state = Arc::new(Mutex::new(Relay::new(limits, Instant::now())));
        let relay_socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let relay_addr = relay_socket.local_addr().unwrap();
        tokio::spawn(relay::serve(Arc::new(relay_socket), state.clone()));

        let direct = {
            let p = pair(&dir.path().join("direct"));
            let to = p.server.local_addr().unwrap();
            measure(&p, to).await
        };
        let relayed = {
            let p = pair(&dir.path().join("relayed"));
            let owner = relay::Owner {
                key: certs::Fingerprint::from_bytes([0; 32]),
                prefix: proto::limits::Prefix::of(relay_addr.ip()),
            };
            let [th, tc] = state.lock().unwrap().allocate(Instant::now(), owner).unwrap();
            let relay_only = |socket: &Arc<net::PeerSocket>, ticket| {
                let cfg = net::RouteConfig {
                    direct: false,
                    ..Default::default()
                };
                let route = socket.add_route(cfg, true);
                route.with(|agent, now| agent.set_relay(now, relay_addr, ticket, net::bind_counter()));
                route
            };
            let host_route = relay_only(&p.server_socket, th);
            assert!(host_route.relay_bound(Duration::from_secs(5)).await);
            let ctl_route = relay_only(&p.client_socket, tc);
            assert!(ctl_route.relay_bound(Duration::from_secs(5)).await);
            let r = measure(&p, ctl_route.addr()).await;
            let c = state.lock().unwrap().counters();
            assert!(c.bytes_forwarded as usize >= BYTES, "not relayed: {c:?}");
            r
        };
        println!("\nDirect vs relayed QUIC on loopback ({} MiB stream, {PINGS} round trips):", BYTES >> 20);
        println!("| path | goodput Mbit/s | median RTT µs |");
        println!("|---|---|---|");
        println!("| direct | {:.0} | {:.0} |", direct.0, direct.1);
        println!("| relay | {:.0} | {:.0} |", relayed.0, relayed.1);
        println!(
            "relayed/direct goodput {:.2}; the relay adds {:.0} µs per round trip",
            relayed.0 / direct.0,
            relayed.1 - direct.1
        );
        let report = format!(
            "{{\"direct_mbps\":{:.1},\"relay_mbps\":{:.1},\"direct_rtt_us\":{:.1},\"relay_rtt_us\":{:.1}}}",
            direct.0, relayed.0, direct.1, relayed.1
        );
        let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/bench-report");
        let _ = std::fs::create_dir_all(&out);
        let _ = std::fs::write(out.join("relay.json"), report);
    });
}
