//! Everything but GET/HEAD of objects, in gateway mode: an s3s custom route (called after s3s
//! verified the client's signature against bale's own keys) that sends the request upstream,
//! signed with the upstream's key, and answers exactly what the upstream answered (status,
//! S3 error code, headers, body): LIST, bucket operations, multipart, conditional writes.
//!
//! Writes change the local tier around the upstream call:
//! - PutObject: the local copy of the key is removed first (a crash after that leaves a miss,
//!   never a stale hit), the body streams upstream while a copy is kept in memory (up to
//!   `KEEP_PUT_BYTES`; a body of unknown length within it is read whole before it goes up,
//!   `bigput::read_head`), and once the upstream acknowledged, the copy is stored locally under
//!   the upstream's ETag, before the client's acknowledgement. Nothing is stored locally that
//!   the upstream did not acknowledge.
//! - CopyObject, DeleteObject, DeleteObjects, CompleteMultipartUpload: the local copies of the
//!   keys they change are removed first; the next read fills from the upstream.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use bale_io::Expect;
use bytes::Bytes;
use http::{Extensions, HeaderMap, Method, Uri};
use s3s::route::S3Route;
use s3s::{s3_error, Body, S3Request, S3Response, S3Result};
use send_wrapper::SendWrapper;

use super::bigput;
use super::listcache;
use super::local;
use super::manifest;
use super::read::unavailable;
use super::upstream::{Tee, UpBody, UpRequest};
use super::Gateway;
use crate::s3::{error, BaleS3};

/// PUT bodies up to this size are kept locally after the upstream acknowledged them (larger
/// ones are filled on first read).
pub const KEEP_PUT_BYTES: u64 = 64 << 20;
/// Largest upstream answer relayed from memory (LIST pages, XML answers), bytes.
const MAX_ANSWER_BYTES: usize = 64 << 20;
/// Largest request body of unknown length relayed (buffered first), bytes.
const MAX_UNKNOWN_BODY: usize = 256 << 20;
/// Largest DeleteObjects body, bytes.
const MAX_DELETE_BODY: usize = 4 << 20;

/// Query keys a GET/HEAD of an object may carry and still be an ordinary object read
/// (answered by the gateway's GetObject/HeadObject, hit or miss).
fn read_query_ok(q: Option<&str>) -> bool {
    let Some(q) = q else { return true };
    q.split('&').filter(|p| !p.is_empty()).all(|p| {
        let k = p.split('=').next().unwrap_or("");
        k == "x-id"
            || k == "partNumber"
            || k.starts_with("response-")
            || k.starts_with("X-Amz-")
            || k.starts_with("x-amz-")
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if !b.contains(&b'%') {
        return Some(s.to_string());
    }
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let (hi, lo) = (hex(*b.get(i + 1)?)?, hex(*b.get(i + 2)?)?);
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// (bucket, key) of a path-style request path.
fn split_path(path: &str) -> Option<(Option<String>, Option<String>)> {
    let p = percent_decode(path)?;
    let p = p.strip_prefix('/')?;
    if p.is_empty() {
        return Some((None, None));
    }
    match p.split_once('/') {
        None => Some((Some(p.to_string()), None)),
        Some((b, "")) => Some((Some(b.to_string()), None)),
        Some((b, k)) => Some((Some(b.to_string()), Some(k.to_string()))),
    }
}

fn query_pairs(q: Option<&str>) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for p in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        out.push((percent_decode(k)?, percent_decode(v)?));
    }
    Some(out)
}

/// Query parameters of a presigned URL's signature (SigV4, and SigV2's).
fn is_presign_param(k: &str) -> bool {
    matches!(
        k,
        "X-Amz-Algorithm"
            | "X-Amz-Credential"
            | "X-Amz-Date"
            | "X-Amz-Expires"
            | "X-Amz-SignedHeaders"
            | "X-Amz-Signature"
            | "X-Amz-Security-Token"
            | "AWSAccessKeyId"
            | "Signature"
            | "Expires"
    )
}

/// Request headers passed upstream: content headers, conditions, ranges and `x-amz-*`
/// except those of bale's own signature and transfer framing.
fn forwarded(h: &HeaderMap) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in h {
        let n = k.as_str();
        let keep = matches!(
            n,
            "content-type"
                | "content-md5"
                | "content-language"
                | "content-disposition"
                | "cache-control"
                | "expires"
                | "if-match"
                | "if-none-match"
                | "if-modified-since"
                | "if-unmodified-since"
                | "range"
        ) || (n.starts_with("x-amz-")
            && !matches!(
                n,
                "x-amz-date"
                    | "x-amz-content-sha256"
                    | "x-amz-decoded-content-length"
                    | "x-amz-trailer"
                    | "x-amz-security-token"
                    | "x-amz-sdk-checksum-algorithm"
            ));
        if n == "content-encoding" {
            if let Some(e) = v.to_str().ok().and_then(crate::s3::meta::strip_aws_chunked) {
                out.push((n.to_string(), e));
            }
            continue;
        }
        if keep {
            if let Ok(v) = v.to_str() {
                out.push((n.to_string(), v.to_string()));
            }
        }
    }
    out
}

/// Answer headers passed back (hop-by-hop and per-server ones dropped; bale sets its own).
fn answer_headers(h: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (k, v) in h {
        if matches!(
            k.as_str(),
            "connection"
                | "keep-alive"
                | "transfer-encoding"
                | "content-length"
                | "date"
                | "server"
                | "x-amz-request-id"
                | "x-amz-id-2"
        ) {
            continue;
        }
        out.append(k.clone(), v.clone());
    }
    out
}

pub struct GatewayRoute {
    pub inner: BaleS3,
    pub gw: Arc<Gateway>,
}

#[async_trait::async_trait]
impl S3Route for GatewayRoute {
    fn is_match(&self, method: &Method, uri: &Uri, _h: &HeaderMap, _e: &mut Extensions) -> bool {
        let object_read = (method == Method::GET || method == Method::HEAD)
            && matches!(split_path(uri.path()), Some((Some(_), Some(_))))
            && read_query_ok(uri.query());
        !object_read
    }

    async fn check_access(&self, req: &mut S3Request<Body>) -> S3Result<()> {
        let Some(c) = &req.credentials else {
            return Err(s3_error!(AccessDenied, "Signature is required"));
        };
        let read = req.method == Method::GET || req.method == Method::HEAD;
        let bucket = split_path(req.uri.path()).and_then(|(b, _)| b);
        let op = if read { "GetObject" } else { "PutObject" };
        if crate::auth::allowed(&c.access_key, op, bucket.as_deref()) {
            Ok(())
        } else {
            Err(s3_error!(AccessDenied, "Access Denied"))
        }
    }

    async fn call(&self, req: S3Request<Body>) -> S3Result<S3Response<Body>> {
        SendWrapper::new(relay(self.inner.clone(), self.gw.clone(), req)).await
    }
}

/// Removes the local copy of `b/k` (on its owner core) before a write changes it upstream.
pub async fn invalidate(s: &BaleS3, gw: &Arc<Gateway>, b: &str, k: &str) -> S3Result<()> {
    gw.forget(b, k);
    let (bb, kk) = (b.to_string(), k.to_string());
    s.shard_of(b, k)
        .run(move |shard| async move {
            manifest::forget_all(&shard, &bb, &kk).await;
            if shard.get(&bb, &kk).is_some() {
                match shard.delete(&bb, &kk, Expect::Any).await {
                    Ok(_) | Err(bale_io::Error::NotFound) => {}
                    Err(e) => return Err(crate::s3::error::engine(e)),
                }
            }
            Ok(())
        })
        .await
}

/// Keys named in a DeleteObjects body.
fn delete_keys(body: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(body);
    let mut out = Vec::new();
    let mut rest = &text[..];
    while let Some(s) = rest.find("<Key>") {
        let after = &rest[s + 5..];
        let Some(e) = after.find("</Key>") else { break };
        if let Ok(k) = quick_xml::escape::unescape(&after[..e]) {
            out.push(k.into_owned());
        }
        rest = &after[e + 6..];
    }
    out
}

async fn collect_body(mut body: Body, limit: usize) -> S3Result<Bytes> {
    use http_body_util::BodyExt;
    let mut out = bytes::BytesMut::new();
    while let Some(f) = body.frame().await {
        let f = f.map_err(crate::s3::error::body)?;
        if let Ok(d) = f.into_data() {
            if out.len() + d.len() > limit {
                return Err(s3_error!(
                    EntityTooLarge,
                    "request body too large for the gateway"
                ));
            }
            out.extend_from_slice(&d);
        }
    }
    Ok(out.freeze())
}

/// Largest body with an `x-amz-trailer` checksum read whole (checked against the trailer before
/// the upstream sees the body, and sent as the `x-amz-checksum-*` header), bytes. Longer ones
/// are streamed through [`TrailerChecked`].
pub const MAX_TRAILER_BODY: u64 = KEEP_PUT_BYTES;

const TRAILER_OK: u8 = 0;
const TRAILER_BAD: u8 = 1;
const TRAILER_MISSING: u8 = 2;

/// A body over [`MAX_TRAILER_BODY`] whose checksum comes in an aws-chunked trailer, streamed
/// upstream as it arrives: its checksum is computed on the way, and its last chunk is held
/// back until the trailer arrived and matched. A trailer that does not match (or never came)
/// ends the body with an error instead of that chunk, so the upstream never receives the
/// declared length and stores nothing; `verdict` tells the route why (400 BadDigest).
struct TrailerChecked {
    inner: Body,
    hasher: Option<s3s::checksum::ChecksumHasher>,
    algo: &'static str,
    trailing: s3s::TrailingHeaders,
    held: Option<Bytes>,
    done: bool,
    verdict: Arc<AtomicU8>,
}

impl TrailerChecked {
    fn new(
        inner: Body,
        headers: &HeaderMap,
        trailing: Option<s3s::TrailingHeaders>,
    ) -> S3Result<Self> {
        let named = headers
            .get("x-amz-trailer")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let algo = named
            .trim()
            .to_ascii_lowercase()
            .strip_prefix("x-amz-checksum-")
            .and_then(|a| crate::s3::ingest::ALGOS.iter().copied().find(|x| *x == a))
            .ok_or_else(|| s3_error!(InvalidArgument, "Unsupported trailer: {named}"))?;
        let trailing = trailing.ok_or_else(|| {
            s3_error!(
                InvalidRequest,
                "x-amz-trailer given without a streaming trailer payload"
            )
        })?;
        Ok(TrailerChecked {
            inner,
            hasher: Some(crate::s3::ingest::hasher_for(&[algo])),
            algo,
            trailing,
            held: None,
            done: false,
            verdict: Arc::new(AtomicU8::new(TRAILER_OK)),
        })
    }

    /// The body ended: whether the trailer names what the bytes hash to.
    fn verdict_at_end(&mut self) -> u8 {
        let sums = crate::s3::ingest::checksums_of(self.hasher.take().unwrap_or_default());
        let want = sums
            .into_iter()
            .find(|(a, _)| a == self.algo)
            .map(|(_, v)| v);
        let name = format!("x-amz-checksum-{}", self.algo);
        let got = self
            .trailing
            .read(|h| {
                h.get(name.as_str())
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            })
            .flatten();
        match got {
            Some(v) if Some(&v) == want.as_ref() => TRAILER_OK,
            Some(_) => TRAILER_BAD,
            None => TRAILER_MISSING,
        }
    }
}

impl http_body::Body for TrailerChecked {
    type Data = Bytes;
    type Error = s3s::StdError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(this.held.take().map(|b| Ok(http_body::Frame::data(b))));
        }
        loop {
            match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(f))) => {
                    let Ok(d) = f.into_data() else { continue };
                    if let Some(h) = this.hasher.as_mut() {
                        h.update(&d);
                    }
                    if let Some(prev) = this.held.replace(d) {
                        return Poll::Ready(Some(Ok(http_body::Frame::data(prev))));
                    }
                }
                Poll::Ready(None) => {
                    this.done = true;
                    let v = this.verdict_at_end();
                    if v == TRAILER_OK {
                        return Poll::Ready(
                            this.held.take().map(|b| Ok(http_body::Frame::data(b))),
                        );
                    }
                    this.verdict.store(v, Ordering::Release);
                    this.held = None;
                    return Poll::Ready(Some(Err(
                        "the body's x-amz-trailer checksum did not match".into(),
                    )));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.held.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::Body::size_hint(&self.inner)
    }
}

/// Reads a PutObject / UploadPart body announced with `x-amz-trailer: x-amz-checksum-<algo>`
/// whole, checks its length, `Content-MD5` and the trailer's checksum (as plain bale does,
/// `crate::s3::ingest`), and returns it with (algo, base64 checksum).
async fn read_with_trailer(
    body: Body,
    headers: &HeaderMap,
    content_length: Option<u64>,
    trailing: Option<s3s::TrailingHeaders>,
) -> S3Result<(Bytes, (String, String))> {
    use crate::s3::ingest;
    let n = match content_length {
        Some(n) => n.min(MAX_TRAILER_BODY),
        None => {
            return Err(s3_error!(
                MissingContentLength,
                "You must provide the Content-Length or x-amz-decoded-content-length HTTP header."
            ))
        }
    };
    let checks = ingest::body_checks(
        headers,
        Some(n as i64),
        None,
        [None; 5],
        None,
        trailing,
        false,
    )?;
    let Some((algo, _)) = &checks.trailer else {
        return Err(s3_error!(
            InvalidRequest,
            "x-amz-trailer given without a streaming trailer payload"
        ));
    };
    let algo = algo.to_string();
    let raw = collect_body(body, n as usize).await?;
    let mut h = ingest::Hashing::new(&checks);
    h.feed(&raw, &checks).await?;
    let done = h.finish(&checks)?;
    let sum = done
        .checksums
        .into_iter()
        .find(|(a, _)| *a == algo)
        .ok_or_else(|| error::internal("trailer checksum not computed"))?;
    Ok((raw, sum))
}

async fn relay(
    s: BaleS3,
    gw: Arc<Gateway>,
    mut req: S3Request<Body>,
) -> S3Result<S3Response<Body>> {
    let (bucket, key) = split_path(req.uri.path())
        .ok_or_else(|| s3_error!(InvalidURI, "Could not parse the request path"))?;
    let mut query = query_pairs(req.uri.query())
        .ok_or_else(|| s3_error!(InvalidURI, "Could not parse the query"))?;
    // A presigned request's signature (bale's key, checked by s3s) is no part of what goes
    // upstream: sent on, the upstream reads it as a presigned request with a key it does not
    // know (403 InvalidAccessKeyId) instead of the gateway's own signature.
    query.retain(|(k, _)| !is_presign_param(k));
    let has_q = |n: &str| query.iter().any(|(k, _)| k == n);
    let m = req.method.clone();
    let copy = req.headers.contains_key("x-amz-copy-source");
    let (b, k) = (bucket.as_deref(), key.as_deref());
    let content_length: Option<u64> = req
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .filter(|_| req.extensions.get::<crate::s3::UnknownLength>().is_none());

    // The LIST page cache (`--list-cache-ms`, off by default; `super::listcache`).
    let ttl = gw.cfg.list_cache;
    let list = match (&m, b, k) {
        (&Method::GET, Some(_), None) if !ttl.is_zero() => listcache::list_key(&query),
        _ => None,
    };
    if let (Some(b), Some(lk)) = (b, &list) {
        if let Some(p) = listcache::get(b, lk, ttl) {
            let mut out = S3Response::new(Body::from(p.body));
            out.status = Some(p.status);
            out.headers = p.headers;
            return Ok(out);
        }
    }
    let list_generation = b.filter(|_| list.is_some()).and_then(listcache::generation);
    // A write to a bucket drops its kept pages now, and none is kept until it ends.
    let _list_write = match (b, &m) {
        (Some(b), m) if !ttl.is_zero() && m != Method::GET && m != Method::HEAD => {
            listcache::write_started(b);
            Some(listcache::WriteGuard(b.to_string()))
        }
        _ => None,
    };

    // What this write changes locally, removed before the upstream sees it.
    let mut keep_put = false;
    let mut body = req.input;
    let mut in_memory: Option<Bytes> = None;
    // The whole body of a PutObject of unknown length within KEEP_PUT_BYTES (read before it
    // went upstream), kept locally after the upstream's acknowledgement.
    let mut unsized_kept: Option<Bytes> = None;
    match (&m, b, k) {
        (&Method::PUT, Some(b), Some(k))
            if !has_q("uploadId") && !has_q("tagging") && !has_q("acl") =>
        {
            crate::s3::check_key(k)?;
            invalidate(&s, &gw, b, k).await?;
            keep_put = !copy && content_length.is_some_and(|n| n <= KEEP_PUT_BYTES);
        }
        (&Method::DELETE, Some(b), Some(k)) if !has_q("uploadId") && !has_q("tagging") => {
            invalidate(&s, &gw, b, k).await?;
        }
        (&Method::POST, Some(b), Some(k)) if has_q("uploadId") => {
            invalidate(&s, &gw, b, k).await?; // CompleteMultipartUpload
        }
        (&Method::POST, Some(b), None) if has_q("delete") => {
            let raw = collect_body(body, MAX_DELETE_BODY).await?;
            for key in delete_keys(&raw) {
                invalidate(&s, &gw, b, &key).await?;
            }
            in_memory = Some(raw);
            body = Body::empty();
        }
        _ => {}
    }
    let put_object = m == Method::PUT
        && k.is_some()
        && !copy
        && !has_q("uploadId")
        && !has_q("tagging")
        && !has_q("acl");
    if in_memory.is_none() && content_length.is_none() && !http_body::Body::is_end_stream(&body) {
        if let (true, Some(b), Some(k)) = (put_object, b, k) {
            // A PutObject of unknown length: one PutObject up to KEEP_PUT_BYTES, else
            // streamed as a multipart upload (`super::bigput`).
            match bigput::read_head(body).await? {
                bigput::Head::Whole(raw) => {
                    // At most KEEP_PUT_BYTES: kept locally once the upstream acknowledged it,
                    // as a PUT with a Content-Length is.
                    unsized_kept = Some(raw.clone());
                    in_memory = Some(raw);
                }
                bigput::Head::Big { read, rest } => {
                    return bigput::put(
                        &gw.up,
                        b,
                        k,
                        &req.headers,
                        forwarded(&req.headers),
                        read,
                        rest,
                    )
                    .await;
                }
            }
        } else {
            // No declared length: buffer it (the upstream needs one).
            in_memory = Some(collect_body(body, MAX_UNKNOWN_BODY).await?);
        }
        body = Body::empty();
    } else if put_object && content_length.is_none() && in_memory.is_none() {
        unsized_kept = Some(Bytes::new()); // an empty body of unknown length
    }

    // A body whose checksum comes in an aws-chunked trailer (the Rust SDK's, and boto3's
    // `STREAMING-UNSIGNED-PAYLOAD-TRAILER`): the upstream is sent a plain body, so it would
    // neither check nor keep that checksum. Read it whole (at most KEEP_PUT_BYTES), check it
    // here against the trailer, and send it as the `x-amz-checksum-*` header it stands for.
    let mut trailer_sum: Option<(String, String)> = None;
    let mut trailer_verdict: Option<Arc<AtomicU8>> = None;
    if let (true, Some(_), Some(_)) = (
        m == Method::PUT && !copy && !has_q("tagging") && !has_q("acl"),
        b,
        k,
    ) {
        let big = content_length.is_some_and(|n| n > MAX_TRAILER_BODY);
        if req.headers.contains_key("x-amz-trailer") && in_memory.is_none() && big {
            // Too big to read first: streamed, its last chunk held back until the trailer
            // matched (`TrailerChecked`); the checksum itself does not reach the upstream.
            let checked = TrailerChecked::new(body, &req.headers, req.trailing_headers.take())?;
            trailer_verdict = Some(checked.verdict.clone());
            body = Body::http_body_unsync(checked);
        } else if req.headers.contains_key("x-amz-trailer") && in_memory.is_none() {
            let (raw, sum) = read_with_trailer(
                body,
                &req.headers,
                content_length,
                req.trailing_headers.take(),
            )
            .await?;
            if put_object {
                unsized_kept = Some(raw.clone());
                keep_put = false;
            }
            in_memory = Some(raw);
            body = Body::empty();
            trailer_sum = Some(sum);
        }
    }

    let tee = keep_put.then(|| {
        Rc::new(RefCell::new(Tee {
            limit: KEEP_PUT_BYTES,
            ..Default::default()
        }))
    });
    let mut up = UpRequest::new(m.clone(), b, k);
    up.query = query.clone();
    up.headers = forwarded(&req.headers);
    if let Some((algo, v)) = &trailer_sum {
        up.headers
            .push((format!("x-amz-checksum-{algo}"), v.clone()));
    }
    if let Some(raw) = in_memory {
        up.body = UpBody::Full(Some(raw));
    } else if content_length.is_some_and(|n| n > 0) {
        up.body = UpBody::Stream {
            inner: body,
            tee: tee.clone(),
        };
        up.content_length = content_length;
    }
    let sent = gw.up.send(up).await;
    if let Some(v) = &trailer_verdict {
        // The body's trailer did not match: the body was cut before its last chunk, so the
        // upstream stored nothing; the client hears why.
        match v.load(Ordering::Acquire) {
            TRAILER_BAD => {
                return Err(s3_error!(
                BadDigest,
                "The checksum you specified in the trailer did not match the calculated checksum."
            ))
            }
            TRAILER_MISSING => {
                return Err(s3_error!(
                    IncompleteBody,
                    "The announced x-amz-trailer checksum was not received"
                ))
            }
            _ => {}
        }
    }
    let mut resp = sent.map_err(|e| unavailable(&e))?;
    let status = resp.status;
    let headers = answer_headers(&resp.headers);
    let etag = resp.etag();
    let answer = resp
        .collect(MAX_ANSWER_BYTES)
        .await
        .map_err(|e| unavailable(&e))?;

    // Acknowledged upstream: keep the bytes of a PUT.
    let kept: Option<(Vec<Bytes>, u64)> = match (tee, unsized_kept) {
        (Some(t), _) => {
            let mut t = t.borrow_mut();
            (!t.overflow && Some(t.bytes) == content_length)
                .then(|| (std::mem::take(&mut t.chunks), t.bytes))
        }
        (None, Some(raw)) => {
            let n = raw.len() as u64;
            Some((
                if raw.is_empty() {
                    Vec::new()
                } else {
                    vec![raw]
                },
                n,
            ))
        }
        (None, None) => None,
    };
    if let (true, Some((chunks, bytes)), Some(b), Some(k), Some(etag)) =
        (status.is_success(), kept, b, k, etag)
    {
        let mut meta = local::meta_from_headers(&req.headers, &etag);
        if let Some(sum) = trailer_sum {
            meta.checksums.push(sum);
        }
        let cap = gw.cfg.shard_capacity_bytes;
        let (bb, kk) = (b.to_string(), k.to_string());
        let stored = s
            .shard_of(b, k)
            .call(move |shard| async move {
                local::store_as(
                    &shard,
                    &bb,
                    &kk,
                    chunks,
                    bytes,
                    &meta,
                    Expect::Any,
                    cap,
                    local::Origin::Write,
                )
                .await
            })
            .await;
        match stored {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %format!("{e:#}"), bucket = %b, "gateway: could not keep a written object locally");
                invalidate(&s, &gw, b, k).await?;
            }
            Err(e) => {
                tracing::warn!(error = %e, "gateway: could not keep a written object locally");
                invalidate(&s, &gw, b, k).await?;
            }
        }
    }
    if let (Some(b), Some(lk), Some(g)) = (b, list, list_generation) {
        let page = listcache::Page {
            status,
            headers: headers.clone(),
            body: answer.clone(),
        };
        listcache::put(b, lk, g, page, ttl);
    }
    let mut out = S3Response::new(Body::from(answer));
    out.status = Some(status);
    out.headers = headers;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_reads_stay_with_the_s3_handlers() {
        let r = GatewayRoute::is_match_for;
        assert!(!r("GET", "/b/k"));
        assert!(!r("HEAD", "/b/k?partNumber=1"));
        assert!(!r("GET", "/b/k?x-id=GetObject&response-content-type=a"));
        assert!(r("GET", "/b/k?acl"));
        assert!(r("GET", "/b/k?uploadId=1"));
        assert!(r("GET", "/b?list-type=2"));
        assert!(r("GET", "/b/"));
        assert!(r("GET", "/"));
        assert!(r("PUT", "/b/k"));
        assert!(r("DELETE", "/b/k"));
        assert!(r("POST", "/b?delete"));
    }

    impl GatewayRoute {
        fn is_match_for(m: &str, u: &str) -> bool {
            let uri: Uri = u.parse().unwrap();
            let m: Method = m.parse().unwrap();
            let object_read = (m == Method::GET || m == Method::HEAD)
                && matches!(split_path(uri.path()), Some((Some(_), Some(_))))
                && read_query_ok(uri.query());
            !object_read
        }
    }

    #[test]
    fn paths_and_queries() {
        assert_eq!(
            split_path("/b/a%20b/c"),
            Some((Some("b".into()), Some("a b/c".into())))
        );
        assert_eq!(split_path("/b"), Some((Some("b".into()), None)));
        assert_eq!(split_path("/"), Some((None, None)));
        assert_eq!(
            query_pairs(Some("list-type=2&prefix=a%2Fb&delete")),
            Some(vec![
                ("list-type".into(), "2".into()),
                ("prefix".into(), "a/b".into()),
                ("delete".into(), "".into())
            ])
        );
    }

    #[test]
    fn presigned_signatures_stay_here() {
        let mut q = query_pairs(Some(
            "uploads&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=a%2F1&X-Amz-Date=1&X-Amz-Expires=300&X-Amz-SignedHeaders=host&X-Amz-Signature=ff&x-id=PutObject&AWSAccessKeyId=a&Signature=s&Expires=1",
        ))
        .unwrap();
        q.retain(|(k, _)| !is_presign_param(k));
        assert_eq!(
            q,
            vec![
                ("uploads".to_string(), String::new()),
                ("x-id".to_string(), "PutObject".to_string())
            ]
        );
    }

    #[test]
    fn delete_bodies() {
        let xml =
            b"<Delete><Object><Key>a&amp;b</Key></Object><Object><Key>c/d</Key></Object></Delete>";
        assert_eq!(delete_keys(xml), vec!["a&b".to_string(), "c/d".to_string()]);
    }

    #[test]
    fn signature_headers_are_not_forwarded() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("authorization", "x"),
            ("x-amz-date", "x"),
            ("x-amz-content-sha256", "x"),
            ("x-amz-meta-a", "1"),
            ("if-none-match", "*"),
            ("content-encoding", "aws-chunked"),
            ("host", "h"),
        ] {
            h.insert(k, v.parse().unwrap());
        }
        let mut f: Vec<_> = forwarded(&h).into_iter().map(|(k, _)| k).collect();
        f.sort();
        assert_eq!(f, ["if-none-match", "x-amz-meta-a"]);
    }
}
