//! Relay frames arrive from anyone at the rendezvous's relay port and on every peer's socket.
//! Parsing and the relay's handling must never panic, forward only between the two proven
//! sides of a session, never let an unproven frame move a side, and never answer a datagram
//! with something larger than it.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rendezvous::limits::Prefix;
use rendezvous::relay::{self, Action, Limits, Owner, Relay};

fuzz_target!(|data: &[u8]| {
    let _ = relay::parse(data);
    let t0 = Instant::now();
    let mut r = Relay::new(Limits::default(), t0);
    let owner = Owner {
        key: certs::Fingerprint::from_bytes([1; 32]),
        prefix: Prefix::of([192, 0, 2, 1].into()),
    };
    let [a, b] = r.allocate(t0, owner).expect("room for one session");
    let pa: SocketAddr = "192.0.2.1:1000".parse().unwrap();
    let pb: SocketAddr = "192.0.2.2:2000".parse().unwrap();
    let stranger: SocketAddr = "203.0.113.5:5".parse().unwrap();
    r.on_datagram(t0, pa, &mut relay::bind_frame(&a, 1));
    r.on_datagram(t0, pb, &mut relay::bind_frame(&b, 1));
    // The input as it comes, then under each side's token (as data, and as a bind whose
    // counter and MAC come from the input): split into datagrams at 0xff.
    for (i, chunk) in data.split(|&x| x == 0xff).enumerate() {
        let now = t0 + Duration::from_millis(i as u64);
        let mut bind = relay::bind_frame(&a, 2);
        let tail = bind.len() - relay::HEADER_LEN;
        for (d, s) in bind[relay::HEADER_LEN..].iter_mut().zip(chunk.iter().take(tail)) {
            *d = *s;
        }
        let forged_bind_is_real = bind == relay::bind_frame(&a, 2);
        let datagrams: [(SocketAddr, Vec<u8>); 4] = [
            (stranger, chunk.to_vec()),
            (stranger, bind.to_vec()),
            (pa, [&relay::data_header(a.token)[..], chunk].concat()),
            (pb, [&relay::data_header(b.token)[..], chunk].concat()),
        ];
        for (from, mut d) in datagrams {
            let len = d.len();
            match r.on_datagram(now, from, &mut d) {
                Action::Drop => {}
                Action::Send { to, len: n } => {
                    assert!(n <= len, "answer larger than its datagram");
                    if from == stranger {
                        // Only ever an answer to the stranger itself (a rebind notice), and
                        // only for a frame bearing a live token.
                        assert_eq!(to, stranger);
                        assert!(relay::parse(&d).is_ok());
                    } else {
                        assert!(to == pa || to == pb, "sent to a stranger: {to}");
                    }
                }
            }
        }
        for (to, _) in r.take_queued() {
            assert!(to == pa || to == pb || forged_bind_is_real);
        }
        if !forged_bind_is_real {
            // A is still where it proved to be: B's data goes to pa.
            let mut d = [&relay::data_header(b.token)[..], b"x"].concat();
            match r.on_datagram(now, pb, &mut d) {
                Action::Send { to, .. } => assert_eq!(to, pa),
                Action::Drop => {} // over the bandwidth limit
            }
        }
    }
    r.sweep(t0 + Duration::from_secs(3600));
    assert_eq!(r.counters().sessions_active, 0);
});
