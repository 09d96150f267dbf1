//! The local tier's bookkeeping, on the core that owns the shard: block entries of big
//! objects, storing what the upstream sent, and the S3-FIFO queues that bound the tier
//! (single-flight fills are `flight`'s, re-exported here).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};

use bale_io::{yield_now, Expect, ListItem, Shard};
use bytes::Bytes;

use crate::s3::meta::ObjMeta;

pub use super::flight::{
    committing_bytes, fills, flight, CommitCharge, FillSlot, Lead, MAX_COMMITTING_BYTES,
};

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
    let mut checksums = Vec::new();
    for (k, v) in h {
        if let Some(name) = k.as_str().strip_prefix("x-amz-meta-") {
            if let Ok(v) = v.to_str() {
                user.push((name.to_string(), v.to_string()));
            }
        } else if let Some(algo) = k.as_str().strip_prefix("x-amz-checksum-") {
            // The object's checksums (a PUT's, checked by the upstream before it acknowledged;
            // or an upstream answer's, asked for with `x-amz-checksum-mode: ENABLED`), served
            // again on `x-amz-checksum-mode: ENABLED` as plain bale serves its own.
            if let (true, Ok(v)) = (crate::s3::ingest::ALGOS.contains(&algo), v.to_str()) {
                if !v.is_empty() {
                    checksums.push((algo.to_string(), v.to_string()));
                }
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
        checksum_type: s("x-amz-checksum-type").filter(|_| !checksums.is_empty()),
        checksums,
        ..Default::default()
    }
}

// ---- keys -----------------------------------------------------------------------------------

/// FNV-1a, 64 bits (block keys name the ETag by its hash to stay within the key limit; the
/// per-core manifests are keyed by the hash of bucket and key).
pub fn fnv64(s: &str) -> u64 {
    fnv64_more(0xcbf2_9ce4_8422_2325, s.as_bytes())
}

/// FNV-1a continued over `bytes` from state `h`.
pub fn fnv64_more(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Hidden key of block `idx` of `key` at upstream ETag `etag` (a NUL never occurs in an S3
/// key, and LIST comes from the upstream, so nobody sees these).
pub fn block_key(key: &str, etag: &str, block_bytes: u64, idx: u64) -> String {
    let mut out = String::new();
    block_key_into(&mut out, key, fnv64(etag), block_bytes, idx);
    out
}

/// [`block_key`] written into `out` (cleared first; no allocation once `out` has the room),
/// for an ETag given by its hash.
pub fn block_key_into(out: &mut String, key: &str, etag_hash: u64, block_bytes: u64, idx: u64) {
    use std::fmt::Write;
    out.clear();
    let _ = write!(
        out,
        "{key}\u{0}gw{etag_hash:016x}.{}.{idx}",
        block_bytes >> 10
    );
}

// ---- capacity: S3-FIFO over records ----------------------------------------------------------
//
// Per shard, on the shard's core: a small FIFO that new entries enter, a main FIFO for entries
// read again while in the small one (or re-admitted soon after eviction), and a ghost queue
// of the keys recently evicted from the small one (Yang et al., "FIFO queues are all you need
// for cache eviction", SOSP '23). The access counters live in one process-wide array of bytes
// indexed by a hash of the entry's (seq, commit ms), so that a hit, on whatever core it is
// answered, bumps its entry's counter with one relaxed load (and a store only while below
// FREQ_MAX): no lock, no allocation, no hop. Two entries sharing a slot share a counter: a cold
// entry may then pass for a warm one (it is kept a little longer), never the reverse.

/// Share of a shard's capacity the small queue aims at, percent.
pub const SMALL_SHARE_PERCENT: u64 = 10;
/// Most keys the ghost queue remembers per shard (a key hash each, ~24 bytes with its set).
pub const GHOST_MAX_KEYS: usize = 1 << 16;
/// Highest value of an access counter.
pub const FREQ_MAX: u8 = 3;
/// Access counter slots, process-wide (one byte each: 4 MiB, zero pages until touched).
pub const FREQ_SLOTS_LOG2: u32 = 22;
/// Entries listed per step while seeding the queues from the engine after a start.
const SEED_PAGE: usize = 1024;

static FREQ: [AtomicU8; 1 << FREQ_SLOTS_LOG2] = [const { AtomicU8::new(0) }; 1 << FREQ_SLOTS_LOG2];

#[inline]
fn freq_slot(seq: u64, mtime_ms: u64) -> &'static AtomicU8 {
    let h = (seq ^ mtime_ms.rotate_left(29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    &FREQ[(h >> (64 - FREQ_SLOTS_LOG2)) as usize]
}

/// A hit on the local entry (`seq`, committed at `mtime_ms`): bumps its access counter.
#[inline]
pub fn touched(seq: u64, mtime_ms: u64) {
    let c = freq_slot(seq, mtime_ms);
    let v = c.load(Relaxed);
    if v < FREQ_MAX {
        c.store(v + 1, Relaxed);
    }
}

/// Process-wide totals of the local tier (for `/metrics`).
pub struct TierTotals {
    /// Bytes of the entries the queues hold (all shards).
    pub bytes: AtomicU64,
    pub entries: AtomicU64,
    pub evictions: AtomicU64,
    pub evicted_bytes: AtomicU64,
    /// Admissions straight into the main queue (the key was in the ghost queue).
    pub ghost_hits: AtomicU64,
}

pub static TIER: TierTotals = TierTotals {
    bytes: AtomicU64::new(0),
    entries: AtomicU64::new(0),
    evictions: AtomicU64::new(0),
    evicted_bytes: AtomicU64::new(0),
    ghost_hits: AtomicU64::new(0),
};

struct Entry {
    ns: String,
    key: String,
    seq: u64,
    mtime_ms: u64,
    size: u64,
}

impl Entry {
    fn freq(&self) -> &'static AtomicU8 {
        freq_slot(self.seq, self.mtime_ms)
    }
}

fn key_hash(ns: &str, key: &str) -> u64 {
    fnv64(ns) ^ fnv64(key).rotate_left(17)
}

#[derive(Default)]
struct Tier {
    small: VecDeque<Entry>,
    small_bytes: u64,
    main: VecDeque<Entry>,
    main_bytes: u64,
    /// Key hashes in eviction order, each with the generation it was added at.
    ghost: VecDeque<(u64, u64)>,
    ghost_set: HashMap<u64, u64>,
    ghost_gen: u64,
    /// The queues are being seeded from the engine (after a start): admissions only queue.
    seeding: bool,
}

impl Tier {
    fn bytes(&self) -> u64 {
        self.small_bytes + self.main_bytes
    }

    fn ghost_add(&mut self, h: u64) {
        if self.ghost_set.contains_key(&h) {
            return;
        }
        self.ghost_gen += 1;
        self.ghost.push_back((h, self.ghost_gen));
        self.ghost_set.insert(h, self.ghost_gen);
        while self.ghost.len() > GHOST_MAX_KEYS {
            let Some((old, g)) = self.ghost.pop_front() else {
                break;
            };
            if self.ghost_set.get(&old) == Some(&g) {
                self.ghost_set.remove(&old);
            }
        }
    }

    fn ghost_take(&mut self, h: u64) -> bool {
        self.ghost_set.remove(&h).is_some()
    }

    /// Queues `e` (small, or main when its key is in the ghost queue).
    fn push(&mut self, e: Entry) {
        TIER.bytes.fetch_add(e.size, Relaxed);
        TIER.entries.fetch_add(1, Relaxed);
        e.freq().store(0, Relaxed);
        if self.ghost_take(key_hash(&e.ns, &e.key)) {
            TIER.ghost_hits.fetch_add(1, Relaxed);
            self.main_bytes += e.size;
            self.main.push_back(e);
        } else {
            self.small_bytes += e.size;
            self.small.push_back(e);
        }
    }

    /// Picks victims until the queues fit `cap` (the newest entry, at the back of its queue,
    /// is never picked: a fill is not evicted before it is served).
    fn evict(&mut self, cap: u64, keep_seq: u64) -> Vec<Entry> {
        let mut out = Vec::new();
        let small_target = cap / 100 * SMALL_SHARE_PERCENT;
        // Each main entry can go round at most FREQ_MAX times; hits from other cores during
        // this loop could add a few more: past this many steps, evict regardless.
        let mut steps_left = (self.small.len() + self.main.len()) * (FREQ_MAX as usize + 2) + 8;
        while self.bytes() > cap {
            let newest_small = self.small.back().is_some_and(|e| e.seq == keep_seq);
            let newest_main = self.main.back().is_some_and(|e| e.seq == keep_seq);
            let small_avail = self.small.len() - usize::from(newest_small);
            let main_avail = self.main.len() - usize::from(newest_main);
            if small_avail + main_avail == 0 {
                break;
            }
            let from_small =
                small_avail > 0 && (self.small_bytes > small_target || main_avail == 0);
            steps_left = steps_left.saturating_sub(1);
            if from_small {
                let e = self.small.pop_front().expect("small queue not empty");
                self.small_bytes -= e.size;
                if e.freq().load(Relaxed) > 0 && steps_left > 0 {
                    self.main_bytes += e.size;
                    self.main.push_back(e);
                } else {
                    self.ghost_add(key_hash(&e.ns, &e.key));
                    out.push(e);
                }
            } else {
                let e = self.main.pop_front().expect("main queue not empty");
                self.main_bytes -= e.size;
                let f = e.freq().load(Relaxed);
                if f > 0 && steps_left > 0 {
                    e.freq().store(f - 1, Relaxed);
                    self.main_bytes += e.size;
                    self.main.push_back(e);
                } else {
                    out.push(e);
                }
            }
        }
        for e in &out {
            TIER.bytes.fetch_sub(e.size, Relaxed);
            TIER.entries.fetch_sub(1, Relaxed);
            TIER.evictions.fetch_add(1, Relaxed);
            TIER.evicted_bytes.fetch_add(e.size, Relaxed);
        }
        out
    }
}

thread_local! {
    /// Per shard (by address) on this core.
    static TIERS: RefCell<HashMap<usize, Tier>> = RefCell::new(HashMap::new());
}

/// Seeds the queues of `shard` with the entries the engine holds (those stored before this
/// start), oldest first, at the head of the small queue (nothing is known of how often they
/// were read: they leave first unless a hit marks them), skipping entries the queues already hold
/// (admitted while this ran: it yields between pages). Runs once per shard, at the shard's
/// first admission after the start, before anything is evicted, so the bound holds across
/// restarts.
async fn seed(shard: &Rc<Shard>, id: usize) {
    let mut found = Vec::new();
    for ns in shard.namespaces() {
        let mut after: Option<String> = None;
        loop {
            let page = shard.list(&ns, "", after.as_deref(), None, SEED_PAGE);
            let full = page.len() == SEED_PAGE;
            for item in page {
                if let ListItem::Object { key, obj } = item {
                    after = Some(key.clone());
                    found.push(Entry {
                        ns: ns.clone(),
                        key,
                        seq: obj.seq,
                        mtime_ms: obj.mtime_ms,
                        size: obj.size,
                    });
                }
            }
            if !full {
                break;
            }
            yield_now().await;
        }
    }
    found.sort_by_key(|e| e.seq);
    let n = found.len();
    TIERS.with(|t| {
        let mut t = t.borrow_mut();
        let tier = t.get_mut(&id).expect("tier made before seeding");
        let queued: HashSet<u64> = tier
            .small
            .iter()
            .chain(tier.main.iter())
            .map(|e| e.seq)
            .collect();
        let mut bytes = 0;
        for e in found.into_iter().rev().filter(|e| !queued.contains(&e.seq)) {
            bytes += e.size;
            TIER.bytes.fetch_add(e.size, Relaxed);
            TIER.entries.fetch_add(1, Relaxed);
            tier.small_bytes += e.size;
            tier.small.push_front(e);
        }
        tier.seeding = false;
        tracing::info!(
            entries = n,
            bytes,
            "gateway: local tier counted what it held before the start"
        );
    });
}

/// Seeds every shard's queues right after a start (from a thread of its own, one shard after
/// the other on its owner core), so that `bale_gateway_local_bytes` counts what the tier
/// holds before the first fill. A shard whose first fill came first was seeded by it.
pub fn seed_at_start(s3: crate::s3::BaleS3, shards: usize, cap: u64) {
    if cap == 0 {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("bale-gw-seed".into())
        .spawn(move || {
            for id in 0..shards {
                let r = futures::executor::block_on(s3.shard(id).run(move |shard| async move {
                    seed_now(&shard, cap).await;
                    Ok(())
                }));
                if let Err(e) = r {
                    tracing::warn!(shard = id, error = %e, "gateway: seeding the local tier failed");
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "gateway: cannot start seeding the local tier");
    }
}

/// On the shard's owner core: seeds its queues unless an admission did, then evicts past
/// `cap` (the admissions queued while it ran did not).
async fn seed_now(shard: &Rc<Shard>, cap: u64) {
    let id = Rc::as_ptr(shard) as usize;
    let first = TIERS.with(|t| {
        let mut t = t.borrow_mut();
        if t.contains_key(&id) {
            return false;
        }
        t.entry(id).or_default().seeding = true;
        true
    });
    if !first {
        return;
    }
    seed(shard, id).await;
    let victims = TIERS.with(|t| {
        let mut t = t.borrow_mut();
        t.get_mut(&id)
            .map(|tier| tier.evict(cap, u64::MAX))
            .unwrap_or_default()
    });
    for e in victims {
        match shard.delete(&e.ns, &e.key, Expect::Seq(e.seq)).await {
            Ok(_) | Err(bale_io::Error::PreconditionFailed) => {}
            Err(err) => tracing::warn!(error = %err, bucket = %e.ns, "gateway: eviction failed"),
        }
    }
}

/// Records a stored entry (committed as `seq`) and evicts past `cap` bytes of this shard
/// (deleted: their records become garbage that hole punching and compaction reclaim).
pub async fn admitted(shard: &Rc<Shard>, ns: &str, key: &str, seq: u64, size: u64, cap: u64) {
    admitted_as(shard, ns, key, seq, size, cap, Origin::Fill).await
}

/// Where a local entry came from (what `/metrics` counts it as).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Origin {
    /// An upstream read (a miss).
    Fill,
    /// A write-through body, kept after the upstream acknowledged it.
    Write,
}

async fn admitted_as(
    shard: &Rc<Shard>,
    ns: &str,
    key: &str,
    seq: u64,
    size: u64,
    cap: u64,
    origin: Origin,
) {
    match origin {
        Origin::Fill => crate::metrics::gateway::filled(size),
        Origin::Write => crate::metrics::gateway::kept_write(size),
    }
    if cap == 0 {
        return;
    }
    // The commit time names the entry's access counter (as a hit sees it).
    let Some(obj) = shard.get(ns, key).filter(|o| o.seq == seq) else {
        return; // already replaced or removed
    };
    let id = Rc::as_ptr(shard) as usize;
    let first = TIERS.with(|t| {
        let mut t = t.borrow_mut();
        let first = !t.contains_key(&id);
        let tier = t.entry(id).or_default();
        if first {
            tier.seeding = true;
        }
        tier.push(Entry {
            ns: ns.to_string(),
            key: key.to_string(),
            seq,
            mtime_ms: obj.mtime_ms,
            size,
        });
        first
    });
    drop(obj);
    if first {
        seed(shard, id).await;
    }
    let victims = TIERS.with(|t| {
        let mut t = t.borrow_mut();
        let tier = t.get_mut(&id).expect("tier exists");
        if tier.seeding {
            Vec::new() // the seeding admission evicts once it is done
        } else {
            tier.evict(cap, seq)
        }
    });
    for e in victims {
        match shard.delete(&e.ns, &e.key, Expect::Seq(e.seq)).await {
            Ok(_) | Err(bale_io::Error::PreconditionFailed) => {
                tracing::debug!(bucket = %e.ns, bytes = e.size, "gateway: evicted a local entry");
            }
            Err(err) => tracing::warn!(error = %err, bucket = %e.ns, "gateway: eviction failed"),
        }
    }
}

// ---- storing --------------------------------------------------------------------------------

/// Stores `chunks` (exactly `len` bytes) of an upstream read under `key` with `meta`.
/// `expect` decides against a concurrent writer (a fill stores only where nothing is:
/// `Expect::Absent`).
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
    store_as(shard, ns, key, chunks, len, meta, expect, cap, Origin::Fill).await
}

/// `store` for what a local entry came from.
#[allow(clippy::too_many_arguments)]
pub async fn store_as(
    shard: &Rc<Shard>,
    ns: &str,
    key: &str,
    chunks: Vec<Bytes>,
    len: u64,
    meta: &ObjMeta,
    expect: Expect,
    cap: u64,
    origin: Origin,
) -> anyhow::Result<Option<u64>> {
    use anyhow::Context;
    let enc = meta.encode().context("metadata too large")?;
    let mut w = shard.put(ns, key, len).context("reserving space")?;
    if matches!(origin, Origin::Fill) {
        // Nobody waits on a fill's commit but the key's flight: let fills share sync rounds.
        w = w.lazy();
    }
    for c in chunks {
        w.write(c).await.context("writing")?;
    }
    match w.finish(enc, expect).await {
        Ok(o) => {
            admitted_as(shard, ns, key, o.seq, len, cap, origin).await;
            Ok(Some(o.seq))
        }
        Err(bale_io::Error::PreconditionFailed) => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context("committing")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, seq: u64, size: u64) -> Entry {
        Entry {
            ns: "b".to_string(),
            key: key.to_string(),
            // Far from other tests' entries (the counters are process-wide).
            seq: seq + 1_000_000u64.wrapping_mul(fnv64(key).rotate_left(7)) % 1_000_000_007,
            mtime_ms: 42,
            size,
        }
    }

    fn keys(v: &[Entry]) -> Vec<&str> {
        v.iter().map(|e| e.key.as_str()).collect()
    }

    trait ClonedKeys {
        fn cloned_keys(self) -> Vec<Entry>;
    }

    impl<'a, I: Iterator<Item = &'a Entry>> ClonedKeys for I {
        fn cloned_keys(self) -> Vec<Entry> {
            self.map(|e| Entry {
                ns: e.ns.clone(),
                key: e.key.clone(),
                seq: e.seq,
                mtime_ms: e.mtime_ms,
                size: e.size,
            })
            .collect()
        }
    }

    fn admit(t: &mut Tier, cap: u64, e: Entry) -> Vec<Entry> {
        let seq = e.seq;
        t.push(e);
        t.evict(cap, seq)
    }

    #[test]
    fn without_hits_the_small_queue_is_a_fifo_and_the_newest_stays() {
        let mut t = Tier::default();
        let mut out = Vec::new();
        for i in 0..8 {
            out.extend(admit(&mut t, 400, entry(&format!("fifo{i}"), i, 100)));
        }
        assert_eq!(keys(&out), ["fifo0", "fifo1", "fifo2", "fifo3"]);
        assert_eq!(t.bytes(), 400);
        // One entry bigger than the capacity is kept until the next admission.
        let mut t = Tier::default();
        assert!(admit(&mut t, 50, entry("fifo-big", 1, 100)).is_empty());
        assert_eq!(
            keys(&admit(&mut t, 50, entry("fifo-next", 2, 10))),
            ["fifo-big"]
        );
    }

    #[test]
    fn a_hit_entry_survives_a_scan_larger_than_capacity() {
        let mut t = Tier::default();
        let hot = entry("scan-hot", 1, 100);
        let (hs, hm) = (hot.seq, hot.mtime_ms);
        admit(&mut t, 1000, hot);
        touched(hs, hm);
        let mut evicted = Vec::new();
        for i in 0..50 {
            evicted.extend(admit(&mut t, 1000, entry(&format!("scan{i}"), 10 + i, 100)));
        }
        assert!(
            !keys(&evicted).contains(&"scan-hot"),
            "{:?}",
            keys(&evicted)
        );
        assert_eq!(keys(&t.main.iter().cloned_keys()), ["scan-hot"]);
        assert!(t.bytes() <= 1000);
    }

    #[test]
    fn a_ghost_key_is_readmitted_to_main() {
        let mut t = Tier::default();
        admit(&mut t, 500, entry("ghost-x", 1, 100));
        let mut evicted = Vec::new();
        for i in 0..10 {
            evicted.extend(admit(
                &mut t,
                500,
                entry(&format!("ghost-s{i}"), 10 + i, 100),
            ));
        }
        assert!(keys(&evicted).contains(&"ghost-x"));
        admit(&mut t, 500, entry("ghost-x", 100, 100));
        assert_eq!(keys(&t.main.iter().cloned_keys()), ["ghost-x"]);
        for i in 0..10 {
            let out = admit(&mut t, 500, entry(&format!("ghost-t{i}"), 200 + i, 100));
            assert!(!keys(&out).contains(&"ghost-x"));
        }
    }

    #[test]
    fn the_ghost_queue_is_bounded() {
        let mut t = Tier::default();
        for i in 0..(GHOST_MAX_KEYS as u64 + 100) {
            t.ghost_add(i);
        }
        assert_eq!(t.ghost.len(), GHOST_MAX_KEYS);
        assert_eq!(t.ghost_set.len(), GHOST_MAX_KEYS);
        assert!(!t.ghost_take(5));
        assert!(t.ghost_take(GHOST_MAX_KEYS as u64 + 50));
    }

    #[test]
    fn counters_saturate() {
        let (seq, ms) = (987_654_321, 7);
        for _ in 0..10 {
            touched(seq, ms);
        }
        assert_eq!(freq_slot(seq, ms).load(Relaxed), FREQ_MAX);
    }

    /// The hit's added cost (run: cargo test --release -p bale hit_counter_cost -- --ignored
    /// --nocapture).
    #[test]
    #[ignore]
    fn hit_counter_cost() {
        let n = 50_000_000u64;
        let t = std::time::Instant::now();
        for i in 0..n {
            touched(std::hint::black_box(i & 0xffff), 1_700_000_000_000);
        }
        let ns = t.elapsed().as_nanos() as f64 / n as f64;
        eprintln!("touched(): {ns:.2} ns per hit");
    }

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
