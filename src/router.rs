//! Shard routing: which core owns which shard, and how a request reaches it.
//!
//! Every core runs one monoio runtime. A shard (one engine instance, one directory) is owned by
//! exactly one core. A request for a shard owned by the core it arrived on runs in place, inside
//! the request's own future (no spawn, no channel). A request for a shard owned by another core
//! crosses once: the work is boxed and sent over that core's channel, runs there as a task, and
//! the result comes back through a oneshot.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use bale_io::Shard;
use futures::channel::{mpsc, oneshot};
use futures::FutureExt;
use send_wrapper::SendWrapper;

pub type LocalFuture = Pin<Box<dyn Future<Output = ()>>>;
/// Work sent to the core that owns a shard. Runs on that core with the shard handle.
pub type Job = Box<dyn FnOnce(Rc<Shard>) -> LocalFuture + Send>;

/// Messages a core's inbox accepts.
pub enum Inbox {
    Run { shard_id: usize, job: Job },
}

/// Process-wide, immutable after start: shard to core map and each core's inbox.
pub struct Topology {
    pub shard_count: usize,
    pub core_count: usize,
    owner_core: Vec<usize>,
    inboxes: Vec<mpsc::UnboundedSender<Inbox>>,
}

impl Topology {
    pub fn new(
        shard_count: usize,
        core_count: usize,
        inboxes: Vec<mpsc::UnboundedSender<Inbox>>,
    ) -> Self {
        assert!(shard_count > 0 && core_count > 0);
        assert_eq!(inboxes.len(), core_count);
        let owner_core = (0..shard_count).map(|s| s % core_count).collect();
        Self {
            shard_count,
            core_count,
            owner_core,
            inboxes,
        }
    }

    pub fn owner_of(&self, shard_id: usize) -> usize {
        self.owner_core[shard_id]
    }

    pub fn shards_of_core(&self, core: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.shard_count).filter(move |s| self.owner_core[*s] == core)
    }

    /// The shard that stores (bucket, key): FNV-1a 64 over both, stable across versions and
    /// platforms (it decides where data lives on disk, so it must never change).
    pub fn shard_for(&self, bucket: &str, key: &str) -> usize {
        (shard_hash(bucket, key) % self.shard_count as u64) as usize
    }
}

pub fn shard_hash(bucket: &str, key: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for b in bucket
        .as_bytes()
        .iter()
        .chain(std::iter::once(&0u8))
        .chain(key.as_bytes())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(PRIME);
    }
    h
}

struct LocalState {
    #[allow(dead_code)] // kept for debugging and assertions
    core: usize,
    shards: Vec<Option<Rc<Shard>>>,
}

thread_local! {
    static LOCAL: RefCell<Option<LocalState>> = const { RefCell::new(None) };
}

/// Called once per core thread after its shards are open.
pub fn install_local(core: usize, shards: Vec<Option<Rc<Shard>>>) {
    LOCAL.with(|l| *l.borrow_mut() = Some(LocalState { core, shards }));
}

pub fn clear_local() {
    LOCAL.with(|l| *l.borrow_mut() = None);
}

pub fn local_shard(shard_id: usize) -> Option<Rc<Shard>> {
    LOCAL.with(|l| {
        l.borrow()
            .as_ref()
            .and_then(|s| s.shards.get(shard_id).cloned().flatten())
    })
}

/// All shards this core owns.
pub fn local_shards() -> Vec<Rc<Shard>> {
    LOCAL.with(|l| {
        l.borrow()
            .as_ref()
            .map(|s| s.shards.iter().flatten().cloned().collect())
            .unwrap_or_default()
    })
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("shard {0} is not reachable (core shutting down or task panicked)")]
    Unreachable(usize),
}

/// Run `f` on the core that owns `shard_id` and return its result.
///
/// Local shard: `f`'s future runs inside the caller's future (the caller is a task on this
/// core and monoio never moves tasks between threads; `SendWrapper` asserts that). Remote
/// shard: one hop through the owner's inbox.
pub async fn on_shard<T, F, Fut>(
    topo: &Arc<Topology>,
    shard_id: usize,
    f: F,
) -> Result<T, RouteError>
where
    T: Send + 'static,
    F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
{
    let local = match local_shard(shard_id) {
        Some(shard) => Ok(SendWrapper::new(f(shard))),
        None => Err(f),
    };
    let f = match local {
        Ok(fut) => return Ok(fut.await),
        Err(f) => f,
    };
    let (tx, rx) = oneshot::channel();
    // The owner's logs name the request this work is for.
    let request_id = crate::logging::current_request_id();
    let job: Job = Box::new(move |shard| {
        Box::pin(crate::logging::with_request_id(request_id, async move {
            let out = f(shard).await;
            let _ = tx.send(out);
        }))
    });
    let owner = topo.owner_of(shard_id);
    topo.inboxes[owner]
        .unbounded_send(Inbox::Run { shard_id, job })
        .map_err(|_| RouteError::Unreachable(shard_id))?;
    rx.await.map_err(|_| RouteError::Unreachable(shard_id))
}

/// Serve this core's inbox: run each job as a task, guarded so a panic in one job fails only
/// that request (its oneshot sender is dropped and the caller sees `Unreachable`).
pub async fn serve_inbox(mut rx: mpsc::UnboundedReceiver<Inbox>) {
    use futures::StreamExt;
    while let Some(msg) = rx.next().await {
        match msg {
            Inbox::Run { shard_id, job } => {
                let Some(shard) = local_shard(shard_id) else {
                    tracing::error!(shard_id, "job for a shard this core does not own");
                    continue;
                };
                monoio::spawn(async move {
                    if std::panic::AssertUnwindSafe(job(shard))
                        .catch_unwind()
                        .await
                        .is_err()
                    {
                        tracing::error!(
                            shard_id,
                            "panic in a shard job; request failed, core keeps serving"
                        );
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_hash_is_stable() {
        // These values decide on-disk placement: they must never change.
        assert_eq!(shard_hash("", ""), 0xaf63_bd4c_8601_b7df);
        assert_ne!(shard_hash("a", "b"), shard_hash("ab", ""));
    }

    #[test]
    fn ownership_round_robin() {
        let (tx, _rx) = mpsc::unbounded();
        let t = Topology::new(4, 2, vec![tx.clone(), tx]);
        assert_eq!(t.shards_of_core(0).collect::<Vec<_>>(), vec![0, 2]);
        assert_eq!(t.shards_of_core(1).collect::<Vec<_>>(), vec![1, 3]);
    }
}
