//! Video coding for quicdesk: BGRA screen pictures to H.264 and back, with the software
//! [OpenH264](https://github.com/cisco/openh264) codec and SIMD colour conversion from the `yuv`
//! crate.
//!
//! ```text
//!   host                                                            controller
//!   BGRA picture ─► bgra_to_i420 ─► I420Buffer ─► Encoder ─► EncodedFrame
//!   (capture)        (SIMD, BT.601    (reused)   (openh264,   Annex-B bytes ──► … ──► Decoder
//!                    limited range)              rate control,                      (openh264)
//!                                                key frames on                          │
//!                                                demand)                                ▼
//!                                                               DecodedFrame (RGBA) ◄── i420→RGBA
//! ```
//!
//! * [`Encoder`] keeps one OpenH264 encoder and one I420 buffer for its whole life: the steady
//!   state allocates nothing but the output bytes. It honours a target bitrate by dropping frames
//!   when needed (see [`Encoder`] for what a dropped frame means for the caller), makes the first
//!   frame and every frame asked for a key frame, and uses OpenH264's screen-content tools for
//!   [`ContentType::Screen`].
//! * [`Decoder`] takes untrusted bytes from the network: whatever it is given, it returns a
//!   picture, `None` or an error, and never panics.
//! * [`isolated::IsolatedDecoder`] does the same with OpenH264 in a sandboxed child process
//!   (Linux: seccomp-BPF, no descriptors, killed with its parent), the picture coming back
//!   through shared memory: a bug in the C decoder that a hostile stream triggers then reaches
//!   nothing of the viewer. The application provides the child by re-executing itself
//!   ([`isolated::run_worker_if_requested`]).
//! * Both decoders are [`Decode`]: `decode_into` a reused picture, or `decode` into a new one.
//!
//! What this crate does **not** do: it knows nothing about sockets, QUIC, sessions or pacing. It
//! does not decide when to send a key frame (the session asks for one), nor how to split the
//! bytes into messages, nor what bitrate the network allows: those belong to `peer`. It does no
//! capture (`capture` does) and no display. It does not restart a decoder process that died
//! (the caller spawns a new one), and it sandboxes only the decoder, on Linux only: the encoder
//! runs on the host's own screen pictures, in-process.

// Unsafe code is denied workspace-wide; `isolated::linux::raw` allows it for the two mmaps of
// the decoder worker's picture memory and for closing the worker's inherited descriptors.
#![deny(unsafe_code)]

mod convert;
mod decoder;
mod encoder;
pub mod isolated;

pub use convert::{I420Buffer, bgra_to_i420};
pub use decoder::{Decode, DecodedFrame, Decoder, MAX_DECODED_PIXELS, MAX_ENCODED_FRAME_LEN};
pub use encoder::{
    ContentType, DEFAULT_BITRATE_BPS, DEFAULT_MAX_FPS, EncodedFrame, Encoder, EncoderConfig,
    MAX_BITRATE_BPS, MAX_ENCODE_HEIGHT, MAX_ENCODE_WIDTH, MIN_BITRATE_BPS, MIN_ENCODE_DIMENSION,
};

/// Errors from conversion, encoding and decoding.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// A width or height cannot be used.
    #[error("invalid dimensions {width}x{height}: {problem}")]
    InvalidDimensions {
        /// Given width.
        width: u32,
        /// Given height.
        height: u32,
        /// What is wrong with them.
        problem: &'static str,
    },
    /// The target bitrate is out of range.
    #[error("invalid bitrate {bitrate_bps} bps: must be 10 kbps to 250 Mbps")]
    InvalidBitrate {
        /// Given bitrate in bits per second.
        bitrate_bps: u32,
    },
    /// The frame rate is out of range.
    #[error("invalid max frame rate {max_fps}: must be 1 to 60 fps")]
    InvalidFrameRate {
        /// Given frame rate.
        max_fps: f32,
    },
    /// A row stride is shorter than a row of pixels or does not fit in 32 bits.
    #[error("invalid stride {stride} for width {width}: need at least width * 4 bytes")]
    InvalidStride {
        /// Given stride in bytes.
        stride: usize,
        /// Picture width in pixels.
        width: u32,
    },
    /// A pixel buffer is shorter than its size and stride say.
    #[error("pixel buffer too short: {got} bytes, need {needed}")]
    BufferTooShort {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        got: usize,
    },
    /// The colour conversion failed.
    #[error("colour conversion failed: {0}")]
    Conversion(String),
    /// OpenH264 refused to set up or to encode.
    #[error("encoder failed: {0}")]
    Encoder(String),
    /// The encoded input is larger than [`MAX_ENCODED_FRAME_LEN`].
    #[error("encoded frame too large: {len} bytes, limit {max}")]
    InputTooLarge {
        /// Length given.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The stream is corrupt, unsupported, or refers to pictures the decoder does not have (for
    /// example after a lost frame): ask the sender for a key frame.
    #[error("decoder rejected the stream: {0}")]
    Decoder(String),
    /// The stream describes a picture larger than [`MAX_DECODED_PIXELS`].
    #[error("decoded picture too large: {width}x{height}")]
    DecodedTooLarge {
        /// Decoded width.
        width: u32,
        /// Decoded height.
        height: u32,
    },
    /// The decoder process could not be started or did not become ready.
    #[error("cannot start the decoder process: {0}")]
    WorkerSpawn(String),
    /// The decoder process died (crashed, or was killed by its sandbox), or was stopped after an
    /// earlier error: spawn a new one.
    #[error("decoder process exited: {0}")]
    WorkerExited(String),
    /// The decoder process did not answer in time; it was killed: spawn a new one.
    #[error("decoder process did not answer within {0:?}; killed")]
    WorkerTimeout(std::time::Duration),
    /// The decoder process answered something malformed; it was killed: spawn a new one.
    #[error("decoder process broke the protocol: {0}; killed")]
    WorkerProtocol(String),
    /// The feature is not available on this platform.
    #[error("not supported here: {0}")]
    Unsupported(&'static str),
}

/// Checks that a picture size is non-zero, even, and within `max_width` x `max_height`.
fn check_dimensions(
    width: u32,
    height: u32,
    max_width: u32,
    max_height: u32,
) -> Result<(), CodecError> {
    let problem = if width == 0 || height == 0 {
        Some("width and height must be non-zero")
    } else if !width.is_multiple_of(2) || !height.is_multiple_of(2) {
        Some("width and height must be even (4:2:0 chroma)")
    } else if width > max_width || height > max_height {
        Some("larger than supported")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(CodecError::InvalidDimensions {
            width,
            height,
            problem,
        }),
        None => Ok(()),
    }
}

/// Checks that `len` bytes hold `height` rows of `stride` bytes, each starting with `width` 4-byte
/// pixels (the last row may lack its padding), and that the stride fits the `yuv` crate's `u32`.
fn check_pixel_buffer(
    len: usize,
    width: u32,
    height: u32,
    stride: usize,
) -> Result<(), CodecError> {
    let row = width as usize * 4;
    if stride < row || u32::try_from(stride).is_err() {
        return Err(CodecError::InvalidStride { stride, width });
    }
    // Saturating: a size that overflows usize cannot be held by any buffer, and the saturated
    // value still fails the comparison below.
    let needed = stride
        .saturating_mul(height.saturating_sub(1) as usize)
        .saturating_add(row);
    if len < needed {
        return Err(CodecError::BufferTooShort { needed, got: len });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimension_errors_are_clear() {
        assert!(check_dimensions(1920, 1080, 3840, 2160).is_ok());
        let odd = check_dimensions(1921, 1080, 3840, 2160).unwrap_err();
        assert_eq!(
            odd.to_string(),
            "invalid dimensions 1921x1080: width and height must be even (4:2:0 chroma)"
        );
        assert!(matches!(
            check_dimensions(0, 1080, 3840, 2160),
            Err(CodecError::InvalidDimensions { width: 0, .. })
        ));
        assert!(check_dimensions(3842, 1080, 3840, 2160).is_err());
    }

    #[test]
    fn pixel_buffer_checks() {
        assert!(check_pixel_buffer(16, 2, 2, 8).is_ok());
        assert!(check_pixel_buffer(20, 2, 2, 12).is_ok());
        assert!(matches!(
            check_pixel_buffer(15, 2, 2, 8),
            Err(CodecError::BufferTooShort {
                needed: 16,
                got: 15
            })
        ));
        assert!(matches!(
            check_pixel_buffer(16, 2, 2, 7),
            Err(CodecError::InvalidStride {
                stride: 7,
                width: 2
            })
        ));
        assert!(check_pixel_buffer(usize::MAX, 2, 2, usize::MAX).is_err());
    }
}
