//! The H.264 decoder: untrusted Annex-B bytes in, RGBA out.

use std::fmt;

use openh264::OpenH264API;
use openh264::decoder::{Decoder as H264Decoder, DecoderConfig};
use openh264::formats::YUVSource;

use crate::CodecError;
use crate::convert::{PlanesRef, i420_to_rgba};

/// Longest input [`Decoder::decode`] accepts: far above any real frame (a 4K key frame at a
/// high bitrate is around 1-2 MB).
pub const MAX_ENCODED_FRAME_LEN: usize = 8 << 20;

/// Largest picture, in pixels, the decoder hands out: H.264 level 5.2's frame size limit
/// (36864 macroblocks, e.g. 4096x2304).
pub const MAX_DECODED_PIXELS: u64 = 36864 * 256;

/// A decoded picture.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct DecodedFrame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Tightly packed RGBA (stride `width * 4`), alpha 255.
    pub rgba: Vec<u8>,
}

impl fmt::Debug for DecodedFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecodedFrame")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("rgba_len", &self.rgba.len())
            .finish()
    }
}

/// An H.264 decoder for bytes that come from the network.
///
/// Feed it the [`data`](crate::EncodedFrame::data) of each encoded frame in order, one frame per
/// call. Whatever the input (garbage, truncated frames, a stream that changes size, P-frames
/// without their key frame), it returns a picture, `None`, or an error, and never panics.
///
/// After an error the decoder may be missing reference pictures: the caller should ask the
/// sender for a key frame and keep feeding frames; decoding resumes at the next key frame.
pub struct Decoder {
    inner: H264Decoder,
    sequence: SequenceGuard,
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder").finish_non_exhaustive()
    }
}

impl Decoder {
    /// A decoder with OpenH264's error concealment off: a damaged stream is an error, not a
    /// smeared picture.
    ///
    /// # Errors
    ///
    /// [`CodecError::Decoder`] if OpenH264 cannot be set up.
    pub fn new() -> Result<Self, CodecError> {
        Ok(Self {
            inner: new_openh264()?,
            sequence: SequenceGuard::default(),
        })
    }
}

/// What both H.264 decoders do with untrusted bytes: [`Decoder`] in this process,
/// [`IsolatedDecoder`](crate::isolated::IsolatedDecoder) in a sandboxed worker; the same limits,
/// results and errors, and the same effect on the output.
pub trait Decode {
    /// Decodes one encoded frame into `out`, reusing its buffer: a viewer that keeps one
    /// `DecodedFrame` allocates nothing per frame. Returns whether a picture was written; if
    /// not, `out` is unchanged, and after an error it is empty (0x0).
    ///
    /// # Errors
    ///
    /// [`CodecError::InputTooLarge`] above [`MAX_ENCODED_FRAME_LEN`]; [`CodecError::Decoder`]
    /// for a corrupt or undecodable stream; [`CodecError::DecodedTooLarge`] above
    /// [`MAX_DECODED_PIXELS`]; and whatever else the implementation names.
    fn decode_into(&mut self, annexb: &[u8], out: &mut DecodedFrame) -> Result<bool, CodecError>;

    /// Like [`decode_into`](Self::decode_into), into a new picture. Returns `None` when the
    /// input completed no picture (for example only parameter sets, or an empty slice).
    ///
    /// # Errors
    ///
    /// As [`decode_into`](Self::decode_into).
    fn decode(&mut self, annexb: &[u8]) -> Result<Option<DecodedFrame>, CodecError> {
        let mut frame = DecodedFrame::default();
        Ok(self.decode_into(annexb, &mut frame)?.then_some(frame))
    }
}

/// [`Decode::decode_into`]'s errors are exactly the ones it names.
impl Decode for Decoder {
    fn decode_into(&mut self, annexb: &[u8], out: &mut DecodedFrame) -> Result<bool, CodecError> {
        if !check_input(annexb)? {
            return Ok(false);
        }
        self.sequence.before_decode(&mut self.inner, annexb)?;
        let yuv = match self.inner.decode(annexb) {
            Ok(Some(yuv)) => yuv,
            Ok(None) => return Ok(false),
            Err(e) => return Err(CodecError::Decoder(e.to_string())),
        };
        let (w, h) = yuv.dimensions();
        let (y_stride, uv_stride, _) = yuv.strides();
        write_picture(
            w,
            h,
            |width, height| {
                Ok(PlanesRef {
                    width,
                    height,
                    y: yuv.y(),
                    u: yuv.u(),
                    v: yuv.v(),
                    y_stride,
                    uv_stride,
                })
            },
            out,
        )
    }
}

// The steps of `Decoder::decode_into` that `isolated` shares, so that both decoders have exactly
// the same limits, errors and effects on the output.

/// The OpenH264 decoder, configured as every decoder of this crate uses it.
pub(crate) fn new_openh264() -> Result<H264Decoder, CodecError> {
    H264Decoder::with_api_config(OpenH264API::from_source(), DecoderConfig::new())
        .map_err(|e| CodecError::Decoder(e.to_string()))
}

/// Keeps OpenH264 away from a sequence change inside one decoder instance.
///
/// OpenH264 2.7.0 writes past a per-macroblock array when a stream changes its picture size
/// mid-stream (fuzz/findings/h264_decode: a new sequence parameter set with other dimensions,
/// then P slices; a heap write a hostile host chooses). A sender that changes size starts anew
/// (new SPS, then a key frame), so nothing is lost by doing the same here: an SPS other than the
/// one this decoder has seen gets a fresh OpenH264 decoder first, and an input carrying two
/// different SPSs (which no encoder sends in one frame) is refused.
#[derive(Debug, Default)]
pub(crate) struct SequenceGuard {
    last_sps: Option<Vec<u8>>,
}

impl SequenceGuard {
    /// Call before every `decoder.decode(annexb)`; may replace `decoder`.
    pub(crate) fn before_decode(
        &mut self,
        decoder: &mut H264Decoder,
        annexb: &[u8],
    ) -> Result<(), CodecError> {
        let mut sps = nal_units(annexb).filter(|nal| nal.first().is_some_and(|b| b & 0x1f == 7));
        let Some(first) = sps.next() else {
            return Ok(());
        };
        if sps.any(|other| other != first) {
            return Err(CodecError::Decoder(
                "two different sequence parameter sets in one frame".into(),
            ));
        }
        if self.last_sps.as_deref().is_some_and(|last| last != first) {
            *decoder = new_openh264()?;
        }
        if self.last_sps.as_deref() != Some(first) {
            self.last_sps = Some(first.to_vec());
        }
        Ok(())
    }
}

/// The NAL units of an Annex-B buffer (without start codes and trailing zero bytes).
fn nal_units(b: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= b.len() {
        if b[i] == 0 && b[i + 1] == 0 && b[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .map(|s| s - 3)
        .chain(std::iter::once(b.len()))
        .collect();
    starts.into_iter().zip(ends).map(move |(s, e)| {
        let mut nal = &b[s..e.max(s)];
        while let [rest @ .., 0] = nal {
            nal = rest;
        }
        nal
    })
}

/// The checks before decoding: an error above [`MAX_ENCODED_FRAME_LEN`], `false` for empty input
/// (nothing to decode, `out` left alone).
pub(crate) fn check_input(annexb: &[u8]) -> Result<bool, CodecError> {
    if annexb.len() > MAX_ENCODED_FRAME_LEN {
        return Err(CodecError::InputTooLarge {
            len: annexb.len(),
            max: MAX_ENCODED_FRAME_LEN,
        });
    }
    Ok(!annexb.is_empty())
}

/// The size of a decoded picture as `u32`s, or the error for an empty or too large one.
pub(crate) fn picture_size(w: usize, h: usize) -> Result<(u32, u32), CodecError> {
    let too_large = || CodecError::DecodedTooLarge {
        width: u32::try_from(w).unwrap_or(u32::MAX),
        height: u32::try_from(h).unwrap_or(u32::MAX),
    };
    let width = u32::try_from(w).map_err(|_| too_large())?;
    let height = u32::try_from(h).map_err(|_| too_large())?;
    if width == 0 || height == 0 {
        return Err(CodecError::Decoder("decoded an empty picture".into()));
    }
    if u64::from(width) * u64::from(height) > MAX_DECODED_PIXELS {
        return Err(too_large());
    }
    Ok((width, height))
}

/// Converts a decoded `w` x `h` picture whose planes `planes(width, height)` gives into `out`.
/// Returns `Ok(true)`; on error `out` is left empty (0x0).
pub(crate) fn write_picture<'a>(
    w: usize,
    h: usize,
    planes: impl FnOnce(u32, u32) -> Result<PlanesRef<'a>, CodecError>,
    out: &mut DecodedFrame,
) -> Result<bool, CodecError> {
    let result = picture_size(w, h).and_then(|(width, height)| {
        i420_to_rgba(&planes(width, height)?, &mut out.rgba)?;
        out.width = width;
        out.height = height;
        Ok(true)
    });
    if result.is_err() {
        *out = DecodedFrame::default();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trivial_inputs() {
        let mut dec = Decoder::new().unwrap();
        assert!(dec.decode(&[]).unwrap().is_none());
        let huge = vec![0u8; MAX_ENCODED_FRAME_LEN + 1];
        assert!(matches!(
            dec.decode(&huge),
            Err(CodecError::InputTooLarge { .. })
        ));
    }

    #[test]
    fn decoder_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<Decoder>();
    }
}
