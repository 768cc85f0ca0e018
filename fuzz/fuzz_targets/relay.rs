//! Relay frames arrive from anyone at the rendezvous's relay port and on every peer's socket.
//! Parsing and the relay's handling must never panic, forward only between the two bound
//! sides of a session, and never answer a datagram with something larger than it.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rendezvous::relay::{self, Action, Limits, Relay};

fuzz_target!(|data: &[u8]| {
    let _ = relay::parse(data);
    let t0 = Instant::now();
    let mut r = Relay::new(Limits::default(), t0);
    let [a, b] = r.allocate(t0).expect("room for one session");
    let pa: SocketAddr = "192.0.2.1:1000".parse().unwrap();
    let pb: SocketAddr = "192.0.2.2:2000".parse().unwrap();
    let stranger: SocketAddr = "203.0.113.5:5".parse().unwrap();
    r.on_datagram(t0, pa, &mut relay::bind_frame(a));
    r.on_datagram(t0, pb, &mut relay::bind_frame(b));
    // The input as it comes, then under each side's token: split into datagrams at 0xff.
    for (i, chunk) in data.split(|&x| x == 0xff).enumerate() {
        let now = t0 + Duration::from_millis(i as u64);
        for (from, token) in [(stranger, None), (pa, Some(a)), (pb, Some(b))] {
            let mut d = match token {
                Some(t) => [&relay::data_header(t)[..], chunk].concat(),
                None => chunk.to_vec(),
            };
            let len = d.len();
            match r.on_datagram(now, from, &mut d) {
                Action::Drop => {}
                Action::Send { to, len: n } => {
                    assert!(n <= len, "answer larger than its datagram");
                    assert!(to == pa || to == pb, "sent to a stranger: {to}");
                    if from == stranger {
                        // A stranger can only be answered if it guessed a token.
                        assert!(relay::parse(chunk).is_ok());
                    }
                }
            }
        }
        for (to, _) in r.take_queued() {
            assert!(to == pa || to == pb);
        }
    }
    r.sweep(t0 + Duration::from_secs(3600));
    assert_eq!(r.counters().sessions_active, 0);
});
