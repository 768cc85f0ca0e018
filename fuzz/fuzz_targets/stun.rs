//! STUN datagrams arrive from anyone: at the rendezvous's responder and on every peer's one UDP
//! socket. Classifying, answering and parsing must never panic, and an answer must itself be a
//! Binding response that reports the sender's address. The responder (`responder::Responder`,
//! the server's per-datagram step) answers unproven sources with no more bytes than they sent
//! and within its rate limits.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use quicdesk_fuzz::write_seeds_if_asked;
use rendezvous::responder::{Responder, Verdict};
use proto::stun;

fn senders() -> [SocketAddr; 2] {
    [
        "198.51.100.9:4242".parse().expect("address"),
        "[2001:db8::9]:4242".parse().expect("address"),
    ]
}

fuzz_target!(
    init: write_seeds_if_asked("stun", seeds),
    |data: &[u8]| {
        let looks_stun = stun::is_stun(data);
        let _ = stun::kind(data);
        assert_eq!(stun::transaction_id(data).is_some(), looks_stun);
        for from in senders() {
            // Unproven (bounded by the request's size) and proven (unbounded) sources.
            for bound in [Some(data.len()), None] {
                let Ok(Some(answer)) = stun::answer(data, from, bound) else {
                    continue;
                };
                assert!(looks_stun);
                assert_eq!(stun::kind(data), stun::Kind::BindingRequest);
                assert!(bound.is_none_or(|b| answer.len() <= b), "amplified");
                assert!(answer.len() <= stun::MAX_ANSWER_LEN);
                assert_eq!(stun::kind(&answer), stun::Kind::BindingResponse);
                let (id, addr) = stun::parse_response(&answer).expect("our answers parse");
                assert_eq!(Some(id), stun::transaction_id(data));
                assert_eq!(addr, from);
            }
        }
        if let Ok((id, _)) = stun::parse_response(data) {
            assert!(looks_stun);
            assert_eq!(Some(id), stun::transaction_id(data));
        }
        // The responder, on the same datagram again and again: unproven answers never exceed
        // the request, and one source gets no more than its burst at one instant.
        let t0 = Instant::now();
        let mut r = Responder::new(t0);
        let from = senders()[0];
        let mut answered = 0;
        for i in 0..50u32 {
            let proven = i % 7 == 3;
            let bound = (!proven).then_some(data.len());
            match r.on_datagram(t0, data, from, proven) {
                Verdict::Answer(a) => {
                    answered += 1;
                    assert!(proven || a.len() <= data.len(), "amplified");
                    assert_eq!(stun::parse_response(&a).map(|(_, addr)| addr), Ok(from));
                }
                Verdict::TooSmall => {
                    assert!(!proven && stun::kind(data) == stun::Kind::BindingRequest);
                    assert_eq!(stun::answer(data, from, bound), Ok(None));
                }
                // Not a Binding request, or one that does not decode.
                Verdict::Ignore => assert!(
                    stun::kind(data) != stun::Kind::BindingRequest
                        || stun::answer(data, from, bound).is_err()
                ),
                Verdict::Limited => assert!(matches!(stun::answer(data, from, bound), Ok(Some(_)))),
            }
        }
        assert!(answered <= rendezvous::responder::ANSWERS_BURST_PER_PREFIX as u32);
        let later = t0 + Duration::from_secs(30);
        let _ = r.on_datagram(later, data, senders()[1], false);
    }
);

fn seeds() -> Vec<Vec<u8>> {
    let (_, request) = stun::binding_request().expect("a request");
    let answer = stun::answer(&request, senders()[0], None)
        .expect("answers")
        .expect("a request gets an answer");
    let answer6 = stun::answer(&request, senders()[1], Some(request.len()))
        .expect("answers")
        .expect("a padded request gets an answer");
    // A bare 20-byte request (length 0), as minimal clients send.
    let mut bare = request[..stun::HEADER_LEN].to_vec();
    bare[2] = 0;
    bare[3] = 0;
    vec![request, answer, answer6, bare]
}
