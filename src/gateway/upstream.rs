//! The gateway's S3 client: bale's own SigV4-signed requests to the upstream, with a small
//! pool of kept-alive connections per core and one timeout for every wait. A plain-http
//! upstream is spoken to by the lean HTTP/1.1 client of `h1` (io_uring reads and writes by
//! the request's own task); an https one by hyper's HTTP/1.1 client over rustls (its
//! connection task and monoio's readiness adapter: the TLS stream needs them).
//!
//! Payloads are sent `UNSIGNED-PAYLOAD` when they stream (the client's body as it arrives) and
//! with their SHA-256 when they are in memory. Answers come back as they are: a status the
//! upstream chose (404, 412, 409 ...) is not an error here; only "the upstream did not answer
//! in time / could not be reached" is ([`UpError`]).
//!
//! The requests and answers themselves are in `exchange`; the connections and their pools in
//! `pool`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use http_body::Body;
use http_body_util::BodyExt;
use sigv4::signer::Signer;

use super::exchange::RespBody;
pub use super::exchange::{Tee, UpBody, UpRequest, UpResponse, MAX_UNSIZED_BODY_BYTES};
use super::h1;
use super::pool::tls_config;
use super::stages::{self, Stage};

/// Where the upstream is.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub https: bool,
    /// `host[:port]` as written in the URL (the `Host` header, and the TLS name's source).
    pub authority: String,
    pub host: String,
    pub addr: SocketAddr,
}

impl Endpoint {
    /// Parses `http://host:port` / `https://host[:port]` and resolves the host once.
    pub fn parse(url: &str) -> anyhow::Result<Endpoint> {
        let (https, rest) = if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else {
            anyhow::bail!("the URL must start with http:// or https://");
        };
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') || authority.contains('@') {
            anyhow::bail!("give scheme://host[:port] only (no path, no user)");
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                (h.to_string(), p.parse::<u16>().context("bad port")?)
            }
            _ => (authority.to_string(), if https { 443 } else { 80 }),
        };
        let addr = (host.trim_start_matches('[').trim_end_matches(']'), port)
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {host}"))?
            .next()
            .ok_or_else(|| anyhow!("{host} resolves to no address"))?;
        Ok(Endpoint {
            https,
            authority: authority.to_string(),
            host,
            addr,
        })
    }
}

/// The upstream could not be used: unreachable, too slow, or the connection broke.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("upstream unreachable: {0:#}")]
    Unreachable(anyhow::Error),
}

/// The upstream client (one per process; connections are per core).
pub struct Upstream {
    pub endpoint: Endpoint,
    pub virtual_host: bool,
    pub timeout: Duration,
    signer: Mutex<Signer>,
    pub(super) tls: Option<tokio_rustls::TlsConnector>,
    /// Requests sent, failures to get an answer, and total answer-head latency (µs).
    pub stats: Stats,
}

#[derive(Default)]
pub struct Stats {
    pub requests: std::sync::atomic::AtomicU64,
    pub failures: std::sync::atomic::AtomicU64,
    pub latency_us: std::sync::atomic::AtomicU64,
}

impl Upstream {
    pub fn new(
        endpoint: Endpoint,
        access_key: &str,
        secret_key: &str,
        region: &str,
        virtual_host: bool,
        timeout: Duration,
        ca: Option<&std::path::Path>,
    ) -> anyhow::Result<Upstream> {
        let tls = if endpoint.https {
            Some(tokio_rustls::TlsConnector::from(Arc::new(tls_config(ca)?)))
        } else {
            None
        };
        Ok(Upstream {
            endpoint,
            virtual_host,
            timeout,
            signer: Mutex::new(Signer::new(access_key, secret_key, region)),
            tls,
            stats: Stats::default(),
        })
    }

    /// Path, canonical query and Host of a request.
    fn target(&self, bucket: Option<&str>, key: Option<&str>) -> (String, String) {
        let mut path = String::with_capacity(64);
        let host;
        match (bucket, self.virtual_host) {
            (Some(b), true) => {
                host = format!("{b}.{}", self.endpoint.authority);
                path.push('/');
                if let Some(k) = key {
                    sigv4::push_uri_encoded(&mut path, k, false);
                }
            }
            (Some(b), false) => {
                host = self.endpoint.authority.clone();
                path.push('/');
                sigv4::push_uri_encoded(&mut path, b, true);
                if let Some(k) = key {
                    path.push('/');
                    sigv4::push_uri_encoded(&mut path, k, false);
                }
            }
            (None, _) => {
                host = self.endpoint.authority.clone();
                path.push('/');
            }
        }
        (path, host)
    }

    /// Sends one request and waits (within the timeout) for the answer's head.
    pub async fn send(self: &Arc<Self>, req: UpRequest<'_>) -> Result<UpResponse, UpError> {
        let started = Instant::now();
        let method = req.method.clone();
        let stream_unsized = req.stream_unsized;
        self.stats
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let bound = self.bound(&req);
        let r = monoio::time::timeout(bound, self.send_inner(req)).await;
        let mut r = match r {
            Err(_) => Err(UpError::Timeout(bound)),
            Ok(r) => r,
        };
        if let Ok(resp) = r.as_mut() {
            if method == http::Method::GET
                && resp.status.is_success()
                && !resp.headers.contains_key(http::header::CONTENT_LENGTH)
            {
                if let Err(e) = resp.buffer_unsized(stream_unsized).await {
                    r = Err(e);
                }
            }
        }
        let us = started.elapsed().as_micros() as u64;
        crate::metrics::gateway::upstream_answered(
            &method,
            r.as_ref().ok().map(|a| a.status.as_u16()),
            started.elapsed().as_nanos() as u64,
        );
        self.stats
            .latency_us
            .fetch_add(us, std::sync::atomic::Ordering::Relaxed);
        match &r {
            Ok(resp) => {
                tracing::debug!(
                    status = resp.status.as_u16(),
                    us,
                    "gateway: upstream answered"
                )
            }
            Err(e) => {
                self.stats
                    .failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(error = %e, us, "gateway: upstream request failed");
            }
        }
        r
    }

    /// How long one request may take up to its answer's head: the timeout, plus, for a
    /// streamed body of n bytes, n at `h1::MIN_BODY_BYTES_PER_S` (the body comes from a client
    /// at the client's pace: a 1 GiB PUT must not be cut at 5 s, and a dribbling client must
    /// not hold an upstream connection for ever). Within that, on a plain-http upstream every
    /// write of the body and the wait for the head after it are each cut at the timeout
    /// (`send_lean`), so an upstream that stalls is still found out within the timeout.
    fn bound(&self, req: &UpRequest<'_>) -> Duration {
        match (&req.body, req.content_length) {
            (UpBody::Stream { .. }, Some(n)) => {
                self.timeout + Duration::from_secs(n / h1::MIN_BODY_BYTES_PER_S)
            }
            _ => self.timeout,
        }
    }

    async fn send_inner(self: &Arc<Self>, req: UpRequest<'_>) -> Result<UpResponse, UpError> {
        let started = Instant::now();
        stages::sending();
        let (path, host) = self.target(req.bucket, req.key);
        let mut query = String::new();
        sigv4::push_canonical_query(&mut query, &req.query);
        let (payload_hash, length) = match &req.body {
            UpBody::Full(Some(b)) => (sigv4::sha256_hex(b).as_str().to_string(), b.len() as u64),
            UpBody::Full(None) => (sigv4::EMPTY_SHA256.to_string(), 0),
            UpBody::Stream { .. } => (
                sigv4::UNSIGNED_PAYLOAD.to_string(),
                req.content_length.unwrap_or(0),
            ),
        };
        // Repeated names are one canonical header, values joined by commas.
        let mut merged: Vec<(String, String)> = Vec::with_capacity(req.headers.len());
        for (k, v) in &req.headers {
            match merged.iter_mut().find(|(n, _)| n == k) {
                Some((_, old)) => {
                    old.push(',');
                    old.push_str(v);
                }
                None => merged.push((k.clone(), v.clone())),
            }
        }
        let extra: Vec<(&str, &str)> = merged
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let signed = self
            .signer
            .lock()
            .map_err(|_| UpError::Unreachable(anyhow!("signer poisoned")))?
            .sign(
                req.method.as_str(),
                &host,
                &path,
                &query,
                &payload_hash,
                unix,
                &extra,
            );
        let sends_body = !matches!(req.body, UpBody::Full(None))
            || matches!(req.method, http::Method::PUT | http::Method::POST);
        if self.tls.is_none() {
            let mut head = Vec::with_capacity(256 + path.len() + query.len() + 64 * merged.len());
            head.extend_from_slice(req.method.as_str().as_bytes());
            head.push(b' ');
            head.extend_from_slice(path.as_bytes());
            if !query.is_empty() {
                head.push(b'?');
                head.extend_from_slice(query.as_bytes());
            }
            head.extend_from_slice(b" HTTP/1.1\r\n");
            let bad = |e: std::io::Error| UpError::Unreachable(anyhow!(e).context("request head"));
            h1::push_header(&mut head, "host", &host).map_err(bad)?;
            for (k, v) in merged.iter().map(|(k, v)| (k.as_str(), v.as_str())) {
                h1::push_header(&mut head, k, v).map_err(bad)?;
            }
            for (k, v) in &signed {
                h1::push_header(&mut head, k, v).map_err(bad)?;
            }
            if sends_body {
                h1::push_header(&mut head, "content-length", &length.to_string()).map_err(bad)?;
            }
            head.extend_from_slice(b"\r\n");
            let signed_at = stages::since(Stage::Sign, started);
            return self
                .send_lean(&req.method, head, req.body, length, signed_at)
                .await;
        }
        let uri = if query.is_empty() {
            path
        } else {
            format!("{path}?{query}")
        };
        let mut b = http::Request::builder()
            .method(req.method.clone())
            .uri(uri)
            .header(http::header::HOST, &host);
        for (k, v) in &merged {
            b = b.header(k.as_str(), v.as_str());
        }
        for (k, v) in signed {
            b = b.header(k, v);
        }
        if sends_body {
            b = b.header(http::header::CONTENT_LENGTH, length);
        }
        let hreq = b
            .body(req.body)
            .map_err(|e| UpError::Unreachable(anyhow!(e).context("building the request")))?;
        // A pooled connection finished its last answer; it is ready once its task saw that.
        // One the upstream closed meanwhile gives the request back unsent: retry it once on a
        // new connection.
        let ready = match self.pooled() {
            Some(mut s) => s.ready().await.is_ok().then_some(s),
            None => None,
        };
        let (mut sender, pooled) = match ready {
            Some(s) => (s, true),
            None => (self.connect().await.map_err(UpError::Unreachable)?, false),
        };
        let resp = match sender.try_send_request(hreq).await {
            Ok(r) => r,
            Err(mut e) if pooled && e.message().is_some() => {
                let hreq = e.take_message().expect("checked");
                sender = self.connect().await.map_err(UpError::Unreachable)?;
                sender
                    .send_request(hreq)
                    .await
                    .map_err(|e| UpError::Unreachable(anyhow!(e).context("request")))?
            }
            Err(e) => {
                return Err(UpError::Unreachable(
                    anyhow!(e.into_error()).context("request"),
                ))
            }
        };
        let (parts, body) = resp.into_parts();
        let mut out = UpResponse {
            status: parts.status,
            headers: parts.headers,
            body: RespBody::Hyper {
                body,
                sender,
                waited: Duration::ZERO,
                got_bytes: 0,
            },
            up: self.clone(),
        };
        if let RespBody::Hyper { body, .. } = &out.body {
            if body.is_end_stream() {
                if let RespBody::Hyper { sender, .. } =
                    std::mem::replace(&mut out.body, RespBody::Done)
                {
                    self.give_back(sender);
                }
            }
        }
        Ok(out)
    }

    /// Sends a request on a lean connection (plain http) and reads the answer's head.
    ///
    /// A pooled connection the upstream closed while idle: a GET/HEAD whose request got no
    /// byte back is sent once more on a new connection; any other request takes a pooled
    /// connection only after a non-blocking check that it is still open (a write is never
    /// sent twice, a streamed body cannot be).
    async fn send_lean(
        self: &Arc<Self>,
        method: &http::Method,
        head: Vec<u8>,
        body: UpBody,
        length: u64,
        signed_at: Instant,
    ) -> Result<UpResponse, UpError> {
        let is_head = *method == http::Method::HEAD;
        let retry_ok = matches!(*method, http::Method::GET | http::Method::HEAD)
            && matches!(body, UpBody::Full(_));
        let (full, mut stream) = match body {
            UpBody::Full(b) => (b, None),
            s @ UpBody::Stream { .. } => (None, Some(s)),
        };
        let streamed = stream.is_some();
        let (mut conn, mut pooled) = match self.pooled_lean(!retry_ok) {
            Some(c) => (c, true),
            None => (self.connect_lean().await?, false),
        };
        let mut at = stages::since(Stage::Conn, signed_at);
        let mut head = head;
        loop {
            let (r, h) = conn.send_head(head, full.clone()).await;
            head = h;
            at = stages::since(Stage::Write, at);
            let r = match r {
                Ok(()) => match stream.take() {
                    Some(s) => Self::send_stream(&mut conn, s, length, self.timeout).await,
                    None => Ok(()),
                },
                Err(e) => Err(UpError::Unreachable(
                    anyhow!(e).context("writing the request"),
                )),
            };
            let r = match r {
                Ok(()) if streamed => {
                    // After a streamed body the request's bound is long (`bound`): the head
                    // must still come within the timeout.
                    crate::spin::far_wait();
                    match monoio::time::timeout(self.timeout, conn.read_head(is_head)).await {
                        Ok(r) => r.map_err(|e| {
                            UpError::Unreachable(anyhow!(e).context("reading the answer head"))
                        }),
                        Err(_) => Err(UpError::Timeout(self.timeout)),
                    }
                }
                Ok(()) => {
                    // The answer is ~1 ms away: the core parks rather than polls meanwhile.
                    crate::spin::far_wait();
                    conn.read_head(is_head).await.map_err(|e| {
                        UpError::Unreachable(anyhow!(e).context("reading the answer head"))
                    })
                }
                Err(e) => Err(e),
            };
            match r {
                Ok(h) => {
                    stages::since(Stage::Upstream, at);
                    let mut out = UpResponse {
                        status: h.status,
                        headers: h.headers,
                        body: RespBody::Lean {
                            conn,
                            framing: h.framing,
                            keep_alive: h.keep_alive,
                        },
                        up: self.clone(),
                    };
                    if matches!(
                        out.body,
                        RespBody::Lean {
                            framing: h1::Framing::Done,
                            ..
                        }
                    ) {
                        out.finish_lean();
                    }
                    return Ok(out);
                }
                Err(e) if pooled && retry_ok && conn.received_bytes == 0 => {
                    tracing::debug!(error = %e, requests = conn.requests,
                        "gateway: pooled upstream connection was closed; sending again");
                    conn = self.connect_lean().await?;
                    pooled = false;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes a streamed request body, exactly `length` bytes; each write to the upstream
    /// within `timeout` (the client's pace is bounded by the request's whole bound).
    async fn send_stream(
        conn: &mut h1::Conn,
        mut body: UpBody,
        length: u64,
        timeout: Duration,
    ) -> Result<(), UpError> {
        let mut sent_bytes = 0u64;
        while let Some(f) = body.frame().await {
            let f = f.map_err(|e| UpError::Unreachable(anyhow!(e).context("the client's body")))?;
            let Ok(d) = f.into_data() else { continue };
            sent_bytes += d.len() as u64;
            if sent_bytes > length {
                return Err(UpError::Unreachable(anyhow!(
                    "the body is longer than its Content-Length {length}"
                )));
            }
            match monoio::time::timeout(timeout, conn.send_body(d)).await {
                Ok(r) => r.map_err(|e| {
                    UpError::Unreachable(anyhow!(e).context("writing the request body"))
                })?,
                Err(_) => return Err(UpError::Timeout(timeout)),
            }
        }
        if sent_bytes != length {
            return Err(UpError::Unreachable(anyhow!(
                "the body ended after {sent_bytes} of its {length} bytes"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("http://127.0.0.1:8333").unwrap();
        assert!(!e.https);
        assert_eq!(e.authority, "127.0.0.1:8333");
        assert_eq!(e.addr, "127.0.0.1:8333".parse().unwrap());
        let e = Endpoint::parse("https://127.0.0.1/").unwrap();
        assert!(e.https);
        assert_eq!(e.addr.port(), 443);
        assert!(Endpoint::parse("ftp://x").is_err());
        assert!(Endpoint::parse("http://h:1/path").is_err());
        assert!(Endpoint::parse("http://").is_err());
    }

    #[test]
    fn targets() {
        let up = Upstream::new(
            Endpoint::parse("http://127.0.0.1:8333").unwrap(),
            "ak",
            "secretsecret",
            "us-east-1",
            false,
            Duration::from_secs(1),
            None,
        )
        .unwrap();
        assert_eq!(
            up.target(Some("b"), Some("a b/c+d")),
            ("/b/a%20b/c%2Bd".to_string(), "127.0.0.1:8333".to_string())
        );
        assert_eq!(up.target(None, None).0, "/");
        let vh = Upstream {
            virtual_host: true,
            ..up
        };
        assert_eq!(
            vh.target(Some("b"), Some("k/1")),
            ("/k/1".to_string(), "b.127.0.0.1:8333".to_string())
        );
    }
}
