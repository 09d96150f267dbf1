//! Big objects read by ranges: aligned blocks of `--upstream-block-kb` fetched from the
//! upstream (the ones a range touches, plus `--upstream-readahead-blocks`) and kept as local
//! entries under hidden keys named by the object's ETag (`local::block_key`), so bytes of two
//! versions are never served together. A ranged miss of an object this core does not know
//! costs one ranged GET (`probe`: its answer gives the manifest and the blocks); later misses
//! fetch the missing blocks with `If-Match`. Every fill is answered from the fetched bytes and
//! committed in the background, its single-flight held until the commit.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bale_io::{Expect, Shard};
use bytes::{Bytes, BytesMut};
use s3s::{s3_error, S3Error, S3Result};

use super::local::{self, block_key};
use super::manifest::{self, Manifest};
use super::read::{fill_whole, manifest_of_answer, unavailable, upstream_error, MAX_ERROR_BODY};
use super::stages::{self, Stage};
use super::upstream::{UpRequest, UpResponse};
use super::Gateway;
use crate::s3::error;
use crate::s3::meta::ObjMeta;

/// Outcome of making sure blocks are local.
pub(super) enum Blocks {
    Ready,
    /// The object changed upstream (If-Match failed): start over.
    Changed,
}

/// Fetches the missing blocks among `first..=last` (plus readahead) into `fetched`; they are
/// stored locally in the background (the flight is held until they are committed, so a
/// concurrent reader of the same blocks finds them local), and the read is answered from
/// memory without waiting for the durable commit.
#[allow(clippy::too_many_arguments)]
pub(super) async fn ensure_blocks(
    shard: &Rc<Shard>,
    gw: &Arc<Gateway>,
    b: &str,
    k: &str,
    m: &Manifest,
    first: u64,
    last: u64,
    until_byte: u64,
    fetched: &mut HashMap<u64, Bytes>,
) -> S3Result<Blocks> {
    let bs = gw.cfg.block_bytes;
    let nblocks = m.size.div_ceil(bs);
    let mut idx = first;
    while idx <= last {
        let bk = block_key(k, &m.etag, bs, idx);
        if fetched.contains_key(&idx) || shard.get(b, &bk).is_some() {
            idx += 1;
            continue;
        }
        let Some(lead) = local::flight(format!("{b}\0{bk}")).await? else {
            continue; // someone fetched it meanwhile: look again
        };
        if shard.get(b, &bk).is_some() {
            idx += 1;
            continue;
        }
        // The run of missing blocks from idx, through the readahead.
        let mut end = idx;
        let limit = (last + gw.cfg.readahead_blocks).min(nblocks - 1);
        while end < limit && shard.get(b, &block_key(k, &m.etag, bs, end + 1)).is_none() {
            end += 1;
        }
        let (start_b, end_b) = (idx * bs, ((end + 1) * bs).min(m.size));
        let req = UpRequest::new(http::Method::GET, Some(b), Some(k))
            .header("range", format!("bytes={}-{}", start_b, end_b - 1))
            .header("if-match", format!("\"{}\"", m.etag));
        let mut resp = gw.up.send(req).await.map_err(|e| unavailable(&e))?;
        if resp.status == http::StatusCode::PRECONDITION_FAILED
            || resp.status == http::StatusCode::NOT_FOUND
        {
            let _ = resp.collect(MAX_ERROR_BODY).await;
            manifest::forget_all(shard, b, k).await;
            return Ok(Blocks::Changed);
        }
        if resp.status != http::StatusCode::PARTIAL_CONTENT {
            if resp.status == http::StatusCode::OK {
                manifest::forget_all(shard, b, k).await;
                return Ok(Blocks::Changed);
            }
            return Err(upstream_error(&mut resp).await);
        }
        if resp.etag().is_some_and(|e| e != m.etag) {
            manifest::forget_all(shard, b, k).await;
            return Ok(Blocks::Changed);
        }
        take_blocks(
            shard, gw, b, k, m, idx, end, resp, fetched, lead, false, until_byte,
        )
        .await?;
        tracing::debug!(bucket = %b, blocks = end + 1 - idx, "gateway: filled blocks");
        idx = end + 1;
    }
    Ok(Blocks::Ready)
}

/// Reads the body of a ranged upstream answer that starts at block `idx` (blocks
/// `idx..=end`, the last one cut at the object's end) into `fetched` until the bytes before
/// `until_byte` (the end of the range a reader asked for, exclusive) have arrived, then
/// returns: the reader is answered at once (`fetched` then holds the blocks that arrived
/// whole, and a copy of the one that arrived in part, up to what arrived). The rest of the
/// body is read and every block stored in the background; `lead` (their flight) is held until
/// they are committed, so a concurrent reader of the same blocks waits and then finds them
/// local. A body that ends before `until_byte` is an error; one cut after it only loses the
/// fill (nothing is stored: a block is committed only whole, and the reader got complete bytes
/// of the version named by the ETag).
#[allow(clippy::too_many_arguments)]
async fn take_blocks(
    shard: &Rc<Shard>,
    gw: &Gateway,
    b: &str,
    k: &str,
    m: &Manifest,
    idx: u64,
    end: u64,
    mut resp: UpResponse,
    fetched: &mut HashMap<u64, Bytes>,
    lead: local::Lead,
    publish: bool,
    until_byte: u64,
) -> S3Result<()> {
    let bs = gw.cfg.block_bytes;
    let mut run = Run {
        bs,
        size: m.size,
        cur: idx,
        end,
        buf: BytesMut::new(),
        pieces: Vec::with_capacity((end + 1 - idx) as usize),
    };
    let head_at = Instant::now();
    let mut received_to = idx * bs;
    let mut body_done = false;
    while received_to < until_byte && run.cur <= end {
        match resp.next_chunk().await.map_err(|e| unavailable(&e))? {
            Some(c) => {
                received_to += c.len() as u64;
                run.take(&c);
            }
            None => {
                body_done = true;
                break;
            }
        }
    }
    for (i, piece) in &run.pieces {
        fetched.insert(*i, piece.clone());
    }
    if run.cur <= end {
        if received_to < until_byte {
            return Err(s3_error!(ServiceUnavailable, "upstream answer cut short"));
        }
        // The block the range ends in arrived in part: what arrived serves the reader.
        fetched.insert(run.cur, Bytes::copy_from_slice(&run.buf));
    }
    stages::since(Stage::RangeBytes, head_at);
    let (shard2, ns, key, cap) = (
        shard.clone(),
        b.to_string(),
        k.to_string(),
        gw.cfg.shard_capacity_bytes,
    );
    let bmeta = ObjMeta {
        etag: m.etag.clone(),
        ..Default::default()
    };
    // Stored with the first blocks of an object (a probe's), or once later if not yet.
    let persist = publish || manifest::needs_persist(b, k);
    let manifest = persist.then(|| m.clone());
    let timer = stages::FillTimer::start();
    monoio::spawn(async move {
        let _timer = timer;
        // The rest of the body, after the reader was answered.
        while !body_done && run.cur <= run.end {
            match resp.next_chunk().await {
                Ok(Some(c)) => run.take(&c),
                Ok(None) => body_done = true,
                Err(e) => {
                    tracing::warn!(error = %e, "gateway: the rest of a block fill failed; nothing stored");
                    return;
                }
            }
        }
        if run.cur <= run.end {
            tracing::warn!("gateway: a block fill was cut short; nothing stored");
            return;
        }
        drop(resp); // the connection goes back to the pool at its answer's end
                    // The fill slot goes back; the blocks wait for their commit under the core's
                    // committing-bytes bound (past it they are not kept).
        let bytes = run.pieces.iter().map(|(_, p)| p.len() as u64).sum();
        let Some((_lead, _charge)) = lead.upstream_done(bytes) else {
            tracing::debug!("gateway: committing-bytes bound reached; a block fill not kept");
            return;
        };
        for (i, piece) in run.pieces {
            let n = piece.len() as u64;
            let bk = block_key(&key, &bmeta.etag, run.bs, i);
            if let Err(e) =
                local::store(&shard2, &ns, &bk, vec![piece], n, &bmeta, Expect::Any, cap).await
            {
                tracing::warn!(error = %format!("{e:#}"), "gateway: storing a block failed");
                return;
            }
        }
        // Known only once its blocks are local: a reader that finds the manifest finds them
        // (before, it waits on the object's flight, held until here).
        // Stored before it is remembered: a restart that finds the manifest finds them too.
        if let Some(m) = manifest {
            let h = m.etag_hash;
            let stored = manifest::persist(&shard2, &ns, &key, &m, cap).await;
            if publish {
                manifest::remember_as(&ns, &key, m, stored);
            } else if stored {
                manifest::mark_persisted(&ns, &key, h);
            }
        }
    });
    Ok(())
}

/// A run of blocks arriving in one upstream answer, split as it arrives.
struct Run {
    bs: u64,
    size: u64,
    /// The next block to complete, and the run's last block.
    cur: u64,
    end: u64,
    /// Bytes of block `cur` so far.
    buf: BytesMut,
    /// Blocks arrived whole.
    pieces: Vec<(u64, Bytes)>,
}

impl Run {
    fn block_len(&self, i: u64) -> u64 {
        ((i + 1) * self.bs).min(self.size) - i * self.bs
    }

    /// Takes a body chunk; bytes past the run's last block are dropped.
    fn take(&mut self, mut c: &[u8]) {
        while self.cur <= self.end && !c.is_empty() {
            let want = (self.block_len(self.cur) - self.buf.len() as u64) as usize;
            let n = want.min(c.len());
            self.buf.extend_from_slice(&c[..n]);
            c = &c[n..];
            if n == want {
                let piece = std::mem::take(&mut self.buf).freeze();
                self.pieces.push((self.cur, piece));
                self.cur += 1;
            }
        }
    }
}

/// `bytes A-B/TOTAL` of a Content-Range.
fn content_range(v: &str) -> Option<(u64, u64, u64)> {
    let (ab, total) = v.strip_prefix("bytes ")?.split_once('/')?;
    let (a, b) = ab.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?, total.parse().ok()?))
}

/// A ranged miss of an object this core knows nothing of: instead of a HEAD and then a GET,
/// one ranged GET of the aligned blocks `first_byte..=last_byte` touch (plus readahead); its
/// answer gives the manifest (size from Content-Range, ETag, headers) and the blocks, which
/// are stored in the background. `Ok(None)`: look again (another reader probed meanwhile, or
/// the object was filled whole).
pub(super) async fn probe(
    shard: &Rc<Shard>,
    gw: &Arc<Gateway>,
    b: &str,
    k: &str,
    first_byte: u64,
    last_byte: u64,
) -> S3Result<Option<(Manifest, HashMap<u64, Bytes>)>> {
    let bs = gw.cfg.block_bytes;
    let Some(lead) = local::flight(format!("{b}\0{k}\0probe")).await? else {
        return Ok(None);
    };
    if manifest::of(b, k, gw).is_some() || shard.get(b, k).is_some() {
        return Ok(None);
    }
    let (first, last) = (first_byte / bs, last_byte / bs + gw.cfg.readahead_blocks);
    let req = UpRequest::new(http::Method::GET, Some(b), Some(k))
        .header(
            "range",
            format!("bytes={}-{}", first * bs, (last + 1) * bs - 1),
        )
        .header("x-amz-checksum-mode", super::read::CHECKSUM_MODE_ENABLED);
    let mut resp = gw.up.send(req).await.map_err(|e| unavailable(&e))?;
    if resp.status == http::StatusCode::OK {
        // The upstream ignored the range: this is the whole object.
        fill_whole(shard, gw, b, k, &mut resp).await?;
        return Ok(None);
    }
    if resp.status != http::StatusCode::PARTIAL_CONTENT {
        return Err(upstream_error(&mut resp).await);
    }
    let Some((from, to, size)) = resp.header("content-range").and_then(content_range) else {
        return Err(s3_error!(
            ServiceUnavailable,
            "upstream 206 without a usable Content-Range"
        ));
    };
    if from != first * bs || to < from || to >= size {
        return Err(s3_error!(
            ServiceUnavailable,
            "upstream answered another range"
        ));
    }
    let m = manifest_of_answer(&resp, size);
    let mut fetched = HashMap::new();
    if from == 0 && to + 1 == size && size <= bs {
        // The whole object, which fits one block: kept whole (later reads take the fast path).
        let body = resp
            .collect(size as usize)
            .await
            .map_err(|e| unavailable(&e))?;
        if body.len() as u64 != size {
            return Err(s3_error!(ServiceUnavailable, "upstream answer cut short"));
        }
        fetched.insert(0, body.clone());
        let (shard2, ns, key, meta) = (shard.clone(), b.to_string(), k.to_string(), m.meta.clone());
        let cap = gw.cfg.shard_capacity_bytes;
        let Some((lead, charge)) = lead.upstream_done(size) else {
            return Ok(Some((m, fetched)));
        };
        let timer = stages::FillTimer::start();
        monoio::spawn(async move {
            let _lead = lead;
            let _charge = charge;
            let _timer = timer;
            let r = local::store(
                &shard2,
                &ns,
                &key,
                vec![body],
                size,
                &meta,
                Expect::Absent,
                cap,
            );
            if let Err(e) = r.await {
                tracing::warn!(error = %format!("{e:#}"), "gateway: keeping a fill failed");
            }
        });
        return Ok(Some((m, fetched)));
    }
    take_blocks(
        shard,
        gw,
        b,
        k,
        &m,
        first,
        to / bs,
        resp,
        &mut fetched,
        lead,
        true,
        last_byte + 1,
    )
    .await?;
    tracing::debug!(bucket = %b, blocks = to / bs + 1 - first, "gateway: probed and filled blocks");
    Ok(Some((m, fetched)))
}

/// Reads `[s, e)` of the object from its block entries; `None` if one went missing.
#[allow(clippy::too_many_arguments)]
pub(super) async fn read_blocks(
    shard: &Rc<Shard>,
    bs: u64,
    b: &str,
    k: &str,
    etag: &str,
    s: u64,
    e: u64,
    fetched: &HashMap<u64, Bytes>,
) -> S3Result<Option<Bytes>> {
    let mut out: Option<Bytes> = None;
    let mut joined = BytesMut::new();
    let (first, last) = (s / bs, (e - 1) / bs);
    for idx in first..=last {
        let bs0 = idx * bs;
        let piece = if let Some(mem) = fetched.get(&idx) {
            let be = bs0 + mem.len() as u64;
            let (from, to) = (s.max(bs0) - bs0, e.min(be) - bs0);
            mem.slice(from as usize..to as usize)
        } else {
            let Some(o) = shard.get(b, &block_key(k, etag, bs, idx)) else {
                return Ok(None);
            };
            block_touched(&o);
            let be = bs0 + o.size;
            let (from, to) = (s.max(bs0) - bs0, e.min(be) - bs0);
            shard
                .read(&o, from, to - from)
                .await
                .map_err(error::engine)?
        };
        if first == last {
            out = Some(piece);
        } else {
            joined.extend_from_slice(&piece);
        }
    }
    Ok(Some(out.unwrap_or_else(|| joined.freeze())))
}

pub(super) fn range_error(size: u64) -> S3Error {
    let mut e = s3_error!(InvalidRange, "The requested range is not satisfiable");
    let mut h = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(&format!("bytes */{size}")) {
        h.insert(http::header::CONTENT_RANGE, v);
    }
    e.set_headers(h);
    e
}

/// A block entry is being read: bump its S3-FIFO access counter as a whole-object hit does
/// (`Gateway::stale`), so the blocks of a big object read by ranges are not evicted as cold.
pub(super) fn block_touched(o: &bale_io::Object) {
    if super::get().is_some_and(|gw| gw.cfg.shard_capacity_bytes > 0) {
        local::touched(o.seq, o.mtime_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(bs: u64, size: u64, cur: u64, end: u64) -> Run {
        Run {
            bs,
            size,
            cur,
            end,
            buf: BytesMut::new(),
            pieces: Vec::new(),
        }
    }

    #[test]
    fn a_run_splits_chunks_at_block_edges() {
        // Blocks of 10 bytes, an object of 35: blocks 1..=3, the last one 5 bytes.
        let data: Vec<u8> = (0..35u8).collect();
        let mut r = run(10, 35, 1, 3);
        r.take(&data[10..13]);
        assert!(r.pieces.is_empty() && r.buf.len() == 3);
        r.take(&data[13..27]); // block 1 ends inside this chunk
        assert_eq!(r.pieces.len(), 1);
        assert_eq!(&r.pieces[0].1[..], &data[10..20]);
        assert_eq!((r.cur, r.buf.len()), (2, 7));
        r.take(&data[27..35]);
        r.take(b"past the run's end: dropped");
        assert_eq!(r.cur, 4);
        let got: Vec<(u64, Vec<u8>)> = r.pieces.iter().map(|(i, b)| (*i, b.to_vec())).collect();
        assert_eq!(
            got,
            vec![
                (1, data[10..20].to_vec()),
                (2, data[20..30].to_vec()),
                (3, data[30..35].to_vec()),
            ]
        );
        assert!(r.buf.is_empty());
    }

    #[test]
    fn a_run_cut_short_keeps_only_whole_blocks() {
        let mut r = run(4, 100, 0, 2);
        r.take(&[1, 2, 3, 4, 5, 6]);
        assert_eq!(r.pieces.len(), 1);
        assert_eq!(r.cur, 1);
        assert_eq!(&r.buf[..], &[5, 6]); // block 1 in part: never stored
    }
}
