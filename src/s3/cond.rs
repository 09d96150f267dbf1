//! Preconditions, in one place: ETag matching, the GET/HEAD conditionals in S3's order of
//! evaluation, and the conditions a write (PUT, CompleteMultipartUpload, CopyObject) puts on
//! the object it replaces.

use bale_io::{Expect, Shard};
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3Result};

use super::error;
use super::meta::{MetaView, ObjMeta};

pub fn etag_matches(cond: &ETagCondition, etag: &str) -> bool {
    match cond {
        ETagCondition::Any => true,
        ETagCondition::ETag(t) => t.value() == etag,
    }
}

fn secs(t: &Timestamp) -> i64 {
    time::OffsetDateTime::from(t.clone()).unix_timestamp()
}

/// The conditional headers of a GET/HEAD (and of CopyObject's source), in Send form.
#[derive(Clone, Default)]
pub struct ReadConds {
    pub if_match: Option<ETagCondition>,
    pub if_none_match: Option<ETagCondition>,
    pub if_modified_since: Option<Timestamp>,
    pub if_unmodified_since: Option<Timestamp>,
}

/// S3's evaluation order for GET/HEAD conditionals: If-Match (else If-Unmodified-Since)
/// fails with 412 first, then If-None-Match (else If-Modified-Since) answers 304.
pub fn check_read(r: &ReadConds, meta: &MetaView<'_>, mtime_ms: u64) -> S3Result<()> {
    let mtime_s = (mtime_ms / 1000) as i64;
    if let Some(c) = &r.if_match {
        if !etag_matches(c, meta.etag) {
            return Err(s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            ));
        }
    } else if let Some(t) = &r.if_unmodified_since {
        if mtime_s > secs(t) {
            return Err(s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            ));
        }
    }
    if let Some(c) = &r.if_none_match {
        if etag_matches(c, meta.etag) {
            return Err(not_modified(meta, mtime_ms));
        }
    } else if let Some(t) = &r.if_modified_since {
        if mtime_s <= secs(t) {
            return Err(not_modified(meta, mtime_ms));
        }
    }
    Ok(())
}

fn not_modified(meta: &MetaView<'_>, _mtime_ms: u64) -> S3Error {
    let mut e = S3Error::new(s3s::S3ErrorCode::NotModified);
    let mut h = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(&format!("\"{}\"", meta.etag)) {
        h.insert(http::header::ETAG, v);
    }
    e.set_headers(h);
    e
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
            let meta = ObjMeta::load(&obj.meta, ns, key)?;
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
