//! Input events arrive from the controller: decoding must validate, never panic, and what it
//! accepts must survive a round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = input::decode(data) {
        assert_eq!(input::encode(&event), data);
    }
});
