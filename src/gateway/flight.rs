//! Single-flight fills, on the core that owns the key: one upstream read per key at a time
//! (`flight`, its leader's `Lead`), the fill slots that bound a core's upstream reads of object
//! bytes (`FillSlot`), and the bound on bytes that wait for their local commit
//! (`CommitCharge`). docs/gateway.md, "Limits under attack"; ADR 33.

use std::cell::RefCell;
use std::collections::HashMap;

use futures::channel::oneshot;

thread_local! {
    static FLIGHTS: RefCell<HashMap<String, Vec<oneshot::Sender<()>>>> = RefCell::new(HashMap::new());
    /// Fills of this core that may hold an upstream connection and their bytes in memory:
    /// leads of a flight, and unsized answers passed through ([`FillSlot`]).
    static FILLS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// Bytes of this core's fills that hold no upstream connection any more and wait only for
    /// their local commit ([`CommitCharge`]).
    static COMMITTING_BYTES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Most bytes a core's fills may hold in memory while they wait for their local commit,
/// after their upstream answer ended (a small miss answered from memory, a block run read
/// whole). Past it a fill's bytes are served but not kept (the gateway acts as a plain proxy
/// for that miss) rather than refused: the bound keeps a disk that commits slowly from
/// turning misses into memory. 256 MiB per core.
pub const MAX_COMMITTING_BYTES: u64 = 256 << 20;

/// A fill's bytes counted against [`MAX_COMMITTING_BYTES`] until dropped.
pub struct CommitCharge(u64);

impl CommitCharge {
    /// `None` when `bytes` more would pass the core's bound (the fill is then not kept).
    pub fn take(bytes: u64) -> Option<CommitCharge> {
        COMMITTING_BYTES.with(|n| {
            let now = n.get();
            if now + bytes > MAX_COMMITTING_BYTES {
                None
            } else {
                n.set(now + bytes);
                Some(CommitCharge(bytes))
            }
        })
    }
}

impl Drop for CommitCharge {
    fn drop(&mut self) {
        COMMITTING_BYTES.with(|n| n.set(n.get() - self.0));
    }
}

/// Bytes of this core's fills waiting for their local commit now.
pub fn committing_bytes() -> u64 {
    COMMITTING_BYTES.with(|n| n.get())
}

/// Most fills a core runs at once when no gateway is installed (unit tests); otherwise
/// `GatewayConfig::max_fills_per_core`.
const DEFAULT_MAX_FILLS: usize = 64;

/// One of the core's fills (counted until dropped): an upstream read of an object's bytes
/// that may outlive the request that started it (a fill served while it arrives goes on when
/// its client left). A fill whose upstream answer has ended gives its slot back
/// ([`Lead::upstream_done`]) and waits for its commit under a [`CommitCharge`] instead: the
/// slots bound upstream connections and bytes in transfer, not the disk's commit latency.
pub struct FillSlot(());

impl FillSlot {
    fn take() -> Option<FillSlot> {
        let max = super::get().map_or(DEFAULT_MAX_FILLS, |g| g.cfg.max_fills_per_core);
        FILLS.with(|n| {
            if n.get() >= max {
                None
            } else {
                n.set(n.get() + 1);
                Some(FillSlot(()))
            }
        })
    }
}

impl Drop for FillSlot {
    fn drop(&mut self) {
        FILLS.with(|n| n.set(n.get() - 1));
    }
}

/// Fills running on this core now.
pub fn fills() -> usize {
    FILLS.with(|n| n.get())
}

/// Leading a fill: waiters are woken when this is dropped.
pub struct Lead {
    id: String,
    slot: Option<FillSlot>,
}

impl Lead {
    /// Ends the flight (waiters look again now) but keeps the fill counted: an answer passed
    /// through without being kept still holds its upstream connection.
    pub fn into_slot(mut self) -> FillSlot {
        self.slot
            .take()
            .expect("a lead holds its slot until dropped")
    }

    /// The fill's upstream answer has ended (its connection is back in the pool): its slot
    /// goes back now, and its `bytes`, kept in memory until the local commit, are charged to
    /// the core's [`MAX_COMMITTING_BYTES`]. `None` (the bound is reached): the flight ends
    /// and the bytes are not kept; the caller serves them all the same.
    pub fn upstream_done(mut self, bytes: u64) -> Option<(Lead, CommitCharge)> {
        let charge = CommitCharge::take(bytes)?;
        self.slot = None;
        Some((self, charge))
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        let waiters = FLIGHTS.with(|f| f.borrow_mut().remove(&self.id));
        for w in waiters.into_iter().flatten() {
            let _ = w.send(());
        }
    }
}

/// Joins the flight for `id` on this core: `Ok(Some(Lead))` when nobody fetches it now (the
/// caller does), otherwise waits for the one who does and returns `Ok(None)` (look again).
/// A core that runs `max_fills_per_core` fills already refuses to start another:
/// 503 `SlowDown`, before any upstream request (this bounds the upstream connections and the
/// memory of the core's misses; waiters hold neither).
pub async fn flight(id: String) -> s3s::S3Result<Option<Lead>> {
    enum Joined {
        Lead(FillSlot),
        Wait(oneshot::Receiver<()>),
        Full,
    }
    let joined = FLIGHTS.with(|f| {
        let mut f = f.borrow_mut();
        if let Some(v) = f.get_mut(&id) {
            let (tx, rx) = oneshot::channel();
            v.push(tx);
            return Joined::Wait(rx);
        }
        match FillSlot::take() {
            Some(slot) => {
                f.insert(id.clone(), Vec::new());
                Joined::Lead(slot)
            }
            None => Joined::Full,
        }
    });
    match joined {
        Joined::Lead(slot) => Ok(Some(Lead {
            id,
            slot: Some(slot),
        })),
        Joined::Wait(rx) => {
            let _ = rx.await;
            Ok(None)
        }
        Joined::Full => {
            tracing::warn!(
                fills = fills(),
                "gateway: this core runs its most fills at once; a miss answered 503 SlowDown"
            );
            Err(s3s::s3_error!(
                SlowDown,
                "Please reduce your request rate: this core runs its most gateway fills at once."
            ))
        }
    }
}
