//! Engine tests on real files (tempdirs on the build machine's filesystem), real io_uring.

use std::path::Path;
use std::rc::Rc;

use bale_io::{EngineConfig, Error, Expect, ListItem, Object, Shard};
use bytes::Bytes;

mod common;
use common::{cfg, gen, rt};

async fn put(
    shard: &Rc<Shard>,
    ns: &str,
    key: &str,
    data: &[u8],
    chunk: usize,
) -> bale_io::Result<Object> {
    put_expect(shard, ns, key, data, chunk, Expect::Any).await
}

async fn put_expect(
    shard: &Rc<Shard>,
    ns: &str,
    key: &str,
    data: &[u8],
    chunk: usize,
    expect: Expect,
) -> bale_io::Result<Object> {
    let mut w = shard.put(ns, key, data.len() as u64)?;
    for c in data.chunks(chunk.max(1)) {
        w.write(Bytes::copy_from_slice(c)).await?;
    }
    w.finish(Bytes::from(format!("meta:{key}")), expect).await
}

async fn read_all(shard: &Shard, obj: &Object) -> Vec<u8> {
    shard.read(obj, 0, obj.size).await.expect("read").to_vec()
}

fn keys(items: &[ListItem]) -> Vec<String> {
    items
        .iter()
        .map(|i| match i {
            ListItem::Object { key, .. } => key.clone(),
            ListItem::Prefix(p) => format!("P:{p}"),
        })
        .collect()
}

fn flip_byte(path: &Path, offset: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= 0x5a;
    f.write_all_at(&b, offset).unwrap();
    f.sync_all().unwrap();
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn volume_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("vol-"))
        .collect();
    v.sort();
    v
}

#[test]
fn put_get_ranges_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        let sizes = [
            0usize,
            1,
            100,
            4095,
            4096,
            4097,
            16383,
            16384,
            16385,
            100_000,
            3 * 1024 * 1024 + 123,
        ];
        for (i, &n) in sizes.iter().enumerate() {
            let data = gen(i as u64, n);
            let key = format!("obj-{n}");
            let o = put(&shard, "b", &key, &data, 7777).await.unwrap();
            assert_eq!(o.size, n as u64);
            assert_eq!(&o.meta[..], format!("meta:{key}").as_bytes());
            let g = shard.get("b", &key).unwrap();
            assert_eq!(g.seq, o.seq);
            assert_eq!(read_all(&shard, &g).await, data);
            // ranges: crossing blocks, inside one block, at the end, past the end.
            let ranges = [
                (0u64, 1u64),
                (1, 4096),
                (4000, 200),
                (16380, 10),
                (16384, 16384),
                (5000, 40000),
                (n as u64 / 2, 1 << 20),
                (n as u64, 10),
            ];
            for (off, len) in ranges {
                let got = shard.read(&g, off, len).await.unwrap();
                let s = (off as usize).min(n);
                let e = (off.saturating_add(len) as usize).min(n);
                assert_eq!(&got[..], &data[s..e], "size {n} range {off}+{len}");
            }
        }
        assert!(shard.get("b", "missing").is_none());
        assert!(shard.get("other", "obj-1").is_none());
        let st = shard.stats();
        assert_eq!(st.objects, sizes.len() as u64);
        // Packed records (ADR 18) leave only the tail of each batch's aligned write unused.
        assert!(st.garbage_bytes < 4096 * st.journal_syncs);
    });
}

#[test]
fn size_mismatch_and_bad_keys() {
    let dir = tempfile::tempdir().unwrap();
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        let mut w = shard.put("b", "k", 10).unwrap();
        w.write(Bytes::from_static(b"12345")).await.unwrap();
        assert!(matches!(
            w.finish(Bytes::new(), Expect::Any).await,
            Err(Error::SizeMismatch {
                expected: 10,
                got: 5
            })
        ));
        let mut w = shard.put("b", "k", 3).unwrap();
        assert!(matches!(
            w.write(Bytes::from_static(b"1234")).await,
            Err(Error::SizeMismatch { .. })
        ));
        drop(w);
        assert!(shard.get("b", "k").is_none());
        let w = shard.put("b", "m", 0).unwrap();
        assert!(matches!(
            w.finish(Bytes::from(vec![0u8; 2 << 20]), Expect::Any).await,
            Err(Error::Invalid(_))
        ));
        let many: Vec<(String, String)> = (0..200_000)
            .map(|i| ("b".to_string(), format!("p{i}")))
            .collect();
        assert!(matches!(
            shard
                .compose("b", "c", &many, Bytes::new(), Expect::Any, false)
                .await,
            Err(Error::Invalid(_))
        ));
        let long = "x".repeat(2000);
        assert!(matches!(shard.put("b", &long, 1), Err(Error::Invalid(_))));
        // Arbitrary UTF-8 keys, never used as paths.
        let k = "../../etc/passwd/ünï¢ødé 🚀";
        put(&shard, "ns with spaces/..", k, b"hello", 2)
            .await
            .unwrap();
        let o = shard.get("ns with spaces/..", k).unwrap();
        assert_eq!(read_all(&shard, &o).await, b"hello");
    });
}

#[test]
fn overwrite_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        let a = put(&shard, "b", "k", &gen(1, 5000), 1000).await.unwrap();
        let b = put(&shard, "b", "k", &gen(2, 7000), 1000).await.unwrap();
        assert!(b.seq > a.seq);
        let g = shard.get("b", "k").unwrap();
        assert_eq!(g.seq, b.seq);
        assert_eq!(read_all(&shard, &g).await, gen(2, 7000));
        // The old version is still readable through its handle (data not yet reclaimed).
        assert_eq!(read_all(&shard, &a).await, gen(1, 5000));
        assert!(shard.stats().garbage_bytes > 0);
        assert!(matches!(
            shard.delete("b", "k", Expect::Seq(a.seq)).await,
            Err(Error::PreconditionFailed)
        ));
        let d = shard
            .delete("b", "k", Expect::Seq(b.seq))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.seq, b.seq);
        assert!(shard.get("b", "k").is_none());
        assert!(shard.delete("b", "k", Expect::Any).await.unwrap().is_none());
        assert!(!shard.has_any("b"));
        assert_eq!(shard.stats().live_bytes, 0);
        // Conditional put on a missing key with Seq fails.
        assert!(matches!(
            put_expect(&shard, "b", "k", b"x", 1, Expect::Seq(1)).await,
            Err(Error::PreconditionFailed)
        ));
    });
}

#[test]
fn list_prefix_delimiter_after_limit() {
    let dir = tempfile::tempdir().unwrap();
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        for k in [
            "a", "a/1", "a/2", "a/b/1", "a/b/2", "a/c", "b/1", "b/2/x", "c", "d/é/1", "d/é/2",
            "d/f",
        ] {
            put(&shard, "ns", k, k.as_bytes(), 100).await.unwrap();
        }
        put(&shard, "other", "zzz", b"z", 1).await.unwrap();
        assert!(shard.has_any("ns") && shard.has_any("other") && !shard.has_any("none"));
        assert_eq!(keys(&shard.list("ns", "", None, None, 100)).len(), 12);
        assert_eq!(
            keys(&shard.list("ns", "", None, Some("/"), 100)),
            ["a", "P:a/", "P:b/", "c", "P:d/"]
        );
        assert_eq!(
            keys(&shard.list("ns", "a/", None, Some("/"), 100)),
            ["a/1", "a/2", "P:a/b/", "a/c"]
        );
        assert_eq!(
            keys(&shard.list("ns", "a/", None, None, 100)),
            ["a/1", "a/2", "a/b/1", "a/b/2", "a/c"]
        );
        assert_eq!(
            keys(&shard.list("ns", "a/", Some("a/2"), None, 2)),
            ["a/b/1", "a/b/2"]
        );
        assert_eq!(
            // start-after semantics: keys after "a/b/" still roll up into "a/b/"
            keys(&shard.list("ns", "a/", Some("a/b/"), Some("/"), 100)),
            ["P:a/b/", "a/c"]
        );
        assert_eq!(
            keys(&shard.list("ns", "", Some("a/"), Some("/"), 2)),
            ["P:a/", "P:b/"]
        );
        assert_eq!(
            keys(&shard.list("ns", "", Some("a0"), Some("/"), 2)),
            ["P:b/", "c"]
        );
        assert_eq!(
            keys(&shard.list("ns", "", None, Some("/"), 2)),
            ["a", "P:a/"]
        );
        // UTF-8 byte order: "d/f" < "d/é/..."
        assert_eq!(
            keys(&shard.list("ns", "d/", None, Some("/"), 10)),
            ["d/f", "P:d/é/"]
        );
        assert_eq!(
            keys(&shard.list("ns", "d/", None, Some("é/"), 10)),
            ["d/f", "P:d/é/"]
        );
        assert_eq!(
            keys(&shard.list("ns", "", None, Some("b/"), 100)),
            ["a", "a/1", "a/2", "P:a/b/", "a/c", "P:b/", "c", "d/f", "d/é/1", "d/é/2"]
        );
        assert!(shard.list("ns", "zz", None, None, 10).is_empty());
        assert!(shard.list("ns", "", None, None, 0).is_empty());
    });
}

#[test]
fn expect_absent_race_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        for round in 0..10 {
            let key = format!("manifest-{round}");
            let mut handles = Vec::new();
            for i in 0..4u64 {
                let s = shard.clone();
                let key = key.clone();
                handles.push(monoio::spawn(async move {
                    put_expect(&s, "b", &key, &gen(i, 3000), 1000, Expect::Absent).await
                }));
            }
            let mut wins = 0;
            let mut winner = None;
            for (i, h) in handles.into_iter().enumerate() {
                match h.await {
                    Ok(o) => {
                        wins += 1;
                        winner = Some((i, o));
                    }
                    Err(Error::PreconditionFailed) => {}
                    Err(e) => panic!("unexpected {e}"),
                }
            }
            assert_eq!(wins, 1);
            let (i, o) = winner.unwrap();
            let g = shard.get("b", &key).unwrap();
            assert_eq!(g.seq, o.seq);
            assert_eq!(read_all(&shard, &g).await, gen(i as u64, 3000));
        }
    });
}

#[test]
fn group_commit_shares_syncs() {
    let dir = tempfile::tempdir().unwrap();
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        let n = 64u64;
        let before = shard.stats();
        let mut handles = Vec::new();
        for i in 0..n {
            let s = shard.clone();
            handles.push(monoio::spawn(async move {
                put(&s, "b", &format!("k{i}"), &gen(i, 4096), 4096).await
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        let after = shard.stats();
        let syncs = after.journal_syncs - before.journal_syncs;
        assert_eq!(after.commits - before.commits, n);
        assert!(syncs < n, "{syncs} journal syncs for {n} concurrent puts");
        eprintln!("group commit: {n} puts, {syncs} journal syncs");
        for i in 0..n {
            let o = shard.get("b", &format!("k{i}")).unwrap();
            assert_eq!(read_all(&shard, &o).await, gen(i, 4096));
        }
    });
}

#[test]
fn restart_recovers_everything() {
    let dir = tempfile::tempdir().unwrap();
    let n = 200u64;
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        for i in 0..n {
            put(
                &shard,
                "b",
                &format!("k{i:04}"),
                &gen(i, (i * 997 % 50_000) as usize),
                8192,
            )
            .await
            .unwrap();
        }
        for i in (0..n).step_by(3) {
            shard
                .delete("b", &format!("k{i:04}"), Expect::Any)
                .await
                .unwrap();
        }
        put(&shard, "b", "k0001", &gen(9999, 12345), 1000)
            .await
            .unwrap();
        // no close: simulate a crash after acknowledged writes
    });
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        for i in 0..n {
            let k = format!("k{i:04}");
            let g = shard.get("b", &k);
            if i == 1 {
                assert_eq!(read_all(&shard, &g.unwrap()).await, gen(9999, 12345));
            } else if i % 3 == 0 {
                assert!(g.is_none(), "{k} deleted");
            } else {
                assert_eq!(
                    read_all(&shard, &g.unwrap()).await,
                    gen(i, (i * 997 % 50_000) as usize),
                    "{k}"
                );
            }
        }
        // New writes after restart get new seqs and land in a fresh volume.
        let o = put(&shard, "b", "after", b"after", 5).await.unwrap();
        assert!(o.seq > n);
        shard.close().await.unwrap();
        assert!(matches!(shard.put("b", "x", 1), Err(Error::Closed)));
    });
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        assert_eq!(
            read_all(&shard, &shard.get("b", "after").unwrap()).await,
            b"after"
        );
        assert_eq!(shard.stats().objects, n - n.div_ceil(3) + 1); // k0001 overwritten, "after" added
    });
}

#[test]
fn torn_journal_tail_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        for i in 0..10u64 {
            put(&shard, "b", &format!("k{i}"), &gen(i, 1000), 1000)
                .await
                .unwrap();
        }
    });
    let jpath = dir.path().join("journal.log");
    let len = std::fs::metadata(&jpath).unwrap().len();
    // Torn: cut the last entry short.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&jpath)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        for i in 0..9u64 {
            assert_eq!(
                read_all(&shard, &shard.get("b", &format!("k{i}")).unwrap()).await,
                gen(i, 1000)
            );
        }
        assert!(shard.get("b", "k9").is_none());
        put(&shard, "b", "k10", &gen(10, 1000), 1000).await.unwrap();
    });
    // Garbled: flip a byte inside the last entry; also append junk.
    let len = std::fs::metadata(&jpath).unwrap().len();
    flip_byte(&jpath, len - 5);
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&jpath)
            .unwrap();
        f.write_all(&[0xff; 37]).unwrap();
    }
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        for i in 0..9u64 {
            assert_eq!(
                read_all(&shard, &shard.get("b", &format!("k{i}")).unwrap()).await,
                gen(i, 1000)
            );
        }
        assert!(shard.get("b", "k10").is_none());
        // Appending after a truncated tail works and survives.
        put(&shard, "b", "k11", b"eleven", 3).await.unwrap();
    });
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        assert_eq!(
            read_all(&shard, &shard.get("b", "k11").unwrap()).await,
            b"eleven"
        );
        assert_eq!(shard.stats().objects, 10);
    });
}

#[test]
fn flipped_byte_reads_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let data = gen(42, 100_000);
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        put(&shard, "b", "victim", &data, 10_000).await.unwrap();
        put(&shard, "b", "bystander", &gen(43, 5000), 10_000)
            .await
            .unwrap();
    });
    let vols = volume_files(dir.path());
    assert_eq!(vols.len(), 1);
    let image = std::fs::read(&vols[0]).unwrap();
    let at = find(&image, &data[50_000..50_064]).unwrap() as u64;
    flip_byte(&vols[0], at + 10); // inside block 3 of the object (50_010 / 16384)
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        let o = shard.get("b", "victim").unwrap();
        assert!(matches!(
            shard.read(&o, 0, o.size).await,
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            shard.read(&o, 50_000, 100).await,
            Err(Error::Corrupt { .. })
        ));
        // Blocks not touched by the flip still read fine.
        assert_eq!(&shard.read(&o, 0, 16384).await.unwrap()[..], &data[..16384]);
        assert_eq!(
            &shard.read(&o, 70_000, 1000).await.unwrap()[..],
            &data[70_000..71_000]
        );
        assert_eq!(shard.stats().corrupt_reads, 2);
        let b = shard.get("b", "bystander").unwrap();
        assert_eq!(read_all(&shard, &b).await, gen(43, 5000));
        let s = shard.scrub(0).await.unwrap();
        assert_eq!(s.objects_checked, 2);
        assert_eq!(s.corrupt_objects, 1);
    });
}

#[test]
fn snapshot_plus_journal_replay() {
    let dir = tempfile::tempdir().unwrap();
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        for i in 0..50u64 {
            put(&shard, "b", &format!("k{i}"), &gen(i, 3000), 3000)
                .await
                .unwrap();
        }
        shard.checkpoint().await.unwrap();
        assert_eq!(
            std::fs::metadata(dir.path().join("journal.log"))
                .unwrap()
                .len(),
            0
        );
        for i in 50..60u64 {
            put(&shard, "b", &format!("k{i}"), &gen(i, 3000), 3000)
                .await
                .unwrap();
        }
        for i in 0..10u64 {
            shard
                .delete("b", &format!("k{i}"), Expect::Any)
                .await
                .unwrap();
        }
        shard
            .compose(
                "b",
                "joined",
                &[("b".into(), "k20".into()), ("b".into(), "k55".into())],
                Bytes::new(),
                Expect::Any,
                false,
            )
            .await
            .unwrap();
    });
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        assert_eq!(shard.stats().objects, 51);
        for i in 10..60u64 {
            assert_eq!(
                read_all(&shard, &shard.get("b", &format!("k{i}")).unwrap()).await,
                gen(i, 3000)
            );
        }
        let j = shard.get("b", "joined").unwrap();
        let mut want = gen(20, 3000);
        want.extend(gen(55, 3000));
        assert_eq!(read_all(&shard, &j).await, want);
    });
    // A bad snapshot whose entries the journal no longer holds (it was trimmed at the
    // checkpoint): open refuses rather than serve an incomplete index, and touches nothing.
    let vols_before = volume_files(dir.path());
    flip_byte(&dir.path().join("index.snap"), 40);
    rt(async {
        match Shard::open(dir.path(), cfg()).await {
            Err(bale_io::Error::Corrupt { context }) => {
                assert!(context.contains("refusing to start"), "{context}")
            }
            Err(e) => panic!("unexpected error: {e}"),
            Ok(_) => panic!("opened a shard with a corrupt snapshot and a trimmed journal"),
        }
    });
    assert!(dir.path().join("index.snap").exists());
    assert!(!dir.path().join("index.snap.bad").exists());
    assert_eq!(volume_files(dir.path()), vols_before);
}

#[test]
fn compose_concatenates_extents() {
    let dir = tempfile::tempdir().unwrap();
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        let sizes = [5 * 1024 * 1024 + 7, 100_000, 1, 70_001];
        let mut want = Vec::new();
        let mut parts = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let d = gen(100 + i as u64, n);
            want.extend_from_slice(&d);
            let k = format!("upload/part{i}");
            put(&shard, "mp", &k, &d, 65536).await.unwrap();
            parts.push(("mp".to_string(), k));
        }
        // Packed parts leave the tail of their aligned write unused; compose adds nothing.
        let garbage_before = shard.stats().garbage_bytes;
        assert!(matches!(
            shard
                .compose(
                    "b",
                    "big",
                    &[("mp".into(), "nope".into())],
                    Bytes::new(),
                    Expect::Any,
                    true
                )
                .await,
            Err(Error::NotFound)
        ));
        let o = shard
            .compose(
                "b",
                "big",
                &parts,
                Bytes::from_static(b"etag-x"),
                Expect::Absent,
                true,
            )
            .await
            .unwrap();
        assert_eq!(o.size, want.len() as u64);
        assert_eq!(
            o.part_sizes().collect::<Vec<_>>(),
            sizes.iter().map(|&s| s as u64).collect::<Vec<_>>()
        );
        assert!(!shard.has_any("mp"));
        let total = want.len() as u64;
        for (off, len) in [
            (0u64, 4096u64),
            (5 * 1024 * 1024 - 10, 40),
            (5 * 1024 * 1024 + 7 - 1, 100_002),
            (total - 70_010, 70_010),
            (0, 8 << 20),
        ] {
            let got = shard.read(&o, off, len).await.unwrap();
            let e = (off + len).min(total) as usize;
            assert_eq!(&got[..], &want[off as usize..e], "range {off}+{len}");
        }
        assert_eq!(
            shard.stats().garbage_bytes,
            garbage_before,
            "compose copies no data and leaves no garbage"
        );
    });
}

#[test]
fn compaction_reclaims_and_data_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let c = EngineConfig {
        volume_target_bytes: 256 * 1024,
        ..cfg()
    };
    rt(async {
        let shard = Shard::open(dir.path(), c.clone()).await.unwrap();
        for i in 0..200u64 {
            put(
                &shard,
                "b",
                &format!("k{i:03}"),
                &gen(i, 6000 + i as usize),
                4096,
            )
            .await
            .unwrap();
        }
        let held = shard.get("b", "k001").unwrap(); // an in-flight reader's handle
        for i in 0..200u64 {
            if i % 4 != 0 {
                shard
                    .delete("b", &format!("k{i:03}"), Expect::Any)
                    .await
                    .unwrap();
            }
        }
        // a copy made by compose shares records
        shard
            .compose(
                "b",
                "copy",
                &[("b".into(), "k004".into())],
                Bytes::new(),
                Expect::Any,
                false,
            )
            .await
            .unwrap();
        let before = shard.stats();
        let cs = shard.compact(0.5).await.unwrap();
        let after = shard.stats();
        eprintln!("{before:?}\n{cs:?}\n{after:?}");
        assert!(cs.volumes_compacted > 0);
        assert!(
            after.disk_bytes < before.disk_bytes / 2,
            "{} -> {}",
            before.disk_bytes,
            after.disk_bytes
        );
        assert_eq!(after.objects, before.objects);
        for i in (0..200u64).step_by(4) {
            let o = shard.get("b", &format!("k{i:03}")).unwrap();
            assert_eq!(read_all(&shard, &o).await, gen(i, 6000 + i as usize));
        }
        assert_eq!(
            read_all(&shard, &shard.get("b", "copy").unwrap()).await,
            gen(4, 6004)
        );
        // the held handle points into an unlinked volume and still reads
        assert_eq!(read_all(&shard, &held).await, gen(1, 6001));
    });
    rt(async {
        let shard = Shard::open(dir.path(), c).await.unwrap();
        for i in (0..200u64).step_by(4) {
            let o = shard.get("b", &format!("k{i:03}")).unwrap();
            assert_eq!(read_all(&shard, &o).await, gen(i, 6000 + i as usize));
        }
        assert_eq!(shard.stats().objects, 51);
    });
}

#[test]
fn abandoned_writer_leaves_nothing_visible() {
    let dir = tempfile::tempdir().unwrap();
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        put(&shard, "b", "kept", b"kept", 4).await.unwrap();
        let mut w = shard.put("b", "ghost", 1 << 20).unwrap();
        w.write(Bytes::from(gen(1, 300_000))).await.unwrap();
        drop(w);
        assert!(shard.get("b", "ghost").is_none());
        assert_eq!(shard.list("b", "", None, None, 10).len(), 1);
        // Its 1 MiB span went back: rolled back (tail) or punched (a write was in flight).
        assert!(shard.wait_punches(std::time::Duration::from_secs(5)));
        let st = shard.stats();
        assert!(
            st.garbage_bytes == 0 || st.punched_bytes >= 900 << 10,
            "abandoned span neither rolled back nor punched: {st:?}"
        );
    });
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        assert!(shard.get("b", "ghost").is_none());
        assert_eq!(
            read_all(&shard, &shard.get("b", "kept").unwrap()).await,
            b"kept"
        );
    });
}

#[test]
fn abandoned_span_at_the_tail_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    // Streamed records only (a packed record's batch leaves its aligned write's tail unused).
    let c = EngineConfig {
        pack_max_bytes: 0,
        ..cfg()
    };
    rt(async {
        let shard = Shard::open(dir.path(), c).await.unwrap();
        put(&shard, "b", "kept", b"kept", 4).await.unwrap();
        let before = shard.stats().disk_bytes;
        for i in 0..20 {
            // Nothing written yet (no write in flight): the tail is rolled back at once.
            let w = shard.put("b", &format!("ghost{i}"), 64 << 20).unwrap();
            assert!(shard.stats().disk_bytes > before + (64 << 20) - 1);
            drop(w);
            assert_eq!(shard.stats().disk_bytes, before, "round {i}");
        }
        let o = put(&shard, "b", "next", &gen(7, 5000), 999).await.unwrap();
        assert_eq!(read_all(&shard, &o).await, gen(7, 5000));
        assert_eq!(shard.stats().garbage_bytes, 0);
    });
}

#[test]
fn abandoned_span_in_the_middle_is_punched() {
    let dir = tempfile::tempdir().unwrap();
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        let mut a = shard.put("b", "a", 8 << 20).unwrap();
        let mut later = shard.put("b", "later", 4).unwrap(); // reserved after a: a is not the tail
        a.write(Bytes::from(gen(2, 100_000))).await.unwrap();
        drop(a);
        assert!(shard.wait_punches(std::time::Duration::from_secs(5)));
        assert!(
            shard.stats().punched_bytes >= 7 << 20,
            "{:?}",
            shard.stats()
        );
        later.write(Bytes::from_static(b"late")).await.unwrap();
        later
            .finish(Bytes::from_static(b"m"), Expect::Any)
            .await
            .unwrap();
        let o = shard.get("b", "later").unwrap();
        assert_eq!(read_all(&shard, &o).await, b"late");
    });
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        assert!(shard.get("b", "a").is_none());
        let o = shard.get("b", "later").unwrap();
        assert_eq!(read_all(&shard, &o).await, b"late");
    });
}

#[test]
fn cache_hits_and_invalidation() {
    let dir = tempfile::tempdir().unwrap();
    rt(async {
        let c = EngineConfig {
            cache_bytes: 1 << 20,
            cache_max_object_bytes: 64 * 1024,
            ..cfg()
        };
        let shard = Shard::open(dir.path(), c).await.unwrap();
        let o = put(&shard, "b", "k", &gen(1, 4096), 4096).await.unwrap();
        assert_eq!(read_all(&shard, &o).await, gen(1, 4096));
        assert_eq!(
            &shard.read(&o, 10, 20).await.unwrap()[..],
            &gen(1, 4096)[10..30]
        );
        let st = shard.stats();
        assert_eq!((st.cache_misses, st.cache_hits), (1, 1));
        let o2 = put(&shard, "b", "k", &gen(2, 4096), 4096).await.unwrap();
        assert_eq!(read_all(&shard, &o2).await, gen(2, 4096));
        assert_eq!(shard.stats().cache_misses, 2);
        let big = put(&shard, "b", "big", &gen(3, 100_000), 65536)
            .await
            .unwrap();
        assert_eq!(read_all(&shard, &big).await, gen(3, 100_000));
        assert_eq!(
            shard.stats().cache_misses,
            2,
            "objects over cache_max_object_bytes bypass the cache"
        );
    });
}

#[test]
fn ranged_reads_of_big_objects_use_the_block_cache() {
    let dir = tempfile::tempdir().unwrap();
    rt(async {
        let c = EngineConfig {
            cache_bytes: 4 << 20,
            cache_max_object_bytes: 64 * 1024,
            ..cfg()
        };
        let shard = Shard::open(dir.path(), c).await.unwrap();
        // a two-part object: extent 0 is 1 MiB + 5 bytes, extent 1 is 300,000 bytes
        let p0 = gen(7, (1 << 20) + 5);
        let p1 = gen(8, 300_000);
        put(&shard, "mp", "p0", &p0, 65536).await.unwrap();
        put(&shard, "mp", "p1", &p1, 65536).await.unwrap();
        let parts = [
            ("mp".to_string(), "p0".to_string()),
            ("mp".into(), "p1".into()),
        ];
        let o = shard
            .compose("b", "big", &parts, Bytes::new(), Expect::Any, true)
            .await
            .unwrap();
        let want = [p0.clone(), p1.clone()].concat();
        let ranges = [
            (0u64, 4096u64),            // first block of extent 0
            (16_380, 10),               // straddles blocks 0 and 1
            (500_000, 4096),            // middle
            ((1 << 20) - 100, 200),     // across the extent boundary
            ((1 << 20) + 5, 4096),      // first block of extent 1
            (want.len() as u64 - 8, 8), // footer
        ];
        let mut misses = 0;
        for &(off, len) in &ranges {
            let got = shard.read(&o, off, len).await.unwrap();
            assert_eq!(
                &got[..],
                &want[off as usize..(off + len) as usize],
                "cold {off}+{len}"
            );
            misses = shard.stats().cache_misses;
        }
        let hits_before = shard.stats().cache_hits;
        for &(off, len) in &ranges {
            let got = shard.read(&o, off, len).await.unwrap();
            assert_eq!(
                &got[..],
                &want[off as usize..(off + len) as usize],
                "warm {off}+{len}"
            );
        }
        let st = shard.stats();
        assert_eq!(
            st.cache_misses, misses,
            "the second pass reads nothing from disk"
        );
        // one hit per extent touched: the boundary range touches two
        assert_eq!(st.cache_hits - hits_before, ranges.len() as u64 + 1);
        // a long read bypasses the block cache and still returns the right bytes
        let got = shard.read(&o, 100, 900_000).await.unwrap();
        assert_eq!(&got[..], &want[100..900_100]);
        assert_eq!(shard.stats().cache_misses, misses);
        // an overwrite is a new version: nothing of the old one is served
        let o2 = put(&shard, "b", "big", &gen(9, 200_000), 65536)
            .await
            .unwrap();
        assert_eq!(
            &shard.read(&o2, 0, 4096).await.unwrap()[..],
            &gen(9, 200_000)[..4096]
        );
    });
}

#[test]
fn scrub_clean_shard() {
    let dir = tempfile::tempdir().unwrap();
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        for i in 0..20u64 {
            put(&shard, "b", &format!("k{i}"), &gen(i, 50_000), 50_000)
                .await
                .unwrap();
        }
        let t = std::time::Instant::now();
        let s = shard.scrub(2_000_000).await.unwrap();
        assert_eq!(
            (s.objects_checked, s.bytes_checked, s.corrupt_objects),
            (20, 1_000_000, 0)
        );
        assert!(
            t.elapsed() >= std::time::Duration::from_millis(400),
            "rate limit honoured"
        );
    });
}

#[test]
fn crash_between_snapshot_rename_and_journal_trim() {
    // The snapshot records the last journal lsn it covers; replaying an untrimmed journal on
    // top of it must skip those entries (a Compose with remove_sources would otherwise fail).
    let dir = tempfile::tempdir().unwrap();
    let jpath = dir.path().join("journal.log");
    let saved = rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        for i in 0..5u64 {
            put(&shard, "mp", &format!("p{i}"), &gen(i, 20_000), 20_000)
                .await
                .unwrap();
        }
        let parts: Vec<(String, String)> = (0..5)
            .map(|i| ("mp".to_string(), format!("p{i}")))
            .collect();
        shard
            .compose("b", "obj", &parts, Bytes::new(), Expect::Any, true)
            .await
            .unwrap();
        put(&shard, "b", "x", b"x", 1).await.unwrap();
        shard.delete("b", "x", Expect::Any).await.unwrap();
        let saved = std::fs::read(&jpath).unwrap();
        shard.checkpoint().await.unwrap();
        saved
    });
    let want: Vec<u8> = (0..5u64).flat_map(|i| gen(i, 20_000)).collect();
    // Crash before the trim: the old journal is still there next to the new snapshot.
    std::fs::write(&jpath, &saved).unwrap();
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        assert_eq!(shard.stats().objects, 1);
        assert_eq!(
            read_all(&shard, &shard.get("b", "obj").unwrap()).await,
            want
        );
    });
    // And with the snapshot unreadable, the whole journal rebuilds the same state.
    std::fs::write(&jpath, &saved).unwrap();
    flip_byte(&dir.path().join("index.snap"), 30);
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        assert_eq!(shard.stats().objects, 1);
        assert!(!shard.has_any("mp"));
        assert!(shard.get("b", "x").is_none());
        assert_eq!(
            read_all(&shard, &shard.get("b", "obj").unwrap()).await,
            want
        );
    });
}

#[test]
fn second_open_of_same_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    rt(async {
        let a = Shard::open(dir.path(), cfg()).await.unwrap();
        assert!(Shard::open(dir.path(), cfg()).await.is_err());
        drop(a);
        Shard::open(dir.path(), cfg()).await.unwrap();
    });
}

#[test]
fn compose_with_empty_parts_reads_across_them() {
    let dir = tempfile::tempdir().unwrap();
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        put(&shard, "mp", "a", &gen(1, 5000), 5000).await.unwrap();
        put(&shard, "mp", "empty", b"", 1).await.unwrap();
        put(&shard, "mp", "c", &gen(3, 7000), 7000).await.unwrap();
        let srcs: Vec<(String, String)> = ["empty", "a", "empty", "c", "empty"]
            .iter()
            .map(|k| ("mp".to_string(), k.to_string()))
            .collect();
        let o = shard
            .compose("b", "o", &srcs, Bytes::new(), Expect::Any, false)
            .await
            .unwrap();
        let mut want = gen(1, 5000);
        want.extend(gen(3, 7000));
        assert_eq!(read_all(&shard, &o).await, want);
        assert_eq!(
            &shard.read(&o, 4990, 20).await.unwrap()[..],
            &want[4990..5010]
        );
        assert_eq!(o.part_sizes().collect::<Vec<_>>(), [0, 5000, 0, 7000, 0]);
    });
}

#[test]
fn compaction_and_scrub_walk_many_objects_in_chunks() {
    // More objects than one index-walk chunk (4096), so the chunked walk and its cursor are used.
    // Streamed (aligned) records, so 6000 small objects fill more than one volume
    // (io/tests/packed.rs compacts packed ones).
    let dir = tempfile::tempdir().unwrap();
    let c = EngineConfig {
        volume_target_bytes: 4 << 20,
        pack_max_bytes: 0,
        ..cfg()
    };
    rt(async {
        let shard = Shard::open(dir.path(), c).await.unwrap();
        let n = 6000u64;
        let mut handles = Vec::new();
        for t in 0..64u64 {
            let s = shard.clone();
            handles.push(monoio::spawn(async move {
                let mut i = t;
                while i < n {
                    // several namespaces so the walk crosses namespace boundaries mid-chunk
                    put(
                        &s,
                        &format!("ns{}", i % 3),
                        &format!("k{i:05}"),
                        &gen(i, 100),
                        100,
                    )
                    .await
                    .unwrap();
                    i += 64;
                }
            }));
        }
        for h in handles {
            h.await;
        }
        let mut handles = Vec::new();
        for t in 0..64u64 {
            let s = shard.clone();
            handles.push(monoio::spawn(async move {
                let mut i = 2 * t + 1;
                while i < n {
                    s.delete(&format!("ns{}", i % 3), &format!("k{i:05}"), Expect::Any)
                        .await
                        .unwrap();
                    i += 128;
                }
            }));
        }
        for h in handles {
            h.await;
        }
        let s = shard.scrub(0).await.unwrap();
        assert_eq!((s.objects_checked, s.corrupt_objects), (n / 2, 0));
        let before = shard.stats();
        let cs = shard.compact(0.3).await.unwrap();
        let after = shard.stats();
        assert!(
            cs.volumes_compacted > 0 && after.disk_bytes < before.disk_bytes,
            "{cs:?}"
        );
        for i in (0..n).filter(|i| i % 2 == 0) {
            let o = shard
                .get(&format!("ns{}", i % 3), &format!("k{i:05}"))
                .unwrap();
            assert_eq!(read_all(&shard, &o).await, gen(i, 100));
        }
    });
}

/// Bytes the filesystem has allocated to a file (st_blocks), not its logical size.
fn allocated_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

#[test]
fn dead_records_are_punched_only_after_readers_let_go() {
    let dir = tempfile::tempdir().unwrap();
    const N: u64 = 8;
    const SIZE: usize = 256 * 1024;
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        for i in 0..N {
            put(&shard, "b", &format!("k{i}"), &gen(i, SIZE), 65536)
                .await
                .unwrap();
        }
        let vol = volume_files(dir.path()).pop().unwrap();
        // An in-flight reader holds k1 while it is deleted and more commits happen.
        let held = shard.get("b", "k1").unwrap();
        shard.delete("b", "k1", Expect::Any).await.unwrap();
        put(&shard, "b", "later", b"x", 1).await.unwrap();
        shard.compact(0.99).await.unwrap();
        assert_eq!(punched(&shard), 0, "punched under a reader");
        assert_eq!(read_all(&shard, &held).await, gen(1, SIZE));
        drop(held);
        let before = allocated_bytes(&vol);
        // The next commit processes the drop.
        shard.delete("b", "absent", Expect::Any).await.unwrap();
        let punched_once = punched(&shard);
        assert!(punched_once >= SIZE as u64, "punched {punched_once}");
        // Deleting more (no reader) punches at the commit that kills them.
        for i in [2u64, 3] {
            shard
                .delete("b", &format!("k{i}"), Expect::Any)
                .await
                .unwrap();
        }
        // (each DELETE hands the removed object to its caller: its drop is processed by the
        // next commit, PUT reservation or compaction pass)
        shard.delete("b", "absent", Expect::Any).await.unwrap();
        assert!(punched(&shard) >= punched_once + 2 * SIZE as u64);
        let after = allocated_bytes(&vol);
        assert!(
            after + 3 * SIZE as u64 <= before + SIZE as u64,
            "allocated {before} -> {after}"
        );
        for i in [0u64, 4, 5, 6, 7] {
            let o = shard.get("b", &format!("k{i}")).unwrap();
            assert_eq!(read_all(&shard, &o).await, gen(i, SIZE));
        }
        assert_eq!(shard.scrub(0).await.unwrap().corrupt_objects, 0);
        // Crash (no close): replay meets the punched records only as dead ones.
    });
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        assert!(shard.get("b", "k1").is_none());
        for i in [0u64, 4, 5, 6, 7] {
            let o = shard.get("b", &format!("k{i}")).unwrap();
            assert_eq!(read_all(&shard, &o).await, gen(i, SIZE));
        }
        let s = shard.scrub(0).await.unwrap();
        assert_eq!((s.objects_checked, s.corrupt_objects), (6, 0));
        shard.compact(0.0).await.unwrap();
        shard.close().await.unwrap();
    });
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        assert_eq!(shard.stats().objects, 6);
        assert_eq!(shard.scrub(0).await.unwrap().corrupt_objects, 0);
    });
}

#[test]
fn composed_records_are_punched_only_when_no_object_references_them() {
    let dir = tempfile::tempdir().unwrap();
    const SIZE: usize = 200 * 1024;
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        let mut want = Vec::new();
        let mut parts = Vec::new();
        for i in 0..3u64 {
            let d = gen(50 + i, SIZE);
            want.extend_from_slice(&d);
            put(&shard, "mp", &format!("p{i}"), &d, 65536)
                .await
                .unwrap();
            parts.push(("mp".to_string(), format!("p{i}")));
        }
        // Multipart complete: the parts go, their records now belong to "whole".
        shard
            .compose("b", "whole", &parts, Bytes::new(), Expect::Any, true)
            .await
            .unwrap();
        // A copy sharing the same records, then the original goes.
        shard
            .compose(
                "b",
                "copy",
                &[("b".into(), "whole".into())],
                Bytes::new(),
                Expect::Any,
                false,
            )
            .await
            .unwrap();
        shard.delete("b", "whole", Expect::Any).await.unwrap();
        shard.compact(0.99).await.unwrap();
        assert_eq!(punched(&shard), 0);
        let c = shard.get("b", "copy").unwrap();
        assert_eq!(read_all(&shard, &c).await, want);
        drop(c);
        shard.checkpoint().await.unwrap();
        shard.delete("b", "copy", Expect::Any).await.unwrap();
        shard.compact(0.99).await.unwrap();
        assert!(punched(&shard) >= 3 * SIZE as u64 - 3 * 8192);
        assert_eq!(shard.stats().objects, 0);
    });
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        assert_eq!(shard.stats().objects, 0);
    });
}

/// Bytes punched so far, once the punches queued so far are done (they run on a worker thread).
fn punched(shard: &bale_io::Shard) -> u64 {
    assert!(
        shard.wait_punches(std::time::Duration::from_secs(10)),
        "hole punches still queued after 10 s"
    );
    shard.stats().punched_bytes
}

/// Metadata the index keeps as templates (ADR 21) comes back byte-exact from `get`, `list`,
/// journal replay and the snapshot, beside metadata kept verbatim; objects of several checksum
/// blocks keep their CRC table after the packed run.
#[test]
fn metadata_templates_round_trip() {
    fn meta_of(i: usize) -> Vec<u8> {
        let hex: String = gen(i as u64, 16)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        match i % 4 {
            // Server-like: tags, a hex digest, a content type.
            0 => [
                &b"\x01\x01\x20\x00"[..],
                hex.as_bytes(),
                b"\x02\x13\x00binary/octet-stream",
            ]
            .concat(),
            // Multipart-like digest "hex-N", odd run.
            1 => format!("etag={}-{i}", &hex[..31]).into_bytes(),
            // User metadata: a long template, kept verbatim.
            2 => [hex.as_bytes(), &[b'u'; 80][..]].concat(),
            // No run at all.
            _ => format!("plain {i}").into_bytes(),
        }
    }
    // Every kind of metadata with every size: no data, one block, several blocks.
    let sizes = [0usize, 1000, 40_000, 100_000];
    let dir = tempfile::tempdir().unwrap();
    let check = |shard: Rc<Shard>, n: usize| async move {
        for i in 0..n {
            let key = format!("k{i:03}");
            let o = shard.get("b", &key).unwrap();
            assert_eq!(&*o.meta, &meta_of(i)[..], "meta of {key}");
            assert_eq!(
                read_all(&shard, &o).await,
                gen(i as u64, sizes[(i / 4) % 4])
            );
        }
        let listed = shard.list("b", "", None, None, 1000);
        assert_eq!(listed.len(), n);
        for (i, it) in listed.iter().enumerate() {
            let ListItem::Object { obj, .. } = it else {
                panic!("object")
            };
            assert_eq!(&*obj.meta, &meta_of(i)[..]);
        }
    };
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        for i in 0..40 {
            let key = format!("k{i:03}");
            let data = gen(i as u64, sizes[(i / 4) % 4]);
            let mut w = shard.put("b", &key, data.len() as u64).unwrap();
            w.write(Bytes::from(data)).await.unwrap();
            let o = w
                .finish(Bytes::from(meta_of(i)), Expect::Any)
                .await
                .unwrap();
            assert_eq!(&*o.meta, &meta_of(i)[..]);
        }
        // Overwrite and delete some: their templates are released.
        for i in 0..8 {
            shard
                .delete("b", &format!("k{:03}", 32 + i), Expect::Any)
                .await
                .unwrap();
        }
        check(shard.clone(), 32).await;
    });
    rt(async {
        // Journal replay (no close above).
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        check(shard.clone(), 32).await;
        shard.close().await.unwrap();
    });
    rt(async {
        // From the snapshot.
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        check(shard.clone(), 32).await;
        shard.close().await.unwrap();
    });
}

/// A process killed after its first volume was created but before its first journal commit
/// (a PUT streaming its body) leaves a volume and an empty journal. The directory started with
/// an empty snapshot, so the next open is not mistaken for one whose snapshot was lost after a
/// checkpoint emptied the journal (which must refuse): it opens, empty.
#[test]
fn killed_before_the_first_commit_reopens_empty() {
    let dir = tempfile::tempdir().unwrap();
    assert!(!dir.path().join("index.snap").exists());
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        assert!(dir.path().join("index.snap").exists(), "no first snapshot");
        let body = gen(7, 1 << 20);
        let mut w = shard.put("b", "never-committed", 2 << 20).unwrap();
        w.write(Bytes::from(body)).await.unwrap();
        // Dropped unfinished, then the shard without a checkpoint: nothing reaches the
        // journal, as when the process is killed here.
        drop(w);
        drop(shard);
    });
    assert!(
        !volume_files(dir.path()).is_empty(),
        "the PUT created no volume"
    );
    let journal_bytes = std::fs::metadata(dir.path().join("journal.log"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert_eq!(journal_bytes, 0, "something was committed");
    rt(async {
        let shard = Shard::open(dir.path(), cfg()).await.unwrap();
        assert_eq!(shard.stats().objects, 0);
        assert!(shard.get("b", "never-committed").is_none());
    });
    // A snapshot lost after that (the journal still empty, volumes present) is still refused.
    std::fs::remove_file(dir.path().join("index.snap")).unwrap();
    std::fs::write(dir.path().join("vol-00000099.dat"), vec![0u8; 4096]).unwrap();
    rt(async {
        match Shard::open(dir.path(), cfg()).await {
            Err(Error::Corrupt { context }) => assert!(context.contains("refusing to start")),
            Err(e) => panic!("unexpected error: {e}"),
            Ok(_) => panic!("opened volumes with neither snapshot nor journal"),
        }
    });
}
