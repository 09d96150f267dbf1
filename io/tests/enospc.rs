//! ENOSPC: a full filesystem turns writes into `Error::NoSpace` while reads keep working, and
//! space freed by deletes makes writes work again (ADR 5: reserve + punching dead records).
//! Needs root and loop devices (mounts a 16 MiB ext4 image); skips itself otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;

use bale_io::{EngineConfig, Error, Expect, Shard};
use bytes::Bytes;

struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn mount_small_ext4(dir: &Path) -> Option<Mount> {
    let img = dir.join("fs.img");
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).ok()?;
    std::fs::File::create(&img).ok()?.set_len(16 << 20).ok()?;
    let ok = |c: &mut Command| c.output().map(|o| o.status.success()).unwrap_or(false);
    if !ok(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&img)) {
        return None;
    }
    if !ok(Command::new("mount")
        .args(["-o", "loop"])
        .arg(&img)
        .arg(&mnt))
    {
        return None;
    }
    Some(Mount(mnt))
}

#[test]
fn full_disk_is_nospace_and_reads_continue() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(m) = mount_small_ext4(tmp.path()) else {
        eprintln!("skipping: cannot mount a loop ext4 here (needs root)");
        return;
    };
    let dir = m.0.join("shard");
    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .unwrap()
        .block_on(async {
            // No reserve: the filesystem's own ENOSPC (fallocate, write) is what refuses.
            let no_reserve = EngineConfig {
                reserve_bytes: 0,
                ..EngineConfig::default()
            };
            let shard = Shard::open(&dir, no_reserve).await.unwrap();
            let body = |i: u64| Bytes::from(vec![i as u8; 1 << 20]);
            let mut stored = 0u64;
            let err = loop {
                let r = async {
                    let mut w = shard.put("b", &format!("k{stored}"), 1 << 20)?;
                    w.write(body(stored)).await?;
                    w.finish(Bytes::new(), Expect::Any).await
                }
                .await;
                match r {
                    Ok(_) => stored += 1,
                    Err(e) => break e,
                }
                assert!(stored < 64, "16 MiB filesystem never filled up");
            };
            assert!(matches!(err, Error::NoSpace { .. }), "got {err:?}");
            assert!(stored >= 5, "only {stored} objects fit");
            for i in 0..stored {
                let o = shard.get("b", &format!("k{i}")).unwrap();
                let got = shard.read(&o, 0, o.size).await.unwrap();
                assert_eq!(got, body(i));
            }
            // Still full: another put fails the same way; reads still work.
            let again = async {
                let mut w = shard.put("b", "again", 1 << 20)?;
                w.write(body(9)).await?;
                w.finish(Bytes::new(), Expect::Any).await
            }
            .await;
            assert!(matches!(again, Err(Error::NoSpace { .. })), "got {again:?}");
            let o = shard.get("b", "k0").unwrap();
            assert_eq!(shard.read(&o, 0, 10).await.unwrap().len(), 10);
            drop(shard);
            // Everything acknowledged survives a reopen on the full disk.
            let shard = Shard::open(&dir, EngineConfig::default()).await.unwrap();
            assert_eq!(shard.stats().objects, stored);
        });
}

/// Fill, refuse, delete on the full disk, get the space back, write again, checkpoint, reopen.
#[test]
fn full_disk_deletes_free_space_and_writes_work_again() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(m) = mount_small_ext4(tmp.path()) else {
        eprintln!("skipping: cannot mount a loop ext4 here (needs root)");
        return;
    };
    let dir = m.0.join("shard");
    let cfg = EngineConfig {
        reserve_bytes: 2 << 20,
        ..EngineConfig::default()
    };
    let body = |i: u64| Bytes::from(vec![(i % 251) as u8; 1 << 20]);
    async fn put1(shard: &std::rc::Rc<Shard>, key: &str, b: Bytes) -> bale_io::Result<()> {
        let mut w = shard.put("b", key, b.len() as u64)?;
        w.write(b).await?;
        w.finish(Bytes::new(), Expect::Any).await.map(|_| ())
    }
    let rt = || {
        monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
    };
    let kept: Vec<u64> = rt().block_on(async {
        let shard = Shard::open(&dir, cfg.clone()).await.unwrap();
        let mut stored = 0u64;
        let err = loop {
            match put1(&shard, &format!("k{stored}"), body(stored)).await {
                Ok(()) => stored += 1,
                Err(e) => break e,
            }
            assert!(stored < 64, "16 MiB filesystem never filled up");
        };
        // Refused by the reserve check, not by a failed write.
        match &err {
            Error::NoSpace { context } => assert!(context.contains("reserve"), "{context}"),
            e => panic!("got {e:?}"),
        }
        assert!(stored >= 5, "only {stored} objects fit");
        assert!(shard.stats().reserve_refusals >= 1);
        for i in 0..stored {
            let o = shard.get("b", &format!("k{i}")).unwrap();
            assert_eq!(shard.read(&o, 0, o.size).await.unwrap(), body(i));
        }
        // Every DELETE succeeds on the full disk (journal appends go into the reserve)...
        let kept: Vec<u64> = (0..stored).filter(|i| i % 3 == 0).collect();
        for i in (0..stored).filter(|i| i % 3 != 0) {
            shard
                .delete("b", &format!("k{i}"), Expect::Any)
                .await
                .unwrap_or_else(|e| panic!("delete k{i} on a full disk: {e}"));
        }
        // ... and so does a checkpoint.
        shard.checkpoint().await.unwrap();
        let freed = punched(&shard);
        assert!(
            freed >= (stored - kept.len() as u64 - 1) << 20,
            "punched {freed} bytes"
        );
        // The space is back: as many 1 MiB PUTs as were deleted, less one, now fit.
        let n_new = stored - kept.len() as u64 - 1;
        for j in 0..n_new {
            put1(&shard, &format!("new{j}"), body(1000 + j))
                .await
                .unwrap_or_else(|e| panic!("PUT {j} of {n_new} after deletes: {e}"));
        }
        eprintln!(
            "full disk: {stored} x 1 MiB stored, then {err}; deleted {}, punched {freed} bytes, \
             then {n_new} x 1 MiB PUTs fit again",
            stored - kept.len() as u64
        );
        for i in &kept {
            let o = shard.get("b", &format!("k{i}")).unwrap();
            assert_eq!(shard.read(&o, 0, o.size).await.unwrap(), body(*i));
        }
        assert_eq!(shard.scrub(0).await.unwrap().corrupt_objects, 0);
        shard.close().await.unwrap();
        kept.into_iter()
            .chain((0..n_new).map(|j| 1_000_000 + j))
            .collect()
    });
    rt().block_on(async {
        let shard = Shard::open(&dir, cfg).await.unwrap();
        assert_eq!(shard.stats().objects, kept.len() as u64);
        for i in kept {
            let (key, b) = if i >= 1_000_000 {
                (format!("new{}", i - 1_000_000), body(1000 + i - 1_000_000))
            } else {
                (format!("k{i}"), body(i))
            };
            let o = shard.get("b", &key).unwrap();
            assert_eq!(shard.read(&o, 0, o.size).await.unwrap(), b);
        }
        assert_eq!(shard.scrub(0).await.unwrap().corrupt_objects, 0);
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
