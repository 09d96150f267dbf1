//! `GET /metrics`: who may read it, in which format, and the optional separate listener
//! (`--metrics-listen`).
//!
//! Readable without credentials only with `--metrics-public`. Otherwise one of: a bearer token
//! (`Authorization: Bearer <--metrics-token>`, what Prometheus's `authorization` scrape setting
//! sends), or a SigV4 header signature by the server's key (as MinIO allows). Anything else is
//! refused with 403 AccessDenied and the connection closed, before anything is rendered.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hyper::body::Incoming;
use monoio::io::IntoPollIo;
use monoio_compat::hyper::{MonoioIo, MonoioTimer};

use super::render::{render, Format};
use crate::router::Topology;

/// The path served. Only a bare `GET /metrics` (no query) is the endpoint: `GET /metrics?...`
/// is still a listing of a bucket named `metrics`, which is how S3 clients list (boto3 and
/// minio send `list-type=2` or `encoding-type=url`).
pub const METRICS_PATH: &str = "/metrics";
/// Shortest `--metrics-token` accepted, characters.
pub const MIN_TOKEN_CHARS: usize = 16;
/// Longest `--metrics-token` accepted, characters.
pub const MAX_TOKEN_CHARS: usize = 1024;
/// Connections the `--metrics-listen` listener serves at once; more are closed at accept.
pub const MAX_METRICS_CONNECTIONS: usize = 16;
/// Time a metrics-port client has to send a request head, ms.
pub const METRICS_HEADER_TIMEOUT_MS: u64 = 5_000;
/// Longest life of one metrics-port connection, ms (Prometheus reconnects).
pub const METRICS_CONN_LIFETIME_MS: u64 = 300_000;

/// What the endpoint needs: the access rules and a way to reach every shard.
pub struct Endpoint {
    pub public: bool,
    pub token: Option<String>,
    /// Verifies SigV4 header signatures exactly as the GET fast path does.
    pub signer: Arc<crate::fast::FastPath>,
    pub topo: Arc<Topology>,
}

/// Whether a request is for the endpoint (method and path only; auth comes after).
pub fn is_metrics_request(method: &http::Method, uri: &http::Uri) -> bool {
    *method == http::Method::GET && uri.path() == METRICS_PATH && uri.query().is_none()
}

/// Compares without an early exit on the first differing byte.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Endpoint {
    fn allowed(&self, req: &http::Request<Incoming>) -> bool {
        if self.public {
            return true;
        }
        let Some(auth) = req.headers().get(http::header::AUTHORIZATION) else {
            return false;
        };
        let b = auth.as_bytes();
        if let Some(given) = b.strip_prefix(b"Bearer ") {
            return self
                .token
                .as_ref()
                .is_some_and(|t| same_secret(t.as_bytes(), given.trim_ascii()));
        }
        // A key scoped to some buckets may not read the whole server's metrics: the bucket
        // name "" is in the scope of unrestricted keys only (read-only ones included).
        crate::fast::verify(&self.signer, req, METRICS_PATH, "", false)
    }

    /// The answer to a metrics request (`is_metrics_request` was true).
    pub async fn answer(&self, req: &http::Request<Incoming>) -> http::Response<s3s::Body> {
        if !self.allowed(req) {
            let mut r = crate::http::error_xml(
                http::StatusCode::FORBIDDEN,
                "AccessDenied",
                "Metrics need a bearer token (--metrics-token) or a SigV4 signature, or --metrics-public.",
            );
            r.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
            return r;
        }
        let fmt = if wants_openmetrics(req.headers()) {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        };
        let body = render(&self.topo, fmt).await;
        let mut r = http::Response::new(s3s::Body::from(body));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(fmt.content_type()),
        );
        r
    }
}

/// Whether the Accept header names OpenMetrics text (Prometheus sends it first in its list).
fn wants_openmetrics(h: &http::HeaderMap) -> bool {
    h.get_all(http::header::ACCEPT).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',').any(|m| {
                let mut parts = m.split(';').map(str::trim);
                parts
                    .next()
                    .is_some_and(|t| t.eq_ignore_ascii_case("application/openmetrics-text"))
                    && !parts.any(|p| p == "q=0" || p == "q=0.0")
            })
        })
    })
}

/// Starts the `--metrics-listen` listener on its own thread (its own small io_uring runtime,
/// away from the serving cores). Fails if the address cannot be bound.
pub fn spawn_listener(addr: SocketAddr, ep: Arc<Endpoint>) -> anyhow::Result<()> {
    let std_listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("cannot listen on {addr} (--metrics-listen)"))?;
    std_listener
        .set_nonblocking(true)
        .context("metrics listener: set_nonblocking")?;
    std::thread::Builder::new()
        .name("bale-metrics".into())
        .spawn(move || {
            let rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .enable_timer()
                .build();
            match rt {
                Ok(mut rt) => rt.block_on(accept_loop(std_listener, ep)),
                Err(e) => tracing::error!(error = %e, "metrics listener: cannot start a runtime"),
            }
        })
        .context("cannot start the metrics listener thread")?;
    Ok(())
}

async fn accept_loop(std_listener: std::net::TcpListener, ep: Arc<Endpoint>) {
    let listener = match monoio::net::TcpListener::from_std(std_listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "metrics listener: cannot adopt the socket");
            return;
        }
    };
    let live = Rc::new(Cell::new(0usize));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "metrics listener: accept failed");
                monoio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if live.get() >= MAX_METRICS_CONNECTIONS {
            drop(stream);
            continue;
        }
        live.set(live.get() + 1);
        let (ep, live) = (ep.clone(), live.clone());
        monoio::spawn(async move {
            let life = Duration::from_millis(METRICS_CONN_LIFETIME_MS);
            let _ = monoio::time::timeout(life, serve_metrics_conn(stream, ep)).await;
            live.set(live.get() - 1);
        });
    }
}

async fn serve_metrics_conn(stream: monoio::net::TcpStream, ep: Arc<Endpoint>) {
    let _ = stream.set_nodelay(true);
    let Ok(io) = stream.into_poll_io() else {
        return;
    };
    let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
        let ep = ep.clone();
        async move {
            let resp = if is_metrics_request(req.method(), req.uri()) {
                ep.answer(&req).await
            } else {
                crate::http::error_xml(
                    http::StatusCode::NOT_FOUND,
                    "NotFound",
                    "This port serves GET /metrics only.",
                )
            };
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(MonoioTimer)
        .header_read_timeout(Duration::from_millis(METRICS_HEADER_TIMEOUT_MS))
        .max_buf_size(crate::http::MAX_HEADER_BYTES)
        .serve_connection(MonoioIo::new(io), service);
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "metrics connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        let h = |v: &str| {
            let mut m = http::HeaderMap::new();
            m.insert(http::header::ACCEPT, v.parse().unwrap());
            wants_openmetrics(&m)
        };
        assert!(h("application/openmetrics-text; version=1.0.0; charset=utf-8,text/plain;version=0.0.4;q=0.5"));
        assert!(h("text/plain;q=0.5, application/openmetrics-text"));
        assert!(!h("text/plain; version=0.0.4"));
        assert!(!h("application/openmetrics-text;q=0"));
        assert!(!wants_openmetrics(&http::HeaderMap::new()));
    }

    #[test]
    fn secrets_compare() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
    }

    #[test]
    fn only_a_bare_get() {
        let is = |m: &str, u: &str| is_metrics_request(&m.parse().unwrap(), &u.parse().unwrap());
        assert!(is("GET", "/metrics"));
        assert!(!is("GET", "/metrics?list-type=2"));
        assert!(!is("PUT", "/metrics"));
        assert!(!is("GET", "/metrics/x"));
    }
}
