//! Pointer positions: normalised to the shared frame on the wire, pixels on the host screen.

/// A position on the shared frame, independent of its pixel size: `0..=65535` on each axis,
/// `(0, 0)` the top-left pixel and `(65535, 65535)` the bottom-right one.
///
/// Every `u16` pair is a valid point, so there is nothing to check when one arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NormalizedPoint {
    x: u16,
    y: u16,
}

impl NormalizedPoint {
    pub const fn new(x: u16, y: u16) -> Self {
        Self { x, y }
    }

    pub const fn x(self) -> u16 {
        self.x
    }

    pub const fn y(self) -> u16 {
        self.y
    }

    /// The point under pixel position `(x, y)` of a frame shown as `frame_width` x
    /// `frame_height` pixels (controller side). Positions off the frame, and non-finite ones,
    /// are clamped to its nearest edge; a zero size is treated as one pixel.
    pub fn from_frame(x: f64, y: f64, frame_width: u32, frame_height: u32) -> Self {
        Self {
            x: normalize(x, frame_width),
            y: normalize(y, frame_height),
        }
    }

    /// The pixel this point falls on, on a screen of `size` (host side). The frame's corners
    /// map to the screen's corners whatever the two sizes are.
    pub fn to_screen(self, size: ScreenSize) -> ScreenPoint {
        ScreenPoint {
            x: denormalize(self.x, size.width),
            y: denormalize(self.y, size.height),
        }
    }
}

fn normalize(v: f64, size: u32) -> u16 {
    let last = f64::from(size.max(1) - 1);
    if last == 0.0 {
        return 0;
    }
    let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, last) };
    // v / last is in 0..=1, so the rounded product is in 0..=65535 and the cast is exact
    (v / last * f64::from(u16::MAX)).round() as u16
}

fn denormalize(v: u16, size: u32) -> u32 {
    let last = u64::from(size - 1); // ScreenSize guarantees size >= 1
    // Rounded v * last / 65535: at most `last`, which fits u32.
    ((u64::from(v) * last + u64::from(u16::MAX / 2)) / u64::from(u16::MAX)) as u32
}

/// Why a screen size was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("screen size {width}x{height} is out of range (1..={max} per side)", max = ScreenSize::MAX)]
#[non_exhaustive]
pub struct ScreenSizeError {
    pub width: u32,
    pub height: u32,
}

/// The host screen's size in pixels: each side in `1..=`[`ScreenSize::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScreenSize {
    width: u32,
    height: u32,
}

impl ScreenSize {
    /// Largest width or height accepted.
    pub const MAX: u32 = 16384;

    pub fn new(width: u32, height: u32) -> Result<Self, ScreenSizeError> {
        let ok = |side| (1..=Self::MAX).contains(&side);
        if ok(width) && ok(height) {
            Ok(Self { width, height })
        } else {
            Err(ScreenSizeError { width, height })
        }
    }

    pub const fn width(self) -> u32 {
        self.width
    }

    pub const fn height(self) -> u32 {
        self.height
    }

    /// Pixel `(x, y)` if it lies on this screen.
    pub fn point(self, x: u32, y: u32) -> Option<ScreenPoint> {
        (x < self.width && y < self.height).then_some(ScreenPoint { x, y })
    }
}

/// A pixel on the host screen, made by [`NormalizedPoint::to_screen`] or [`ScreenSize::point`],
/// so always inside the screen it was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScreenPoint {
    x: u32,
    y: u32,
}

impl ScreenPoint {
    pub const fn x(self) -> u32 {
        self.x
    }

    pub const fn y(self) -> u32 {
        self.y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(w: u32, h: u32) -> ScreenSize {
        ScreenSize::new(w, h).unwrap()
    }

    #[test]
    fn corners_map_to_corners() {
        for (w, h) in [(1, 1), (2, 3), (1920, 1080), (16384, 16384), (16384, 1)] {
            let s = size(w, h);
            assert_eq!(
                NormalizedPoint::new(0, 0).to_screen(s),
                s.point(0, 0).unwrap()
            );
            assert_eq!(
                NormalizedPoint::new(u16::MAX, u16::MAX).to_screen(s),
                s.point(w - 1, h - 1).unwrap()
            );
        }
    }

    #[test]
    fn every_pixel_survives_a_trip_through_the_wire_at_equal_sizes() {
        for n in [1, 2, 3, 7, 640, 1281, 1920, 4096, 16384] {
            let s = size(n, n);
            for px in 0..n {
                let p = NormalizedPoint::from_frame(f64::from(px), 0.0, n, n);
                assert_eq!(p.to_screen(s).x(), px, "pixel {px} of {n}");
            }
        }
    }

    #[test]
    fn scaling_keeps_relative_position() {
        // The middle of a 1280-wide frame is the middle of a 3840-wide screen.
        let p = NormalizedPoint::from_frame(639.5, 359.5, 1280, 720);
        let q = p.to_screen(size(3840, 2160));
        assert_eq!((q.x(), q.y()), (1920, 1080));
    }

    #[test]
    fn off_frame_positions_are_clamped() {
        let cases = [
            (-5.0, -1e300, (0, 0)),
            (1e9, f64::INFINITY, (u16::MAX, u16::MAX)),
            (f64::NAN, f64::NEG_INFINITY, (0, 0)),
            (99.0, 100.5, (u16::MAX, u16::MAX)),
        ];
        for (x, y, want) in cases {
            let p = NormalizedPoint::from_frame(x, y, 100, 100);
            assert_eq!((p.x(), p.y()), want, "({x}, {y})");
        }
        let p = NormalizedPoint::from_frame(3.0, 3.0, 0, 1);
        assert_eq!((p.x(), p.y()), (0, 0), "empty frames do not divide by zero");
    }

    #[test]
    fn screen_sizes_are_bounded() {
        for (w, h) in [(0, 10), (10, 0), (16385, 10), (10, u32::MAX)] {
            assert_eq!(
                ScreenSize::new(w, h),
                Err(ScreenSizeError {
                    width: w,
                    height: h
                })
            );
        }
        assert!(ScreenSize::new(16384, 1).is_ok());
        assert_eq!(size(10, 5).point(10, 0), None);
        assert_eq!(size(10, 5).point(0, 5), None);
        assert!(size(10, 5).point(9, 4).is_some());
    }
}
