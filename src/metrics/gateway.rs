//! Gateway mode's counters (issue 15, docs/gateway.md "Metrics"). Hits are counted per core
//! in `CoreMetrics` (the hit is the fast path); everything here happens once per upstream
//! round trip, fill or eviction, so plain process-wide atomics (`fetch_add`) are cheap enough.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bale_io::stats::{bucket_of, LATENCY_BOUNDS_NS};

/// Upstream request methods counted by name (`op` label); any other is `other`.
pub const UP_OPS: [&str; 6] = ["GET", "HEAD", "PUT", "POST", "DELETE", "other"];
/// What an upstream request came to (`outcome` label): the class of the answer's status, or
/// `error` when no answer came (refused, reset, timed out, TLS refused).
pub const UP_OUTCOMES: [&str; 5] = ["2xx", "3xx", "4xx", "5xx", "error"];
const N_LAT: usize = LATENCY_BOUNDS_NS.len() + 1;

pub struct GatewayMetrics {
    pub upstream_requests: [[AtomicU64; UP_OUTCOMES.len()]; UP_OPS.len()],
    pub upstream_latency: [AtomicU64; N_LAT],
    pub upstream_latency_sum_ns: AtomicU64,
    /// Local entries filled from upstream reads (a whole object, or one block of a big one).
    pub fills: AtomicU64,
    pub fill_bytes: AtomicU64,
    /// Write-through bodies kept locally after the upstream acknowledged them.
    pub kept_writes: AtomicU64,
    pub kept_write_bytes: AtomicU64,
}

pub static GATEWAY: GatewayMetrics = GatewayMetrics {
    upstream_requests: [const { [const { AtomicU64::new(0) }; UP_OUTCOMES.len()] }; UP_OPS.len()],
    upstream_latency: [const { AtomicU64::new(0) }; N_LAT],
    upstream_latency_sum_ns: AtomicU64::new(0),
    fills: AtomicU64::new(0),
    fill_bytes: AtomicU64::new(0),
    kept_writes: AtomicU64::new(0),
    kept_write_bytes: AtomicU64::new(0),
};

/// Index in `UP_OUTCOMES` of an answer's status (`None`: no answer).
pub fn outcome_index(status: Option<u16>) -> usize {
    match status {
        Some(200..=299) => 0,
        Some(300..=399) => 1,
        Some(400..=499) => 2,
        Some(_) => 3,
        None => 4,
    }
}

/// One upstream request that got an answer head with `status`, or none, after `ns`.
pub fn upstream_answered(method: &http::Method, status: Option<u16>, ns: u64) {
    let op = UP_OPS
        .iter()
        .position(|m| *m == method.as_str())
        .unwrap_or(UP_OPS.len() - 1);
    let g = &GATEWAY;
    g.upstream_requests[op][outcome_index(status)].fetch_add(1, Relaxed);
    g.upstream_latency[bucket_of(LATENCY_BOUNDS_NS, ns)].fetch_add(1, Relaxed);
    g.upstream_latency_sum_ns.fetch_add(ns, Relaxed);
}

/// A local entry of `bytes` filled from an upstream read.
pub fn filled(bytes: u64) {
    GATEWAY.fills.fetch_add(1, Relaxed);
    GATEWAY.fill_bytes.fetch_add(bytes, Relaxed);
}

/// A write-through body of `bytes` kept locally.
pub fn kept_write(bytes: u64) {
    GATEWAY.kept_writes.fetch_add(1, Relaxed);
    GATEWAY.kept_write_bytes.fetch_add(bytes, Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_and_ops() {
        assert_eq!(UP_OUTCOMES[outcome_index(Some(206))], "2xx");
        assert_eq!(UP_OUTCOMES[outcome_index(Some(304))], "3xx");
        assert_eq!(UP_OUTCOMES[outcome_index(Some(412))], "4xx");
        assert_eq!(UP_OUTCOMES[outcome_index(Some(503))], "5xx");
        assert_eq!(UP_OUTCOMES[outcome_index(None)], "error");
        let before = GATEWAY.upstream_requests[5][4].load(Relaxed);
        upstream_answered(&http::Method::OPTIONS, None, 1_000);
        assert_eq!(GATEWAY.upstream_requests[5][4].load(Relaxed), before + 1);
    }
}
