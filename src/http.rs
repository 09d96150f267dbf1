//! HTTP/1.1 connections: hyper on monoio, health endpoints, panic containment.

use std::cell::Cell;
use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use monoio::io::IntoPollIo;
use monoio::net::TcpStream;
use monoio_compat::hyper::{MonoioIo, MonoioTimer};
use s3s::service::S3Service;

/// Largest request head (request line + headers) accepted, bytes. Larger gets 431.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Largest XML request body (DeleteObjects with 1,000 keys, CompleteMultipartUpload with
/// 10,000 parts), bytes.
pub const MAX_XML_BODY_BYTES: usize = 4 << 20;
/// Longest validity of a presigned URL (S3's limit: 7 days), seconds.
pub const MAX_PRESIGNED_EXPIRES_S: u64 = 7 * 24 * 3600;

#[derive(Clone, Copy)]
pub struct ConnLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_inflight: usize,
}

thread_local! {
    /// Requests being served on this core right now.
    static INFLIGHT: Cell<usize> = const { Cell::new(0) };
}

struct InflightGuard;
impl InflightGuard {
    /// Takes a slot, or None when the core is at its limit.
    fn try_new(max: usize) -> Option<Self> {
        INFLIGHT.with(|n| {
            if n.get() >= max {
                None
            } else {
                n.set(n.get() + 1);
                Some(InflightGuard)
            }
        })
    }
}
impl Drop for InflightGuard {
    fn drop(&mut self) {
        INFLIGHT.with(|n| n.set(n.get() - 1));
    }
}

fn is_health(path: &str) -> bool {
    matches!(
        path,
        "/health" | "/minio/health/live" | "/minio/health/ready" | "/minio/health/cluster"
    )
}

fn plain(status: http::StatusCode, body: &'static str) -> http::Response<s3s::Body> {
    let mut r = http::Response::new(s3s::Body::from(bytes::Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}

fn error_xml(status: http::StatusCode, code: &str, message: &str) -> http::Response<s3s::Body> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    let mut r = http::Response::new(s3s::Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    r
}

fn internal_error_xml() -> http::Response<s3s::Body> {
    error_xml(
        http::StatusCode::INTERNAL_SERVER_ERROR,
        "InternalError",
        "We encountered an internal error. Please try again.",
    )
}

/// Presigned URL validity above S3's 7-day limit (s3s does not check it).
fn presigned_too_long(uri: &http::Uri) -> bool {
    uri.query().is_some_and(|q| {
        q.split('&').any(|kv| {
            kv.strip_prefix("X-Amz-Expires=").is_some_and(|v| {
                v.parse::<u64>()
                    .map_or(true, |s| s > MAX_PRESIGNED_EXPIRES_S)
            })
        })
    })
}

fn is_aws_chunked(h: &http::HeaderMap) -> bool {
    h.get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("STREAMING-"))
}

/// What serves requests: s3s for everything, and the GET/HEAD fast path in front of it.
#[derive(Clone)]
pub struct Handlers {
    pub svc: S3Service,
    pub fast: Option<Arc<crate::fast::FastPath>>,
}

async fn handle(
    h: Handlers,
    max_inflight: usize,
    req: http::Request<Incoming>,
) -> Result<http::Response<s3s::Body>, Infallible> {
    crate::spin::kick();
    let resp = handle_inner(h, max_inflight, req).await;
    crate::spin::kick();
    resp
}

async fn handle_inner(
    h: Handlers,
    max_inflight: usize,
    req: http::Request<Incoming>,
) -> Result<http::Response<s3s::Body>, Infallible> {
    let Some(_slot) = InflightGuard::try_new(max_inflight) else {
        tracing::warn!(
            max_inflight,
            "in-flight request limit reached; answering 503 SlowDown"
        );
        return Ok(error_xml(
            http::StatusCode::SERVICE_UNAVAILABLE,
            "SlowDown",
            "Please reduce your request rate.",
        ));
    };
    let head_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + req.uri().path().len()
        + req.uri().query().map_or(0, str::len);
    if head_bytes > MAX_HEADER_BYTES {
        return Ok(error_xml(
            http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "RequestHeaderSectionTooLarge",
            "Your request header section exceeds the maximum allowed size (64 KiB).",
        ));
    }
    if (req.method() == http::Method::GET || req.method() == http::Method::HEAD)
        && is_health(req.uri().path())
    {
        return Ok(plain(http::StatusCode::OK, ""));
    }
    let mut req = req;
    if let Some(fp) = &h.fast {
        match AssertUnwindSafe(crate::fast::try_serve(fp, req))
            .catch_unwind()
            .await
        {
            Ok(Ok(resp)) => return Ok(resp),
            Ok(Err(back)) => req = back,
            Err(_) => {
                tracing::error!(
                    "panic while serving a request (fast path); answered 500, connection kept"
                );
                return Ok(internal_error_xml());
            }
        }
    }
    let svc = h.svc;
    if let Some(resp) = crate::sigcheck::before_s3s(&mut req) {
        return Ok(resp);
    }
    if presigned_too_long(req.uri()) {
        return Ok(error_xml(
            http::StatusCode::FORBIDDEN,
            "AuthorizationQueryParametersError",
            "X-Amz-Expires must be less than a week (in seconds) that is 604800",
        ));
    }
    // A body the handler may answer before reading (auth failure, NoSuchBucket, 412 ...) is
    // shared so it can be drained afterwards: closing with unread body bytes makes the kernel
    // send a RST, and clients that stream without `Expect: 100-continue` (aws-sdk-rust,
    // aws-sdk-cpp, curl) then lose the error response. GETs and empty bodies skip this.
    let drainable = has_body(&req);
    let continue_expected = expects_continue(req.headers());
    let chunked = is_aws_chunked(req.headers());
    let (parts, body) = req.into_parts();
    let (body, shared) = if drainable {
        let sh: Arc<Mutex<BodySlot>> = Arc::new(Mutex::new(Some(body)));
        let b = if chunked {
            s3s::Body::http_body(crate::chunked::GuardedBody::new(SharedBody(sh.clone())))
        } else {
            s3s::Body::http_body(SharedBody(sh.clone()))
        };
        (b, Some(sh))
    } else if chunked {
        (
            s3s::Body::http_body(crate::chunked::GuardedBody::new(body)),
            None,
        )
    } else {
        (s3s::Body::from(body), None)
    };
    let req = http::Request::from_parts(parts, body);
    let resp = match AssertUnwindSafe(svc.call(req)).catch_unwind().await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => {
            let body_cut_short = shared.as_ref().is_some_and(|sh| {
                use http_body::Body as _;
                sh.lock()
                    .expect("body lock poisoned")
                    .as_ref()
                    .is_some_and(|b| !b.is_end_stream())
            });
            if body_cut_short {
                tracing::debug!(error = ?e, "request body ended early");
                error_xml(
                    http::StatusCode::BAD_REQUEST,
                    "IncompleteBody",
                    "You did not provide the number of bytes specified by the Content-Length HTTP header.",
                )
            } else {
                tracing::error!(error = ?e, "request failed inside s3s");
                internal_error_xml()
            }
        }
        Err(_) => {
            tracing::error!("panic while serving a request; answered 500, connection kept");
            internal_error_xml()
        }
    };
    let mut resp = resp;
    if let Some(sh) = shared {
        if continue_expected {
            // The client waits for 100-continue before sending its body, but may send it
            // anyway after its own timeout: if the body was not read, the connection cannot
            // be reused safely (the late body would be parsed as the next request).
            let unread = sh
                .lock()
                .expect("body lock poisoned")
                .as_ref()
                .is_some_and(|b| {
                    use http_body::Body as _;
                    !b.is_end_stream()
                });
            if unread {
                resp.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
        } else {
            drain(&sh).await;
        }
    }
    Ok(resp)
}

/// The request body, shared between s3s and `handle` (taken by `drain`).
type BodySlot = Option<Incoming>;

fn has_body(req: &http::Request<Incoming>) -> bool {
    use http_body::Body as _;
    !req.body().is_end_stream()
}

fn expects_continue(h: &http::HeaderMap) -> bool {
    h.get(http::header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
}

/// Most bytes read and discarded after an early answer before giving up (the connection is
/// then closed as before).
pub const MAX_DRAIN_BYTES: u64 = 16 << 20;

struct SharedBody(Arc<Mutex<BodySlot>>);

impl http_body::Body for SharedBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, hyper::Error>>> {
        let mut g = self.0.lock().expect("body lock poisoned");
        match g.as_mut() {
            Some(b) => std::pin::Pin::new(b).poll_frame(cx),
            None => std::task::Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0
            .lock()
            .expect("body lock poisoned")
            .as_ref()
            .is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0
            .lock()
            .expect("body lock poisoned")
            .as_ref()
            .map(|b| b.size_hint())
            .unwrap_or_default()
    }
}

async fn drain(sh: &Arc<Mutex<BodySlot>>) {
    use http_body::Body as _;
    let Some(mut body) = sh.lock().expect("body lock poisoned").take() else {
        return;
    };
    if body.is_end_stream() {
        return;
    }
    let mut drained: u64 = 0;
    while drained <= MAX_DRAIN_BYTES {
        let frame =
            futures::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await;
        match frame {
            Some(Ok(f)) => drained += f.data_ref().map_or(0, |d| d.len() as u64),
            _ => return,
        }
    }
    tracing::debug!(drained, "stopped draining an unread request body");
}

/// Serves one connection to completion (or until shutdown asks it to finish).
pub async fn serve_conn(
    stream: TcpStream,
    handlers: Handlers,
    limits: ConnLimits,
    shutdown: futures::future::Shared<futures::channel::oneshot::Receiver<()>>,
    active: Rc<Cell<usize>>,
) {
    struct Guard(Rc<Cell<usize>>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.set(self.0.get() - 1);
        }
    }
    let _g = Guard(active);
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "set_nodelay failed");
    }
    let io = match stream.into_poll_io() {
        Ok(io) => MonoioIo::new(crate::idle::IdleIo::new(io, limits.idle_timeout)),
        Err(e) => {
            tracing::debug!(error = %e, "cannot switch stream to poll io");
            return;
        }
    };
    let max_inflight = limits.max_inflight;
    let service =
        hyper::service::service_fn(move |req| handle(handlers.clone(), max_inflight, req));
    let conn = http1::Builder::new()
        .timer(MonoioTimer)
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEADER_BYTES)
        .keep_alive(true)
        .serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let finished = {
        let mut c = conn.as_mut().fuse();
        let mut sd = shutdown.fuse();
        futures::select_biased! {
            r = c => Some(r),
            _ = sd => None,
        }
    };
    let result = match finished {
        Some(r) => r,
        None => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
