//! PutObject, and the body ingestion shared with UploadPart: length, Content-MD5 and
//! `x-amz-checksum-*` (header or aws-chunked trailer) are all checked before the engine is
//! asked to commit, so an object becomes visible only after its whole body arrived and passed.

use std::rc::Rc;

use bale_io::{Expect, PutWriter, Shard};
use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt;
use s3s::checksum::ChecksumHasher;
use s3s::crypto::Checksum as _;
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3Request, S3Response, S3Result, TrailingHeaders};

use super::error::{self, no_such_bucket, WithStatus};
use super::get::etag_matches;
use super::limits::{MAX_PUT_BYTES, MAX_USER_META_BYTES};
use super::meta::ObjMeta;
use super::{check_key, BaleS3};
use crate::router::on_shard;

/// What S3 stores when a PUT names no Content-Type.
pub const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";

pub const ALGOS: [&str; 5] = ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"];

/// Everything needed to check a body, in Send form.
#[derive(Default)]
pub struct BodyChecks {
    /// The declared length; with `unknown_length`, the most the body may hold.
    pub size_bytes: u64,
    /// No length was declared (`Transfer-Encoding: chunked`, see `super::UnknownLength`).
    pub unknown_length: bool,
    pub content_md5: Option<[u8; 16]>,
    /// Checksums given in headers: (algo, base64).
    pub expected: Vec<(&'static str, String)>,
    /// Algorithms to compute (given, announced by x-amz-sdk-checksum-algorithm, or in a trailer).
    pub compute: Vec<&'static str>,
    /// Trailer name announced in `x-amz-trailer`, and the handle to read it after the body.
    pub trailer: Option<(&'static str, TrailingHeaders)>,
}

pub struct Ingested {
    pub md5: [u8; 16],
    /// (algo, base64) for every computed algorithm.
    pub checksums: Vec<(String, String)>,
}

fn algo_of(name: &str) -> Option<&'static str> {
    let n = name.trim().to_ascii_lowercase();
    let n = n.strip_prefix("x-amz-checksum-").unwrap_or(&n);
    ALGOS.iter().copied().find(|a| *a == n)
}

/// Builds the checks from request headers common to PutObject and UploadPart.
pub fn body_checks(
    headers: &http::HeaderMap,
    content_length: Option<i64>,
    content_md5: Option<&str>,
    given: [Option<&String>; 5],
    algorithm: Option<&str>,
    trailing: Option<TrailingHeaders>,
    unknown_length: bool,
) -> S3Result<BodyChecks> {
    let decoded = headers
        .get("x-amz-decoded-content-length")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| s3_error!(InvalidArgument, "invalid x-amz-decoded-content-length"))
        })
        .transpose()?;
    let size_bytes = match (decoded, content_length) {
        _ if unknown_length => unknown_length_limit(),
        (Some(d), _) => d,
        (None, Some(n)) if n >= 0 => n as u64,
        _ => {
            return Err(s3_error!(
                MissingContentLength,
                "You must provide the Content-Length HTTP header."
            ))
        }
    };
    if size_bytes > MAX_PUT_BYTES {
        return Err(s3_error!(
            EntityTooLarge,
            "Your proposed upload exceeds the maximum allowed size (5 GiB per PUT)"
        ));
    }
    let mut c = BodyChecks {
        size_bytes,
        unknown_length,
        ..Default::default()
    };
    // An empty `Content-MD5:` header is an invalid digest (s3s reads it as absent).
    let content_md5 = match headers.get("content-md5") {
        Some(v) => Some(v.to_str().map_err(|_| {
            s3_error!(InvalidDigest, "The Content-MD5 you specified is not valid.")
        })?),
        None => content_md5,
    };
    if let Some(m) = content_md5 {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(m.trim())
            .map_err(|_| s3_error!(InvalidDigest, "The Content-MD5 you specified is not valid."))?;
        let arr: [u8; 16] = raw
            .try_into()
            .map_err(|_| s3_error!(InvalidDigest, "The Content-MD5 you specified is not valid."))?;
        c.content_md5 = Some(arr);
    }
    for (algo, v) in ALGOS.iter().zip(given) {
        if let Some(v) = v {
            c.expected.push((algo, v.clone()));
            c.compute.push(algo);
        }
    }
    if let Some(a) = algorithm {
        let a = algo_of(a)
            .ok_or_else(|| s3_error!(InvalidArgument, "Unsupported checksum algorithm: {a}"))?;
        if !c.compute.contains(&a) {
            c.compute.push(a);
        }
    }
    if let Some(t) = headers.get("x-amz-trailer").and_then(|v| v.to_str().ok()) {
        let a = algo_of(t).ok_or_else(|| s3_error!(InvalidArgument, "Unsupported trailer: {t}"))?;
        if !c.compute.contains(&a) {
            c.compute.push(a);
        }
        match trailing {
            Some(h) => c.trailer = Some((a, h)),
            None => {
                return Err(s3_error!(
                    InvalidRequest,
                    "x-amz-trailer given without a streaming trailer payload"
                ))
            }
        }
    }
    Ok(c)
}

pub fn hasher_for(algos: &[&str]) -> ChecksumHasher {
    let mut h = ChecksumHasher::default();
    for a in algos {
        match *a {
            "crc32" => h.crc32 = Some(s3s::crypto::Crc32::new()),
            "crc32c" => h.crc32c = Some(s3s::crypto::Crc32c::new()),
            "crc64nvme" => h.crc64nvme = Some(s3s::crypto::Crc64Nvme::new()),
            "sha1" => h.sha1 = Some(s3s::crypto::Sha1::new()),
            "sha256" => h.sha256 = Some(s3s::crypto::Sha256::new()),
            _ => {}
        }
    }
    h
}

/// (algorithm, base64) for every checksum `h` computed.
pub fn checksums_of(h: ChecksumHasher) -> Vec<(String, String)> {
    let sums = h.finalize();
    [
        ("crc32", sums.checksum_crc32),
        ("crc32c", sums.checksum_crc32c),
        ("crc64nvme", sums.checksum_crc64nvme),
        ("sha1", sums.checksum_sha1),
        ("sha256", sums.checksum_sha256),
    ]
    .into_iter()
    .filter_map(|(a, v)| v.map(|v| (a.to_string(), v)))
    .collect()
}

/// Maps a failed request body to its S3 error. s3s's stream error types are private, so its
/// failures are recognised by their messages (pinned s3s version: 0.14.1).
fn body_error(e: s3s::StdError) -> S3Error {
    let e = match e.downcast::<S3Error>() {
        Ok(s3e) => return *s3e,
        Err(e) => e,
    };
    // An S3Error of ours (e.g. from the aws-chunked guard) may be wrapped by s3s's streams.
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e.as_ref());
    while let Some(x) = src {
        if let Some(s3e) = x.downcast_ref::<S3Error>() {
            return S3Error::with_message(
                s3e.code().clone(),
                s3e.message().unwrap_or_default().to_string(),
            );
        }
        src = x.source();
    }
    let text = e.to_string();
    tracing::debug!(error = %text, "request body failed");
    if text.contains("SignatureMismatch") {
        s3_error!(SignatureDoesNotMatch, "The request signature we calculated does not match the signature you provided (aws-chunked chunk signature).")
    } else if text.contains("Sha256Mismatch") {
        S3Error::with_message(
            s3s::S3ErrorCode::Custom("XAmzContentSHA256Mismatch".into()),
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        )
        .with_status(http::StatusCode::BAD_REQUEST)
    } else if text.contains("EntityTooLarge") || text.contains("exceeds the limit") {
        s3_error!(
            EntityTooLarge,
            "An aws-chunked chunk exceeds the limit of 16 MiB"
        )
    } else {
        s3_error!(
            IncompleteBody,
            "The request body ended before its declared length or was malformed"
        )
    }
}

/// Body bytes hashed between two yields to the core's other tasks.
const HASH_SLICE_BYTES: usize = 16 * 1024;

/// What a body hashes to, fed as it streams (MD5 for the ETag, and the requested checksums).
struct Hashing {
    md5: s3s::crypto::Md5,
    hasher: ChecksumHasher,
    received: u64,
}

impl Hashing {
    fn new(c: &BodyChecks) -> Self {
        Hashing {
            md5: s3s::crypto::Md5::new(),
            hasher: hasher_for(&c.compute),
            received: 0,
        }
    }

    /// Counts and hashes one chunk; refuses a body longer than allowed.
    async fn feed(&mut self, chunk: &[u8], c: &BodyChecks) -> S3Result<()> {
        self.received += chunk.len() as u64;
        if self.received > c.size_bytes {
            if c.unknown_length {
                return Err(s3_error!(
                    EntityTooLarge,
                    "Your proposed upload exceeds the maximum allowed size ({} bytes per PUT)",
                    c.size_bytes
                ));
            }
            return Err(s3_error!(
                IncompleteBody,
                "The request body is longer than its declared length ({} bytes)",
                c.size_bytes
            ));
        }
        // MD5 (the ETag) runs at ~600 MB/s: a 64 KiB chunk hashed in one go holds the core
        // for ~100 µs, and every GET on this core waits for it. Hash in slices and let the
        // other tasks run between them.
        let mut rest: &[u8] = chunk;
        while !rest.is_empty() {
            let (now, later) = rest.split_at(rest.len().min(HASH_SLICE_BYTES));
            self.md5.update(now);
            self.hasher.update(now);
            rest = later;
            if !rest.is_empty() {
                crate::spin::yield_now().await;
            }
        }
        Ok(())
    }

    /// Checks length, Content-MD5, checksums and trailer once the body ended.
    fn finish(self, c: &BodyChecks) -> S3Result<Ingested> {
        if !c.unknown_length && self.received != c.size_bytes {
            return Err(s3_error!(
                IncompleteBody,
                "You did not provide the number of bytes specified by the Content-Length HTTP header ({} of {})",
                self.received,
                c.size_bytes
            ));
        }
        let md5: [u8; 16] = self.md5.finalize();
        if let Some(want) = c.content_md5 {
            if want != md5 {
                return Err(s3_error!(
                    BadDigest,
                    "The Content-MD5 you specified did not match what we received."
                ));
            }
        }
        let computed = checksums_of(self.hasher);
        let get = |a: &str| {
            computed
                .iter()
                .find(|(x, _)| x == a)
                .map(|(_, v)| v.as_str())
        };
        for (algo, want) in &c.expected {
            if get(algo) != Some(want.as_str()) {
                return Err(s3_error!(
                    BadDigest,
                    "The {} you specified did not match the calculated checksum.",
                    algo.to_uppercase()
                ));
            }
        }
        if let Some((algo, trailers)) = &c.trailer {
            let name = format!("x-amz-checksum-{algo}");
            let got = trailers
                .read(|h| {
                    h.get(name.as_str())
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                })
                .flatten();
            match got {
                Some(v) if Some(v.as_str()) == get(algo) => {}
                Some(_) => {
                    return Err(s3_error!(
                        BadDigest,
                        "The {} you specified did not match the calculated checksum.",
                        algo.to_uppercase()
                    ))
                }
                None => {
                    return Err(s3_error!(
                        IncompleteBody,
                        "The announced trailer {name} was not received"
                    ))
                }
            }
        }
        Ok(Ingested {
            md5,
            checksums: computed,
        })
    }
}

/// Streams `body` into `writer`, checking everything. Runs on the owning core.
pub async fn ingest(
    writer: &mut PutWriter,
    body: Option<StreamingBlob>,
    c: &BodyChecks,
) -> S3Result<Ingested> {
    let mut h = Hashing::new(c);
    if let Some(mut body) = body {
        while let Some(chunk) = body.next().await {
            let chunk: Bytes = chunk.map_err(body_error)?;
            h.feed(&chunk, c).await?;
            writer.write(chunk).await.map_err(error::engine)?;
        }
    }
    h.finish(c)
}

/// Largest body a PUT without a declared length may stream: `MAX_PUT_BYTES`. Test hook: the
/// environment variable `BALE_TEST_MAX_UNKNOWN_LENGTH_BYTES`, read once at start, lowers it so
/// the limit can be proven without sending 5 GiB.
pub fn unknown_length_limit() -> u64 {
    static LIMIT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| {
        std::env::var("BALE_TEST_MAX_UNKNOWN_LENGTH_BYTES")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(MAX_PUT_BYTES, |v| v.min(MAX_PUT_BYTES))
    })
}

/// Unknown-length bodies are cut into pieces of this size, each written as one engine record
/// (an engine write needs its length up front) and stitched into the object at the end without
/// copying. One piece is held in memory per request.
pub const SPOOL_PIECE_BYTES: usize = 4 << 20;

/// Where an unknown-length body went.
pub enum Spooled {
    /// It fit in one piece: the bytes, not yet written.
    Small(Vec<Bytes>, u64),
    /// It was written as the parts of a hidden multipart upload (its id), in order. Until the
    /// object is composed (or if the server stops first) the upload is listed like any other
    /// and AbortMultipartUpload / DeleteBucket free it.
    Pieces(String, Vec<(String, String)>),
}

/// Reads an unknown-length body piece by piece, hashing and checking it. Runs on the owning
/// core. On failure nothing stays behind.
pub async fn spool(
    shard: &Rc<Shard>,
    bucket: &str,
    key: &str,
    body: Option<StreamingBlob>,
    c: &BodyChecks,
) -> S3Result<(Ingested, Spooled)> {
    let mut h = Hashing::new(c);
    let mut buf: Vec<Bytes> = Vec::new();
    let mut buf_bytes = 0usize;
    let mut upload: Option<(String, Vec<(String, String)>)> = None;
    let res: S3Result<()> = async {
        let Some(mut body) = body else { return Ok(()) };
        while let Some(chunk) = body.next().await {
            let mut chunk: Bytes = chunk.map_err(body_error)?;
            h.feed(&chunk, c).await?;
            while !chunk.is_empty() {
                let take = chunk.len().min(SPOOL_PIECE_BYTES - buf_bytes);
                buf.push(chunk.split_to(take));
                buf_bytes += take;
                if buf_bytes == SPOOL_PIECE_BYTES {
                    let (id, pieces) = match &mut upload {
                        Some(u) => u,
                        None => {
                            let id =
                                super::multipart::open_hidden_upload(shard, bucket, key).await?;
                            upload.insert((id, Vec::new()))
                        }
                    };
                    let src = super::multipart::write_hidden_part(
                        shard,
                        bucket,
                        id,
                        pieces.len() + 1,
                        std::mem::take(&mut buf),
                        buf_bytes as u64,
                    )
                    .await?;
                    pieces.push(src);
                    buf_bytes = 0;
                }
            }
        }
        Ok(())
    }
    .await;
    let res = res.and_then(|()| h.finish(c));
    let ing = match res {
        Ok(ing) => ing,
        Err(e) => {
            if let Some((id, _)) = upload {
                super::multipart::drop_hidden_upload(shard, bucket, key, &id).await;
            }
            return Err(e);
        }
    };
    match upload {
        None => Ok((ing, Spooled::Small(buf, buf_bytes as u64))),
        Some((id, mut pieces)) => {
            if buf_bytes > 0 {
                match super::multipart::write_hidden_part(
                    shard,
                    bucket,
                    &id,
                    pieces.len() + 1,
                    buf,
                    buf_bytes as u64,
                )
                .await
                {
                    Ok(src) => pieces.push(src),
                    Err(e) => {
                        super::multipart::drop_hidden_upload(shard, bucket, key, &id).await;
                        return Err(e);
                    }
                }
            }
            Ok((ing, Spooled::Pieces(id, pieces)))
        }
    }
}

pub fn hex(b: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(H[(x >> 4) as usize] as char);
        s.push(H[(x & 15) as usize] as char);
    }
    s
}

pub fn check_user_meta(m: &Option<Metadata>) -> S3Result<Vec<(String, String)>> {
    let Some(m) = m else { return Ok(Vec::new()) };
    let total: usize = m.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > MAX_USER_META_BYTES {
        return Err(s3_error!(
            MetadataTooLarge,
            "Your metadata headers exceed the maximum allowed metadata size (2 KiB)"
        ));
    }
    let mut v: Vec<(String, String)> = m
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    v.sort();
    Ok(v)
}

/// What a write expects of the object it replaces, before it is resolved on the shard.
#[derive(Clone)]
pub enum WriteCond {
    Any,
    /// If-None-Match: *
    Absent,
    /// If-Match: etag (S3: 404 if missing, 412 if different).
    Match(ETagCondition),
}

pub fn write_cond(
    if_match: Option<ETagCondition>,
    if_none_match: Option<ETagCondition>,
) -> S3Result<WriteCond> {
    match (if_match, if_none_match) {
        (Some(_), Some(_)) => Err(s3_error!(
            NotImplemented,
            "If-Match together with If-None-Match is not supported"
        )),
        (Some(m), None) => Ok(WriteCond::Match(m)),
        (None, Some(ETagCondition::Any)) => Ok(WriteCond::Absent),
        (None, Some(_)) => Err(s3_error!(
            NotImplemented,
            "If-None-Match on writes supports only '*'"
        )),
        (None, None) => Ok(WriteCond::Any),
    }
}

/// Resolves a write condition against the current object; runs on the owning core.
pub fn resolve_cond(shard: &Shard, ns: &str, key: &str, c: &WriteCond) -> S3Result<Expect> {
    match c {
        WriteCond::Any => Ok(Expect::Any),
        WriteCond::Absent => {
            if shard.get(ns, key).is_some() {
                return Err(s3_error!(
                    PreconditionFailed,
                    "At least one of the pre-conditions you specified did not hold"
                ));
            }
            Ok(Expect::Absent)
        }
        WriteCond::Match(cond) => {
            let Some(obj) = shard.get(ns, key) else {
                return Err(error::no_such_key());
            };
            let meta = ObjMeta::decode(&obj.meta)
                .ok_or_else(|| error::internal("undecodable object metadata"))?;
            if etag_matches(cond, &meta.etag) {
                Ok(Expect::Seq(obj.seq))
            } else {
                Err(s3_error!(
                    PreconditionFailed,
                    "At least one of the pre-conditions you specified did not hold"
                ))
            }
        }
    }
}

pub async fn put_object(
    s: &BaleS3,
    req: S3Request<PutObjectInput>,
) -> S3Result<S3Response<PutObjectOutput>> {
    let i = req.input;
    check_key(&i.key)?;
    let _writing = s
        .buckets
        .write_guard(&i.bucket)
        .ok_or_else(|| no_such_bucket(&i.bucket))?;
    let unknown_length = req.extensions.get::<super::UnknownLength>().is_some();
    let checks = body_checks(
        &req.headers,
        i.content_length,
        i.content_md5.as_deref(),
        [
            i.checksum_crc32.as_ref(),
            i.checksum_crc32c.as_ref(),
            i.checksum_crc64nvme.as_ref(),
            i.checksum_sha1.as_ref(),
            i.checksum_sha256.as_ref(),
        ],
        i.checksum_algorithm.as_ref().map(|a| a.as_str()),
        req.trailing_headers,
        unknown_length,
    )?;
    let cond = write_cond(i.if_match, i.if_none_match)?;
    let mut meta = ObjMeta::from_request(
        &req.headers,
        i.content_type.as_ref(),
        i.content_encoding.as_ref(),
        i.content_language.as_ref(),
        i.content_disposition.as_ref(),
        i.cache_control.as_ref(),
        check_user_meta(&i.metadata)?,
    )?;
    let (bucket, key, body) = (i.bucket, i.key, i.body);
    let shard_id = s.topo.shard_for(&bucket, &key);
    let done = on_shard(&s.topo, shard_id, move |shard: Rc<Shard>| async move {
        // Resolve If-Match early to fail fast; it is re-checked atomically at commit.
        let _ = resolve_cond(&shard, &bucket, &key, &cond)?;
        if checks.unknown_length {
            return put_spooled(&shard, &bucket, &key, body, &checks, meta, &cond).await;
        }
        let mut w = shard
            .put(&bucket, &key, checks.size_bytes)
            .map_err(error::engine)?;
        let ing = ingest(&mut w, body, &checks).await?;
        let enc = finish_meta(&mut meta, ing)?;
        let expect = resolve_cond(&shard, &bucket, &key, &cond)?;
        w.finish(enc, expect).await.map_err(error::engine)?;
        Ok::<_, S3Error>(meta)
    })
    .await
    .map_err(error::route)??;
    let get = |a: &str| done.checksum(a).map(str::to_string);
    Ok(S3Response::new(PutObjectOutput {
        e_tag: Some(ETag::Strong(done.etag.clone())),
        checksum_crc32: get("crc32"),
        checksum_crc32c: get("crc32c"),
        checksum_crc64nvme: get("crc64nvme"),
        checksum_sha1: get("sha1"),
        checksum_sha256: get("sha256"),
        ..Default::default()
    }))
}

/// ETag and checksums of an ingested body into `meta`; its encoding.
fn finish_meta(meta: &mut ObjMeta, ing: Ingested) -> S3Result<Bytes> {
    meta.etag = hex(&ing.md5);
    meta.checksums = ing.checksums;
    if !meta.checksums.is_empty() {
        meta.checksum_type = Some("FULL_OBJECT".into());
    }
    meta.encode()
        .map_err(|_| s3_error!(MetadataTooLarge, "metadata too large"))
}

/// PutObject of a body with no declared length (see `spool`). Runs on the owning core.
async fn put_spooled(
    shard: &Rc<Shard>,
    bucket: &str,
    key: &str,
    body: Option<StreamingBlob>,
    checks: &BodyChecks,
    mut meta: ObjMeta,
    cond: &WriteCond,
) -> S3Result<ObjMeta> {
    let (ing, spooled) = spool(shard, bucket, key, body, checks).await?;
    let enc = finish_meta(&mut meta, ing)?;
    match spooled {
        Spooled::Small(chunks, len) => {
            let mut w = shard.put(bucket, key, len).map_err(error::engine)?;
            for c in chunks {
                w.write(c).await.map_err(error::engine)?;
            }
            let expect = resolve_cond(shard, bucket, key, cond)?;
            w.finish(enc, expect).await.map_err(error::engine)?;
        }
        Spooled::Pieces(id, sources) => {
            let res = match resolve_cond(shard, bucket, key, cond) {
                Ok(expect) => shard
                    .compose(bucket, key, &sources, enc, expect, true)
                    .await
                    .map(|_| ())
                    .map_err(error::engine),
                Err(e) => Err(e),
            };
            // Composed (its pieces are gone with it) or failed: either way the hidden upload
            // goes.
            super::multipart::drop_hidden_upload(shard, bucket, key, &id).await;
            res?;
        }
    }
    Ok(meta)
}
