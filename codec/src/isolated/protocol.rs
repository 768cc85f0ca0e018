//! The worker protocol: fixed little-endian layouts on the worker's stdin and stdout, and where a
//! decoded picture lies in the shared memory.
//!
//! ```text
//! parent ── Init (24 bytes, + the memfd as SCM_RIGHTS) ──► worker
//! parent ◄───────────── Answer Ready (seq 0) ───────────── worker   (sandbox in place)
//! parent ── Request header (12 bytes) + Annex-B bytes ───► worker
//!                                                           │ decode, copy I420 planes into shm
//! parent ◄──────── Answer (256 bytes, seq echoed) ──────── worker
//! ```
//!
//! Everything the worker sends is parsed as hostile: [`parse_answer`] checks the magic, the
//! sequence number, the status, every reserved byte and the message length; [`Layout::new`]
//! derives the planes' places from the claimed size alone with checked arithmetic, so no value
//! from the worker ever becomes an offset without a bound.

use std::ops::Range;

use crate::MAX_DECODED_PIXELS;

/// Length of [`Init`] on the wire.
pub(crate) const INIT_LEN: usize = 24;
/// Length of a request header.
pub(crate) const REQUEST_HEADER_LEN: usize = 12;
/// Length of every answer.
pub(crate) const ANSWER_LEN: usize = 256;
/// Longest error message an answer carries (the rest of the answer after its header).
pub(crate) const MAX_MESSAGE_LEN: usize = ANSWER_LEN - ANSWER_HEADER_LEN;
const ANSWER_HEADER_LEN: usize = 24;

const INIT_MAGIC: [u8; 4] = *b"QDi1";
const REQUEST_MAGIC: [u8; 4] = *b"QDr1";
const ANSWER_MAGIC: [u8; 4] = *b"QDa1";

/// Size of the shared picture memory: enough for the I420 planes of any picture of at most
/// [`MAX_DECODED_PIXELS`], whatever its shape. For `w * h <= N` with `w, h >= 1`, the chroma
/// planes take `2 * ceil(w/2) * ceil(h/2) <= (w + 1)(h + 1) / 2 <= N + 1` bytes (as
/// `w + h <= w * h + 1`), so `2N + 1` bytes always suffice; rounded up to 4 KiB pages.
pub(crate) const SHM_LEN: usize = (2 * MAX_DECODED_PIXELS as usize + 1).next_multiple_of(4096);

/// The first message, sent with the shared memory's file descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Init {
    /// Length of the shared memory.
    pub(crate) shm_len: u64,
    /// The parent's process id, so the worker can tell whether its parent died before it asked
    /// to be killed along with it.
    pub(crate) parent_pid: u32,
}

impl Init {
    pub(crate) fn encode(&self) -> [u8; INIT_LEN] {
        let mut buf = [0; INIT_LEN];
        buf[..4].copy_from_slice(&INIT_MAGIC);
        buf[4..12].copy_from_slice(&self.shm_len.to_le_bytes());
        buf[12..16].copy_from_slice(&self.parent_pid.to_le_bytes());
        buf
    }

    /// `None` unless `buf` is an init message.
    pub(crate) fn parse(buf: &[u8; INIT_LEN]) -> Option<Self> {
        (buf[..4] == INIT_MAGIC && buf[16..].iter().all(|&b| b == 0)).then(|| Self {
            shm_len: u64::from_le_bytes(array(&buf[4..12])),
            parent_pid: u32::from_le_bytes(array(&buf[12..16])),
        })
    }
}

/// Header of a request: `len` bytes of Annex-B follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestHeader {
    /// Sequence number, echoed in the answer; never 0 (the ready answer's).
    pub(crate) seq: u32,
    /// Length of the Annex-B bytes that follow.
    pub(crate) len: u32,
}

impl RequestHeader {
    pub(crate) fn encode(&self) -> [u8; REQUEST_HEADER_LEN] {
        let mut buf = [0; REQUEST_HEADER_LEN];
        buf[..4].copy_from_slice(&REQUEST_MAGIC);
        buf[4..8].copy_from_slice(&self.seq.to_le_bytes());
        buf[8..].copy_from_slice(&self.len.to_le_bytes());
        buf
    }

    /// `None` unless `buf` is a request header.
    pub(crate) fn parse(buf: &[u8; REQUEST_HEADER_LEN]) -> Option<Self> {
        (buf[..4] == REQUEST_MAGIC).then(|| Self {
            seq: u32::from_le_bytes(array(&buf[4..8])),
            len: u32::from_le_bytes(array(&buf[8..12])),
        })
    }
}

/// What the worker says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Set up and sandboxed (sequence number 0, only as the first answer).
    Ready,
    /// The input completed no picture.
    NoPicture,
    /// A picture of this size (as the decoder reported it, saturated to `u32`); its planes are in
    /// the shared memory at [`Layout::new`]'s places when the size is valid.
    Picture {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// OpenH264 refused the input: the message of [`crate::CodecError::Decoder`].
    DecoderError(String),
    /// The decoded planes could not be read: the message of [`crate::CodecError::Conversion`].
    ConversionError(String),
}

const STATUS_READY: u8 = 1;
const STATUS_NO_PICTURE: u8 = 2;
const STATUS_PICTURE: u8 = 3;
const STATUS_DECODER_ERROR: u8 = 4;
const STATUS_CONVERSION_ERROR: u8 = 5;

/// Encodes an answer; a message longer than [`MAX_MESSAGE_LEN`] bytes is cut at a character
/// boundary.
pub(crate) fn encode_answer(seq: u32, answer: &Answer) -> [u8; ANSWER_LEN] {
    let (status, width, height, message) = match answer {
        Answer::Ready => (STATUS_READY, 0, 0, ""),
        Answer::NoPicture => (STATUS_NO_PICTURE, 0, 0, ""),
        Answer::Picture { width, height } => (STATUS_PICTURE, *width, *height, ""),
        Answer::DecoderError(m) => (STATUS_DECODER_ERROR, 0, 0, m.as_str()),
        Answer::ConversionError(m) => (STATUS_CONVERSION_ERROR, 0, 0, m.as_str()),
    };
    let mut end = message.len().min(MAX_MESSAGE_LEN);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let message = &message.as_bytes()[..end];
    let mut buf = [0; ANSWER_LEN];
    buf[..4].copy_from_slice(&ANSWER_MAGIC);
    buf[4..8].copy_from_slice(&seq.to_le_bytes());
    buf[8] = status;
    buf[12..16].copy_from_slice(&width.to_le_bytes());
    buf[16..20].copy_from_slice(&height.to_le_bytes());
    // `end <= MAX_MESSAGE_LEN < u16::MAX`.
    buf[20..22].copy_from_slice(&(end as u16).to_le_bytes());
    buf[ANSWER_HEADER_LEN..ANSWER_HEADER_LEN + end].copy_from_slice(message);
    buf
}

/// Parses an answer to request `seq` (0 for the ready answer). The error says what is wrong.
pub(crate) fn parse_answer(buf: &[u8; ANSWER_LEN], seq: u32) -> Result<Answer, String> {
    if buf[..4] != ANSWER_MAGIC {
        return Err("answer without magic".into());
    }
    let got_seq = u32::from_le_bytes(array(&buf[4..8]));
    if got_seq != seq {
        return Err(format!("answer {got_seq} to request {seq}"));
    }
    let width = u32::from_le_bytes(array(&buf[12..16]));
    let height = u32::from_le_bytes(array(&buf[16..20]));
    let message_len = usize::from(u16::from_le_bytes(array(&buf[20..22])));
    if buf[9..12].iter().chain(&buf[22..24]).any(|&b| b != 0) {
        return Err("reserved bytes set".into());
    }
    if message_len > MAX_MESSAGE_LEN {
        return Err(format!("message length {message_len}"));
    }
    let (message, padding) = buf[ANSWER_HEADER_LEN..].split_at(message_len);
    if padding.iter().any(|&b| b != 0) {
        return Err("bytes after the message".into());
    }
    let status = buf[8];
    let has_size = width != 0 || height != 0;
    let text = || {
        String::from_utf8_lossy(message)
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect::<String>()
    };
    let answer = match status {
        STATUS_READY if seq == 0 => Answer::Ready,
        STATUS_NO_PICTURE => Answer::NoPicture,
        STATUS_PICTURE => Answer::Picture { width, height },
        STATUS_DECODER_ERROR => Answer::DecoderError(text()),
        STATUS_CONVERSION_ERROR => Answer::ConversionError(text()),
        _ => return Err(format!("status {status} to request {seq}")),
    };
    let sized = matches!(answer, Answer::Picture { .. });
    let says = matches!(answer, Answer::DecoderError(_) | Answer::ConversionError(_));
    if (has_size && !sized) || (message_len > 0 && !says) {
        return Err(format!("fields that status {status} does not have"));
    }
    Ok(answer)
}

/// Where the I420 planes of a `width` x `height` picture lie in the shared memory: tightly
/// packed, luma then blue then red chroma, chroma `ceil(width / 2)` x `ceil(height / 2)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) y: Range<usize>,
    pub(crate) u: Range<usize>,
    pub(crate) v: Range<usize>,
    pub(crate) y_stride: usize,
    pub(crate) uv_stride: usize,
    /// Rows of the chroma planes.
    pub(crate) uv_rows: usize,
}

impl Layout {
    /// The layout, or `None` if the picture is empty or its planes do not fit in `shm_len`
    /// bytes.
    pub(crate) fn new(width: u32, height: u32, shm_len: usize) -> Option<Self> {
        let (w, h) = (usize::try_from(width).ok()?, usize::try_from(height).ok()?);
        if w == 0 || h == 0 {
            return None;
        }
        let (uv_stride, uv_rows) = (w.div_ceil(2), h.div_ceil(2));
        let y_len = w.checked_mul(h)?;
        let uv_len = uv_stride.checked_mul(uv_rows)?;
        let u_start = y_len;
        let v_start = u_start.checked_add(uv_len)?;
        let end = v_start.checked_add(uv_len)?;
        (end <= shm_len).then_some(Self {
            y: 0..y_len,
            u: u_start..v_start,
            v: v_start..end,
            y_stride: w,
            uv_stride,
            uv_rows,
        })
    }
}

/// The first `N` bytes of `bytes`, which callers slice to exactly `N`.
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let init = Init {
            shm_len: SHM_LEN as u64,
            parent_pid: 4242,
        };
        assert_eq!(Init::parse(&init.encode()), Some(init));
        let header = RequestHeader { seq: 7, len: 1234 };
        assert_eq!(RequestHeader::parse(&header.encode()), Some(header));
        assert_eq!(RequestHeader::parse(&[0; REQUEST_HEADER_LEN]), None);
        for (seq, answer) in [
            (0, Answer::Ready),
            (1, Answer::NoPicture),
            (
                2,
                Answer::Picture {
                    width: 1920,
                    height: 1080,
                },
            ),
            (3, Answer::DecoderError("bad slice".into())),
            (4, Answer::ConversionError("short plane".into())),
        ] {
            assert_eq!(parse_answer(&encode_answer(seq, &answer), seq), Ok(answer));
        }
    }

    #[test]
    fn long_messages_are_cut_at_a_character() {
        // 3-byte characters: MAX_MESSAGE_LEN (232) falls inside one.
        let long = "€".repeat(MAX_MESSAGE_LEN);
        let buf = encode_answer(1, &Answer::DecoderError(long));
        let Ok(Answer::DecoderError(cut)) = parse_answer(&buf, 1) else {
            panic!("not a decoder error");
        };
        assert_eq!(cut.len(), MAX_MESSAGE_LEN / 3 * 3);
        assert!(cut.chars().all(|c| c == '€'));
    }

    #[test]
    fn bad_answers_are_refused() {
        let good = encode_answer(5, &Answer::NoPicture);
        assert!(
            parse_answer(&good, 6)
                .unwrap_err()
                .contains("answer 5 to request 6")
        );
        let mutate = |at: usize, value: u8| {
            let mut buf = good;
            buf[at] = value;
            parse_answer(&buf, 5)
        };
        assert!(mutate(0, b'x').is_err()); // magic
        assert!(mutate(8, 0).is_err()); // unknown status
        assert!(mutate(8, 99).is_err());
        assert!(mutate(8, STATUS_READY).is_err()); // ready only as the first answer
        assert!(mutate(10, 1).is_err()); // reserved
        assert!(mutate(12, 1).is_err()); // a size on a no-picture answer
        assert!(mutate(21, 0xff).is_err()); // message length
        assert!(mutate(20, 3).is_err()); // a message on a no-picture answer
        assert!(mutate(ANSWER_LEN - 1, 1).is_err()); // bytes after the message
        // Control characters in a message are neutralised.
        let buf = encode_answer(1, &Answer::DecoderError("a\nb\u{1b}[2J".into()));
        assert_eq!(
            parse_answer(&buf, 1),
            Ok(Answer::DecoderError("a?b?[2J".into()))
        );
        // Invalid UTF-8 is replaced, not refused.
        let mut buf = encode_answer(1, &Answer::DecoderError("ab".into()));
        buf[ANSWER_HEADER_LEN] = 0xff;
        assert_eq!(
            parse_answer(&buf, 1),
            Ok(Answer::DecoderError("\u{fffd}b".into()))
        );
        // Every mutation of every byte of every kind of answer parses or errs, never panics.
        for answer in [
            Answer::Picture {
                width: 64,
                height: 64,
            },
            Answer::DecoderError("x".into()),
        ] {
            let buf = encode_answer(9, &answer);
            for at in 0..ANSWER_LEN {
                for value in [0, 1, 0x7f, 0x80, 0xff] {
                    let mut bad = buf;
                    bad[at] = value;
                    let _ = parse_answer(&bad, 9);
                }
            }
        }
    }

    #[test]
    fn layouts_fit_every_valid_picture() {
        let n = MAX_DECODED_PIXELS;
        for (w, h) in [
            (1920, 1080),
            (4096, 2304),
            (1, 1),
            (3, 5),
            (1, n),
            (n, 1),
            (3, n / 3),
            (4095, n / 4095),
        ] {
            let (w, h) = (u32::try_from(w).unwrap(), u32::try_from(h).unwrap());
            assert!(u64::from(w) * u64::from(h) <= n);
            let layout = Layout::new(w, h, SHM_LEN).unwrap_or_else(|| panic!("{w}x{h}"));
            assert_eq!(layout.y.len(), w as usize * h as usize);
            assert_eq!(layout.u.len(), layout.v.len());
            assert_eq!(layout.u.len(), layout.uv_stride * layout.uv_rows);
            assert!(layout.v.end <= SHM_LEN);
        }
        let layout = Layout::new(1920, 1080, SHM_LEN).unwrap();
        assert_eq!(
            (layout.u.start, layout.v.start, layout.v.end),
            (1920 * 1080, 1920 * 1080 * 5 / 4, 1920 * 1080 * 3 / 2)
        );
        assert_eq!(Layout::new(0, 10, SHM_LEN), None);
        assert_eq!(Layout::new(u32::MAX, u32::MAX, SHM_LEN), None);
        assert_eq!(Layout::new(1920, 1080, 1920 * 1080), None);
    }
}
