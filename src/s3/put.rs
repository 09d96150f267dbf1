//! PutObject: the body goes through `ingest` (length, Content-MD5, `x-amz-checksum-*` checked
//! before the engine is asked to commit, so an object becomes visible only after its whole
//! body arrived and passed); a body of unknown length is spooled in pieces through a hidden
//! multipart upload.

use std::rc::Rc;

use bale_io::Shard;
use bytes::Bytes;
use futures::StreamExt;
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3Request, S3Response, S3Result};

use super::cond::{resolve_cond, write_cond, WriteCond};
use super::dto::checksum_values;
use super::error;
use super::ingest::{body_checks, check_user_meta, hex, ingest, BodyChecks, Hashing, Ingested};
use super::meta::ObjMeta;
use super::{check_key, BaleS3};

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
            let mut chunk: Bytes = chunk.map_err(error::body)?;
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

pub async fn put_object(
    s: &BaleS3,
    req: S3Request<PutObjectInput>,
) -> S3Result<S3Response<PutObjectOutput>> {
    let i = req.input;
    check_key(&i.key)?;
    let _writing = s.writing(&i.bucket)?;
    let unknown_length = req.extensions.get::<super::UnknownLength>().is_some();
    let checks = body_checks(
        &req.headers,
        i.content_length,
        i.content_md5.as_deref(),
        checksum_values!(i),
        i.checksum_algorithm.as_ref().map(|a| a.as_str()),
        req.trailing_headers,
        unknown_length,
    )?;
    let cond = write_cond(i.if_match, i.if_none_match)?;
    let meta = ObjMeta::from_request(
        &req.headers,
        i.content_type.as_ref(),
        i.content_encoding.as_ref(),
        i.content_language.as_ref(),
        i.content_disposition.as_ref(),
        i.cache_control.as_ref(),
        check_user_meta(&i.metadata)?,
    )?;
    let done = store(s, i.bucket, i.key, checks, cond, meta, i.body).await?;
    Ok(S3Response::new(output(&done)))
}

/// Stores a PutObject whose request was read and checked (key, bucket write guard held by the
/// caller, body checks, conditions, metadata) and returns the stored metadata. The s3s handler
/// and the HTTP front's small PUTs (`crate::front`, docs/adr/0030) both end here.
pub async fn store(
    s: &BaleS3,
    bucket: String,
    key: String,
    checks: BodyChecks,
    cond: WriteCond,
    mut meta: ObjMeta,
    body: Option<StreamingBlob>,
) -> S3Result<ObjMeta> {
    s.shard_of(&bucket, &key)
        .run(move |shard: Rc<Shard>| async move {
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
}

/// PutObject's answer for what [`store`] stored.
pub fn output(done: &ObjMeta) -> PutObjectOutput {
    let get = |a: &str| done.checksum(a).map(str::to_string);
    PutObjectOutput {
        e_tag: Some(ETag::Strong(done.etag.clone())),
        checksum_crc32: get("crc32"),
        checksum_crc32c: get("crc32c"),
        checksum_crc64nvme: get("crc64nvme"),
        checksum_sha1: get("sha1"),
        checksum_sha256: get("sha256"),
        ..Default::default()
    }
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
