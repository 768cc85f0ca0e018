//! The controller decodes whatever H.264 the network delivers: it must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut d) = codec::Decoder::new() {
        let _ = d.decode(data);
        // and again, as a continuation of the same stream
        let _ = d.decode(data);
    }
});
