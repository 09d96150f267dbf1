//! Small PUTs on the front (docs/adr/0030-put-on-the-front.md): a plain `PUT /bucket/key` with
//! one `Content-Length` of at most [`MAX_FRONT_PUT_BYTES`], header SigV4 with
//! `x-amz-content-sha256` `UNSIGNED-PAYLOAD` or a hex SHA-256, optionally `Content-MD5`,
//! `Content-Type` and `x-amz-meta-*`, and nothing else the front would have to interpret. The
//! signature (and the key's right to write the bucket) is verified from the head, before a
//! body byte is read: a request that does not pass, or that carries anything else (checksum
//! headers, conditions, ACL/tagging/SSE/storage class, `Expect`, chunked or aws-chunked
//! bodies, a query other than `x-id=PutObject` ...), is handed to hyper with nothing consumed,
//! and hyper and s3s answer it as before. What the front takes is stored by the same
//! `crate::s3::put::store` as s3s's PutObject and answered with the same headers.

use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures::FutureExt;
use monoio::buf::IoBufMut;
use monoio::io::AsyncReadRent;
use monoio::net::TcpStream;
use s3s::S3Result;

use super::head::RawHead;
use super::Timer;
use crate::conns::ConnSlot;
use crate::fast::{at_most_one, header_str, FastPath, Head};
use crate::s3::ingest::{check_user_meta, content_md5_of, BodyChecks};
use crate::s3::meta::ObjMeta;

/// Largest body the front reads for a PUT, bytes; a larger one (or one of unknown length) is
/// hyper's, streamed as before. The body is held whole in memory until it is stored, so the
/// in-flight slots bound what the front's PUTs hold at once (`--max-inflight` × 1 MiB per core).
pub const MAX_FRONT_PUT_BYTES: usize = 1 << 20;

/// First body buffer of a PUT whose body did not come with its head, bytes.
const BODY_STEP_BYTES: usize = 64 * 1024;

/// A PUT the front serves: everything read from its head, owned (the read buffer is reused
/// for the body and the next request).
pub(super) struct PutReq {
    bucket: String,
    key: String,
    len: usize,
    md5: Option<[u8; 16]>,
    /// The signed payload hash (lower-case hex), unless `UNSIGNED-PAYLOAD`.
    sha256: Option<[u8; 64]>,
    meta: ObjMeta,
    /// The path as sent, kept only with `--log-requests`.
    logged_path: Option<String>,
    /// Held from the head to the store, as s3s's PutObject holds it while the body streams:
    /// a DeleteBucket meanwhile answers BucketNotEmpty instead of leaving an orphan.
    writing: crate::buckets::WriteGuard,
}

impl PutReq {
    pub(super) fn len(&self) -> usize {
        self.len
    }
    pub(super) fn logged_path(&self) -> Option<&str> {
        self.logged_path.as_deref()
    }
}

/// Header lines a front PUT may carry besides `x-amz-meta-*` (names compared without case):
/// what SDKs and tools send with a plain PutObject and that changes nothing s3s would do.
fn known_header(name: &str) -> bool {
    const NAMES: [&str; 13] = [
        "host",
        "authorization",
        "x-amz-date",
        "x-amz-content-sha256",
        "content-length",
        "content-md5",
        "content-type",
        "user-agent",
        "accept",
        "accept-encoding",
        "amz-sdk-invocation-id",
        "amz-sdk-request",
        "x-amz-user-agent",
    ];
    NAMES.iter().any(|n| n.eq_ignore_ascii_case(name))
}

const META_PREFIX: &str = "x-amz-meta-";

/// The PUT as the front serves it, or `None` when it is hyper's (nothing consumed). Verifies
/// the signature from the head: an unauthenticated request never gets a body buffer.
pub(super) fn prepare(fp: &FastPath, head: &RawHead<'_>) -> Option<PutReq> {
    // Gateway mode stores through its own S3 implementation.
    if crate::gateway::get().is_some() {
        return None;
    }
    if head.query().is_some_and(|q| q != "x-id=PutObject") {
        return None;
    }
    let mut user = s3s::dto::Metadata::default();
    for h in head.headers() {
        let name = h.name;
        if name.len() > META_PREFIX.len()
            && name.as_bytes()[..META_PREFIX.len()].eq_ignore_ascii_case(META_PREFIX.as_bytes())
        {
            // s3s decodes RFC 2047 values (`=?charset?...?=`): those are hyper's.
            let v = header_str(h.value)?;
            if v.contains("=?") {
                return None;
            }
            let k = name[META_PREFIX.len()..].to_ascii_lowercase();
            if user.insert(k, v.to_string()).is_some() {
                return None; // repeated: s3s answers its own 400
            }
        } else if !known_header(name) {
            return None;
        }
    }
    let len = at_most_one(head, "content-length").ok()??;
    if len.is_empty() || len.len() > 8 || !len.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let len: usize = len.parse().ok()?;
    if len > MAX_FRONT_PUT_BYTES {
        return None;
    }
    let sha256 = match at_most_one(head, "x-amz-content-sha256").ok()?? {
        "UNSIGNED-PAYLOAD" => None,
        v if v.len() == 64 && v.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) => {
            let mut h = [0u8; 64];
            h.copy_from_slice(v.as_bytes());
            Some(h)
        }
        _ => return None,
    };
    // Anything s3s or PutObject would refuse from the head is theirs to answer.
    let md5 = match at_most_one(head, "content-md5").ok()? {
        Some(v) => Some(content_md5_of(v).ok()?),
        None => None,
    };
    let content_type = match at_most_one(head, "content-type").ok()? {
        Some("") => return None,
        Some(v) => Some(v.to_string()),
        None => None,
    };
    let decoded = crate::fast::percent_decode(head.path())?;
    let (bucket, key) = decoded.strip_prefix('/').and_then(|p| p.split_once('/'))?;
    if !s3s::path::check_bucket_name(bucket) || crate::s3::check_key(key).is_err() {
        return None;
    }
    let user = check_user_meta(&Some(user)).ok()?;
    let meta = ObjMeta::from_request(
        &http::HeaderMap::new(),
        content_type.as_ref(),
        None,
        None,
        None,
        None,
        user,
    )
    .ok()?;
    if !crate::fast::verify(fp, head, &decoded, bucket, true) {
        return None;
    }
    // PutObject's order: the key was checked above, then the bucket (a missing one is
    // hyper's to answer, before any body byte is read).
    let writing = fp.s3.writing(bucket).ok()?;
    Some(PutReq {
        bucket: bucket.to_string(),
        key: key.to_string(),
        len,
        md5,
        sha256,
        meta,
        logged_path: crate::logging::log_requests().then(|| head.path().to_string()),
        writing,
    })
}

/// Why a body was not read whole.
pub(super) enum BodyEnd {
    /// The client closed its side first, or no byte came for the idle timeout: answered 400
    /// IncompleteBody, then the connection closes.
    Short,
    /// The connection failed: it closes without an answer.
    Failed(io::Error),
}

/// Reads a body of `len` bytes: what the read buffer already holds behind the head (consumed
/// from `rb[*start..]`), then the rest with the ring's own receive, each receive bounded by
/// the idle timeout as `IdleIo` bounds hyper's reads.
pub(super) async fn read_body(
    stream: &mut TcpStream,
    rb: &mut Vec<u8>,
    start: &mut usize,
    len: usize,
    timer: &mut Timer,
    idle: Duration,
    conn: &ConnSlot,
) -> Result<Vec<u8>, BodyEnd> {
    let have = (rb.len() - *start).min(len);
    // The buffer grows with what arrived (doubling from `BODY_STEP_BYTES`), not with what was
    // declared: a client that declares 1 MiB and sends nothing holds 64 KiB.
    let mut body = Vec::with_capacity(len.min(have.max(BODY_STEP_BYTES)));
    body.extend_from_slice(&rb[*start..*start + have]);
    *start += have;
    if *start == rb.len() {
        rb.clear();
        *start = 0;
    }
    while body.len() < len {
        let end = body.len();
        if end == body.capacity() {
            body.reserve_exact(end.max(BODY_STEP_BYTES).min(len - end));
        }
        let limit = body.capacity().min(len);
        let mut recv = std::pin::pin!(stream.read(std::mem::take(&mut body).slice_mut(end..limit)));
        let mut sleep = timer.at(Instant::now() + idle);
        let read = std::future::poll_fn(|cx| {
            if let Poll::Ready((r, buf)) = recv.as_mut().poll(cx) {
                return Poll::Ready(Some((r, buf.into_inner())));
            }
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await;
        match read {
            None => {
                tracing::debug!("request body: no progress within the idle timeout");
                return Err(BodyEnd::Short);
            }
            Some((Ok(0), _)) => return Err(BodyEnd::Short),
            Some((Ok(n), buf)) => {
                body = buf;
                crate::metrics::bytes_in(n);
                conn.touched(Instant::now());
            }
            Some((Err(e), _)) => return Err(BodyEnd::Failed(e)),
        }
    }
    Ok(body)
}

/// The answer to a body that ended early (the connection closes after it).
pub(super) fn incomplete_body() -> http::Response<s3s::Body> {
    let mut r = crate::http::error_xml(
        http::StatusCode::BAD_REQUEST,
        "IncompleteBody",
        "You did not provide the number of bytes specified by the Content-Length HTTP header.",
    );
    r.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    r
}

/// Stores the PUT and answers it as s3s's PutObject does (panics contained: 500).
pub(super) async fn answer(
    fp: &Arc<FastPath>,
    p: PutReq,
    body: Vec<u8>,
    headers: http::HeaderMap,
) -> http::Response<s3s::Body> {
    match AssertUnwindSafe(store(fp, p, body)).catch_unwind().await {
        Ok(Ok(done)) => stored(&done, headers),
        Ok(Err(e)) => e.to_http_response().unwrap_or_else(|e| {
            tracing::error!(error = %e, "could not serialise a PutObject error");
            crate::http::internal_error_xml()
        }),
        Err(_) => {
            tracing::error!("panic while serving a PUT (front); answered 500, connection kept");
            crate::http::internal_error_xml()
        }
    }
}

async fn store(fp: &FastPath, p: PutReq, body: Vec<u8>) -> S3Result<ObjMeta> {
    let s = &fp.s3;
    let _writing = p.writing;
    if let Some(want) = p.sha256 {
        // s3s checks the signed payload hash as the body streams, before PutObject's checks.
        if payload_sha256(&body).await.as_str().as_bytes() != want {
            return Err(crate::s3::error::payload_sha256_mismatch());
        }
    }
    let checks = BodyChecks {
        size_bytes: p.len as u64,
        content_md5: p.md5,
        ..Default::default()
    };
    let body = s3s::dto::StreamingBlob::from(s3s::Body::from(bytes::Bytes::from(body)));
    crate::s3::put::store(
        s,
        p.bucket,
        p.key,
        checks,
        crate::s3::cond::WriteCond::Any,
        p.meta,
        Some(body),
    )
    .await
}

/// The body's SHA-256, hashed in slices with a yield between them as `Hashing::feed` hashes
/// MD5: a 1 MiB body hashed in one go would hold the core for over a millisecond, and every
/// GET on this core would wait behind it.
async fn payload_sha256(body: &[u8]) -> sigv4::HexDigest {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    let mut slices = body.chunks(crate::s3::ingest::HASH_SLICE_BYTES).peekable();
    while let Some(slice) = slices.next() {
        h.update(slice);
        if slices.peek().is_some() {
            crate::spin::yield_now().await;
        }
    }
    sigv4::HexDigest::new(&h.finalize().into())
}

/// PutObject's 200, with the headers s3s writes for its output, in s3s's order.
fn stored(done: &ObjMeta, headers: http::HeaderMap) -> http::Response<s3s::Body> {
    let out = crate::s3::put::output(done);
    let mut resp = http::Response::new(s3s::Body::empty());
    *resp.headers_mut() = headers;
    let h = resp.headers_mut();
    for (name, v) in [
        ("x-amz-checksum-crc32", out.checksum_crc32),
        ("x-amz-checksum-crc32c", out.checksum_crc32c),
        ("x-amz-checksum-crc64nvme", out.checksum_crc64nvme),
        ("x-amz-checksum-sha1", out.checksum_sha1),
        ("x-amz-checksum-sha256", out.checksum_sha256),
    ] {
        if let Some(v) = v.and_then(|v| http::HeaderValue::try_from(v).ok()) {
            h.insert(name, v);
        }
    }
    if let Some(v) = out.e_tag.and_then(|e| e.to_http_header().ok()) {
        h.insert(http::header::ETAG, v);
    }
    resp
}
