//! Randomized test against an in-memory model: puts, overwrites, deletes, composes,
//! checkpoints, compactions and reopens, with small volumes so rolls and compaction happen often.

use std::collections::BTreeMap;
use std::rc::Rc;

use bale_io::{EngineConfig, Expect, ListItem, Shard};
use bytes::Bytes;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn content(seed: u64, n: usize) -> Vec<u8> {
    let mut r = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
    (0..n).map(|_| r.next() as u8).collect()
}

async fn check_all(shard: &Shard, model: &BTreeMap<String, Vec<u8>>) {
    let listed: Vec<String> = shard
        .list("ns", "", None, None, usize::MAX)
        .into_iter()
        .map(|i| match i {
            ListItem::Object { key, .. } => key,
            ListItem::Prefix(p) => panic!("prefix {p} without delimiter"),
        })
        .collect();
    assert_eq!(listed, model.keys().cloned().collect::<Vec<_>>());
    for (k, want) in model {
        let o = shard.get("ns", k).unwrap_or_else(|| panic!("{k} missing"));
        assert_eq!(o.size, want.len() as u64, "{k}");
        let got = shard.read(&o, 0, o.size).await.unwrap();
        assert!(got[..] == want[..], "{k} content");
    }
}

#[test]
fn random_ops_match_model() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let cfg = EngineConfig {
        volume_target_bytes: 512 * 1024,
        write_buffer_bytes: 32 * 1024,
        block_bytes: 8192,
        cache_bytes: 256 * 1024,
        cache_max_object_bytes: 32 * 1024,
        ..EngineConfig::default()
    };
    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .unwrap()
        .block_on(async {
            let mut shard: Rc<Shard> = Shard::open(dir.path(), cfg.clone()).await.unwrap();
            let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
            let seed0: u64 = std::env::var("MODEL_SEED")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0xdead_beef_1234_5678);
            let steps: u32 = std::env::var("MODEL_STEPS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(1500);
            let mut rng = Rng(seed0 | 1);
            let mut seed = 1u64;
            for step in 0..steps {
                let key = format!("k{:02}", rng.below(40));
                let op = rng.below(100);
                if std::env::var_os("MODEL_TRACE").is_some() {
                    eprintln!("step {step} op {op} key {key}");
                }
                match op {
                    0..=49 => {
                        let n = match rng.below(4) {
                            0 => rng.below(100) as usize,
                            1 => rng.below(20_000) as usize,
                            2 => rng.below(100_000) as usize,
                            _ => 8192 * (1 + rng.below(4) as usize),
                        };
                        seed += 1;
                        let data = content(seed, n);
                        let mut w = shard.put("ns", &key, n as u64).unwrap();
                        let mut off = 0;
                        while off < n {
                            let c = (1 + rng.below(40_000) as usize).min(n - off);
                            w.write(Bytes::copy_from_slice(&data[off..off + c]))
                                .await
                                .unwrap();
                            off += c;
                        }
                        if rng.below(20) == 0 {
                            drop(w); // abandoned
                        } else {
                            w.finish(Bytes::new(), Expect::Any).await.unwrap();
                            model.insert(key, data);
                        }
                    }
                    50..=69 => {
                        let had = shard
                            .delete("ns", &key, Expect::Any)
                            .await
                            .unwrap()
                            .is_some();
                        assert_eq!(had, model.remove(&key).is_some());
                    }
                    70..=79 => {
                        let srcs: Vec<String> = (0..1 + rng.below(3))
                            .map(|_| format!("k{:02}", rng.below(40)))
                            .collect();
                        let remove = rng.below(2) == 0;
                        let sources: Vec<(String, String)> =
                            srcs.iter().map(|s| ("ns".to_string(), s.clone())).collect();
                        let r = shard
                            .compose("ns", &key, &sources, Bytes::new(), Expect::Any, remove)
                            .await;
                        if srcs.iter().all(|s| model.contains_key(s)) {
                            r.unwrap();
                            let joined: Vec<u8> =
                                srcs.iter().flat_map(|s| model[s].clone()).collect();
                            if remove {
                                for s in &srcs {
                                    model.remove(s);
                                }
                            }
                            model.insert(key, joined);
                        } else {
                            assert!(matches!(r, Err(bale_io::Error::NotFound)));
                        }
                    }
                    80..=89 => {
                        if let Some(want) = model.get(&key) {
                            let o = shard.get("ns", &key).unwrap();
                            let off = rng.below(want.len() as u64 + 1);
                            let len = rng.below(50_000);
                            let got = shard.read(&o, off, len).await.unwrap();
                            let e = (off + len).min(want.len() as u64) as usize;
                            assert!(
                                got[..] == want[off as usize..e],
                                "range read {key} {off}+{len}"
                            );
                        } else {
                            assert!(shard.get("ns", &key).is_none());
                        }
                    }
                    90..=92 => {
                        shard.compact(0.3).await.unwrap();
                    }
                    93..=94 => shard.checkpoint().await.unwrap(),
                    95..=97 => {
                        if rng.below(2) == 0 {
                            shard.close().await.unwrap();
                        }
                        drop(shard);
                        shard = Shard::open(dir.path(), cfg.clone()).await.unwrap();
                    }
                    _ => {
                        let s = shard.scrub(0).await.unwrap();
                        assert_eq!(s.corrupt_objects, 0);
                    }
                }
                if step % 100 == 0 {
                    check_all(&shard, &model).await;
                }
            }
            check_all(&shard, &model).await;
            shard.compact(0.0).await.unwrap();
            check_all(&shard, &model).await;
            let st = shard.stats();
            eprintln!("final: {st:?}");
            drop(shard);
            let shard = Shard::open(dir.path(), cfg.clone()).await.unwrap();
            check_all(&shard, &model).await;
        });
}

#[test]
fn concurrent_writers_readers_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EngineConfig {
        volume_target_bytes: 256 * 1024,
        write_buffer_bytes: 16 * 1024,
        block_bytes: 4096,
        ..EngineConfig::default()
    };
    let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .unwrap();
    let models = rt.block_on(async {
        let shard = Shard::open(dir.path(), cfg.clone()).await.unwrap();
        let stop = Rc::new(std::cell::Cell::new(false));
        let compactor = {
            let s = shard.clone();
            let stop = stop.clone();
            monoio::spawn(async move {
                let mut runs = 0u32;
                while !stop.get() {
                    s.compact(0.2).await.unwrap();
                    if runs.is_multiple_of(5) {
                        s.checkpoint().await.unwrap();
                    }
                    runs += 1;
                    monoio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
                runs
            })
        };
        let mut workers = Vec::new();
        for w in 0..6u64 {
            let s = shard.clone();
            workers.push(monoio::spawn(async move {
                let mut rng = Rng(0x1000 + w * 7919);
                let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
                for step in 0..250u64 {
                    let key = format!("w{w}-k{:02}", rng.below(15));
                    match rng.below(10) {
                        0..=4 => {
                            let data = content(w << 32 | step, rng.below(30_000) as usize);
                            let mut wr = s.put("ns", &key, data.len() as u64).unwrap();
                            for c in data.chunks(5000) {
                                wr.write(Bytes::copy_from_slice(c)).await.unwrap();
                            }
                            wr.finish(Bytes::new(), Expect::Any).await.unwrap();
                            model.insert(key, data);
                        }
                        5..=6 => {
                            s.delete("ns", &key, Expect::Any).await.unwrap();
                            model.remove(&key);
                        }
                        _ => match (s.get("ns", &key), model.get(&key)) {
                            (Some(o), Some(want)) => {
                                let got = s.read(&o, 0, o.size).await.unwrap();
                                assert!(got[..] == want[..], "{key}");
                            }
                            (None, None) => {}
                            (a, b) => panic!("{key}: engine {} model {}", a.is_some(), b.is_some()),
                        },
                    }
                }
                model
            }));
        }
        let mut all = BTreeMap::new();
        for h in workers {
            all.extend(h.await);
        }
        stop.set(true);
        let runs = compactor.await;
        eprintln!("compaction runs: {runs}, stats {:?}", shard.stats());
        check_all(&shard, &all).await;
        all
    });
    drop(rt);
    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .unwrap()
        .block_on(async {
            let shard = Shard::open(dir.path(), cfg).await.unwrap();
            check_all(&shard, &models).await;
        });
}
