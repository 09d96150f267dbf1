//! The optional LIST page cache (`--list-cache-ms MS`, default 0: off; issue 15, part 5): a
//! ListObjects (V1 or V2) page answered 200 by the upstream is kept for MS and answered again
//! from memory for the same bucket and query. Every write through this gateway that names a
//! bucket (PUT, POST, DELETE of an object, an upload, the bucket itself) drops the bucket's
//! pages before it is sent upstream, and a page fetched while a write to its bucket was in
//! flight is not kept: after a write's acknowledgement, this gateway's LISTs show it. Writes
//! made elsewhere (another gateway, the upstream directly) are seen after at most MS.
//!
//! Bounds: at most [`MAX_PAGES`] pages and [`MAX_BYTES`] bytes of page bodies; a page over
//! [`MAX_PAGE_BYTES`] is not kept. Past a bound, expired pages go first, then all of them.
//! One process-wide map behind a mutex: LIST is not the hot path (hits are GETs).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Most pages kept.
pub const MAX_PAGES: usize = 4096;
/// Most bytes of page bodies kept.
pub const MAX_BYTES: usize = 64 << 20;
/// Largest page kept, bytes.
pub const MAX_PAGE_BYTES: usize = 1 << 20;

/// Query keys of a ListObjects / ListObjectsV2 request; a bucket GET with any other key is
/// another operation (location, versioning, ACL, uploads ...) and is never cached.
const LIST_KEYS: [&str; 10] = [
    "list-type",
    "prefix",
    "delimiter",
    "marker",
    "max-keys",
    "encoding-type",
    "continuation-token",
    "start-after",
    "fetch-owner",
    "x-id",
];

/// A kept answer.
#[derive(Clone)]
pub struct Page {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

struct Kept {
    at: Instant,
    page: Page,
}

#[derive(Default)]
struct Bucket {
    pages: HashMap<String, Kept>,
    /// Bumped by every write to the bucket (start and end).
    generation: u64,
    writes_in_flight: u64,
}

#[derive(Default)]
struct Cache {
    buckets: HashMap<String, Bucket>,
    pages: usize,
    bytes: usize,
}

static CACHE: Mutex<Option<Cache>> = Mutex::new(None);

fn with<R>(f: impl FnOnce(&mut Cache) -> R) -> R {
    let mut g = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    f(g.get_or_insert_with(Cache::default))
}

/// The cache key of a LIST request (its query, sorted), or `None` when the request is not a
/// ListObjects page.
pub fn list_key(query: &[(String, String)]) -> Option<String> {
    if query.iter().any(|(k, _)| !LIST_KEYS.contains(&k.as_str())) {
        return None;
    }
    let mut q: Vec<&(String, String)> = query.iter().collect();
    q.sort();
    let mut out = String::new();
    for (k, v) in q {
        out.push_str(k);
        out.push('=');
        out.push_str(v);
        out.push('&');
    }
    Some(out)
}

/// A fresh kept page of `bucket` for `key`.
pub fn get(bucket: &str, key: &str, ttl: Duration) -> Option<Page> {
    with(|c| {
        let b = c.buckets.get(bucket)?;
        let k = b.pages.get(key)?;
        (k.at.elapsed() < ttl).then(|| k.page.clone())
    })
}

/// The generation of `bucket` before a LIST is sent (`None`: a write is in flight, keep
/// nothing).
pub fn generation(bucket: &str) -> Option<u64> {
    with(|c| match c.buckets.get(bucket) {
        None => Some(0),
        Some(b) if b.writes_in_flight > 0 => None,
        Some(b) => Some(b.generation),
    })
}

/// Keeps a 200 page fetched at `generation` (nothing if a write to the bucket started since).
pub fn put(bucket: &str, key: String, generation: u64, page: Page, ttl: Duration) {
    if !page.status.is_success() || page.body.len() > MAX_PAGE_BYTES {
        return;
    }
    with(|c| {
        let fits = c.pages < MAX_PAGES && c.bytes + page.body.len() <= MAX_BYTES;
        if !fits {
            evict(c, ttl);
        }
        let b = c.buckets.entry(bucket.to_string()).or_default();
        if b.generation != generation || b.writes_in_flight > 0 {
            return;
        }
        let n = page.body.len();
        if let Some(old) = b.pages.insert(
            key,
            Kept {
                at: Instant::now(),
                page,
            },
        ) {
            c.pages -= 1;
            c.bytes -= old.page.body.len();
        }
        c.pages += 1;
        c.bytes += n;
    });
}

/// Expired pages out; if that frees too little, every page.
fn evict(c: &mut Cache, ttl: Duration) {
    let (mut pages, mut bytes) = (0, 0);
    for b in c.buckets.values_mut() {
        b.pages.retain(|_, k| k.at.elapsed() < ttl);
        pages += b.pages.len();
        bytes += b.pages.values().map(|k| k.page.body.len()).sum::<usize>();
    }
    c.pages = pages;
    c.bytes = bytes;
    if c.pages >= MAX_PAGES || c.bytes >= MAX_BYTES / 2 {
        for b in c.buckets.values_mut() {
            b.pages.clear();
        }
        c.pages = 0;
        c.bytes = 0;
    }
    c.buckets
        .retain(|_, b| !b.pages.is_empty() || b.writes_in_flight > 0 || b.generation > 0);
}

/// A write to `bucket` starts: its pages go, and none is kept until it ends.
pub fn write_started(bucket: &str) {
    with(|c| {
        let b = c.buckets.entry(bucket.to_string()).or_default();
        b.generation += 1;
        b.writes_in_flight += 1;
        let (n, bytes) = (
            b.pages.len(),
            b.pages.values().map(|k| k.page.body.len()).sum::<usize>(),
        );
        b.pages.clear();
        c.pages -= n;
        c.bytes -= bytes;
    });
}

/// The write of [`write_started`] ended (acknowledged or not).
pub fn write_ended(bucket: &str) {
    with(|c| {
        if let Some(b) = c.buckets.get_mut(bucket) {
            b.generation += 1;
            b.writes_in_flight = b.writes_in_flight.saturating_sub(1);
        }
    });
}

/// Ends a write when dropped (so an error or a cancelled request ends it too).
pub struct WriteGuard(pub String);

impl Drop for WriteGuard {
    fn drop(&mut self) {
        write_ended(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(body: &'static [u8]) -> Page {
        Page {
            status: http::StatusCode::OK,
            headers: http::HeaderMap::new(),
            body: Bytes::from_static(body),
        }
    }

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn list_keys_only() {
        let a = list_key(&q(&[("prefix", "a/"), ("list-type", "2")])).unwrap();
        let b = list_key(&q(&[("list-type", "2"), ("prefix", "a/")])).unwrap();
        assert_eq!(a, b);
        assert_ne!(
            a,
            list_key(&q(&[("list-type", "2"), ("prefix", "b/")])).unwrap()
        );
        assert!(list_key(&q(&[])).is_some()); // ListObjects V1 of the whole bucket
        assert!(list_key(&q(&[("location", "")])).is_none());
        assert!(list_key(&q(&[("uploads", "")])).is_none());
        assert!(list_key(&q(&[("versions", ""), ("prefix", "a")])).is_none());
    }

    #[test]
    fn pages_expire_and_writes_drop_them() {
        let ttl = Duration::from_secs(60);
        let g = generation("lc-b1").unwrap();
        put("lc-b1", "k".into(), g, page(b"one"), ttl);
        assert_eq!(get("lc-b1", "k", ttl).unwrap().body, "one");
        assert!(get("lc-b1", "k", Duration::ZERO).is_none());
        // A write drops the page; a page fetched before or during the write is not kept.
        let before = generation("lc-b1").unwrap();
        write_started("lc-b1");
        assert!(get("lc-b1", "k", ttl).is_none());
        assert!(generation("lc-b1").is_none());
        put("lc-b1", "k".into(), before, page(b"stale"), ttl);
        drop(WriteGuard("lc-b1".into()));
        put("lc-b1", "k".into(), before, page(b"stale"), ttl);
        assert!(get("lc-b1", "k", ttl).is_none());
        let now = generation("lc-b1").unwrap();
        put("lc-b1", "k".into(), now, page(b"two"), ttl);
        assert_eq!(get("lc-b1", "k", ttl).unwrap().body, "two");
        // Other buckets are untouched by a write; errors and big pages are not kept.
        let g2 = generation("lc-b2").unwrap();
        put("lc-b2", "k".into(), g2, page(b"x"), ttl);
        write_started("lc-b1");
        write_ended("lc-b1");
        assert!(get("lc-b2", "k", ttl).is_some());
        let mut e = page(b"err");
        e.status = http::StatusCode::NOT_FOUND;
        put("lc-b2", "e".into(), g2, e, ttl);
        assert!(get("lc-b2", "e", ttl).is_none());
        let big = Page {
            body: Bytes::from(vec![0u8; MAX_PAGE_BYTES + 1]),
            ..page(b"")
        };
        put("lc-b2", "big".into(), g2, big, ttl);
        assert!(get("lc-b2", "big", ttl).is_none());
    }
}
