//! What this core knows of objects it reads by blocks: the upstream's ETag, size, date and
//! headers of each (its manifest), learned from a HEAD or from the first ranged answer.
//!
//! Per core (the key's owner core does every fill and block read of that key), in a map keyed
//! by a 64-bit hash of (bucket, key): a lookup hashes the borrowed names and compares them,
//! so the fast path's block hit allocates nothing. Two objects whose hashes collide evict each
//! other's manifest (it is only a cache: the next read of the other one asks the upstream
//! again); they are never confused, since an entry's names are compared.
//!
//! Persisted: once blocks of an object are stored, its manifest is stored too, as a 16-byte
//! local entry under a hidden key (`{key}\0gwm`: upstream size and Last-Modified; the ETag and
//! headers in the entry's metadata), so that after a restart a ranged read of an object whose
//! blocks are local is served without asking the upstream ([`recall`], on a miss). A write
//! through this gateway or a changed ETag removes it with the in-memory one ([`forget_all`]);
//! the local tier's bound evicts it as any entry (then the upstream is asked again).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use bale_io::{Expect, Shard};
use bytes::Bytes;

use super::local::{self, fnv64, fnv64_more};
use super::{Gateway, Revalidate};
use crate::s3::meta::ObjMeta;

/// What the upstream says about an object.
#[derive(Clone)]
pub struct Manifest {
    pub etag: String,
    /// `fnv64(etag)`, which names the object's block entries.
    pub etag_hash: u64,
    pub size: u64,
    pub mtime_ms: u64,
    pub meta: ObjMeta,
    /// When the upstream last said so (unix ms; `--revalidate ttl:` re-asks after the TTL).
    pub checked_ms: u64,
}

impl Manifest {
    pub fn new(etag: String, size: u64, mtime_ms: u64, meta: ObjMeta) -> Manifest {
        Manifest {
            etag_hash: fnv64(&etag),
            etag,
            size,
            mtime_ms,
            meta,
            checked_ms: crate::s3::now_ms(),
        }
    }

    /// Whether it may be used without asking the upstream again.
    pub fn fresh(&self, gw: &Gateway) -> bool {
        match gw.cfg.revalidate {
            Revalidate::TtlMs(ttl) => crate::s3::now_ms().saturating_sub(self.checked_ms) < ttl,
            Revalidate::Never => true,
        }
    }
}

struct Entry {
    bucket: String,
    key: String,
    m: Manifest,
    /// Stored as a local entry (see the module's doc).
    persisted: bool,
}

thread_local! {
    static MANIFESTS: RefCell<HashMap<u64, Entry>> = RefCell::new(HashMap::new());
}

fn slot(b: &str, k: &str) -> u64 {
    fnv64_more(fnv64_more(fnv64(b), &[0]), k.as_bytes())
}

/// Runs `f` on this core's manifest of `b/k` (fresh or not) without copying it.
pub fn with<R>(b: &str, k: &str, f: impl FnOnce(&Manifest) -> R) -> Option<R> {
    MANIFESTS.with(|x| {
        let x = x.borrow();
        let e = x.get(&slot(b, k))?;
        (e.bucket == b && e.key == k).then(|| f(&e.m))
    })
}

/// This core's manifest of `b/k`, when it is fresh.
pub fn of(b: &str, k: &str, gw: &Gateway) -> Option<Manifest> {
    with(b, k, |m| m.fresh(gw).then(|| m.clone())).flatten()
}

/// Remembers `m` as the manifest of `b/k`.
pub fn remember(b: &str, k: &str, m: Manifest) {
    remember_as(b, k, m, false);
}

pub fn remember_as(b: &str, k: &str, m: Manifest, persisted: bool) {
    MANIFESTS.with(|x| {
        x.borrow_mut().insert(
            slot(b, k),
            Entry {
                bucket: b.to_string(),
                key: k.to_string(),
                m,
                persisted,
            },
        )
    });
}

/// Whether this core remembers `b/k`'s manifest and has not stored it yet.
pub fn needs_persist(b: &str, k: &str) -> bool {
    MANIFESTS.with(|x| {
        x.borrow()
            .get(&slot(b, k))
            .is_some_and(|e| e.bucket == b && e.key == k && !e.persisted)
    })
}

pub fn mark_persisted(b: &str, k: &str, etag_hash: u64) {
    MANIFESTS.with(|x| {
        if let Some(e) = x.borrow_mut().get_mut(&slot(b, k)) {
            if e.bucket == b && e.key == k && e.m.etag_hash == etag_hash {
                e.persisted = true;
            }
        }
    });
}

/// Hidden key of `key`'s persisted manifest (a NUL never occurs in an S3 key; block keys
/// continue `\0gw` with a hex digit, never `m`).
fn persisted_key(k: &str) -> String {
    format!("{k}\u{0}gwm")
}

/// Bytes of a persisted manifest's body: upstream size and Last-Modified (ms), little-endian.
const PERSISTED_BYTES: u64 = 16;

/// Stores `m` as the persisted manifest of `b/k`; whether it was stored (a failure is
/// logged: the manifest is then only in memory, as before).
pub async fn persist(shard: &Rc<Shard>, b: &str, k: &str, m: &Manifest, cap: u64) -> bool {
    let mut body = Vec::with_capacity(PERSISTED_BYTES as usize);
    body.extend_from_slice(&m.size.to_le_bytes());
    body.extend_from_slice(&m.mtime_ms.to_le_bytes());
    let r = local::store(
        shard,
        b,
        &persisted_key(k),
        vec![Bytes::from(body)],
        PERSISTED_BYTES,
        &m.meta,
        Expect::Any,
        cap,
    )
    .await;
    match r {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), bucket = %b,
                "gateway: storing a manifest failed");
            false
        }
    }
}

/// After a restart: the persisted manifest of `b/k`, remembered again when it is fresh
/// (`--revalidate ttl:` counts its age from when it was stored). `None`: none stored, stale,
/// or unreadable (the upstream is asked, as before).
pub async fn recall(shard: &Rc<Shard>, gw: &Gateway, b: &str, k: &str) -> Option<Manifest> {
    if let Some(m) = of(b, k, gw) {
        return Some(m);
    }
    let o = shard.get(b, &persisted_key(k))?;
    if o.size != PERSISTED_BYTES {
        return None;
    }
    let meta = ObjMeta::load(&o.meta, b, k).ok()?;
    let body = shard.read(&o, 0, PERSISTED_BYTES).await.ok()?;
    let word = |i: usize| -> Option<u64> {
        Some(u64::from_le_bytes(body.get(i..i + 8)?.try_into().ok()?))
    };
    let (size, mtime_ms) = (word(0)?, word(8)?);
    let mut m = Manifest::new(meta.etag.clone(), size, mtime_ms, meta);
    m.checked_ms = o.mtime_ms;
    if !m.fresh(gw) {
        return None;
    }
    remember_as(b, k, m.clone(), true);
    tracing::debug!(bucket = %b, size, "gateway: manifest recalled from the local tier");
    Some(m)
}

/// Forgets `b/k`'s manifest here and removes its persisted copy (a write through this
/// gateway, a changed ETag).
pub async fn forget_all(shard: &Rc<Shard>, b: &str, k: &str) {
    forget(b, k);
    let pk = persisted_key(k);
    if shard.get(b, &pk).is_some() {
        match shard.delete(b, &pk, Expect::Any).await {
            Ok(_) | Err(bale_io::Error::NotFound) => {}
            Err(e) => tracing::warn!(error = %e, bucket = %b,
                "gateway: removing a persisted manifest failed"),
        }
    }
}

/// Drops what this core remembers of `b/k` (a write through this gateway, a changed ETag).
pub fn forget(b: &str, k: &str) {
    MANIFESTS.with(|x| {
        let mut x = x.borrow_mut();
        let s = slot(b, k);
        if x.get(&s).is_some_and(|e| e.bucket == b && e.key == k) {
            x.remove(&s);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_per_name() {
        let m = Manifest::new("e1".into(), 10, 0, ObjMeta::default());
        remember("b", "k", m);
        assert_eq!(with("b", "k", |m| m.size), Some(10));
        assert_eq!(with("b", "k2", |m| m.size), None);
        assert_eq!(with("b2", "k", |m| m.size), None);
        forget("b", "other");
        assert!(with("b", "k", |_| ()).is_some());
        forget("b", "k");
        assert!(with("b", "k", |_| ()).is_none());
    }
}
