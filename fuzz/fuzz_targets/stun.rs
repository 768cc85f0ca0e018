//! STUN datagrams arrive from anyone: at the rendezvous's responder and on every peer's one UDP
//! socket. Classifying, answering and parsing must never panic, and an answer must itself be a
//! Binding response that reports the sender's address.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use rendezvous::stun;

fuzz_target!(|data: &[u8]| {
    let from: SocketAddr = "198.51.100.9:4242".parse().unwrap();
    let looks_stun = stun::is_stun(data);
    let _ = stun::kind(data);
    assert_eq!(stun::transaction_id(data).is_some(), looks_stun);
    // Unproven (bounded by the request's size) and proven (unbounded) sources.
    for bound in [Some(data.len()), None] {
        let Ok(Some(answer)) = stun::answer(data, from, bound) else {
            continue;
        };
        assert!(looks_stun);
        assert!(bound.is_none_or(|b| answer.len() <= b), "amplified");
        assert_eq!(stun::kind(&answer), stun::Kind::BindingResponse);
        let (id, addr) = stun::parse_response(&answer).expect("our answers parse");
        assert_eq!(Some(id), stun::transaction_id(data));
        assert_eq!(addr, from);
    }
    let _ = stun::parse_response(data);
});
