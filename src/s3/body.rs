//! Response bodies: one chunk for small reads, a bounded channel fed by a reader task on the
//! owning core for large ones (backpressure: the reader waits for room before each read; a
//! dropped receiver means the client left, and the reader stops).

use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bale_io::{Object, Shard};
use bytes::Bytes;
use futures::channel::mpsc;
use futures::{SinkExt, Stream};
use s3s::dto::StreamingBlob;
use s3s::stream::{ByteStream, RemainingLength};
use s3s::StdError;

use super::limits::READ_WINDOW_BYTES;

/// Chunks in flight between the reader task and the connection (each up to READ_WINDOW_BYTES).
const CHANNEL_CHUNKS: usize = 1;

struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
    remaining_bytes: usize,
}

impl Stream for ChannelBody {
    type Item = Result<Bytes, StdError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match Pin::new(&mut self.rx).poll_next(cx) {
            Poll::Ready(Some(Ok(b))) => {
                self.remaining_bytes = self.remaining_bytes.saturating_sub(b.len());
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) if self.remaining_bytes > 0 => {
                // The producer ended without every byte: never end the body cleanly (the
                // connection is cut, so a short body never looks like a complete answer).
                self.remaining_bytes = 0;
                Poll::Ready(Some(Err(Box::new(std::io::Error::other(
                    "response body ended early",
                )))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining_bytes, Some(self.remaining_bytes))
    }
}

impl ByteStream for ChannelBody {
    fn remaining_length(&self) -> RemainingLength {
        RemainingLength::new_exact(self.remaining_bytes)
    }
}

/// A body of exactly `len_bytes` fed through `rx` by a producer task (an error item, or the
/// channel closing early, cuts it).
pub fn channel_blob(
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
    len_bytes: usize,
) -> StreamingBlob {
    StreamingBlob::new(ChannelBody {
        rx,
        remaining_bytes: len_bytes,
    })
}

pub fn whole(b: Bytes) -> StreamingBlob {
    StreamingBlob::from(s3s::Body::from(b))
}

/// Streams `[start, end)` of `obj`: spawns the reader on the current (owning) core.
pub fn stream(shard: Rc<Shard>, obj: Object, start: u64, end: u64) -> StreamingBlob {
    let (mut tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    let len = (end - start) as usize;
    let request_id = crate::logging::current_request_id();
    monoio::spawn(crate::logging::with_request_id(request_id, async move {
        let mut off = start;
        while off < end {
            let n = READ_WINDOW_BYTES.min(end - off);
            let item = shard.read(&obj, off, n).await.map_err(|e| {
                tracing::error!(error = %e, "read failed mid-stream; closing response");
                std::io::Error::other(e.to_string())
            });
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break; // client gone, or error delivered
            }
            off += n;
        }
    }));
    channel_blob(rx, len)
}
