//! Compaction of stripes (ADR 19 step 8) on a real 4+2 striped shard: live records move out,
//! the stripe's files go, space is freed, every object reads identical; and the states a
//! crash can leave between the moves and the last file removed all reopen consistently.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bale_io::{EngineConfig, Expect, Shard, StripeLayout};
use common::small::{check_all, put};
use common::{cfg, gen, rt};

const K: usize = 4;
const M: usize = 2;

fn dirs(root: &Path) -> Vec<PathBuf> {
    (0..K + M)
        .map(|i| root.join(format!("d{i}")).join("shard-0000"))
        .collect()
}

fn config() -> EngineConfig {
    EngineConfig {
        volume_target_bytes: 256 * 1024,
        ..cfg()
    }
}

async fn open(root: &Path) -> Rc<Shard> {
    let d = dirs(root);
    let layout = StripeLayout {
        k: K,
        m: M,
        dirs: d.iter().cloned().map(Some).collect(),
        rebuild_rate_bytes_per_s: 0,
    };
    Shard::open_striped(&d[..=M], M + 1, layout, config())
        .await
        .unwrap()
}

/// Every file of the set: (directory index, name) -> bytes.
fn files(root: &Path) -> BTreeMap<(usize, String), Vec<u8>> {
    let mut out = BTreeMap::new();
    for (i, d) in dirs(root).iter().enumerate() {
        for e in std::fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            if name.starts_with("vol-")
                || name.starts_with("parity-")
                || name.starts_with("stripe-")
            {
                out.insert((i, name), std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

fn disk_bytes(root: &Path) -> u64 {
    dirs(root)
        .iter()
        .flat_map(|d| std::fs::read_dir(d).unwrap())
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

/// 100 objects of 20-40 KiB in 256 KiB volumes (stripes of 4 form), then 3 of every 4 deleted
/// or overwritten. Returns the objects that must read back.
async fn fill(shard: &Rc<Shard>) -> Vec<(String, Vec<u8>)> {
    let mut objs: Vec<(String, Vec<u8>)> = (0..100u64)
        .map(|i| {
            (
                format!("k{i:03}"),
                gen(i, 20_000 + (i as usize * 431) % 20_000),
            )
        })
        .collect();
    for (k, d) in &objs {
        put(shard, k, d).await;
    }
    let made = shard.encode_stripes().await.unwrap();
    assert!(made >= 2, "stripes made: {made}");
    assert!(shard.stats().stripes >= 2);
    let mut keep = Vec::new();
    for (i, (k, d)) in objs.drain(..).enumerate() {
        match i % 4 {
            0 => keep.push((k, d)),
            1 => {
                let d = gen(1000 + i as u64, 3000 + i * 17);
                put(shard, &k, &d).await;
                keep.push((k, d));
            }
            _ => {
                shard.delete("b", &k, Expect::Any).await.unwrap();
            }
        }
    }
    keep
}

#[test]
fn stripe_compaction_moves_live_records_and_frees_space() {
    let t = tempfile::tempdir().unwrap();
    rt(async {
        let shard = open(t.path()).await;
        let objs = fill(&shard).await;
        // Closed to measure: a closed shard's active volume has no preallocated tail.
        shard.close().await.unwrap();
        drop(shard);
        let before = disk_bytes(t.path());
        let shard = open(t.path()).await;
        let stripes_before = shard.stats().stripes;
        // A reader holding an object of a stripe: the stripe waits for it.
        let held = shard.get("b", &objs[0].0).unwrap();
        let cs = shard.compact(0.5).await.unwrap();
        assert!(cs.records_moved > 0, "{cs:?}");
        // The held object's stripe stays (its member is still open for the reader).
        assert!(cs.stripes_compacted < stripes_before, "{cs:?}");
        assert!(shard.stats().stripes >= 1);
        let held_data = shard.read(&held, 0, held.size).await.unwrap();
        assert!(held_data[..] == objs[0].1[..]);
        drop(held);
        let cs2 = shard.compact(0.5).await.unwrap();
        let compacted = cs.stripes_compacted + cs2.stripes_compacted;
        assert!(compacted >= 2, "{cs:?} {cs2:?}");
        assert_eq!(shard.stats().stripes, stripes_before - compacted);
        check_all(&shard, &objs).await;
        shard.close().await.unwrap();
        drop(shard);
        let after = disk_bytes(t.path());
        assert!(after < before * 2 / 3, "disk bytes {before} -> {after}");
        let shard = open(t.path()).await;
        // Every file of a compacted stripe is gone from every directory.
        let left = files(t.path());
        let parity = left
            .keys()
            .filter(|(_, n)| n.starts_with("parity-"))
            .count();
        let manifests = left
            .keys()
            .filter(|(_, n)| n.starts_with("stripe-"))
            .count();
        let s = shard.stats().stripes as usize;
        assert_eq!(parity, s * M);
        assert_eq!(manifests, s * (M + 1));
        shard.close().await.unwrap();
        drop(shard);
        let shard = open(t.path()).await;
        check_all(&shard, &objs).await;
        assert_eq!(shard.stats().stripes as usize, s);
        shard.close().await.unwrap();
    });
}

/// The crash points of deleting a stripe, made by putting its files back after a compaction
/// (the index then names none of them, as after a crash past the checkpoint).
#[derive(Debug, Clone, Copy)]
enum Crash {
    /// Moves durable, nothing removed yet.
    BeforeManifests,
    /// The manifest removed from the first copy directory only.
    OneManifestGone,
    /// Every manifest removed, members and parity still there.
    AllManifestsGone,
    /// Manifests and parity removed, members still there.
    OnlyMembersLeft,
}

#[test]
fn a_crash_at_each_step_of_a_stripe_deletion_reopens_consistently() {
    for crash in [
        Crash::BeforeManifests,
        Crash::OneManifestGone,
        Crash::AllManifestsGone,
        Crash::OnlyMembersLeft,
    ] {
        let t = tempfile::tempdir().unwrap();
        rt(async {
            let shard = open(t.path()).await;
            let objs = fill(&shard).await;
            let stripes_before = shard.stats().stripes;
            let saved = files(t.path());
            let cs = shard.compact(0.5).await.unwrap();
            assert!(cs.stripes_compacted >= 2, "{crash:?} {cs:?}");
            shard.close().await.unwrap();
            drop(shard);
            let now = files(t.path());
            let mut restored_manifests = 0;
            for ((i, name), bytes) in &saved {
                if now.contains_key(&(*i, name.clone())) {
                    continue;
                }
                let put_back = match crash {
                    Crash::BeforeManifests => true,
                    Crash::OneManifestGone => !(name.starts_with("stripe-") && *i == 0),
                    Crash::AllManifestsGone => !name.starts_with("stripe-"),
                    Crash::OnlyMembersLeft => name.starts_with("vol-"),
                };
                if put_back {
                    restored_manifests += usize::from(name.starts_with("stripe-"));
                    std::fs::write(dirs(t.path())[*i].join(name), bytes).unwrap();
                }
            }
            let shard = open(t.path()).await;
            check_all(&shard, &objs).await;
            let st = shard.stats();
            let left = files(t.path());
            let manifests = left
                .keys()
                .filter(|(_, n)| n.starts_with("stripe-"))
                .count();
            let parity = left
                .keys()
                .filter(|(_, n)| n.starts_with("parity-"))
                .count();
            match crash {
                Crash::BeforeManifests | Crash::OneManifestGone => {
                    // A manifest in any copy: the stripe is back whole, in every copy.
                    assert!(restored_manifests > 0, "{crash:?}");
                    assert_eq!(st.stripes, stripes_before, "{crash:?}");
                }
                Crash::AllManifestsGone | Crash::OnlyMembersLeft => {
                    assert_eq!(
                        st.stripes,
                        stripes_before - cs.stripes_compacted,
                        "{crash:?}"
                    );
                }
            }
            assert_eq!(manifests, st.stripes as usize * (M + 1), "{crash:?}");
            assert_eq!(parity, st.stripes as usize * M, "{crash:?}");
            // Whatever came back is wholly dead: the next pass only deletes it.
            let cs = shard.compact(0.5).await.unwrap();
            assert_eq!(cs.records_moved, 0, "{crash:?} {cs:?}");
            check_all(&shard, &objs).await;
            let left = files(t.path());
            let vols_left = left.keys().filter(|(_, n)| n.starts_with("vol-")).count();
            let after = files(t.path()).len();
            assert!(
                shard.stats().stripes < stripes_before,
                "{crash:?}: stripes left {}",
                shard.stats().stripes
            );
            // No file of a deleted stripe is left: every volume file left is one the
            // shard has (the copies of open ones, the member of a stripe left).
            assert!(
                vols_left <= shard.stats().volumes as usize * (M + 1),
                "{crash:?}"
            );
            assert!(after <= left.len());
            shard.close().await.unwrap();
        });
    }
}
