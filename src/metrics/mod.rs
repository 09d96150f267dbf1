//! Server metrics: each core owns one `CoreMetrics` and is its only writer; `GET /metrics`
//! reads every core's and adds them up (ADR 11). A counter is bumped with a `Relaxed` load and
//! store (no read-modify-write, no lock, nothing shared written between cores), so counting a
//! request costs a few plain moves into this core's own cache lines. Engine measurements
//! (cache, device reads, group commit, space, compaction, scrub) stay in the engine's shards
//! and are asked of each shard's core at scrape time (`render`).

pub mod endpoint;
pub mod gateway;
pub mod op;
pub mod render;

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Instant;

use bale_io::stats::{bucket_of, LATENCY_BOUNDS_NS};

pub use op::{classify, Op, N_OPS, OP_NAMES};

/// The operation a request is counted under (health and metrics requests by their own name).
#[inline]
pub fn op_of<B>(req: &http::Request<B>) -> Op {
    if endpoint::is_metrics_request(req.method(), req.uri()) {
        Op::Metrics
    } else if crate::http::is_health(req.uri().path()) {
        Op::Health
    } else {
        classify(req.method(), req.uri(), req.headers())
    }
}

/// HTTP statuses counted by value; any other is counted as `status="other"`.
pub const STATUSES: [u16; 25] = [
    200, 204, 206, 301, 304, 307, 400, 401, 403, 404, 405, 408, 409, 411, 412, 413, 416, 429, 431,
    500, 501, 502, 503, 504, 0,
];
const N_STATUS: usize = STATUSES.len();

/// S3 error codes counted by name; any other is counted as `code="Other"`.
pub const ERROR_CODES: [&str; 48] = [
    "AccessDenied",
    "AuthorizationHeaderMalformed",
    "AuthorizationQueryParametersError",
    "BadDigest",
    "BucketAlreadyExists",
    "BucketAlreadyOwnedByYou",
    "BucketNotEmpty",
    "ConditionalRequestConflict",
    "EntityTooLarge",
    "EntityTooSmall",
    "ExpiredToken",
    "IncompleteBody",
    "InternalError",
    "InvalidAccessKeyId",
    "InvalidArgument",
    "InvalidBucketName",
    "InvalidDigest",
    "InvalidObjectState",
    "InvalidPart",
    "InvalidPartOrder",
    "InvalidRange",
    "InvalidRequest",
    "InvalidStorageClass",
    "KeyTooLongError",
    "MalformedXML",
    "MaxMessageLengthExceeded",
    "MetadataTooLarge",
    "MethodNotAllowed",
    "MissingContentLength",
    "MissingSecurityHeader",
    "NoSuchBucket",
    "NoSuchKey",
    "NoSuchUpload",
    "NotFound",
    "NotImplemented",
    "NotModified",
    "PreconditionFailed",
    "RequestHeaderSectionTooLarge",
    "RequestTimeTooSkewed",
    "ServiceUnavailable",
    "SignatureDoesNotMatch",
    "SlowDown",
    "TooManyParts",
    "XAmzContentSHA256Mismatch",
    "XAmzContentChecksumMismatch",
    "Forbidden",
    "BadRequest",
    "Other",
];
const N_CODES: usize = ERROR_CODES.len();
const N_LAT: usize = LATENCY_BOUNDS_NS.len() + 1;

/// One core's counters. Aligned so two cores' counters never share a cache line.
#[repr(align(128))]
pub struct CoreMetrics {
    requests: [[AtomicU64; N_STATUS]; N_OPS],
    latency: [[AtomicU64; N_LAT]; N_OPS],
    latency_sum_ns: [AtomicU64; N_OPS],
    errors: [AtomicU64; N_CODES],
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    inflight: AtomicU64,
    connections: AtomicU64,
    connections_refused: AtomicU64,
    /// Gateway mode: reads answered from a local whole-object entry.
    gateway_hits: AtomicU64,
}

impl CoreMetrics {
    fn new() -> CoreMetrics {
        CoreMetrics {
            requests: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            latency: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            latency_sum_ns: std::array::from_fn(|_| AtomicU64::new(0)),
            errors: std::array::from_fn(|_| AtomicU64::new(0)),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            inflight: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            gateway_hits: AtomicU64::new(0),
        }
    }
}

/// Adds `n` to a counter only this thread writes: a plain load and store, no `lock` prefix.
#[inline]
fn add(a: &AtomicU64, n: u64) {
    a.store(a.load(Relaxed).wrapping_add(n), Relaxed);
}

static CORES: OnceLock<Box<[CoreMetrics]>> = OnceLock::new();

thread_local! {
    /// This thread's core's metrics (None on threads that serve no requests).
    static MINE: Cell<Option<&'static CoreMetrics>> = const { Cell::new(None) };
}

/// Makes room for `cores` cores; once per process (later calls keep the first size).
pub fn init(cores: usize) {
    CORES.get_or_init(|| (0..cores).map(|_| CoreMetrics::new()).collect());
}

/// Binds the calling thread to core `core`'s metrics (after `init`).
pub fn bind_core(core: usize) {
    let m = CORES.get().and_then(|c| c.get(core));
    MINE.with(|c| c.set(m));
}

/// Every core's metrics (empty before `init`).
pub fn cores() -> &'static [CoreMetrics] {
    CORES.get().map_or(&[], |c| c)
}

#[inline]
fn with_mine(f: impl FnOnce(&CoreMetrics)) {
    MINE.with(|c| {
        if let Some(m) = c.get() {
            f(m)
        }
    })
}

#[inline]
pub fn bytes_in(n: usize) {
    with_mine(|m| add(&m.bytes_in, n as u64));
}

#[inline]
pub fn bytes_out(n: usize) {
    with_mine(|m| add(&m.bytes_out, n as u64));
}

pub fn connection_opened() {
    with_mine(|m| add(&m.connections, 1));
}

pub fn connection_closed() {
    with_mine(|m| add(&m.connections, u64::MAX)); // wrapping -1
}

/// Gateway mode: a read answered from a local entry.
#[inline]
pub fn gateway_hit() {
    with_mine(|m| add(&m.gateway_hits, 1));
}

pub fn connection_refused() {
    with_mine(|m| add(&m.connections_refused, 1));
}

/// A request being timed: started by `RequestTimer::start`, ended by `finish`.
pub struct RequestTimer {
    op: Op,
    started: Instant,
}

impl RequestTimer {
    #[inline]
    pub fn start(op: Op) -> RequestTimer {
        with_mine(|m| add(&m.inflight, 1));
        RequestTimer {
            op,
            started: Instant::now(),
        }
    }

    pub fn op(&self) -> Op {
        self.op
    }

    pub fn elapsed_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    /// Counts the answer: status, latency, and for an error its S3 code (read from the XML
    /// body when there is one, else named after the status as SDKs do for a HEAD). The
    /// in-flight count drops when the timer does (also for a request whose client left and
    /// whose handler was dropped unfinished: that one is not counted as answered).
    #[inline]
    pub fn finish(self, resp: &http::Response<s3s::Body>) -> u64 {
        let ns = self.elapsed_ns();
        let status = resp.status().as_u16();
        let op = self.op as usize;
        with_mine(|m| {
            let si = STATUSES[..N_STATUS - 1]
                .iter()
                .position(|&s| s == status)
                .unwrap_or(N_STATUS - 1);
            add(&m.requests[op][si], 1);
            add(&m.latency[op][bucket_of(LATENCY_BOUNDS_NS, ns)], 1);
            add(&m.latency_sum_ns[op], ns);
            if status >= 400 {
                add(&m.errors[error_index(resp)], 1);
            }
        });
        ns
    }
}

impl Drop for RequestTimer {
    #[inline]
    fn drop(&mut self) {
        with_mine(|m| add(&m.inflight, u64::MAX)); // wrapping -1
    }
}

/// Index in `ERROR_CODES` of an error answer's code.
fn error_index(resp: &http::Response<s3s::Body>) -> usize {
    let other = N_CODES - 1;
    let code = resp.body().bytes().and_then(|b| {
        let at = find(&b, b"<Code>")? + 6;
        let len = find(&b[at..], b"</Code>")?;
        let code = std::str::from_utf8(&b[at..at + len]).ok()?;
        Some(ERROR_CODES.iter().position(|c| *c == code).unwrap_or(other))
    });
    code.unwrap_or_else(|| {
        let by_status = match resp.status().as_u16() {
            400 => "BadRequest",
            403 => "Forbidden",
            404 => "NotFound",
            412 => "PreconditionFailed",
            416 => "InvalidRange",
            500 => "InternalError",
            501 => "NotImplemented",
            503 => "SlowDown",
            _ => "Other",
        };
        ERROR_CODES
            .iter()
            .position(|c| *c == by_status)
            .unwrap_or(other)
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The sum over all cores of what `GET /metrics` shows from the server side.
pub struct Totals {
    pub requests: Vec<[u64; N_STATUS]>,
    pub latency: Vec<[u64; N_LAT]>,
    pub latency_sum_ns: [u64; N_OPS],
    pub errors: [u64; N_CODES],
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub inflight: u64,
    pub connections: u64,
    pub connections_refused: u64,
    pub gateway_hits: u64,
}

/// Reads every core's counters (each a `Relaxed` load) and adds them up.
pub fn totals() -> Totals {
    let mut t = Totals {
        requests: vec![[0; N_STATUS]; N_OPS],
        latency: vec![[0; N_LAT]; N_OPS],
        latency_sum_ns: [0; N_OPS],
        errors: [0; N_CODES],
        bytes_in: 0,
        bytes_out: 0,
        inflight: 0,
        connections: 0,
        connections_refused: 0,
        gateway_hits: 0,
    };
    let ld = |a: &AtomicU64| a.load(Relaxed);
    for c in cores() {
        for op in 0..N_OPS {
            for (s, a) in c.requests[op].iter().enumerate() {
                t.requests[op][s] += ld(a);
            }
            for (b, a) in c.latency[op].iter().enumerate() {
                t.latency[op][b] += ld(a);
            }
            t.latency_sum_ns[op] += ld(&c.latency_sum_ns[op]);
        }
        for (i, a) in c.errors.iter().enumerate() {
            t.errors[i] += ld(a);
        }
        t.bytes_in += ld(&c.bytes_in);
        t.bytes_out += ld(&c.bytes_out);
        // Gauges are differences of this core's own counts: never below zero per core.
        t.inflight += ld(&c.inflight);
        t.connections += ld(&c.connections);
        t.connections_refused += ld(&c.connections_refused);
        t.gateway_hits += ld(&c.gateway_hits);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(status: u16, body: &'static str) -> http::Response<s3s::Body> {
        let mut r =
            http::Response::new(s3s::Body::from(bytes::Bytes::from_static(body.as_bytes())));
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
        r
    }

    #[test]
    fn error_codes() {
        let name = |r| ERROR_CODES[error_index(&r)];
        assert_eq!(
            name(err(404, "<Error><Code>NoSuchKey</Code></Error>")),
            "NoSuchKey"
        );
        assert_eq!(name(err(400, "<Error><Code>Weird</Code></Error>")), "Other");
        assert_eq!(name(err(404, "")), "NotFound");
        assert_eq!(name(err(418, "")), "Other");
        assert_eq!(STATUSES[N_STATUS - 1], 0);
    }

    #[test]
    fn a_core_counts_its_requests() {
        init(2);
        bind_core(1);
        let before = totals();
        let t = RequestTimer::start(Op::GetObject);
        assert_eq!(totals().inflight, before.inflight + 1);
        t.finish(&err(404, "<Error><Code>NoSuchKey</Code></Error>"));
        let after = totals();
        let g = Op::GetObject as usize;
        let s404 = STATUSES.iter().position(|&s| s == 404).unwrap();
        assert_eq!(after.requests[g][s404], before.requests[g][s404] + 1);
        assert_eq!(
            after.latency[g].iter().sum::<u64>(),
            before.latency[g].iter().sum::<u64>() + 1
        );
        assert_eq!(after.inflight, before.inflight);
        let nk = ERROR_CODES.iter().position(|&c| c == "NoSuchKey").unwrap();
        assert_eq!(after.errors[nk], before.errors[nk] + 1);
    }
}
