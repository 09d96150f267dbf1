//! Milvus segment-load replay.
//!
//! Builds a bucket with the layout a Milvus deployment writes (under `--root`, default `files`):
//!
//! ```text
//! insert_log/{collection}/{partition}/{segment}/{field}/{log}    binlogs (vector field large)
//! stats_log/{collection}/{partition}/{segment}/{pk field}/{log}  small stats
//! delta_log/{collection}/{partition}/{segment}/{log}             small deletes
//! index_files/{build}_{version}_{segment}_{field}/index_file_N  index slices (16 MiB)
//! ```
//!
//! then replays what a query node does to load segments (`--load-concurrency` at once):
//! ListObjectsV2 with a delimiter for the segment's field directories, ListObjectsV2 of each
//! field, of the stats and delta logs; per insert binlog a HEAD, Parquet-style footer reads
//! (last 8 bytes, then the footer) and ranged GETs of each row group; whole GETs of stats and
//! delta logs; HEAD and whole GET of each index slice. Then a tiered-storage search phase:
//! random ranged GETs of 4 KiB–1 MiB (log-uniform) into vector binlogs and index slices.
//! Every listing is checked against the expected keys and sizes, every body byte verified.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use clap::Args;

use crate::data::{parse_size, Rng};
use crate::http::{Client, Req};
use crate::stats::{self, Hist, Report};
use crate::{create_bucket, get_verified, parse_duration, pin, put_object, Common, Errors};

#[derive(Args)]
pub struct MilvusArgs {
    #[command(flatten)]
    common: Common,
    /// Phases to run, comma-separated: build, load, search.
    #[arg(long, default_value = "build,load,search")]
    phases: String,
    /// Key root inside the bucket (Milvus' rootPath).
    #[arg(long, default_value = "files")]
    root: String,
    /// Number of segments.
    #[arg(long, default_value_t = 4)]
    segments: u64,
    /// Scales rows per binlog (1.0 = 32768 rows: a 16 MiB 128-dim float vector binlog).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Binlogs per field per segment.
    #[arg(long, default_value_t = 2)]
    binlogs_per_field: u64,
    /// Index slice size.
    #[arg(long, default_value = "16m")]
    index_slice: String,
    /// Parquet row group size for the ranged row-group reads.
    #[arg(long, default_value = "4m")]
    row_group: String,
    /// Connections used by the build phase.
    #[arg(long, default_value_t = 8)]
    build_concurrency: usize,
    /// Segments loaded at once (one connection each).
    #[arg(long, default_value_t = 4)]
    load_concurrency: usize,
    /// Connections in the search phase.
    #[arg(long, default_value_t = 16)]
    search_concurrency: usize,
    #[arg(long, default_value = "10s")]
    search_duration: String,
    /// Stop the search phase after this many requests (overrides --search-duration).
    #[arg(long)]
    search_requests: Option<u64>,
    #[arg(long, default_value = "4k")]
    search_min: String,
    #[arg(long, default_value = "1m")]
    search_max: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

const COLLECTION: u64 = 449_952_137_045_512_345;
const PARTITION: u64 = 449_952_137_045_512_346;
const SEGMENT0: u64 = 449_952_137_045_600_000;
const LOG0: u64 = 449_952_137_046_000_000;
const BUILD0: u64 = 449_952_137_047_000_000;
/// (field id, bytes per row): row id, timestamp, int64 pk, 128-dim float vector, varchar.
const FIELDS: [(u64, u64); 5] = [(0, 8), (1, 8), (100, 8), (101, 512), (102, 64)];
const PK_FIELD: u64 = 100;
const VEC_FIELD: u64 = 101;

#[derive(Clone)]
pub struct Obj {
    pub key: String,
    pub size: u64,
}

pub struct Segment {
    pub id: u64,
    /// field id -> binlogs
    pub insert: Vec<(u64, Vec<Obj>)>,
    pub stats: Vec<Obj>,
    pub delta: Vec<Obj>,
    pub index: Vec<Obj>,
}

impl Segment {
    fn all(&self) -> impl Iterator<Item = &Obj> {
        self.insert
            .iter()
            .flat_map(|(_, v)| v.iter())
            .chain(&self.stats)
            .chain(&self.delta)
            .chain(&self.index)
    }
}

fn layout(a: &MilvusArgs) -> Vec<Segment> {
    let rows = ((32768.0 * a.scale) as u64).max(16);
    let slice = parse_size(&a.index_slice).expect("index slice").max(4096);
    let (c, p, r) = (COLLECTION, PARTITION, a.root.trim_end_matches('/'));
    let mut log = LOG0;
    let mut next_log = || {
        log += 1;
        log
    };
    (0..a.segments)
        .map(|s| {
            let seg = SEGMENT0 + s;
            let insert = FIELDS
                .iter()
                .map(|&(f, bpr)| {
                    let v = (0..a.binlogs_per_field)
                        .map(|_| Obj {
                            key: format!("{r}/insert_log/{c}/{p}/{seg}/{f}/{}", next_log()),
                            size: (rows * bpr).min(64 << 20),
                        })
                        .collect();
                    (f, v)
                })
                .collect();
            let stats = (0..a.binlogs_per_field)
                .map(|_| Obj {
                    key: format!("{r}/stats_log/{c}/{p}/{seg}/{PK_FIELD}/{}", next_log()),
                    size: (rows * 8 / 16).max(1024),
                })
                .collect();
            let delta = vec![Obj {
                key: format!("{r}/delta_log/{c}/{p}/{seg}/{}", next_log()),
                size: (rows * 16 / 64).max(512),
            }];
            // vector index ~1.1x the vectors, in slices; a small scalar index on the pk
            let build = BUILD0 + s * 2;
            let vec_total = rows * a.binlogs_per_field * 512 * 11 / 10;
            let mut index = Vec::new();
            let mut left = vec_total;
            let mut n = 0;
            while left > 0 {
                let sz = left.min(slice);
                index.push(Obj {
                    key: format!("{r}/index_files/{build}_1_{seg}_{VEC_FIELD}/index_file_{n}"),
                    size: sz,
                });
                left -= sz;
                n += 1;
            }
            index.push(Obj {
                key: format!(
                    "{r}/index_files/{}_1_{seg}_{PK_FIELD}/index_file_0",
                    build + 1
                ),
                size: rows * a.binlogs_per_field * 8,
            });
            Segment {
                id: seg,
                insert,
                stats,
                delta,
                index,
            }
        })
        .collect()
}

/// Minimal ListObjectsV2 response reading: (keys with sizes, common prefixes, next token).
fn parse_list(xml: &str) -> (Vec<(String, u64)>, Vec<String>, Option<String>) {
    fn tag<'a>(s: &'a str, t: &str) -> Option<&'a str> {
        let open = format!("<{t}>");
        let close = format!("</{t}>");
        let a = s.find(&open)? + open.len();
        let b = s[a..].find(&close)? + a;
        Some(&s[a..b])
    }
    fn blocks<'a>(s: &'a str, t: &str) -> Vec<&'a str> {
        let open = format!("<{t}>");
        let close = format!("</{t}>");
        let mut out = Vec::new();
        let mut rest = s;
        while let Some(a) = rest.find(&open) {
            let from = a + open.len();
            let Some(b) = rest[from..].find(&close) else {
                break;
            };
            out.push(&rest[from..from + b]);
            rest = &rest[from + b + close.len()..];
        }
        out
    }
    let contents = blocks(xml, "Contents")
        .into_iter()
        .filter_map(|b| Some((tag(b, "Key")?.to_string(), tag(b, "Size")?.parse().ok()?)))
        .collect();
    let prefixes = blocks(xml, "CommonPrefixes")
        .into_iter()
        .filter_map(|b| tag(b, "Prefix").map(String::from))
        .collect();
    let truncated = tag(xml, "IsTruncated") == Some("true");
    let token = if truncated {
        tag(xml, "NextContinuationToken").map(String::from)
    } else {
        None
    };
    (contents, prefixes, token)
}

/// (keys with sizes, common prefixes)
type Listing = (Vec<(String, u64)>, Vec<String>);

/// ListObjectsV2 (all pages); each page's latency recorded.
fn list_all(
    c: &mut Client,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    h: &mut Hist,
) -> Result<Listing, String> {
    let path = format!("/{bucket}");
    let mut keys = Vec::new();
    let mut prefixes = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut q: Vec<(&str, &str)> = vec![("list-type", "2"), ("prefix", prefix)];
        if let Some(d) = delimiter {
            q.push(("delimiter", d));
        }
        if let Some(t) = &token {
            q.push(("continuation-token", t));
        }
        let mut req = Req::new("GET", &path);
        req.query = &q;
        let mut body = Vec::new();
        let t = Instant::now();
        let r = c.send(&req, &mut |b| body.extend_from_slice(b))?;
        h.record(t.elapsed(), body.len() as u64);
        let xml = String::from_utf8_lossy(&body);
        if r.status != 200 {
            return Err(format!(
                "ListObjectsV2 prefix={prefix}: status {}: {}",
                r.status,
                &xml[..xml.len().min(300)]
            ));
        }
        let (k, p, next) = parse_list(&xml);
        keys.extend(k);
        prefixes.extend(p);
        match next {
            Some(n) => token = Some(n),
            None => break,
        }
    }
    Ok((keys, prefixes))
}

fn check_listing(what: &str, got: &[(String, u64)], want: &[Obj]) -> Result<(), String> {
    let mut w: Vec<(&str, u64)> = want.iter().map(|o| (o.key.as_str(), o.size)).collect();
    w.sort();
    let mut g: Vec<(&str, u64)> = got.iter().map(|(k, s)| (k.as_str(), *s)).collect();
    g.sort();
    if g != w {
        return Err(format!(
            "{what}: listing has {} entries, want {} (first got {:?}, first want {:?})",
            g.len(),
            w.len(),
            g.first(),
            w.first()
        ));
    }
    Ok(())
}

fn head(c: &mut Client, bucket: &str, o: &Obj, h: &mut Hist) -> Result<(), String> {
    let path = format!("/{bucket}/{}", o.key);
    let t = Instant::now();
    let r = c.send(&Req::new("HEAD", &path), &mut |_| {})?;
    h.record(t.elapsed(), 0);
    if r.status != 200 || r.content_length != Some(o.size) {
        return Err(format!(
            "HEAD {}: status {} content-length {:?}, want 200 / {}",
            o.key, r.status, r.content_length, o.size
        ));
    }
    Ok(())
}

fn timed_get(
    c: &mut Client,
    bucket: &str,
    o: &Obj,
    range: Option<(u64, u64)>,
    h: &mut Hist,
) -> Result<(), String> {
    let t = Instant::now();
    let n = get_verified(c, bucket, &o.key, o.size, range)?;
    h.record(t.elapsed(), n);
    Ok(())
}

#[derive(Default)]
struct LoadHists {
    list: Hist,
    head: Hist,
    get_whole: Hist,
    get_range: Hist,
    segment: Hist,
}

fn load_segment(
    c: &mut Client,
    a: &MilvusArgs,
    s: &Segment,
    h: &mut LoadHists,
) -> Result<(), String> {
    let b = &a.common.bucket;
    let r = a.root.trim_end_matches('/');
    let (col, par) = (COLLECTION, PARTITION);
    let row_group = parse_size(&a.row_group).expect("row group").max(4096);
    // field directories, with a delimiter
    let seg_prefix = format!("{r}/insert_log/{col}/{par}/{}/", s.id);
    let (k, fields) = list_all(c, b, &seg_prefix, Some("/"), &mut h.list)?;
    let mut want_fields: Vec<String> = s
        .insert
        .iter()
        .map(|(f, _)| format!("{seg_prefix}{f}/"))
        .collect();
    want_fields.sort();
    let mut got_fields = fields.clone();
    got_fields.sort();
    if !k.is_empty() || got_fields != want_fields {
        return Err(format!(
            "ListObjectsV2 {seg_prefix} delimiter=/: prefixes {got_fields:?}, want {want_fields:?}"
        ));
    }
    for (f, logs) in &s.insert {
        let p = format!("{seg_prefix}{f}/");
        let (k, _) = list_all(c, b, &p, None, &mut h.list)?;
        check_listing(&p, &k, logs)?;
    }
    let p = format!("{r}/stats_log/{col}/{par}/{}/", s.id);
    check_listing(&p, &list_all(c, b, &p, None, &mut h.list)?.0, &s.stats)?;
    let p = format!("{r}/delta_log/{col}/{par}/{}/", s.id);
    check_listing(&p, &list_all(c, b, &p, None, &mut h.list)?.0, &s.delta)?;
    // binlogs: HEAD, Parquet footer (last 8 bytes, then the footer), then every row group
    for (_, logs) in &s.insert {
        for o in logs {
            head(c, b, o, &mut h.head)?;
            let tail = 8.min(o.size);
            timed_get(c, b, o, Some((o.size - tail, o.size - 1)), &mut h.get_range)?;
            let footer = (o.size / 64).clamp(tail, 64 << 10);
            timed_get(
                c,
                b,
                o,
                Some((o.size - footer, o.size - 1)),
                &mut h.get_range,
            )?;
            let body = o.size - footer;
            let mut off = 0;
            while off < body {
                let len = row_group.min(body - off);
                timed_get(c, b, o, Some((off, off + len - 1)), &mut h.get_range)?;
                off += len;
            }
        }
    }
    for o in s.stats.iter().chain(&s.delta) {
        timed_get(c, b, o, None, &mut h.get_whole)?;
    }
    for o in &s.index {
        head(c, b, o, &mut h.head)?;
        timed_get(c, b, o, None, &mut h.get_whole)?;
    }
    Ok(())
}

pub fn run(a: MilvusArgs) -> i32 {
    let phases: Vec<&str> = a.phases.split(',').map(str::trim).collect();
    for p in &phases {
        if !["build", "load", "search"].contains(p) {
            eprintln!("error: unknown phase {p:?} (build, load, search)");
            return 2;
        }
    }
    let segs = layout(&a);
    let objs: Vec<&Obj> = segs.iter().flat_map(|s| s.all()).collect();
    let total: u64 = objs.iter().map(|o| o.size).sum();
    let errors = Errors::new(a.common.max_error_lines);
    let cpus = a.common.cpus();
    let mut reports: Vec<Report> = Vec::new();
    let mut meta = a.common.meta("milvus");
    meta["segments"] = a.segments.into();
    meta["scale"] = a.scale.into();
    meta["objects"] = objs.len().into();
    meta["total_bytes"] = total.into();
    eprintln!(
        "milvus layout: {} segments, {} objects, {:.1} MB",
        segs.len(),
        objs.len(),
        total as f64 / 1e6
    );

    if phases.contains(&"build") {
        let mut c = a.common.client();
        if let Err(e) = create_bucket(&mut c, &a.common.bucket) {
            eprintln!("error: {e}");
            return 1;
        }
        let next = AtomicU64::new(0);
        let t0 = Instant::now();
        let mut hist = Hist::new();
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..a.build_concurrency.max(1))
                .map(|_| {
                    s.spawn(|| {
                        pin(&cpus);
                        let mut c = a.common.client();
                        let mut h = Hist::new();
                        let mut buf = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                            let Some(o) = objs.get(i) else { break };
                            let t = Instant::now();
                            match put_object(&mut c, &a.common.bucket, &o.key, &mut buf, o.size) {
                                Ok(_) => h.record(t.elapsed(), o.size),
                                Err(e) => {
                                    h.errors += 1;
                                    errors.add(&e)
                                }
                            }
                        }
                        h
                    })
                })
                .collect();
            for x in hs {
                hist.merge(&x.join().unwrap());
            }
        });
        reports.push(hist.report("build put", t0.elapsed()));
    }

    if phases.contains(&"load") && errors.count() == 0 {
        let next = AtomicU64::new(0);
        let t0 = Instant::now();
        let mut all = LoadHists::default();
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..a.load_concurrency.max(1))
                .map(|_| {
                    s.spawn(|| {
                        pin(&cpus);
                        let mut c = a.common.client();
                        let mut h = LoadHists::default();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                            let Some(seg) = segs.get(i) else { break };
                            let t = Instant::now();
                            match load_segment(&mut c, &a, seg, &mut h) {
                                Ok(()) => h
                                    .segment
                                    .record(t.elapsed(), seg.all().map(|o| o.size).sum()),
                                Err(e) => {
                                    h.segment.errors += 1;
                                    errors.add(&format!("segment {}: {e}", seg.id))
                                }
                            }
                        }
                        h
                    })
                })
                .collect();
            for x in hs {
                let h = x.join().unwrap();
                all.list.merge(&h.list);
                all.head.merge(&h.head);
                all.get_whole.merge(&h.get_whole);
                all.get_range.merge(&h.get_range);
                all.segment.merge(&h.segment);
            }
        });
        let el = t0.elapsed();
        let mut seg = all.segment.report("load segment", el);
        seg.extra = Some(serde_json::json!({
            "load_wall_s": el.as_secs_f64(),
            "segments": a.segments,
            "load_concurrency": a.load_concurrency,
            "bytes": total,
            "load_mb_per_s": total as f64 / el.as_secs_f64() / 1e6,
        }));
        reports.push(seg);
        reports.push(all.list.report("load list", el));
        reports.push(all.head.report("load head", el));
        reports.push(all.get_whole.report("load get whole", el));
        reports.push(all.get_range.report("load get range", el));
    }

    if phases.contains(&"search") && errors.count() == 0 {
        let targets: Vec<&Obj> = segs
            .iter()
            .flat_map(|s| {
                s.insert
                    .iter()
                    .filter(|(f, _)| *f == VEC_FIELD)
                    .flat_map(|(_, v)| v.iter())
                    .chain(
                        s.index
                            .iter()
                            .filter(|o| o.key.contains(&format!("_{VEC_FIELD}/"))),
                    )
            })
            .collect();
        let lo = parse_size(&a.search_min).expect("search min").max(1);
        let hi = parse_size(&a.search_max).expect("search max").max(lo);
        let dur = parse_duration(&a.search_duration).expect("duration");
        let issued = AtomicU64::new(0);
        let t0 = Instant::now();
        let end = t0 + dur;
        let mut hist = Hist::new();
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..a.search_concurrency.max(1))
                .map(|t| {
                    let (targets, issued, errors, cpus, a) =
                        (&targets, &issued, &errors, &cpus, &a);
                    s.spawn(move || {
                        pin(cpus);
                        let mut rng = Rng::new(a.seed.wrapping_mul(7919).wrapping_add(t as u64));
                        let mut c = a.common.client();
                        let mut h = Hist::new();
                        loop {
                            match a.search_requests {
                                Some(n) if issued.fetch_add(1, Ordering::Relaxed) >= n => break,
                                None if Instant::now() >= end => break,
                                _ => {}
                            }
                            let o = targets[rng.below(targets.len() as u64) as usize];
                            // log-uniform length in [lo, hi], capped by the object
                            let len =
                                ((lo as f64) * ((hi as f64) / (lo as f64)).powf(rng.unit())) as u64;
                            let len = len.clamp(1, o.size);
                            let off = rng.below(o.size - len + 1);
                            let tt = Instant::now();
                            match get_verified(
                                &mut c,
                                &a.common.bucket,
                                &o.key,
                                o.size,
                                Some((off, off + len - 1)),
                            ) {
                                Ok(n) => h.record(tt.elapsed(), n),
                                Err(e) => {
                                    h.errors += 1;
                                    errors.add(&e)
                                }
                            }
                        }
                        h
                    })
                })
                .collect();
            for x in hs {
                hist.merge(&x.join().unwrap());
            }
        });
        reports.push(hist.report(
            &format!("search range c={}", a.search_concurrency),
            t0.elapsed(),
        ));
    }
    meta["errors"] = errors.count().into();
    stats::emit(a.common.json, meta, &reports);
    if errors.count() > 0 {
        eprintln!("{} errors", errors.count());
        1
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_parse() {
        let xml = "<ListBucketResult><IsTruncated>true</IsTruncated><Contents><Key>a/1</Key><Size>10</Size></Contents>\
                   <Contents><Key>a/2</Key><ETag>x</ETag><Size>20</Size></Contents>\
                   <CommonPrefixes><Prefix>a/b/</Prefix></CommonPrefixes><NextContinuationToken>tok</NextContinuationToken></ListBucketResult>";
        let (k, p, t) = parse_list(xml);
        assert_eq!(k, vec![("a/1".to_string(), 10), ("a/2".to_string(), 20)]);
        assert_eq!(p, vec!["a/b/".to_string()]);
        assert_eq!(t.as_deref(), Some("tok"));
    }
}
