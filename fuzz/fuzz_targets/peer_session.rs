//! What a host or controller reads from the other peer outside authentication: control messages
//! (in wire frames; also with a valid length prefix so the bytes reach postcard), the stream
//! kind byte and video frames.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::session::{ControlMsg, MAX_CONTROL_LEN, StreamKind, VideoHeader};
use quicdesk_fuzz::{framed, write_seeds_if_asked};
use proto::wire;

fn control(frame: &[u8]) {
    if let Ok(Some((msg, used))) = wire::decode::<ControlMsg>(frame, MAX_CONTROL_LEN) {
        assert!(used <= frame.len());
        let again = wire::encode(&msg, MAX_CONTROL_LEN).expect("a decoded message re-encodes");
        let (back, n) = wire::decode::<ControlMsg>(&again, MAX_CONTROL_LEN)
            .expect("decodes")
            .expect("whole");
        assert_eq!((back, n), (msg, again.len()));
    }
}

fuzz_target!(
    init: write_seeds_if_asked("peer_session", seeds),
    |data: &[u8]| {
        control(data);
        if data.len() <= MAX_CONTROL_LEN {
            control(&framed(data));
        }
        if let Some(&b) = data.first()
            && let Some(kind) = StreamKind::from_byte(b)
        {
            assert_eq!(kind as u8, b);
        }
        if let Ok((header, payload)) = VideoHeader::decode(data) {
            assert!((1..=16384).contains(&header.width) && (1..=16384).contains(&header.height));
            assert_eq!(header.encode_with(payload), data);
        }
    }
);

fn seeds() -> Vec<Vec<u8>> {
    let msgs = [
        ControlMsg::Ping {
            sent_us: 1_700_000_000_000_000,
        },
        ControlMsg::KeyFrameRequest,
        ControlMsg::Goodbye {
            reason: "session over".into(),
        },
        ControlMsg::Candidates {
            addrs: vec!["203.0.113.4:5000".parse().expect("address")],
            mapping: peer::nat::Mapping::EndpointDependent,
        },
    ];
    let mut out: Vec<Vec<u8>> = msgs
        .iter()
        .map(|m| wire::encode(m, MAX_CONTROL_LEN).expect("fits"))
        .collect();
    out.push(
        VideoHeader {
            frame_no: 7,
            captured_at_us: 1_700_000_000_000_000,
            width: 1280,
            height: 720,
            key_frame: true,
        }
        .encode_with(&[0, 0, 0, 1, 0x67, 0x42]),
    );
    out
}
