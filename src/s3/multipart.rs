//! Multipart uploads. Parts are ordinary engine records on the shard that will own the final
//! object; Complete stitches their extents into the object without copying a byte.
//!
//! Engine namespaces used here (never a bucket name: they start with `\0`):
//! - `\0mpu:<bucket>`, key `<object key>\0<upload id>`: the upload descriptor (0 bytes; its
//!   meta holds the final object's metadata).
//! - `\0part:<bucket>`, key `<upload id>\0<part number, 5 digits>`: one part (meta: ETag and
//!   checksums).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use bale_io::{Expect, Shard};

use bytes::Bytes;
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3Request, S3Response, S3Result};

use super::cond::{resolve_cond, write_cond};
use super::copy::{copy_range, resolve_source};
use super::dto::{checksum_values, copy_source_conds};
use super::error;
use super::ingest::{body_checks, check_user_meta, hex, ingest};
use super::limits::{MAX_PART_NUMBER, MIN_PART_BYTES};
use super::meta::ObjMeta;
use super::mpu_checksum::*;
use super::{check_key, now_ms, owner, timestamp_ms, BaleS3};

fn upload_ns(bucket: &str) -> String {
    format!("\0mpu:{bucket}")
}
fn part_ns(bucket: &str) -> String {
    format!("\0part:{bucket}")
}
fn upload_key(key: &str, upload_id: &str) -> String {
    format!("{key}\0{upload_id}")
}
fn part_key(upload_id: &str, part: i32) -> String {
    format!("{upload_id}\0{part:05}")
}

fn no_such_upload() -> S3Error {
    s3_error!(
        NoSuchUpload,
        "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
    )
}

/// Length of an upload id: 32 hex digits.
const UPLOAD_ID_BYTES: usize = 32;
// An upload's record key is `key \0 upload_id`: it must fit the engine for every S3 key.
const _: () = assert!(super::limits::MAX_KEY_BYTES + 1 + UPLOAD_ID_BYTES <= bale_io::MAX_KEY_BYTES);

fn new_upload_id() -> String {
    let a: u128 = rand::random();
    let id = format!("{a:032x}");
    debug_assert_eq!(id.len(), UPLOAD_ID_BYTES);
    id
}

fn check_upload_id(id: &str) -> S3Result<()> {
    if id.len() == UPLOAD_ID_BYTES && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(no_such_upload())
    }
}

fn check_part_number(n: i32) -> S3Result<()> {
    if (1..=MAX_PART_NUMBER).contains(&n) {
        Ok(())
    } else {
        Err(s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and 10000, inclusive"
        ))
    }
}

fn upload_meta(shard: &Shard, bucket: &str, key: &str, upload_id: &str) -> S3Result<ObjMeta> {
    let d = shard
        .get(&upload_ns(bucket), &upload_key(key, upload_id))
        .ok_or_else(no_such_upload)?;
    ObjMeta::load(&d.meta, &upload_ns(bucket), &upload_key(key, upload_id))
}

pub async fn create(
    s: &BaleS3,
    req: S3Request<CreateMultipartUploadInput>,
) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
    let i = req.input;
    check_key(&i.key)?;
    let _writing = s.writing(&i.bucket)?;
    let mut meta = ObjMeta::from_request(
        &req.headers,
        i.content_type.as_ref(),
        i.content_encoding.as_ref(),
        i.content_language.as_ref(),
        i.content_disposition.as_ref(),
        i.cache_control.as_ref(),
        check_user_meta(&i.metadata)?,
    )?;
    let (algo, ctype) = checksum_choice(
        i.checksum_algorithm.as_ref().map(|a| a.as_str()),
        i.checksum_type.as_ref().map(|t| t.as_str()),
    )?;
    meta.checksum_algorithm = algo.map(str::to_string);
    meta.checksum_type = ctype.map(str::to_string);
    let enc = meta
        .encode()
        .map_err(|_| s3_error!(MetadataTooLarge, "metadata too large"))?;
    let upload_id = new_upload_id();
    let (bucket, key, id) = (i.bucket.clone(), i.key.clone(), upload_id.clone());
    s.shard_of(&i.bucket, &i.key)
        .run(move |shard| async move {
            let w = shard
                .put(&upload_ns(&bucket), &upload_key(&key, &id), 0)
                .map_err(error::engine)?;
            w.finish(enc, Expect::Absent).await.map_err(error::engine)?;
            Ok::<_, S3Error>(())
        })
        .await?;
    Ok(S3Response::new(CreateMultipartUploadOutput {
        bucket: Some(i.bucket),
        key: Some(i.key),
        upload_id: Some(upload_id),
        checksum_algorithm: algo.map(algo_dto),
        checksum_type: ctype.map(|t| ChecksumType::from(t.to_string())),
        ..Default::default()
    }))
}

pub async fn upload_part(
    s: &BaleS3,
    req: S3Request<UploadPartInput>,
) -> S3Result<S3Response<UploadPartOutput>> {
    let i = req.input;
    check_part_number(i.part_number)?;
    check_upload_id(&i.upload_id)?;
    let _writing = s.writing(&i.bucket)?;
    if req.extensions.get::<super::UnknownLength>().is_some() {
        // Only PutObject spools a body of unknown length; a part needs its length.
        return Err(s3_error!(
            MissingContentLength,
            "You must provide the Content-Length HTTP header."
        ));
    }
    let mut checks = body_checks(
        &req.headers,
        i.content_length,
        i.content_md5.as_deref(),
        checksum_values!(i),
        i.checksum_algorithm.as_ref().map(|a| a.as_str()),
        req.trailing_headers,
        false,
    )?;
    let (bucket, key, id, pn, body) = (i.bucket, i.key, i.upload_id, i.part_number, i.body);
    let meta = s.shard_of(&bucket, &key).run(move |shard: Rc<Shard>| async move {
        let up = upload_meta(&shard, &bucket, &key, &id)?;
        if let Some(a) = up.checksum_algorithm.as_deref() {
            // A part of an upload with a checksum algorithm carries that checksum (computed
            // here when the client sent none); another algorithm is an error, as in S3.
            if let Some(other) = checks.compute.iter().find(|x| **x != a) {
                return Err(s3_error!(
                    InvalidRequest,
                    "Checksum Type mismatch occurred, expected checksum Type: {a}, actual checksum Type: {other}"
                ));
            }
            if let Some(a) = super::ingest::ALGOS.iter().copied().find(|x| *x == a) {
                if !checks.compute.contains(&a) {
                    checks.compute.push(a);
                }
            }
        }
        let mut w = shard
            .put(&part_ns(&bucket), &part_key(&id, pn), checks.size_bytes)
            .map_err(error::engine)?;
        let ing = ingest(&mut w, body, &checks).await?;
        let meta = ObjMeta {
            etag: hex(&ing.md5),
            checksums: ing.checksums,
            ..Default::default()
        };
        let enc = meta.encode().map_err(|_| error::internal("part meta"))?;
        // The upload may have been aborted or completed while the body streamed.
        upload_meta(&shard, &bucket, &key, &id)?;
        w.finish(enc, Expect::Any).await.map_err(error::engine)?;
        Ok::<_, S3Error>(meta)
    })
    .await
    ?;
    let get = |a: &str| meta.checksum(a).map(str::to_string);
    Ok(S3Response::new(UploadPartOutput {
        e_tag: Some(ETag::Strong(meta.etag.clone())),
        checksum_crc32: get("crc32"),
        checksum_crc32c: get("crc32c"),
        checksum_crc64nvme: get("crc64nvme"),
        checksum_sha1: get("sha1"),
        checksum_sha256: get("sha256"),
        ..Default::default()
    }))
}

fn parse_copy_range(r: &str, size: u64) -> S3Result<(u64, u64)> {
    let bad = || {
        s3_error!(InvalidArgument, "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy")
    };
    let v = r.strip_prefix("bytes=").ok_or_else(bad)?;
    let (a, b) = v.split_once('-').ok_or_else(bad)?;
    let a: u64 = a.parse().map_err(|_| bad())?;
    let b: u64 = b.parse().map_err(|_| bad())?;
    if a > b {
        return Err(bad());
    }
    if b >= size {
        return Err(s3_error!(
            InvalidRange,
            "The requested range is not satisfiable"
        ));
    }
    Ok((a, b + 1))
}

pub async fn upload_part_copy(
    s: &BaleS3,
    req: S3Request<UploadPartCopyInput>,
) -> S3Result<S3Response<UploadPartCopyOutput>> {
    let i = req.input;
    check_part_number(i.part_number)?;
    check_upload_id(&i.upload_id)?;
    let _writing = s.writing(&i.bucket)?;
    let src = resolve_source(s, &i.copy_source, copy_source_conds!(i)).await?;
    let (start, end) = match &i.copy_source_range {
        Some(r) => parse_copy_range(r, src.size)?,
        None => (0, src.size),
    };
    if end - start > super::limits::MAX_PUT_BYTES {
        return Err(s3_error!(EntityTooLarge, "A part may be at most 5 GiB"));
    }
    let (bucket, key, id, pn) = (i.bucket, i.key, i.upload_id, i.part_number);
    let s2 = s.clone();
    let (meta, mtime_ms) = s
        .shard_of(&bucket, &key)
        .run(move |shard: Rc<Shard>| async move {
            let up = upload_meta(&shard, &bucket, &key, &id)?;
            // A part of an upload with a checksum algorithm carries that checksum.
            let algos: Vec<&str> = up
                .checksum_algorithm
                .as_deref()
                .and_then(|a| super::ingest::ALGOS.iter().copied().find(|x| *x == a))
                .into_iter()
                .collect();
            let mut w = shard
                .put(&part_ns(&bucket), &part_key(&id, pn), end - start)
                .map_err(error::engine)?;
            let (md5, checksums) = copy_range(&s2, &src, start, end, &mut w, &algos).await?;
            let meta = ObjMeta {
                etag: hex(&md5),
                checksums,
                ..Default::default()
            };
            let enc = meta.encode().map_err(|_| error::internal("part meta"))?;
            upload_meta(&shard, &bucket, &key, &id)?;
            let obj = w.finish(enc, Expect::Any).await.map_err(error::engine)?;
            Ok::<_, S3Error>((meta, obj.mtime_ms))
        })
        .await?;
    let get = |a: &str| meta.checksum(a).map(str::to_string);
    Ok(S3Response::new(UploadPartCopyOutput {
        copy_part_result: Some(CopyPartResult {
            e_tag: Some(ETag::Strong(meta.etag.clone())),
            last_modified: Some(timestamp_ms(mtime_ms)),
            checksum_crc32: get("crc32"),
            checksum_crc32c: get("crc32c"),
            checksum_crc64nvme: get("crc64nvme"),
            checksum_sha1: get("sha1"),
            checksum_sha256: get("sha256"),
        }),
        ..Default::default()
    }))
}

/// Completed uploads each core remembers (FIFO), and for how long: a retried
/// CompleteMultipartUpload (its first response was lost) answers 200 with the same ETag and
/// checksum, as S3 does. In memory only: after a restart a retry answers NoSuchUpload.
const COMPLETED_REMEMBERED: usize = 1024;
const COMPLETED_TTL_MS: u64 = 60 * 60 * 1000;

#[derive(Clone)]
struct Completed {
    bucket: String,
    key: String,
    id: String,
    etag: String,
    /// (algorithm, value) of the object checksum, and its type.
    checksum: Option<(String, String)>,
    checksum_type: Option<String>,
    at_ms: u64,
}

thread_local! {
    static COMPLETED: RefCell<VecDeque<Completed>> = const { RefCell::new(VecDeque::new()) };
}

fn remember_completed(c: Completed) {
    COMPLETED.with(|q| {
        let mut q = q.borrow_mut();
        if q.len() >= COMPLETED_REMEMBERED {
            q.pop_front();
        }
        q.push_back(c);
    });
}

/// A recently completed upload, while its object is still the one it made. Runs on the
/// owning core (where Complete ran and remembered it).
fn recall_completed(
    shard: &Shard,
    bucket: &str,
    key: &str,
    id: &str,
) -> S3Result<Option<Completed>> {
    let now = now_ms();
    let c = COMPLETED.with(|q| {
        let mut q = q.borrow_mut();
        while q
            .front()
            .is_some_and(|c| now.saturating_sub(c.at_ms) > COMPLETED_TTL_MS)
        {
            q.pop_front();
        }
        q.iter()
            .rev()
            .find(|c| c.id == id && c.key == key && c.bucket == bucket)
            .cloned()
    });
    let Some(c) = c else { return Ok(None) };
    let Some(obj) = shard.get(bucket, key) else {
        return Ok(None);
    };
    let m = ObjMeta::load(&obj.meta, bucket, key)?;
    Ok((m.etag == c.etag).then_some(c))
}

fn invalid_part() -> S3Error {
    s3_error!(InvalidPart, "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag.")
}

/// A part the client names in CompleteMultipartUpload: number, ETag (unquoted), and the part
/// checksums it states, in `ingest::ALGOS` order.
type WantedPart = (i32, Option<String>, [Option<String>; 5]);

/// The parts list of a Complete, checked: numbers valid and strictly ascending.
fn wanted_parts(parts: &[CompletedPart]) -> S3Result<Vec<WantedPart>> {
    let mut wanted = Vec::with_capacity(parts.len());
    let mut last = 0;
    for p in parts {
        let n = p
            .part_number
            .ok_or_else(|| s3_error!(MalformedXML, "Part number missing"))?;
        check_part_number(n)?;
        if n <= last {
            return Err(s3_error!(InvalidPartOrder, "The list of parts was not in ascending order. The parts list must be specified in order by part number."));
        }
        last = n;
        let etag = p
            .e_tag
            .as_ref()
            .map(|e| e.value().trim_matches('"').to_string());
        let sums = [
            p.checksum_crc32.clone(),
            p.checksum_crc32c.clone(),
            p.checksum_crc64nvme.clone(),
            p.checksum_sha1.clone(),
            p.checksum_sha256.clone(),
        ];
        wanted.push((n, etag, sums));
    }
    Ok(wanted)
}

pub async fn complete(
    s: &BaleS3,
    req: S3Request<CompleteMultipartUploadInput>,
) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
    let i = req.input;
    check_upload_id(&i.upload_id)?;
    let _writing = s.writing(&i.bucket)?;
    let parts = i.multipart_upload.and_then(|m| m.parts).unwrap_or_default();
    if parts.is_empty() {
        return Err(s3_error!(
            MalformedXML,
            "You must specify at least one part"
        ));
    }
    let wanted = wanted_parts(&parts)?;
    // The object checksum the client states, if any (x-amz-checksum-<algo> on Complete).
    let stated = [
        i.checksum_crc32.clone(),
        i.checksum_crc32c.clone(),
        i.checksum_crc64nvme.clone(),
        i.checksum_sha1.clone(),
        i.checksum_sha256.clone(),
    ];
    let cond = write_cond(i.if_match, i.if_none_match)?;
    let (bucket, key, id) = (i.bucket.clone(), i.key.clone(), i.upload_id.clone());
    let done = s.shard_of(&bucket, &key).run(move |shard: Rc<Shard>| async move {
        let mut meta = match upload_meta(&shard, &bucket, &key, &id) {
            Ok(m) => m,
            Err(e) if *e.code() == s3s::S3ErrorCode::NoSuchUpload => {
                return recall_completed(&shard, &bucket, &key, &id)?.ok_or(e);
            }
            Err(e) => return Err(e),
        };
        let algo = meta.checksum_algorithm.take();
        let algo_idx = algo
            .as_deref()
            .and_then(|a| super::ingest::ALGOS.iter().position(|x| *x == a));
        let pns = part_ns(&bucket);
        let count = wanted.len();
        let mut md5s = Vec::with_capacity(16 * count);
        let mut sources = Vec::with_capacity(count);
        let mut sums: Option<Vec<(String, u64)>> = algo_idx.map(|_| Vec::with_capacity(count));
        for (idx, (n, etag, given)) in wanted.iter().enumerate() {
            let pk = part_key(&id, *n);
            let part = shard.get(&pns, &pk).ok_or_else(invalid_part)?;
            let pm = ObjMeta::load(&part.meta, &pns, &pk)?;
            if etag.as_ref().is_some_and(|e| *e != pm.etag) {
                return Err(invalid_part());
            }
            if idx + 1 < count && part.size < MIN_PART_BYTES {
                return Err(s3_error!(EntityTooSmall, "Your proposed upload is smaller than the minimum allowed object size. Each part must be at least 5 MB in size, except the last part."));
            }
            if let (Some(ai), Some(a)) = (algo_idx, algo.as_deref()) {
                let have = pm.checksum(a);
                if given[ai].as_deref().is_some_and(|g| Some(g) != have) {
                    return Err(invalid_part());
                }
                match (have, &mut sums) {
                    (Some(v), Some(list)) => list.push((v.to_string(), part.size)),
                    // A part without the checksum (UploadPartCopy): no object checksum.
                    _ => sums = None,
                }
            }
            md5s.extend_from_slice(&decode_hex16(&pm.etag).ok_or_else(|| error::internal("bad part etag"))?);
            sources.push((pns.clone(), pk));
        }
        use s3s::crypto::Checksum as _;
        let mut h = s3s::crypto::Md5::new();
        h.update(&md5s);
        let digest: [u8; 16] = h.finalize();
        meta.etag = format!("{}-{}", hex(&digest), count);
        meta.parts_count = Some(count as u32);
        let checksum = match (algo.as_deref(), meta.checksum_type.as_deref(), &sums) {
            (Some(a), Some(t), Some(list)) => object_checksum(a, t, list).map(|v| (a.to_string(), v)),
            _ => None,
        };
        if let (Some((a, v)), Some(ai)) = (&checksum, algo_idx) {
            if stated[ai].as_deref().is_some_and(|g| g != v) {
                return Err(s3_error!(BadDigest, "The {} you specified did not match the calculated checksum.", a.to_uppercase()));
            }
        }
        meta.checksums = checksum.iter().cloned().collect();
        if checksum.is_none() {
            meta.checksum_type = None;
        }
        let enc = meta.encode().map_err(|_| error::internal("object meta"))?;
        let expect = resolve_cond(&shard, &bucket, &key, &cond)?;
        shard.compose(&bucket, &key, &sources, enc, expect, true).await.map_err(error::engine)?;
        // The object is durable; now drop the descriptor and any parts not used.
        drop_upload(&shard, &bucket, &key, &id)
            .await
            .map_err(error::engine)?;
        let done = Completed {
            bucket,
            key,
            id,
            etag: meta.etag,
            checksum,
            checksum_type: meta.checksum_type,
            at_ms: now_ms(),
        };
        remember_completed(done.clone());
        Ok::<_, S3Error>(done)
    })
    .await
    ?;
    let [c32, c32c, c64, sha1, sha256] = checksum_fields(
        done.checksum.as_ref().map(|(a, _)| a.as_str()),
        done.checksum.as_ref().map(|(_, v)| v.as_str()),
    );
    Ok(S3Response::new(CompleteMultipartUploadOutput {
        bucket: Some(i.bucket.clone()),
        key: Some(i.key.clone()),
        e_tag: Some(ETag::Strong(done.etag)),
        location: Some(format!("/{}/{}", i.bucket, i.key)),
        checksum_crc32: c32,
        checksum_crc32c: c32c,
        checksum_crc64nvme: c64,
        checksum_sha1: sha1,
        checksum_sha256: sha256,
        checksum_type: done.checksum_type.map(ChecksumType::from),
        ..Default::default()
    }))
}

fn decode_hex16(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Removes an upload's parts, then its descriptor (so a crash in between leaves an upload that
/// is still listed and can be aborted, never parts nothing names); returns false if the
/// descriptor did not exist. Complete uses it for the parts it did not use.
async fn drop_upload(shard: &Shard, bucket: &str, key: &str, id: &str) -> bale_io::Result<bool> {
    let pns = part_ns(bucket);
    let keys: Vec<String> = shard
        .list(&pns, &format!("{id}\0"), None, None, usize::MAX)
        .into_iter()
        .filter_map(|it| match it {
            bale_io::ListItem::Object { key, .. } => Some(key),
            bale_io::ListItem::Prefix(_) => None,
        })
        .collect();
    for k in keys {
        shard.delete(&pns, &k, Expect::Any).await?;
    }
    Ok(shard
        .delete(&upload_ns(bucket), &upload_key(key, id), Expect::Any)
        .await?
        .is_some())
}

/// Opens an upload that PutObject uses to spool a body of unknown length (see
/// `put::spool`): an ordinary upload descriptor for `key`, so that if the server stops
/// before the object is composed, the leftover is listed and freed like any abandoned upload.
pub async fn open_hidden_upload(shard: &Rc<Shard>, bucket: &str, key: &str) -> S3Result<String> {
    let id = new_upload_id();
    let enc = ObjMeta::default()
        .encode()
        .map_err(|_| error::internal("upload meta"))?;
    let w = shard
        .put(&upload_ns(bucket), &upload_key(key, &id), 0)
        .map_err(error::engine)?;
    w.finish(enc, Expect::Absent).await.map_err(error::engine)?;
    Ok(id)
}

/// Writes piece `n` (from 1) of a spooled body as a part of the hidden upload; returns its
/// compose source.
pub async fn write_hidden_part(
    shard: &Rc<Shard>,
    bucket: &str,
    id: &str,
    n: usize,
    chunks: Vec<Bytes>,
    len: u64,
) -> S3Result<(String, String)> {
    let pn = i32::try_from(n)
        .ok()
        .filter(|n| *n <= MAX_PART_NUMBER)
        .ok_or_else(|| error::internal("too many spool pieces"))?;
    let (ns, pk) = (part_ns(bucket), part_key(id, pn));
    let mut w = shard.put(&ns, &pk, len).map_err(error::engine)?;
    for c in chunks {
        w.write(c).await.map_err(error::engine)?;
    }
    let enc = ObjMeta::default()
        .encode()
        .map_err(|_| error::internal("part meta"))?;
    w.finish(enc, Expect::Any).await.map_err(error::engine)?;
    Ok((ns, pk))
}

/// Removes a hidden upload and whatever pieces remain (a failure is logged: the upload stays
/// listed and can be aborted).
pub async fn drop_hidden_upload(shard: &Shard, bucket: &str, key: &str, id: &str) {
    if let Err(e) = drop_upload(shard, bucket, key, id).await {
        tracing::warn!(error = %e, bucket, key, upload_id = id, "cannot remove a spool upload");
    }
}

pub async fn abort(
    s: &BaleS3,
    req: S3Request<AbortMultipartUploadInput>,
) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
    let i = req.input;
    check_upload_id(&i.upload_id)?;
    s.bucket_exists(&i.bucket)?;
    let (bucket, key, id) = (i.bucket, i.key, i.upload_id);
    let existed = s
        .shard_of(&bucket, &key)
        .call(move |shard: Rc<Shard>| async move { drop_upload(&shard, &bucket, &key, &id).await })
        .await?
        .map_err(error::engine)?;
    if !existed {
        return Err(no_such_upload());
    }
    Ok(S3Response::new(AbortMultipartUploadOutput::default()))
}

pub async fn list_parts(
    s: &BaleS3,
    req: S3Request<ListPartsInput>,
) -> S3Result<S3Response<ListPartsOutput>> {
    let i = req.input;
    check_upload_id(&i.upload_id)?;
    s.bucket_exists(&i.bucket)?;
    let max_parts = i.max_parts.unwrap_or(1000).clamp(0, 1000) as usize;
    let marker = i.part_number_marker.unwrap_or(0);
    let (bucket, key, id) = (i.bucket.clone(), i.key.clone(), i.upload_id.clone());
    let (parts, truncated, up) = s
        .shard_of(&bucket, &key)
        .run(move |shard: Rc<Shard>| async move {
            let up = upload_meta(&shard, &bucket, &key, &id)?;
            let after = if marker > 0 {
                Some(part_key(&id, marker))
            } else {
                None
            };
            let items = shard.list(
                &part_ns(&bucket),
                &format!("{id}\0"),
                after.as_deref(),
                None,
                max_parts + 1,
            );
            let mut out = Vec::new();
            for it in items {
                if let bale_io::ListItem::Object { key: pk, obj } = it {
                    let n: i32 = pk
                        .rsplit('\0')
                        .next()
                        .and_then(|x| x.parse().ok())
                        .unwrap_or(0);
                    let m = ObjMeta::load(&obj.meta, &part_ns(&bucket), &pk)?;
                    out.push(Part {
                        part_number: Some(n),
                        size: Some(obj.size as i64),
                        e_tag: Some(ETag::Strong(m.etag.clone())),
                        last_modified: Some(timestamp_ms(obj.mtime_ms)),
                        checksum_crc32: m.checksum("crc32").map(str::to_string),
                        checksum_crc32c: m.checksum("crc32c").map(str::to_string),
                        checksum_crc64nvme: m.checksum("crc64nvme").map(str::to_string),
                        checksum_sha1: m.checksum("sha1").map(str::to_string),
                        checksum_sha256: m.checksum("sha256").map(str::to_string),
                    });
                }
            }
            let truncated = out.len() > max_parts;
            out.truncate(max_parts);
            Ok::<_, S3Error>((out, truncated, up))
        })
        .await?;
    let next = if truncated {
        parts.last().and_then(|p| p.part_number)
    } else {
        None
    };
    Ok(S3Response::new(ListPartsOutput {
        bucket: Some(i.bucket),
        key: Some(i.key),
        upload_id: Some(i.upload_id),
        max_parts: Some(max_parts as i32),
        is_truncated: Some(truncated),
        part_number_marker: i.part_number_marker,
        next_part_number_marker: next,
        owner: Some(owner()),
        parts: Some(parts),
        storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
        checksum_algorithm: up.checksum_algorithm.as_deref().map(algo_dto),
        checksum_type: up.checksum_type.map(ChecksumType::from),
        ..Default::default()
    }))
}

pub async fn list_uploads(
    s: &BaleS3,
    req: S3Request<ListMultipartUploadsInput>,
) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
    let i = req.input;
    s.bucket_exists(&i.bucket)?;
    let max = i.max_uploads.unwrap_or(1000).clamp(0, 1000) as usize;
    let prefix = i.prefix.clone().unwrap_or_default();
    let after = i.key_marker.as_ref().map(|k| match &i.upload_id_marker {
        Some(u) => upload_key(k, u),
        None => format!("{k}\0\u{10FFFF}"),
    });
    let page = super::list::list_ns(
        s,
        &upload_ns(&i.bucket),
        &prefix,
        after.as_deref(),
        None,
        max.max(1),
    )
    .await?;
    let mut uploads = Vec::new();
    for e in &page.entries {
        if let super::list::Entry::Object { key, mtime_ms, .. } = e {
            if let Some((k, id)) = key.split_once('\0') {
                uploads.push(MultipartUpload {
                    key: Some(k.to_string()),
                    upload_id: Some(id.to_string()),
                    initiated: Some(timestamp_ms(*mtime_ms)),
                    owner: Some(owner()),
                    storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                    ..Default::default()
                });
            }
        }
    }
    let (nk, nu) = match (page.truncated, uploads.last()) {
        (true, Some(u)) => (u.key.clone(), u.upload_id.clone()),
        _ => (None, None),
    };
    Ok(S3Response::new(ListMultipartUploadsOutput {
        bucket: Some(i.bucket),
        prefix: i.prefix,
        key_marker: i.key_marker,
        upload_id_marker: i.upload_id_marker,
        max_uploads: Some(max as i32),
        is_truncated: Some(page.truncated),
        next_key_marker: nk,
        next_upload_id_marker: nu,
        uploads: Some(uploads),
        ..Default::default()
    }))
}

/// Aborts every open upload in the bucket (DeleteBucket frees their space, as MinIO does).
pub async fn drop_all_uploads(s: &BaleS3, bucket: &str) -> S3Result<()> {
    let jobs = (0..s.topo.shard_count).map(|id| {
        let bucket = bucket.to_string();
        s.shard(id).call(move |shard| async move {
            let ns = upload_ns(&bucket);
            let keys: Vec<String> = shard
                .list(&ns, "", None, None, usize::MAX)
                .into_iter()
                .filter_map(|it| match it {
                    bale_io::ListItem::Object { key, .. } => Some(key),
                    bale_io::ListItem::Prefix(_) => None,
                })
                .collect();
            for k in keys {
                if let Some((key, id)) = k.split_once('\0') {
                    drop_upload(&shard, &bucket, key, id).await?;
                }
            }
            Ok::<_, bale_io::Error>(())
        })
    });
    for r in futures::future::join_all(jobs).await {
        r?.map_err(error::engine)?;
    }
    let _ = now_ms;
    Ok(())
}
