//! Rebuild of lost stripe files while the shard serves (ADR 19, "Rebuild while serving").
//!
//! Stripe files never change once their manifest is durable, so a lost one (missing at open:
//! an empty directory put in a failed position; or marked failed while serving after an I/O
//! or CRC error) can be rebuilt from `k` others at any time, with nothing to coordinate with
//! the writers. The shard serves from the start (reads of a lost member decode), and a task of
//! the shard's core (`run`) queues every lost file whose directory is live and rebuilds it:
//! one slice of `SLICE_BYTES` at a time on the shard's worker thread (ADR 10: nothing blocks or
//! sleeps on a core; a degraded read queued on the same worker waits for one slice at most),
//! paced between slices by a process-wide budget (`--rebuild-rate-mb`, all shards together),
//! into a temporary name (`*.ec-tmp`), then fdatasynced, renamed, the directory fsynced; only
//! then is the file switched back to healthy (a member's volume reopened O_DIRECT: one device
//! read per GET again; `bale_stripe_files_lost` falls).
//!
//! Resume: a crash leaves the temporary file, which open removes (`stripe::reconcile`); the
//! file is still missing and is rebuilt again from its start (a stripe file is at most one
//! volume long; re-verifying a partial file would read it all anyway).
//!
//! A stripe dropped while its file is rebuilt (compaction of stripes) is noticed between
//! slices and after the rename (it is no longer in `Stripes::all`): the temporary or rebuilt
//! file is removed and nothing is switched. A file whose rebuild fails (its directory is not
//! writable, fewer than `k` other files readable) stays degraded until the next start, logged
//! at ERROR and counted.

use std::cell::{Cell, RefCell};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::space::VolFile;
use super::stripe::{self, StripeFiles, Stripes};
use super::Shard;
use crate::ec;
use crate::error::{Error, Result};
use crate::offload::Offload;

/// How often the shard looks for lost stripe files (a file that fails while serving waits at
/// most this long before its rebuild starts).
pub(crate) const REBUILD_CHECK_EVERY: Duration = Duration::from_secs(1);
/// Bytes rebuilt per job on the rebuild worker: how long it holds a CPU at once (a decode
/// of 256 KiB from `k` files, ~1 ms here), and the granularity of the rate bound.
pub(crate) const SLICE_BYTES: u64 = 256 << 10;
/// Nice value of the rebuild worker thread: where it shares a CPU with a core's reactor, the
/// scheduler runs the reactor first (measured in ADR 19: the foreground p99 during a rebuild).
const WORKER_NICE: i32 = 19;

/// The process's rebuild worker: one thread (`bale-sys rebuild`) at `WORKER_NICE` that runs
/// every shard's rebuild slices (the rate bound is process-wide too, so one is enough), off
/// the shards' own workers, where degraded reads and preallocations would queue behind it.
/// None if the thread could not start (the shard's worker is used then).
fn worker() -> Option<&'static Offload> {
    static WORKER: OnceLock<Option<Offload>> = OnceLock::new();
    WORKER
        .get_or_init(|| match Offload::start("rebuild") {
            Ok(w) => {
                // Queued first, so it runs before any slice; its answer is not awaited.
                drop(w.call(|| {
                    // SAFETY: plain system calls on the calling thread's own id.
                    let r = unsafe {
                        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                        libc::setpriority(libc::PRIO_PROCESS, tid, WORKER_NICE)
                    };
                    if r != 0 {
                        tracing::warn!(error = %std::io::Error::last_os_error(), "rebuild worker: nice not set");
                    }
                    Ok(())
                }));
                Some(w)
            }
            Err(e) => {
                tracing::warn!(error = %e, "rebuild worker thread not started: rebuilds run on the shards' workers");
                None
            }
        })
        .as_ref()
}
/// Progress is logged at most this often per shard (and once at the end).
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// A shard's rebuild queue and counters (kept in `Stripes`).
#[derive(Debug, Default)]
pub(crate) struct RebuildState {
    /// A rebuild pass is running.
    running: Cell<bool>,
    /// Files (and their bytes) queued in the running pass and not yet rebuilt.
    pub(crate) pending_files: Cell<u32>,
    pub(crate) pending_bytes: Cell<u64>,
    /// Files and bytes rebuilt since open.
    pub(crate) rebuilt_files: Cell<u64>,
    pub(crate) rebuilt_bytes: Cell<u64>,
    /// Rebuilds that failed since open (the file stays degraded until the next start).
    pub(crate) failures: Cell<u64>,
    /// (stripe id, file index) whose rebuild failed: not queued again until the next start.
    given_up: RefCell<Vec<(u32, usize)>>,
}

/// Process-wide pacing of rebuild writes: the instant (ns since `epoch()`) from which the
/// next slice may start. Every shard of every core reserves its slices here, so
/// `--rebuild-rate-mb` bounds the whole process, not each shard.
static PACE_NEXT_NS: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Reserves `bytes` of rebuild writes at `rate_bytes_per_s` (0 = unbounded) in the process's
/// budget; returns how long the caller must wait before writing them. An idle budget does not
/// accumulate (no burst after a pause).
pub(crate) fn pace(bytes: u64, rate_bytes_per_s: u64) -> Duration {
    if rate_bytes_per_s == 0 {
        return Duration::ZERO;
    }
    let now = epoch().elapsed().as_nanos() as u64;
    let cost = (bytes as u128 * 1_000_000_000 / rate_bytes_per_s as u128) as u64;
    let prev = PACE_NEXT_NS
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |next| {
            Some(next.max(now) + cost)
        })
        .unwrap_or(now);
    Duration::from_nanos(prev.max(now) - now)
}

/// The shard's rebuild task (spawned by `Shard::open_striped`): a pass now, then one every
/// `REBUILD_CHECK_EVERY`, until the shard closes or is dropped.
pub(super) async fn run(shard: Weak<Shard>) {
    loop {
        {
            let Some(s) = shard.upgrade() else { return };
            if s.closed.get() {
                return;
            }
            s.rebuild_stripes().await;
        }
        monoio::time::sleep(REBUILD_CHECK_EVERY).await;
    }
}

fn other(e: Error) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

fn registered(st: &Stripes, f: &Rc<StripeFiles>) -> bool {
    st.all.borrow().iter().any(|x| Rc::ptr_eq(x, f))
}

/// Length of stripe file `i` of `f`: a member as long as it was when encoded, parity
/// `shard_bytes`.
fn file_bytes(f: &StripeFiles, i: usize) -> u64 {
    let m = &f.manifest;
    if i < m.k as usize {
        m.members[i].1
    } else {
        m.shard_bytes
    }
}

/// Progress of one pass, logged every `PROGRESS_EVERY`.
struct Progress {
    started: Instant,
    last_log: Instant,
    total_bytes: u64,
    done_bytes: u64,
}

impl Progress {
    fn log(&mut self, dir: &Path, force: bool) {
        if !force && self.last_log.elapsed() < PROGRESS_EVERY {
            return;
        }
        self.last_log = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = self.done_bytes as f64 / secs;
        let left = self.total_bytes.saturating_sub(self.done_bytes);
        let eta_s = if rate > 0.0 { left as f64 / rate } else { 0.0 };
        tracing::info!(
            dir = %dir.display(),
            percent = format!(
                "{:.1}",
                self.done_bytes as f64 * 100.0 / self.total_bytes.max(1) as f64
            ),
            bytes = self.done_bytes,
            total_bytes = self.total_bytes,
            mb_per_s = format!("{:.1}", rate / 1e6),
            eta_s = format!("{eta_s:.0}"),
            "stripe rebuild progress (serving meanwhile)"
        );
    }
}

impl Shard {
    /// One rebuild pass (ADR 19, "Rebuild while serving"): every stripe file lost or failed in
    /// a live directory is rebuilt from `k` others while the shard serves, paced at the
    /// layout's rate; returns the files rebuilt. Does nothing without erasure coding or while
    /// a pass runs.
    pub async fn rebuild_stripes(&self) -> u32 {
        let Some(st) = &self.stripes else {
            return 0;
        };
        if st.rebuild.running.replace(true) {
            return 0;
        }
        let n = self.rebuild_pass(st).await;
        st.rebuild.running.set(false);
        n
    }

    /// The lost files a pass rebuilds: failed, in a live directory, not given up.
    fn rebuild_queue(&self, st: &Stripes) -> Vec<(Rc<StripeFiles>, usize)> {
        let given_up = st.rebuild.given_up.borrow();
        let mut q = Vec::new();
        for f in st.all.borrow().iter() {
            for i in 0..f.paths.len() {
                if f.failed[i].get()
                    && f.paths[i].is_some()
                    && !given_up.contains(&(f.manifest.stripe_id, i))
                {
                    q.push((f.clone(), i));
                }
            }
        }
        q
    }

    async fn rebuild_pass(&self, st: &Stripes) -> u32 {
        let queue = self.rebuild_queue(st);
        if queue.is_empty() {
            return 0;
        }
        let rs = &st.rebuild;
        let total: u64 = queue.iter().map(|(f, i)| file_bytes(f, *i)).sum();
        rs.pending_files.set(queue.len() as u32);
        rs.pending_bytes.set(total);
        let rate = st.layout.rebuild_rate_bytes_per_s;
        tracing::info!(
            dir = %self.dir.display(),
            files = queue.len(),
            total_bytes = total,
            rate_bytes_per_s = rate,
            "rebuilding lost stripe files from the surviving ones while serving"
        );
        let now = Instant::now();
        let mut progress = Progress {
            started: now,
            last_log: now,
            total_bytes: total,
            done_bytes: 0,
        };
        let mut rebuilt = 0;
        for (f, i) in queue {
            if self.closed.get() {
                break;
            }
            let bytes = file_bytes(&f, i);
            let base = progress.done_bytes;
            match self.rebuild_one(st, &f, i, rate, base, &mut progress).await {
                Ok(true) => {
                    rebuilt += 1;
                    rs.rebuilt_files.set(rs.rebuilt_files.get() + 1);
                    rs.rebuilt_bytes.set(rs.rebuilt_bytes.get() + bytes);
                    tracing::info!(
                        dir = %self.dir.display(),
                        stripe = f.manifest.stripe_id,
                        file = %f.paths[i].as_deref().unwrap_or(Path::new("?")).display(),
                        bytes,
                        "stripe file rebuilt: back to healthy"
                    );
                }
                Ok(false) => {}
                Err(e) => {
                    rs.failures.set(rs.failures.get() + 1);
                    rs.given_up.borrow_mut().push((f.manifest.stripe_id, i));
                    tracing::error!(
                        dir = %self.dir.display(),
                        stripe = f.manifest.stripe_id,
                        file = i,
                        error = %e,
                        "stripe file rebuild failed: it stays degraded (reads decode) until the next start"
                    );
                }
            }
            progress.done_bytes = base + bytes;
            rs.pending_files
                .set(rs.pending_files.get().saturating_sub(1));
            rs.pending_bytes
                .set(total.saturating_sub(progress.done_bytes));
        }
        rs.pending_files.set(0);
        rs.pending_bytes.set(0);
        progress.log(&self.dir, true);
        tracing::info!(
            dir = %self.dir.display(),
            files = rebuilt,
            bytes = progress.done_bytes,
            elapsed_ms = progress.started.elapsed().as_millis() as u64,
            "stripe rebuild pass done"
        );
        rebuilt
    }

    /// Rebuilds stripe file `i` of `f` and switches it back to healthy. Ok(false): the shard
    /// is closing or the stripe was dropped meanwhile (nothing left behind).
    async fn rebuild_one(
        &self,
        st: &Stripes,
        f: &Rc<StripeFiles>,
        i: usize,
        rate_bytes_per_s: u64,
        base: u64,
        progress: &mut Progress,
    ) -> Result<bool> {
        let out = f.paths[i]
            .clone()
            .ok_or_else(|| Error::Unprotected("no directory".into()))?;
        let dir = out
            .parent()
            .ok_or_else(|| Error::Invalid(format!("{} has no directory", out.display())))?
            .to_path_buf();
        let tmp = stripe::tmp_of(&out);
        let len = file_bytes(f, i);
        let work = worker().unwrap_or(&self.offload);
        let mut sources = f.sources();
        sources[i] = None;
        let sources = Arc::new(sources);
        let codec = f.codec.clone();
        // The temporary file is created in the file's own directory (never the directory
        // itself: a directory that vanished is a lost disk, not one to recreate elsewhere).
        let t = tmp.clone();
        let file = Arc::new(
            work.call(move || {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&t)
                    .map_err(|e| {
                        std::io::Error::new(e.kind(), format!("create {}: {e}", t.display()))
                    })
            })
            .await
            .map_err(|e| Error::io(format!("rebuild of stripe {}", f.manifest.stripe_id), e))?,
        );
        let mut offset = 0u64;
        while offset < len {
            if self.closed.get() || !registered(st, f) {
                self.remove_quietly(tmp).await;
                return Ok(false);
            }
            let n = (len - offset).min(SLICE_BYTES);
            let wait = pace(n, rate_bytes_per_s);
            if !wait.is_zero() {
                monoio::time::sleep(wait).await;
            }
            let (codec, sources, file, t) =
                (codec.clone(), sources.clone(), file.clone(), tmp.clone());
            let done = work
                .call(move || {
                    let refs: Vec<Option<&Path>> = sources.iter().map(|p| p.as_deref()).collect();
                    let data = ec::read_range(&codec, &refs, i, offset, n).map_err(other)?;
                    file.write_all_at(&data, offset).map_err(|e| {
                        std::io::Error::new(
                            e.kind(),
                            format!("write {} at {offset}: {e}", t.display()),
                        )
                    })
                })
                .await;
            if let Err(e) = done {
                self.remove_quietly(tmp).await;
                if !registered(st, f) {
                    // Dropped meanwhile (its files removed under the read): not a failure.
                    return Ok(false);
                }
                return Err(Error::io(
                    format!("rebuild of stripe {} file {i}", f.manifest.stripe_id),
                    e,
                ));
            }
            offset += n;
            progress.done_bytes = base + offset;
            st.rebuild
                .pending_bytes
                .set(progress.total_bytes.saturating_sub(progress.done_bytes));
            progress.log(&self.dir, false);
        }
        if self.closed.get() || !registered(st, f) {
            self.remove_quietly(tmp).await;
            return Ok(false);
        }
        let (t, o, d) = (tmp.clone(), out.clone(), dir.clone());
        work.call(move || {
            file.sync_data()?;
            std::fs::rename(&t, &o)?;
            crate::sys::fsync_dir(&d)
        })
        .await
        .map_err(|e| Error::io(format!("make {} durable", out.display()), e))?;
        if !registered(st, f) {
            // Dropped while the rename ran: its files are no longer wanted.
            self.remove_quietly(out).await;
            return Ok(false);
        }
        self.switch_healthy(f, i)?;
        Ok(true)
    }

    /// Stripe file `i` of `f` is whole again: reads of a member go to it (one O_DIRECT read)
    /// from now on, and degraded reads may use it.
    fn switch_healthy(&self, f: &Rc<StripeFiles>, i: usize) -> Result<()> {
        f.failed[i].set(false);
        if i >= f.manifest.k as usize {
            return Ok(());
        }
        let vf = stripe::member_volume(f, i)?;
        if f.failed[i].get() {
            return Err(Error::Corrupt {
                context: format!("rebuilt member {} cannot be opened", vf.path.display()),
            });
        }
        let mut vols = self.vols.borrow_mut();
        if let Some(v) = vols.map.get_mut(&vf.id) {
            if v.file
                .stripe
                .as_ref()
                .is_some_and(|(sf, _)| Rc::ptr_eq(sf, f))
            {
                v.file = Rc::new(vf);
            }
        }
        Ok(())
    }

    /// Whether `vol` is still the file reads of its volume go to (a rebuild replaces a lost
    /// member's `VolFile`; a read that picked up the old one must not mark the new one failed).
    pub(super) fn is_current_volume(&self, vol: &Rc<VolFile>) -> bool {
        self.vols
            .borrow()
            .map
            .get(&vol.id)
            .is_some_and(|v| Rc::ptr_eq(&v.file, vol))
    }

    async fn remove_quietly(&self, path: PathBuf) {
        let p = path.clone();
        let r = self
            .offload
            .call(move || match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(path = %path.display(), error = %e, "removing a rebuild's file failed (removed at the next open)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EngineConfig, Expect};
    use bytes::Bytes;
    use std::collections::BTreeMap;
    use std::fs;

    fn rt<F: std::future::Future>(f: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
            .expect("io_uring runtime")
            .block_on(f)
    }

    fn cfg() -> EngineConfig {
        EngineConfig {
            volume_target_bytes: 256 << 10,
            write_buffer_bytes: 64 << 10,
            reserve_bytes: 0,
            pack_max_bytes: 0,
            ..EngineConfig::default()
        }
    }

    fn layout(root: &Path, rate: u64) -> (Vec<PathBuf>, StripeLayout) {
        let dirs: Vec<PathBuf> = (0..6)
            .map(|i| root.join(format!("d{i}")).join("shard-0000"))
            .collect();
        let l = StripeLayout {
            k: 4,
            m: 2,
            dirs: dirs.iter().cloned().map(Some).collect(),
            rebuild_rate_bytes_per_s: rate,
        };
        (dirs[..=2].to_vec(), l)
    }

    use super::super::StripeLayout;

    fn data(i: usize) -> Vec<u8> {
        let n = 20_000 + (i % 5) * 7_001;
        (0..n)
            .map(|b| (b * 131 + i * 17 + (b >> 9)) as u8)
            .collect()
    }

    /// 60 objects of ~20-48 KB in 256 KiB volumes, encoded into stripes; returns the objects.
    async fn fill(root: &Path) -> BTreeMap<String, Vec<u8>> {
        let (copies, l) = layout(root, 0);
        let s = Shard::open_striped(&copies, 3, l, cfg()).await.unwrap();
        let mut want = BTreeMap::new();
        for i in 0..60 {
            let key = format!("k{i:03}");
            let d = data(i);
            let mut w = s.put("b", &key, d.len() as u64).unwrap();
            w.write(Bytes::from(d.clone())).await.unwrap();
            w.finish(Bytes::new(), Expect::Any).await.unwrap();
            want.insert(key, d);
        }
        s.seal_active().await;
        let made = s.encode_stripes().await.unwrap();
        assert!(made >= 1, "no stripe encoded");
        s.close().await.unwrap();
        want
    }

    /// The stripe files at positions 3 (a member) and 4 (parity) of every stripe: (path, bytes).
    fn victims(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut v = Vec::new();
        for pos in [3, 4] {
            let d = root.join(format!("d{pos}")).join("shard-0000");
            for e in fs::read_dir(&d).unwrap().flatten() {
                let name = e.file_name().into_string().unwrap();
                let keep = if pos == 3 {
                    name.starts_with("vol-")
                } else {
                    name.starts_with("parity-")
                };
                if keep {
                    v.push((e.path(), fs::read(e.path()).unwrap()));
                }
            }
        }
        assert!(v.len() >= 2, "{v:?}");
        v
    }

    async fn check_all(s: &Shard, want: &BTreeMap<String, Vec<u8>>) {
        for (k, d) in want {
            let o = s.get("b", k).expect("object");
            let got = s.read(&o, 0, o.size).await.expect("read");
            assert_eq!(&got[..], &d[..], "{k}");
        }
    }

    async fn wait_healthy(s: &Shard, timeout: Duration) {
        let t0 = Instant::now();
        while s.stats().stripe_files_lost > 0 {
            assert!(t0.elapsed() < timeout, "rebuild did not finish");
            monoio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[test]
    fn lost_files_rebuilt_while_reads_run() {
        let t = tempfile::tempdir().unwrap();
        rt(async {
            let want = fill(t.path()).await;
            let lost = victims(t.path());
            for (p, _) in &lost {
                fs::remove_file(p).unwrap();
            }
            // 4 MB/s: the rebuild takes a while, reads run meanwhile.
            let (copies, l) = layout(t.path(), 4_000_000);
            let s = Shard::open_striped(&copies, 3, l, cfg()).await.unwrap();
            assert_eq!(s.stats().stripe_files_lost as usize, lost.len());
            let mut rounds = 0;
            let mut seen_pending = false;
            while s.stats().stripe_files_lost > 0 {
                seen_pending |= s.stats().rebuild_pending_files > 0;
                check_all(&s, &want).await;
                rounds += 1;
                assert!(rounds < 2000, "rebuild did not finish");
                monoio::time::sleep(Duration::from_millis(5)).await;
            }
            assert!(seen_pending, "the rebuild ran while reads did");
            let st = s.stats();
            assert_eq!(st.rebuilt_files as usize, lost.len());
            assert_eq!(st.rebuild_failures, 0);
            assert_eq!(st.rebuild_pending_files, 0);
            for (p, b) in &lost {
                assert_eq!(&fs::read(p).unwrap(), b, "{}", p.display());
            }
            // Healthy again: reads of the rebuilt member are device reads, not decodes.
            let before = st.degraded_reads;
            check_all(&s, &want).await;
            assert_eq!(s.stats().degraded_reads, before);
            s.close().await.unwrap();
        });
    }

    #[test]
    fn a_rebuild_cut_short_is_redone() {
        let t = tempfile::tempdir().unwrap();
        rt(async {
            let want = fill(t.path()).await;
            let lost = victims(t.path());
            for (p, _) in &lost {
                fs::remove_file(p).unwrap();
            }
            // A slow rebuild, cut off by closing the shard once its temporary file exists.
            let (copies, l) = layout(t.path(), 200_000);
            let s = Shard::open_striped(&copies, 3, l, cfg()).await.unwrap();
            let tmp = stripe::tmp_of(&lost[0].0);
            let t0 = Instant::now();
            while !tmp.exists() {
                assert!(t0.elapsed() < Duration::from_secs(10), "no temporary file");
                monoio::time::sleep(Duration::from_millis(5)).await;
            }
            s.close().await.unwrap();
            // The rebuild task lets go of the shard after its slice in flight.
            let t0 = Instant::now();
            while Rc::strong_count(&s) > 1 {
                assert!(
                    t0.elapsed() < Duration::from_secs(20),
                    "rebuild task kept the shard"
                );
                monoio::time::sleep(Duration::from_millis(5)).await;
            }
            drop(s);
            assert!(!lost[0].0.exists());
            // A crash leaves a partial temporary file with wrong bytes: redone from the start.
            fs::write(&tmp, b"torn").unwrap();
            let (copies, l) = layout(t.path(), 0);
            let s = Shard::open_striped(&copies, 3, l, cfg()).await.unwrap();
            wait_healthy(&s, Duration::from_secs(20)).await;
            for (p, b) in &lost {
                assert_eq!(&fs::read(p).unwrap(), b, "{}", p.display());
                assert!(!stripe::tmp_of(p).exists());
            }
            check_all(&s, &want).await;
            s.close().await.unwrap();
        });
    }

    #[test]
    fn a_stripe_dropped_during_its_rebuild_leaves_nothing() {
        let t = tempfile::tempdir().unwrap();
        rt(async {
            let want = fill(t.path()).await;
            let lost = victims(t.path());
            fs::remove_file(&lost[0].0).unwrap();
            let (copies, l) = layout(t.path(), 200_000);
            // A lost file here is one slice, and the first slice of an idle budget is not
            // delayed: take 3 s of the process-wide budget so that the rebuild waits with its
            // temporary file created (without this the rebuild could finish between two polls
            // below, and did on a loaded machine).
            let _ = pace(600_000, 200_000);
            let s = Shard::open_striped(&copies, 3, l, cfg()).await.unwrap();
            let tmp = stripe::tmp_of(&lost[0].0);
            let t0 = Instant::now();
            while !tmp.exists() {
                assert!(t0.elapsed() < Duration::from_secs(10), "no temporary file");
                monoio::time::sleep(Duration::from_millis(5)).await;
            }
            // What compaction of stripes does to the shard's state: the stripe leaves `all`.
            let st = s.stripes.as_ref().unwrap();
            let stripe_of_lost = st
                .all
                .borrow()
                .iter()
                .position(|f| f.failed.iter().any(|c| c.get()))
                .unwrap();
            let dropped = st.all.borrow_mut().remove(stripe_of_lost);
            let t0 = Instant::now();
            while tmp.exists() || st.rebuild.pending_files.get() > 0 {
                assert!(
                    t0.elapsed() < Duration::from_secs(10),
                    "rebuild not stopped"
                );
                monoio::time::sleep(Duration::from_millis(5)).await;
            }
            assert!(!lost[0].0.exists(), "a dropped stripe's file was rebuilt");
            assert_eq!(s.stats().rebuilt_files, 0);
            assert_eq!(s.stats().rebuild_failures, 0);
            // Put back (the test's stripe was not really compacted): still readable, degraded.
            st.all.borrow_mut().push(dropped);
            check_all(&s, &want).await;
            s.close().await.unwrap();
        });
    }

    #[test]
    fn a_member_failing_while_serving_is_rebuilt() {
        let t = tempfile::tempdir().unwrap();
        rt(async {
            let want = fill(t.path()).await;
            let (copies, l) = layout(t.path(), 0);
            let s = Shard::open_striped(&copies, 3, l, cfg()).await.unwrap();
            assert_eq!(s.stats().stripe_files_lost, 0);
            // A member damaged on disk while serving (same inode: the open file sees it).
            let (victim, good) = victims(t.path()).remove(0);
            let mut bad = good.clone();
            for b in bad.iter_mut() {
                *b ^= 0x5A;
            }
            fs::OpenOptions::new()
                .write(true)
                .open(&victim)
                .unwrap()
                .write_all_at(&bad, 0)
                .unwrap();
            // Reads stay right (CRC failure -> marked failed -> decoded), then it is rebuilt.
            check_all(&s, &want).await;
            assert!(s.stats().degraded_reads > 0, "the damaged member was read");
            wait_healthy(&s, Duration::from_secs(20)).await;
            assert_eq!(fs::read(&victim).unwrap(), good);
            assert_eq!(s.stats().rebuilt_files, 1);
            check_all(&s, &want).await;
            s.close().await.unwrap();
        });
    }

    #[test]
    fn the_pace_is_shared_and_does_not_burst() {
        // 1 MB at 10 MB/s: 100 ms apart, whoever asks.
        let a = pace(1_000_000, 10_000_000);
        let b = pace(1_000_000, 10_000_000);
        assert!(b >= a + Duration::from_millis(90), "{a:?} {b:?}");
        assert_eq!(pace(1 << 30, 0), Duration::ZERO);
    }
}
