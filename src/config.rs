//! Command line and environment configuration.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub const DEFAULT_ACCESS_KEY: &str = "baleadmin";
pub const DEFAULT_SECRET_KEY: &str = "baleadmin-secret";
/// Largest --disk-reserve-mb accepted (1 TiB per shard; anything larger is a typo).
pub const MAX_DISK_RESERVE_MB: u64 = 1 << 20;
/// Largest `--index-memory-mb` (16 TiB; anything larger is a typo).
pub const MAX_INDEX_MEMORY_MB: u64 = 1 << 24;
/// Least `--index-memory-mb` per shard when a budget is set: below a few blocks per shard every
/// lookup would read the spill file.
pub const MIN_INDEX_MEMORY_MB_PER_SHARD: u64 = 1;
/// Largest `--volume-target-mb` (64 GiB volumes).
pub const MAX_VOLUME_TARGET_MB: u64 = 1 << 16;

#[derive(Parser, Debug)]
#[command(
    name = "bale",
    version,
    about = "bale: an S3-compatible object server built for fast random reads (thread-per-core, io_uring, O_DIRECT)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at start-up: the size of the enum does not matter (ServeArgs is large).
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the S3 API.
    Serve(ServeArgs),
    /// Check this host for what matters to bale (io_uring, O_DIRECT, filesystems, limits,
    /// tuning) and print PASS/WARN/FAIL with the fix for each; exits 1 on any FAIL.
    Doctor(crate::doctor::DoctorArgs),
    /// Configuration tools (`bale config check`).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Data disk tools (`bale disk replace`).
    #[command(subcommand)]
    Disk(DiskCommand),
    /// Prefetch objects into a running gateway (`bale warm s3://bucket/prefix`): lists the
    /// prefix through it and reads every object once, with progress. See docs/gateway.md.
    Warm(crate::gateway::warm::WarmArgs),
}

#[derive(Subcommand, Debug)]
pub enum DiskCommand {
    /// Rebuild the shard copies of a replaced (empty) or stale data directory from the
    /// surviving copies, then exit: give every --data directory of the set in its order, the
    /// new empty one in the lost one's place (the same work `bale serve` does at start).
    Replace(ServeArgs),
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate the configuration (config file, flags, environment, keys file) and print the
    /// effective settings with secrets masked; exit 1 with one line naming what is wrong.
    Check(ServeArgs),
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on (every core opens its own SO_REUSEPORT listener on it).
    #[arg(long, env = "BALE_LISTEN", default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,

    /// Data directory; repeat for several disks. Each directory holds one or more shards,
    /// each owned by one core. Created if missing.
    #[arg(
        long = "data",
        env = "BALE_DATA",
        value_delimiter = ',',
        default_value = "./data"
    )]
    pub data: Vec<PathBuf>,

    /// Number of cores (one pinned thread each). Default: all available cores.
    #[arg(long, env = "BALE_CORES")]
    pub cores: Option<usize>,

    /// What protects objects against losing a data directory: `none`, `mirror` (every shard
    /// on two directories) or `ec:K+M` (k+m <= directories; open state on m+1 directories,
    /// sealed volumes in stripes of k data + m parity; any m disks can be lost). Default from
    /// the directory count (1: none, 2-3: mirror, 4: ec:2+2, 5: ec:3+2, 6-7: ec:4+2, 8-11:
    /// ec:6+2, 12-13: ec:8+4, 14+: ec:10+4).
    /// Fixed when the set is initialised (ADR 19).
    #[arg(long, env = "BALE_REDUNDANCY", value_parser = crate::layout::Redundancy::parse)]
    pub redundancy: Option<crate::layout::Redundancy>,

    /// Rebuild rate of a lost or stale shard copy at start (an empty directory in a failed
    /// position, or `bale disk replace`), MiB/s (0 = unbounded).
    #[arg(long, env = "BALE_REBUILD_RATE_MB", default_value_t = 200)]
    pub rebuild_rate_mb: u64,

    /// Access key. Also read from MINIO_ROOT_USER so MinIO compose files work unchanged.
    #[arg(long, env = "BALE_ACCESS_KEY")]
    pub access_key: Option<String>,

    /// Secret key. Also read from MINIO_ROOT_PASSWORD.
    #[arg(long, env = "BALE_SECRET_KEY")]
    pub secret_key: Option<String>,

    /// Region reported by GetBucketLocation and accepted in signatures.
    #[arg(long, env = "BALE_REGION", default_value = "us-east-1")]
    pub region: String,

    /// Object cache per core, in MiB (0 turns it off).
    #[arg(long, env = "BALE_CACHE_MB", default_value_t = 256)]
    pub cache_mb: u64,

    /// Shards per data directory when a directory is initialised (default: cores / directories,
    /// at least 1). Fixed afterwards: it is recorded in the directory.
    #[arg(long, env = "BALE_SHARDS_PER_DIR")]
    pub shards_per_dir: Option<u32>,

    /// Seconds to let in-flight requests finish after SIGTERM/Ctrl-C.
    #[arg(long, env = "BALE_SHUTDOWN_TIMEOUT_S", default_value_t = 10)]
    pub shutdown_timeout_s: u64,

    /// Maximum concurrent connections per core; further connections are closed at accept.
    #[arg(long, env = "BALE_MAX_CONNECTIONS_PER_CORE", default_value_t = 4096)]
    pub max_connections_per_core: usize,

    /// Seconds a client may take to send a request's headers (slow clients are cut off).
    #[arg(long, env = "BALE_HEADER_TIMEOUT_S", default_value_t = 30)]
    pub header_timeout_s: u64,

    /// Seconds a connection may make no progress (idle keep-alive, a stalled body upload, a
    /// client not reading its response) before it is closed.
    #[arg(long, env = "BALE_IDLE_TIMEOUT_S", default_value_t = 120)]
    pub idle_timeout_s: u64,

    /// Serve every request through s3s, without the GET/HEAD fast path (for comparison).
    #[arg(long, env = "BALE_NO_FAST_PATH")]
    pub no_fast_path: bool,

    /// After a request starts or ends, keep the core polling (not sleeping) for this many µs,
    /// so the next request does not pay a sleeping vCPU's wake-up; costs that much CPU per
    /// idle gap (0 = off). See docs/adr/0006-read-path.md. Long spins delay the core's own
    /// I/O completions (gateway misses ~4x slower at 1000; bench/RESULTS.md, "Polling through
    /// waits"): the adaptive --poll-us default stops polling while a request waits.
    #[arg(long, env = "BALE_SPIN_US", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub spin_us: u64,

    /// Adaptive polling: while requests keep arriving less than this many µs apart, the core
    /// keeps polling between them (the window grows with such gaps and shrinks with longer
    /// ones), and sleeps as soon as they stop; an idle bale burns no CPU (0 = off; a non-zero
    /// --spin-us overrides it). See docs/adr/0016-hot-path.md.
    #[arg(long, env = "BALE_POLL_US", default_value_t = 50, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub poll_us: u64,

    /// Requests served at once per core; more get 503 SlowDown.
    #[arg(long, env = "BALE_MAX_INFLIGHT_PER_CORE", default_value_t = 1024)]
    pub max_inflight_per_core: usize,

    /// Seconds between background scrub passes (CRC check of every stored byte; 0 = off).
    #[arg(long, env = "BALE_SCRUB_INTERVAL_S", default_value_t = 86400)]
    pub scrub_interval_s: u64,

    /// Scrub read rate per core, MiB/s (kept low so foreground reads go first).
    #[arg(long, env = "BALE_SCRUB_RATE_MB", default_value_t = 16)]
    pub scrub_rate_mb: u64,

    /// Compaction: reclaim sealed volumes whose garbage ratio exceeds this (0..1).
    #[arg(long, env = "BALE_COMPACT_RATIO", default_value_t = 0.5)]
    pub compact_ratio: f64,

    /// A volume seals once it passes this size, MiB (with erasure coding, every k sealed
    /// volumes of a shard become a stripe). Small values are for tests. 1..=65536.
    #[arg(long, env = "BALE_VOLUME_TARGET_MB", default_value_t = 1024)]
    pub volume_target_mb: u64,

    /// Seconds between background compaction passes (0 = off).
    #[arg(long, env = "BALE_COMPACT_INTERVAL_S", default_value_t = 60)]
    pub compact_interval_s: u64,

    /// Free space per shard, in MiB, that PUTs may not fill (on top of the size of the shard's
    /// index snapshot): it keeps DELETEs and checkpoints working on a full disk (0 = off).
    #[arg(long, env = "BALE_DISK_RESERVE_MB", default_value_t = 64)]
    pub disk_reserve_mb: u64,

    /// Index memory budget for the whole process, in MiB (0 = unlimited): split evenly across
    /// the shards; past a shard's share its coldest key blocks are paged to a spill file in
    /// the shard's directory and read back when needed (ADR 29).
    #[arg(long, env = "BALE_INDEX_MEMORY_MB", default_value_t = 0)]
    pub index_memory_mb: u64,

    // --- tls ---
    /// PEM certificate chain for HTTPS (leaf first). With --tls-key, --listen serves HTTPS
    /// only, unless --tls-listen is given (then --listen stays plain HTTP and HTTPS is served
    /// on --tls-listen). Reloaded with the key on SIGHUP.
    #[arg(long, env = "BALE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1) for --tls-cert.
    #[arg(long, env = "BALE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Serve HTTPS on this address as well, keeping --listen plain HTTP (needs --tls-cert).
    #[arg(long, env = "BALE_TLS_LISTEN", requires = "tls_cert")]
    pub tls_listen: Option<SocketAddr>,
    // --- keys (config file and access keys; docs/adr/0012-config-and-keys.md) ---
    /// TOML file of settings: keys are the long flag names with `_` (`cache_mb = 512`); flags
    /// and environment variables override it.
    #[arg(long, env = "BALE_CONFIG")]
    pub config: Option<PathBuf>,

    /// TOML file of extra access keys (`[[keys]]` entries with access_key, secret_key,
    /// access = "read-write" | "read-only", buckets = ["name", "prefix*"]); re-read on SIGHUP.
    #[arg(long, env = "BALE_KEYS_FILE")]
    pub keys_file: Option<PathBuf>,
    // --- metrics and logs (docs/adr/0011-metrics.md) ---
    /// Also serve GET /metrics on this address (its own listener thread, away from the cores).
    #[arg(long, env = "BALE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Let anyone read GET /metrics without credentials (otherwise a bearer token or SigV4).
    #[arg(long, env = "BALE_METRICS_PUBLIC")]
    pub metrics_public: bool,

    /// Bearer token that may read GET /metrics (`Authorization: Bearer <token>`), 16 to 1024
    /// characters.
    #[arg(long, env = "BALE_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,

    /// Log line format on stderr (colours only when stderr is a terminal).
    #[arg(long, env = "BALE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: crate::logging::LogFormat,

    /// Log one info line per request (request id, method, path, op, status, duration).
    #[arg(long, env = "BALE_LOG_REQUESTS")]
    pub log_requests: bool,

    // --- console ---
    /// Address of the web console (sign in with a key; buckets, objects, upload, download,
    /// live GET/PUT rate and latency), e.g. 127.0.0.1:9001. Off unless given. It forwards the
    /// page's signed requests to --listen; see docs/adr/0014-console.md.
    #[arg(long, env = "BALE_CONSOLE_LISTEN")]
    pub console_listen: Option<SocketAddr>,

    // --- gateway (docs/gateway.md) ---
    /// Gateway mode: serve as a read-through / write-through tier in front of this S3
    /// endpoint (`http://host:port` or `https://host`), which stays the source of truth.
    #[arg(long, env = "BALE_UPSTREAM")]
    pub upstream: Option<String>,

    /// Access key bale signs its upstream requests with.
    #[arg(long, env = "BALE_UPSTREAM_ACCESS_KEY")]
    pub upstream_access_key: Option<String>,

    /// Secret key bale signs its upstream requests with.
    #[arg(long, env = "BALE_UPSTREAM_SECRET_KEY", hide_env_values = true)]
    pub upstream_secret_key: Option<String>,

    /// Region of the upstream's signatures.
    #[arg(long, env = "BALE_UPSTREAM_REGION", default_value = "us-east-1")]
    pub upstream_region: String,

    /// Address upstream buckets virtual-host style (`bucket.host`) instead of path style.
    #[arg(long, env = "BALE_UPSTREAM_VIRTUAL_HOST")]
    pub upstream_virtual_host: bool,

    /// PEM file of CA certificates trusted for an https upstream (default: the system bundle,
    /// /etc/ssl/certs/ca-certificates.crt).
    #[arg(long, env = "BALE_UPSTREAM_CA")]
    pub upstream_ca: Option<PathBuf>,

    /// Longest wait for the upstream (connect, answer head, each body chunk), ms; past it a
    /// miss or a write answers 503 ServiceUnavailable.
    #[arg(long, env = "BALE_UPSTREAM_TIMEOUT_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub upstream_timeout_ms: u64,

    /// Block size, KiB, in which ranged reads of big objects are fetched and kept.
    #[arg(long, env = "BALE_UPSTREAM_BLOCK_KB", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(4..=65536))]
    pub upstream_block_kb: u64,

    /// Blocks fetched past the last one a ranged miss needs (bounded readahead).
    #[arg(long, env = "BALE_UPSTREAM_READAHEAD_BLOCKS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=64))]
    pub upstream_readahead_blocks: u64,

    /// Gateway mode: keep LIST pages for this many ms (0: off). Writes through this gateway
    /// drop their bucket's pages; others' writes are seen after at most this long.
    #[arg(long, env = "BALE_LIST_CACHE_MS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub list_cache_ms: u64,

    /// When a local copy is trusted: `never` (never re-checked: immutable keys) or `ttl:MS`
    /// (a copy older than MS is checked with a conditional request before it is served).
    #[arg(long, env = "BALE_REVALIDATE", default_value = "never")]
    pub revalidate: String,

    /// Bound of the gateway's local tier, GiB (0 = no bound); the oldest fills are evicted
    /// first and compaction reclaims their space.
    #[arg(long, env = "BALE_CACHE_CAPACITY_GB", default_value_t = 0.0)]
    pub cache_capacity_gb: f64,
}

impl ServeArgs {
    /// Resolve keys: flags/BALE_* first, then MINIO_ROOT_USER/PASSWORD, then defaults.
    pub fn credentials(&self) -> (String, String, bool) {
        let access = self
            .access_key
            .clone()
            .or_else(|| std::env::var("MINIO_ROOT_USER").ok());
        let secret = self
            .secret_key
            .clone()
            .or_else(|| std::env::var("MINIO_ROOT_PASSWORD").ok());
        let defaulted = access.is_none() || secret.is_none();
        (
            access.unwrap_or_else(|| DEFAULT_ACCESS_KEY.to_string()),
            secret.unwrap_or_else(|| DEFAULT_SECRET_KEY.to_string()),
            defaulted,
        )
    }

    /// Each shard's share of `--index-memory-mb`, in bytes (0: no budget); an error when the
    /// budget gives a shard less than `MIN_INDEX_MEMORY_MB_PER_SHARD`.
    pub fn index_memory_bytes_per_shard(&self, shards: usize) -> Result<u64, String> {
        if self.index_memory_mb == 0 {
            return Ok(0);
        }
        let shards = shards.max(1) as u64;
        if self.index_memory_mb < MIN_INDEX_MEMORY_MB_PER_SHARD * shards {
            return Err(format!(
                "--index-memory-mb {} is too small for {shards} shards: give at least {} ({MIN_INDEX_MEMORY_MB_PER_SHARD} MiB per shard) or 0 (unlimited)",
                self.index_memory_mb,
                MIN_INDEX_MEMORY_MB_PER_SHARD * shards
            ));
        }
        Ok((self.index_memory_mb << 20) / shards)
    }

    pub fn validate(&self) -> Result<(), String> {
        if let Some(c) = self.cores {
            if c == 0 || c > 1024 {
                return Err(format!("--cores {c} is out of range: give 1..=1024"));
            }
        }
        if self.data.is_empty() {
            return Err("at least one --data directory is needed".into());
        }
        let (a, s, _) = self.credentials();
        if a.len() < 3 || s.len() < 8 {
            return Err("access key needs at least 3 characters and secret key at least 8".into());
        }
        if !(0.0..=1.0).contains(&self.compact_ratio) {
            return Err("--compact-ratio must be between 0 and 1".into());
        }
        if self.disk_reserve_mb > MAX_DISK_RESERVE_MB {
            return Err(format!(
                "--disk-reserve-mb {} is out of range: give 0..={MAX_DISK_RESERVE_MB}",
                self.disk_reserve_mb
            ));
        }
        if self.index_memory_mb > MAX_INDEX_MEMORY_MB {
            return Err(format!(
                "--index-memory-mb {} is out of range: give 0 (unlimited) or 1..={MAX_INDEX_MEMORY_MB}",
                self.index_memory_mb
            ));
        }
        if !(1..=MAX_VOLUME_TARGET_MB).contains(&self.volume_target_mb) {
            return Err(format!(
                "--volume-target-mb {} is out of range: give 1..={MAX_VOLUME_TARGET_MB}",
                self.volume_target_mb
            ));
        }
        if let Some(r) = self.redundancy {
            r.validate(self.data.len())?;
        }
        if let Some(0) = self.shards_per_dir {
            return Err("--shards-per-dir must be at least 1".into());
        }
        if let Some(u) = &self.upstream {
            crate::gateway::GatewayConfig::from_args(self)
                .map_err(|e| format!("--upstream {u}: {e}"))?;
        }
        if self.tls_listen.is_some_and(|t| t == self.listen) {
            return Err(
                "--tls-listen must differ from --listen (for HTTPS only, give --tls-cert/--tls-key without --tls-listen)"
                    .into(),
            );
        }
        Ok(())
    }
}

impl ServeArgs {
    /// Checks the metrics and log flags.
    pub fn validate_observability(&self) -> Result<(), String> {
        use crate::metrics::endpoint::{MAX_TOKEN_CHARS, MIN_TOKEN_CHARS};
        if let Some(t) = &self.metrics_token {
            let n = t.chars().count();
            if !(MIN_TOKEN_CHARS..=MAX_TOKEN_CHARS).contains(&n)
                || !t.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(format!(
                    "--metrics-token needs {MIN_TOKEN_CHARS} to {MAX_TOKEN_CHARS} visible ASCII characters (got {n})"
                ));
            }
        }
        if self.metrics_listen == Some(self.listen) {
            return Err("--metrics-listen must differ from --listen (GET /metrics is served on --listen too)".into());
        }
        Ok(())
    }
}
