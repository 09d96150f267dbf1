//! Forwarding the page's signed S3 requests to the S3 port.
//!
//! `/api/s3/<path>?<query>` goes to the S3 port as `/<path>?<query>`, with the browser's
//! `Host` header unchanged: the page signs the request as the S3 port will see it (host =
//! the console's host, path without the prefix), so the signature is checked there like any
//! client's and the console holds no key. Only requests that carry a signature (an
//! `Authorization` header or a presigned `X-Amz-Signature`) are forwarded, and only with the
//! methods the page uses; bodies stream through (the S3 port's PUT limits apply), nothing is
//! buffered here.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::Either;
use hyper::body::Incoming;
use monoio::io::IntoPollIo;
use monoio_compat::hyper::MonoioIo;

use super::{refusal, ConsoleBody};

/// Requests under this prefix are S3 requests for the S3 port.
pub const API_PREFIX: &str = "/api/s3";
/// Time to open a connection to the S3 port before the request is answered 502.
pub const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest S3 answer head read from the S3 port, bytes.
const MAX_UPSTREAM_HEAD_BYTES: usize = 64 * 1024;

/// Headers that belong to one hop, not to the request (RFC 9110 7.6.1), plus what the console
/// never passes on: cookies (it sets none) and `Expect` (hyper answers it on this side).
const HOP_HEADERS: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "cookie",
    "expect",
];

/// The methods the page sends: list and download (GET), stat (HEAD), upload and create bucket
/// (PUT), delete (DELETE).
fn method_allowed(m: &http::Method) -> bool {
    matches!(
        *m,
        http::Method::GET | http::Method::HEAD | http::Method::PUT | http::Method::DELETE
    )
}

/// Carries a SigV4 signature: an `Authorization` header, or a presigned query signature.
fn is_signed<B>(req: &http::Request<B>) -> bool {
    req.headers().contains_key(http::header::AUTHORIZATION)
        || req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("X-Amz-Signature=")))
}

/// The S3 path and query of a console request (`/api/s3/b/k?x` -> `/b/k?x`).
fn upstream_uri(uri: &http::Uri) -> Option<http::Uri> {
    let path = uri.path().strip_prefix(API_PREFIX)?;
    if !path.starts_with('/') {
        return None;
    }
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    pq.parse().ok()
}

fn strip_hop_headers(h: &mut http::HeaderMap) {
    for name in HOP_HEADERS {
        h.remove(name);
    }
}

/// Forwards one signed request to the S3 port and streams its answer back.
pub async fn forward(
    upstream: SocketAddr,
    req: http::Request<Incoming>,
) -> http::Response<ConsoleBody> {
    if !method_allowed(req.method()) {
        let mut r = refusal(
            http::StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "The console forwards GET, HEAD, PUT and DELETE only.",
        );
        r.headers_mut().insert(
            http::header::ALLOW,
            http::HeaderValue::from_static("GET, HEAD, PUT, DELETE"),
        );
        return r;
    }
    if !is_signed(&req) {
        return refusal(
            http::StatusCode::FORBIDDEN,
            "AccessDenied",
            "The console forwards signed requests only: sign in with an access key.",
        );
    }
    let Some(uri) = upstream_uri(req.uri()) else {
        return refusal(
            http::StatusCode::BAD_REQUEST,
            "InvalidURI",
            "Could not parse the request path.",
        );
    };
    let (mut parts, body) = req.into_parts();
    parts.uri = uri;
    strip_hop_headers(&mut parts.headers);
    let upstream_req = http::Request::from_parts(parts, body);
    match send(upstream, upstream_req).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_headers(&mut parts.headers);
            http::Response::from_parts(parts, Either::Right(body))
        }
        Err(e) => {
            tracing::warn!(upstream = %upstream, error = %e, "console: S3 port did not answer");
            refusal(
                http::StatusCode::BAD_GATEWAY,
                "ConsoleUpstreamError",
                &format!(
                    "The S3 port at {upstream} did not answer: {}",
                    super::xml_escape(&e.to_string())
                ),
            )
        }
    }
}

/// One request on a fresh connection to the S3 port (the console is light: no pool).
async fn send(
    upstream: SocketAddr,
    req: http::Request<Incoming>,
) -> anyhow::Result<http::Response<Incoming>> {
    use anyhow::Context;
    let stream = monoio::time::timeout(
        UPSTREAM_CONNECT_TIMEOUT,
        monoio::net::TcpStream::connect_addr(upstream),
    )
    .await
    .map_err(|_| anyhow::anyhow!("connect timed out after {UPSTREAM_CONNECT_TIMEOUT:?}"))?
    .context("connect")?;
    let _ = stream.set_nodelay(true);
    let io = MonoioIo::new(stream.into_poll_io().context("poll io")?);
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(MAX_UPSTREAM_HEAD_BYTES)
        .handshake(io)
        .await
        .context("HTTP handshake")?;
    monoio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "console: upstream connection ended with an error");
        }
    });
    sender.send_request(req).await.context("request")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_uri_strips_the_prefix_and_keeps_the_query_raw() {
        let u = |s: &str| upstream_uri(&s.parse().unwrap()).map(|u| u.to_string());
        assert_eq!(u("/api/s3/").as_deref(), Some("/"));
        assert_eq!(
            u("/api/s3/b/a%20b/c?list-type=2&prefix=a%2F").as_deref(),
            Some("/b/a%20b/c?list-type=2&prefix=a%2F")
        );
        assert_eq!(u("/api/s3/metrics").as_deref(), Some("/metrics"));
        assert_eq!(u("/api/s3x/b"), None);
        assert_eq!(u("/api/s3"), None);
        assert_eq!(u("/other"), None);
    }

    #[test]
    fn only_signed_requests_and_page_methods_pass() {
        let req = |uri: &str, auth: bool| {
            let mut b = http::Request::builder().uri(uri);
            if auth {
                b = b.header("authorization", "AWS4-HMAC-SHA256 Credential=x");
            }
            b.body(()).unwrap()
        };
        assert!(!is_signed(&req("/api/s3/", false)));
        assert!(is_signed(&req("/api/s3/", true)));
        assert!(is_signed(&req(
            "/api/s3/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=ab",
            false
        )));
        assert!(!is_signed(&req("/api/s3/b/k?x-amz-signature-ish=1", false)));
        assert!(method_allowed(&http::Method::PUT));
        assert!(!method_allowed(&http::Method::POST));
        assert!(!method_allowed(&http::Method::OPTIONS));
    }

    #[test]
    fn hop_headers_are_dropped_and_signed_ones_kept() {
        let mut h = http::HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive"),
            ("cookie", "a=b"),
            ("transfer-encoding", "chunked"),
            ("host", "127.0.0.1:9001"),
            ("x-amz-date", "20260101T000000Z"),
            ("authorization", "AWS4-HMAC-SHA256 ..."),
        ] {
            h.insert(k, v.parse().unwrap());
        }
        strip_hop_headers(&mut h);
        let mut names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, ["authorization", "host", "x-amz-date"]);
    }
}
