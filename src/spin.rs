//! Spin before park: keep a core polling its io_uring for a bounded time after activity.
//!
//! A monoio core that runs out of work parks in `io_uring_enter(GETEVENTS)`; on a VM with idle
//! vCPUs, waking it for the next request costs tens of µs. With `--spin-us N`, each core runs
//! one spinner task: after a request starts or ends it keeps yielding (so the runtime keeps
//! calling `io_uring_enter` without waiting, which also runs the kernel's completion work) for
//! up to `N` µs since the last activity, then parks itself until the next request. The cost is
//! CPU: an idle core burns up to `N` µs after every request. Off by default (`N` = 0).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

struct State {
    enabled: Cell<bool>,
    /// Bumped on every request start and end.
    activity: Cell<u64>,
    /// The spinner's waker while it is parked.
    parked: Cell<Option<Waker>>,
}

thread_local! {
    static STATE: State = const {
        State {
            enabled: Cell::new(false),
            activity: Cell::new(0),
            parked: Cell::new(None),
        }
    };
}

/// Records activity on this core (a request started or ended). A no-op unless spinning is on.
#[inline]
pub fn kick() {
    STATE.with(|s| {
        if s.enabled.get() {
            s.activity.set(s.activity.get().wrapping_add(1));
            if let Some(w) = s.parked.take() {
                w.wake();
            }
        }
    });
}

pub use bale_io::yield_now;

/// Parks until `kick` records activity newer than `seen`.
struct Parked(u64);

impl Future for Parked {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        STATE.with(|s| {
            if s.activity.get() != self.0 {
                Poll::Ready(())
            } else {
                s.parked.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
    }
}

/// The spinner task of one core; runs forever. `spin` must be non-zero.
pub async fn run(spin: Duration) {
    assert!(!spin.is_zero(), "spinner started with a zero spin time");
    STATE.with(|s| s.enabled.set(true));
    loop {
        let seen = STATE.with(|s| s.activity.get());
        Parked(seen).await;
        let mut seen = STATE.with(|s| s.activity.get());
        let mut deadline = Instant::now() + spin;
        loop {
            yield_now().await;
            let now_seen = STATE.with(|s| s.activity.get());
            let now = Instant::now();
            if now_seen != seen {
                seen = now_seen;
                deadline = now + spin;
            } else if now >= deadline {
                break;
            }
        }
    }
}
