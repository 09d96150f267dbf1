//! Latency histograms and the report printed (or emitted as JSON) for each phase.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

pub struct Hist {
    pub h: Histogram<u64>,
    pub bytes: u64,
    pub errors: u64,
}

impl Default for Hist {
    fn default() -> Self {
        Self::new()
    }
}

impl Hist {
    pub fn new() -> Self {
        // nanoseconds, 1 ns .. 1 hour, 3 significant digits
        Hist {
            h: Histogram::new_with_bounds(1, 3_600_000_000_000, 3).unwrap(),
            bytes: 0,
            errors: 0,
        }
    }
    pub fn record(&mut self, d: Duration, bytes: u64) {
        self.h.saturating_record(d.as_nanos().max(1) as u64);
        self.bytes += bytes;
    }
    pub fn merge(&mut self, o: &Hist) {
        self.h.add(&o.h).unwrap();
        self.bytes += o.bytes;
        self.errors += o.errors;
    }
    pub fn report(&self, name: &str, elapsed: Duration) -> Report {
        let us = |q: f64| self.h.value_at_quantile(q) as f64 / 1000.0;
        let n = self.h.len();
        let secs = elapsed.as_secs_f64().max(1e-9);
        Report {
            name: name.to_string(),
            count: n,
            errors: self.errors,
            elapsed_s: secs,
            req_per_s: n as f64 / secs,
            mb_per_s: self.bytes as f64 / secs / 1e6,
            bytes: self.bytes,
            min_us: if n > 0 {
                self.h.min() as f64 / 1000.0
            } else {
                0.0
            },
            mean_us: if n > 0 { self.h.mean() / 1000.0 } else { 0.0 },
            p50_us: us(0.5),
            p90_us: us(0.9),
            p99_us: us(0.99),
            p999_us: us(0.999),
            max_us: if n > 0 {
                self.h.max() as f64 / 1000.0
            } else {
                0.0
            },
            extra: None,
        }
    }
}

#[derive(Serialize, Clone)]
pub struct Report {
    pub name: String,
    pub count: u64,
    pub errors: u64,
    pub elapsed_s: f64,
    pub req_per_s: f64,
    pub mb_per_s: f64,
    pub bytes: u64,
    pub min_us: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra: Option<serde_json::Value>,
}

pub fn header() -> String {
    format!(
        "{:<22} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>6}",
        "phase", "count", "req/s", "MB/s", "min", "p50", "p90", "p99", "p99.9", "max", "errors"
    )
}

impl Report {
    pub fn line(&self) -> String {
        format!(
            "{:<22} {:>9} {:>10.0} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10.1} {:>6}",
            self.name,
            self.count,
            self.req_per_s,
            self.mb_per_s,
            self.min_us,
            self.p50_us,
            self.p90_us,
            self.p99_us,
            self.p999_us,
            self.max_us,
            self.errors
        )
    }
}

/// Print reports as a table (latencies in µs) or as one JSON document.
pub fn emit(json: bool, meta: serde_json::Value, reports: &[Report]) {
    if json {
        let doc = serde_json::json!({ "meta": meta, "reports": reports });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap());
    } else {
        println!("{}", header());
        for r in reports {
            println!("{}", r.line());
        }
        for r in reports {
            if let Some(e) = &r.extra {
                println!("{}: {}", r.name, e);
            }
        }
        println!("(latencies in µs)");
    }
}
