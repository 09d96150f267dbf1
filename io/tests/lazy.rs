//! Lazy PUTs (`PutWriter::lazy`, the gateway's cache fills): a batch made only of lazy PUTs
//! waits a little for company before its sync round, so fills that arrive one after another
//! share rounds; a PUT that is not lazy is never delayed by them; a lazy PUT is as durable and
//! atomic as any other once `finish` returns.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bale_io::{Expect, Object, Shard};
use bytes::Bytes;

mod common;
use common::small::check_all;
use common::{cfg, gen, rt};

async fn put_lazy(shard: &Rc<Shard>, key: &str, data: &[u8]) -> Object {
    let mut w = shard.put("b", key, data.len() as u64).unwrap().lazy();
    w.write(Bytes::copy_from_slice(data)).await.unwrap();
    w.finish(Bytes::from_static(b"m"), Expect::Any)
        .await
        .unwrap()
}

async fn put_now(shard: &Rc<Shard>, key: &str, data: &[u8]) -> Object {
    let mut w = shard.put("b", key, data.len() as u64).unwrap();
    w.write(Bytes::copy_from_slice(data)).await.unwrap();
    w.finish(Bytes::from_static(b"m"), Expect::Any)
        .await
        .unwrap()
}

fn objects(prefix: &str, n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let len = [1024, 5000, 1, 300_000][i % 4];
            (format!("{prefix}-{i:03}"), gen(i as u64 + 7, len))
        })
        .collect()
}

#[test]
fn lazy_puts_arriving_apart_share_sync_rounds_and_are_durable() {
    let dir = tempfile::tempdir().unwrap();
    let objs = objects("lazy", 16);
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        let syncs = shard.stats().journal_syncs;
        // One fill every 250 µs, as a gateway's misses arrive at c=1: each would be its own
        // round if it did not wait.
        let mut handles = Vec::new();
        for (k, d) in objs.clone() {
            let s = shard.clone();
            handles.push(monoio::spawn(async move { put_lazy(&s, &k, &d).await }));
            monoio::time::sleep(Duration::from_micros(250)).await;
        }
        for h in handles {
            h.await;
        }
        let rounds = shard.stats().journal_syncs - syncs;
        assert!(
            rounds < objs.len() as u64,
            "{rounds} sync rounds for {} lazy PUTs",
            objs.len()
        );
        check_all(&shard, &objs).await;
        // No close: what `finish` acknowledged is in the journal, synced.
        drop(shard);
    });
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        check_all(&shard, &objs).await;
        shard.close().await.unwrap();
    });
}

#[test]
fn a_lone_lazy_put_waits_its_window_and_a_plain_put_ends_the_wait() {
    let dir = tempfile::tempdir().unwrap();
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        // Alone, a lazy PUT's round starts when its window ends (a timer never fires early).
        let t0 = Instant::now();
        put_lazy(&shard, "alone", b"alone").await;
        assert!(
            t0.elapsed() >= Duration::from_millis(2),
            "{:?}",
            t0.elapsed()
        );

        // A plain PUT queued behind a lazy one: one round for both, started at once.
        let syncs = shard.stats().journal_syncs;
        let s = shard.clone();
        let lazy = monoio::spawn(async move { put_lazy(&s, "lazy", &gen(1, 4096)).await });
        let s = shard.clone();
        let plain = monoio::spawn(async move { put_now(&s, "plain", &gen(2, 4096)).await });
        lazy.await;
        plain.await;
        assert_eq!(shard.stats().journal_syncs - syncs, 1);
        check_all(
            &shard,
            &[
                ("alone".to_string(), b"alone".to_vec()),
                ("lazy".to_string(), gen(1, 4096)),
                ("plain".to_string(), gen(2, 4096)),
            ],
        )
        .await;
        shard.close().await.unwrap();
    });
}
