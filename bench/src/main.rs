//! bale-bench: latency benchmark and Milvus segment-load replay for S3-compatible servers.
//!
//! Every response is verified (status, length, bytes regenerated from the key); errors are
//! counted and printed, and any error makes the exit code 1.

mod data;
mod ec;
mod http;
mod milvus;
mod scale;
mod sign;
mod stats;
mod wal;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::data::{fmt_size, parse_size, Rng, Verifier, Zipf};
use crate::http::{Client, Creds, Endpoint, Req, Resp};
use crate::stats::Hist;

#[derive(Parser)]
#[command(
    name = "bale-bench",
    version,
    about = "S3 latency benchmark and Milvus load replay"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// PUT N objects (fixed size or a mix) under bucket/prefix; creates the bucket.
    Load(LoadArgs),
    /// GET objects written by `load` (same --count/--size/--prefix): closed or open loop.
    Get(GetArgs),
    /// Build a Milvus-layout bucket and replay a query node's segment load and search reads.
    Milvus(milvus::MilvusArgs),
    /// A Woodpecker-shaped write-ahead log: conditional fragment appends, tailing readers,
    /// segment cleanup, and create races (Milvus 2.6's WAL on object storage).
    Wal(wal::WalArgs),
    /// Many small objects with Milvus-shaped keys: load, list pages, HEAD/GET (issue 13;
    /// scripts/bench-scale.py adds RSS, footprint, restarts and device reads).
    Scale(scale::ScaleArgs),
    /// The erasure code's encode/decode speed on this machine, bale's codec against
    /// reed-solomon-erasure (issue 14); no server.
    Ec(ec::EcArgs),
}

#[derive(Args, Clone)]
pub struct Common {
    /// S3 endpoint, http://host:port or https://host:port (path-style requests).
    #[arg(long, env = "BENCH_ENDPOINT", default_value = "http://127.0.0.1:9000")]
    pub endpoint: String,
    /// PEM CA certificate(s) to trust for an https:// endpoint.
    #[arg(long, env = "BENCH_CA_CERT")]
    pub ca_cert: Option<std::path::PathBuf>,
    #[arg(long, env = "AWS_ACCESS_KEY_ID", default_value = "minioadmin")]
    pub access_key: String,
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", default_value = "minioadmin")]
    pub secret_key: String,
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    #[arg(long, default_value = "bench")]
    pub bucket: String,
    /// Send plain unsigned GETs (for nginx serving the same objects as files).
    #[arg(long)]
    pub no_sign: bool,
    /// Print one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Pin client threads to these CPUs, e.g. `1` or `0,2-3`.
    #[arg(long)]
    pub pin_cores: Option<String>,
    /// A label carried into the JSON output (e.g. the server's name).
    #[arg(long, default_value = "")]
    pub label: String,
    /// Print at most this many error lines (all are counted).
    #[arg(long, default_value_t = 20)]
    pub max_error_lines: u64,
}

impl Common {
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::parse(&self.endpoint, self.ca_cert.as_deref()).unwrap_or_else(|e| {
            eprintln!("error: {e}");
            std::process::exit(2)
        })
    }
    pub fn creds(&self) -> Option<Creds> {
        (!self.no_sign).then(|| Creds {
            access_key: self.access_key.clone(),
            secret_key: self.secret_key.clone(),
            region: self.region.clone(),
        })
    }
    pub fn client(&self) -> Client {
        Client::new(&self.endpoint(), self.creds().as_ref())
    }
    pub fn cpus(&self) -> Vec<usize> {
        self.pin_cores
            .as_deref()
            .map(parse_cpus)
            .unwrap_or_default()
    }
    pub fn meta(&self, cmd: &str) -> serde_json::Value {
        serde_json::json!({
            "cmd": cmd,
            "label": self.label,
            "endpoint": self.endpoint,
            "bucket": self.bucket,
            "signed": !self.no_sign,
            "args": redacted_args(),
        })
    }
}

/// The command line, with the secret key's value hidden.
fn redacted_args() -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in std::env::args() {
        if out.last().is_some_and(|p| p == "--secret-key") {
            out.push("***".into());
        } else if a.starts_with("--secret-key=") {
            out.push("--secret-key=***".into());
        } else {
            out.push(a);
        }
    }
    out
}

/// Error counting shared by all threads: every error counted, the first few printed.
pub struct Errors {
    pub n: AtomicU64,
    max_lines: u64,
    lock: Mutex<()>,
}

impl Errors {
    pub fn new(max_lines: u64) -> Self {
        Errors {
            n: AtomicU64::new(0),
            max_lines,
            lock: Mutex::new(()),
        }
    }
    pub fn add(&self, what: &str) {
        let k = self.n.fetch_add(1, Ordering::Relaxed);
        if k < self.max_lines {
            let _g = self.lock.lock();
            eprintln!("ERROR: {what}");
        } else if k == self.max_lines {
            eprintln!("ERROR: (further errors counted, not printed)");
        }
    }
    pub fn count(&self) -> u64 {
        self.n.load(Ordering::Relaxed)
    }
}

pub fn parse_cpus(s: &str) -> Vec<usize> {
    let mut v = Vec::new();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let (a, b): (usize, usize) = (
                a.trim().parse().expect("cpu"),
                b.trim().parse().expect("cpu"),
            );
            v.extend(a..=b);
        } else {
            v.push(part.trim().parse().expect("cpu"));
        }
    }
    v
}

/// Pin the calling thread to the given CPU set (no-op when empty).
pub fn pin(cpus: &[usize]) {
    if cpus.is_empty() {
        return;
    }
    // SAFETY: cpu_set_t is plain data; CPU_SET/sched_setaffinity on our own thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!(
                "warning: sched_setaffinity({cpus:?}) failed: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mul) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    Ok(Duration::from_secs_f64(v * mul))
}

/// The object set written by `load` and read by `get`.
#[derive(Args, Clone)]
pub struct ObjectSet {
    /// Number of objects.
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub count: u64,
    /// Object size, or a comma-separated mix (`4k,64k,1m,16m`) chosen per key by a hash.
    #[arg(long, default_value = "4k")]
    pub size: String,
    /// Key prefix; keys are `{prefix}{index:08}`.
    #[arg(long, default_value = "obj/")]
    pub prefix: String,
}

impl ObjectSet {
    pub fn sizes(&self) -> Vec<u64> {
        self.size
            .split(',')
            .map(|s| {
                parse_size(s).unwrap_or_else(|e| {
                    eprintln!("error: {e}");
                    std::process::exit(2)
                })
            })
            .collect()
    }
    pub fn key(&self, i: u64) -> String {
        format!("{}{i:08}", self.prefix)
    }
    pub fn size_of(sizes: &[u64], i: u64) -> u64 {
        if sizes.len() == 1 {
            sizes[0]
        } else {
            sizes[(data::mix(i ^ 0xa5a5) % sizes.len() as u64) as usize]
        }
    }
}

#[derive(Args)]
struct LoadArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    objects: ObjectSet,
    /// Concurrent connections (one client thread each).
    #[arg(long, short = 'c', visible_alias = "threads", default_value_t = 4)]
    concurrency: usize,
    /// Write the objects as files DIR/bucket/key instead of PUTs (for nginx).
    #[arg(long)]
    files_dir: Option<std::path::PathBuf>,
    /// Background-stream mode: PUT at this many objects per second in total (paced), cycling
    /// over the object set (so later rounds overwrite: garbage for compaction) ...
    #[arg(long, requires = "duration")]
    rate: Option<f64>,
    /// ... for this long (e.g. 30s); with --rate only.
    #[arg(long, short = 'd', requires = "rate")]
    duration: Option<String>,
}

/// Create a bucket; an existing one (409) is fine.
pub fn create_bucket(c: &mut Client, bucket: &str) -> Result<(), String> {
    let path = format!("/{bucket}");
    let mut body = Vec::new();
    let r = c.send(&Req::new("PUT", &path), &mut |b| body.extend_from_slice(b))?;
    match r.status {
        200 | 409 => Ok(()),
        s => Err(format!(
            "CreateBucket {bucket}: status {s}: {}",
            String::from_utf8_lossy(&body)
        )),
    }
}

/// One ListObjectsV2 page (`list-type=2` plus `query`); the response body on 200, else Err.
pub fn list_v2_page(
    c: &mut Client,
    bucket: &str,
    query: &[(&str, &str)],
) -> Result<String, String> {
    let mut q: Vec<(&str, &str)> = vec![("list-type", "2")];
    q.extend_from_slice(query);
    let path = format!("/{bucket}");
    let mut req = Req::new("GET", &path);
    req.query = &q;
    let mut body = Vec::new();
    let r = c.send(&req, &mut |b| body.extend_from_slice(b))?;
    let text = String::from_utf8_lossy(&body).into_owned();
    if r.status != 200 {
        return Err(format!(
            "ListObjectsV2 {bucket}: status {}: {text}",
            r.status
        ));
    }
    Ok(text)
}

/// PUT one object with generated content; returns Err on any failure.
pub fn put_object(
    c: &mut Client,
    bucket: &str,
    key: &str,
    buf: &mut Vec<u8>,
    size: u64,
) -> Result<Resp, String> {
    buf.resize(size as usize, 0);
    data::fill(data::key_seed(key), 0, buf);
    let path = format!("/{bucket}/{key}");
    let mut req = Req::new("PUT", &path);
    req.body = Some(buf);
    let mut err = Vec::new();
    let r = c.send(&req, &mut |b| {
        if err.len() < 4096 {
            err.extend_from_slice(b)
        }
    })?;
    if r.status != 200 {
        return Err(format!(
            "PUT {key}: status {}: {}",
            r.status,
            String::from_utf8_lossy(&err)
        ));
    }
    Ok(r)
}

/// HEAD an object and verify the status and Content-Length.
pub fn head_verified(c: &mut Client, bucket: &str, key: &str, size: u64) -> Result<u64, String> {
    let path = format!("/{bucket}/{key}");
    let r = c.send(&Req::new("HEAD", &path), &mut |_| {})?;
    if r.status != 200 || r.content_length != Some(size) || r.body_len != 0 {
        return Err(format!(
            "HEAD {key}: status {} content-length {:?} body {} (want 200, {size}, 0)",
            r.status, r.content_length, r.body_len
        ));
    }
    Ok(0)
}

/// GET a whole object or a range and verify status, length, content-range and bytes.
pub fn get_verified(
    c: &mut Client,
    bucket: &str,
    key: &str,
    size: u64,
    range: Option<(u64, u64)>,
) -> Result<u64, String> {
    let path = format!("/{bucket}/{key}");
    let mut req = Req::new("GET", &path);
    req.range = range;
    let off = range.map(|r| r.0).unwrap_or(0);
    let mut v = Verifier::new(key, off);
    let mut err_body: Vec<u8> = Vec::new();
    let r = {
        let v = &mut v;
        c.send(&req, &mut |b| {
            v.feed(b);
            if err_body.len() < 2048 {
                err_body.extend_from_slice(&b[..b.len().min(2048)]);
            }
        })?
    };
    let (want_status, want_len) = match range {
        Some((a, b)) => (206, b - a + 1),
        None => (200, size),
    };
    let what = match range {
        Some((a, b)) => format!("GET {key} bytes={a}-{b}"),
        None => format!("GET {key}"),
    };
    if r.status != want_status {
        return Err(format!(
            "{what}: status {} (want {want_status}): {}",
            r.status,
            String::from_utf8_lossy(&err_body[..err_body.len().min(300)])
        ));
    }
    if r.body_len != want_len || r.content_length.is_some_and(|l| l != want_len) {
        return Err(format!(
            "{what}: length {} / content-length {:?}, want {want_len}",
            r.body_len, r.content_length
        ));
    }
    if let Some((a, b)) = range {
        let want = format!("bytes {a}-{b}/{size}");
        if r.content_range.as_deref() != Some(want.as_str()) {
            return Err(format!(
                "{what}: content-range {:?}, want {want:?}",
                r.content_range
            ));
        }
    }
    if v.seen() != r.body_len {
        return Err(format!(
            "{what}: verified {} of {} body bytes",
            v.seen(),
            r.body_len
        ));
    }
    if let Some(m) = v.mismatch {
        return Err(format!("{what}: content mismatch at object offset {m}"));
    }
    Ok(want_len)
}

fn cmd_load(a: LoadArgs) -> i32 {
    let sizes = a.objects.sizes();
    let errors = Errors::new(a.common.max_error_lines);
    let total_bytes: u64 = (0..a.objects.count)
        .map(|i| ObjectSet::size_of(&sizes, i))
        .sum();
    if a.files_dir.is_none() {
        let mut c = a.common.client();
        if let Err(e) = create_bucket(&mut c, &a.common.bucket) {
            eprintln!("error: {e}");
            return 1;
        }
    }
    let next = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let done_bytes = AtomicU64::new(0);
    let finished = AtomicBool::new(false);
    let cpus = a.common.cpus();
    let t0 = Instant::now();
    let stream_until = a
        .duration
        .as_deref()
        .map(|d| t0 + parse_duration(d).expect("duration"));
    let interval = a
        .rate
        .map(|r| Duration::from_secs_f64(a.concurrency.max(1) as f64 / r.max(1e-3)));
    let mut hist = Hist::new();
    let mut el = Duration::ZERO;
    std::thread::scope(|s| {
        let progress = s.spawn(|| {
            let mut last = Instant::now();
            while !finished.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                if last.elapsed() >= Duration::from_secs(2) {
                    last = Instant::now();
                    let b = done_bytes.load(Ordering::Relaxed);
                    eprintln!(
                        "load: {}/{} objects, {:.0}/{:.0} MB, {:.1} MB/s",
                        done.load(Ordering::Relaxed),
                        a.objects.count,
                        b as f64 / 1e6,
                        total_bytes as f64 / 1e6,
                        b as f64 / 1e6 / t0.elapsed().as_secs_f64()
                    );
                }
            }
        });
        let handles: Vec<_> = (0..a.concurrency.max(1))
            .map(|_| {
                s.spawn(|| {
                    pin(&cpus);
                    let mut c = a.common.client();
                    let mut h = Hist::new();
                    let mut buf = Vec::new();
                    let mut next_send = Instant::now();
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let i = match stream_until {
                            Some(until) => {
                                let iv = interval.expect("--rate comes with --duration");
                                next_send += iv;
                                let now = Instant::now();
                                if next_send > now {
                                    std::thread::sleep(next_send - now);
                                }
                                if Instant::now() >= until {
                                    break;
                                }
                                n % a.objects.count.max(1)
                            }
                            None if n >= a.objects.count => break,
                            None => n,
                        };
                        let key = a.objects.key(i);
                        let size = ObjectSet::size_of(&sizes, i);
                        let t = Instant::now();
                        let r = match &a.files_dir {
                            Some(dir) => write_file(dir, &a.common.bucket, &key, &mut buf, size),
                            None => put_object(&mut c, &a.common.bucket, &key, &mut buf, size)
                                .map(|_| ()),
                        };
                        match r {
                            Ok(()) => h.record(t.elapsed(), size),
                            Err(e) => {
                                h.errors += 1;
                                errors.add(&e)
                            }
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                        done_bytes.fetch_add(size, Ordering::Relaxed);
                    }
                    h
                })
            })
            .collect();
        for hd in handles {
            hist.merge(&hd.join().unwrap());
        }
        // The clock stops when the last PUT is answered, not when the progress thread's
        // 100 ms sleep ends (that sleep dominated the rate of short runs).
        el = t0.elapsed();
        finished.store(true, Ordering::Relaxed);
        progress.join().unwrap();
    });
    let sizes_s: Vec<String> = sizes.iter().map(|&s| fmt_size(s)).collect();
    let mut r = hist.report(&format!("put {}", sizes_s.join(",")), el);
    r.errors = errors.count();
    let mut meta = a.common.meta("load");
    meta["concurrency"] = a.concurrency.into();
    meta["objects"] = a.objects.count.into();
    meta["total_bytes"] = total_bytes.into();
    stats::emit(a.common.json, meta, &[r]);
    (errors.count() > 0) as i32
}

fn write_file(
    dir: &std::path::Path,
    bucket: &str,
    key: &str,
    buf: &mut Vec<u8>,
    size: u64,
) -> Result<(), String> {
    buf.resize(size as usize, 0);
    data::fill(data::key_seed(key), 0, buf);
    let p = dir.join(bucket).join(key);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("mkdir {}: {e}", parent.display()))?;
    }
    std::fs::write(&p, &buf[..]).map_err(|e| format!("write {}: {e}", p.display()))
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Dist {
    Uniform,
    Zipf,
}

#[derive(Args)]
struct GetArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    objects: ObjectSet,
    /// Concurrent connections (one client thread each).
    #[arg(long, short = 'c', visible_alias = "threads", default_value_t = 1)]
    concurrency: usize,
    /// Run for this long (e.g. 10s, 500ms, 1m).
    #[arg(long, short = 'd', default_value = "10s")]
    duration: String,
    /// Stop after this many requests in total (overrides --duration).
    #[arg(long)]
    requests: Option<u64>,
    /// Key popularity.
    #[arg(long, value_enum, default_value = "uniform")]
    dist: Dist,
    /// Zipf exponent.
    #[arg(long, default_value_t = 0.99)]
    zipf_s: f64,
    /// Random ranged GETs of this length (e.g. 4k) instead of whole objects.
    #[arg(long)]
    range: Option<String>,
    /// Align range offsets to this many bytes (1 = any offset).
    #[arg(long, default_value = "1")]
    range_align: String,
    /// With --range: read the last bytes of each object (a Parquet-style footer) instead of
    /// a random offset.
    #[arg(long, requires = "range")]
    footer: bool,
    /// HEAD requests instead of GETs (status and Content-Length verified).
    #[arg(long, conflicts_with = "range")]
    head: bool,
    /// Open loop: this many requests per second in total, latency measured from each
    /// request's scheduled send time (no coordinated omission).
    #[arg(long)]
    rate: Option<f64>,
    /// Warm-up time before measuring (requests verified, not recorded).
    #[arg(long, default_value = "0s")]
    warmup: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn cmd_get(a: GetArgs) -> i32 {
    let sizes = a.objects.sizes();
    let range_len = a.range.as_deref().map(|r| parse_size(r).expect("range"));
    let align = parse_size(&a.range_align).expect("align").max(1);
    let duration = parse_duration(&a.duration).expect("duration");
    let warmup = parse_duration(&a.warmup).expect("warmup");
    if let Some(l) = range_len {
        if let Some(small) = sizes.iter().find(|&&s| s < l) {
            eprintln!("error: --range {l} is larger than object size {small}");
            return 2;
        }
    }
    let zipf = (a.dist == Dist::Zipf).then(|| Zipf::new(a.objects.count, a.zipf_s));
    let errors = Errors::new(a.common.max_error_lines);
    let cpus = a.common.cpus();
    let conc = a.concurrency.max(1);
    let issued = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let mut hist = Hist::new();
    let start_at = Instant::now() + warmup;
    let end_at = start_at + duration;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..conc)
            .map(|t| {
                let (zipf, errors, issued, stop, sizes, cpus, a) =
                    (&zipf, &errors, &issued, &stop, &sizes, &cpus, &a);
                s.spawn(move || {
                    pin(cpus);
                    let mut rng = Rng::new(a.seed.wrapping_mul(1000).wrapping_add(t as u64));
                    let mut c = a.common.client();
                    let mut h = Hist::new();
                    // open loop schedule for this connection
                    let interval = a.rate.map(|r| Duration::from_secs_f64(conc as f64 / r));
                    let mut next_send =
                        interval.map(|iv| start_at + iv.mul_f64(t as f64 / conc as f64));
                    let mut warm = Instant::now() < start_at;
                    loop {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let now = Instant::now();
                        if warm && now >= start_at {
                            warm = false;
                        }
                        if !warm {
                            if let Some(limit) = a.requests {
                                if issued.fetch_add(1, Ordering::Relaxed) >= limit {
                                    break;
                                }
                            } else if now >= end_at {
                                break;
                            }
                        }
                        let i = match zipf {
                            Some(z) => z.sample(&mut rng),
                            None => rng.below(a.objects.count),
                        };
                        let key = a.objects.key(i);
                        let size = ObjectSet::size_of(sizes, i);
                        let range = range_len.map(|l| {
                            let off = if a.footer {
                                size - l
                            } else {
                                rng.below((size - l) / align + 1) * align
                            };
                            (off, off + l - 1)
                        });
                        let sched = match (&mut next_send, interval) {
                            (Some(ns), Some(iv)) if !warm => {
                                let at = *ns;
                                *ns += iv;
                                let now = Instant::now();
                                if at > now {
                                    std::thread::sleep(at - now);
                                }
                                at
                            }
                            _ => Instant::now(),
                        };
                        let res = if a.head {
                            head_verified(&mut c, &a.common.bucket, &key, size)
                        } else {
                            get_verified(&mut c, &a.common.bucket, &key, size, range)
                        };
                        match res {
                            Ok(n) => {
                                if !warm {
                                    h.record(sched.elapsed(), n)
                                }
                            }
                            Err(e) => {
                                if !warm {
                                    h.errors += 1;
                                }
                                errors.add(&e);
                            }
                        }
                    }
                    h
                })
            })
            .collect();
        for hd in handles {
            hist.merge(&hd.join().unwrap());
        }
    });
    // wall time of the measured part: from the end of warm-up until the last thread finished
    let el = Instant::now().saturating_duration_since(start_at);
    let what = match range_len {
        _ if a.head => format!("head c={conc}"),
        Some(l) if a.footer => format!("get footer {} c={conc}", fmt_size(l)),
        Some(l) => format!("get range {} c={conc}", fmt_size(l)),
        None => format!(
            "get {} c={conc}",
            sizes
                .iter()
                .map(|&s| fmt_size(s))
                .collect::<Vec<_>>()
                .join(",")
        ),
    };
    let mut r = hist.report(&what, el);
    r.errors = errors.count();
    let mut meta = a.common.meta("get");
    meta["concurrency"] = conc.into();
    meta["objects"] = a.objects.count.into();
    meta["size"] = a.objects.size.clone().into();
    meta["range"] = range_len.into();
    meta["footer"] = a.footer.into();
    meta["head"] = a.head.into();
    meta["rate"] = a.rate.into();
    meta["dist"] = (if a.dist == Dist::Zipf {
        "zipf"
    } else {
        "uniform"
    })
    .into();
    stats::emit(a.common.json, meta, &[r]);
    (errors.count() > 0) as i32
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.cmd {
        Cmd::Load(a) => cmd_load(a),
        Cmd::Get(a) => cmd_get(a),
        Cmd::Milvus(a) => milvus::run(a),
        Cmd::Wal(a) => wal::run(a),
        Cmd::Scale(a) => scale::run(a),
        Cmd::Ec(a) => ec::run(a),
    };
    std::process::exit(code);
}
