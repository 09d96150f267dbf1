//! `bale-bench wal`: a Woodpecker-shaped write-ahead log on object storage (Milvus 2.6).
//!
//! W writers each append to their own log. A writer buffers appended bytes and flushes them as
//! one fragment object `{prefix}{run}/{log}/{segment}/{n}` with `If-None-Match: *` every
//! `--flush-ms` or when `--flush-bytes` are buffered, whichever comes first. Each segment starts
//! with a fence object (`.../fence`, `x-amz-meta-*`, also conditional). One reader per log
//! tails it: a fragment is read the moment its PUT is acknowledged, and a 404 then is a lost
//! acknowledged write. A finished segment is cleaned up by a prefix listing (which must list
//! exactly its objects) and deletes. After the timed phase, pairs of clients race to create the
//! same fragment: exactly one must win, the other must get 412 (or 409, AWS's answer for a
//! conditional write racing another in flight).
//!
//! Reported: append latency (the oldest appended byte of a fragment to its acknowledgement),
//! fragment PUT latency, MB/s, reader lag (acknowledgement to the reader holding the verified
//! bytes), listing and delete latency, and every violation. Any violation exits 1.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use clap::Args;

use crate::data::{self, parse_size, Verifier};
use crate::http::{Client, Req};
use crate::stats::{self, Hist};
use crate::{create_bucket, list_v2_page, parse_duration, pin, Common, Errors};

#[derive(Args)]
pub struct WalArgs {
    #[command(flatten)]
    common: Common,
    /// Writers, each appending to its own log (Woodpecker's default is 4 per stream node).
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// Length of the append phase (e.g. 10s).
    #[arg(long, short = 'd', default_value = "10s")]
    duration: String,
    /// Flush a fragment at least this often, milliseconds ...
    #[arg(long, default_value_t = 200)]
    flush_ms: u64,
    /// ... or as soon as this many bytes are buffered.
    #[arg(long, default_value = "2m")]
    flush_bytes: String,
    /// Bytes appended per writer per second (`0`: unbounded, every fragment is a full
    /// --flush-bytes sent back to back: the store's capacity).
    #[arg(long, default_value = "1m")]
    append_rate: String,
    /// Fragments per segment; each segment begins with a fence object.
    #[arg(long, default_value_t = 32)]
    segment_fragments: u64,
    /// Conditional-create races (two clients, one key each) after the append phase.
    #[arg(long, default_value_t = 50)]
    races: u64,
    /// Key prefix; a run id is appended so reruns never collide.
    #[arg(long, default_value = "wal/")]
    prefix: String,
}

/// What a writer tells its reader about one acknowledged fragment.
struct Acked {
    index: u64,
    size_bytes: u64,
    at: Instant,
}

/// One log's shared state between its writer and its reader.
struct Log {
    acked: Mutex<VecDeque<Acked>>,
    writer_done: AtomicBool,
}

/// Violations and counters; every field is checked at the end.
#[derive(Default)]
struct Tally {
    missing_after_ack: AtomicU64,
    bad_bytes: AtomicU64,
    list_mismatch: AtomicU64,
    race_wins: AtomicU64,
    race_refused: AtomicU64,
    race_lost: AtomicU64,
    race_other: AtomicU64,
}

struct Hists {
    append: Hist,
    put: Hist,
    lag: Hist,
    list: Hist,
    delete: Hist,
}

impl Hists {
    fn new() -> Self {
        Hists {
            append: Hist::new(),
            put: Hist::new(),
            lag: Hist::new(),
            list: Hist::new(),
            delete: Hist::new(),
        }
    }
    fn merge(&mut self, o: &Hists) {
        self.append.merge(&o.append);
        self.put.merge(&o.put);
        self.lag.merge(&o.lag);
        self.list.merge(&o.list);
        self.delete.merge(&o.delete);
    }
}

struct Plan<'a> {
    a: &'a WalArgs,
    run: String,
    flush_bytes: u64,
    rate_bytes_per_s: u64,
    until: Instant,
    errors: &'a Errors,
    tally: &'a Tally,
}

impl Plan<'_> {
    fn segment_dir(&self, log: usize, seg: u64) -> String {
        format!("{}{}/{log:02}/{seg:06}/", self.a.prefix, self.run)
    }
    fn fragment_key(&self, log: usize, index: u64) -> String {
        let seg = index / self.a.segment_fragments;
        let n = index % self.a.segment_fragments;
        format!("{}{n:08}", self.segment_dir(log, seg))
    }
}

/// PUT with `If-None-Match: *`; returns the status.
fn put_if_absent(
    c: &mut Client,
    bucket: &str,
    key: &str,
    body: &[u8],
    meta: &[(&str, &str)],
) -> Result<u16, String> {
    let path = format!("/{bucket}/{key}");
    let mut headers: Vec<(&str, &str)> = vec![("if-none-match", "*")];
    headers.extend_from_slice(meta);
    let mut req = Req::new("PUT", &path);
    req.body = Some(body);
    req.headers = &headers;
    Ok(c.send(&req, &mut |_| {})?.status)
}

/// One writer: appends at the configured rate, flushes fragments, starts segments with fences.
fn writer(p: &Plan, log_id: usize, log: &Log) -> Hists {
    let mut c = p.a.common.client();
    let mut h = Hists::new();
    let bucket = &p.a.common.bucket;
    let flush_every = Duration::from_millis(p.a.flush_ms.max(1));
    let mut buf = Vec::new();
    let mut index = 0u64;
    // Bytes appended but not yet flushed, and when the oldest of them was appended.
    let mut backlog_bytes = 0u64;
    let mut oldest = Instant::now();
    let mut accounted = Instant::now();
    let mut last_flush = Instant::now();
    while Instant::now() < p.until {
        let now = Instant::now();
        if p.rate_bytes_per_s == 0 {
            backlog_bytes = p.flush_bytes;
            oldest = now;
        } else {
            let add = (now - accounted).as_secs_f64() * p.rate_bytes_per_s as f64;
            if backlog_bytes == 0 && add >= 1.0 {
                oldest = accounted;
            }
            backlog_bytes += add as u64;
            accounted = now;
            let full = backlog_bytes >= p.flush_bytes;
            if !full && now < last_flush + flush_every {
                let fill = Duration::from_secs_f64(
                    (p.flush_bytes - backlog_bytes) as f64 / p.rate_bytes_per_s as f64,
                );
                std::thread::sleep((last_flush + flush_every - now).min(fill));
                continue;
            }
            if backlog_bytes == 0 {
                last_flush = now;
                continue;
            }
        }
        if index.is_multiple_of(p.a.segment_fragments) {
            write_fence(p, &mut c, log_id, index / p.a.segment_fragments);
        }
        let size = backlog_bytes.min(p.flush_bytes);
        let key = p.fragment_key(log_id, index);
        buf.resize(size as usize, 0);
        data::fill(data::key_seed(&key), 0, &mut buf);
        let t0 = Instant::now();
        match put_if_absent(&mut c, bucket, &key, &buf, &[]) {
            Ok(200) => {
                let done = Instant::now();
                h.put.record(done - t0, size);
                h.append.record(done - oldest, size);
                log.acked.lock().unwrap().push_back(Acked {
                    index,
                    size_bytes: size,
                    at: done,
                });
                index += 1;
            }
            Ok(s) => p.errors.add(&format!("append {key}: status {s}")),
            Err(e) => p.errors.add(&format!("append {key}: {e}")),
        }
        backlog_bytes -= size;
        oldest = Instant::now();
        last_flush = Instant::now();
    }
    log.writer_done.store(true, Ordering::Release);
    h
}

fn write_fence(p: &Plan, c: &mut Client, log_id: usize, seg: u64) {
    let key = format!("{}fence", p.segment_dir(log_id, seg));
    let (writer_s, seg_s) = (log_id.to_string(), seg.to_string());
    let meta = [
        ("x-amz-meta-writer", writer_s.as_str()),
        ("x-amz-meta-segment", seg_s.as_str()),
    ];
    match put_if_absent(c, &p.a.common.bucket, &key, b"fence", &meta) {
        Ok(200) => {}
        Ok(s) => p.errors.add(&format!("fence {key}: status {s}")),
        Err(e) => p.errors.add(&format!("fence {key}: {e}")),
    }
}

/// One reader: reads each fragment as soon as it is acknowledged, verifies its bytes, and
/// cleans up each finished segment.
fn reader(p: &Plan, log_id: usize, log: &Log) -> Hists {
    let mut c = p.a.common.client();
    let mut h = Hists::new();
    loop {
        let next = log.acked.lock().unwrap().pop_front();
        let Some(f) = next else {
            if log.writer_done.load(Ordering::Acquire) && log.acked.lock().unwrap().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
            continue;
        };
        let key = p.fragment_key(log_id, f.index);
        read_fragment(p, &mut c, &key, f.size_bytes);
        h.lag.record(f.at.elapsed(), f.size_bytes);
        if (f.index + 1).is_multiple_of(p.a.segment_fragments) {
            let seg = f.index / p.a.segment_fragments;
            clean_segment(p, &mut c, &p.segment_dir(log_id, seg), &mut h);
        }
    }
    h
}

fn read_fragment(p: &Plan, c: &mut Client, key: &str, size_bytes: u64) {
    let path = format!("/{}/{key}", p.a.common.bucket);
    let mut v = Verifier::new(key, 0);
    match c.send(&Req::new("GET", &path), &mut |b| v.feed(b)) {
        Ok(r) if r.status == 200 && v.seen() == size_bytes && v.mismatch.is_none() => {}
        Ok(r) if r.status == 404 => {
            p.tally.missing_after_ack.fetch_add(1, Ordering::Relaxed);
            p.errors
                .add(&format!("acknowledged fragment {key} answered 404"));
        }
        Ok(r) => {
            p.tally.bad_bytes.fetch_add(1, Ordering::Relaxed);
            p.errors.add(&format!(
                "fragment {key}: status {} with {} of {size_bytes} bytes, mismatch at {:?}",
                r.status,
                v.seen(),
                v.mismatch
            ));
        }
        Err(e) => p.errors.add(&format!("read {key}: {e}")),
    }
}

/// Lists a finished segment (it must hold its fragments and its fence, nothing else) and
/// deletes each object.
fn clean_segment(p: &Plan, c: &mut Client, dir: &str, h: &mut Hists) {
    let bucket = &p.a.common.bucket;
    let t0 = Instant::now();
    let keys = match list_keys(c, bucket, dir) {
        Ok(k) => k,
        Err(e) => return p.errors.add(&format!("list {dir}: {e}")),
    };
    h.list.record(t0.elapsed(), 0);
    if keys.len() as u64 != p.a.segment_fragments + 1 {
        p.tally.list_mismatch.fetch_add(1, Ordering::Relaxed);
        p.errors.add(&format!(
            "segment {dir} lists {} objects, want {}",
            keys.len(),
            p.a.segment_fragments + 1
        ));
    }
    for k in keys {
        let t0 = Instant::now();
        match c.send(&Req::new("DELETE", &format!("/{bucket}/{k}")), &mut |_| {}) {
            Ok(r) if r.status == 204 || r.status == 200 => h.delete.record(t0.elapsed(), 0),
            Ok(r) => p.errors.add(&format!("delete {k}: status {}", r.status)),
            Err(e) => p.errors.add(&format!("delete {k}: {e}")),
        }
    }
}

/// Every key under `prefix` (ListObjectsV2, following continuation tokens).
fn list_keys(c: &mut Client, bucket: &str, prefix: &str) -> Result<Vec<String>, String> {
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..10_000 {
        let mut q: Vec<(&str, &str)> = vec![("prefix", prefix)];
        if let Some(t) = token.as_deref() {
            q.push(("continuation-token", t));
        }
        let text = list_v2_page(c, bucket, &q)?;
        keys.extend(xml_values(&text, "Key"));
        token = xml_values(&text, "NextContinuationToken")
            .into_iter()
            .next();
        if token.is_none() {
            return Ok(keys);
        }
    }
    Err("more than 10,000 listing pages".into())
}

/// The text of every `<tag>…</tag>` (keys here are plain ASCII: no entities to decode).
fn xml_values(text: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(after[..j].to_string());
        rest = &after[j + close.len()..];
    }
    out
}

/// Pairs of clients race to create the same fragment key: exactly one may win.
fn races(p: &Plan) {
    let bucket = &p.a.common.bucket;
    let barrier = Barrier::new(2);
    let statuses: [Mutex<Vec<u16>>; 2] = [Mutex::new(Vec::new()), Mutex::new(Vec::new())];
    std::thread::scope(|s| {
        for side in 0..2 {
            let (barrier, statuses) = (&barrier, &statuses);
            s.spawn(move || {
                let mut c = p.a.common.client();
                let body = vec![side as u8; 4096];
                for i in 0..p.a.races {
                    let key = format!("{}{}/race/{i:06}", p.a.prefix, p.run);
                    barrier.wait();
                    let st = put_if_absent(&mut c, bucket, &key, &body, &[]).unwrap_or_else(|e| {
                        p.errors.add(&format!("race {key}: {e}"));
                        0
                    });
                    statuses[side].lock().unwrap().push(st);
                }
            });
        }
    });
    let (a, b) = (statuses[0].lock().unwrap(), statuses[1].lock().unwrap());
    for (x, y) in a.iter().zip(b.iter()) {
        let refused = |s: &u16| *s == 412 || *s == 409;
        match (*x, *y) {
            (200, 200) => &p.tally.race_lost,
            (200, s) | (s, 200) if refused(&s) => {
                p.tally.race_refused.fetch_add(1, Ordering::Relaxed);
                &p.tally.race_wins
            }
            _ => &p.tally.race_other,
        }
        .fetch_add(1, Ordering::Relaxed);
    }
}

pub fn run(a: WalArgs) -> i32 {
    let errors = Errors::new(a.common.max_error_lines);
    let tally = Tally::default();
    let parse = |s: &str| {
        parse_size(s).unwrap_or_else(|e| {
            eprintln!("error: {e}");
            std::process::exit(2)
        })
    };
    let flush_bytes = parse(&a.flush_bytes).max(1);
    let rate_bytes_per_s = parse(&a.append_rate);
    let dur = parse_duration(&a.duration).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2)
    });
    if a.writers == 0 || a.segment_fragments == 0 {
        eprintln!("error: --writers and --segment-fragments must be at least 1");
        return 2;
    }
    if let Err(e) = create_bucket(&mut a.common.client(), &a.common.bucket) {
        eprintln!("error: {e}");
        return 1;
    }
    let run_id = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0)
    );
    let t0 = Instant::now();
    let plan = Plan {
        a: &a,
        run: run_id,
        flush_bytes,
        rate_bytes_per_s,
        until: t0 + dur,
        errors: &errors,
        tally: &tally,
    };
    let logs: Vec<Log> = (0..a.writers)
        .map(|_| Log {
            acked: Mutex::new(VecDeque::new()),
            writer_done: AtomicBool::new(false),
        })
        .collect();
    let cpus = a.common.cpus();
    let mut total = Hists::new();
    let mut append_elapsed = Duration::ZERO;
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for (i, log) in logs.iter().enumerate() {
            let (plan, cpus) = (&plan, &cpus);
            handles.push(s.spawn(move || {
                pin(cpus);
                writer(plan, i, log)
            }));
            handles.push(s.spawn(move || {
                pin(cpus);
                reader(plan, i, log)
            }));
        }
        for h in handles {
            total.merge(&h.join().expect("wal thread panicked"));
        }
        append_elapsed = t0.elapsed().min(dur.max(Duration::from_millis(1)));
    });
    races(&plan);
    report(&a, &total, &tally, &errors, append_elapsed)
}

fn report(a: &WalArgs, h: &Hists, t: &Tally, errors: &Errors, elapsed: Duration) -> i32 {
    let get = |x: &AtomicU64| x.load(Ordering::Relaxed);
    let mut append = h.append.report("wal-append", elapsed);
    append.extra = Some(serde_json::json!({
        "writers": a.writers,
        "flush_ms": a.flush_ms,
        "flush_bytes": a.flush_bytes,
        "append_rate_per_writer": a.append_rate,
        "segment_fragments": a.segment_fragments,
        "missing_after_ack": get(&t.missing_after_ack),
        "bad_bytes": get(&t.bad_bytes),
        "list_mismatch": get(&t.list_mismatch),
        "races": a.races,
        "race_one_winner": get(&t.race_wins),
        "race_both_won": get(&t.race_lost),
        "race_other": get(&t.race_other),
    }));
    let reports = [
        append,
        h.put.report("wal-fragment-put", elapsed),
        h.lag.report("wal-reader-lag", elapsed),
        h.list.report("wal-segment-list", elapsed),
        h.delete.report("wal-delete", elapsed),
    ];
    let mut meta = a.common.meta("wal");
    meta["duration"] = a.duration.clone().into();
    stats::emit(a.common.json, meta, &reports);
    let violations = get(&t.missing_after_ack)
        + get(&t.bad_bytes)
        + get(&t.list_mismatch)
        + get(&t.race_lost)
        + get(&t.race_other);
    if violations > 0 {
        eprintln!("wal: {violations} violation(s): see the counters above");
    }
    ((errors.count() + violations) > 0) as i32
}
