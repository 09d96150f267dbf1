//! Poll before park: keep a core polling its io_uring while requests keep arriving.
//!
//! A monoio core that runs out of work parks in `io_uring_enter(GETEVENTS)`; on a VM with idle
//! vCPUs, waking it for the next request costs tens of µs. Each core runs one spinner task:
//! while it is spinning it keeps yielding, so the runtime keeps calling `io_uring_enter`
//! without waiting (which also runs the kernel's completion work) and the next request's
//! readiness is reaped without a sleep and a wake-up. When its window passes with no activity
//! it parks itself until the next request starts.
//!
//! Two modes (docs/adr/0016-hot-path.md):
//!
//! - **Adaptive** (`--poll-us MAX`, the default, MAX = 50 µs): the window follows the traffic,
//!   the way the kernel's `haltpoll` cpuidle governor sizes its poll. At every request start
//!   the spinner looks at how long the core was idle before it (time since the previous request
//!   start or end): a gap a window of at most MAX would have covered grows the window (×2,
//!   from MAX/4), a longer one shrinks it (÷2, and to 0 below MAX/8). While requests keep
//!   arriving closer than MAX apart the core polls between them; when they stop, one window
//!   is spent and the core sleeps; sparse requests (a few per millisecond or fewer) shrink the
//!   window to 0 within a few requests, so an idle or lightly used bale burns nothing.
//! - **Fixed** (`--spin-us N`): after every request start or end, poll for N µs since the last
//!   activity, whatever the traffic (ADR 6). Overrides the adaptive mode.
//!
//! `--poll-us 0` (with `--spin-us 0`) turns polling off: the core parks whenever it is idle.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

struct State {
    enabled: Cell<bool>,
    /// Bumped on every request start and end.
    activity: Cell<u64>,
    /// Bumped on every request start (a subset of `activity`).
    starts: Cell<u64>,
    /// The spinner's waker while it is parked.
    parked: Cell<Option<Waker>>,
    /// Set by [`far_wait`]: the current window ends at the spinner's next turn.
    cut: Cell<bool>,
}

thread_local! {
    static STATE: State = const {
        State {
            enabled: Cell::new(false),
            activity: Cell::new(0),
            starts: Cell::new(0),
            parked: Cell::new(None),
            cut: Cell::new(false),
        }
    };
}

/// How a core polls before it parks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Never poll: park whenever idle.
    Off,
    /// Poll for this long after every activity (`--spin-us`).
    Fixed(Duration),
    /// Poll for a window sized by the recent gaps between requests, at most this long
    /// (`--poll-us`).
    Adaptive(Duration),
}

impl Mode {
    /// The mode `--spin-us` and `--poll-us` select: a fixed spin wins, then the adaptive poll.
    pub fn from_flags(spin_us: u64, poll_us: u64) -> Mode {
        if spin_us > 0 {
            Mode::Fixed(Duration::from_micros(spin_us))
        } else if poll_us > 0 {
            Mode::Adaptive(Duration::from_micros(poll_us))
        } else {
            Mode::Off
        }
    }
}

#[inline]
fn bump(start: bool) {
    STATE.with(|s| {
        if s.enabled.get() {
            s.activity.set(s.activity.get().wrapping_add(1));
            if start {
                s.starts.set(s.starts.get().wrapping_add(1));
            }
            if let Some(w) = s.parked.take() {
                w.wake();
            }
        }
    });
}

/// Records that a request started on this core. A no-op unless polling is on.
#[inline]
pub fn request_started() {
    bump(true);
}

/// Records that a request ended on this core. A no-op unless polling is on.
#[inline]
pub fn request_ended() {
    bump(false);
}

/// A request of this core now waits for an answer from another machine (the gateway's
/// upstream: hundreds of µs at least): the current polling window ends, so the core parks
/// instead of polling through the wait (polling there only takes the CPU from whatever else
/// runs on it); the next request start or end polls again. A no-op unless polling is on.
#[inline]
pub fn far_wait() {
    STATE.with(|s| {
        if !s.enabled.get() {
            return;
        }
        // Only a spinner that polls (or was woken and is about to) has a window to end; a
        // parked one must not carry the cut to its next wake-up (the request's end).
        let w = s.parked.take();
        if w.is_none() {
            s.cut.set(true);
        }
        s.parked.set(w);
    });
}

fn take_cut() -> bool {
    STATE.with(|s| s.cut.replace(false))
}

pub use bale_io::yield_now;

/// Parks until activity newer than `seen` is recorded.
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

fn counters() -> (u64, u64) {
    STATE.with(|s| (s.activity.get(), s.starts.get()))
}

/// The adaptive window: haltpoll's grow/shrink rule over the idle gap before each request.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    max_ns: u64,
    cur_ns: u64,
}

impl Window {
    pub fn new(max: Duration) -> Window {
        Window {
            max_ns: max.as_nanos().min(u64::MAX as u128) as u64,
            cur_ns: 0,
        }
    }

    pub fn current(&self) -> Duration {
        Duration::from_nanos(self.cur_ns)
    }

    /// A request started after the core was idle for `gap`.
    pub fn observe(&mut self, gap: Duration) {
        let gap = gap.as_nanos().min(u64::MAX as u128) as u64;
        if gap <= self.max_ns {
            // A window of at most max would have caught it: poll longer.
            self.cur_ns = if self.cur_ns == 0 {
                self.max_ns / 4
            } else {
                (self.cur_ns * 2).min(self.max_ns)
            };
        } else {
            // Polling would only have burnt CPU: poll less, down to not at all.
            self.cur_ns /= 2;
            if self.cur_ns < self.max_ns / 8 {
                self.cur_ns = 0;
            }
        }
    }
}

/// The spinner task of one core; runs forever. `mode` must not be `Off`.
pub async fn run(mode: Mode) {
    let (fixed, mut window) = match mode {
        Mode::Off => return,
        Mode::Fixed(d) => (Some(d), Window::new(d)),
        Mode::Adaptive(max) => (None, Window::new(max)),
    };
    STATE.with(|s| s.enabled.set(true));
    // When the core last saw a request start or end.
    let mut last = Instant::now();
    let (mut seen, mut seen_starts) = counters();
    loop {
        Parked(seen).await;
        // The request that woke the spinner may already wait far away (it ran up to its
        // upstream write before the spinner's turn): then no window at all.
        let cut = take_cut();
        let now = Instant::now();
        let (act, starts) = counters();
        if starts != seen_starts {
            window.observe(now - last);
        }
        (seen, seen_starts, last) = (act, starts, now);
        if cut {
            continue;
        }
        let span = match fixed {
            Some(d) => d,
            None => window.current(),
        };
        if span.is_zero() {
            continue;
        }
        let mut deadline = now + span;
        loop {
            yield_now().await;
            let cut = take_cut();
            let (act, starts) = counters();
            let now = Instant::now();
            if cut {
                // Every request seen so far is answered or waits far away: park.
                (seen, seen_starts) = (act, starts);
                break;
            }
            if act != seen {
                if starts != seen_starts && fixed.is_none() {
                    window.observe(now - last);
                }
                (seen, seen_starts, last) = (act, starts, now);
                let span = match fixed {
                    Some(d) => d,
                    None => window.current(),
                };
                if span.is_zero() {
                    break;
                }
                deadline = now + span;
            } else if now >= deadline {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_grows_with_short_gaps_and_shrinks_to_zero() {
        let us = Duration::from_micros;
        let mut w = Window::new(us(200));
        assert_eq!(w.current(), us(0));
        w.observe(us(60));
        assert_eq!(w.current(), us(50));
        w.observe(us(60));
        w.observe(us(60));
        assert_eq!(w.current(), us(200));
        w.observe(us(60));
        assert_eq!(w.current(), us(200), "never above max");
        w.observe(Duration::from_millis(10));
        assert_eq!(w.current(), us(100));
        w.observe(Duration::from_millis(10));
        assert_eq!(w.current(), us(50));
        w.observe(Duration::from_millis(10));
        assert_eq!(w.current(), us(25));
        w.observe(Duration::from_millis(10));
        assert_eq!(w.current(), us(0), "below max/8 is off");
        w.observe(Duration::from_secs(1));
        assert_eq!(w.current(), us(0));
    }

    #[test]
    fn flags_pick_the_mode() {
        assert_eq!(Mode::from_flags(0, 0), Mode::Off);
        assert_eq!(
            Mode::from_flags(50, 200),
            Mode::Fixed(Duration::from_micros(50))
        );
        assert_eq!(
            Mode::from_flags(0, 200),
            Mode::Adaptive(Duration::from_micros(200))
        );
    }
}
