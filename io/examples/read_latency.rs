//! Engine-level read latency of 4 KiB objects: p50/p99/p99.9 of `Shard::read` at QD1 (cold:
//! cache off, every read is one O_DIRECT io_uring read), and of 4 KiB ranged reads inside a
//! 64 MiB object. Also times group-committed PUTs at a few concurrencies.
//!
//! `cargo run --release -p bale-io --example read_latency -- [dir] [objects] [reads]`

use std::rc::Rc;
use std::time::Instant;

use bale_io::{EngineConfig, Expect, Shard};
use bytes::Bytes;

fn pct(sorted_us: &[f64], p: f64) -> f64 {
    let i = ((sorted_us.len() as f64 - 1.0) * p).round() as usize;
    sorted_us[i]
}

fn report(name: &str, mut us: Vec<f64>) {
    us.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{name:<40} n={:<7} p50={:>8.1}us p99={:>8.1}us p99.9={:>8.1}us max={:>8.1}us",
        us.len(),
        pct(&us, 0.5),
        pct(&us, 0.99),
        pct(&us, 0.999),
        us[us.len() - 1]
    );
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(
        args.get(1)
            .cloned()
            .unwrap_or_else(|| "/tmp/bale-read-latency".into()),
    );
    let n_objects: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let n_reads: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let _ = std::fs::remove_dir_all(&dir);
    let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .expect("io_uring runtime");
    rt.block_on(async move {
        assert!(!monoio::utils::is_legacy(), "io_uring driver required");
        let shard = Shard::open(&dir, EngineConfig::default())
            .await
            .expect("open");
        let body = Bytes::from(vec![0xabu8; 4096]);

        // PUTs, concurrency 1, 16, 64.
        let mut next_key = 0u64;
        for conc in [1usize, 16, 64] {
            let per = (n_objects as usize / 3 / conc).max(1);
            let started = Instant::now();
            let mut handles = Vec::new();
            for _ in 0..conc {
                let s = shard.clone();
                let body = body.clone();
                let first = next_key;
                next_key += per as u64;
                handles.push(monoio::spawn(async move {
                    let mut lat = Vec::with_capacity(per);
                    for k in first..first + per as u64 {
                        let t = Instant::now();
                        let mut w = s.put("bench", &format!("obj-{k:08}"), 4096).unwrap();
                        w.write(body.clone()).await.unwrap();
                        w.finish(Bytes::new(), Expect::Any).await.unwrap();
                        lat.push(t.elapsed().as_secs_f64() * 1e6);
                    }
                    lat
                }));
            }
            let mut all = Vec::new();
            for h in handles {
                all.extend(h.await);
            }
            let secs = started.elapsed().as_secs_f64();
            println!(
                "put 4KiB x{conc}: {:.0} puts/s, stats {:?}",
                all.len() as f64 / secs,
                shard.stats()
            );
            report(&format!("put 4KiB durable, concurrency {conc}"), all);
        }

        // Cold 4 KiB GETs at QD1.
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let mut lat = Vec::with_capacity(n_reads);
        for _ in 0..n_reads {
            let k = rng.next() % next_key;
            let o = shard.get("bench", &format!("obj-{k:08}")).unwrap();
            let t = Instant::now();
            let b = shard.read(&o, 0, o.size).await.unwrap();
            lat.push(t.elapsed().as_secs_f64() * 1e6);
            assert_eq!(b.len(), 4096);
        }
        report("read 4KiB object (cold, QD1)", lat);

        // 4 KiB ranges inside a 64 MiB object.
        let big_bytes = 64u64 << 20;
        let mut w = shard.put("bench", "big", big_bytes).unwrap();
        let chunk = Bytes::from(vec![0x5au8; 1 << 20]);
        for _ in 0..64 {
            w.write(chunk.clone()).await.unwrap();
        }
        let big = w.finish(Bytes::new(), Expect::Any).await.unwrap();
        let mut lat = Vec::with_capacity(n_reads);
        for _ in 0..n_reads {
            let off = rng.next() % (big_bytes - 4096);
            let t = Instant::now();
            let b = shard.read(&big, off, 4096).await.unwrap();
            lat.push(t.elapsed().as_secs_f64() * 1e6);
            assert_eq!(b.len(), 4096);
        }
        report("read 4KiB range of 64MiB object (QD1)", lat);
        let _ = Rc::strong_count(&shard);
        shard.close().await.unwrap();
    });
}
