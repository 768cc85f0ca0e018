//! What a host or controller reads from the other peer: control messages and video frames.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peer::session::{ControlMsg, MAX_CONTROL_LEN, VideoHeader};
use rendezvous::wire;

fuzz_target!(|data: &[u8]| {
    let _ = wire::decode::<ControlMsg>(data, MAX_CONTROL_LEN);
    if let Ok((header, payload)) = VideoHeader::decode(data) {
        assert_eq!(header.encode_with(payload), data);
    }
});
