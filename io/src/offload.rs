//! Blocking system calls off the reactor thread (ADR 10).
//!
//! io_uring has no operation for `fallocate` in monoio 0.2.4 and none for `ftruncate` before
//! Linux 6.9, and both can wait for the device (block allocation, journaling, discard). Each
//! shard hands them to one worker thread of its own through a bounded queue; the core awaits a
//! oneshot reply (a volume sealed at a roll is not waited for). Jobs run one at a time in the order
//! they were queued: a volume's preallocations run before its seal's truncation, and a
//! preallocation's fallback truncation never races a later preallocation of the same volume.
//!
//! Hole punches keep their own worker (punch.rs): they are fire-and-forget and may queue by
//! the thousand; a preallocation a PUT waits for must not queue behind them.

use std::future::Future;
use std::os::fd::{AsRawFd, OwnedFd};

/// Jobs waiting per shard. Jobs come from PUTs that preallocate (one per 64 MiB of volume),
/// volume seals, checkpoints and failed journal appends: far fewer than this.
pub const QUEUE_MAX_JOBS: usize = 4096;

type Job = Box<dyn FnOnce() + Send>;

/// One shard's blocking-call worker. Dropping it ends the worker once the queue is empty.
pub struct Offload {
    tx: crossbeam_channel::Sender<Job>,
}

impl Offload {
    /// Starts the worker thread (named after the shard directory).
    pub fn start(name: &str) -> std::io::Result<Offload> {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(QUEUE_MAX_JOBS);
        std::thread::Builder::new()
            .name(format!("bale-sys {name}"))
            .spawn(move || {
                for job in rx {
                    job();
                }
            })?;
        Ok(Offload { tx })
    }

    /// Queues `f` now (so jobs run in call order, whenever their futures are polled) and
    /// returns a future of its result. Never blocks: a full queue answers an error.
    pub fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> impl Future<Output = std::io::Result<T>> {
        let (reply, rx) = futures::channel::oneshot::channel();
        let queued = self
            .tx
            .try_send(Box::new(move || {
                let _ = reply.send(f());
            }))
            .map_err(|_| std::io::Error::other("the shard's blocking-call queue is full"));
        async move {
            queued?;
            rx.await
                .map_err(|_| std::io::Error::other("the shard's blocking-call worker is gone"))?
        }
    }
}

/// A descriptor of `f` the worker can own (the caller's file may be closed meanwhile).
pub fn dup(f: &impl AsRawFd) -> std::io::Result<OwnedFd> {
    crate::sys::dup_cloexec(f)
}
