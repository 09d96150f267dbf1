//! Small-object helpers shared by the packing and sync-round tests (namespace "b").
#![allow(dead_code)] // each test crate uses its own subset

use std::path::{Path, PathBuf};
use std::rc::Rc;

use bale_io::{Expect, Object, Shard};
use bytes::Bytes;

/// PUT `data` under `key` in writes of 3,000 bytes (not aligned to anything).
pub async fn put(shard: &Rc<Shard>, key: &str, data: &[u8]) -> Object {
    let mut w = shard.put("b", key, data.len() as u64).unwrap();
    for c in data.chunks(3000) {
        w.write(Bytes::copy_from_slice(c)).await.unwrap();
    }
    w.finish(Bytes::from_static(b"m"), Expect::Any)
        .await
        .unwrap()
}

/// PUT every (key, data) concurrently: the finishes queue while the committer is busy, so they
/// share batches.
pub async fn put_all(shard: &Rc<Shard>, objs: &[(String, Vec<u8>)]) {
    let handles: Vec<_> = objs
        .iter()
        .cloned()
        .map(|(k, d)| {
            let s = shard.clone();
            monoio::spawn(async move { put(&s, &k, &d).await })
        })
        .collect();
    for h in handles {
        h.await;
    }
}

/// Every object reads back whole and, past 10 bytes, as an unaligned range.
pub async fn check_all(shard: &Shard, objs: &[(String, Vec<u8>)]) {
    for (k, d) in objs {
        let o = shard.get("b", k).unwrap_or_else(|| panic!("{k} missing"));
        assert_eq!(o.size, d.len() as u64, "{k}");
        let got = shard.read(&o, 0, o.size).await.unwrap();
        assert!(got[..] == d[..], "{k} differs");
        if d.len() > 10 {
            // A range inside the record (not aligned to anything).
            let got = shard.read(&o, 3, d.len() as u64 - 7).await.unwrap();
            assert!(got[..] == d[3..d.len() - 4], "{k} range differs");
        }
    }
}

/// The volume files of a shard directory, in name order.
pub fn volumes(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "dat"))
        .collect();
    v.sort();
    v
}
