//! Length-prefixed frames: `u32` big-endian length, then a version byte, then postcard.
//!
//! The length is checked against a maximum before anything is allocated, so a peer cannot
//! make a node allocate gigabytes; a frame of another protocol version, or one that does not
//! decode, is an error that closes the stream, never a panic.

use crate::protocol::PROTOCOL_VERSION;
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame accepted (snapshots travel in one frame).
pub const MAX_FRAME: usize = 256 << 20;

#[derive(Debug, Error)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("empty frame")]
    Empty,
    #[error("protocol version {got}, expected {PROTOCOL_VERSION}")]
    Version { got: u8 },
    #[error("undecodable frame: {0}")]
    Decode(#[from] postcard::Error),
    #[error("stream ended inside a frame")]
    Truncated,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes `value` as one frame (length, version, payload).
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, FrameError> {
    let mut frame = vec![0u8; 5];
    frame[4] = PROTOCOL_VERSION;
    let mut frame = postcard::to_extend(value, frame)?;
    let len = frame.len() - 4;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    frame[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(frame)
}

/// Decodes a frame body (version byte + payload, without the length prefix).
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    let (&version, payload) = body.split_first().ok_or(FrameError::Empty)?;
    if version != PROTOCOL_VERSION {
        return Err(FrameError::Version { got: version });
    }
    Ok(postcard::from_bytes(payload)?)
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    out: &mut W,
    value: &T,
) -> Result<(), FrameError> {
    out.write_all(&encode(value)?).await?;
    Ok(())
}

/// Reads one frame; `Ok(None)` at a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(
    input: &mut R,
) -> Result<Option<T>, FrameError> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    input.read_exact(&mut body).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            FrameError::Truncated
        } else {
            FrameError::Io(e)
        }
    })?;
    decode_body(&body).map(Some)
}
