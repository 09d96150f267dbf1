//! PutObject bodies of unknown length (`Transfer-Encoding: chunked`, no Content-Length) over
//! [`KEEP_PUT_BYTES`], streamed to the upstream as a multipart upload (issue 15, part 6).
//!
//! An S3 PutObject needs its length up front; a body of unknown length is read into memory up
//! to `KEEP_PUT_BYTES` (64 MiB) and sent as one PutObject, as before. When more arrives, the
//! gateway opens a multipart upload upstream and sends the body as parts of [`PART_BYTES`]
//! (16 MiB; S3's minimum is 5 MiB except the last part) while it reads it, at most one part in
//! memory beyond the 64 MiB head. The client is acknowledged only after the upstream's
//! CompleteMultipartUpload answered 200 without an `<Error>`, with the upstream's (multipart)
//! ETag. Any failure (an upstream error or timeout, the client's body cut or over
//! [`MAX_BODY_BYTES`], a wrong `Content-MD5`) aborts the upstream upload before the client's
//! error answer; an abort the upstream does not take (it is down) is retried in the background
//! ([`ABORT_TRIES`] times, [`ABORT_RETRY`] apart); a request dropped mid-way (the client
//! left) aborts from `Drop`.
//!
//! Not kept locally (bodies over `KEEP_PUT_BYTES` never are): the first read fills.
//! Refused with 501 NotImplemented once the body is known to be over 64 MiB: conditional
//! writes (`If-None-Match`, `If-Match`: not every upstream decides them on
//! CompleteMultipartUpload, and a write through the gateway must not silently lose its
//! condition) and whole-object `x-amz-checksum-*` values (a multipart object's checksum is
//! of its parts). `Content-MD5` is checked by the gateway itself (MD5 of the streamed bytes).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Method};
use http_body::Frame;
use md5::Digest as _;
use s3s::{s3_error, Body, S3Error, S3ErrorCode, S3Response, S3Result};

use super::read::{unavailable, upstream_error};
use super::route::KEEP_PUT_BYTES;
use super::upstream::{UpBody, UpRequest, Upstream};

/// Size of each part sent upstream (the last one is what is left), bytes.
pub const PART_BYTES: usize = 16 << 20;
/// Longest body streamed this way (bale's own PutObject limit), bytes.
pub const MAX_BODY_BYTES: u64 = crate::s3::limits::MAX_PUT_BYTES;
/// Background retries of an abort the upstream did not take.
pub const ABORT_TRIES: u32 = 60;
/// Time between those retries.
pub const ABORT_RETRY: Duration = Duration::from_secs(1);
/// Largest upstream answer read (XML of create / complete), bytes.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// The first bytes of a body of unknown length.
pub enum Head {
    /// The whole body (at most `KEEP_PUT_BYTES`).
    Whole(Bytes),
    /// `KEEP_PUT_BYTES` and more: what was read, and the rest of the body.
    Big { read: Vec<Bytes>, rest: Body },
}

/// Reads a body of unknown length up to `KEEP_PUT_BYTES` (+ the chunk that crosses it).
pub async fn read_head(mut body: Body) -> S3Result<Head> {
    use http_body_util::BodyExt;
    let mut read = Vec::new();
    let mut n = 0u64;
    while let Some(f) = body.frame().await {
        let f = f.map_err(crate::s3::error::body)?;
        if let Ok(d) = f.into_data() {
            n += d.len() as u64;
            read.push(d);
            if n > KEEP_PUT_BYTES {
                return Ok(Head::Big { read, rest: body });
            }
        }
    }
    let mut out = bytes::BytesMut::with_capacity(n as usize);
    for d in read {
        out.extend_from_slice(&d);
    }
    Ok(Head::Whole(out.freeze()))
}

/// A part's bytes as the upstream request's body (no copy into one buffer).
struct Chunks(VecDeque<Bytes>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().0.pop_front().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

/// Aborts the upstream upload unless disarmed: at once when asked, else from `Drop` (the
/// request was dropped, e.g. the client left) on a task of this core.
struct Upload {
    up: Arc<Upstream>,
    bucket: String,
    key: String,
    id: String,
    armed: bool,
}

async fn abort_once(up: &Arc<Upstream>, b: &str, k: &str, id: &str) -> bool {
    let mut r = UpRequest::new(Method::DELETE, Some(b), Some(k));
    r.query = vec![("uploadId".to_string(), id.to_string())];
    match up.send(r).await {
        Ok(mut resp) => {
            let _ = resp.collect(MAX_ANSWER_BYTES).await;
            // 404 NoSuchUpload: already gone.
            resp.status.is_success() || resp.status == http::StatusCode::NOT_FOUND
        }
        Err(_) => false,
    }
}

async fn abort_retrying(up: Arc<Upstream>, b: String, k: String, id: String) {
    for _ in 0..ABORT_TRIES {
        monoio::time::sleep(ABORT_RETRY).await;
        if abort_once(&up, &b, &k, &id).await {
            tracing::info!(bucket = %b, upload_id = %id, "gateway: upstream multipart upload aborted (retried)");
            return;
        }
    }
    tracing::error!(bucket = %b, key = %k, upload_id = %id,
        "gateway: could not abort an upstream multipart upload; it is left upstream");
}

impl Upload {
    /// Aborts now; if the upstream does not take it, retries in the background.
    async fn abort(mut self) {
        self.armed = false;
        let (up, b, k, id) = (
            self.up.clone(),
            std::mem::take(&mut self.bucket),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.id),
        );
        if abort_once(&up, &b, &k, &id).await {
            tracing::debug!(bucket = %b, upload_id = %id, "gateway: upstream multipart upload aborted");
        } else {
            tracing::warn!(bucket = %b, upload_id = %id,
                "gateway: upstream did not take the abort of a multipart upload; retrying in the background");
            monoio::spawn(abort_retrying(up, b, k, id));
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if self.armed {
            tracing::warn!(bucket = %self.bucket, upload_id = %self.id,
                "gateway: streamed PUT dropped mid-way; aborting its upstream upload");
            let (up, b, k, id) = (
                self.up.clone(),
                std::mem::take(&mut self.bucket),
                std::mem::take(&mut self.key),
                std::mem::take(&mut self.id),
            );
            monoio::spawn(async move {
                if !abort_once(&up, &b, &k, &id).await {
                    abort_retrying(up, b, k, id).await;
                }
            });
        }
    }
}

fn not_implemented(what: &str) -> S3Error {
    let mut e = S3Error::with_message(
        S3ErrorCode::NotImplemented,
        format!(
            "{what} on a PUT of unknown length over {} MiB (streamed to the upstream as a \
             multipart upload) is not supported by the gateway; send a Content-Length",
            KEEP_PUT_BYTES >> 20
        ),
    );
    e.set_status_code(http::StatusCode::NOT_IMPLEMENTED);
    e
}

/// What refuses a body of unknown length over `KEEP_PUT_BYTES` before anything goes upstream.
pub fn refusal(h: &HeaderMap) -> Option<S3Error> {
    if h.contains_key(http::header::IF_NONE_MATCH) || h.contains_key(http::header::IF_MATCH) {
        return Some(not_implemented(
            "a conditional write (If-None-Match / If-Match)",
        ));
    }
    if h.keys().any(|k| {
        k.as_str().starts_with("x-amz-checksum-")
            && k.as_str() != "x-amz-checksum-algorithm"
            && k.as_str() != "x-amz-checksum-type"
    }) {
        return Some(not_implemented("a whole-object x-amz-checksum-* value"));
    }
    None
}

/// The text of the first `<tag>` of an XML answer, unescaped.
fn xml_tag(xml: &[u8], tag: &str) -> Option<String> {
    let text = std::str::from_utf8(xml).ok()?;
    let open = format!("<{tag}>");
    let s = text.find(&open)? + open.len();
    let e = text[s..].find(&format!("</{tag}>"))? + s;
    quick_xml::escape::unescape(&text[s..e])
        .ok()
        .map(|c| c.into_owned())
}

/// Streams the body upstream as a multipart upload and answers as PutObject would.
/// `headers` are the client's; `forwarded` what the gateway passes upstream of them.
pub async fn put(
    up: &Arc<Upstream>,
    bucket: &str,
    key: &str,
    headers: &HeaderMap,
    forwarded: Vec<(String, String)>,
    read: Vec<Bytes>,
    rest: Body,
) -> S3Result<S3Response<Body>> {
    if let Some(e) = refusal(headers) {
        return Err(e);
    }
    let md5_want = match headers.get("content-md5") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
                .filter(|d| d.len() == 16)
                .ok_or_else(|| {
                    s3_error!(InvalidDigest, "The Content-MD5 you specified is not valid.")
                })?,
        ),
        None => None,
    };
    // The upload's own headers: content headers and metadata, not the body's MD5.
    let create_headers: Vec<(String, String)> = forwarded
        .into_iter()
        .filter(|(k, _)| k != "content-md5")
        .collect();
    let mut r = UpRequest::new(Method::POST, Some(bucket), Some(key));
    r.query = vec![("uploads".to_string(), String::new())];
    r.headers = create_headers;
    let mut resp = up.send(r).await.map_err(|e| unavailable(&e))?;
    if !resp.status.is_success() {
        return Err(upstream_error(&mut resp).await);
    }
    let xml = resp
        .collect(MAX_ANSWER_BYTES)
        .await
        .map_err(|e| unavailable(&e))?;
    let id = xml_tag(&xml, "UploadId").ok_or_else(|| {
        let mut e = S3Error::with_message(
            S3ErrorCode::ServiceUnavailable,
            "The gateway's upstream answered CreateMultipartUpload without an UploadId",
        );
        e.set_status_code(http::StatusCode::BAD_GATEWAY);
        e
    })?;
    let upload = Upload {
        up: up.clone(),
        bucket: bucket.to_string(),
        key: key.to_string(),
        id: id.clone(),
        armed: true,
    };
    match stream_parts(up, bucket, key, &id, read, rest, md5_want).await {
        Ok(resp) => {
            let mut upload = upload;
            upload.armed = false;
            Ok(resp)
        }
        Err(e) => {
            upload.abort().await;
            Err(e)
        }
    }
}

async fn send_part(
    up: &Arc<Upstream>,
    bucket: &str,
    key: &str,
    id: &str,
    number: usize,
    chunks: VecDeque<Bytes>,
    bytes: u64,
) -> S3Result<String> {
    let mut r = UpRequest::new(Method::PUT, Some(bucket), Some(key));
    r.query = vec![
        ("partNumber".to_string(), number.to_string()),
        ("uploadId".to_string(), id.to_string()),
    ];
    r.body = UpBody::Stream {
        inner: Body::http_body(Chunks(chunks)),
        tee: None,
    };
    r.content_length = Some(bytes);
    let mut resp = up.send(r).await.map_err(|e| unavailable(&e))?;
    if !resp.status.is_success() {
        return Err(upstream_error(&mut resp).await);
    }
    let etag = resp.header("etag").map(str::to_string);
    resp.collect(MAX_ANSWER_BYTES)
        .await
        .map_err(|e| unavailable(&e))?;
    etag.ok_or_else(|| {
        let mut e = S3Error::with_message(
            S3ErrorCode::ServiceUnavailable,
            "The gateway's upstream answered UploadPart without an ETag",
        );
        e.set_status_code(http::StatusCode::BAD_GATEWAY);
        e
    })
}

async fn stream_parts(
    up: &Arc<Upstream>,
    bucket: &str,
    key: &str,
    id: &str,
    read: Vec<Bytes>,
    mut rest: Body,
    md5_want: Option<Vec<u8>>,
) -> S3Result<S3Response<Body>> {
    use http_body_util::BodyExt;
    let mut md5 = md5_want.as_ref().map(|_| md5::Md5::new());
    let mut etags: Vec<String> = Vec::new();
    let mut part: VecDeque<Bytes> = VecDeque::new();
    let mut part_bytes = 0usize;
    let mut total = 0u64;
    let mut pending: VecDeque<Bytes> = read.into();
    loop {
        let d = match pending.pop_front() {
            Some(d) => Some(d),
            None => match rest.frame().await {
                None => None,
                Some(f) => match f.map_err(crate::s3::error::body)?.into_data() {
                    Ok(d) => Some(d),
                    Err(_) => continue,
                },
            },
        };
        let end = d.is_none();
        if let Some(mut d) = d {
            total += d.len() as u64;
            if total > MAX_BODY_BYTES {
                return Err(s3_error!(
                    EntityTooLarge,
                    "Your proposed upload exceeds the maximum allowed size"
                ));
            }
            if let Some(m) = md5.as_mut() {
                m.update(&d);
            }
            // Exactly PART_BYTES per part: a chunk that crosses the edge is split (no copy).
            while part_bytes + d.len() >= PART_BYTES {
                let head = d.split_to(PART_BYTES - part_bytes);
                part.push_back(head);
                let chunks = std::mem::take(&mut part);
                let n = etags.len() + 1;
                etags.push(send_part(up, bucket, key, id, n, chunks, PART_BYTES as u64).await?);
                part_bytes = 0;
            }
            if !d.is_empty() {
                part_bytes += d.len();
                part.push_back(d);
            }
        }
        if end {
            break;
        }
    }
    if part_bytes > 0 || etags.is_empty() {
        let chunks = std::mem::take(&mut part);
        let n = etags.len() + 1;
        etags.push(send_part(up, bucket, key, id, n, chunks, part_bytes as u64).await?);
    }
    if let (Some(m), Some(want)) = (md5, md5_want) {
        if m.finalize().as_slice() != want.as_slice() {
            return Err(s3_error!(
                BadDigest,
                "The Content-MD5 you specified did not match what we received."
            ));
        }
    }
    let mut xml = String::with_capacity(64 + etags.len() * 96);
    xml.push_str("<CompleteMultipartUpload>");
    for (i, e) in etags.iter().enumerate() {
        xml.push_str(&format!(
            "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
            i + 1,
            quick_xml::escape::escape(e.as_str())
        ));
    }
    xml.push_str("</CompleteMultipartUpload>");
    let mut r = UpRequest::new(Method::POST, Some(bucket), Some(key));
    r.query = vec![("uploadId".to_string(), id.to_string())];
    r.headers = vec![("content-type".to_string(), "application/xml".to_string())];
    r.body = UpBody::Full(Some(Bytes::from(xml)));
    let mut resp = up.send(r).await.map_err(|e| unavailable(&e))?;
    if !resp.status.is_success() {
        return Err(upstream_error(&mut resp).await);
    }
    let version = resp.header("x-amz-version-id").map(str::to_string);
    let answer = resp
        .collect(MAX_ANSWER_BYTES)
        .await
        .map_err(|e| unavailable(&e))?;
    // S3 may answer 200 and put the error in the body.
    if let Some(code) = xml_tag(&answer, "Code").filter(|_| xml_tag(&answer, "ETag").is_none()) {
        let mut e = S3Error::with_message(
            S3ErrorCode::from_bytes(code.as_bytes()).unwrap_or(S3ErrorCode::InternalError),
            xml_tag(&answer, "Message")
                .unwrap_or_else(|| "upstream CompleteMultipartUpload failed".into()),
        );
        e.set_status_code(http::StatusCode::SERVICE_UNAVAILABLE);
        return Err(e);
    }
    let etag = xml_tag(&answer, "ETag").unwrap_or_default();
    tracing::debug!(
        bucket,
        parts = etags.len(),
        bytes = total,
        "gateway: streamed PUT completed upstream as a multipart upload"
    );
    let mut out = S3Response::new(Body::empty());
    out.status = Some(http::StatusCode::OK);
    if let Ok(v) = etag.parse() {
        out.headers.insert(http::header::ETAG, v);
    }
    if let Some(v) = version.and_then(|v| v.parse().ok()) {
        out.headers.insert("x-amz-version-id", v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_tags() {
        let x = b"<R><UploadId>a&amp;b</UploadId><ETag>&quot;e-3&quot;</ETag></R>";
        assert_eq!(xml_tag(x, "UploadId").as_deref(), Some("a&b"));
        assert_eq!(xml_tag(x, "ETag").as_deref(), Some("\"e-3\""));
        assert_eq!(xml_tag(x, "Code"), None);
    }

    #[test]
    fn refusals() {
        let mut h = HeaderMap::new();
        assert!(refusal(&h).is_none());
        h.insert("x-amz-checksum-algorithm", "CRC32".parse().unwrap());
        assert!(refusal(&h).is_none());
        h.insert("x-amz-checksum-crc32", "AAAAAA==".parse().unwrap());
        assert_eq!(
            refusal(&h).map(|e| e.status_code()),
            Some(Some(http::StatusCode::NOT_IMPLEMENTED))
        );
        let mut h = HeaderMap::new();
        h.insert("if-none-match", "*".parse().unwrap());
        assert_eq!(
            refusal(&h).map(|e| e.code().clone()),
            Some(S3ErrorCode::NotImplemented)
        );
    }

    #[test]
    fn limits() {
        const { assert!(PART_BYTES >= 5 << 20) };
        // 10,000 parts is S3's bound.
        const { assert!(MAX_BODY_BYTES / PART_BYTES as u64 <= 10_000) };
    }
}
