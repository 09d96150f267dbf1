//! The index memory budget (ADR 29): a shard opened with a small `index_memory_bytes` spills
//! most of its key blocks to `index.spill` and still answers every lookup, listing, compaction
//! and restart (clean, and after a shard dropped without close) exactly.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use bale_io::{EngineConfig, Expect, ListItem, Shard};
use common::small::{check_all, put_all};
use common::{cfg, gen, rt};

const BUDGET: u64 = 48 << 10;

fn budget_cfg(budget: u64) -> EngineConfig {
    EngineConfig {
        index_memory_bytes: budget,
        ..cfg()
    }
}

/// Keys spread over the key space (inserted out of order), ~60 bytes each.
fn key(i: u64) -> String {
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 44;
    format!("data/{h:05x}/segment-{i:08}/part-{:04}.bin", i % 7)
}

/// Every key of `model` listed in order, in pages of 100.
fn list_all(shard: &Shard) -> Vec<String> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = shard.list("b", "", after.as_deref(), None, 100);
        if page.is_empty() {
            return out;
        }
        for it in page {
            match it {
                ListItem::Object { key, obj } => {
                    assert!(obj.size > 0);
                    out.push(key)
                }
                ListItem::Prefix(p) => panic!("prefix {p} without a delimiter"),
            }
        }
        after = out.last().cloned();
    }
}

async fn check(shard: &Rc<Shard>, model: &BTreeMap<String, Vec<u8>>, budget: u64) {
    let objs: Vec<(String, Vec<u8>)> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    check_all(shard, &objs).await;
    let listed = list_all(shard);
    let want: Vec<String> = model.keys().cloned().collect();
    assert_eq!(listed, want);
    // A delimiter listing crosses spilled blocks as well.
    let prefixes = shard.list("b", "data/", None, Some("/"), 100_000);
    let mut want_p: Vec<String> = model
        .keys()
        .map(|k| k[..11].to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    want_p.truncate(100_000);
    let got_p: Vec<String> = prefixes
        .into_iter()
        .map(|p| match p {
            ListItem::Prefix(p) => p,
            ListItem::Object { key, .. } => panic!("object {key} at the top level"),
        })
        .collect();
    assert_eq!(got_p, want_p);
    let st = shard.stats();
    assert_eq!(st.objects, model.len() as u64);
    assert!(
        st.index_resident_bytes <= budget,
        "{} resident bytes, budget {budget}",
        st.index_resident_bytes
    );
    assert!(st.index_spill_bytes > 0 && st.index_spill_reads > 0);
    assert_eq!(st.index_spill_errors, 0);
}

fn spill_len(dir: &Path) -> u64 {
    std::fs::metadata(dir.join("index.spill"))
        .map(|m| m.len())
        .unwrap_or(0)
}

#[test]
fn small_budget_serves_everything_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let n = 4000u64;
    let mut model = BTreeMap::new();
    rt(async {
        let shard = Shard::open(dir.path(), budget_cfg(BUDGET)).await.unwrap();
        for batch in (0..n).collect::<Vec<_>>().chunks(200) {
            let objs: Vec<(String, Vec<u8>)> = batch
                .iter()
                .map(|&i| (key(i), gen(i, 100 + (i % 900) as usize)))
                .collect();
            put_all(&shard, &objs).await;
            model.extend(objs);
            if batch[0] == 2000 {
                // Half in the snapshot, the rest in the journal at the next open.
                shard.checkpoint().await.unwrap();
            }
        }
        // Deletes and overwrites land in spilled blocks (and merge them).
        for i in (0..n).step_by(5) {
            shard.delete("b", &key(i), Expect::Any).await.unwrap();
            model.remove(&key(i));
        }
        let over: Vec<(String, Vec<u8>)> = (0..n)
            .step_by(7)
            .map(|i| (key(i), gen(i + 1_000_000, 333)))
            .collect();
        put_all(&shard, &over).await;
        model.extend(over);
        let st = shard.stats();
        assert!(st.index_spill_writes > 20, "{st:?}");
        check(&shard, &model, BUDGET).await;
        // Compaction walks the whole index (and relocates records) through spilled blocks.
        shard.compact(0.0).await.unwrap();
        check(&shard, &model, BUDGET).await;
        shard.close().await.unwrap();
    });
    rt(async {
        // A clean restart: the snapshot loads in key order, blocks spilled as they fill.
        let shard = Shard::open(dir.path(), budget_cfg(BUDGET)).await.unwrap();
        let st = shard.stats();
        assert!(st.index_resident_bytes <= BUDGET, "{st:?}");
        assert!(st.index_spill_writes > 20, "{st:?}");
        check(&shard, &model, BUDGET).await;
        // More writes, then the shard is dropped without close (a crash).
        let more: Vec<(String, Vec<u8>)> = (n..n + 500).map(|i| (key(i), gen(i, 77))).collect();
        put_all(&shard, &more).await;
        model.extend(more);
        shard.delete("b", &key(1), Expect::Any).await.unwrap();
        model.remove(&key(1));
    });
    let left = spill_len(dir.path());
    assert!(left > 0, "the spill file was written");
    rt(async {
        let shard = Shard::open(dir.path(), budget_cfg(BUDGET)).await.unwrap();
        check(&shard, &model, BUDGET).await;
        shard.close().await.unwrap();
    });
    rt(async {
        // Without a budget: everything in memory, no spill file left behind.
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        assert!(!dir.path().join("index.spill").exists());
        let st = shard.stats();
        assert_eq!((st.index_spill_bytes, st.index_spill_writes), (0, 0));
        assert!(st.index_resident_bytes > 4 * BUDGET, "{st:?}");
        let objs: Vec<(String, Vec<u8>)> =
            model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        check_all(&shard, &objs).await;
        assert_eq!(list_all(&shard), model.keys().cloned().collect::<Vec<_>>());
        shard.close().await.unwrap();
    });
}

/// A spill file left by a previous run is scratch: the next open truncates it and never reads
/// it (garbage in it changes nothing).
#[test]
fn stale_spill_file_is_truncated_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let objs: Vec<(String, Vec<u8>)> = (0..1500u64).map(|i| (key(i), gen(i, 50))).collect();
    rt(async {
        let shard = Shard::open(dir.path(), budget_cfg(BUDGET)).await.unwrap();
        put_all(&shard, &objs).await;
        shard.close().await.unwrap();
    });
    std::fs::write(dir.path().join("index.spill"), vec![0xA5u8; 1 << 20]).unwrap();
    rt(async {
        let shard = Shard::open(dir.path(), budget_cfg(BUDGET)).await.unwrap();
        check_all(&shard, &objs).await;
        assert_eq!(list_all(&shard).len(), objs.len());
        shard.close().await.unwrap();
    });
    assert!(spill_len(dir.path()) < 1 << 20);
}
