//! Checkpoints: the committer, between batches, writes the whole index as a snapshot
//! (`index.snap`, on every copy: tmp file, fsync, rename, directory fsync) and then trims the
//! journal the snapshot now covers. Asked for by `Shard::checkpoint`, or due once the journal
//! grows past its bound (half the disk reserve when there is one).

use std::time::Instant;

use super::commit::Reply;
use super::compact::IndexCursor;
use super::{Shard, CHUNK_BYTES, JOURNAL_FILE, SNAP_FILE, SNAP_TMP_FILE};
use crate::error::{Error, Result};
use crate::format::{encode_snapshot_header, ExtentRec, SnapshotEncoder};
use crate::sys;

/// Checkpoint automatically once the journal grows past this.
/// (1M small entries are ~130 MB and replay in ~3.5 s on the build machine.)
const AUTO_CHECKPOINT_JOURNAL_BYTES: u64 = 64 << 20;
/// With a disk reserve, the journal is checkpointed once it passes half the reserve, but never
/// below this (so a tiny reserve does not checkpoint at every batch).
const MIN_AUTO_CHECKPOINT_JOURNAL_BYTES: u64 = 1 << 20;
const _: () = assert!(MIN_AUTO_CHECKPOINT_JOURNAL_BYTES <= AUTO_CHECKPOINT_JOURNAL_BYTES);

impl Shard {
    /// Checkpoint when asked to or when the journal is big; answer the checkpoint requests.
    pub(super) async fn checkpoint_after_batch(&self, checkpoints: Vec<Reply<()>>) {
        let journal_big = self
            .journal
            .borrow()
            .as_ref()
            .is_some_and(|j| j.len_bytes > self.auto_checkpoint_journal_bytes());
        if checkpoints.is_empty() && !journal_big {
            return;
        }
        let r = match self
            .do_checkpoint()
            .await
            .map_err(|e| self.copy_write_failed(e))
        {
            // A copy failed during the checkpoint and is now marked failed: the journal on the
            // live copies still holds every entry, so nothing is lost; the next start replays
            // it (and rebuilds the failed copy).
            Err(Error::Unprotected(why)) => {
                tracing::warn!(dir = %self.dir.display(), why = %why, "checkpoint skipped: a copy failed");
                Ok(())
            }
            r => r,
        };
        if let Err(e) = &r {
            tracing::error!(dir = %self.dir.display(), error = %e, "checkpoint failed");
        }
        for tx in checkpoints {
            let _ = tx.send(match &r {
                Ok(()) => Ok(()),
                Err(e) => Err(e.duplicate()),
            });
        }
    }

    /// Journal size past which the committer checkpoints: with a reserve, half of it, so the
    /// journal never eats the room a checkpoint needs.
    fn auto_checkpoint_journal_bytes(&self) -> u64 {
        if self.cfg.reserve_bytes == 0 {
            return AUTO_CHECKPOINT_JOURNAL_BYTES;
        }
        AUTO_CHECKPOINT_JOURNAL_BYTES
            .min((self.cfg.reserve_bytes / 2).max(MIN_AUTO_CHECKPOINT_JOURNAL_BYTES))
    }

    /// Write `index.snap` (tmp file, fsync, rename, fsync dir), then trim the journal. Runs in
    /// the committer, so the index does not change meanwhile.
    async fn do_checkpoint(&self) -> Result<()> {
        // A shard missing a copy changes nothing on the copies it has (the journal already
        // holds every entry): a copy that comes back stays consistent with them.
        if self.check_protected().is_err() {
            return Ok(());
        }
        let started = Instant::now();
        // Every copy's snapshot is written, synced and renamed into place before any copy's
        // journal is trimmed (recovery's journal reconciliation relies on that order).
        let dirs: Vec<&std::path::Path> = std::iter::once(self.dir.as_path())
            .chain(self.mirror_dirs.iter().map(|d| d.as_path()))
            .collect();
        let mut files = Vec::with_capacity(dirs.len());
        for d in &dirs {
            let tmp = d.join(SNAP_TMP_FILE);
            // Open (O_TRUNC), fsync, rename and the directory fsync all go through io_uring:
            // the core never waits in the kernel for them (ADR 10).
            let file = monoio::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)
                .await
                .map_err(|e| Error::io(format!("create {}", tmp.display()), e))?;
            files.push((file, tmp));
        }
        let (n_objects, snapshot_bytes) = self.write_snapshot(&files).await?;
        for ((file, tmp), d) in files.into_iter().zip(&dirs) {
            file.sync_all()
                .await
                .map_err(|e| Error::io(format!("fsync {}", tmp.display()), e))?;
            file.close()
                .await
                .map_err(|e| Error::io(format!("close {}", tmp.display()), e))?;
            let fin = d.join(SNAP_FILE);
            monoio::fs::rename(&tmp, &fin).await.map_err(|e| {
                Error::io(format!("rename {} -> {}", tmp.display(), fin.display()), e)
            })?;
        }
        self.sync_dir().await?;
        // The snapshot now covers every journal entry: trim the journal.
        self.trim_journal().await?;
        tracing::info!(dir = %self.dir.display(), objects = n_objects, snapshot_bytes, elapsed_ms = started.elapsed().as_millis() as u64, "checkpoint");
        Ok(())
    }

    /// Write the snapshot of the whole index to `file` in chunks; returns (objects, bytes).
    async fn write_snapshot(
        &self,
        files: &[(monoio::fs::File, std::path::PathBuf)],
    ) -> Result<(u64, u64)> {
        let applied_lsn = self
            .journal
            .borrow()
            .as_ref()
            .expect("journal open")
            .next_lsn
            - 1;
        let n_objects = self.n_objects.get();
        let mut buf = Vec::with_capacity(CHUNK_BYTES as usize + 64 * 1024);
        encode_snapshot_header(&mut buf, self.next_seq.get(), applied_lsn, n_objects);
        let mut crc = 0u32;
        let mut pos = 0u64;
        let mut cursor = IndexCursor::default();
        let mut enc = SnapshotEncoder::default();
        let mut written_objects = 0u64;
        loop {
            let done = cursor.step(self, |ns, k, o| {
                let recs: Vec<ExtentRec> = o.extents.iter().map(|e| e.to_rec()).collect();
                enc.object(&mut buf, ns, k, o.size, o.mtime_ms, o.seq, &o.meta, &recs);
                written_objects += 1;
                (buf.len() as u64) < CHUNK_BYTES
            });
            crc = crc32c::crc32c_append(crc, &buf);
            if done {
                buf.extend_from_slice(&crc.to_le_bytes());
            }
            let n = buf.len() as u64;
            for (file, tmp) in files {
                let (res, b) = file.write_all_at(buf, pos).await;
                res.map_err(|e| Error::io(format!("write {} at {pos}", tmp.display()), e))?;
                buf = b;
            }
            pos += n;
            buf.clear();
            if done {
                break;
            }
        }
        assert_eq!(
            written_objects, n_objects,
            "index changed during checkpoint"
        );
        assert!(
            pos <= self.snapshot_bytes.get(),
            "snapshot size accounting is off: {pos} bytes written, at most {} accounted",
            self.snapshot_bytes.get()
        );
        Ok((n_objects, pos))
    }

    /// Empty the journal (every entry is in a durable snapshot).
    async fn trim_journal(&self) -> Result<()> {
        let (jfile, mirrors) = {
            let j = self.journal.borrow();
            let j = j.as_ref().expect("journal open");
            (j.file.clone(), j.mirrors.clone())
        };
        let jpath = self.dir.join(JOURNAL_FILE);
        for (f, p) in
            std::iter::once((&*jfile, &jpath)).chain(mirrors.iter().map(|m| (&m.file, &m.path)))
        {
            let fd =
                crate::offload::dup(f).map_err(|e| Error::io(format!("dup {}", p.display()), e))?;
            self.offload
                .call(move || sys::ftruncate(&fd, 0))
                .await
                .map_err(|e| Error::io(format!("truncate {}", p.display()), e))?;
            f.sync_all()
                .await
                .map_err(|e| Error::io(format!("fsync {}", p.display()), e))?;
        }
        self.journal
            .borrow_mut()
            .as_mut()
            .expect("journal open")
            .len_bytes = 0;
        Ok(())
    }
}
