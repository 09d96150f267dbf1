//! CopyObject, and the source side shared with UploadPartCopy.

use bale_io::PutWriter;
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use super::cond::ReadConds;
use super::cond::{resolve_cond, write_cond};
use super::dto::copy_source_conds;
use super::error;
use super::get::{lookup, ReadReq};
use super::ingest::{check_user_meta, hex};
use super::limits::{MAX_PUT_BYTES, READ_WINDOW_BYTES};
use super::meta::ObjMeta;
use super::{check_key, timestamp_ms, BaleS3};

pub struct Source {
    pub bucket: String,
    pub key: String,
    pub seq: u64,
    pub size: u64,
    pub meta: ObjMeta,
}

pub struct SourceConds {
    pub if_match: Option<ETagCondition>,
    pub if_none_match: Option<ETagCondition>,
    pub if_modified_since: Option<Timestamp>,
    pub if_unmodified_since: Option<Timestamp>,
}

pub async fn resolve_source(s: &BaleS3, cs: &CopySource, c: SourceConds) -> S3Result<Source> {
    let CopySource::Bucket {
        bucket,
        key,
        version_id,
    } = cs
    else {
        return Err(s3_error!(
            NotImplemented,
            "Access point copy sources are not supported"
        ));
    };
    if version_id.as_deref().is_some_and(|v| v != "null") {
        return Err(s3_error!(
            NotImplemented,
            "Versioned copy sources are not supported"
        ));
    }
    let r = ReadReq {
        cond: ReadConds {
            if_match: c.if_match,
            if_none_match: c.if_none_match,
            if_modified_since: c.if_modified_since,
            if_unmodified_since: c.if_unmodified_since,
        },
        range: None,
        part_number: None,
        want_body: false,
    };
    let f = lookup(s, bucket, key, r).await.map_err(|e| {
        // S3 answers every failed copy-source condition with 412.
        if *e.code() == S3ErrorCode::NotModified {
            s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            )
        } else {
            e
        }
    })?;
    Ok(Source {
        bucket: bucket.to_string(),
        key: key.to_string(),
        seq: f.seq,
        size: f.size,
        meta: f.obj_meta(),
    })
}

/// Copies `[start, end)` of the source into `w` window by window, reading from the source's
/// shard (wherever it lives) and failing if the source changes meanwhile. Returns the MD5 and
/// the checksums of `algos` (algorithm, base64).
pub async fn copy_range(
    s: &BaleS3,
    src: &Source,
    start: u64,
    end: u64,
    w: &mut PutWriter,
    algos: &[&str],
) -> S3Result<([u8; 16], Vec<(String, String)>)> {
    use s3s::crypto::Checksum as _;
    let mut md5 = s3s::crypto::Md5::new();
    let mut sums = super::ingest::hasher_for(algos);
    let mut off = start;
    while off < end {
        let n = READ_WINDOW_BYTES.min(end - off);
        let (b, k, seq) = (src.bucket.clone(), src.key.clone(), src.seq);
        let chunk = s
            .shard_of(&src.bucket, &src.key)
            .run(move |shard| async move {
                let obj = shard.get(&b, &k).filter(|o| o.seq == seq).ok_or_else(|| {
                    s3_error!(
                        PreconditionFailed,
                        "The copy source changed while it was being copied"
                    )
                })?;
                shard.read(&obj, off, n).await.map_err(error::engine)
            })
            .await?;
        md5.update(&chunk);
        if !algos.is_empty() {
            sums.update(&chunk);
        }
        w.write(chunk).await.map_err(error::engine)?;
        off += n;
    }
    Ok((md5.finalize(), super::ingest::checksums_of(sums)))
}

pub async fn copy_object(
    s: &BaleS3,
    req: S3Request<CopyObjectInput>,
) -> S3Result<S3Response<CopyObjectOutput>> {
    let i = req.input;
    check_key(&i.key)?;
    let _writing = s.writing(&i.bucket)?;
    let replace = match i.metadata_directive.as_ref().map(|d| d.as_str()) {
        None | Some("COPY") => false,
        Some("REPLACE") => true,
        Some(other) => {
            return Err(s3_error!(
                InvalidArgument,
                "Unknown metadata directive: {other}"
            ))
        }
    };
    let src = resolve_source(s, &i.copy_source, copy_source_conds!(i)).await?;
    if src.bucket == i.bucket && src.key == i.key && !replace {
        return Err(s3_error!(
            InvalidRequest,
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
        ));
    }
    if src.size > MAX_PUT_BYTES {
        return Err(s3_error!(InvalidRequest, "The specified copy source is larger than the maximum allowable size for a copy source: 5368709120"));
    }
    let mut meta = if replace {
        ObjMeta::from_request(
            &req.headers,
            i.content_type.as_ref(),
            i.content_encoding.as_ref(),
            i.content_language.as_ref(),
            i.content_disposition.as_ref(),
            i.cache_control.as_ref(),
            check_user_meta(&i.metadata)?,
        )?
    } else {
        let mut m = src.meta.clone();
        m.parts_count = None;
        m
    };
    if !replace || meta.checksums.is_empty() {
        // Full-object checksums stay valid for a byte-identical copy; composite ones do not.
        meta.checksums = src.meta.checksums.clone();
        if src.meta.parts_count.is_some()
            && src.meta.checksum_type.as_deref() != Some("FULL_OBJECT")
        {
            meta.checksums.clear();
        }
        meta.checksum_type = if meta.checksums.is_empty() {
            None
        } else {
            Some("FULL_OBJECT".into())
        };
    }
    let cond = write_cond(None, None)?;
    let (bucket, key) = (i.bucket.clone(), i.key.clone());
    let s2 = s.clone();
    let (etag, mtime_ms) = s
        .shard_of(&bucket, &key)
        .run(move |shard| async move {
            let mut w = shard.put(&bucket, &key, src.size).map_err(error::engine)?;
            let (md5, _) = copy_range(&s2, &src, 0, src.size, &mut w, &[]).await?;
            meta.etag = hex(&md5);
            let enc = meta
                .encode()
                .map_err(|_| s3_error!(MetadataTooLarge, "metadata too large"))?;
            let expect = resolve_cond(&shard, &bucket, &key, &cond)?;
            let obj = w.finish(enc, expect).await.map_err(error::engine)?;
            Ok::<_, S3Error>((meta.etag, obj.mtime_ms))
        })
        .await?;
    Ok(S3Response::new(CopyObjectOutput {
        copy_object_result: Some(CopyObjectResult {
            e_tag: Some(ETag::Strong(etag)),
            last_modified: Some(timestamp_ms(mtime_ms)),
            ..Default::default()
        }),
        ..Default::default()
    }))
}
