//! bale: an S3-compatible object server built for fast random reads.
//!
//! The binary (`main.rs`) is a thin CLI over these modules; they are a library so that tests,
//! fuzz targets and benchmarks can reach the parsers and the server directly.

pub mod allocs;
pub mod auth;
pub mod buckets;
pub mod cfgfile;
pub mod chunked;
pub mod config;
pub mod conns;
pub mod console;
pub mod doctor;
pub mod fast;
pub mod front;
pub mod gateway;
pub mod http;
pub mod idle;
pub mod keys;
pub mod layout;
pub mod logging;
pub mod metrics;
pub mod router;
pub mod runtime;
pub mod s3;
pub mod sigcheck;
pub mod spin;
pub mod tls;
