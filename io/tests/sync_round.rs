//! One sync round per small PUT (ADR 22): the packed records of a batch are fdatasynced at the
//! same time as the journal write that names them, so the journal's last batch may name
//! records that never reached the disk. Recovery verifies that batch's records and drops the
//! batch when one fails (none of it was acknowledged); nothing before it is ever dropped.
//! "Never reached the disk" is simulated by zeroing the batch's aligned units after a kill
//! (no close): a fresh, preallocated span that was not written reads back as zeros.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bale_io::{Expect, Shard};

mod common;
use common::small::{check_all, put, put_all, volumes};
use common::{cfg, gen, rt};

const ALIGN: u64 = 4096;

fn objects(prefix: &str, n: usize, seed: u64) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let len = [1024, 1, 777, 4097, 0][i % 5];
            (format!("{prefix}-{i:05}"), gen(seed * 1000 + i as u64, len))
        })
        .collect()
}

/// (volume, offset) of every record magic ("BALR") in the volumes.
fn records(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    for p in volumes(dir) {
        let b = std::fs::read(&p).unwrap();
        out.extend(
            b.windows(4)
                .enumerate()
                .filter(|(_, w)| *w == b"BALR")
                .map(|(i, _)| (p.clone(), i as u64)),
        );
    }
    out
}

/// Zero the records in `after` but not in `before` (the records of the batches in between)
/// and the rest of the aligned units that hold them: as if their write never reached the disk.
/// The bytes before the first of them stay: a packed write that continued the unit of earlier
/// records (ADR 25) left that unit holding its old content (the earlier records, then zeros).
fn zero_new_records(before: &[(PathBuf, u64)], after: &[(PathBuf, u64)]) -> usize {
    let new: Vec<_> = after.iter().filter(|r| !before.contains(r)).collect();
    assert!(!new.is_empty(), "no new records");
    for (path, off) in &new {
        assert!(
            before.iter().all(|(p, o)| p != path || o < off),
            "the new records follow the old ones"
        );
        let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        // A record of these tests spans at most two units.
        let end = (off / ALIGN + 3) * ALIGN;
        f.write_all_at(&vec![0u8; (end - off) as usize], *off)
            .unwrap();
    }
    new.len()
}

#[test]
fn a_last_batch_whose_records_never_reached_the_disk_is_dropped_and_acknowledged_puts_survive() {
    let dir = tempfile::tempdir().unwrap();
    let acked = objects("a", 40, 1);
    let late = objects("late", 9, 2);
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        put_all(&shard, &acked).await;
        check_all(&shard, &acked).await;
        let before = records(dir.path());
        let syncs = shard.stats().journal_syncs;
        // One batch: new PUTs, a DELETE and an overwrite of acknowledged objects.
        let mut handles = Vec::new();
        for (k, d) in late.clone() {
            let s = shard.clone();
            handles.push(monoio::spawn(async move {
                put(&s, &k, &d).await;
            }));
        }
        let s = shard.clone();
        handles.push(monoio::spawn(async move {
            assert!(s
                .delete("b", "a-00000", Expect::Any)
                .await
                .unwrap()
                .is_some());
        }));
        let s = shard.clone();
        handles.push(monoio::spawn(async move {
            put(&s, "a-00001", b"overwritten").await;
        }));
        for h in handles {
            h.await;
        }
        assert_eq!(
            shard.stats().journal_syncs,
            syncs + 1,
            "the late operations must share one batch for this test"
        );
        assert!(shard.get("b", "a-00000").is_none());
        drop(shard); // killed: no close, no checkpoint
        let zeroed = zero_new_records(&before, &records(dir.path()));
        assert_eq!(zeroed, late.len() + 1);
    });
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        // The whole last batch is gone (its PUTs were never acknowledged in this story)...
        for (k, _) in &late {
            assert!(
                shard.get("b", k).is_none(),
                "{k} of the dropped batch is visible"
            );
        }
        // ...including the DELETE and the overwrite in it; every earlier PUT is intact.
        check_all(&shard, &acked).await;
        assert_eq!(shard.stats().objects, acked.len() as u64);
        let scrub = shard.scrub(0).await.unwrap();
        assert_eq!(scrub.corrupt_objects, 0);
        // The shard keeps working: the same keys can be written again.
        put_all(&shard, &late).await;
        check_all(&shard, &late).await;
        drop(shard);
    });
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        check_all(&shard, &acked).await;
        check_all(&shard, &late).await;
        shard.close().await.unwrap();
    });
}

#[test]
fn damage_before_the_last_batch_drops_no_entry() {
    let dir = tempfile::tempdir().unwrap();
    let first = objects("first", 10, 3);
    let last = objects("last", 10, 4);
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        let before = records(dir.path());
        put_all(&shard, &first).await;
        let mid = records(dir.path());
        put_all(&shard, &last).await;
        drop(shard);
        // The first batches' records are damaged (acknowledged data, not a torn tail): 8 bytes
        // from the 3rd byte of data on (record version 3: the data starts at byte 32), inside
        // every record of them with at least 10 bytes of data (data_len is the u64 at byte 8;
        // a shorter record's next neighbour may be the last batch's first record, ADR 25).
        for (path, off) in mid.iter().filter(|r| !before.contains(r)) {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .unwrap();
            let mut len = [0u8; 8];
            f.read_exact_at(&mut len, off + 8).unwrap();
            if u64::from_le_bytes(len) >= 10 {
                f.write_all_at(&[0xff; 8], off + 34).unwrap();
            }
        }
    });
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        // Only the last batch is verified: the damaged objects stay named (their reads fail
        // their CRC, as any damaged record's), and nothing after them is dropped.
        for (k, _) in &first {
            assert!(shard.get("b", k).is_some(), "{k} was dropped");
        }
        check_all(&shard, &last).await;
        let scrub = shard.scrub(0).await.unwrap();
        assert!(scrub.corrupt_objects > 0);
        shard.close().await.unwrap();
    });
}

/// Rewrite every version-3 entry of the journal as version 2 (no flags byte): the journal of
/// format 2, whose packed records were synced before their entries were written.
fn downgrade_journal_to_version_2(dir: &Path) -> usize {
    let path = dir.join("journal.log");
    let img = std::fs::read(&path).unwrap();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut n = 0;
    while pos < img.len() {
        let len = u32::from_le_bytes(img[pos..pos + 4].try_into().unwrap()) as usize;
        let mut payload = img[pos + 8..pos + 8 + len].to_vec();
        assert_eq!(payload[0], 3, "entry version");
        payload.remove(10); // [version][kind][lsn u64][flags]
        payload[0] = 2;
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
        pos += 8 + len;
        n += 1;
    }
    std::fs::write(&path, out).unwrap();
    n
}

#[test]
fn a_format_2_journal_opens_replays_and_takes_new_writes() {
    let dir = tempfile::tempdir().unwrap();
    let old = objects("old", 30, 5);
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        put_all(&shard, &old).await;
        assert!(shard
            .delete("b", "old-00003", Expect::Any)
            .await
            .unwrap()
            .is_some());
        drop(shard); // the journal holds the entries
    });
    assert_eq!(downgrade_journal_to_version_2(dir.path()), old.len() + 1);
    let mut old = old;
    old.remove(3);
    let new = objects("new", 20, 6);
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        check_all(&shard, &old).await;
        assert!(shard.get("b", "old-00003").is_none());
        put_all(&shard, &new).await;
        drop(shard); // version-2 entries followed by version-3 ones
    });
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        check_all(&shard, &old).await;
        check_all(&shard, &new).await;
        assert_eq!(shard.stats().objects, (old.len() + new.len()) as u64);
        shard.close().await.unwrap();
    });
}
