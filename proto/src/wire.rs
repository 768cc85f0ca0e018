//! Message framing shared by every quicdesk stream that carries messages: a 4-byte big-endian
//! length, then that many bytes of postcard. Every reader states its own maximum length, so an
//! oversized frame is refused before anything is allocated for it.
//!
//! [`decode`] works on byte slices and reports an incomplete frame rather than blocking; the async
//! helpers [`read_msg`] and [`write_msg`] wrap it for streams.

use serde::Serialize;
use serde::de::DeserializeOwned;
#[cfg(feature = "quic")]
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Length of the frame header.
pub const HEADER_LEN: usize = 4;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    #[error("message of {len} bytes exceeds the limit of {max}")]
    TooLong { len: usize, max: usize },
    #[error("malformed message: {0}")]
    Malformed(#[from] postcard::Error),
    #[error("stream ended in the middle of a message")]
    Truncated,
    #[error("stream i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Serializes `msg` into a frame. Fails if the encoding is longer than `max`.
pub fn encode<T: Serialize>(msg: &T, max: usize) -> Result<Vec<u8>, WireError> {
    let mut out = vec![0u8; HEADER_LEN];
    out = postcard::to_extend(msg, out)?;
    let len = out.len() - HEADER_LEN;
    if len > max {
        return Err(WireError::TooLong { len, max });
    }
    // len <= max, and every max used in the project fits in u32
    out[..HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(out)
}

/// Decodes one frame from the front of `buf`. `Ok(None)` means more bytes are needed;
/// `Ok(Some((msg, used)))` gives the message and how many bytes it took.
pub fn decode<T: DeserializeOwned>(
    buf: &[u8],
    max: usize,
) -> Result<Option<(T, usize)>, WireError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let len = frame_len(header, max)?;
    let Some(body) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
        return Ok(None);
    };
    Ok(Some((decode_body(body)?, HEADER_LEN + len)))
}

fn frame_len(header: &[u8], max: usize) -> Result<usize, WireError> {
    let mut b = [0u8; HEADER_LEN];
    b.copy_from_slice(header);
    let len = u32::from_be_bytes(b) as usize;
    if len > max {
        return Err(WireError::TooLong { len, max });
    }
    Ok(len)
}

fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    let (msg, rest) = postcard::take_from_bytes(body)?;
    if !rest.is_empty() {
        return Err(WireError::Malformed(
            postcard::Error::DeserializeBadEncoding,
        ));
    }
    Ok(msg)
}

#[cfg(feature = "quic")]
/// Reads one frame's body as raw bytes. `Ok(None)` on a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Option<Vec<u8>>, WireError> {
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        let n = r.read(&mut header[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(WireError::Truncated)
            };
        }
        got += n;
    }
    let len = frame_len(&header, max)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            WireError::Truncated
        } else {
            WireError::Io(e)
        }
    })?;
    Ok(Some(body))
}

#[cfg(feature = "quic")]
/// Reads one message. `Ok(None)` on a clean end of stream between messages.
pub async fn read_msg<T: DeserializeOwned, R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Option<T>, WireError> {
    match read_frame(r, max).await? {
        Some(body) => Ok(Some(decode_body(&body)?)),
        None => Ok(None),
    }
}

#[cfg(feature = "quic")]
/// Writes one message.
pub async fn write_msg<T: Serialize, W: AsyncWrite + Unpin>(
    w: &mut W,
    msg: &T,
    max: usize,
) -> Result<(), WireError> {
    let frame = encode(msg, max)?;
    w.write_all(&frame).await?;
    Ok(())
}

#[cfg(feature = "quic")]
/// Writes raw bytes as one frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    body: &[u8],
    max: usize,
) -> Result<(), WireError> {
    if body.len() > max {
        return Err(WireError::TooLong {
            len: body.len(),
            max,
        });
    }
    w.write_all(&(body.len() as u32).to_be_bytes()).await?;
    w.write_all(body).await?;
    Ok(())
}

// The tests frame rendezvous messages and use the async framing.
#[cfg(all(test, feature = "quic"))]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    enum Msg {
        A(u32),
        B(String),
    }

    #[test]
    fn round_trip_and_incomplete() {
        let frame = encode(&Msg::B("hello".into()), 100).unwrap();
        for cut in 0..frame.len() {
            assert!(decode::<Msg>(&frame[..cut], 100).unwrap().is_none());
        }
        let (m, used) = decode::<Msg>(&frame, 100).unwrap().unwrap();
        assert_eq!(m, Msg::B("hello".into()));
        assert_eq!(used, frame.len());
    }

    #[test]
    fn oversized_and_malformed_are_errors() {
        let frame = encode(&Msg::B("x".repeat(50)), 1000).unwrap();
        assert!(matches!(
            decode::<Msg>(&frame, 10),
            Err(WireError::TooLong { .. })
        ));
        assert!(matches!(
            encode(&Msg::B("x".repeat(50)), 10),
            Err(WireError::TooLong { .. })
        ));
        let mut bad = vec![0, 0, 0, 2, 9, 9];
        assert!(matches!(
            decode::<Msg>(&bad, 100),
            Err(WireError::Malformed(_))
        ));
        // trailing garbage inside a frame
        bad = encode(&Msg::A(1), 100).unwrap();
        bad.push(0);
        bad[3] += 1;
        assert!(matches!(
            decode::<Msg>(&bad, 100),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 24) as usize;
            let bytes: Vec<u8> = (0..len).map(|i| (x >> (i % 8 * 8)) as u8).collect();
            let _ = decode::<Msg>(&bytes, 64);
            let _ = decode::<crate::rendezvous::ClientMsg>(&bytes, 64);
            let _ = decode::<crate::rendezvous::ServerMsg>(&bytes, 64);
        }
    }

    /// Random bodies behind a correct length header, so they reach postcard: every complete
    /// frame is a message or `Malformed`, never a panic, and both happen.
    #[test]
    fn random_frames_reach_the_decoder_and_never_panic() {
        let (mut decoded, mut malformed) = (0, 0);
        let mut x: u64 = 0x2545f4914f6cdd1d;
        for _ in 0..50_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 48) as usize;
            let mut frame = (len as u32).to_be_bytes().to_vec();
            frame.extend((0..len).map(|i| (x.rotate_left(i as u32 * 7) % 7) as u8));
            let outcomes = [
                decode::<crate::rendezvous::ClientMsg>(&frame, 64).map(|m| m.is_some()),
                decode::<crate::rendezvous::ServerMsg>(&frame, 64).map(|m| m.is_some()),
            ];
            for outcome in outcomes {
                match outcome {
                    Ok(true) => decoded += 1,
                    Err(WireError::Malformed(_)) => malformed += 1,
                    other => panic!("a complete frame gave {other:?}"),
                }
            }
        }
        assert!(decoded > 100 && malformed > 100, "{decoded} {malformed}");
    }

    #[tokio::test]
    async fn async_stream_round_trip_and_truncation() {
        let mut buf = Vec::new();
        write_msg(&mut buf, &Msg::A(7), 100).await.unwrap();
        write_msg(&mut buf, &Msg::B("z".into()), 100).await.unwrap();
        let mut r = &buf[..];
        assert_eq!(
            read_msg::<Msg, _>(&mut r, 100).await.unwrap(),
            Some(Msg::A(7))
        );
        assert_eq!(
            read_msg::<Msg, _>(&mut r, 100).await.unwrap(),
            Some(Msg::B("z".into()))
        );
        assert_eq!(read_msg::<Msg, _>(&mut r, 100).await.unwrap(), None);
        let mut short = &buf[..buf.len() - 1];
        read_msg::<Msg, _>(&mut short, 100).await.unwrap();
        assert!(matches!(
            read_msg::<Msg, _>(&mut short, 100).await,
            Err(WireError::Truncated)
        ));
    }
}
