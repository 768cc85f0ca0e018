//! Colour conversion between packed 8-bit BGRA/RGBA and planar I420 (4:2:0), BT.601 limited range,
//! done by the `yuv` crate's SIMD kernels.
//!
//! BT.601 limited range is what H.264 decoders assume when a stream says nothing else and what
//! OpenH264's own conversion uses; the encoder also writes it into the stream's VUI so that other
//! decoders (ffmpeg, browsers) show the same colours.

use std::fmt;

use yuv::{
    BufferStoreMut, YuvConversionMode, YuvPlanarImage, YuvPlanarImageMut, YuvRange,
    YuvStandardMatrix,
};

use crate::{CodecError, check_dimensions, check_pixel_buffer};

/// Largest width or height [`bgra_to_i420`] converts.
const MAX_CONVERT_DIMENSION: u32 = 16384;

const RANGE: YuvRange = YuvRange::Limited;
const MATRIX: YuvStandardMatrix = YuvStandardMatrix::Bt601;

/// A reusable I420 picture: a full-size luma plane and two quarter-size chroma planes, each
/// tightly packed (luma stride = width, chroma stride = width / 2).
///
/// Converting into the same buffer again at the same size reuses its memory; only a size change
/// reallocates.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct I420Buffer {
    width: u32,
    height: u32,
    y: Vec<u8>,
    u: Vec<u8>,
    v: Vec<u8>,
}

impl fmt::Debug for I420Buffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("I420Buffer")
            .field("width", &self.width)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

impl I420Buffer {
    /// An empty buffer (0x0) that takes its size from the first conversion.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A black-initialised buffer of the given size.
    ///
    /// # Errors
    ///
    /// [`CodecError::InvalidDimensions`] if a side is zero, odd or above 16384.
    pub fn with_size(width: u32, height: u32) -> Result<Self, CodecError> {
        check_dimensions(width, height, MAX_CONVERT_DIMENSION, MAX_CONVERT_DIMENSION)?;
        let mut buffer = Self::new();
        buffer.set_size(width, height);
        Ok(buffer)
    }

    /// Width in pixels.
    #[must_use]
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    #[must_use]
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Luma plane, `width * height` bytes.
    #[must_use]
    pub fn y(&self) -> &[u8] {
        &self.y
    }

    /// Blue-difference chroma plane, `width / 2 * height / 2` bytes.
    #[must_use]
    pub fn u(&self) -> &[u8] {
        &self.u
    }

    /// Red-difference chroma plane, `width / 2 * height / 2` bytes.
    #[must_use]
    pub fn v(&self) -> &[u8] {
        &self.v
    }

    /// Sets the size; the planes keep their allocation when it does not change. Callers have
    /// validated that both sides are even and bounded.
    fn set_size(&mut self, width: u32, height: u32) {
        let luma = width as usize * height as usize;
        let chroma = luma / 4;
        self.width = width;
        self.height = height;
        self.y.resize(luma, 16);
        self.u.resize(chroma, 128);
        self.v.resize(chroma, 128);
    }
}

/// Converts a BGRA picture (alpha ignored) to I420 in `out`, resizing `out` if its size differs.
///
/// `bgra` holds `height` rows of `stride` bytes, each starting with `width` pixels. Uses the `yuv`
/// crate's SIMD kernels (AVX2/SSE4.1 when the CPU has them), BT.601 limited range.
///
/// # Errors
///
/// [`CodecError::InvalidDimensions`] for a zero, odd or oversized side,
/// [`CodecError::InvalidStride`] or [`CodecError::BufferTooShort`] when `bgra` does not hold the
/// picture.
pub fn bgra_to_i420(
    bgra: &[u8],
    width: u32,
    height: u32,
    stride: usize,
    out: &mut I420Buffer,
) -> Result<(), CodecError> {
    check_dimensions(width, height, MAX_CONVERT_DIMENSION, MAX_CONVERT_DIMENSION)?;
    check_pixel_buffer(bgra.len(), width, height, stride)?;
    if (out.width, out.height) != (width, height) {
        out.set_size(width, height);
    }
    let mut planar = YuvPlanarImageMut {
        y_plane: BufferStoreMut::Borrowed(&mut out.y),
        y_stride: width,
        u_plane: BufferStoreMut::Borrowed(&mut out.u),
        u_stride: width / 2,
        v_plane: BufferStoreMut::Borrowed(&mut out.v),
        v_stride: width / 2,
        width,
        height,
    };
    // `check_pixel_buffer` verified that the stride fits in u32.
    let stride = u32::try_from(stride).map_err(|_| CodecError::InvalidStride { stride, width })?;
    yuv::bgra_to_yuv420(
        &mut planar,
        bgra,
        stride,
        RANGE,
        MATRIX,
        YuvConversionMode::Balanced,
    )
    .map_err(|e| CodecError::Conversion(e.to_string()))
}

/// Planes of a decoded picture as the decoder hands them out: strides may exceed the width.
pub(crate) struct PlanesRef<'a> {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) y: &'a [u8],
    pub(crate) u: &'a [u8],
    pub(crate) v: &'a [u8],
    pub(crate) y_stride: usize,
    pub(crate) uv_stride: usize,
}

/// Converts decoded I420 planes to tightly packed RGBA (alpha 255) in `rgba`, resizing it to
/// `width * height * 4`. Never panics: bad plane sizes are an error from the `yuv` crate's checks.
pub(crate) fn i420_to_rgba(planes: &PlanesRef<'_>, rgba: &mut Vec<u8>) -> Result<(), CodecError> {
    let as_u32 = |stride: usize| {
        u32::try_from(stride).map_err(|_| CodecError::Conversion("plane stride too large".into()))
    };
    let image = YuvPlanarImage {
        y_plane: planes.y,
        y_stride: as_u32(planes.y_stride)?,
        u_plane: planes.u,
        u_stride: as_u32(planes.uv_stride)?,
        v_plane: planes.v,
        v_stride: as_u32(planes.uv_stride)?,
        width: planes.width,
        height: planes.height,
    };
    let len = planes.width as usize * planes.height as usize * 4;
    rgba.resize(len, 0);
    yuv::yuv420_to_rgba(&image, rgba, planes.width * 4, RANGE, MATRIX)
        .map_err(|e| CodecError::Conversion(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid_bgra(width: u32, height: u32, stride: usize, bgr: [u8; 3]) -> Vec<u8> {
        let mut data = vec![0; stride * height as usize];
        for row in data.chunks_mut(stride) {
            for px in row[..width as usize * 4].chunks_exact_mut(4) {
                px.copy_from_slice(&[bgr[0], bgr[1], bgr[2], 255]);
            }
        }
        data
    }

    #[test]
    fn known_colours_round_trip() {
        // BT.601 limited range: white is Y=235, black Y=16, mid grey's chroma is neutral.
        let mut out = I420Buffer::new();
        for (bgr, y) in [([255, 255, 255], 235), ([0, 0, 0], 16)] {
            let data = solid_bgra(64, 32, 64 * 4, bgr);
            bgra_to_i420(&data, 64, 32, 64 * 4, &mut out).unwrap();
            assert!(out.y().iter().all(|&v| v.abs_diff(y) <= 1), "{bgr:?}");
            assert!(out.u().iter().all(|&v| v.abs_diff(128) <= 1));
            assert!(out.v().iter().all(|&v| v.abs_diff(128) <= 1));
        }

        let bgr = [40, 120, 200];
        let data = solid_bgra(64, 32, 300, bgr);
        bgra_to_i420(&data, 64, 32, 300, &mut out).unwrap();
        let mut rgba = Vec::new();
        let planes = PlanesRef {
            width: 64,
            height: 32,
            y: out.y(),
            u: out.u(),
            v: out.v(),
            y_stride: 64,
            uv_stride: 32,
        };
        i420_to_rgba(&planes, &mut rgba).unwrap();
        assert_eq!(rgba.len(), 64 * 32 * 4);
        for px in rgba.chunks_exact(4) {
            for (got, want) in px[..3].iter().zip([bgr[2], bgr[1], bgr[0]]) {
                assert!(got.abs_diff(want) <= 3, "{px:?} vs {bgr:?}");
            }
            assert_eq!(px[3], 255);
        }
    }

    #[test]
    fn buffer_is_reused_at_the_same_size() {
        let mut out = I420Buffer::with_size(320, 240).unwrap();
        let y_ptr = out.y().as_ptr();
        let data = solid_bgra(320, 240, 320 * 4, [1, 2, 3]);
        for _ in 0..3 {
            bgra_to_i420(&data, 320, 240, 320 * 4, &mut out).unwrap();
        }
        assert_eq!(out.y().as_ptr(), y_ptr);
        assert_eq!((out.width(), out.height()), (320, 240));
        assert_eq!(
            (out.y().len(), out.u().len(), out.v().len()),
            (76800, 19200, 19200)
        );
    }

    #[test]
    fn bad_input_is_an_error() {
        let mut out = I420Buffer::new();
        let data = solid_bgra(64, 32, 256, [0, 0, 0]);
        assert!(matches!(
            bgra_to_i420(&data, 63, 32, 256, &mut out),
            Err(CodecError::InvalidDimensions { .. })
        ));
        assert!(matches!(
            bgra_to_i420(&data, 64, 32, 255, &mut out),
            Err(CodecError::InvalidStride { .. })
        ));
        assert!(matches!(
            bgra_to_i420(&data[..1000], 64, 32, 256, &mut out),
            Err(CodecError::BufferTooShort { .. })
        ));
        assert!(matches!(
            I420Buffer::with_size(0, 2),
            Err(CodecError::InvalidDimensions { .. })
        ));
        // Short planes are refused by the conversion, not a panic.
        let planes = PlanesRef {
            width: 64,
            height: 32,
            y: &[0; 10],
            u: &[0; 10],
            v: &[0; 10],
            y_stride: 64,
            uv_stride: 32,
        };
        assert!(matches!(
            i420_to_rgba(&planes, &mut Vec::new()),
            Err(CodecError::Conversion(_))
        ));
    }
}
