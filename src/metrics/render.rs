//! The exposition: Prometheus text format 0.0.4, or OpenMetrics 1.0.0 text when asked for.
//! Server counters come from every core's `CoreMetrics`; engine counters from each shard,
//! asked on the core that owns it (one hop per shard per scrape, bounded by a timeout).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bale_io::stats::{HistSnapshot, LATENCY_BOUNDS_NS};
use bale_io::ShardStats;

use super::{totals, ERROR_CODES, OP_NAMES, STATUSES};
use crate::router::{self, Topology};

/// Longest wait for one shard's counters; a shard that does not answer in time is left out of
/// this scrape and counted in `bale_scrape_shards_missing`.
pub const SHARD_STATS_TIMEOUT_MS: u64 = 2_000;

/// Which text format to write.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    Prometheus,
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

struct Out {
    s: String,
    fmt: Format,
}

impl Out {
    /// `# HELP` and `# TYPE` of a family. A counter's family name drops `_total` in
    /// OpenMetrics (its samples keep it).
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let fam = match (self.fmt, kind) {
            (Format::OpenMetrics, "counter") => name.strip_suffix("_total").unwrap_or(name),
            _ => name,
        };
        let _ = writeln!(self.s, "# HELP {fam} {help}");
        let _ = writeln!(self.s, "# TYPE {fam} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, v: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.s, "{name} {v}");
        } else {
            let _ = writeln!(self.s, "{name}{{{labels}}} {v}");
        }
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, v: u64) {
        self.family(name, kind, help);
        self.sample(name, "", v);
    }

    /// Cumulative `_bucket` lines, `_sum` and `_count` from per-bucket counts. `scale` turns a
    /// bound and the sum into the exported unit (1e9 for ns to seconds).
    fn histogram(
        &mut self,
        name: &str,
        labels: &str,
        bounds: &[u64],
        counts: &[u64],
        sum: u64,
        scale: f64,
    ) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cum = 0u64;
        for (i, c) in counts.iter().enumerate() {
            cum += c;
            let le = match bounds.get(i) {
                Some(&b) => float(b as f64 / scale),
                None => "+Inf".to_string(),
            };
            let _ = writeln!(self.s, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cum}");
        }
        self.sample(&format!("{name}_sum"), labels, float(sum as f64 / scale));
        self.sample(&format!("{name}_count"), labels, cum);
    }
}

/// A float as both formats accept it, always with a decimal point or exponent ("1.0").
fn float(v: f64) -> String {
    let s = format!("{v}");
    if s.contains(['.', 'e', 'E']) || s.contains("inf") || s.contains("NaN") {
        s
    } else {
        s + ".0"
    }
}

/// Asks every shard for its counters, concurrently, each bounded by the timeout.
async fn shard_stats(topo: &Arc<Topology>) -> Vec<Option<ShardStats>> {
    let asks = (0..topo.shard_count).map(|id| {
        let topo = topo.clone();
        async move {
            let ask = router::on_shard(&topo, id, |s| async move { s.stats() });
            match monoio::time::timeout(Duration::from_millis(SHARD_STATS_TIMEOUT_MS), ask).await {
                Ok(Ok(st)) => Some(st),
                Ok(Err(e)) => {
                    tracing::warn!(shard = id, error = %e, "metrics: shard did not answer");
                    None
                }
                Err(_) => {
                    tracing::warn!(shard = id, "metrics: shard stats timed out");
                    None
                }
            }
        }
    });
    futures::future::join_all(asks).await
}

/// Renders everything `GET /metrics` answers.
pub async fn render(topo: &Arc<Topology>, fmt: Format) -> String {
    let shards = shard_stats(topo).await;
    let mut o = Out {
        s: String::with_capacity(64 * 1024),
        fmt,
    };
    server_section(&mut o, topo);
    if crate::gateway::get().is_some() {
        gateway_section(&mut o);
    }
    engine_section(&mut o, &shards);
    if fmt == Format::OpenMetrics {
        o.s.push_str("# EOF\n");
    }
    o.s
}

/// Gateway mode (docs/gateway.md "Metrics"): hits, fills, the local tier's S3-FIFO queues,
/// and every request bale sent to the upstream.
fn gateway_section(o: &mut Out) {
    use super::gateway::{GATEWAY, UP_OPS, UP_OUTCOMES};
    use crate::gateway::local::TIER;
    use std::sync::atomic::Ordering::Relaxed;
    let ld = |a: &std::sync::atomic::AtomicU64| a.load(Relaxed);
    let g = &GATEWAY;
    o.one(
        "bale_gateway_hits_total",
        "counter",
        "Reads answered from a local whole-object entry (the fast path's hits included).",
        totals().gateway_hits,
    );
    o.one(
        "bale_gateway_misses_total",
        "counter",
        "Local entries filled from upstream reads (a whole object, or one block of a big one).",
        ld(&g.fills),
    );
    o.one(
        "bale_gateway_fill_bytes_total",
        "counter",
        "Bytes of the local entries filled from upstream reads.",
        ld(&g.fill_bytes),
    );
    o.one(
        "bale_gateway_kept_write_bytes_total",
        "counter",
        "Bytes of write-through bodies kept locally after the upstream acknowledged them.",
        ld(&g.kept_write_bytes),
    );
    o.family(
        "bale_gateway_upstream_requests_total",
        "counter",
        "Requests sent to the upstream, by method and outcome (status class, or error: no answer).",
    );
    let mut no_answer = 0;
    for (op, row) in g.upstream_requests.iter().enumerate() {
        for (oi, a) in row.iter().enumerate() {
            let n = ld(a);
            if oi == UP_OUTCOMES.len() - 1 {
                no_answer += n;
            }
            if n > 0 {
                o.sample(
                    "bale_gateway_upstream_requests_total",
                    &format!("op=\"{}\",outcome=\"{}\"", UP_OPS[op], UP_OUTCOMES[oi]),
                    n,
                );
            }
        }
    }
    o.one(
        "bale_gateway_upstream_errors_total",
        "counter",
        "Upstream requests that got no answer (refused, reset, timed out, TLS refused).",
        no_answer,
    );
    o.family(
        "bale_gateway_upstream_duration_seconds",
        "histogram",
        "Time from sending an upstream request to its answer head (or to giving up).",
    );
    let counts: Vec<u64> = g.upstream_latency.iter().map(ld).collect();
    o.histogram(
        "bale_gateway_upstream_duration_seconds",
        "",
        LATENCY_BOUNDS_NS,
        &counts,
        ld(&g.upstream_latency_sum_ns),
        1e9,
    );
    o.one(
        "bale_gateway_evictions_total",
        "counter",
        "Local entries evicted by the S3-FIFO queues.",
        ld(&TIER.evictions),
    );
    o.one(
        "bale_gateway_evicted_bytes_total",
        "counter",
        "Bytes of the local entries evicted.",
        ld(&TIER.evicted_bytes),
    );
    o.one(
        "bale_gateway_ghost_hits_total",
        "counter",
        "Fills admitted straight to the main queue (their key was recently evicted).",
        ld(&TIER.ghost_hits),
    );
    o.one(
        "bale_gateway_local_bytes",
        "gauge",
        "Bytes of the local entries the S3-FIFO queues count (after a start: from the shard's first fill on).",
        ld(&TIER.bytes),
    );
    o.one(
        "bale_gateway_local_entries",
        "gauge",
        "Local entries the S3-FIFO queues count.",
        ld(&TIER.entries),
    );
    // Where misses' time goes (docs/gateway.md "Metrics", src/gateway/stages.rs).
    use crate::gateway::stages;
    o.family(
        "bale_gateway_miss_stage_seconds",
        "summary",
        "Stages of gateway misses and upstream requests (1 µs resolution).",
    );
    for s in stages::summaries() {
        let l = format!("stage=\"{}\"", s.stage);
        for (q, v) in s.quantiles {
            o.sample(
                "bale_gateway_miss_stage_seconds",
                &format!("{l},quantile=\"{q}\""),
                float(v),
            );
        }
        o.sample("bale_gateway_miss_stage_seconds_sum", &l, float(s.sum_s));
        o.sample("bale_gateway_miss_stage_seconds_count", &l, s.count);
    }
    o.one(
        "bale_gateway_upstream_sent_during_fill_total",
        "counter",
        "Upstream requests sent while a fill was being stored locally.",
        ld(&stages::SENT_DURING_FILL),
    );
}

fn server_section(o: &mut Out, topo: &Topology) {
    let t = totals();
    o.family(
        "bale_build_info",
        "gauge",
        "The running bale's version (always 1).",
    );
    o.sample(
        "bale_build_info",
        &format!("version=\"{}\"", env!("CARGO_PKG_VERSION")),
        1,
    );
    o.one(
        "bale_cores",
        "gauge",
        "Cores serving (one pinned thread each).",
        topo.core_count as u64,
    );
    o.one(
        "bale_shards",
        "gauge",
        "Engine shards.",
        topo.shard_count as u64,
    );
    o.family(
        "bale_requests_total",
        "counter",
        "Requests answered, by S3 operation and HTTP status.",
    );
    for (op, row) in t.requests.iter().enumerate() {
        for (si, &n) in row.iter().enumerate() {
            if n > 0 {
                let status = match STATUSES[si] {
                    0 => "other".to_string(),
                    s => s.to_string(),
                };
                o.sample(
                    "bale_requests_total",
                    &format!("op=\"{}\",status=\"{status}\"", OP_NAMES[op]),
                    n,
                );
            }
        }
    }
    o.family(
        "bale_request_duration_seconds",
        "histogram",
        "Time from request head to response head, by S3 operation.",
    );
    for (op, counts) in t.latency.iter().enumerate() {
        if counts.iter().any(|&c| c > 0) {
            let labels = format!("op=\"{}\"", OP_NAMES[op]);
            o.histogram(
                "bale_request_duration_seconds",
                &labels,
                LATENCY_BOUNDS_NS,
                counts,
                t.latency_sum_ns[op],
                1e9,
            );
        }
    }
    o.family(
        "bale_s3_errors_total",
        "counter",
        "Error answers (4xx, 5xx) by S3 error code.",
    );
    for (i, &n) in t.errors.iter().enumerate() {
        if n > 0 {
            o.sample(
                "bale_s3_errors_total",
                &format!("code=\"{}\"", ERROR_CODES[i]),
                n,
            );
        }
    }
    o.one(
        "bale_bytes_received_total",
        "counter",
        "Bytes read from client connections (request heads and bodies).",
        t.bytes_in,
    );
    o.one(
        "bale_bytes_sent_total",
        "counter",
        "Bytes written to client connections (response heads and bodies).",
        t.bytes_out,
    );
    o.one(
        "bale_inflight_requests",
        "gauge",
        "Requests being served now.",
        t.inflight,
    );
    o.one(
        "bale_open_connections",
        "gauge",
        "Client connections open now.",
        t.connections,
    );
    o.one(
        "bale_connections_refused_total",
        "counter",
        "Connections closed at accept because the core's connection table was full.",
        t.connections_refused,
    );
}

/// One per-shard family: `f` picks the value from a shard's stats.
fn per_shard(
    o: &mut Out,
    shards: &[Option<ShardStats>],
    name: &str,
    kind: &str,
    help: &str,
    f: impl Fn(&ShardStats) -> Option<u64>,
) {
    o.family(name, kind, help);
    for (id, st) in shards.iter().enumerate() {
        if let Some(v) = st.as_ref().and_then(&f) {
            o.sample(name, &format!("shard=\"{id}\""), v);
        }
    }
}

fn per_shard_hist(
    o: &mut Out,
    shards: &[Option<ShardStats>],
    name: &str,
    help: &str,
    scale: f64,
    f: impl Fn(&ShardStats) -> &HistSnapshot,
) {
    o.family(name, "histogram", help);
    for (id, st) in shards.iter().enumerate() {
        if let Some(st) = st {
            let h = f(st);
            o.histogram(
                name,
                &format!("shard=\"{id}\""),
                h.bounds,
                &h.counts,
                h.sum,
                scale,
            );
        }
    }
}

/// A family with one value per shard (or, for `ALL_SHARDS`, one summed over shards).
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ShardStats) -> Option<u64>,
);

/// Engine families summed over every shard (no `shard` label).
const ALL_SHARDS: &[Family] = &[
    (
        "bale_cache_hits_total",
        "counter",
        "Object cache hits (all shards).",
        |s| Some(s.cache_hits),
    ),
    (
        "bale_cache_misses_total",
        "counter",
        "Object cache misses (all shards).",
        |s| Some(s.cache_misses),
    ),
    (
        "bale_cache_evictions_total",
        "counter",
        "Object cache entries evicted (all shards).",
        |s| Some(s.cache_evictions),
    ),
    (
        "bale_cache_bytes",
        "gauge",
        "Bytes held by the object cache (all shards).",
        |s| Some(s.cache_used_bytes),
    ),
    (
        "bale_cache_capacity_bytes",
        "gauge",
        "Object cache bound (all shards).",
        |s| Some(s.cache_capacity_bytes),
    ),
    (
        "bale_index_resident_bytes",
        "gauge",
        "Heap bytes of the index's key blocks in memory (all shards; ADR 29).",
        |s| Some(s.index_resident_bytes),
    ),
    (
        "bale_index_spill_bytes",
        "gauge",
        "Bytes of index spill files in use (--index-memory-mb; all shards).",
        |s| Some(s.index_spill_bytes),
    ),
    (
        "bale_index_spill_writes_total",
        "counter",
        "Index blocks written to a spill file (all shards).",
        |s| Some(s.index_spill_writes),
    ),
    (
        "bale_index_spill_reads_total",
        "counter",
        "Index blocks read back from a spill file (all shards).",
        |s| Some(s.index_spill_reads),
    ),
    (
        "bale_index_spill_errors_total",
        "counter",
        "Index block writes to a spill file that failed (the block stayed in memory).",
        |s| Some(s.index_spill_errors),
    ),
    (
        "bale_copy_failures_total",
        "counter",
        "Shard copies marked failed while serving (a read of one copy failed, another served it; ADR 19).",
        |s| Some(s.copy_failures),
    ),
    (
        "bale_stripes",
        "gauge",
        "Stripes of erasure-coded sealed volumes (all shards; ADR 19).",
        |s| Some(u64::from(s.stripes)),
    ),
    (
        "bale_stripe_files_lost",
        "gauge",
        "Stripe files (members or parity) missing or failed (all shards; ADR 19).",
        |s| Some(u64::from(s.stripe_files_lost)),
    ),
    (
        "bale_degraded_reads_total",
        "counter",
        "Reads decoded from a stripe's other files because the member was lost (ADR 19).",
        |s| Some(s.degraded_reads),
    ),
    (
        "bale_stripe_encoded_bytes_total",
        "counter",
        "Bytes of sealed volumes encoded into stripes since start (ADR 19).",
        |s| Some(s.stripe_encoded_bytes),
    ),
    (
        "bale_rebuild_pending_files",
        "gauge",
        "Lost stripe files queued for the rebuild while serving and not yet rebuilt (ADR 19).",
        |s| Some(u64::from(s.rebuild_pending_files)),
    ),
    (
        "bale_rebuild_pending_bytes",
        "gauge",
        "Bytes of lost stripe files still to rebuild in the running passes (ADR 19).",
        |s| Some(s.rebuild_pending_bytes),
    ),
    (
        "bale_rebuild_files_total",
        "counter",
        "Lost stripe files rebuilt while serving since start (ADR 19).",
        |s| Some(s.rebuilt_files),
    ),
    (
        "bale_rebuild_bytes_total",
        "counter",
        "Bytes of lost stripe files rebuilt while serving since start (ADR 19).",
        |s| Some(s.rebuilt_bytes),
    ),
    (
        "bale_rebuild_failures_total",
        "counter",
        "Stripe file rebuilds that failed (the file stays degraded until the next start; ADR 19).",
        |s| Some(s.rebuild_failures),
    ),
];

/// Engine families with a `shard` label.
const PER_SHARD: &[Family] = &[
    ("bale_shard_objects", "gauge", "Objects stored.", |s| {
        Some(s.objects)
    }),
    (
        "bale_shard_live_bytes",
        "gauge",
        "Bytes of live records in volumes.",
        |s| Some(s.live_bytes),
    ),
    (
        "bale_shard_volume_bytes",
        "gauge",
        "Bytes of all volume files.",
        |s| Some(s.disk_bytes),
    ),
    (
        "bale_shard_garbage_bytes",
        "gauge",
        "Volume bytes compaction could reclaim.",
        |s| Some(s.garbage_bytes),
    ),
    ("bale_shard_volumes", "gauge", "Volume files.", |s| {
        Some(u64::from(s.volumes))
    }),
    (
        "bale_shard_copies_live",
        "gauge",
        "Live copies of the shard (fewer than bale_shard_copies_wanted: writes refused).",
        |s| Some(u64::from(s.copies_live)),
    ),
    (
        "bale_shard_copies_wanted",
        "gauge",
        "Copies a write must reach (1 + m of the redundancy).",
        |s| Some(u64::from(s.copies_wanted)),
    ),
    (
        "bale_shard_journal_bytes",
        "gauge",
        "Size of the journal (trimmed at checkpoints).",
        |s| Some(s.journal_bytes),
    ),
    (
        "bale_shard_free_bytes",
        "gauge",
        "Free bytes on the shard's filesystem.",
        |s| s.free_bytes,
    ),
    (
        "bale_shard_reserve_bytes",
        "gauge",
        "Free space PUTs may not fill (--disk-reserve-mb).",
        |s| Some(s.reserve_bytes),
    ),
    (
        "bale_shard_reserve_refusals_total",
        "counter",
        "Allocations refused to keep the reserve.",
        |s| Some(s.reserve_refusals),
    ),
    (
        "bale_shard_corrupt_reads_total",
        "counter",
        "Reads that found a CRC mismatch.",
        |s| Some(s.corrupt_reads),
    ),
    (
        "bale_shard_commits_total",
        "counter",
        "Journal entries committed.",
        |s| Some(s.commits),
    ),
    (
        "bale_shard_punched_bytes_total",
        "counter",
        "Dead record bytes given back by hole punching.",
        |s| Some(s.punched_bytes),
    ),
    (
        "bale_device_read_bytes_total",
        "counter",
        "Bytes read from volumes with O_DIRECT.",
        |s| Some(s.device_read_bytes),
    ),
    (
        "bale_shard_compaction_passes_total",
        "counter",
        "Compaction passes finished.",
        |s| Some(s.background.compact_passes),
    ),
    (
        "bale_shard_compaction_volumes_total",
        "counter",
        "Volumes compacted.",
        |s| Some(s.background.compact_volumes),
    ),
    (
        "bale_shard_compaction_records_moved_total",
        "counter",
        "Records copied by compaction.",
        |s| Some(s.background.compact_records_moved),
    ),
    (
        "bale_shard_compaction_reclaimed_bytes_total",
        "counter",
        "Bytes compaction gave back.",
        |s| Some(s.background.compact_bytes_reclaimed),
    ),
    (
        "bale_shard_compaction_running",
        "gauge",
        "1 while a compaction pass runs.",
        |s| Some(u64::from(s.background.compact_running)),
    ),
    (
        "bale_shard_scrub_passes_total",
        "counter",
        "Scrub passes finished.",
        |s| Some(s.background.scrub_passes),
    ),
    (
        "bale_shard_scrub_objects_checked_total",
        "counter",
        "Objects whose every block the scrub verified.",
        |s| Some(s.background.scrub_objects_checked),
    ),
    (
        "bale_shard_scrub_checked_bytes_total",
        "counter",
        "Bytes the scrub verified (grows during a pass).",
        |s| Some(s.background.scrub_bytes_checked),
    ),
    (
        "bale_shard_scrub_corrupt_objects_total",
        "counter",
        "Objects the scrub found corrupt.",
        |s| Some(s.background.scrub_corrupt_objects),
    ),
    (
        "bale_shard_scrub_stripes_checked_total",
        "counter",
        "Stripes whose parity the scrub checked against their members (erasure coding).",
        |s| Some(s.background.scrub_stripes_checked),
    ),
    (
        "bale_shard_scrub_bad_stripes_total",
        "counter",
        "Stripes whose parity the scrub found not matching their members.",
        |s| Some(s.background.scrub_bad_stripes),
    ),
    (
        "bale_shard_scrub_running",
        "gauge",
        "1 while a scrub pass runs.",
        |s| Some(u64::from(s.background.scrub_running)),
    ),
];

/// Engine histograms with a `shard` label: (name, help, scale to the exported unit, pick).
type HistFamily = (
    &'static str,
    &'static str,
    f64,
    fn(&ShardStats) -> &HistSnapshot,
);

const PER_SHARD_HISTOGRAMS: &[HistFamily] = &[
    (
        "bale_device_read_duration_seconds",
        "O_DIRECT read latency (foreground, compaction and scrub reads).",
        1e9,
        |s| &s.device_reads,
    ),
    (
        "bale_fsync_duration_seconds",
        "Journal fdatasync latency (one per group commit).",
        1e9,
        |s| &s.journal_fsync,
    ),
    (
        "bale_group_commit_batch_entries",
        "Journal entries made durable by one fdatasync.",
        1.0,
        |s| &s.group_commit_entries,
    ),
];

fn engine_section(o: &mut Out, shards: &[Option<ShardStats>]) {
    let missing = shards.iter().filter(|s| s.is_none()).count() as u64;
    o.one(
        "bale_scrape_shards_missing",
        "gauge",
        "Shards that did not answer this scrape in time.",
        missing,
    );
    for (name, kind, help, f) in ALL_SHARDS {
        let v = shards.iter().flatten().filter_map(f).sum::<u64>();
        o.one(name, kind, help, v);
    }
    for (name, kind, help, f) in PER_SHARD {
        per_shard(o, shards, name, kind, help, f);
    }
    for (name, help, scale, f) in PER_SHARD_HISTOGRAMS {
        per_shard_hist(o, shards, name, help, *scale, f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_have_a_point() {
        assert_eq!(float(25_000.0 / 1e9), "0.000025");
        assert_eq!(float(1.0), "1.0");
        assert_eq!(float(2.5), "2.5");
        assert_eq!(float(10.0), "10.0");
    }

    #[test]
    fn histogram_lines_are_cumulative() {
        let mut o = Out {
            s: String::new(),
            fmt: Format::OpenMetrics,
        };
        o.histogram("h", "op=\"x\"", &[1, 2], &[1, 0, 2], 7, 1.0);
        assert_eq!(
            o.s,
            "h_bucket{op=\"x\",le=\"1.0\"} 1\nh_bucket{op=\"x\",le=\"2.0\"} 1\nh_bucket{op=\"x\",le=\"+Inf\"} 3\nh_sum{op=\"x\"} 7.0\nh_count{op=\"x\"} 3\n"
        );
        let mut o = Out {
            s: String::new(),
            fmt: Format::OpenMetrics,
        };
        o.family("c_total", "counter", "help");
        assert_eq!(o.s, "# HELP c help\n# TYPE c counter\n");
    }
}
