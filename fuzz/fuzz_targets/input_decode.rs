//! Input events arrive from the controller: decoding must validate, never panic, and what it
//! accepts must be canonical and survive a round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = input::decode(data) {
        let again = input::encode(&event);
        assert!(again.len() <= input::MAX_EVENT_LEN);
        // The encoding is canonical: the accepted bytes are exactly the event's encoding ...
        assert_eq!(again, data);
        // ... and re-decoding gives the same event back.
        assert_eq!(input::decode(&again), Ok(event));
    }
});
