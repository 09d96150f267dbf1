//! The fast path's hook in gateway mode (`src/fast.rs`, where a GET/HEAD's lookup found no
//! local object): the request is answered here, on the HTTP/1.1 front, without s3s (the fast
//! path already verified its signature) and without handing the connection to hyper.
//!
//! - a ranged read that falls inside one local block entry of an object whose manifest this
//!   core knows: one manifest lookup, one index lookup, one read, headers written into the
//!   front's reused map: no allocation, no lock (owner core local).
//! - anything else is a miss: `read::prepare` on the key's owner core decides and fills, as
//!   it does for the s3s handlers (`read::GatewayS3`), and its answer is written here.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use bale_io::Shard;
use bytes::Bytes;
use s3s::dto::Range;

use super::blocks::block_touched;
use super::local;
use super::manifest::{self, Manifest};
use super::read::{prepare, Ask, Prep};
use super::stages::{self, Stage};
use super::Gateway;
use crate::s3::cond::ReadConds;
use crate::s3::get::{lookup, ReadReq};
use crate::s3::headers::{object_headers, Obj, Overrides};
use crate::s3::BaleS3;

thread_local! {
    /// The block key a hit looks up (reused: no allocation per hit).
    static BLOCK_KEY: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Asked by the fast path before its lookup in gateway mode, for a ranged read without
/// conditions: the read answered from a block entry this core owns (no allocation: the
/// lookup's miss would have built an `S3Error` first), or `Err(headers)` (cleared) to go on
/// with the lookup. A block entry serves only while its manifest is fresh, and its bytes are
/// the object's under the manifest's ETag, so answering it before a whole local copy of the
/// same object (which holds the same bytes) changes nothing a client can see.
pub async fn block_first(
    s3: &BaleS3,
    bucket: &str,
    key: &str,
    range: Range,
    cond: &ReadConds,
    is_head: bool,
    mut headers: http::HeaderMap,
) -> Result<http::Response<s3s::Body>, http::HeaderMap> {
    let conditional = cond.if_match.is_some()
        || cond.if_none_match.is_some()
        || cond.if_modified_since.is_some()
        || cond.if_unmodified_since.is_some();
    let (Some(gw), false) = (super::get(), conditional) else {
        return Err(headers);
    };
    let Some(shard) = crate::router::local_shard(s3.topo.shard_for(bucket, key)) else {
        return Err(headers);
    };
    match block_hit_local(shard, gw, bucket, key, range, !is_head, &mut headers).await {
        Some(body) => Ok(answer(
            http::StatusCode::PARTIAL_CONTENT,
            headers,
            body.map_or_else(s3s::Body::empty, s3s::Body::from),
        )),
        None => {
            headers.clear();
            Err(headers)
        }
    }
}

/// Answers a GET/HEAD whose object is not local (gateway mode only; `None` when gateway mode
/// is off, or for a key s3s refuses, which s3s then answers). `headers` is the front's
/// reused map the answer's headers go into. `checksum_mode`: the client sent
/// `x-amz-checksum-mode: ENABLED`.
#[allow(clippy::too_many_arguments)]
pub async fn fast_miss(
    s3: &BaleS3,
    bucket: &str,
    key: &str,
    range: Option<Range>,
    cond: ReadConds,
    is_head: bool,
    checksum_mode: bool,
    mut headers: http::HeaderMap,
) -> Option<http::Response<s3s::Body>> {
    let gw = super::get()?;
    let entered = Instant::now();
    let conditional = cond.if_match.is_some()
        || cond.if_none_match.is_some()
        || cond.if_modified_since.is_some()
        || cond.if_unmodified_since.is_some();
    if let (Some(r), false) = (range, conditional) {
        if let Some(body) = block_hit(s3, gw, bucket, key, r, !is_head, &mut headers).await {
            return Some(answer(
                http::StatusCode::PARTIAL_CONTENT,
                headers,
                body.map_or_else(s3s::Body::empty, s3s::Body::from),
            ));
        }
        headers.clear();
    }
    crate::s3::check_key(key).ok()?;
    let again = ReadReq {
        cond: cond.clone(),
        range,
        part_number: None,
        want_body: !is_head,
    };
    let a = Ask {
        bucket: bucket.to_string(),
        key: key.to_string(),
        range,
        cond,
        want_body: !is_head,
        plain: true,
        asked_at: Instant::now(),
    };
    let gw2 = gw.clone();
    let prep = s3
        .shard_of(bucket, key)
        .run(move |shard| prepare(shard, gw2, a))
        .await;
    let (m, served, body) = match prep {
        // Local now (a concurrent fill of the key committed, or this one had to commit
        // first): served from the entry, as the fast path serves a hit.
        Ok(Prep::Local) => return local_hit(s3, bucket, key, again, checksum_mode, headers).await,
        Ok(Prep::Blocks { m, served, body }) => (
            m,
            served,
            body.map_or_else(s3s::Body::empty, s3s::Body::from),
        ),
        Ok(Prep::Stream { m, body }) => (m, None, s3s::Body::from(body)),
        Ok(Prep::Pass { m, body }) => {
            // No length: the front sends it chunked.
            headers_of(&mut headers, &m, None, checksum_mode)?;
            headers.remove(http::header::CONTENT_LENGTH);
            stages::since(Stage::Hook, entered);
            let body = if is_head {
                s3s::Body::empty()
            } else {
                s3s::Body::from(body)
            };
            return Some(answer(http::StatusCode::OK, headers, body));
        }
        Err(e) => return e.to_http_response().ok(),
    };
    headers_of(&mut headers, &m, served, checksum_mode)?;
    let status = if served.is_some() {
        http::StatusCode::PARTIAL_CONTENT
    } else {
        http::StatusCode::OK
    };
    stages::since(Stage::Hook, entered);
    Some(answer(
        status,
        headers,
        if is_head { s3s::Body::empty() } else { body },
    ))
}

/// The local entry of `bucket/key`, read and answered as the fast path answers a hit.
async fn local_hit(
    s3: &BaleS3,
    bucket: &str,
    key: &str,
    r: ReadReq,
    checksum_mode: bool,
    mut headers: http::HeaderMap,
) -> Option<http::Response<s3s::Body>> {
    let want_body = r.want_body;
    let mut found = match lookup(s3, bucket, key, r).await {
        Ok(f) => f,
        Err(e) => return e.to_http_response().ok(),
    };
    object_headers(
        &mut headers,
        &found.view(),
        checksum_mode,
        false,
        &Overrides::default(),
    )
    .ok()?;
    let body = match found.body.take() {
        Some(p) if want_body => p.into_body(),
        _ => s3s::Body::empty(),
    };
    let status = if found.served.is_some() {
        http::StatusCode::PARTIAL_CONTENT
    } else {
        http::StatusCode::OK
    };
    Some(answer(status, headers, body))
}

fn answer(
    status: http::StatusCode,
    headers: http::HeaderMap,
    body: s3s::Body,
) -> http::Response<s3s::Body> {
    let mut resp = http::Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

/// The headers of an answer from a manifest (the hook's and the s3s side's alike).
/// `checksum_mode`: the client sent `x-amz-checksum-mode: ENABLED` (the upstream's checksums,
/// kept in the manifest, go out with whole-object answers only, as plain bale's do).
pub(super) fn headers_of(
    h: &mut http::HeaderMap,
    m: &Manifest,
    served: Option<(u64, u64)>,
    checksum_mode: bool,
) -> Option<()> {
    object_headers(
        h,
        &Obj {
            meta: m.meta.view(),
            size: m.size,
            mtime_ms: m.mtime_ms,
            served,
        },
        checksum_mode,
        false,
        &Overrides::default(),
    )
    .ok()
}

/// A ranged read inside one local block entry: `Some(body)` (`None` inside for HEAD) with
/// `headers` written, or `None` (nothing answered; `headers` may hold a partial write).
async fn block_hit(
    s3: &BaleS3,
    gw: &'static std::sync::Arc<Gateway>,
    bucket: &str,
    key: &str,
    range: Range,
    want_body: bool,
    headers: &mut http::HeaderMap,
) -> Option<Option<Bytes>> {
    let id = s3.topo.shard_for(bucket, key);
    if let Some(shard) = crate::router::local_shard(id) {
        return block_hit_local(shard, gw, bucket, key, range, want_body, headers).await;
    }
    // Another core owns the key: one hop there and back (which allocates anyway).
    let (b, k) = (bucket.to_string(), key.to_string());
    let (h, body) = s3
        .shard(id)
        .run(move |shard| async move {
            let mut h = http::HeaderMap::new();
            let body = block_hit_local(shard, gw, &b, &k, range, want_body, &mut h).await;
            Ok(body.map(|body| (h, body)))
        })
        .await
        .ok()??;
    *headers = h;
    Some(body)
}

/// On the key's owner core: the block entry holding all of `range`, read.
async fn block_hit_local(
    shard: Rc<Shard>,
    gw: &Gateway,
    b: &str,
    k: &str,
    range: Range,
    want_body: bool,
    headers: &mut http::HeaderMap,
) -> Option<Option<Bytes>> {
    let bs = gw.cfg.block_bytes;
    let (o, from, len) = manifest::with(b, k, |m| {
        if !m.fresh(gw) {
            return None;
        }
        let r = range.check(m.size).ok().filter(|r| r.start < r.end)?;
        let idx = r.start / bs;
        if m.size <= bs || idx != (r.end - 1) / bs {
            return None;
        }
        let o = BLOCK_KEY.with(|bk| {
            let mut bk = bk.borrow_mut();
            local::block_key_into(&mut bk, k, m.etag_hash, bs, idx);
            shard.get(b, &bk)
        })?;
        let (from, len) = (r.start - idx * bs, r.end - r.start);
        if from + len > o.size {
            return None;
        }
        headers_of(headers, m, Some((r.start, r.end)), false)?;
        Some((o, from, len))
    })
    .flatten()?;
    crate::metrics::gateway_hit();
    block_touched(&o);
    if !want_body {
        return Some(None);
    }
    shard.read(&o, from, len).await.ok().map(Some)
}
