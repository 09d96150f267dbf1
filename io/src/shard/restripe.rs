//! Compaction of stripes (ADR 19 step 8): a stripe whose members are mostly garbage has its
//! live records moved into the shard's open volume (the normal compaction path: written to
//! the m+1 copies, relocations journaled and acknowledged like any compaction move), and once
//! nothing can name its members any more the stripe is deleted: its manifest from every copy
//! directory first (each directory fsynced), then its member and parity files.
//!
//! Crash rule (io/FORMAT.md, "Stripes"): a manifest in any copy directory means the stripe
//! exists (open copies it back to the others and every file of the stripe is still there,
//! since files go only after every manifest is gone); its records are then simply dead, and
//! the next pass drops it without moving anything. With no manifest left, the files that
//! remain are garbage open removes: parity and non-copy members by `stripe::reconcile`, a
//! member in a copy directory as a volume nothing names (`scan_volumes`,
//! `give_back_unnamed_space`). The checkpoint before the first manifest goes makes sure no
//! journal entry replay would resolve names a member.

use std::path::PathBuf;
use std::rc::Rc;

use super::stripe::{manifest_path, Manifest, StripeFiles, StripeLayout, Stripes};
use super::{CompactStats, Shard};
use crate::error::{Error, Result};

fn other(e: Error) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Removes `manifest`'s stripe from disk (blocking, on the shard's worker): the manifest from
/// every live copy directory, each directory fsynced, and only then the members and parity
/// files (directories fsynced again). Files already gone are fine (a retry after a crash).
pub(crate) fn remove_stripe_files(layout: &StripeLayout, manifest: &Manifest) -> Result<()> {
    let fsync = |d: &PathBuf| {
        crate::sys::fsync_dir(d).map_err(|e| Error::io(format!("fsync dir {}", d.display()), e))
    };
    let remove = |p: &PathBuf| match std::fs::remove_file(p) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(format!("remove {}", p.display()), e)),
    };
    for d in layout.dirs[..=layout.m].iter().flatten() {
        if remove(&manifest_path(d, manifest.stripe_id))? {
            fsync(d)?;
        }
    }
    for i in 0..layout.k + layout.m {
        if let Some(d) = &layout.dirs[manifest.position(i)] {
            if remove(&manifest.file_path(d, i))? {
                fsync(d)?;
            }
        }
    }
    Ok(())
}

impl Shard {
    /// The second half of a compaction pass with erasure coding: stripes whose garbage
    /// (1 - live / member bytes) exceeds `min_garbage_ratio`, emptiest first, get their live
    /// records moved out; then every one of them nothing can name any more is deleted.
    /// Skipped while a stripe directory is missing (a copy directory that comes back must not
    /// hold the manifest of a stripe deleted meanwhile), while stripes are being encoded (they
    /// share the flag), and for stripes with a lost or failed file (their members are read by
    /// compaction with plain reads; they are compacted after the rebuild).
    pub(super) async fn compact_stripes(
        &self,
        min_garbage_ratio: f64,
        stats: &mut CompactStats,
    ) -> Result<()> {
        let Some(st) = &self.stripes else {
            return Ok(());
        };
        if st.layout.dirs.iter().any(Option::is_none) || st.encoding.replace(true) {
            return Ok(());
        }
        let r = self
            .compact_stripes_inner(st, min_garbage_ratio, stats)
            .await;
        st.encoding.set(false);
        r
    }

    async fn compact_stripes_inner(
        &self,
        st: &Stripes,
        min_garbage_ratio: f64,
        stats: &mut CompactStats,
    ) -> Result<()> {
        let victims = self.pick_stripes(st, min_garbage_ratio);
        if victims.is_empty() {
            return Ok(());
        }
        let ids: Vec<u32> = victims
            .iter()
            .flat_map(|f| f.manifest.members.iter().map(|(id, _)| *id))
            .collect();
        let mut refs_by_volume = self.records_referenced(&ids).await;
        let mut processed = Vec::with_capacity(victims.len());
        'stripes: for f in victims {
            for (id, _) in &f.manifest.members {
                if self.closed.get() {
                    return Err(Error::Closed);
                }
                let by_record = refs_by_volume.remove(id).unwrap_or_default();
                if !self.move_records(by_record, stats).await? {
                    break 'stripes;
                }
            }
            processed.push(f);
        }
        drop(refs_by_volume);
        self.drop_dead_stripes(st, &processed, stats).await
    }

    /// Committed stripes (every file present) with more garbage than `min_garbage_ratio`,
    /// the least live bytes first (a wholly dead stripe is only deleted: nothing to copy).
    fn pick_stripes(&self, st: &Stripes, min_garbage_ratio: f64) -> Vec<Rc<StripeFiles>> {
        let vols = self.vols.borrow();
        let mut picked: Vec<(u64, Rc<StripeFiles>)> = st
            .all
            .borrow()
            .iter()
            .filter(|f| !f.failed.iter().any(|c| c.get()))
            .filter_map(|f| {
                let (mut live, mut total) = (0u64, 0u64);
                for (id, _) in &f.manifest.members {
                    let v = vols.map.get(id)?;
                    if v.writers > 0 {
                        return None;
                    }
                    live += v.live_bytes;
                    total += v.end_bytes;
                }
                let garbage = if total == 0 {
                    1.0
                } else {
                    1.0 - live as f64 / total as f64
                };
                (garbage > min_garbage_ratio || live == 0).then(|| (live, f.clone()))
            })
            .collect();
        picked.sort_by_key(|(live, f)| (*live, f.manifest.stripe_id));
        picked.into_iter().map(|(_, f)| f).collect()
    }

    /// Whether nothing can name `f`'s members any more: no index object references a record
    /// of them, no write is reserved in them, and no `Object` handed out holds one of their
    /// files (an `Extent` holds its `VolFile`: the count is exact, like the epochs that hold
    /// dead records for readers, ADR 17).
    fn stripe_unreferenced(&self, f: &StripeFiles) -> bool {
        let vols = self.vols.borrow();
        f.manifest.members.iter().all(|(id, _)| {
            vols.map.get(id).is_some_and(|v| {
                v.records.is_empty() && v.writers == 0 && Rc::strong_count(&v.file) == 1
            })
        })
    }

    /// Deletes the processed stripes nothing names any more. Checkpoints first, so no journal
    /// entry (which replay resolves against its volume) names a member; a stripe still held
    /// by a reader is left for the next pass (it is then wholly dead: only deleted).
    async fn drop_dead_stripes(
        &self,
        st: &Stripes,
        processed: &[Rc<StripeFiles>],
        stats: &mut CompactStats,
    ) -> Result<()> {
        if !processed.iter().any(|f| self.stripe_unreferenced(f)) {
            return Ok(());
        }
        self.checkpoint().await?;
        for f in processed {
            if !self.stripe_unreferenced(f) {
                tracing::debug!(dir = %self.dir.display(), stripe = f.manifest.stripe_id, "stripe still named by a reader or a record: deleted at a later pass");
                continue;
            }
            // Out of every read path first: the counters, the scrubber (it skips a stripe
            // with a failed file; a verify queued before runs before the removal below, on
            // the same worker queue), then the members' volume states (their files close:
            // nothing else holds them).
            for c in &f.failed {
                c.set(true);
            }
            st.all.borrow_mut().retain(|x| !Rc::ptr_eq(x, f));
            let mut member_bytes = 0u64;
            {
                let mut vols = self.vols.borrow_mut();
                for (id, _) in &f.manifest.members {
                    let v = vols.map.remove(id).expect("member registered");
                    member_bytes += v.end_bytes;
                }
            }
            let layout = st.layout.clone();
            let mf = f.manifest.clone();
            self.offload
                .call(move || remove_stripe_files(&layout, &mf).map_err(other))
                .await
                .map_err(|e| {
                    Error::io(
                        format!(
                            "delete stripe {} of {}",
                            f.manifest.stripe_id,
                            self.dir.display()
                        ),
                        e,
                    )
                })?;
            let parity_bytes = f.manifest.shard_bytes * st.layout.m as u64;
            stats.stripes_compacted += 1;
            stats.volumes_compacted += f.manifest.members.len() as u32;
            stats.bytes_reclaimed += member_bytes + parity_bytes;
            tracing::info!(
                dir = %self.dir.display(),
                stripe = f.manifest.stripe_id,
                member_bytes,
                parity_bytes,
                "stripe compacted: its live records moved to the open volume, its files deleted"
            );
        }
        Ok(())
    }
}
