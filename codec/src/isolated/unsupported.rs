//! Platforms without a worker yet: [`IsolatedDecoder::spawn`] says so, and the caller decodes
//! in-process with [`Decoder`](crate::Decoder).

use std::convert::Infallible;
use std::process::Command;

use crate::{CodecError, Decode, DecodedFrame};

const UNSUPPORTED: &str = "the sandboxed decoder process is only built for Linux";

/// An H.264 decoder in a sandboxed child process; on this platform it cannot be made.
#[derive(Debug)]
pub struct IsolatedDecoder {
    never: Infallible,
}

impl IsolatedDecoder {
    /// Always fails here.
    ///
    /// # Errors
    ///
    /// [`CodecError::Unsupported`].
    pub fn spawn(_cmd: Command) -> Result<Self, CodecError> {
        Err(CodecError::Unsupported(UNSUPPORTED))
    }

    /// Cannot be called: no value of this type exists here.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        match self.never {}
    }
}

/// Cannot be called: no value of this type exists here.
impl Decode for IsolatedDecoder {
    fn decode_into(&mut self, _annexb: &[u8], _out: &mut DecodedFrame) -> Result<bool, CodecError> {
        match self.never {}
    }
}

pub(super) fn worker_main() -> ! {
    eprintln!("quicdesk decoder process: {UNSUPPORTED}");
    std::process::exit(2)
}

pub(super) fn worker_main_with_test_hooks() -> ! {
    worker_main()
}
