//! Every message a rendezvous or peer reads from the network: framing, the rendezvous protocol,
//! access codes and fingerprints as typed by people.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rendezvous::proto::{ClientMsg, MAX_MSG_LEN, ServerMsg};
use rendezvous::wire;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((msg, used))) = wire::decode::<ClientMsg>(data, MAX_MSG_LEN) {
        assert!(used <= data.len());
        // what decodes survives a round trip unchanged
        let again = wire::encode(&msg, MAX_MSG_LEN).unwrap();
        let (back, _) = wire::decode::<ClientMsg>(&again, MAX_MSG_LEN).unwrap().unwrap();
        assert_eq!(back, msg);
    }
    let _ = wire::decode::<ServerMsg>(data, MAX_MSG_LEN);
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(code) = s.parse::<rendezvous::AccessCode>() {
            assert_eq!(code.to_string().parse::<rendezvous::AccessCode>().unwrap(), code);
        }
        let _ = s.parse::<certs::Fingerprint>();
    }
});
