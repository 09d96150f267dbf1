//! How long a shard takes to open with many objects: once replaying the journal only, once
//! from the index snapshot. Objects are made cheaply with `compose` (index entries sharing one
//! record), which exercises exactly the recovery path.
//!
//! `cargo run --release -p bale-io --example restart_time -- [dir] [objects]`

use std::time::Instant;

use bale_io::{EngineConfig, Expect, Shard};
use bytes::Bytes;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(
        args.get(1)
            .cloned()
            .unwrap_or_else(|| "/tmp/bale-restart-time".into()),
    );
    let n: u64 = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let _ = std::fs::remove_dir_all(&dir);
    let rt = || {
        monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
            .expect("io_uring runtime")
    };
    rt().block_on({
        let dir = dir.clone();
        async move {
            let shard = Shard::open(&dir, EngineConfig::default()).await.unwrap();
            let mut w = shard.put("src", "one", 4096).unwrap();
            w.write(Bytes::from(vec![7u8; 4096])).await.unwrap();
            w.finish(Bytes::new(), Expect::Any).await.unwrap();
            let started = Instant::now();
            let tasks = 512u64;
            let mut handles = Vec::new();
            for t in 0..tasks {
                let s = shard.clone();
                handles.push(monoio::spawn(async move {
                    let src = [("src".to_string(), "one".to_string())];
                    let mut i = t;
                    while i < n {
                        let key = format!("segments/{:06}/insert_log/{i:012}", i % 1000);
                        s.compose(
                            "bench",
                            &key,
                            &src,
                            Bytes::from_static(b"etag-0123456789abcdef"),
                            Expect::Any,
                            false,
                        )
                        .await
                        .unwrap();
                        i += tasks;
                    }
                }));
            }
            for h in handles {
                h.await;
            }
            println!(
                "created {n} objects in {:.1}s: {:?}",
                started.elapsed().as_secs_f64(),
                shard.stats()
            );
        }
    });
    let journal_bytes = std::fs::metadata(dir.join("journal.log")).unwrap().len();
    rt().block_on({
        let dir = dir.clone();
        async move {
            let t = Instant::now();
            let shard = Shard::open(&dir, EngineConfig::default()).await.unwrap();
            println!(
                "open by journal replay ({journal_bytes} bytes): {:.2}s, {} objects",
                t.elapsed().as_secs_f64(),
                shard.stats().objects
            );
            let t = Instant::now();
            shard.close().await.unwrap();
            println!("checkpoint (close): {:.2}s", t.elapsed().as_secs_f64());
        }
    });
    let snap_bytes = std::fs::metadata(dir.join("index.snap")).unwrap().len();
    rt().block_on(async move {
        let t = Instant::now();
        let shard = Shard::open(&dir, EngineConfig::default()).await.unwrap();
        println!(
            "open from snapshot ({snap_bytes} bytes): {:.2}s, {} objects",
            t.elapsed().as_secs_f64(),
            shard.stats().objects
        );
        let _ = std::fs::remove_dir_all(&dir);
    });
}
