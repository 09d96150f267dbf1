//! `bale-bench scale`: many small objects with Milvus-shaped keys (issue 13).
//!
//! Object `i` is `files/insert_log/{collection}/{partition}/{segment}/{field}/{log id}`, the
//! layout Milvus writes its binlogs in: 64 objects per segment (8 fields x 8 binlogs), every
//! number fixed-width, so key order is index order and a listing's expected contents follow
//! from `i`. Sizes come from a mix (1 KiB - 64 KiB by default), chosen per index by a hash.
//!
//! Phases (one per run; `scripts/bench-scale.py` drives them around restarts and reads RSS,
//! the data directory's footprint and the block device's counters):
//! - `load`: PUT objects `[start, start + count)`, c connections; reports PUT latency and rate.
//! - `list`: ListObjectsV2 pages of 1,000 from random points of the keyspace, without and
//!   (with `--delimiter`) with `/` (then the page is of segment prefixes); checks each page's
//!   length and first key.
//! - `head` / `get`: random objects; checks Content-Length (and the bytes, for `get`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use clap::{Args, ValueEnum};

use crate::data::Rng;
use crate::http::Client;
use crate::stats::{self, Hist};
use crate::{
    create_bucket, get_verified, head_verified, list_v2_page, pin, put_object, Common, Errors,
    ObjectSet,
};

/// Objects per Milvus segment in this layout (8 fields x 8 binlogs).
const OBJECTS_PER_SEGMENT: u64 = 64;
/// Keys per ListObjectsV2 page (S3's default and maximum).
const PAGE_KEYS: u64 = 1000;
const COLLECTION_ID: u64 = 449_210_613_400_000_001;
const PARTITION_ID: u64 = 449_210_613_400_000_002;
const SEGMENT_BASE: u64 = 449_210_613_500_000_000;
const LOG_BASE: u64 = 449_210_613_600_000_000;

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum Phase {
    Load,
    List,
    Head,
    Get,
}

#[derive(Args)]
pub struct ScaleArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, value_enum)]
    phase: Phase,
    /// Objects in the keyspace (for `load`: how many to PUT from --start).
    #[arg(long, short = 'n', default_value_t = 100_000)]
    count: u64,
    /// First object index `load` writes (load a big set in steps).
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Object size or mix, chosen per index.
    #[arg(long, default_value = "1k,2k,4k,8k,16k,32k,64k")]
    size: String,
    /// Concurrent connections.
    #[arg(long, short = 'c', default_value_t = 16)]
    concurrency: usize,
    /// Requests for list/head/get.
    #[arg(long, default_value_t = 200)]
    requests: u64,
    /// `list`: group by `/` (a page of segment prefixes).
    #[arg(long)]
    delimiter: bool,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Directory holding every segment of the one collection and partition.
fn partition_dir() -> String {
    format!("files/insert_log/{COLLECTION_ID}/{PARTITION_ID}/")
}

fn segment_dir(seg: u64) -> String {
    format!("{}{}/", partition_dir(), SEGMENT_BASE + seg)
}

/// Key of object `i`.
fn key(i: u64) -> String {
    let seg = i / OBJECTS_PER_SEGMENT;
    let field = 100 + (i % OBJECTS_PER_SEGMENT) / 8;
    format!("{}{field}/{}", segment_dir(seg), LOG_BASE + i)
}

pub fn run(a: ScaleArgs) -> i32 {
    let sizes = ObjectSet {
        count: a.count,
        size: a.size.clone(),
        prefix: String::new(),
    }
    .sizes();
    let errors = Errors::new(a.common.max_error_lines);
    if a.phase == Phase::Load {
        if let Err(e) = create_bucket(&mut a.common.client(), &a.common.bucket) {
            eprintln!("error: {e}");
            return 1;
        }
    }
    let total = match a.phase {
        Phase::Load => a.count,
        _ => a.requests,
    };
    let next = AtomicU64::new(0);
    let cpus = a.common.cpus();
    let t0 = Instant::now();
    let mut hist = Hist::new();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..a.concurrency.max(1))
            .map(|t| {
                let (a, sizes, errors, next, cpus) = (&a, &sizes, &errors, &next, &cpus);
                s.spawn(move || {
                    pin(cpus);
                    worker(a, sizes, errors, next, total, t as u64)
                })
            })
            .collect();
        for h in handles {
            hist.merge(&h.join().expect("scale worker panicked"));
        }
    });
    let name = match a.phase {
        Phase::Load => "scale-put",
        Phase::List if a.delimiter => "scale-list-delimited",
        Phase::List => "scale-list",
        Phase::Head => "scale-head",
        Phase::Get => "scale-get",
    };
    let mut r = hist.report(name, t0.elapsed());
    r.errors = errors.count();
    let mut meta = a.common.meta("scale");
    meta["objects"] = a.count.into();
    meta["start"] = a.start.into();
    if a.phase == Phase::Load {
        meta["object_bytes"] = object_bytes(&sizes, a.start, a.count).into();
    }
    meta["size"] = a.size.clone().into();
    meta["concurrency"] = a.concurrency.into();
    stats::emit(a.common.json, meta, &[r]);
    (errors.count() > 0) as i32
}

fn worker(
    a: &ScaleArgs,
    sizes: &[u64],
    errors: &Errors,
    next: &AtomicU64,
    total: u64,
    thread: u64,
) -> Hist {
    let mut c = a.common.client();
    let mut h = Hist::new();
    let mut buf = Vec::new();
    let mut rng = Rng::new(a.seed.wrapping_mul(0x9e37_79b9) ^ thread);
    let bucket = &a.common.bucket;
    loop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        if n >= total {
            return h;
        }
        let i = match a.phase {
            Phase::Load => a.start + n,
            _ => rng.below(a.count.max(1)),
        };
        let size = ObjectSet::size_of(sizes, i);
        let t = Instant::now();
        let r = match a.phase {
            Phase::Load => put_object(&mut c, bucket, &key(i), &mut buf, size).map(|_| size),
            Phase::Head => head_verified(&mut c, bucket, &key(i), size),
            Phase::Get => get_verified(&mut c, bucket, &key(i), size, None),
            Phase::List => list_page(&mut c, bucket, i, a.count, a.delimiter),
        };
        match r {
            Ok(bytes) => h.record(t.elapsed(), bytes),
            Err(e) => {
                h.errors += 1;
                errors.add(&e);
            }
        }
    }
}

/// One 1,000-key page after object `i` (or, with the delimiter, after its segment); checks
/// how many entries came back and which was first.
fn list_page(
    c: &mut Client,
    bucket: &str,
    i: u64,
    count: u64,
    delimiter: bool,
) -> Result<u64, String> {
    let (prefix, after, want_len, want_first) = if delimiter {
        let seg = i / OBJECTS_PER_SEGMENT;
        let segs = count.div_ceil(OBJECTS_PER_SEGMENT);
        let left = segs - seg - 1;
        (
            partition_dir(),
            segment_dir(seg),
            left.min(PAGE_KEYS),
            segment_dir(seg + 1),
        )
    } else {
        let left = count - i - 1;
        (
            "files/".to_string(),
            key(i),
            left.min(PAGE_KEYS),
            key(i + 1),
        )
    };
    let mut q: Vec<(&str, &str)> = vec![("prefix", &prefix), ("start-after", &after)];
    if delimiter {
        q.push(("delimiter", "/"));
    }
    let text = list_v2_page(c, bucket, &q).map_err(|e| format!("list after {after}: {e}"))?;
    let tag = if delimiter { "<Prefix>" } else { "<Key>" };
    // With a delimiter the response also carries the request's own <Prefix>: skip it.
    let skip = usize::from(delimiter);
    let entries: Vec<&str> = text.split(tag).skip(1 + skip).collect();
    if entries.len() as u64 != want_len {
        return Err(format!(
            "list after {after}: {} entries, want {want_len}",
            entries.len()
        ));
    }
    if want_len > 0 && !entries[0].starts_with(&want_first) {
        return Err(format!(
            "list after {after}: first entry is not {want_first}"
        ));
    }
    Ok(text.len() as u64)
}

/// Bytes of the objects `[start, start + count)` (the logical size a footprint is compared
/// with).
fn object_bytes(sizes: &[u64], start: u64, count: u64) -> u64 {
    (start..start + count)
        .map(|i| ObjectSet::size_of(sizes, i))
        .sum()
}
