//! The local tier's bookkeeping, on the core that owns the shard: single-flight fills, block
//! entries of big objects, storing what the upstream sent, and the FIFO that bounds the tier.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use bale_io::{Expect, Shard};
use bytes::Bytes;
use futures::channel::oneshot;

use crate::s3::meta::ObjMeta;

// ---- metadata -------------------------------------------------------------------------------

/// The metadata a local copy keeps, from the upstream's answer headers (or a write-through
/// request's headers): the upstream's ETag, content headers, user metadata.
pub fn meta_from_headers(h: &http::HeaderMap, etag: &str) -> ObjMeta {
    let s = |n: &str| {
        h.get(n)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let content_encoding =
        s("content-encoding").and_then(|v| crate::s3::meta::strip_aws_chunked(&v));
    let mut user = Vec::new();
    for (k, v) in h {
        if let Some(name) = k.as_str().strip_prefix("x-amz-meta-") {
            if let Ok(v) = v.to_str() {
                user.push((name.to_string(), v.to_string()));
            }
        }
    }
    ObjMeta {
        etag: etag.to_string(),
        content_type: s("content-type"),
        content_encoding,
        content_language: s("content-language"),
        content_disposition: s("content-disposition"),
        cache_control: s("cache-control"),
        expires: s("expires"),
        user,
        ..Default::default()
    }
}

// ---- keys -----------------------------------------------------------------------------------

/// FNV-1a, 64 bits (block keys name the ETag by its hash to stay within the key limit).
fn fnv64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Hidden key of block `idx` of `key` at upstream ETag `etag` (a NUL never occurs in an S3
/// key, and LIST comes from the upstream, so nobody sees these).
pub fn block_key(key: &str, etag: &str, block_bytes: u64, idx: u64) -> String {
    format!(
        "{key}\u{0}gw{:016x}.{}.{idx}",
        fnv64(etag),
        block_bytes >> 10
    )
}

// ---- single flight --------------------------------------------------------------------------

thread_local! {
    static FLIGHTS: RefCell<HashMap<String, Vec<oneshot::Sender<()>>>> = RefCell::new(HashMap::new());
}

/// Leading a fill: waiters are woken when this is dropped.
pub struct Lead(String);

impl Drop for Lead {
    fn drop(&mut self) {
        let waiters = FLIGHTS.with(|f| f.borrow_mut().remove(&self.0));
        for w in waiters.into_iter().flatten() {
            let _ = w.send(());
        }
    }
}

/// Joins the flight for `id` on this core: `Ok(Lead)` when nobody fetches it now (the caller
/// does), otherwise waits for the one who does and returns `Err(())` (look again).
pub async fn flight(id: String) -> Result<Lead, ()> {
    let rx = FLIGHTS.with(|f| {
        let mut f = f.borrow_mut();
        match f.get_mut(&id) {
            Some(v) => {
                let (tx, rx) = oneshot::channel();
                v.push(tx);
                Some(rx)
            }
            None => {
                f.insert(id.clone(), Vec::new());
                None
            }
        }
    });
    match rx {
        None => Ok(Lead(id)),
        Some(rx) => {
            let _ = rx.await;
            Err(())
        }
    }
}

// ---- capacity -------------------------------------------------------------------------------

struct Fifo {
    q: VecDeque<(String, String, u64, u64)>,
    bytes: u64,
}

thread_local! {
    /// Per shard (by address) on this core: entries in the order they were stored.
    static FIFOS: RefCell<HashMap<usize, Fifo>> = RefCell::new(HashMap::new());
}

/// Records a stored entry and evicts the oldest entries of this shard past `cap` bytes
/// (deleted: their records become garbage that compaction reclaims).
pub async fn admitted(shard: &Rc<Shard>, ns: &str, key: &str, seq: u64, size: u64, cap: u64) {
    if cap == 0 {
        return;
    }
    let id = Rc::as_ptr(shard) as usize;
    let mut victims = Vec::new();
    FIFOS.with(|f| {
        let mut f = f.borrow_mut();
        let q = f.entry(id).or_insert_with(|| Fifo {
            q: VecDeque::new(),
            bytes: 0,
        });
        q.q.push_back((ns.to_string(), key.to_string(), seq, size));
        q.bytes += size;
        while q.bytes > cap && q.q.len() > 1 {
            let Some(v) = q.q.pop_front() else { break };
            q.bytes -= v.3;
            victims.push(v);
        }
    });
    for (ns, key, seq, _) in victims {
        match shard.delete(&ns, &key, Expect::Seq(seq)).await {
            Ok(_) | Err(bale_io::Error::PreconditionFailed) => {
                tracing::debug!(bucket = %ns, "gateway: evicted a local entry");
            }
            Err(e) => tracing::warn!(error = %e, "gateway: eviction failed"),
        }
    }
}

// ---- storing --------------------------------------------------------------------------------

/// Stores `chunks` (exactly `len` bytes) under `key` with `meta`. `expect` decides against a
/// concurrent writer (a fill stores only where nothing is: `Expect::Absent`).
#[allow(clippy::too_many_arguments)]
pub async fn store(
    shard: &Rc<Shard>,
    ns: &str,
    key: &str,
    chunks: Vec<Bytes>,
    len: u64,
    meta: &ObjMeta,
    expect: Expect,
    cap: u64,
) -> anyhow::Result<Option<u64>> {
    use anyhow::Context;
    let enc = meta.encode().context("metadata too large")?;
    let mut w = shard.put(ns, key, len).context("reserving space")?;
    for c in chunks {
        w.write(c).await.context("writing")?;
    }
    match w.finish(enc, expect).await {
        Ok(o) => {
            admitted(shard, ns, key, o.seq, len, cap).await;
            Ok(Some(o.seq))
        }
        Err(bale_io::Error::PreconditionFailed) => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context("committing")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_keys_fit_and_differ() {
        let long = "k".repeat(1024);
        let k = block_key(&long, "d41d8cd98f00b204e9800998ecf8427e-12", 1 << 20, 4095);
        assert!(k.len() <= 1024 + 64, "{}", k.len());
        assert_ne!(
            block_key("a", "e1", 1 << 20, 0),
            block_key("a", "e2", 1 << 20, 0)
        );
        assert_ne!(
            block_key("a", "e1", 1 << 20, 0),
            block_key("a", "e1", 1 << 20, 1)
        );
    }

    #[test]
    fn metadata_from_headers() {
        let mut h = http::HeaderMap::new();
        h.insert("content-type", "text/plain".parse().unwrap());
        h.insert("x-amz-meta-color", "blue".parse().unwrap());
        h.insert("content-encoding", "aws-chunked".parse().unwrap());
        let m = meta_from_headers(&h, "abc");
        assert_eq!(m.etag, "abc");
        assert_eq!(m.content_type.as_deref(), Some("text/plain"));
        assert_eq!(m.content_encoding, None);
        assert_eq!(m.user, vec![("color".to_string(), "blue".to_string())]);
    }
}
