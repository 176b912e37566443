//! Length-prefixed frames: `u32` big-endian length, then a version byte, then postcard.
//!
//! ```text
//! ┌──────────────┬─────────┬──────────────────────────┐
//! │ len: u32 BE  │ version │ postcard payload         │   len = 1 + payload bytes
//! └──────────────┴─────────┴──────────────────────────┘
//! ```
//!
//! Each kind of frame has its own limit (a Hello, a client request, a response, a peer frame
//! whose limit comes from the configuration), checked against the length before anything
//! else is read; the body buffer grows only as bytes actually arrive, so a peer cannot make
//! a node allocate gigabytes by announcing them, and a reader can give a frame a deadline so
//! that a stalled sender cannot hold even that buffer forever. A frame of another protocol
//! version, one that does not decode, one with bytes left over after its value, or a stream
//! that ends inside a frame (even inside the 4-byte length) is an error that closes the
//! stream, never a panic. Only an end of stream exactly between two frames is a clean end.

use crate::protocol::PROTOCOL_VERSION;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame of any kind: what [`encode`] and [`read_frame`] accept, and the most a
/// configuration may allow for a peer frame.
pub const MAX_FRAME: usize = 64 << 20;
/// Smallest peer frame limit a configuration may set: room for a full batch of ordinary
/// messages, and for chunks that are not absurdly many.
pub const MIN_PEER_FRAME: usize = 64 << 10;
/// Largest `Hello`: it carries one node id, so anything bigger is not a Hello.
pub const MAX_HELLO_FRAME: usize = 64;
/// Largest client request a node accepts: requests are small, so a client gets a much
/// tighter limit than a peer; room for the largest value allowed
/// ([`crate::config::MAX_VALUE_BYTES`]) and 64 KiB of key and envelope.
pub const MAX_REQUEST_FRAME: usize = (1 << 20) + (64 << 10);
/// Largest response a client accepts: a read answers with the whole value (at most
/// `[sessions] max_value_bytes` on a node of this version, more on an older one).
pub const MAX_RESPONSE_FRAME: usize = MAX_FRAME;
/// Bytes of the length prefix.
pub const LEN_BYTES: usize = 4;

/// Why a frame could not be written or read.
#[derive(Debug, Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("empty frame (no version byte)")]
    Empty,
    #[error("protocol version {got}, expected {PROTOCOL_VERSION}")]
    Version { got: u8 },
    #[error("undecodable frame: {0}")]
    Decode(#[from] postcard::Error),
    #[error("{0} unexpected bytes after the frame's value")]
    Trailing(usize),
    #[error("stream ended inside a frame")]
    Truncated,
    #[error("frame not complete within {0:?}")]
    TimedOut(Duration),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes `value` as one frame (length, version, payload); frames over [`MAX_FRAME`] are
/// refused.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, FrameError> {
    encode_limited(value, MAX_FRAME)
}

/// Encodes `value` as one frame of at most `max` bytes (the length prefix not counted).
pub fn encode_limited<T: Serialize>(value: &T, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut frame = vec![0u8; LEN_BYTES + 1];
    frame[LEN_BYTES] = PROTOCOL_VERSION;
    let mut frame = postcard::to_extend(value, frame)?;
    let len = frame.len() - LEN_BYTES;
    let max = max.min(MAX_FRAME);
    let prefix = u32::try_from(len)
        .ok()
        .filter(|_| len <= max)
        .ok_or(FrameError::TooLarge { len, max })?;
    frame[..LEN_BYTES].copy_from_slice(&prefix.to_be_bytes());
    Ok(frame)
}

/// The payload of a frame body (version byte + payload), once its version is checked:
/// lets a reader look at what a payload announces before decoding it.
pub fn payload(body: &[u8]) -> Result<&[u8], FrameError> {
    let (&version, payload) = body.split_first().ok_or(FrameError::Empty)?;
    if version != PROTOCOL_VERSION {
        return Err(FrameError::Version { got: version });
    }
    Ok(payload)
}

/// Decodes a frame body (version byte + payload, without the length prefix). The payload
/// must be exactly one value.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    decode_exact(payload(body)?)
}

/// Decodes `bytes` as exactly one postcard value.
pub fn decode_exact<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FrameError> {
    let (value, rest) = postcard::take_from_bytes(bytes)?;
    if !rest.is_empty() {
        return Err(FrameError::Trailing(rest.len()));
    }
    Ok(value)
}

/// Decodes the frame at the start of `buf`, accepting frames up to `max` bytes; returns the
/// value and the number of bytes the frame took. An incomplete frame is
/// [`FrameError::Truncated`].
pub fn decode_frame<T: DeserializeOwned>(buf: &[u8], max: usize) -> Result<(T, usize), FrameError> {
    let prefix: [u8; LEN_BYTES] = buf
        .get(..LEN_BYTES)
        .and_then(|p| p.try_into().ok())
        .ok_or(FrameError::Truncated)?;
    let len = body_len(prefix, max)?;
    let body = buf
        .get(LEN_BYTES..LEN_BYTES + len)
        .ok_or(FrameError::Truncated)?;
    Ok((decode_body(body)?, LEN_BYTES + len))
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    out: &mut W,
    value: &T,
) -> Result<(), FrameError> {
    out.write_all(&encode(value)?).await?;
    Ok(())
}

/// Reads one frame of at most [`MAX_FRAME`] bytes; `Ok(None)` at a clean end of stream
/// between frames.
pub async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(
    input: &mut R,
) -> Result<Option<T>, FrameError> {
    read_frame_limited(input, MAX_FRAME).await
}

/// Reads one frame of at most `max` bytes; `Ok(None)` at a clean end of stream between
/// frames, [`FrameError::Truncated`] if the stream ends anywhere inside one.
pub async fn read_frame_limited<R: AsyncRead + Unpin, T: DeserializeOwned>(
    input: &mut R,
    max: usize,
) -> Result<Option<T>, FrameError> {
    match read_body_from(input, [0; LEN_BYTES], 0, max).await? {
        Some(body) => decode_body(&body).map(Some),
        None => Ok(None),
    }
}

/// When the time allowed for a frame starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deadline {
    /// Now: the frame must have arrived whole within the timeout (a client's request,
    /// a peer's Hello).
    Now,
    /// At the frame's first byte: waiting between frames is free (a peer stream is idle
    /// between batches), but a frame once started must complete within the timeout.
    FirstByte,
}

/// Reads one frame body (version byte + payload) of at most `max` bytes, undecoded, within
/// `timeout` counted from `deadline`; `Ok(None)` at a clean end of stream between frames.
/// A frame that does not complete in time is [`FrameError::TimedOut`]: a stalled sender
/// cannot hold the reader's buffer forever.
pub async fn read_body_within<R: AsyncRead + Unpin>(
    input: &mut R,
    max: usize,
    timeout: Duration,
    deadline: Deadline,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut prefix = [0u8; LEN_BYTES];
    let filled = match deadline {
        Deadline::Now => 0,
        Deadline::FirstByte => {
            if input.read(&mut prefix[..1]).await? == 0 {
                return Ok(None);
            }
            1
        }
    };
    tokio::time::timeout(timeout, read_body_from(input, prefix, filled, max))
        .await
        .map_err(|_| FrameError::TimedOut(timeout))?
}

/// Reads the rest of a frame whose first `filled` prefix bytes are already in `prefix`.
async fn read_body_from<R: AsyncRead + Unpin>(
    input: &mut R,
    mut prefix: [u8; LEN_BYTES],
    mut filled: usize,
    max: usize,
) -> Result<Option<Vec<u8>>, FrameError> {
    while filled < LEN_BYTES {
        match input.read(&mut prefix[filled..]).await? {
            0 if filled == 0 => return Ok(None),
            0 => return Err(FrameError::Truncated),
            n => filled += n,
        }
    }
    let len = body_len(prefix, max)?;
    // Grow with the data actually received rather than trusting the announced length.
    let mut body = Vec::with_capacity(len.min(64 << 10));
    (&mut *input)
        .take(len as u64)
        .read_to_end(&mut body)
        .await?;
    if body.len() < len {
        return Err(FrameError::Truncated);
    }
    Ok(Some(body))
}

fn body_len(prefix: [u8; LEN_BYTES], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    if len == 0 {
        return Err(FrameError::Empty);
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Request;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn end_inside_the_length_prefix_is_truncated_not_a_clean_end() {
        for cut in 1..LEN_BYTES {
            let frame = encode(&Request::Status).unwrap();
            let mut input = &frame[..cut];
            let got = block_on(read_frame::<_, Request>(&mut input));
            assert!(matches!(got, Err(FrameError::Truncated)), "{cut}: {got:?}");
        }
        let mut empty: &[u8] = &[];
        assert!(matches!(
            block_on(read_frame::<_, Request>(&mut empty)),
            Ok(None)
        ));
    }

    #[test]
    fn end_inside_the_body_is_truncated() {
        let frame = encode(&Request::Status).unwrap();
        let mut input = &frame[..frame.len() - 1];
        let got = block_on(read_frame::<_, Request>(&mut input));
        assert!(matches!(got, Err(FrameError::Truncated)), "{got:?}");
    }

    #[test]
    fn limits_version_and_trailing_bytes_are_checked() {
        let mut big: &[u8] = &[0x7f, 0xff, 0xff, 0xff, PROTOCOL_VERSION];
        let got = block_on(read_frame_limited::<_, Request>(&mut big, 1024));
        assert!(matches!(got, Err(FrameError::TooLarge { .. })), "{got:?}");

        let mut frame = encode(&Request::Status).unwrap();
        frame[LEN_BYTES] = PROTOCOL_VERSION.wrapping_add(1);
        let got = decode_frame::<Request>(&frame, MAX_FRAME);
        assert!(matches!(got, Err(FrameError::Version { .. })), "{got:?}");

        let mut frame = encode(&Request::Status).unwrap();
        frame.push(0);
        let len = (frame.len() - LEN_BYTES) as u32;
        frame[..LEN_BYTES].copy_from_slice(&len.to_be_bytes());
        let got = decode_frame::<Request>(&frame, MAX_FRAME);
        assert!(matches!(got, Err(FrameError::Trailing(1))), "{got:?}");

        let got = decode_frame::<Request>(&[0, 0, 0, 0], MAX_FRAME);
        assert!(matches!(got, Err(FrameError::Empty)), "{got:?}");
    }

    #[test]
    fn frames_follow_each_other() {
        let mut bytes = encode(&Request::Status).unwrap();
        bytes.extend(encode(&Request::Status).unwrap());
        let mut input = &bytes[..];
        block_on(async {
            for _ in 0..2 {
                let got: Option<Request> = read_frame(&mut input).await.unwrap();
                assert_eq!(got, Some(Request::Status));
            }
            assert!(read_frame::<_, Request>(&mut input)
                .await
                .unwrap()
                .is_none());
        });
    }
}
