//! Stable-Rust fuzz driver shared by `fuzz/` and `io/fuzz/` (included with `#[path]`).
//!
//! libFuzzer's coverage feedback needs sanitizer-coverage instrumentation; cargo-fuzz's default
//! build needs nightly (`-Zsanitizer`). This driver needs neither: for each target it runs the
//! committed corpus, the target's structured generator (valid encodings with random fields), then
//! random mutations of everything in its pool for a bounded time. Feedback is behavioural, not
//! coverage: a target returns a small "outcome class" (which error, how many entries decoded, ...)
//! and an input that produces a class not seen before joins the pool.
//!
//! Every execution runs under `catch_unwind`. A panic (including an overflow check: the fuzz
//! profile turns overflow checks on), or a single allocation larger than the limit, is a finding:
//! the input is written to `artifacts/<target>/` and the driver exits 1 after the run.
//!
//! Usage: `<driver> [--seconds S] [--execs N] [--seed N] [--target NAME]... [--corpus DIR]
//!        [--artifacts DIR] [--max-alloc-mb N] [--save-new] [--list] [--repro FILE]`

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashSet;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Counts the largest single allocation request since the last reset.
pub struct PeakAlloc;

static LARGEST_ALLOC: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST_ALLOC.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST_ALLOC.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST_ALLOC.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// One fuzz target as the driver sees it.
pub struct Target {
    pub name: &'static str,
    /// Runs one input; panics on a broken property. Returns an outcome class (feedback).
    pub run: fn(&[u8]) -> u64,
    /// Makes one structured (mostly valid) input from a random source.
    pub generate: fn(&mut Rng) -> Vec<u8>,
}

/// splitmix64: small, fast, deterministic for a given seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    pub fn blob(&mut self, max: usize) -> Vec<u8> {
        let n = self.size(max);
        self.bytes(n)
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// A "size" biased to small values and edges.
    pub fn size(&mut self, max: usize) -> usize {
        match self.below(8) {
            0 => 0,
            1 => max,
            2 => self.below(4),
            3..=5 => self.below(64.min(max + 1)),
            _ => self.below(max + 1),
        }
    }
    /// Printable-ish string of up to `max` bytes, sometimes with odd characters.
    pub fn string(&mut self, max: usize) -> String {
        const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-._/~ %+=:;,";
        let n = self.size(max);
        let mut s = String::with_capacity(n);
        for _ in 0..n {
            if self.chance(40) {
                s.push(['é', '\u{0}', '\u{FFFD}', '漢', '\n'][self.below(5)]);
            } else {
                s.push(ALPHA[self.below(ALPHA.len())] as char);
            }
        }
        s
    }
    pub fn interesting_u64(&mut self) -> u64 {
        const V: &[u64] = &[
            0,
            1,
            2,
            3,
            4,
            7,
            8,
            15,
            16,
            255,
            256,
            4095,
            4096,
            4097,
            65535,
            65536,
            0x7fff_ffff,
            0x8000_0000,
            0xffff_ffff,
            0x1_0000_0000,
            1 << 24,
            64 << 20,
            (64 << 20) + 1,
            i64::MAX as u64,
            u64::MAX - 1,
            u64::MAX,
        ];
        V[self.below(V.len())]
    }
}

/// One random mutation of `d` (may change its length); `pool` supplies splice material.
pub fn mutate(rng: &mut Rng, d: &mut Vec<u8>, pool: &[Vec<u8>], max_len: usize) {
    let n = d.len();
    match rng.below(14) {
        0 if n > 0 => {
            let i = rng.below(n);
            d[i] ^= 1 << rng.below(8);
        }
        1 if n > 0 => {
            let i = rng.below(n);
            d[i] = rng.next() as u8;
        }
        2 if n > 0 => {
            let i = rng.below(n);
            d[i] = [0u8, 1, 0x7f, 0x80, 0xff, b'\r', b'\n', b';', b'0', b'/'][rng.below(10)];
        }
        3 if n >= 2 => {
            let w = [2usize, 4, 8][rng.below(3)].min(n);
            let i = rng.below(n - w + 1);
            let v = rng.interesting_u64().to_le_bytes();
            d[i..i + w].copy_from_slice(&v[..w]);
        }
        4 if n >= 2 => {
            // add or subtract a small delta to a little-endian u16/u32 (length fields)
            let w = [2usize, 4][rng.below(2)].min(n);
            let i = rng.below(n - w + 1);
            let mut b = [0u8; 8];
            b[..w].copy_from_slice(&d[i..i + w]);
            let v = u64::from_le_bytes(b);
            let delta = rng.below(33) as u64;
            let v = if rng.chance(2) {
                v.wrapping_add(delta)
            } else {
                v.wrapping_sub(delta)
            };
            d[i..i + w].copy_from_slice(&v.to_le_bytes()[..w]);
        }
        5 => {
            let i = rng.below(n + 1);
            let k = rng.size(32).max(1);
            let b = rng.bytes(k);
            d.splice(i..i, b);
        }
        6 if n > 0 => {
            let i = rng.below(n);
            let k = rng.below(n - i).max(1).min(n - i);
            d.drain(i..i + k);
        }
        7 if n > 0 => {
            // duplicate a range
            let i = rng.below(n);
            let k = rng.below((n - i).min(256)).max(1);
            let chunk = d[i..i + k].to_vec();
            let j = rng.below(n + 1);
            d.splice(j..j, chunk);
        }
        8 if n > 0 => d.truncate(rng.below(n)),
        9 if !pool.is_empty() => {
            // splice: our head, another input's tail
            let o = &pool[rng.below(pool.len())];
            let i = rng.below(n + 1);
            let j = rng.below(o.len() + 1);
            d.truncate(i);
            d.extend_from_slice(&o[j..]);
        }
        10 if n > 0 => {
            // overwrite a range with a copy from elsewhere in the input
            let i = rng.below(n);
            let j = rng.below(n);
            let k = rng.below(n - i.max(j)).max(1).min(n - i.max(j));
            let chunk = d[j..j + k].to_vec();
            d[i..i + k].copy_from_slice(&chunk);
        }
        11 if n > 0 => {
            let i = rng.below(n);
            d.insert(i, d[i]);
        }
        12 => { let k = rng.size(16).max(1); d.extend(rng.bytes(k)) },
        _ => {
            if n > 0 {
                let i = rng.below(n);
                d[i] = d[i].wrapping_add(rng.below(3) as u8).wrapping_sub(1);
            }
        }
    }
    d.truncate(max_len);
}

struct Args {
    seconds: f64,
    execs: Option<u64>,
    seed: u64,
    targets: Vec<String>,
    corpus: PathBuf,
    artifacts: PathBuf,
    max_alloc: usize,
    save_new: bool,
    list: bool,
    repro: Option<PathBuf>,
    emit: usize,
}

fn parse_args(default_root: &Path) -> Args {
    let mut a = Args {
        seconds: 10.0,
        execs: None,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
        targets: Vec::new(),
        corpus: default_root.join("corpus"),
        artifacts: default_root.join("artifacts"),
        max_alloc: 256 << 20,
        save_new: false,
        list: false,
        repro: None,
        emit: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--seconds" => a.seconds = v().parse().expect("--seconds"),
            "--execs" => a.execs = Some(v().parse().expect("--execs")),
            "--seed" => a.seed = v().parse().expect("--seed"),
            "--target" => a.targets.push(v()),
            "--corpus" => a.corpus = v().into(),
            "--artifacts" => a.artifacts = v().into(),
            "--max-alloc-mb" => a.max_alloc = v().parse::<usize>().expect("--max-alloc-mb") << 20,
            "--save-new" => a.save_new = true,
            "--list" => a.list = true,
            "--repro" => a.repro = Some(v().into()),
            "--emit" => a.emit = v().parse().expect("--emit"),
            "-h" | "--help" => {
                eprintln!(
                    "usage: [--seconds S per target] [--execs N per target] [--seed N] \
                     [--target NAME]... [--corpus DIR] [--artifacts DIR] [--max-alloc-mb N] \
                     [--save-new] [--list] [--repro FILE --target NAME] [--emit N: write N generated seeds to the corpus]"
                );
                std::process::exit(0);
            }
            _ => panic!("unknown argument {k}"),
        }
    }
    a
}

fn fnv(d: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in d {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

thread_local! {
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Runs one input; Err(description) on a finding.
fn exec(t: &Target, d: &[u8], max_alloc: usize) -> Result<u64, String> {
    LARGEST_ALLOC.store(0, Ordering::Relaxed);
    let r = panic::catch_unwind(AssertUnwindSafe(|| (t.run)(d)));
    let peak = LARGEST_ALLOC.load(Ordering::Relaxed);
    match r {
        Ok(class) if peak <= max_alloc => Ok(class),
        Ok(_) => Err(format!(
            "single allocation of {peak} bytes (limit {max_alloc}) from a {}-byte input",
            d.len()
        )),
        Err(_) => Err(LAST_PANIC
            .with(|p| p.borrow_mut().take())
            .unwrap_or_else(|| "panic".into())),
    }
}

fn load_dir(dir: &Path) -> Vec<Vec<u8>> {
    let mut v: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_file() && !p.file_name().unwrap().to_string_lossy().starts_with('.') {
                if let Ok(b) = std::fs::read(&p) {
                    v.push((p, b));
                }
            }
        }
    }
    v.sort();
    v.into_iter().map(|(_, b)| b).collect()
}

/// Entry point: `targets` are this crate's targets, `root` the crate dir (corpus/, artifacts/).
pub fn main_with(targets: &[Target], root: &Path) {
    let args = parse_args(root);
    if args.list {
        for t in targets {
            println!("{}", t.name);
        }
        return;
    }
    panic::set_hook(Box::new(|info| {
        let msg = format!("{info}");
        LAST_PANIC.with(|p| *p.borrow_mut() = Some(msg));
    }));
    let chosen: Vec<&Target> = targets
        .iter()
        .filter(|t| args.targets.is_empty() || args.targets.iter().any(|n| n == t.name))
        .collect();
    if chosen.is_empty() {
        eprintln!("no such target; --list shows them");
        std::process::exit(2);
    }
    if args.emit > 0 {
        for t in &chosen {
            let mut rng = Rng::new(args.seed);
            let dir = args.corpus.join(t.name);
            std::fs::create_dir_all(&dir).expect("corpus dir");
            for _ in 0..args.emit {
                let d = (t.generate)(&mut rng);
                std::fs::write(dir.join(format!("gen-{:016x}", fnv(&d))), &d).expect("write seed");
            }
        }
        return;
    }
    if let Some(f) = &args.repro {
        let d = std::fs::read(f).expect("read repro file");
        for t in &chosen {
            match exec(t, &d, args.max_alloc) {
                Ok(c) => println!("{}: ok (class {c:#x})", t.name),
                Err(e) => {
                    println!("{}: FINDING: {e}", t.name);
                    std::process::exit(1);
                }
            }
        }
        return;
    }
    let mut total_findings = 0;
    let mut total_execs = 0u64;
    println!(
        "fuzz driver: seed {}, {} s per target{}",
        args.seed,
        args.seconds,
        args.execs.map(|n| format!(", at most {n} execs")).unwrap_or_default()
    );
    for (ti, t) in chosen.iter().enumerate() {
        let mut rng = Rng::new(args.seed.wrapping_add(ti as u64 * 7919));
        let corpus = load_dir(&args.corpus.join(t.name));
        let mut pool: Vec<Vec<u8>> = corpus.clone();
        let mut classes: HashSet<u64> = HashSet::new();
        let mut seen_findings: HashSet<u64> = HashSet::new();
        let mut findings: Vec<(String, PathBuf)> = Vec::new();
        let mut execs = 0u64;
        let mut new_inputs = 0usize;
        let start = Instant::now();
        let budget = Duration::from_secs_f64(args.seconds);
        let max_len = 1 << 16;
        let corpus_n = corpus.len();

        let mut record = |d: &[u8],
                          r: Result<u64, String>,
                          pool: &mut Vec<Vec<u8>>,
                          classes: &mut HashSet<u64>,
                          new_inputs: &mut usize| {
            match r {
                Ok(c) => {
                    if classes.insert(c) && pool.len() < 4096 {
                        pool.push(d.to_vec());
                        *new_inputs += 1;
                        if args.save_new {
                            let dir = args.corpus.join(t.name);
                            let _ = std::fs::create_dir_all(&dir);
                            let _ = std::fs::write(dir.join(format!("{:016x}", fnv(d))), d);
                        }
                    }
                }
                Err(msg) => {
                    // one artifact per distinct message (digits ignored: sizes, offsets)
                    let shape: Vec<u8> = msg.bytes().filter(|b| !b.is_ascii_digit()).collect();
                    let key = fnv(&shape);
                    if seen_findings.insert(key) {
                        let dir = args.artifacts.join(t.name);
                        let _ = std::fs::create_dir_all(&dir);
                        let p = dir.join(format!("crash-{:016x}", fnv(d)));
                        let _ = std::fs::write(&p, d);
                        findings.push((msg, p));
                    }
                }
            }
        };

        for d in &corpus {
            let r = exec(t, d, args.max_alloc);
            execs += 1;
            record(d, r, &mut pool, &mut classes, &mut new_inputs);
        }
        loop {
            if start.elapsed() >= budget || args.execs.is_some_and(|n| execs >= n) {
                break;
            }
            for _ in 0..64 {
                let d = if pool.is_empty() || rng.chance(8) {
                    (t.generate)(&mut rng)
                } else {
                    let mut d = pool[rng.below(pool.len())].clone();
                    let m = if rng.chance(4) { 16 } else { 4 };
                    let k = 1 + rng.below(m);
                    for _ in 0..k {
                        mutate(&mut rng, &mut d, &pool, max_len);
                    }
                    d
                };
                let r = exec(t, &d, args.max_alloc);
                execs += 1;
                record(&d, r, &mut pool, &mut classes, &mut new_inputs);
            }
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "target {:<20} execs {:>10} in {:>6.1}s ({:>8.0}/s)  corpus {:>3}  pool {:>4}  classes {:>4}  findings {}",
            t.name,
            execs,
            secs,
            execs as f64 / secs.max(1e-9),
            corpus_n,
            pool.len(),
            classes.len(),
            findings.len()
        );
        for (m, p) in &findings {
            println!("  FINDING in {}: {}\n    input saved to {}", t.name, m, p.display());
        }
        total_findings += findings.len();
        total_execs += execs;
    }
    println!("total execs {total_execs}, findings {total_findings}");
    if total_findings > 0 {
        std::process::exit(1);
    }
}
