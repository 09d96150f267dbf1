//! Gateway mode (issue 15, docs/gateway.md, ADR 15): bale as a read-through / write-through
//! tier on local NVMe in front of an existing S3 (the upstream), which stays the source of
//! truth.
//!
//! - `upstream`: the signed S3 client bale uses to talk to the upstream (its endpoint, signing,
//!   the send loop).
//! - `exchange`: one request to it and its answer (`UpRequest`, `UpBody`, `UpResponse`).
//! - `pool`: its connections, kept alive per core, and opening new ones (TCP, TLS).
//! - `h1`: its lean HTTP/1.1 connection for plain-http upstreams (io_uring, no hyper task).
//! - `read`: GetObject / HeadObject: a hit is the ordinary local read (fast path included); a
//!   miss fills from the upstream (whole objects, or aligned blocks of big ones for ranges).
//! - `blocks`: big objects read by ranges, fetched and kept as aligned block entries.
//! - `manifest`: what each core knows of the objects it reads by blocks (ETag, size, headers).
//! - `hook`: the fast path's entry for GET/HEADs whose object is not local (block hits and
//!   misses answered on the front, without s3s).
//! - `route`: every other request (writes, LIST, buckets, multipart) goes upstream through an
//!   s3s custom route, after s3s checked the client's signature; writes invalidate the local
//!   copy first and keep the bytes after the upstream acknowledged them.
//! - `bigput`: PutObject bodies of unknown length over 64 MiB, streamed as a multipart upload.
//! - `flight`: single-flight fills, the fill slots and the bound on bytes awaiting a commit.
//! - `local`: the local tier's bookkeeping: block keys, the FIFO that bounds the tier, upstream
//!   metadata in engine metadata.
//! - `warm`: `bale warm s3://bucket/prefix`.
//!
//! The engine learns nothing of this: entries are ordinary engine objects (block entries under
//! hidden keys that LIST never shows, since LIST comes from the upstream).

pub mod bigput;
pub mod blocks;
pub mod exchange;
pub mod flight;
pub mod h1;
pub mod hook;
pub mod listcache;
pub mod local;
pub mod manifest;
pub mod pool;
pub mod read;
pub mod route;
pub mod stages;
pub mod stream;
pub mod upstream;
pub mod warm;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::config::ServeArgs;

/// When a local copy is trusted without asking the upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revalidate {
    /// Always (immutable keys: Milvus writes each object once under a unique key).
    Never,
    /// For this many ms after it was filled or last checked.
    TtlMs(u64),
}

impl Revalidate {
    pub fn parse(s: &str) -> Result<Revalidate, String> {
        if s == "never" {
            return Ok(Revalidate::Never);
        }
        match s.strip_prefix("ttl:").map(str::parse::<u64>) {
            Some(Ok(ms)) => Ok(Revalidate::TtlMs(ms)),
            _ => Err(format!(
                "--revalidate {s:?}: give `never` or `ttl:MS` (e.g. ttl:1000)"
            )),
        }
    }
}

#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub endpoint: upstream::Endpoint,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
    pub virtual_host: bool,
    pub ca: Option<std::path::PathBuf>,
    pub timeout: Duration,
    pub block_bytes: u64,
    pub readahead_blocks: u64,
    pub revalidate: Revalidate,
    /// How long a LIST page is answered from memory (`--list-cache-ms`; zero: not kept).
    pub list_cache: Duration,
    /// Bound of the local tier, bytes, over all shards (0: none).
    pub capacity_bytes: u64,
    /// The same bound per shard (each shard evicts its own oldest entries).
    pub shard_capacity_bytes: u64,
    /// Most fills (upstream reads of object bytes, each with its connection and at most
    /// 64 MiB in memory) a core runs at once; past it a miss is 503 `SlowDown` before any
    /// upstream request: `--max-inflight-per-core`, at most [`MAX_FILLS_PER_CORE`].
    pub max_fills_per_core: usize,
}

/// Upper bound of `GatewayConfig::max_fills_per_core` (docs/gateway.md, "Limits under
/// attack").
pub const MAX_FILLS_PER_CORE: usize = 64;

impl GatewayConfig {
    pub fn from_args(a: &ServeArgs) -> Result<GatewayConfig, String> {
        let url = a.upstream.as_deref().ok_or("no --upstream")?;
        let endpoint = upstream::Endpoint::parse(url).map_err(|e| format!("{e:#}"))?;
        let (Some(ak), Some(sk)) = (&a.upstream_access_key, &a.upstream_secret_key) else {
            return Err("--upstream needs --upstream-access-key and --upstream-secret-key".into());
        };
        if !(a.cache_capacity_gb >= 0.0 && a.cache_capacity_gb.is_finite()) {
            return Err("--cache-capacity-gb must be 0 or more".into());
        }
        Ok(GatewayConfig {
            endpoint,
            access_key: ak.clone(),
            secret_key: sk.clone(),
            region: a.upstream_region.clone(),
            virtual_host: a.upstream_virtual_host,
            ca: a.upstream_ca.clone(),
            timeout: Duration::from_millis(a.upstream_timeout_ms),
            block_bytes: a.upstream_block_kb << 10,
            readahead_blocks: a.upstream_readahead_blocks,
            revalidate: Revalidate::parse(&a.revalidate)?,
            list_cache: Duration::from_millis(a.list_cache_ms),
            capacity_bytes: (a.cache_capacity_gb * (1u64 << 30) as f64) as u64,
            shard_capacity_bytes: 0,
            max_fills_per_core: a.max_inflight_per_core.clamp(1, MAX_FILLS_PER_CORE),
        })
    }
}

/// The gateway of this process.
pub struct Gateway {
    pub cfg: GatewayConfig,
    pub up: Arc<upstream::Upstream>,
    /// Local copies re-checked with the upstream since they were stored: (bucket, key) ->
    /// (engine seq, unix ms of the check). Only `--revalidate ttl:` uses it.
    validated: Mutex<HashMap<(String, String), (u64, u64)>>,
}

static GATEWAY: OnceLock<Arc<Gateway>> = OnceLock::new();

/// Starts gateway mode for this process (once, before the cores serve).
pub fn install(mut cfg: GatewayConfig, shards: usize) -> anyhow::Result<Arc<Gateway>> {
    if cfg.capacity_bytes > 0 {
        cfg.shard_capacity_bytes = (cfg.capacity_bytes / shards.max(1) as u64).max(1);
    }
    tracing::info!(
        upstream = %cfg.endpoint.authority,
        revalidate = ?cfg.revalidate,
        capacity_bytes = cfg.capacity_bytes,
        "gateway mode"
    );
    let up = upstream::Upstream::new(
        cfg.endpoint.clone(),
        &cfg.access_key,
        &cfg.secret_key,
        &cfg.region,
        cfg.virtual_host,
        cfg.timeout,
        cfg.ca.as_deref(),
    )?;
    let g = Arc::new(Gateway {
        cfg,
        up: Arc::new(up),
        validated: Mutex::new(HashMap::new()),
    });
    GATEWAY
        .set(g.clone())
        .map_err(|_| anyhow::anyhow!("gateway installed twice"))?;
    Ok(g)
}

/// The gateway, when this process runs in gateway mode.
#[inline]
pub fn get() -> Option<&'static Arc<Gateway>> {
    GATEWAY.get()
}

impl Gateway {
    /// Whether a local copy (engine `seq`, stored at `mtime_ms`) must be checked with the
    /// upstream before it is served. `Never`: one branch.
    #[inline]
    pub fn stale(&self, bucket: &str, key: &str, seq: u64, mtime_ms: u64) -> bool {
        // Every whole-object hit passes here (fast path and s3s side): count it, and bump the
        // entry's S3-FIFO access counter (one byte, no lock, no allocation).
        crate::metrics::gateway_hit();
        if self.cfg.shard_capacity_bytes > 0 {
            local::touched(seq, mtime_ms);
        }
        let Revalidate::TtlMs(ttl) = self.cfg.revalidate else {
            return false;
        };
        let now = crate::s3::now_ms();
        if now.saturating_sub(mtime_ms) < ttl {
            return false;
        }
        let v = self.validated.lock().expect("validated map poisoned");
        match v.get(&(bucket.to_string(), key.to_string())) {
            Some(&(s, at)) if s == seq => now.saturating_sub(at) >= ttl,
            _ => true,
        }
    }

    /// Records that the upstream confirmed the local copy `seq` just now.
    pub fn confirmed(&self, bucket: &str, key: &str, seq: u64) {
        let mut v = self.validated.lock().expect("validated map poisoned");
        v.insert(
            (bucket.to_string(), key.to_string()),
            (seq, crate::s3::now_ms()),
        );
    }

    pub fn forget(&self, bucket: &str, key: &str) {
        if matches!(self.cfg.revalidate, Revalidate::Never) {
            return;
        }
        let mut v = self.validated.lock().expect("validated map poisoned");
        v.remove(&(bucket.to_string(), key.to_string()));
    }
}

/// Fast-path hook: whether the fast path must leave a request it looked up to s3s (the
/// gateway's handlers), so that a miss is filled or a stale copy re-checked. `false` at once
/// when gateway mode is off.
#[inline]
pub fn fast_path_declines(bucket: &str, key: &str, seq: u64, mtime_ms: u64) -> bool {
    match get() {
        None => false,
        Some(g) => g.stale(bucket, key, seq, mtime_ms),
    }
}

/// Fast-path hook: whether a lookup that found nothing (NoSuchKey / NoSuchBucket) must go to
/// s3s (gateway mode: a miss is filled from the upstream) instead of being answered.
#[inline]
pub fn fast_path_miss_declines() -> bool {
    get().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revalidate_values() {
        assert_eq!(Revalidate::parse("never"), Ok(Revalidate::Never));
        assert_eq!(Revalidate::parse("ttl:250"), Ok(Revalidate::TtlMs(250)));
        assert!(Revalidate::parse("ttl:").is_err());
        assert!(Revalidate::parse("always").is_err());
    }
}
