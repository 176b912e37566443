//! Raft messages too large for one peer frame (an InstallSnapshot carries the whole state
//! machine) travel as a run of [`PeerFrame::Chunk`] frames, so that the per-frame limit can
//! stay at a few MiB while a snapshot may be much larger.
//!
//! The sender postcard-encodes the message once and cuts the bytes into chunks that each fit
//! in a frame; every chunk announces the total. The receiver refuses a total over its
//! configured bound at the first chunk, grows its buffer only as chunks arrive, and decodes
//! the message once the total is reached. The chunks of one message are consecutive on the
//! stream: anything else in between is a protocol error.
//!
//! [`PeerFrame::Chunk`]: crate::protocol::PeerFrame::Chunk

use super::framing::FrameError;
use serde::Serialize;
use thiserror::Error;

/// Room a chunk frame needs besides its data: the version byte, the variant index, the
/// total and the data length (varints of at most 10 and 5 bytes), with margin.
const CHUNK_OVERHEAD: usize = 32;

/// A chunk frame borrowing its data: encodes exactly like `PeerFrame::Chunk` (a test in
/// `peers` checks the whole borrowed frame type).
#[derive(Serialize)]
pub(crate) struct ChunkRef<'a> {
    pub total: u64,
    pub data: &'a [u8],
}

/// Cuts `message` (a postcard encoding) into chunk frames of at most `max_frame` bytes,
/// each made by `frame` from a [`ChunkRef`] (so that the caller owns the frame type).
pub(crate) fn frames<'a, F>(
    message: &'a [u8],
    max_frame: usize,
    frame: F,
) -> impl Iterator<Item = Result<Vec<u8>, FrameError>> + 'a
where
    F: Fn(ChunkRef<'a>) -> Result<Vec<u8>, FrameError> + 'a,
{
    let step = max_frame.saturating_sub(CHUNK_OVERHEAD).max(1);
    let total = message.len() as u64;
    message
        .chunks(step)
        .map(move |data| frame(ChunkRef { total, data }))
}

/// Why a run of chunks was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error("chunked message of {total} bytes exceeds the {max}-byte limit")]
    TooLarge { total: u64, max: usize },
    #[error("empty chunk")]
    Empty,
    #[error("chunk announces a total of {now} bytes inside a message of {was}")]
    TotalChanged { was: usize, now: u64 },
    #[error("chunks overrun their announced total of {total} bytes")]
    Overrun { total: usize },
}

/// The receiving side: at most one message being put together, of at most `max` bytes.
#[derive(Debug)]
pub(crate) struct Reassembly {
    max: usize,
    /// The announced total and the bytes so far.
    partial: Option<(usize, Vec<u8>)>,
}

impl Reassembly {
    pub(crate) fn new(max: usize) -> Reassembly {
        Reassembly { max, partial: None }
    }

    /// A message is half-way: the next frame must be its next chunk.
    pub(crate) fn in_progress(&self) -> bool {
        self.partial.is_some()
    }

    /// Adds a chunk; returns the whole message's bytes when this chunk completes it.
    pub(crate) fn push(
        &mut self,
        total: u64,
        data: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, ChunkError> {
        if data.is_empty() {
            return Err(ChunkError::Empty);
        }
        let (expected, mut bytes) = match self.partial.take() {
            Some((expected, bytes)) => {
                if total != expected as u64 {
                    return Err(ChunkError::TotalChanged {
                        was: expected,
                        now: total,
                    });
                }
                (expected, bytes)
            }
            None => {
                let expected = usize::try_from(total)
                    .ok()
                    .filter(|&t| t <= self.max)
                    .ok_or(ChunkError::TooLarge {
                        total,
                        max: self.max,
                    })?;
                // Grow with the chunks that arrive rather than trusting the total.
                (expected, Vec::with_capacity(data.len()))
            }
        };
        if bytes.len() + data.len() > expected {
            return Err(ChunkError::Overrun { total: expected });
        }
        bytes.extend_from_slice(&data);
        if bytes.len() == expected {
            Ok(Some(bytes))
        } else {
            self.partial = Some((expected, bytes));
            Ok(None)
        }
    }
}

/// Encodes a message for chunking, refusing one over `max` bytes (the receiver would).
pub(crate) fn encode_message<T: Serialize>(message: &T, max: usize) -> Result<Vec<u8>, FrameError> {
    let bytes = postcard::to_allocvec(message)?;
    if bytes.len() > max {
        return Err(FrameError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::framing;

    fn chunks_of(message: &[u8], max_frame: usize) -> Vec<(u64, Vec<u8>)> {
        frames(message, max_frame, |c| {
            framing::encode_limited(&(c.total, c.data), max_frame)
        })
        .map(|f| {
            let f = f.expect("every chunk fits its frame");
            framing::decode_frame::<(u64, Vec<u8>)>(&f, max_frame)
                .expect("decodes")
                .0
        })
        .collect()
    }

    #[test]
    fn chunks_fit_their_frames_and_reassemble() {
        let message: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let chunks = chunks_of(&message, 1000);
        assert!(chunks.len() > 10);
        let mut r = Reassembly::new(message.len());
        let mut whole = None;
        for (i, (total, data)) in chunks.iter().cloned().enumerate() {
            assert!(whole.is_none(), "completed early at chunk {i}");
            whole = r.push(total, data).expect("accepted");
            assert_eq!(r.in_progress(), whole.is_none());
        }
        assert_eq!(whole, Some(message));
    }

    #[test]
    fn bad_runs_of_chunks_are_refused() {
        let mut r = Reassembly::new(100);
        assert_eq!(
            r.push(101, vec![1]),
            Err(ChunkError::TooLarge {
                total: 101,
                max: 100
            })
        );
        assert_eq!(r.push(10, vec![]), Err(ChunkError::Empty));
        assert_eq!(r.push(10, vec![1; 4]), Ok(None));
        assert_eq!(
            r.push(11, vec![1; 4]),
            Err(ChunkError::TotalChanged { was: 10, now: 11 })
        );
        let mut r = Reassembly::new(100);
        assert_eq!(r.push(10, vec![1; 8]), Ok(None));
        assert_eq!(
            r.push(10, vec![1; 3]),
            Err(ChunkError::Overrun { total: 10 })
        );
        assert!(encode_message(&vec![0u8; 200], 100).is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_run_of_chunks_is_put_together_within_the_bound_or_refused(
            chunks in proptest::collection::vec((0u64..300, 0usize..120), 0..20),
        ) {
            let max = 200;
            let mut r = Reassembly::new(max);
            for (total, len) in chunks {
                match r.push(total, vec![7; len]) {
                    Ok(Some(bytes)) => proptest::prop_assert_eq!(bytes.len() as u64, total),
                    Ok(None) => {}
                    // A refused run ends the stream.
                    Err(e) => {
                        proptest::prop_assert!(!e.to_string().is_empty());
                        break;
                    }
                }
                let held = r.partial.as_ref().map_or(0, |(_, b)| b.len());
                proptest::prop_assert!(held <= max);
            }
        }
    }
}
