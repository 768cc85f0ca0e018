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
/// [`Encoder::set_bitrate`] changes the target of a running encoder without a key frame.
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

    /// Changes the target bitrate from the next frame on, keeping the encoder's reference
    /// pictures: no key frame, unlike a new encoder (the rate controller's steps would otherwise
    /// each cost a key frame's burst on the very link that is short of capacity).
    ///
    /// # Errors
    ///
    /// [`CodecError::InvalidBitrate`] outside [`MIN_BITRATE_BPS`]..=[`MAX_BITRATE_BPS`] (the
    /// encoder keeps its old target); [`CodecError::Encoder`] if OpenH264 refuses it.
    pub fn set_bitrate(&mut self, bitrate_bps: u32) -> Result<(), CodecError> {
        let mut config = self.config;
        config.bitrate_bps = bitrate_bps;
        config.validate()?;
        if self.frames_in == 0 {
            // OpenH264 is set up at the first frame, from the configuration: make it anew.
            *self = Self::new(config)?;
            return Ok(());
        }
        let bps =
            i32::try_from(bitrate_bps).map_err(|_| CodecError::InvalidBitrate { bitrate_bps })?;
        // The target is for the whole stream, the ceiling for its one spatial layer (OpenH264
        // refuses a layer's target above the layer's ceiling): raising, the ceiling first;
        // lowering, the target first.
        let target = (
            openh264_sys2::ENCODER_OPTION_BITRATE,
            openh264_sys2::SPATIAL_LAYER_ALL,
        );
        let ceiling = (
            openh264_sys2::ENCODER_OPTION_MAX_BITRATE,
            openh264_sys2::SPATIAL_LAYER_0,
        );
        let steps = if bitrate_bps > self.config.bitrate_bps {
            [ceiling, target]
        } else {
            [target, ceiling]
        };
        for (option, layer) in steps {
            let mut info = openh264_sys2::SBitrateInfo {
                iLayer: layer,
                iBitrate: bps,
            };
            // SAFETY: the encoder is initialised (a frame went in), `info` is the struct both
            // options take, lives across the call, and OpenH264 only reads it. Neither option
            // changes anything the `openh264` crate relies on (picture size, format, layers).
            #[allow(unsafe_code)]
            let rc = unsafe {
                self.inner
                    .raw_api()
                    .set_option(option, std::ptr::from_mut(&mut info).cast())
            };
            if rc != 0 {
                return Err(CodecError::Encoder(format!(
                    "OpenH264 refused bitrate {bitrate_bps} (option {option}: {rc})"
                )));
            }
        }
        self.config = config;
        Ok(())
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

    /// A still picture in which one 96x96 square of noise is drawn anew every frame: costly,
    /// but never a scene cut (which would make OpenH264 add key frames of its own).
    struct Busy {
        bgra: Vec<u8>,
        row: usize,
        seed: u32,
    }

    impl Busy {
        fn new(enc: &Encoder) -> Self {
            let (w, h) = (enc.config().width as usize, enc.config().height as usize);
            Self {
                bgra: vec![90; w * 4 * h],
                row: w * 4,
                seed: 7,
            }
        }

        /// `n` frames into `enc`: the bytes out, and whether any was a key frame.
        fn encode(&mut self, enc: &mut Encoder, n: usize) -> (usize, bool) {
            let (mut bytes, mut key) = (0, false);
            for _ in 0..n {
                for y in 32..128 {
                    let line = &mut self.bgra[y * self.row + 64 * 4..y * self.row + 160 * 4];
                    for px in line.chunks_exact_mut(4) {
                        self.seed = self
                            .seed
                            .wrapping_mul(1_664_525)
                            .wrapping_add(1_013_904_223);
                        px[..3].copy_from_slice(&self.seed.to_le_bytes()[1..]);
                    }
                }
                let out = enc.encode(&self.bgra, self.row, false).unwrap();
                bytes += out.data.len();
                key |= out.is_key_frame;
            }
            (bytes, key)
        }
    }

    #[test]
    fn a_running_encoder_takes_a_new_bitrate_without_a_key_frame() {
        let mut cfg = EncoderConfig::new(320, 192);
        cfg.bitrate_bps = 4_000_000;
        let mut enc = Encoder::new(cfg).unwrap();
        let mut content = Busy::new(&enc);
        content.encode(&mut enc, 30);
        let (high, key) = content.encode(&mut enc, 60);
        assert!(!key, "the content itself makes no key frames");
        enc.set_bitrate(400_000).unwrap();
        assert_eq!(enc.config().bitrate_bps, 400_000);
        let (low, key) = content.encode(&mut enc, 60);
        assert!(!key, "no key frame for a lower bitrate");
        // 60 frames at 30 a second: 2 s of 400 kbit/s are 100 kB; some slack for the step.
        assert!(low < 150_000, "{low} bytes in 2 s at 400 kbit/s");
        assert!(
            low * 2 < high,
            "{low} bytes at 400 kbit/s vs {high} at 4 Mbit/s"
        );
        // Back up, and above where it started: OpenH264's ceiling moves along.
        enc.set_bitrate(8_000_000).unwrap();
        let (back, key) = content.encode(&mut enc, 60);
        assert!(!key, "no key frame for a higher bitrate");
        assert!(
            back > low * 2,
            "{back} bytes at 8 Mbit/s vs {low} at 400 kbit/s"
        );
        // A bitrate out of range changes nothing.
        assert!(matches!(
            enc.set_bitrate(1),
            Err(CodecError::InvalidBitrate { .. })
        ));
        assert_eq!(enc.config().bitrate_bps, 8_000_000);
        // Before the first frame it simply starts at the new bitrate, with its key frame.
        let mut fresh = Encoder::new(cfg).unwrap();
        fresh.set_bitrate(500_000).unwrap();
        assert!(Busy::new(&fresh).encode(&mut fresh, 1).1);
        assert_eq!(fresh.config().bitrate_bps, 500_000);
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
