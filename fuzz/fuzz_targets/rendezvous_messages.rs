//! Every message a rendezvous or peer reads from the network: framing (as it comes, and with a
//! valid length prefix so the bytes reach postcard), the rendezvous protocol, access codes and
//! fingerprints as typed by people.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quicdesk_fuzz::{framed, write_seeds_if_asked};
use proto::rendezvous::{ClientMsg, MAX_MSG_LEN, ServerMsg};
use proto::wire;

fn messages(frame: &[u8]) {
    if let Ok(Some((msg, used))) = wire::decode::<ClientMsg>(frame, MAX_MSG_LEN) {
        assert!(used <= frame.len());
        // what decodes survives a round trip unchanged
        let again = wire::encode(&msg, MAX_MSG_LEN).expect("a decoded message re-encodes");
        let (back, _) = wire::decode::<ClientMsg>(&again, MAX_MSG_LEN)
            .expect("decodes")
            .expect("whole");
        assert_eq!(back, msg);
    }
    if let Ok(Some((msg, used))) = wire::decode::<ServerMsg>(frame, MAX_MSG_LEN) {
        assert!(used <= frame.len());
        let again = wire::encode(&msg, MAX_MSG_LEN).expect("a decoded message re-encodes");
        let (back, _) = wire::decode::<ServerMsg>(&again, MAX_MSG_LEN)
            .expect("decodes")
            .expect("whole");
        assert_eq!(back, msg);
    }
}

fuzz_target!(
    init: write_seeds_if_asked("rendezvous_messages", seeds),
    |data: &[u8]| {
        messages(data);
        if data.len() <= MAX_MSG_LEN {
            messages(&framed(data));
        }
        if let Ok(s) = std::str::from_utf8(data) {
            if let Ok(code) = s.parse::<proto::AccessCode>() {
                assert_eq!(code.to_string().parse::<proto::AccessCode>(), Ok(code));
            }
            if let Ok(fp) = s.parse::<certs::Fingerprint>() {
                assert_eq!(fp.to_string().parse::<certs::Fingerprint>().ok(), Some(fp));
            }
        }
    }
);

fn seeds() -> Vec<Vec<u8>> {
    use rendezvous::relay::{RelayOffer, Ticket};
    let code: proto::AccessCode =
        proto::AccessCode::from_payload([4, 8, 2, 1, 3, 3, 7]).expect("digits");
    let addr = |s: &str| s.parse::<std::net::SocketAddr>().expect("address");
    let fp = certs::Fingerprint::from_bytes([0xab; 32]);
    let offer = RelayOffer {
        port: 3480,
        ticket: Ticket::random(),
    };
    let client = [
        ClientMsg::Register {
            lan_addrs: vec![addr("10.0.0.5:4000"), addr("[fe80::1]:4000")],
        },
        ClientMsg::Resolve {
            code,
            lan_addrs: vec![addr("192.168.1.20:7000")],
            relay_only: true,
        },
        ClientMsg::Enroll {
            token: "qde_0a1b2c3d4e5f_secret".into(),
        },
    ];
    let server = [
        ServerMsg::Registered {
            code,
            observed: addr("198.51.100.7:4000"),
            stun_port: Some(3479),
        },
        ServerMsg::Resolved {
            host: fp,
            candidates: vec![],
            observed: addr("[2001:db8::7]:4000"),
            stun_port: None,
            relay: Some(offer),
        },
        ServerMsg::ConnectRequest {
            controller: fp,
            candidates: vec![addr("203.0.113.9:7000")],
            relay: Some(offer),
            source: proto::rendezvous::SourceTag([5; 16]),
        },
        ServerMsg::Refused {
            reason: proto::rendezvous::Refusal::Unavailable,
            message: "no host with the code can be reached now".into(),
        },
    ];
    let mut out: Vec<Vec<u8>> = client
        .iter()
        .map(|m| wire::encode(m, MAX_MSG_LEN).expect("fits"))
        .chain(
            server
                .iter()
                .map(|m| wire::encode(m, MAX_MSG_LEN).expect("fits")),
        )
        .collect();
    out.push(code.to_string().into_bytes());
    out.push(fp.to_string().into_bytes());
    out
}
