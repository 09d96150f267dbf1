//! ENOSPC: a full filesystem turns writes into `Error::NoSpace` while reads keep working.
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
            let shard = Shard::open(&dir, EngineConfig::default()).await.unwrap();
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
