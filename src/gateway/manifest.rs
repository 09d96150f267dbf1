//! What this core knows of objects it reads by blocks: the upstream's ETag, size, date and
//! headers of each (its manifest), learned from a HEAD or from the first ranged answer.
//!
//! Per core (the key's owner core does every fill and block read of that key), in a map keyed
//! by a 64-bit hash of (bucket, key): a lookup hashes the borrowed names and compares them,
//! so the fast path's block hit allocates nothing. Two objects whose hashes collide evict each
//! other's manifest (it is only a cache: the next read of the other one asks the upstream
//! again); they are never confused, since an entry's names are compared.

use std::cell::RefCell;
use std::collections::HashMap;

use super::local::{fnv64, fnv64_more};
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
    MANIFESTS.with(|x| {
        x.borrow_mut().insert(
            slot(b, k),
            Entry {
                bucket: b.to_string(),
                key: k.to_string(),
                m,
            },
        )
    });
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
