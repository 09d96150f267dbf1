//! Hole punching off the reactor thread.
//!
//! Dead records give their space back through `fallocate(PUNCH_HOLE | KEEP_SIZE)` (ADR 5). That
//! is a synchronous syscall, and on a filesystem mounted with `discard` it waits for the device
//! (measured under an overwrite stream: the core's thread slept in `blkdev_issue_discard`, and
//! every GET queued on that core waited with it: GET p99 at c=1 went from ~0.2 to ~0.8 ms). So
//! each shard hands its punches to one worker thread through a bounded queue. The reactor never
//! blocks on it: a full queue drops the punch (the span is then left to compaction).
//!
//! Ordering needs nothing more: a punched span is dead for good (no index object references
//! it, no reader holds it, the entry that killed it is durable) and volumes are append-only, so
//! no later write lands in it; a volume unlinked by compaction stays open through the job's
//! own duplicated descriptor until the job is done.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Punch jobs waiting per shard; beyond this a punch is dropped (left to compaction).
pub const QUEUE_MAX_JOBS: usize = 65_536;

/// Counters shared between a shard and its worker.
#[derive(Default)]
pub struct PunchState {
    pub punched_bytes: AtomicU64,
    /// Jobs queued and not yet done.
    pub pending_jobs: AtomicUsize,
    /// Punches dropped (queue full, descriptor not duplicable) or failed.
    pub skipped_jobs: AtomicU64,
    /// The filesystem cannot punch holes (EOPNOTSUPP): stop asking.
    pub unsupported: AtomicBool,
}

struct Job {
    fd: OwnedFd,
    path: String,
    offset_bytes: u64,
    len_bytes: u64,
}

/// One shard's puncher: the sending side and the shared counters. Dropping it ends the worker
/// once the queue is empty.
pub struct Puncher {
    tx: crossbeam_channel::Sender<Job>,
    pub state: Arc<PunchState>,
}

impl Puncher {
    /// Starts the worker thread (named after the shard directory).
    pub fn start(name: &str) -> std::io::Result<Puncher> {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(QUEUE_MAX_JOBS);
        let state = Arc::new(PunchState::default());
        let st = state.clone();
        std::thread::Builder::new()
            .name(format!("bale-punch {name}"))
            .spawn(move || {
                for job in rx {
                    run(&job, &st);
                    st.pending_jobs.fetch_sub(1, Ordering::AcqRel);
                }
            })?;
        Ok(Puncher { tx, state })
    }

    /// Queues a punch of `[offset_bytes, offset_bytes + len_bytes)` of `file`.
    /// Never blocks.
    pub fn punch(
        &self,
        file: &impl AsRawFd,
        path: &std::path::Path,
        offset_bytes: u64,
        len_bytes: u64,
    ) {
        if self.state.unsupported.load(Ordering::Relaxed) {
            return;
        }
        let Ok(fd) = crate::sys::dup_cloexec(file) else {
            self.state.skipped_jobs.fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.state.pending_jobs.fetch_add(1, Ordering::AcqRel);
        let job = Job {
            fd,
            path: path.display().to_string(),
            offset_bytes,
            len_bytes,
        };
        if self.tx.try_send(job).is_err() {
            self.state.pending_jobs.fetch_sub(1, Ordering::AcqRel);
            self.state.skipped_jobs.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits (blocking the calling thread) until every queued punch is done, at most
    /// `timeout`; true when none is left. Used only on the near-full allocation path, where
    /// the space being punched is what decides whether a PUT fits.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.state.pending_jobs.load(Ordering::Acquire) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        true
    }
}

fn run(job: &Job, st: &PunchState) {
    let rc = crate::sys::punch_hole(&job.fd, job.offset_bytes, job.len_bytes);
    let Err(e) = rc else {
        st.punched_bytes.fetch_add(job.len_bytes, Ordering::Relaxed);
        return;
    };
    st.skipped_jobs.fetch_add(1, Ordering::Relaxed);
    if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
        if !st.unsupported.swap(true, Ordering::Relaxed) {
            tracing::warn!(path = %job.path, "filesystem cannot punch holes: dead records are reclaimed by compaction only");
        }
    } else {
        tracing::warn!(path = %job.path, offset = job.offset_bytes, len_bytes = job.len_bytes, error = %e,
            "punching a dead record failed; left to compaction");
    }
}
