//! The connections of one core: how many there are, which are idle, and who goes when the
//! limit is reached.
//!
//! A core holds at most `max_connections_per_core` connections. When a new one arrives at the
//! limit, an idle connection makes room for it instead of the newcomer being turned away:
//! first one that never sent a complete request head (oldest first), then a keep-alive
//! connection with no request in flight that moved no bytes for `EVICT_MIN_IDLE` (least
//! recently active first). Only when every connection is busy is the newcomer refused; those
//! refusals are counted and logged at most once per `REFUSAL_LOG_INTERVAL`, never one line
//! each.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::http::REFUSAL_LOG_INTERVAL;

/// A keep-alive connection must have moved no bytes for this long before it can be evicted.
pub const EVICT_MIN_IDLE: Duration = Duration::from_secs(1);

/// One connection's state, shared by its task and the core's table.
pub struct ConnSlot {
    index: Cell<usize>,
    accepted_at: Instant,
    /// Request heads received on this connection.
    requests: Cell<u64>,
    /// Requests being handled now.
    busy: Cell<u32>,
    /// Last time bytes moved.
    last_active: Cell<Instant>,
    evicted: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl ConnSlot {
    /// (No clock read here: the bytes of the request and of its answer already move
    /// `last_active` through the connection's I/O wrapper.)
    pub fn request_started(&self) {
        self.requests.set(self.requests.get() + 1);
        self.busy.set(self.busy.get() + 1);
    }

    pub fn request_ended(&self) {
        debug_assert!(self.busy.get() > 0);
        self.busy.set(self.busy.get().saturating_sub(1));
    }

    /// Bytes moved (called by the connection's I/O wrapper with the time it already read).
    pub fn touched(&self, now: Instant) {
        self.last_active.set(now);
    }

    /// Resolves when the table evicted this connection.
    pub fn evicted(self: &Rc<Self>) -> Evicted {
        Evicted(self.clone())
    }

    fn evict(&self) {
        self.evicted.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }
}

pub struct Evicted(Rc<ConnSlot>);

impl Future for Evicted {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.evicted.get() {
            return Poll::Ready(());
        }
        *self.0.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// What `ConnTable::admit` decided.
pub enum Admit {
    /// Room was free.
    Admitted(Rc<ConnSlot>),
    /// An idle connection was closed to make room.
    Evicted(Rc<ConnSlot>),
    /// Every connection is busy: refuse the newcomer.
    Refused,
}

/// All connections of one core (a slab: a slot's index is stable while it lives).
pub struct ConnTable {
    max: usize,
    slots: Vec<Option<Rc<ConnSlot>>>,
    free: Vec<usize>,
    live: usize,
    refused_since_log: u64,
    evicted_since_log: u64,
    last_log: Option<Instant>,
}

impl ConnTable {
    pub fn new(max: usize) -> Self {
        assert!(max > 0, "connection limit must be positive");
        Self {
            max,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            refused_since_log: 0,
            evicted_since_log: 0,
            last_log: None,
        }
    }

    pub fn live(&self) -> usize {
        self.live
    }

    /// A new connection arrived: give it a slot, evicting an idle one if the core is full.
    pub fn admit(&mut self, core: usize) -> Admit {
        let now = Instant::now();
        let mut evicted = false;
        if self.live >= self.max {
            match self.victim(now) {
                Some(i) => {
                    let v = self.slots[i].take().expect("victim slot is live");
                    v.evict();
                    self.free.push(i);
                    self.live -= 1;
                    self.evicted_since_log += 1;
                    evicted = true;
                }
                None => {
                    self.refused_since_log += 1;
                    self.maybe_log(core, now);
                    return Admit::Refused;
                }
            }
        }
        let index = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let slot = Rc::new(ConnSlot {
            index: Cell::new(index),
            accepted_at: now,
            requests: Cell::new(0),
            busy: Cell::new(0),
            last_active: Cell::new(now),
            evicted: Cell::new(false),
            waker: RefCell::new(None),
        });
        debug_assert!(self.slots[index].is_none());
        self.slots[index] = Some(slot.clone());
        self.live += 1;
        assert!(self.live <= self.max);
        if evicted {
            self.maybe_log(core, now);
            Admit::Evicted(slot)
        } else {
            Admit::Admitted(slot)
        }
    }

    /// The connection ended (its task dropped it). A no-op for an evicted connection, whose
    /// slot was already given to another.
    pub fn release(&mut self, slot: &ConnSlot) {
        if slot.evicted.get() {
            return;
        }
        let i = slot.index.get();
        if self.slots[i]
            .as_ref()
            .is_some_and(|s| std::ptr::eq(Rc::as_ptr(s), slot))
        {
            self.slots[i] = None;
            self.free.push(i);
            self.live -= 1;
        }
    }

    /// Never sent a request (oldest first), else idle keep-alive (least recently active).
    fn victim(&self, now: Instant) -> Option<usize> {
        let mut fresh: Option<(Instant, usize)> = None;
        let mut idle: Option<(Instant, usize)> = None;
        for (i, s) in self.slots.iter().enumerate() {
            let Some(s) = s else { continue };
            if s.requests.get() == 0 {
                if fresh.is_none_or(|(t, _)| s.accepted_at < t) {
                    fresh = Some((s.accepted_at, i));
                }
            } else if s.busy.get() == 0
                && now.duration_since(s.last_active.get()) >= EVICT_MIN_IDLE
                && idle.is_none_or(|(t, _)| s.last_active.get() < t)
            {
                idle = Some((s.last_active.get(), i));
            }
        }
        fresh.or(idle).map(|(_, i)| i)
    }

    fn maybe_log(&mut self, core: usize, now: Instant) {
        if self
            .last_log
            .is_some_and(|t| now.duration_since(t) < REFUSAL_LOG_INTERVAL)
        {
            return;
        }
        tracing::warn!(
            core,
            limit = self.max,
            refused = self.refused_since_log,
            evicted_idle = self.evicted_since_log,
            "connection limit reached (counts since the last line)"
        );
        self.refused_since_log = 0;
        self.evicted_since_log = 0;
        self.last_log = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_connections_go_first_then_idle_then_refuse() {
        let mut t = ConnTable::new(2);
        let Admit::Admitted(a) = t.admit(0) else {
            panic!("room was free")
        };
        let Admit::Admitted(b) = t.admit(0) else {
            panic!("room was free")
        };
        a.request_started();
        // b never sent a request: it makes room.
        let Admit::Evicted(c) = t.admit(0) else {
            panic!("b should be evicted")
        };
        assert!(b.evicted.get() && !a.evicted.get());
        assert_eq!(t.live(), 2);
        // a busy, c fresh: c goes.
        assert!(matches!(t.admit(0), Admit::Evicted(_)));
        assert!(c.evicted.get());
        t.release(&b); // late drop of an evicted connection changes nothing
        assert_eq!(t.live(), 2);
    }

    #[test]
    fn busy_connections_refuse_newcomers() {
        let mut t = ConnTable::new(1);
        let Admit::Admitted(a) = t.admit(0) else {
            panic!()
        };
        a.request_started();
        assert!(matches!(t.admit(0), Admit::Refused));
        a.request_ended(); // idle, but not for EVICT_MIN_IDLE yet
        assert!(matches!(t.admit(0), Admit::Refused));
        a.last_active.set(Instant::now() - EVICT_MIN_IDLE);
        assert!(matches!(t.admit(0), Admit::Evicted(_)));
        t.release(&a);
        assert_eq!(t.live(), 1);
    }
}
