//! Striping (ADR 19): the shard's side of erasure coding while it serves — each pass groups
//! `k` sealed volumes, has the worker thread encode them into a stripe (`stripe::encode`),
//! switches the shard's reads to the members and drops the extra copies; the paced parity
//! scrub; and a member's read, degraded when its file is lost. The files themselves (manifest,
//! encode, rebuild, degraded read of a span) are `stripe`'s room.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use super::stripe::{
    drop_extra_copies, encode, member_volume, read_degraded, Manifest, StripeFiles, Stripes,
};
use super::Shard;

use crate::ec;
use crate::error::{Error, Result};

fn other(e: Error) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl Shard {
    /// Encodes every group of `k` sealed volumes into a stripe (ADR 19): on the shard's worker,
    /// members copied to their positions, parity written and synced, the manifest made durable
    /// in every copy; then reads switch to the members and the extra copies are removed.
    /// Does nothing without erasure coding, while a copy or a stripe directory is missing, or
    /// while a pass runs. Returns the stripes made.
    pub async fn encode_stripes(&self) -> Result<u32> {
        let Some(st) = &self.stripes else {
            return Ok(0);
        };
        if self.closed.get()
            || self.check_protected().is_err()
            || st.layout.dirs.iter().any(Option::is_none)
            || st.blocked.get()
            || st.encoding.replace(true)
        {
            return Ok(0);
        }
        let r = self.encode_stripes_inner(st).await;
        st.encoding.set(false);
        r
    }

    /// The first `k` sealed volumes not striped, marked striped; None when fewer are ready.
    fn take_stripe_candidates(&self, k: usize) -> Option<Vec<(u32, u64, PathBuf)>> {
        let mut vols = self.vols.borrow_mut();
        let active = vols.active;
        let ids: Vec<u32> = vols
            .map
            .iter()
            .filter(|(id, v)| {
                v.sealed && !v.striped && Some(**id) != active && v.writers == 0 && v.end_bytes > 0
            })
            .map(|(id, _)| *id)
            .take(k)
            .collect();
        if ids.len() < k {
            return None;
        }
        Some(
            ids.iter()
                .map(|id| {
                    let v = vols.map.get_mut(id).expect("listed volume");
                    v.striped = true;
                    (*id, v.end_bytes, v.file.path.clone())
                })
                .collect(),
        )
    }

    fn unmark_striped(&self, ids: &[u32]) {
        let mut vols = self.vols.borrow_mut();
        for id in ids {
            if let Some(v) = vols.map.get_mut(id) {
                v.striped = false;
            }
        }
    }

    async fn encode_stripes_inner(&self, st: &Stripes) -> Result<u32> {
        let (k, m) = (st.layout.k, st.layout.m);
        let mut made = 0;
        loop {
            {
                let vols = self.vols.borrow();
                let ready = vols
                    .map
                    .iter()
                    .filter(|(id, v)| {
                        v.sealed
                            && !v.striped
                            && Some(**id) != vols.active
                            && v.writers == 0
                            && v.end_bytes > 0
                    })
                    .count();
                if ready < k {
                    return Ok(made);
                }
            }
            // The journal is trimmed first: recovery re-checks the records of the journal's
            // last batch in their volume, which a stripe's member may no longer be.
            self.checkpoint().await?;
            let Some(cands) = self.take_stripe_candidates(k) else {
                return Ok(made);
            };
            let ids: Vec<u32> = cands.iter().map(|c| c.0).collect();
            // Punches queued before the volumes were marked finish before parity is computed
            // (none are queued after); the seals' truncations ran on the worker already or run
            // before the encoding (one queue, in order).
            if !self.wait_punches_async(Duration::from_secs(30)).await {
                self.unmark_striped(&ids);
                return Err(Error::Unprotected(
                    "hole punches still queued after 30 s: stripe encoding postponed".into(),
                ));
            }
            let shard_bytes = ec::shard_bytes_for(cands.iter().map(|c| c.1).max().unwrap_or(0));
            let manifest = Manifest {
                stripe_id: st.next_id.get(),
                k: k as u8,
                m: m as u8,
                shard_bytes,
                members: cands.iter().map(|c| (c.0, c.1)).collect(),
                positions: (0..(k + m) as u8).collect(),
            };
            st.next_id.set(st.next_id.get() + 1);
            let sources: Vec<PathBuf> = cands.into_iter().map(|c| c.2).collect();
            let layout = st.layout.clone();
            let mf = manifest.clone();
            let report = match self
                .offload
                .call(move || encode(&layout, &mf, &sources).map_err(other))
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    self.unmark_striped(&ids);
                    st.blocked.set(true);
                    tracing::error!(dir = %self.dir.display(), error = %e, "stripe encoding failed: the volumes stay mirrored; no more encoding of this shard until the next start");
                    return Err(Error::io(
                        format!(
                            "encode stripe {} of {}",
                            manifest.stripe_id,
                            self.dir.display()
                        ),
                        e,
                    ));
                }
            };
            // Committed (the manifest is durable): reads go to the members from now on.
            let files = st.add(manifest.clone());
            for j in 0..k {
                let vf = member_volume(&files, j)?;
                let mut vols = self.vols.borrow_mut();
                let v = vols.map.get_mut(&vf.id).expect("striped volume registered");
                v.file = Rc::new(vf);
            }
            let layout = st.layout.clone();
            let mf = manifest.clone();
            if let Err(e) = self
                .offload
                .call(move || drop_extra_copies(&layout, &mf).map_err(other))
                .await
            {
                // Left for the next open (`reconcile` removes them).
                tracing::warn!(error = %e, "removing the extra copies of striped volumes failed");
            }
            st.encoded_bytes
                .set(st.encoded_bytes.get() + report.data_bytes);
            let secs = report.elapsed.as_secs_f64().max(1e-6);
            tracing::info!(
                dir = %self.dir.display(),
                stripe = manifest.stripe_id,
                volumes = ?ids,
                shard_bytes,
                parity_bytes = report.parity_bytes,
                encode_mb_per_s = format!("{:.0}", report.data_bytes as f64 / secs / 1e6),
                "sealed volumes encoded into a stripe; their extra copies dropped"
            );
            made += 1;
        }
    }

    /// Reads the aligned span `[a_lo, a_lo + span)` of a striped volume: one device read of
    /// its member; when the member is lost or that read fails (the member is then marked
    /// failed), the span is decoded from `k` other stripe files on the worker thread. The
    /// blocks of `run` are verified either way.
    /// The scrub's second half (ADR 19 step 7): the parity of every stripe whose files are
    /// all present, recomputed from its members on the worker thread (`ec::verify_files`) and
    /// compared; a mismatch is counted and logged with its chunks (the stripe keeps serving:
    /// healthy reads do not use parity, and a degraded read checks the record CRCs). Paced at
    /// `max_bytes_per_s` over the stripe files' bytes (0 = unlimited).
    pub(super) async fn scrub_stripes(
        &self,
        max_bytes_per_s: u64,
        stats: &mut super::ScrubStats,
    ) -> Result<()> {
        let Some(st) = self.stripes.as_ref() else {
            return Ok(());
        };
        let all: Vec<Rc<StripeFiles>> = st.all.borrow().clone();
        for f in all {
            let paths: Vec<PathBuf> = f.paths.iter().flatten().cloned().collect();
            if paths.len() != f.paths.len() || f.failed.iter().any(|c| c.get()) {
                continue;
            }
            let (codec, shard_bytes, id) = (
                f.codec.clone(),
                f.manifest.shard_bytes,
                f.manifest.stripe_id,
            );
            let started = std::time::Instant::now();
            let bad = self
                .offload
                .call(move || {
                    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
                    ec::verify_files(&codec, &refs, shard_bytes).map_err(other)
                })
                .await
                .map_err(|e| {
                    Error::io(
                        format!("verify the parity of stripe {id} of {}", self.dir.display()),
                        e,
                    )
                })?;
            let stripe_bytes = shard_bytes * f.paths.len() as u64;
            stats.stripes_checked += 1;
            stats.bytes_checked += stripe_bytes;
            if !bad.is_empty() {
                stats.bad_stripes += 1;
                tracing::error!(
                    dir = %self.dir.display(),
                    stripe = id,
                    bad_chunks = ?bad,
                    "stripe parity does not match its members"
                );
            }
            self.meters.bg(|b| {
                b.scrub_stripes_checked += 1;
                b.scrub_bad_stripes += u64::from(!bad.is_empty());
                b.scrub_bytes_checked += stripe_bytes;
            });
            if max_bytes_per_s > 0 {
                let due = Duration::from_secs_f64(stripe_bytes as f64 / max_bytes_per_s as f64);
                if let Some(rest) = due.checked_sub(started.elapsed()) {
                    monoio::time::sleep(rest).await;
                }
            }
        }
        Ok(())
    }

    pub(super) async fn read_member(
        &self,
        ext: &super::index::Extent,
        files: &Rc<StripeFiles>,
        j: usize,
        a_lo: u64,
        span: usize,
        run: &super::read::BlockRun,
    ) -> Result<bytes::Bytes> {
        if !files.failed[j].get() {
            let checked = self
                .read_checked(&ext.vol.file, &ext.vol.path, ext, run, a_lo, span)
                .await;
            match checked {
                Ok(buf) => return Ok(buf.into_bytes()),
                // A read that picked up the member's file before a rebuild replaced it
                // (rebuild.rs) decodes without marking the new one failed.
                Err(e) if self.is_current_volume(&ext.vol) => {
                    files.failed[j].set(true);
                    tracing::error!(path = %ext.vol.path.display(), error = %e, "stripe member failed a read: marked failed; its reads decode from the stripe's other files (and it is rebuilt while serving)");
                }
                Err(_) => {}
            }
        }
        let Some(st) = &self.stripes else {
            return Err(Error::Corrupt {
                context: "striped volume in a shard without stripes".into(),
            });
        };
        let sources = files.sources();
        let codec = files.codec.clone();
        let len = span as u64;
        let data = self
            .offload
            .call(move || read_degraded(&codec, &sources, j, a_lo, len).map_err(other))
            .await
            .map_err(|e| {
                Error::io(
                    format!(
                        "degraded read of {} at {a_lo} len {span} (stripe {})",
                        ext.vol.path.display(),
                        files.manifest.stripe_id
                    ),
                    e,
                )
            })?;
        self.verify_blocks(ext, &data, run, a_lo)?;
        st.degraded_reads.set(st.degraded_reads.get() + 1);
        Ok(bytes::Bytes::from(data))
    }
}
