//! HTTP/1.1 connections: hyper on monoio, health endpoints, panic containment.

use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use monoio::io::IntoPollIo;
use monoio::net::tcp::stream_poll::TcpStreamPoll;
use monoio::net::TcpStream;
use monoio_compat::hyper::{MonoioIo, MonoioTimer};
use s3s::service::S3Service;

use crate::conns::{ConnSlot, ConnTable};

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

pub(crate) struct InflightGuard;
impl InflightGuard {
    /// Takes a slot, or None when the core is at its limit.
    pub(crate) fn try_new(max: usize) -> Option<Self> {
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

pub(crate) fn is_health(path: &str) -> bool {
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

pub(crate) fn error_xml(
    status: http::StatusCode,
    code: &str,
    message: &str,
) -> http::Response<s3s::Body> {
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

pub(crate) fn internal_error_xml() -> http::Response<s3s::Body> {
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
    pub metrics: Arc<crate::metrics::endpoint::Endpoint>,
}

async fn handle(
    h: Handlers,
    conn: Rc<ConnSlot>,
    max_inflight: usize,
    req: http::Request<Incoming>,
) -> Result<http::Response<s3s::Body>, Infallible> {
    let scope = RequestScope::start(&conn, crate::metrics::op_of(&req));
    let logged = crate::logging::log_requests().then(|| request_line(&req));
    let mut resp =
        crate::logging::with_request_id(Some(scope.id()), handle_inner(h, max_inflight, req)).await;
    scope.answered(
        &mut resp,
        logged.as_ref().map(|(m, p)| (m.as_str(), p.as_str())),
    );
    Ok(resp)
}

/// One request's bookkeeping, the same on both fronts (hyper's [`handle`] and the raw front
/// in `crate::front`): started, it counts as activity for the core's poller and the
/// connection table, takes a request id and starts the metrics timer; [`Self::answered`]
/// stamps the id on the answer, counts it and logs it (`--log-requests`). However the scope
/// ends (answered, declined, or dropped with its connection), the request has ended for the
/// poller and the table; a request not answered is not counted (its timer drops uncounted).
pub(crate) struct RequestScope<'c> {
    conn: &'c ConnSlot,
    id: [u8; 16],
    /// Taken when the answer is counted.
    timer: Option<crate::metrics::RequestTimer>,
}

impl<'c> RequestScope<'c> {
    pub(crate) fn start(conn: &'c ConnSlot, op: crate::metrics::Op) -> Self {
        crate::spin::request_started();
        conn.request_started();
        Self {
            conn,
            id: request_id(),
            timer: Some(crate::metrics::RequestTimer::start(op)),
        }
    }

    pub(crate) fn id(&self) -> [u8; 16] {
        self.id
    }

    /// Stamps, counts and (with `--log-requests`) logs the answer; `logged` is the request's
    /// method and path, given only when requests are logged. The request ends here.
    pub(crate) fn answered(
        mut self,
        resp: &mut http::Response<s3s::Body>,
        logged: Option<(&str, &str)>,
    ) {
        stamp_request_id(resp, &self.id);
        let Some(timer) = self.timer.take() else {
            return;
        };
        let op = timer.op();
        let ns = timer.finish(resp);
        if let Some((method, path)) = logged {
            tracing::info!(
                request_id = %String::from_utf8_lossy(&self.id),
                %method,
                %path,
                op = %crate::metrics::OP_NAMES[op as usize],
                status = resp.status().as_u16(),
                duration_us = ns / 1000,
                "request"
            );
        }
    }
}

impl Drop for RequestScope<'_> {
    fn drop(&mut self) {
        self.conn.request_ended();
        crate::spin::request_ended();
    }
}

/// What `--log-requests` prints of a request (only built when it is on).
fn request_line(req: &http::Request<Incoming>) -> (http::Method, String) {
    (req.method().clone(), req.uri().path().to_string())
}

/// A request that carries no credentials at all: no `Authorization` header and no presigned
/// query signature (SigV4 `X-Amz-Signature`, SigV2 `Signature`). bale has no public buckets,
/// so every such request (health checks aside) is refused before anything reads its body.
fn is_anonymous(req: &http::Request<Incoming>) -> bool {
    !req.headers().contains_key(http::header::AUTHORIZATION)
        && !req.uri().query().is_some_and(|q| {
            q.split('&')
                .any(|kv| kv.starts_with("X-Amz-Signature=") || kv.starts_with("Signature="))
        })
}

/// POST object (a browser form upload: `POST /bucket` with `multipart/form-data`). Not
/// supported: its credentials travel inside the form, so s3s would have to read the form
/// before it could refuse anyone.
fn is_post_object(req: &http::Request<Incoming>) -> bool {
    req.method() == http::Method::POST
        && req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .get(..19)
                    .is_some_and(|p| p.eq_ignore_ascii_case("multipart/form-data"))
            })
}

/// Object bytes (PutObject, UploadPart): the only request bodies that are streamed. Every
/// other body (DeleteObjects, CompleteMultipartUpload, tagging, bucket configuration ...) is
/// XML that s3s reads whole into memory before parsing.
fn is_object_data_upload(req: &http::Request<Incoming>) -> bool {
    if req.method() != http::Method::PUT {
        return false;
    }
    let has_key = req
        .uri()
        .path()
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .is_some_and(|(_, k)| !k.is_empty());
    has_key
        && req.uri().query().is_none_or(|q| {
            q.split('&').all(|kv| {
                let name = kv.split('=').next().unwrap_or("");
                matches!(name, "partNumber" | "uploadId" | "x-id" | "")
                    || name.starts_with("X-Amz-")
            })
        })
}

/// A PUT of an object streamed with `Transfer-Encoding: chunked`, no Content-Length and an
/// unsigned payload: its length is known only once the body ends.
fn unknown_length_put(req: &http::Request<Incoming>) -> bool {
    let h = req.headers();
    !h.contains_key(http::header::CONTENT_LENGTH)
        && is_object_data_upload(req)
        && h.get(http::header::TRANSFER_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("chunked"))
            })
        && h.get("x-amz-content-sha256")
            .is_some_and(|v| v.as_bytes() == b"UNSIGNED-PAYLOAD")
}

/// An XML request body that is over `MAX_XML_BODY_BYTES`, or of unknown length: refused from
/// the head (s3s would buffer up to the limit, then answer 500).
fn xml_body_refusal(req: &http::Request<Incoming>) -> Option<http::Response<s3s::Body>> {
    use http_body::Body as _;
    if req.body().is_end_stream() || is_object_data_upload(req) {
        return None;
    }
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        None => Some(error_xml(
            http::StatusCode::LENGTH_REQUIRED,
            "MissingContentLength",
            "You must provide the Content-Length HTTP header.",
        )),
        Some(n) if n > MAX_XML_BODY_BYTES as u64 => {
            let is_delete = req.method() == http::Method::POST
                && req
                    .uri()
                    .query()
                    .is_some_and(|q| q.split('&').any(|kv| kv == "delete" || kv == "delete="));
            Some(if is_delete {
                error_xml(
                    http::StatusCode::BAD_REQUEST,
                    "MalformedXML",
                    "The XML you provided was not well-formed or did not validate against our published schema (body over 4 MiB).",
                )
            } else {
                error_xml(
                    http::StatusCode::BAD_REQUEST,
                    "MaxMessageLengthExceeded",
                    "Your request was too big (XML bodies are limited to 4 MiB).",
                )
            })
        }
        Some(_) => None,
    }
}

/// How much of an unread request body is read and thrown away after an early answer, so the
/// client sees the answer instead of a reset: (bytes, time). Runs after the in-flight slot is
/// given back; then the connection is closed.
#[derive(Clone, Copy)]
struct DrainBudget {
    max_bytes: u64,
    max_time: Duration,
}

/// Early answers to authenticated requests (a failed precondition, NoSuchBucket ...).
const DRAIN_AUTHENTICATED: DrainBudget = DrainBudget {
    max_bytes: MAX_DRAIN_BYTES,
    max_time: Duration::from_millis(MAX_DRAIN_MS),
};
/// Answers to requests that proved no identity (anonymous, bad signature, unknown key).
const DRAIN_REFUSED: DrainBudget = DrainBudget {
    max_bytes: MAX_REFUSED_DRAIN_BYTES,
    max_time: Duration::from_millis(MAX_REFUSED_DRAIN_MS),
};

fn with_close(mut r: http::Response<s3s::Body>) -> http::Response<s3s::Body> {
    r.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    r
}

async fn handle_inner(
    h: Handlers,
    max_inflight: usize,
    req: http::Request<Incoming>,
) -> http::Response<s3s::Body> {
    let head_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + req.uri().path().len()
        + req.uri().query().map_or(0, str::len);
    if head_bytes > MAX_HEADER_BYTES {
        return with_close(error_xml(
            http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "RequestHeaderSectionTooLarge",
            "Your request header section exceeds the maximum allowed size (64 KiB).",
        ));
    }
    if (req.method() == http::Method::GET || req.method() == http::Method::HEAD)
        && is_health(req.uri().path())
    {
        return plain(http::StatusCode::OK, "");
    }
    if crate::allocs::ENABLED && req.uri().path() == crate::allocs::ENDPOINT {
        let mut r = http::Response::new(s3s::Body::from(crate::allocs::total().to_string()));
        *r.status_mut() = http::StatusCode::OK;
        return r;
    }
    if crate::metrics::endpoint::is_metrics_request(req.method(), req.uri()) {
        return h.metrics.answer(&req).await;
    }
    if is_post_object(&req) {
        refuse_drain(req, DRAIN_REFUSED).await;
        return with_close(error_xml(
            http::StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            "POST object (browser form upload) is not supported; use PUT.",
        ));
    }
    if is_anonymous(&req) {
        refuse_drain(req, DRAIN_REFUSED).await;
        return with_close(error_xml(
            http::StatusCode::FORBIDDEN,
            "AccessDenied",
            "Anonymous access is not allowed: sign the request.",
        ));
    }
    if let Some(refusal) = xml_body_refusal(&req) {
        refuse_drain(req, DRAIN_REFUSED).await;
        return with_close(refusal);
    }
    let (resp, unread) = {
        let Some(_slot) = InflightGuard::try_new(max_inflight) else {
            note_slowdown(max_inflight);
            return with_close(error_xml(
                http::StatusCode::SERVICE_UNAVAILABLE,
                "SlowDown",
                "Please reduce your request rate.",
            ));
        };
        serve_with_slot(h, req).await
        // the slot is given back here, before any draining
    };
    match unread {
        Unread::None => resp,
        Unread::Close => with_close(resp),
        Unread::Refused(req) => {
            refuse_drain(*req, DRAIN_REFUSED).await;
            with_close(resp)
        }
        Unread::Drain(sh) => {
            let budget = if matches!(
                resp.status(),
                http::StatusCode::FORBIDDEN | http::StatusCode::UNAUTHORIZED
            ) {
                DRAIN_REFUSED
            } else {
                DRAIN_AUTHENTICATED
            };
            let body = sh.lock().expect("body lock poisoned").take();
            match body {
                Some(b) => {
                    if drain(b, budget).await {
                        resp
                    } else {
                        with_close(resp)
                    }
                }
                None => resp,
            }
        }
    }
}

/// What is left of the request body once the handler answered.
enum Unread {
    None,
    /// The client waits for `100-continue` and was not told to send: close after answering.
    Close,
    /// Read and discard it (bounded) so the client sees the answer.
    Drain(Arc<Mutex<BodySlot>>),
    /// Refused before s3s saw it: drain within the refused budget, then close.
    Refused(Box<http::Request<Incoming>>),
}

/// The part of a request that holds an in-flight slot: the fast path, then s3s.
async fn serve_with_slot(
    h: Handlers,
    req: http::Request<Incoming>,
) -> (http::Response<s3s::Body>, Unread) {
    let mut req = req;
    if let Some(fp) = &h.fast {
        match AssertUnwindSafe(crate::fast::try_serve(fp, req))
            .catch_unwind()
            .await
        {
            Ok(Ok(resp)) => return (resp, Unread::None),
            Ok(Err(back)) => req = back,
            Err(_) => {
                tracing::error!(
                    "panic while serving a request (fast path); answered 500, connection kept"
                );
                return (internal_error_xml(), Unread::None);
            }
        }
    }
    let svc = h.svc;
    if let Some(resp) = crate::sigcheck::before_s3s(&mut req) {
        return (resp, Unread::Refused(Box::new(req)));
    }
    if presigned_too_long(req.uri()) {
        return (
            error_xml(
                http::StatusCode::FORBIDDEN,
                "AuthorizationQueryParametersError",
                "X-Amz-Expires must be less than a week (in seconds) that is 604800",
            ),
            Unread::Close,
        );
    }
    if unknown_length_put(&req) {
        // s3s refuses an unsigned body without a length (MissingContentLength); PutObject
        // counts it as it streams instead (see `crate::s3::UnknownLength`). The marker is an
        // extension only the server sets: a client cannot fake it.
        req.headers_mut().insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from_static("0"),
        );
        req.extensions_mut().insert(crate::s3::UnknownLength);
    }
    let is_head = req.method() == http::Method::HEAD;
    let continue_expected = expects_continue(req.headers());
    let (req, shared) = share_body(req);
    let mut resp = call_s3s(svc, req, shared.as_ref()).await;
    if is_head
        && resp.status() == http::StatusCode::OK
        && resp.headers().contains_key(http::header::CONTENT_RANGE)
    {
        // s3s 0.14.1 drops the 206 that head_object sets for a ranged HEAD; the fast path
        // answers 206, and so does S3.
        *resp.status_mut() = http::StatusCode::PARTIAL_CONTENT;
    }
    let Some(sh) = shared else {
        return (resp, Unread::None);
    };
    if !body_unread(&sh) {
        (resp, Unread::None)
    } else if continue_expected {
        // The client waits for 100-continue before sending its body, but may send it anyway
        // after its own timeout: if the body was not read, the connection cannot be reused
        // safely (the late body would be parsed as the next request).
        (resp, Unread::Close)
    } else {
        (resp, Unread::Drain(sh))
    }
}

/// Hands the body to s3s. A body the handler may answer before reading (auth failure,
/// NoSuchBucket, 412 ...) is shared so it can be drained afterwards: closing with unread body
/// bytes makes the kernel send a RST, and clients that stream without `Expect: 100-continue`
/// (aws-sdk-rust, aws-sdk-cpp, curl) then lose the error response. GETs and empty bodies skip
/// this. aws-chunked bodies go through the chunk-size guard.
fn share_body(
    req: http::Request<Incoming>,
) -> (http::Request<s3s::Body>, Option<Arc<Mutex<BodySlot>>>) {
    let drainable = has_body(&req);
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
    (http::Request::from_parts(parts, body), shared)
}

/// s3s answers; its errors and panics become S3 errors (a body that ended early is the
/// client's IncompleteBody, anything else an InternalError).
async fn call_s3s(
    svc: S3Service,
    req: http::Request<s3s::Body>,
    shared: Option<&Arc<Mutex<BodySlot>>>,
) -> http::Response<s3s::Body> {
    match AssertUnwindSafe(svc.call(req)).catch_unwind().await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) if shared.is_some_and(body_unread) => {
            tracing::debug!(error = ?e, "request body ended early");
            error_xml(
                http::StatusCode::BAD_REQUEST,
                "IncompleteBody",
                "You did not provide the number of bytes specified by the Content-Length HTTP header.",
            )
        }
        Ok(Err(e)) => {
            tracing::error!(error = ?e, "request failed inside s3s");
            internal_error_xml()
        }
        Err(_) => {
            tracing::error!("panic while serving a request; answered 500, connection kept");
            internal_error_xml()
        }
    }
}

/// Whether the shared request body still has bytes nobody read.
fn body_unread(sh: &Arc<Mutex<BodySlot>>) -> bool {
    use http_body::Body as _;
    sh.lock()
        .expect("body lock poisoned")
        .as_ref()
        .is_some_and(|b| !b.is_end_stream())
}

thread_local! {
    /// 503 SlowDown answers on this core since the last log line, and when that line was.
    static SLOWDOWN_LOG: Cell<(u64, Option<std::time::Instant>)> = const { Cell::new((0, None)) };
}

/// Counts a 503 SlowDown; logs at most one line per `REFUSAL_LOG_INTERVAL` per core.
fn note_slowdown(max_inflight: usize) {
    SLOWDOWN_LOG.with(|c| {
        let (n, last) = c.get();
        let now = std::time::Instant::now();
        if last.is_none_or(|t| now.duration_since(t) >= REFUSAL_LOG_INTERVAL) {
            tracing::warn!(
                max_inflight,
                refused = n + 1,
                "in-flight request limit reached; answering 503 SlowDown"
            );
            c.set((0, Some(now)));
        } else {
            c.set((n + 1, last));
        }
    });
}

/// Shortest time between two log lines about refused requests or connections on one core.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

thread_local! {
    /// (random base, counter): request ids are unique per core without any shared state.
    static REQUEST_IDS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// A request id in AWS's shape: 16 upper-case hex digits.
pub(crate) fn request_id() -> [u8; 16] {
    let v = REQUEST_IDS.with(|c| {
        let (mut base, n) = c.get();
        if base == 0 {
            base = rand::random::<u64>() | 1;
        }
        c.set((base, n + 1));
        // An odd multiplier is a bijection on u64: ids never repeat on this core.
        base ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    });
    const H: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = H[((v >> (60 - 4 * i)) & 15) as usize];
    }
    out
}

/// Puts the request id in `x-amz-request-id`, and into an S3 error body's `<RequestId>` (s3s
/// builds its error bodies without one), so both always carry the same id.
pub(crate) fn stamp_request_id(resp: &mut http::Response<s3s::Body>, id: &[u8; 16]) {
    static X_AMZ_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-amz-request-id");
    // From the core's header arena: no allocation per response.
    let idv = crate::s3::headers::arena_bytes(id).expect("hex digits are a valid header value");
    resp.headers_mut().insert(&X_AMZ_REQUEST_ID, idv);
    if resp.status().as_u16() < 400 {
        return;
    }
    let Some(body) = resp.body().bytes() else {
        return;
    };
    let Some(at) = find(&body, b"</Error>") else {
        return;
    };
    if find(&body, b"<RequestId>").is_some() {
        return;
    }
    let mut out = Vec::with_capacity(body.len() + 40);
    out.extend_from_slice(&body[..at]);
    out.extend_from_slice(b"<RequestId>");
    out.extend_from_slice(id);
    out.extend_from_slice(b"</RequestId>");
    out.extend_from_slice(&body[at..]);
    if let Some(cl) = resp.headers().get(http::header::CONTENT_LENGTH) {
        if cl.to_str().ok().and_then(|v| v.parse::<usize>().ok()) == Some(body.len()) {
            resp.headers_mut().insert(
                http::header::CONTENT_LENGTH,
                http::HeaderValue::from(out.len()),
            );
        }
    }
    *resp.body_mut() = s3s::Body::from(bytes::Bytes::from(out));
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
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

/// Most bytes read and discarded after an early answer to an authenticated request before
/// giving up (the connection is then closed).
pub const MAX_DRAIN_BYTES: u64 = 16 << 20;
/// Longest time spent draining after an early answer to an authenticated request, ms.
pub const MAX_DRAIN_MS: u64 = 5_000;
/// The same two bounds for a refused request (anonymous, bad signature, unknown key): only
/// what a client has typically sent before it could see the answer.
pub const MAX_REFUSED_DRAIN_BYTES: u64 = 4 << 20;
pub const MAX_REFUSED_DRAIN_MS: u64 = 1_000;

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

/// Reads and discards `body` within `budget`; true if it reached the end (the connection can
/// be kept), false if it gave up (the caller closes the connection).
async fn drain(mut body: Incoming, budget: DrainBudget) -> bool {
    use http_body::Body as _;
    if body.is_end_stream() {
        return true;
    }
    let read_all = async {
        let mut drained: u64 = 0;
        while drained <= budget.max_bytes {
            let frame =
                futures::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await;
            match frame {
                Some(Ok(f)) => drained += f.data_ref().map_or(0, |d| d.len() as u64),
                Some(Err(_)) => return false,
                None => return true,
            }
        }
        tracing::debug!(drained, "stopped draining an unread request body");
        false
    };
    monoio::time::timeout(budget.max_time, read_all)
        .await
        .unwrap_or(false)
}

/// Drain for a refused request: bounded, and the connection is closed whatever happens. A
/// client waiting for `100-continue` has sent no body: nothing to drain (hyper sends the
/// 100 only when the body is read).
async fn refuse_drain(req: http::Request<Incoming>, budget: DrainBudget) {
    if expects_continue(req.headers()) {
        return;
    }
    let _ = drain(req.into_body(), budget).await;
}

/// Releases a connection's slot in the core's table when the connection ends.
pub struct SlotGuard(Rc<RefCell<ConnTable>>, Rc<ConnSlot>);

impl SlotGuard {
    /// Counts the connection as open (metrics) until the guard drops.
    pub fn new(table: Rc<RefCell<ConnTable>>, slot: Rc<ConnSlot>) -> Self {
        crate::metrics::connection_opened();
        Self(table, slot)
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.borrow_mut().release(&self.1);
        crate::metrics::connection_closed();
    }
}

/// The byte stream every connection starts from: TCP_NODELAY, poll mode, the idle bound.
pub fn prepare(
    stream: TcpStream,
    limits: ConnLimits,
    slot: &Rc<ConnSlot>,
) -> Option<crate::idle::IdleIo<TcpStreamPoll>> {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "set_nodelay failed");
    }
    match stream.into_poll_io() {
        Ok(io) => Some(crate::idle::IdleIo::new(
            io,
            limits.idle_timeout,
            slot.clone(),
        )),
        Err(e) => {
            tracing::debug!(error = %e, "cannot switch stream to poll io");
            None
        }
    }
}

/// Serves one plain-HTTP connection to completion (or until shutdown asks it to finish, or the
/// core's table evicts it to make room for a newcomer).
pub async fn serve_conn(
    stream: TcpStream,
    handlers: Handlers,
    limits: ConnLimits,
    shutdown: futures::future::Shared<futures::channel::oneshot::Receiver<()>>,
    table: Rc<RefCell<ConnTable>>,
    slot: Rc<ConnSlot>,
) {
    let _g = SlotGuard::new(table, slot.clone());
    let mut stream = stream;
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "set_nodelay failed");
    }
    // Plain GET/HEAD hits are answered by the front, on the ring's own reads and writes; the
    // first request it does not take hands the connection to hyper (poll I/O), with the bytes
    // already read replayed (docs/adr/0020, 0024).
    let outcome = {
        let front = crate::front::serve(&mut stream, &handlers, limits, &shutdown, &slot);
        let mut front = std::pin::pin!(front.fuse());
        let mut ev = slot.evicted().fuse();
        futures::select_biased! {
            o = front => o,
            _ = ev => return, // dropping the connection closes the socket
        }
    };
    match outcome {
        crate::front::Outcome::Closed => {}
        crate::front::Outcome::HandOver(prefix) => {
            let Some(io) = prepare(stream, limits, &slot) else {
                return;
            };
            let io = crate::front::Replay::new(prefix, io);
            serve_http(io, handlers, limits, shutdown, slot).await;
        }
    }
}

/// HTTP/1.1 over a ready byte stream (plain TCP or TLS: monomorphised for each, so the plain
/// path pays nothing for TLS).
pub async fn serve_http<T>(
    io: T,
    handlers: Handlers,
    limits: ConnLimits,
    shutdown: futures::future::Shared<futures::channel::oneshot::Receiver<()>>,
    slot: Rc<ConnSlot>,
) where
    T: monoio::io::poll_io::AsyncRead + monoio::io::poll_io::AsyncWrite + Unpin + 'static,
{
    let io = MonoioIo::new(io);
    let max_inflight = limits.max_inflight;
    let conn_slot = slot.clone();
    let service = hyper::service::service_fn(move |req| {
        handle(handlers.clone(), conn_slot.clone(), max_inflight, req)
    });
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
        let mut ev = slot.evicted().fuse();
        futures::select_biased! {
            r = c => Some(r),
            _ = ev => return, // dropping the connection closes the socket
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
