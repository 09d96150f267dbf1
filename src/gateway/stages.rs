//! Where a miss's time goes (issue 15, part 5): per-stage durations of gateway misses and of
//! upstream requests, kept in fine histograms (1 µs buckets up to [`MAX_US`]) and shown by
//! `/metrics` as the summary `bale_gateway_miss_stage_seconds{stage,quantile}` (p50, p90,
//! p99, `_sum`, `_count`). Means add up (a miss's `hook` = `hop` + `prepare` + the hop back);
//! quantiles of stages do not.
//!
//! Recording is one `Instant::now()` per stage boundary and two relaxed `fetch_add`s: nothing
//! on the hit path (only misses and upstream requests pass here).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// Longest duration kept in its own 1 µs bucket; longer ones share the overflow bucket (their
/// quantile reads as `MAX_US`, their sum stays exact).
pub const MAX_US: usize = 8191;

/// The stages, in the order a miss passes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The fast path's hook, from its entry to the answer built (a miss's whole time in bale
    /// but the front's parse, signature check and answer write).
    Hook,
    /// From the hook asking the key's owner core to `prepare` running there.
    Hop,
    /// `prepare` on the owner core, from its start to its decision.
    Prepare,
    /// Waiting for the key's single flight (a whole-object miss).
    Flight,
    /// Upstream request: canonical request, SigV4 signature, request head written out.
    Sign,
    /// Upstream request: a pooled connection taken, or a new one connected.
    Conn,
    /// Upstream request: the request written to the socket.
    Write,
    /// Upstream request: request written → answer head parsed (the upstream's own time, and
    /// the wake-up).
    Upstream,
    /// A small miss's body read after its head.
    Body,
    /// A ranged miss: answer head → the requested bytes arrived.
    RangeBytes,
    /// A fill's local store (O_DIRECT write, durable commit), in the background after the
    /// answer.
    Fill,
}

pub const STAGES: [Stage; 11] = [
    Stage::Hook,
    Stage::Hop,
    Stage::Prepare,
    Stage::Flight,
    Stage::Sign,
    Stage::Conn,
    Stage::Write,
    Stage::Upstream,
    Stage::Body,
    Stage::RangeBytes,
    Stage::Fill,
];

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Hook => "hook",
            Stage::Hop => "hop",
            Stage::Prepare => "prepare",
            Stage::Flight => "flight",
            Stage::Sign => "sign",
            Stage::Conn => "conn",
            Stage::Write => "write",
            Stage::Upstream => "upstream",
            Stage::Body => "body",
            Stage::RangeBytes => "range_bytes",
            Stage::Fill => "fill",
        }
    }
}

struct Hist {
    counts: [AtomicU64; MAX_US + 1],
    sum_ns: AtomicU64,
    n: AtomicU64,
}

static HISTS: [Hist; STAGES.len()] = [const {
    Hist {
        counts: [const { AtomicU64::new(0) }; MAX_US + 1],
        sum_ns: AtomicU64::new(0),
        n: AtomicU64::new(0),
    }
}; STAGES.len()];

/// Upstream requests sent while a fill of this process was still being stored (the fill's
/// write and commit then share the core with the request's wake-ups).
pub static SENT_DURING_FILL: AtomicU64 = AtomicU64::new(0);
/// Fills being stored now.
pub static FILLS_IN_FLIGHT: AtomicU64 = AtomicU64::new(0);

/// Records `ns` for `stage`.
pub fn record_ns(stage: Stage, ns: u64) {
    let h = &HISTS[stage as usize];
    let us = ((ns / 1_000) as usize).min(MAX_US);
    h.counts[us].fetch_add(1, Relaxed);
    h.sum_ns.fetch_add(ns, Relaxed);
    h.n.fetch_add(1, Relaxed);
}

/// Records the time since `from` for `stage`; returns now (the next stage's start).
pub fn since(stage: Stage, from: Instant) -> Instant {
    let now = Instant::now();
    record_ns(stage, now.saturating_duration_since(from).as_nanos() as u64);
    now
}

/// A fill being stored: counted in [`FILLS_IN_FLIGHT`] while it lives, its duration recorded
/// as [`Stage::Fill`] when dropped.
pub struct FillTimer(Instant);

impl FillTimer {
    pub fn start() -> FillTimer {
        FILLS_IN_FLIGHT.fetch_add(1, Relaxed);
        FillTimer(Instant::now())
    }
}

impl Drop for FillTimer {
    fn drop(&mut self) {
        FILLS_IN_FLIGHT.fetch_sub(1, Relaxed);
        since(Stage::Fill, self.0);
    }
}

/// An upstream request is being sent: counts it in [`SENT_DURING_FILL`] if a fill is running.
pub fn sending() {
    if FILLS_IN_FLIGHT.load(Relaxed) > 0 {
        SENT_DURING_FILL.fetch_add(1, Relaxed);
    }
}

/// One stage's numbers: quantiles in seconds, the sum in seconds, the count.
pub struct Summary {
    pub stage: &'static str,
    pub quantiles: [(f64, f64); 3],
    pub sum_s: f64,
    pub count: u64,
}

/// The quantiles shown.
pub const QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];

/// Every stage's summary (stages with no sample included, as zeros).
pub fn summaries() -> Vec<Summary> {
    STAGES
        .iter()
        .map(|&s| {
            let h = &HISTS[s as usize];
            let counts: Vec<u64> = h.counts.iter().map(|c| c.load(Relaxed)).collect();
            Summary {
                stage: s.name(),
                quantiles: QUANTILES.map(|q| (q, quantile_us(&counts, q) as f64 / 1e6)),
                sum_s: h.sum_ns.load(Relaxed) as f64 / 1e9,
                count: h.n.load(Relaxed),
            }
        })
        .collect()
}

/// The `q` quantile of 1 µs buckets, µs (the bucket's upper edge; 0 with no sample).
fn quantile_us(counts: &[u64], q: f64) -> u64 {
    let n: u64 = counts.iter().sum();
    if n == 0 {
        return 0;
    }
    let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
    let mut seen = 0u64;
    for (us, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return us as u64 + 1;
        }
    }
    MAX_US as u64 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_buckets() {
        let mut c = vec![0u64; MAX_US + 1];
        assert_eq!(quantile_us(&c, 0.5), 0);
        c[10] = 50;
        c[20] = 49;
        c[MAX_US] = 1;
        assert_eq!(quantile_us(&c, 0.5), 11);
        assert_eq!(quantile_us(&c, 0.9), 21);
        assert_eq!(quantile_us(&c, 0.99), 21);
        assert_eq!(quantile_us(&c, 1.0), MAX_US as u64 + 1);
    }

    #[test]
    fn records_add_up() {
        let before = summaries()[Stage::Conn as usize].count;
        record_ns(Stage::Conn, 3_500);
        record_ns(Stage::Conn, 10_000_000_000); // past MAX_US: the overflow bucket
        let s = &summaries()[Stage::Conn as usize];
        assert_eq!(s.stage, "conn");
        assert_eq!(s.count, before + 2);
        assert!(s.sum_s >= 10.0);
        {
            let _f = FillTimer::start();
            assert!(FILLS_IN_FLIGHT.load(Relaxed) >= 1);
            let sent = SENT_DURING_FILL.load(Relaxed);
            sending();
            assert!(SENT_DURING_FILL.load(Relaxed) > sent);
        }
    }
}
