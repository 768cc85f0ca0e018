//! The H.264 encoder: BGRA in, Annex-B out, one long-lived OpenH264 encoder.

use std::fmt;

use openh264::OpenH264API;
use openh264::Timestamp;
use openh264::encoder::{
    BitRate, Complexity, Encoder as H264Encoder, EncoderConfig as H264Config, FrameRate, FrameType,
    IntraFramePeriod, RateControlMode, UsageType, VuiConfig,
};
use openh264::formats::YUVSlices;

use crate::convert::{I420Buffer, bgra_to_i420};
use crate::{CodecError, check_dimensions};

/// Smallest encodable width and height (OpenH264 refuses pictures below one macroblock).
pub const MIN_ENCODE_DIMENSION: u32 = 16;
/// Largest encodable width (OpenH264's limit; portrait pictures may be 2160 wide and 3840 high).
pub const MAX_ENCODE_WIDTH: u32 = 3840;
/// Largest encodable height (OpenH264's limit; portrait pictures may be 3840 high).
pub const MAX_ENCODE_HEIGHT: u32 = 2160;
/// Lowest accepted target bitrate.
pub const MIN_BITRATE_BPS: u32 = 10_000;
/// Highest accepted target bitrate (about H.264 level 5.1/5.2's High-profile limit).
pub const MAX_BITRATE_BPS: u32 = 250_000_000;
/// Target bitrate of [`EncoderConfig::new`]: plenty for 1080p desktop content.
pub const DEFAULT_BITRATE_BPS: u32 = 4_000_000;
/// Frame rate of [`EncoderConfig::new`].
pub const DEFAULT_MAX_FPS: f32 = 30.0;

/// What the pictures look like, which selects the encoder's tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ContentType {
    /// Desktop content: text, flat areas, scrolling. Uses OpenH264's screen-content mode
    /// (scroll detection and hash-based motion search): on desktop content, P-frames about half
    /// the size of camera mode's, at about twice the encode time (measured 1.6 KB and 23 ms at
    /// 1080p, against 3.2 KB and 11 ms).
    #[default]
    Screen,
    /// Natural video. Faster to encode, larger frames on desktop content.
    Camera,
}

/// Encoder settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EncoderConfig {
    /// Picture width in pixels: even, 16 to 3840 (2160 if the picture is taller than wide).
    pub width: u32,
    /// Picture height in pixels: even, 16 to 2160 (3840 if the picture is taller than wide).
    pub height: u32,
    /// Target bitrate in bits per second, [`MIN_BITRATE_BPS`] to [`MAX_BITRATE_BPS`].
    pub bitrate_bps: u32,
    /// Highest rate, in frames per second (1 to 60), at which `encode` will be called. Rate
    /// control gives each frame `bitrate_bps / max_fps` bits on average.
    pub max_fps: f32,
    /// Screen or camera content.
    pub content: ContentType,
}

impl EncoderConfig {
    /// Settings for screen content of the given size at [`DEFAULT_BITRATE_BPS`] and
    /// [`DEFAULT_MAX_FPS`].
    #[must_use]
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            bitrate_bps: DEFAULT_BITRATE_BPS,
            max_fps: DEFAULT_MAX_FPS,
            content: ContentType::Screen,
        }
    }

    /// Checks every field against the limits documented on it.
    ///
    /// # Errors
    ///
    /// [`CodecError::InvalidDimensions`], [`CodecError::InvalidBitrate`] or
    /// [`CodecError::InvalidFrameRate`].
    pub fn validate(&self) -> Result<(), CodecError> {
        let (width, height) = (self.width, self.height);
        check_dimensions(width, height, MAX_ENCODE_WIDTH, MAX_ENCODE_WIDTH)?;
        if width.min(height) > MAX_ENCODE_HEIGHT {
            return Err(CodecError::InvalidDimensions {
                width,
                height,
                problem: "larger than 3840x2160 (or 2160x3840)",
            });
        }
        if width.min(height) < MIN_ENCODE_DIMENSION {
            return Err(CodecError::InvalidDimensions {
                width,
                height,
                problem: "smaller than 16x16",
            });
        }
        if !(MIN_BITRATE_BPS..=MAX_BITRATE_BPS).contains(&self.bitrate_bps) {
            return Err(CodecError::InvalidBitrate {
                bitrate_bps: self.bitrate_bps,
            });
        }
        // Written so that NaN fails too.
        if !(self.max_fps >= 1.0 && self.max_fps <= 60.0) {
            return Err(CodecError::InvalidFrameRate {
                max_fps: self.max_fps,
            });
        }
        Ok(())
    }
}

/// One encoded picture.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EncodedFrame {
    /// H.264 Annex-B NAL units, each behind a start code. A key frame starts with the SPS and PPS
    /// and decodes on its own. Empty if rate control dropped the frame.
    pub data: Vec<u8>,
    /// Whether this is an IDR picture: a decoder can start here.
    pub is_key_frame: bool,
}

impl EncodedFrame {
    /// True if rate control dropped this picture: there is nothing to send, and the viewer keeps
    /// showing the previous one. See [`Encoder`] for what the caller should do.
    #[must_use]
    pub fn is_dropped(&self) -> bool {
        self.data.is_empty()
    }
}

impl fmt::Debug for EncodedFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncodedFrame")
            .field("len", &self.data.len())
            .field("is_key_frame", &self.is_key_frame)
            .finish()
    }
}

/// An H.264 encoder for pictures of one size.
///
/// One encoder lives for a whole session: it keeps its reference pictures, its rate-control
/// state and its I420 conversion buffer, so encoding a frame allocates nothing but the returned
/// bytes. For another picture size, make a new encoder (its first frame is a key frame).
///
/// # Rate control
///
/// OpenH264 runs in its bitrate mode (`RC_BITRATE_MODE`) **with frame skipping enabled**. Its
/// other modes, and this one without skipping, let the output exceed the target whenever content
/// is too costly even at the coarsest quantiser (OpenH264 warns "bitrate can't be controlled ...
/// without enabling skip frame"). With skipping, each frame gets about
/// `bitrate_bps / max_fps` bits; a frame that would overflow the budget is dropped and comes back
/// as an [`EncodedFrame`] with empty `data`. Expect drops right after a key frame, which costs many
/// frames' worth of bits.
///
/// The encoder's clock is nominal: frame *n* is stamped *n* / `max_fps` seconds. Call `encode` at
/// most `max_fps` times per second, or the stream exceeds the bitrate by the same factor.
///
/// A dropped frame is never shown. If the screen then stays still, the viewer would be left
/// with an older picture: after a drop, the caller must encode the current picture again at the
/// next tick even if capture reports no change.
///
/// # Key frames
///
/// The first frame is a key frame, and so is every frame encoded with `force_key_frame` (a
/// request that meets a dropped frame carries over to the next one). There are no periodic key
/// frames; the encoder may add one by itself at a scene change in screen mode.
pub struct Encoder {
    config: EncoderConfig,
    inner: H264Encoder,
    i420: I420Buffer,
    /// Frames handed to OpenH264 so far; drives the nominal clock.
    frames_in: u64,
    /// A key frame was requested (or is due) and has not been produced yet.
    key_frame_pending: bool,
}

impl fmt::Debug for Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoder")
            .field("config", &self.config)
            .field("frames_in", &self.frames_in)
            .field("key_frame_pending", &self.key_frame_pending)
            .finish_non_exhaustive()
    }
}

impl Encoder {
    /// An encoder for `config`.
    ///
    /// # Errors
    ///
    /// Any error of [`EncoderConfig::validate`], or [`CodecError::Encoder`] if OpenH264 cannot be
    /// set up.
    pub fn new(config: EncoderConfig) -> Result<Self, CodecError> {
        config.validate()?;
        let usage = match config.content {
            ContentType::Screen => UsageType::ScreenContentRealTime,
            ContentType::Camera => UsageType::CameraVideoRealTime,
        };
        let h264 = H264Config::new()
            .usage_type(usage)
            .bitrate(BitRate::from_bps(config.bitrate_bps))
            .max_frame_rate(FrameRate::from_hz(config.max_fps))
            .rate_control_mode(RateControlMode::Bitrate)
            .skip_frames(true)
            // Fastest motion search; Medium measured ~7% slower here for ~8% larger P-frames.
            .complexity(Complexity::Low)
            // Both only work in camera mode; OpenH264 turns them off (with a warning on stderr)
            // for screen content.
            .adaptive_quantization(config.content == ContentType::Camera)
            .background_detection(config.content == ContentType::Camera)
            // One slice, so extra threads would only idle (measured: no gain with 2).
            .num_threads(1)
            .intra_frame_period(IntraFramePeriod::auto())
            // Tell every decoder the colour space `bgra_to_i420` produces.
            .vui(VuiConfig::bt601());
        let inner = H264Encoder::with_api_config(OpenH264API::from_source(), h264)
            .map_err(|e| CodecError::Encoder(e.to_string()))?;
        Ok(Self {
            config,
            inner,
            i420: I420Buffer::with_size(config.width, config.height)?,
            frames_in: 0,
            key_frame_pending: true,
        })
    }

    /// The settings this encoder was made with.
    #[must_use]
    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    /// Encodes one BGRA picture of the configured size (`stride` bytes per row, alpha ignored).
    ///
    /// With `force_key_frame`, the result is a key frame. The result may be a dropped frame (empty
    /// `data`): see [`Encoder`].
    ///
    /// # Errors
    ///
    /// [`CodecError::InvalidStride`] or [`CodecError::BufferTooShort`] if `bgra` does not hold a
    /// picture of the configured size; [`CodecError::Encoder`] if OpenH264 fails.
    pub fn encode(
        &mut self,
        bgra: &[u8],
        stride: usize,
        force_key_frame: bool,
    ) -> Result<EncodedFrame, CodecError> {
        let (width, height) = (self.config.width, self.config.height);
        bgra_to_i420(bgra, width, height, stride, &mut self.i420)?;

        self.key_frame_pending |= force_key_frame;
        // Before the first frame OpenH264 is not initialised yet; that frame is an IDR anyway.
        if self.key_frame_pending && self.frames_in > 0 {
            self.inner.force_intra_frame();
        }
        let millis = (self.frames_in as f64 * 1000.0 / f64::from(self.config.max_fps)) as u64;
        // openh264 panics on timestamps beyond i64::MAX milliseconds; that is 292 million years
        // of frames, but clamp anyway.
        let timestamp = Timestamp::from_millis(millis.min(i64::MAX as u64));
        self.frames_in += 1;

        let (w, h) = (width as usize, height as usize);
        // The buffer was just filled at exactly this size, so the plane lengths match what
        // `YUVSlices::new` asserts: w*h and (w/2)*(h/2) with even w and h.
        let planes = YUVSlices::new(
            (self.i420.y(), self.i420.u(), self.i420.v()),
            (w, h),
            (w, w / 2, w / 2),
        );
        let stream = self
            .inner
            .encode_at(&planes, timestamp)
            .map_err(|e| CodecError::Encoder(e.to_string()))?;

        let frame_type = stream.frame_type();
        match frame_type {
            FrameType::Skip => return Ok(EncodedFrame::default()),
            FrameType::Invalid => {
                return Err(CodecError::Encoder(
                    "encoder produced no valid frame".into(),
                ));
            }
            _ => {}
        }
        let size = usize::try_from(stream.raw_info().iFrameSizeInBytes).unwrap_or(0);
        let mut data = Vec::with_capacity(size);
        stream.write_vec(&mut data);
        let is_key_frame = frame_type == FrameType::IDR;
        if is_key_frame {
            self.key_frame_pending = false;
        }
        Ok(EncodedFrame { data, is_key_frame })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grey(width: u32, height: u32) -> Vec<u8> {
        vec![128; width as usize * height as usize * 4]
    }

    #[test]
    fn config_validation() {
        assert!(EncoderConfig::new(1920, 1080).validate().is_ok());
        assert!(EncoderConfig::new(2160, 3840).validate().is_ok());
        assert!(EncoderConfig::new(3840, 2160).validate().is_ok());
        for (w, h) in [
            (0, 16),
            (17, 16),
            (16, 17),
            (14, 16),
            (16, 2),
            (3842, 16),
            (3840, 2162),
            (2162, 3840),
        ] {
            let err = Encoder::new(EncoderConfig::new(w, h)).unwrap_err();
            assert!(
                matches!(err, CodecError::InvalidDimensions { .. }),
                "{w}x{h}: {err}"
            );
        }
        let mut cfg = EncoderConfig::new(640, 360);
        cfg.bitrate_bps = 9_999;
        assert!(matches!(
            cfg.validate(),
            Err(CodecError::InvalidBitrate { .. })
        ));
        for fps in [0.5, 61.0, f32::NAN, f32::INFINITY] {
            cfg = EncoderConfig::new(640, 360);
            cfg.max_fps = fps;
            assert!(matches!(
                cfg.validate(),
                Err(CodecError::InvalidFrameRate { .. })
            ));
        }
    }

    #[test]
    fn tiny_and_wrong_sized_input() {
        let mut enc = Encoder::new(EncoderConfig::new(16, 16)).unwrap();
        let frame = enc.encode(&grey(16, 16), 64, false).unwrap();
        assert!(frame.is_key_frame && !frame.is_dropped());

        let mut enc = Encoder::new(EncoderConfig::new(64, 48)).unwrap();
        assert!(matches!(
            enc.encode(&grey(64, 47), 256, false),
            Err(CodecError::BufferTooShort { .. })
        ));
        assert!(matches!(
            enc.encode(&grey(64, 48), 200, false),
            Err(CodecError::InvalidStride { .. })
        ));
        // The failed calls did not consume the first (key) frame.
        assert!(enc.encode(&grey(64, 48), 256, false).unwrap().is_key_frame);
    }

    #[test]
    fn steady_state_reuses_the_conversion_buffer() {
        let mut enc = Encoder::new(EncoderConfig::new(64, 48)).unwrap();
        let planes = |enc: &Encoder| {
            (
                enc.i420.y().as_ptr(),
                enc.i420.u().as_ptr(),
                enc.i420.v().as_ptr(),
            )
        };
        let before = planes(&enc);
        for n in 0..5u8 {
            let bgra = vec![n * 40; 64 * 48 * 4];
            enc.encode(&bgra, 64 * 4, n == 3).unwrap();
        }
        assert_eq!(planes(&enc), before);
    }

    #[test]
    fn encoder_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<Encoder>();
    }
}
