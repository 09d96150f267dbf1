//! Serving a big whole-object miss while it arrives: one task on the key's owner core reads
//! the upstream body and hands every chunk both to the client (a bounded channel) and to the
//! local entry's `PutWriter`, which commits only when every byte the upstream announced
//! arrived.
//!
//! - Pace: the slower of client and disk. At most [`STREAM_WINDOW_BYTES`] wait between this
//!   task and the client's connection (chunks are cut to [`STREAM_CHUNK_BYTES`]).
//! - The client goes away (its channel closes), or does not take a chunk within the upstream
//!   timeout: the fill goes on alone (bounded by the announced length and the upstream's
//!   per-chunk timeout) and commits, so the next reader hits.
//! - The upstream fails, stalls past its timeout, sends more or fewer bytes than its
//!   Content-Length: the client's body ends with an error (the connection is cut: never a
//!   complete-looking short 200) and the `PutWriter` is dropped without `finish`: no local
//!   entry, the next read fetches again.
//! - A local write that fails stops the fill only; the client keeps receiving the upstream's
//!   bytes.
//! - Single flight: the task holds the key's flight until the commit (or the failure), so a
//!   concurrent reader of the key waits and then hits the committed entry (or, after a
//!   failure, fetches itself).

use std::rc::Rc;
use std::time::Duration;

use bale_io::{Expect, PutWriter, Shard};
use bytes::Bytes;
use futures::channel::mpsc;
use futures::SinkExt;
use s3s::dto::StreamingBlob;

use super::local::{self, Lead};
use super::upstream::UpResponse;

/// Largest chunk handed to the client's connection, bytes (bigger upstream chunks are cut,
/// without a copy).
pub const STREAM_CHUNK_BYTES: usize = 256 << 10;
/// Chunks the channel to the client holds besides the one its sender may add.
const STREAM_CHANNEL_CHUNKS: usize = 3;
/// Most bytes waiting between the fill and the client: the channel's chunks plus the
/// sender's own slot.
pub const STREAM_WINDOW_BYTES: usize = (STREAM_CHANNEL_CHUNKS + 1) * STREAM_CHUNK_BYTES;

type Item = Result<Bytes, std::io::Error>;

/// What the fill stores: where, how long, with which metadata.
pub struct Fill {
    pub shard: Rc<Shard>,
    pub bucket: String,
    pub key: String,
    pub len_bytes: u64,
    /// Encoded `ObjMeta` of the entry.
    pub meta: Bytes,
    pub capacity_bytes: u64,
    /// How long the client may take to accept a chunk before the fill goes on without it.
    pub client_timeout: Duration,
}

/// Starts the fill of `resp` (a 200 of `fill.len_bytes` bytes) on this core and returns the
/// client's body. `lead` (the key's flight) is held until the fill ends.
pub fn start(fill: Fill, lead: Lead, resp: UpResponse) -> anyhow::Result<StreamingBlob> {
    use anyhow::Context as _;
    let w = fill
        .shard
        .put(&fill.bucket, &fill.key, fill.len_bytes)
        .context("reserving space for the fill")?
        // The client reads the upstream's bytes as they arrive: nobody waits on the commit
        // but the key's flight, so fills share sync rounds (`PutWriter::lazy`).
        .lazy();
    let (tx, rx) = mpsc::channel(STREAM_CHANNEL_CHUNKS);
    let len = usize::try_from(fill.len_bytes).context("object too large for this platform")?;
    let request_id = crate::logging::current_request_id();
    monoio::spawn(crate::logging::with_request_id(
        request_id,
        run(fill, lead, resp, w, tx),
    ));
    Ok(crate::s3::body::channel_blob(rx, len))
}

/// Hands `c` to the client in pieces of at most STREAM_CHUNK_BYTES; false when the client is
/// gone or too slow (it is then dropped).
async fn to_client(tx: &mut mpsc::Sender<Item>, c: &Bytes, timeout: Duration) -> bool {
    let mut off = 0;
    while off < c.len() {
        let end = (off + STREAM_CHUNK_BYTES).min(c.len());
        match monoio::time::timeout(timeout, tx.send(Ok(c.slice(off..end)))).await {
            Ok(Ok(())) => off = end,
            Ok(Err(_)) => return false,
            Err(_) => {
                tracing::debug!("gateway: client too slow; the fill goes on without it");
                return false;
            }
        }
    }
    true
}

/// Cuts the client's body (an error item; dropping the sender afterwards).
fn cut(client: &mut Option<mpsc::Sender<Item>>, why: &str) {
    if let Some(mut tx) = client.take() {
        // Room or not, the receiver sees the end without all bytes and errors (`crate::s3::body::channel_blob`).
        let _ = tx.try_send(Err(std::io::Error::other(why.to_string())));
    }
}

async fn run(fill: Fill, lead: Lead, mut resp: UpResponse, w: PutWriter, tx: mpsc::Sender<Item>) {
    let _lead = lead;
    let mut client = Some(tx);
    let mut writer = Some(w);
    let mut got_bytes = 0u64;
    loop {
        if client.is_none() && writer.is_none() {
            return; // nobody wants the rest
        }
        let chunk = match resp.next_chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, bucket = %fill.bucket, got_bytes, "gateway: upstream failed mid-fill; cutting the client, storing nothing");
                cut(&mut client, "upstream failed mid-body");
                return;
            }
        };
        got_bytes += chunk.len() as u64;
        if got_bytes > fill.len_bytes {
            tracing::warn!(bucket = %fill.bucket, got_bytes, len_bytes = fill.len_bytes, "gateway: upstream sent more than its length; cutting the client, storing nothing");
            cut(&mut client, "upstream sent too much");
            return;
        }
        if let Some(tx) = client.as_mut() {
            if !to_client(tx, &chunk, fill.client_timeout).await {
                client = None;
            }
        }
        if let Some(w) = writer.as_mut() {
            if let Err(e) = w.write(chunk).await {
                tracing::warn!(error = %e, bucket = %fill.bucket, "gateway: local write of a fill failed; serving without keeping it");
                writer = None;
            }
        }
    }
    if got_bytes != fill.len_bytes {
        tracing::warn!(bucket = %fill.bucket, got_bytes, len_bytes = fill.len_bytes, "gateway: upstream answer cut short; cutting the client, storing nothing");
        cut(&mut client, "upstream answer cut short");
        return;
    }
    // Every byte arrived: the client's body is complete (it ends when the sender goes).
    drop(client);
    let Some(w) = writer else { return };
    match w.finish(fill.meta, Expect::Absent).await {
        Ok(o) => {
            local::admitted(
                &fill.shard,
                &fill.bucket,
                &fill.key,
                o.seq,
                fill.len_bytes,
                fill.capacity_bytes,
            )
            .await;
            tracing::debug!(bucket = %fill.bucket, bytes = fill.len_bytes, "gateway: filled an object while serving it");
        }
        Err(bale_io::Error::PreconditionFailed) => {} // a write-through got there first
        Err(e) => {
            tracing::warn!(error = %e, bucket = %fill.bucket, "gateway: committing a fill failed")
        }
    }
}

/// A body of unknown length fed through a channel by [`pass`]'s task: it ends cleanly only
/// when the channel closes after the task set `complete` (the upstream's last byte passed);
/// an error item, or a close without `complete`, cuts it.
struct UnsizedBody {
    rx: mpsc::Receiver<Item>,
    complete: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl futures::Stream for UnsizedBody {
    type Item = Result<Bytes, s3s::StdError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::sync::atomic::Ordering;
        use std::task::Poll;
        match std::pin::Pin::new(&mut self.rx).poll_next(cx) {
            Poll::Ready(Some(r)) => Poll::Ready(Some(r.map_err(|e| Box::new(e) as s3s::StdError))),
            Poll::Ready(None) if !self.complete.swap(true, Ordering::AcqRel) => {
                // Ended without the upstream's end: never a clean end (the connection is cut).
                Poll::Ready(Some(Err(Box::new(std::io::Error::other(
                    "upstream answer ended early",
                )))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl s3s::stream::ByteStream for UnsizedBody {
    fn remaining_length(&self) -> s3s::stream::RemainingLength {
        s3s::stream::RemainingLength::unknown()
    }
}

/// Hands an upstream answer without a length (a GetObject answered chunked, past what the
/// gateway reads into memory: `upstream::MAX_UNSIZED_BODY_BYTES`) to the client as it
/// arrives, without keeping it: a local entry needs its length up front, so the next read
/// fetches again. The client's body has no length (chunked to an HTTP/1.1 client) and ends
/// cleanly only after the upstream's own end (its last chunk); an upstream failure or
/// per-chunk timeout cuts it (no final chunk: never a complete-looking answer). A client
/// that leaves, or takes no chunk within `client_timeout`, ends the transfer (the upstream
/// connection is dropped, not reused).
pub fn pass(
    mut resp: UpResponse,
    client_timeout: Duration,
    bucket: String,
    slot: local::FillSlot,
) -> StreamingBlob {
    let (tx, rx) = mpsc::channel(STREAM_CHANNEL_CHUNKS);
    let complete = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = complete.clone();
    let request_id = crate::logging::current_request_id();
    monoio::spawn(crate::logging::with_request_id(request_id, async move {
        let _slot = slot; // counted among the core's fills until the answer ends
        let mut client = Some(tx);
        let mut sent_bytes = 0u64;
        loop {
            match resp.next_chunk().await {
                Ok(Some(c)) => {
                    sent_bytes += c.len() as u64;
                    let Some(tx) = client.as_mut() else { return };
                    if !to_client(tx, &c, client_timeout).await {
                        tracing::debug!(bucket = %bucket, sent_bytes, "gateway: client left an unsized upstream answer");
                        return; // the client is gone: the upstream connection goes too
                    }
                }
                Ok(None) => {
                    tracing::debug!(bucket = %bucket, sent_bytes, "gateway: passed an unsized upstream answer through (not kept)");
                    done.store(true, std::sync::atomic::Ordering::Release);
                    return; // the sender drops after `done`: the client's body ends cleanly
                }
                Err(e) => {
                    tracing::warn!(error = %e, bucket = %bucket, sent_bytes, "gateway: upstream failed mid-answer (no length); cutting the client");
                    cut(&mut client, "upstream failed mid-body");
                    return;
                }
            }
        }
    }));
    StreamingBlob::new(UnsizedBody { rx, complete })
}
