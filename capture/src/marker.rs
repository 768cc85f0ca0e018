//! The frame marker: a frame number and a capture time drawn as a barcode of large black and white
//! cells, readable again after lossy video compression.
//!
//! The marker is a grid of [`MARKER_COLS`] x [`MARKER_ROWS`] square cells in the top-left corner.
//! Each row holds one 16-bit word, most significant bit on the left, black = 1:
//!
//! ```text
//!   row 0      sync word 0xB2CD (a fixed pattern: tells "a marker is here" from garbage)
//!   rows 1-4   frame_no, big-endian
//!   rows 5-8   captured_at_us, big-endian
//!   row 9      CRC-16/CCITT-FALSE of the 16 bytes of rows 1-8
//! ```
//!
//! Cells are 16 px when the picture is at least 256x160, so each cell is exactly one H.264
//! macroblock: flat, aligned, and cheap to code exactly. Smaller pictures use 8 or 4 px cells
//! (still fine losslessly, less robust under heavy compression); below 64x40 there is no marker.
//! A reader samples the middle of each cell and refuses cells that are neither clearly dark nor
//! clearly light, so a damaged or absent marker reads as `None`, never as wrong numbers (short of
//! a 1-in-2^32 coincidence of sync word and checksum).

use crate::{PixelLayout, fits};

/// Number of cell columns in the marker grid (bits per row).
pub const MARKER_COLS: u32 = 16;
/// Number of cell rows in the marker grid.
pub const MARKER_ROWS: u32 = 10;

const SYNC: u16 = 0xB2CD;
const CELL_SIZES: [u32; 3] = [16, 8, 4];
/// Mean luma below this reads as a black cell.
const DARK_BELOW: u32 = 96;
/// Mean luma above this reads as a white cell.
const LIGHT_ABOVE: u32 = 160;

const BLACK: [u8; 4] = [0, 0, 0, 255];
const WHITE: [u8; 4] = [255, 255, 255, 255];

/// What a marker carries: which frame this is and when it was captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Marker {
    /// The frame's sequence number.
    pub frame_no: u64,
    /// Capture time in microseconds since the Unix epoch.
    pub captured_at_us: u64,
}

/// Side of one marker cell in pixels for a picture of this size, or `None` if the picture is too
/// small to hold a marker (below 64x40).
#[must_use]
pub fn marker_cell_size(width: u32, height: u32) -> Option<u32> {
    CELL_SIZES
        .into_iter()
        .find(|&cell| MARKER_COLS * cell <= width && MARKER_ROWS * cell <= height)
}

/// CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no reflection).
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

fn payload(frame_no: u64, captured_at_us: u64) -> [u8; 16] {
    let mut bytes = [0; 16];
    bytes[..8].copy_from_slice(&frame_no.to_be_bytes());
    bytes[8..].copy_from_slice(&captured_at_us.to_be_bytes());
    bytes
}

fn words(marker: Marker) -> [u16; MARKER_ROWS as usize] {
    let bytes = payload(marker.frame_no, marker.captured_at_us);
    let mut words = [0; MARKER_ROWS as usize];
    words[0] = SYNC;
    for (word, pair) in words[1..9].iter_mut().zip(bytes.chunks_exact(2)) {
        *word = u16::from_be_bytes([pair[0], pair[1]]);
    }
    words[9] = crc16(&bytes);
    words
}

/// Draws `marker` into a BGRA picture. Does nothing if the picture is too small or `data` does not
/// hold it.
pub(crate) fn draw_marker(data: &mut [u8], width: u32, height: u32, stride: usize, marker: Marker) {
    let Some(cell) = marker_cell_size(width, height) else {
        return;
    };
    if !fits(data.len(), width, height, stride) {
        return;
    }
    let cell = cell as usize;
    for (row, word) in words(marker).into_iter().enumerate() {
        for col in 0..MARKER_COLS as usize {
            let black = word & (0x8000 >> col) != 0;
            let colour = if black { BLACK } else { WHITE };
            for y in row * cell..(row + 1) * cell {
                let start = y * stride + col * cell * 4;
                for px in data[start..start + cell * 4].chunks_exact_mut(4) {
                    px.copy_from_slice(&colour);
                }
            }
        }
    }
}

/// Mean luma (0-255, BT.601 weights) of the middle half of one cell.
fn cell_luma(
    pixels: &[u8],
    stride: usize,
    cell: usize,
    row: usize,
    col: usize,
    layout: PixelLayout,
) -> u32 {
    let (r_at, b_at) = match layout {
        PixelLayout::Bgra => (2, 0),
        PixelLayout::Rgba => (0, 2),
    };
    let inner = cell / 4..cell * 3 / 4;
    let mut sum: u32 = 0;
    let mut count: u32 = 0;
    for y in inner.clone() {
        let row_start = (row * cell + y) * stride + (col * cell + inner.start) * 4;
        for px in pixels[row_start..row_start + inner.len() * 4].chunks_exact(4) {
            let (r, g, b) = (u32::from(px[r_at]), u32::from(px[1]), u32::from(px[b_at]));
            sum += (77 * r + 150 * g + 29 * b) >> 8;
            count += 1;
        }
    }
    sum / count.max(1)
}

/// Reads the marker from the top-left corner of a picture, as drawn by
/// [`render_synthetic`](crate::render_synthetic).
///
/// `pixels` holds `height` rows of `stride` bytes, each starting with `width` pixels in `layout`
/// order. Returns `None` if there is no intact marker: picture too small, buffer too short, a cell
/// neither clearly dark nor clearly light, wrong sync word or wrong checksum. Never panics.
#[must_use]
pub fn read_marker(
    pixels: &[u8],
    width: u32,
    height: u32,
    stride: usize,
    layout: PixelLayout,
) -> Option<Marker> {
    if !fits(pixels.len(), width, height, stride) {
        return None;
    }
    let cell = marker_cell_size(width, height)? as usize;
    let mut words = [0u16; MARKER_ROWS as usize];
    for (row, word) in words.iter_mut().enumerate() {
        for col in 0..MARKER_COLS as usize {
            let luma = cell_luma(pixels, stride, cell, row, col, layout);
            let bit = if luma < DARK_BELOW {
                1
            } else if luma > LIGHT_ABOVE {
                0
            } else {
                return None;
            };
            *word = (*word << 1) | bit;
        }
    }
    if words[0] != SYNC {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (pair, word) in bytes.chunks_exact_mut(2).zip(&words[1..9]) {
        pair.copy_from_slice(&word.to_be_bytes());
    }
    if crc16(&bytes) != words[9] {
        return None;
    }
    let join = |words: &[u16]| {
        words
            .iter()
            .fold(0u64, |acc, &w| (acc << 16) | u64::from(w))
    };
    Some(Marker {
        frame_no: join(&words[1..5]),
        captured_at_us: join(&words[5..9]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blank(width: u32, height: u32, value: u8) -> Vec<u8> {
        let mut data = vec![value; (width * height * 4) as usize];
        for px in data.chunks_exact_mut(4) {
            px[3] = 255;
        }
        data
    }

    #[test]
    fn crc_matches_the_standard_check_value() {
        assert_eq!(crc16(b"123456789"), 0x29B1);
    }

    #[test]
    fn cell_size_follows_picture_size() {
        assert_eq!(marker_cell_size(1920, 1080), Some(16));
        assert_eq!(marker_cell_size(256, 160), Some(16));
        assert_eq!(marker_cell_size(254, 160), Some(8));
        assert_eq!(marker_cell_size(128, 80), Some(8));
        assert_eq!(marker_cell_size(64, 40), Some(4));
        assert_eq!(marker_cell_size(62, 40), None);
        assert_eq!(marker_cell_size(64, 38), None);
    }

    #[test]
    fn draw_then_read_at_every_cell_size() {
        let marker = Marker {
            frame_no: 0x0123_4567_89AB_CDEF,
            captured_at_us: u64::MAX - 7,
        };
        for (w, h) in [(256, 160), (300, 200), (128, 80), (64, 40)] {
            let mut data = blank(w, h, 90);
            draw_marker(&mut data, w, h, w as usize * 4, marker);
            assert_eq!(
                read_marker(&data, w, h, w as usize * 4, PixelLayout::Bgra),
                Some(marker),
                "{w}x{h}"
            );
        }
    }

    #[test]
    fn garbage_reads_as_none() {
        let (w, h) = (320, 240);
        let stride = w as usize * 4;
        for value in [0, 128, 255] {
            assert_eq!(
                read_marker(&blank(w, h, value), w, h, stride, PixelLayout::Rgba),
                None
            );
        }
        // A pseudo-random picture.
        let mut state = 0x9E37_79B9_u32;
        let noise: Vec<u8> = (0..w * h * 4)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect();
        assert_eq!(read_marker(&noise, w, h, stride, PixelLayout::Bgra), None);

        // One flipped cell breaks the checksum.
        let marker = Marker {
            frame_no: 42,
            captured_at_us: 1_700_000_000_000_000,
        };
        let mut data = blank(w, h, 255);
        draw_marker(&mut data, w, h, stride, marker);
        assert_eq!(
            read_marker(&data, w, h, stride, PixelLayout::Bgra),
            Some(marker)
        );
        let (row, col) = (3usize, 7usize);
        for y in row * 16..(row + 1) * 16 {
            for x in col * 16..(col + 1) * 16 {
                let at = y * stride + x * 4;
                let flipped = 255 - data[at];
                data[at..at + 3].fill(flipped);
            }
        }
        assert_eq!(read_marker(&data, w, h, stride, PixelLayout::Bgra), None);
    }

    #[test]
    fn bad_geometry_reads_as_none() {
        let data = blank(256, 160, 255);
        assert_eq!(read_marker(&data, 256, 160, 1000, PixelLayout::Bgra), None);
        assert_eq!(read_marker(&data, 256, 160, 10, PixelLayout::Bgra), None);
        assert_eq!(
            read_marker(&data[..100], 256, 160, 1024, PixelLayout::Bgra),
            None
        );
        assert_eq!(read_marker(&[], 0, 0, 0, PixelLayout::Bgra), None);
        assert_eq!(
            read_marker(&data, u32::MAX, u32::MAX, usize::MAX, PixelLayout::Bgra),
            None
        );
    }
}
