//! GetObject and HeadObject in gateway mode.
//!
//! A local copy that is fresh (always, with `--revalidate never`) is served by the ordinary
//! handlers (`crate::s3::get`), exactly as without a gateway; the fast path serves it before
//! this code is reached. Otherwise, on the core that owns the key:
//!
//! - a stale copy is re-checked with a conditional HEAD (`If-None-Match: <etag>`): 304 keeps
//!   it, a new ETag or a 404 removes it. An upstream that does not answer leaves it served.
//! - a whole-object miss streams the object from the upstream into a local entry (committed
//!   only when every byte arrived, `Expect::Absent` against a concurrent write-through), then
//!   serves it locally.
//! - a small whole-object miss is answered from the upstream's bytes while the local entry is
//!   committed in the background; a big one is served while it arrives (`super::stream`).
//! - a ranged miss of a big object is served from block entries (`super::blocks`), learning
//!   the object's size and ETag (its manifest, `super::manifest`) from the first answer.
//!
//! The fast path hands this code its misses directly (`super::hook`): `prepare` decides for
//! both it and the s3s handlers below.
//!
//! Fills of the same object (or the same run of blocks) on a core are fetched once; the key's
//! owner core does every fill of that key, so that is once per process.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bale_io::{Expect, Shard};
use bytes::Bytes;
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, S3};

use super::blocks::{ensure_blocks, probe, range_error, read_blocks, Blocks};
use super::local::{self, meta_from_headers};
use super::manifest::{self, Manifest};
use super::stages::{self, Stage};
use super::stream;
use super::upstream::{UpError, UpRequest, UpResponse};
use super::Gateway;
use crate::s3::cond::{check_read, ReadConds};
use crate::s3::meta::ObjMeta;
use crate::s3::{error, BaleS3};

/// Largest range answered from block entries at once, bytes; longer ranges fill the whole
/// object first.
pub(super) const MAX_BLOCK_RANGE_BYTES: u64 = 64 << 20;
/// Largest upstream error body read, bytes.
pub(super) const MAX_ERROR_BODY: usize = 64 << 10;
/// Sent as `x-amz-checksum-mode` on the upstream requests that learn an object (whole fills,
/// HEADs, first ranged GETs): the upstream's `x-amz-checksum-*` land in the local entry's
/// metadata and are served again to clients that ask, as plain bale serves its own.
pub(super) const CHECKSUM_MODE_ENABLED: &str = "ENABLED";

/// The S3 handlers of gateway mode: GET and HEAD of objects (everything else is the custom
/// route, `super::route`).
#[derive(Clone)]
pub struct GatewayS3 {
    pub inner: BaleS3,
    pub gw: Arc<Gateway>,
}
/// 503 ServiceUnavailable for an upstream that did not answer.
pub fn unavailable(e: &UpError) -> S3Error {
    let mut err = S3Error::with_message(
        S3ErrorCode::ServiceUnavailable,
        format!("The gateway's upstream is unavailable: {e}"),
    );
    err.set_status_code(http::StatusCode::SERVICE_UNAVAILABLE);
    err
}

/// The upstream's own error (its status and S3 error code) for an answer that is no success.
pub async fn upstream_error(resp: &mut UpResponse) -> S3Error {
    let status = resp.status;
    // A 416's `Content-Range: bytes */<size>` tells the client the size (S3, and plain bale,
    // send it): passed on.
    let content_range = resp
        .headers
        .get(http::header::CONTENT_RANGE)
        .filter(|_| status == http::StatusCode::RANGE_NOT_SATISFIABLE)
        .cloned();
    let body = resp.collect(MAX_ERROR_BODY).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    let tag = |t: &str| {
        let open = format!("<{t}>");
        let s = text.find(&open)? + open.len();
        let e = text[s..].find(&format!("</{t}>"))? + s;
        Some(text[s..e].to_string())
    };
    let code = tag("Code")
        .and_then(|c| S3ErrorCode::from_bytes(c.as_bytes()))
        .unwrap_or(match status.as_u16() {
            404 => S3ErrorCode::NoSuchKey,
            403 => S3ErrorCode::AccessDenied,
            412 => S3ErrorCode::PreconditionFailed,
            409 => S3ErrorCode::Custom("ConditionalRequestConflict".into()),
            304 => S3ErrorCode::NotModified,
            416 => S3ErrorCode::InvalidRange,
            _ => S3ErrorCode::ServiceUnavailable,
        });
    let mut e = S3Error::with_message(
        code,
        tag("Message").unwrap_or_else(|| format!("upstream answered {status}")),
    );
    e.set_status_code(status);
    if let Some(v) = content_range {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::CONTENT_RANGE, v);
        e.set_headers(h);
    }
    e
}

/// Answer status 2xx.
pub(super) fn ok(resp: &UpResponse) -> bool {
    resp.status.is_success()
}

fn last_modified_ms(h: &http::HeaderMap) -> u64 {
    h.get(http::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(sigv4::parse_request_date)
        .map(|s| (s.max(0) as u64) * 1000)
        .unwrap_or_else(crate::s3::now_ms)
}

/// What the owner core decided: serve the local entry, or answer from block entries.
pub(super) enum Prep {
    Local,
    /// A whole-object miss served while it arrives (the fill runs on the owner core).
    Stream {
        m: Box<Manifest>,
        body: StreamingBlob,
    },
    /// A whole-object answer the upstream sent without a length, longer than the gateway
    /// reads into memory: passed through as it arrives, not kept (`stream::pass`). The
    /// manifest's size is meaningless (0): the answer carries no Content-Length.
    Pass {
        m: Box<Manifest>,
        body: StreamingBlob,
    },
    Blocks {
        m: Box<Manifest>,
        served: Option<(u64, u64)>,
        body: Option<Bytes>,
    },
}

pub(super) struct Ask {
    pub(super) bucket: String,
    pub(super) key: String,
    pub(super) range: Option<Range>,
    pub(super) cond: ReadConds,
    pub(super) want_body: bool,
    /// No partNumber and no response-* overrides: a miss may be answered from the upstream's
    /// bytes in memory (the local handlers answer the others once the fill is committed).
    pub(super) plain: bool,
    /// When the asker handed this to the owner core (`stages::Stage::Hop`).
    pub(super) asked_at: Instant,
}

/// Whole-object misses up to this size are answered from memory while they are committed.
const IN_MEMORY_MISS_BYTES: u64 = 1 << 20;

pub(super) fn manifest_of_answer(resp: &UpResponse, size: u64) -> Manifest {
    let etag = resp.etag().unwrap_or_default();
    Manifest::new(
        etag.clone(),
        size,
        last_modified_ms(&resp.headers),
        meta_from_headers(&resp.headers, &etag),
    )
}

/// Streams a 200 answer into a local entry of `key`; `Ok(false)` when another writer got
/// there first.
pub(super) async fn fill_whole(
    shard: &Rc<Shard>,
    gw: &Gateway,
    b: &str,
    key: &str,
    resp: &mut UpResponse,
) -> S3Result<()> {
    let etag = resp.etag().unwrap_or_default();
    let len: u64 = resp
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| s3_error!(ServiceUnavailable, "upstream answer without a length"))?;
    let meta = meta_from_headers(&resp.headers, &etag);
    let enc = meta
        .encode()
        .map_err(|_| s3_error!(InternalError, "upstream metadata too large"))?;
    let mut w = shard.put(b, key, len).map_err(error::engine)?;
    let mut got = 0u64;
    loop {
        match resp.next_chunk().await {
            Ok(Some(c)) => {
                got += c.len() as u64;
                if got > len {
                    return Err(s3_error!(ServiceUnavailable, "upstream sent too much"));
                }
                w.write(c).await.map_err(error::engine)?;
            }
            Ok(None) => break,
            Err(e) => return Err(unavailable(&e)),
        }
    }
    if got != len {
        return Err(s3_error!(ServiceUnavailable, "upstream answer cut short"));
    }
    match w.finish(enc, Expect::Absent).await {
        Ok(o) => {
            local::admitted(shard, b, key, o.seq, len, gw.cfg.shard_capacity_bytes).await;
            tracing::debug!(bucket = %b, bytes = len, "gateway: filled an object");
            Ok(())
        }
        Err(bale_io::Error::PreconditionFailed) => Ok(()),
        Err(e) => Err(error::engine(e)),
    }
}

/// Re-checks a stale local copy. `Ok(true)`: serve it; `Ok(false)`: it is gone, fill again.
async fn revalidate(
    shard: &Rc<Shard>,
    gw: &Arc<Gateway>,
    b: &str,
    k: &str,
    obj: &bale_io::Object,
) -> S3Result<bool> {
    let meta = ObjMeta::load(&obj.meta, b, k)?;
    let req = UpRequest::new(http::Method::HEAD, Some(b), Some(k))
        .header("if-none-match", format!("\"{}\"", meta.etag));
    let resp = match gw.up.send(req).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, bucket = %b, "gateway: cannot revalidate; serving the local copy");
            return Ok(true);
        }
    };
    let same = resp.status == http::StatusCode::NOT_MODIFIED
        || (ok(&resp) && resp.etag().as_deref() == Some(meta.etag.as_str()));
    if same {
        gw.confirmed(b, k, obj.seq);
        return Ok(true);
    }
    if resp.status.is_server_error() {
        tracing::warn!(status = %resp.status, bucket = %b, "gateway: upstream error on revalidation; serving the local copy");
        return Ok(true);
    }
    // Changed or gone: the local copy goes (only that version).
    let _ = shard.delete(b, k, Expect::Seq(obj.seq)).await;
    gw.forget(b, k);
    Ok(false)
}

async fn head_manifest(gw: &Arc<Gateway>, b: &str, k: &str) -> S3Result<Manifest> {
    if let Some(m) = manifest::of(b, k, gw) {
        return Ok(m);
    }
    let mut resp = gw
        .up
        .send(
            UpRequest::new(http::Method::HEAD, Some(b), Some(k))
                .header("x-amz-checksum-mode", CHECKSUM_MODE_ENABLED),
        )
        .await
        .map_err(|e| unavailable(&e))?;
    if !ok(&resp) {
        return Err(upstream_error(&mut resp).await);
    }
    let etag = resp.etag().unwrap_or_default();
    let size = resp
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| s3_error!(ServiceUnavailable, "upstream HEAD without a length"))?;
    let m = Manifest::new(
        etag.clone(),
        size,
        last_modified_ms(&resp.headers),
        meta_from_headers(&resp.headers, &etag),
    );
    manifest::remember(b, k, m.clone());
    Ok(m)
}
/// Runs on the key's owner core.
pub(super) async fn prepare(shard: Rc<Shard>, gw: Arc<Gateway>, a: Ask) -> S3Result<Prep> {
    let started = stages::since(Stage::Hop, a.asked_at);
    let r = prepare_on_owner(shard, gw, a).await;
    stages::since(Stage::Prepare, started);
    r
}

async fn prepare_on_owner(shard: Rc<Shard>, gw: Arc<Gateway>, a: Ask) -> S3Result<Prep> {
    let (b, k) = (a.bucket.as_str(), a.key.as_str());
    // After a restart: a manifest stored with its blocks is known again without the upstream.
    if a.range.is_some() && shard.get(b, k).is_none() {
        manifest::recall(&shard, &gw, b, k).await;
    }
    for _attempt in 0..4 {
        if let Some(obj) = shard.get(b, k) {
            if !gw.stale(b, k, obj.seq, obj.mtime_ms) || revalidate(&shard, &gw, b, k, &obj).await?
            {
                return Ok(Prep::Local);
            }
            continue;
        }
        if a.range.is_none() && a.want_body {
            // A whole-object miss: fetch it whole, once.
            let waited = Instant::now();
            let Some(lead) = local::flight(format!("{b}\0{k}")).await? else {
                continue;
            };
            stages::since(Stage::Flight, waited);
            if shard.get(b, k).is_some() {
                continue;
            }
            let mut req = UpRequest::new(http::Method::GET, Some(b), Some(k))
                .header("x-amz-checksum-mode", CHECKSUM_MODE_ENABLED);
            req.stream_unsized = a.plain;
            let mut resp = gw.up.send(req).await.map_err(|e| unavailable(&e))?;
            if !ok(&resp) {
                return Err(upstream_error(&mut resp).await);
            }
            let small = resp
                .header("content-length")
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|n| *n <= IN_MEMORY_MISS_BYTES);
            if let (Some(len), true) = (small, a.plain) {
                // Small: answered from memory at once, committed locally in the background
                // (the flight is held until then, so a second reader finds it local).
                let m = manifest_of_answer(&resp, len);
                check_read(&a.cond, &m.meta.view(), m.mtime_ms)?;
                let reading = Instant::now();
                let body = resp
                    .collect(len as usize)
                    .await
                    .map_err(|e| unavailable(&e))?;
                stages::since(Stage::Body, reading);
                if body.len() as u64 != len {
                    return Err(s3_error!(ServiceUnavailable, "upstream answer cut short"));
                }
                let (shard2, ns, key, meta) = (
                    shard.clone(),
                    a.bucket.clone(),
                    a.key.clone(),
                    m.meta.clone(),
                );
                let (chunk, cap) = (body.clone(), gw.cfg.shard_capacity_bytes);
                // The upstream answer is whole: the fill slot goes back, the bytes wait for
                // their commit under the core's committing-bytes bound (or are not kept).
                let Some((lead, charge)) = lead.upstream_done(len) else {
                    return Ok(Prep::Blocks {
                        m: Box::new(m),
                        served: None,
                        body: Some(body),
                    });
                };
                let timer = stages::FillTimer::start();
                monoio::spawn(async move {
                    let _lead = lead;
                    let _charge = charge;
                    let _timer = timer;
                    if let Err(e) = local::store(
                        &shard2,
                        &ns,
                        &key,
                        vec![chunk],
                        len,
                        &meta,
                        Expect::Absent,
                        cap,
                    )
                    .await
                    {
                        tracing::warn!(error = %format!("{e:#}"), "gateway: keeping a fill failed");
                    }
                });
                return Ok(Prep::Blocks {
                    m: Box::new(m),
                    served: None,
                    body: Some(body),
                });
            }
            let announced = resp
                .header("content-length")
                .and_then(|v| v.parse::<u64>().ok());
            if let (Some(len), true) = (announced, a.plain) {
                // Big: served while it arrives and is stored (super::stream).
                let m = manifest_of_answer(&resp, len);
                check_read(&a.cond, &m.meta.view(), m.mtime_ms)?;
                let meta = m
                    .meta
                    .encode()
                    .map_err(|_| s3_error!(InternalError, "upstream metadata too large"))?;
                let fill = stream::Fill {
                    shard: shard.clone(),
                    bucket: a.bucket.clone(),
                    key: a.key.clone(),
                    len_bytes: len,
                    meta,
                    capacity_bytes: gw.cfg.shard_capacity_bytes,
                    client_timeout: gw.up.timeout,
                };
                let body = stream::start(fill, lead, resp).map_err(|e| {
                    tracing::warn!(error = %format!("{e:#}"), "gateway: cannot start a fill");
                    error::internal("starting a fill")
                })?;
                return Ok(Prep::Stream {
                    m: Box::new(m),
                    body,
                });
            }
            if announced.is_none() && a.plain {
                // No length, and longer than the gateway reads into memory: passed through,
                // not kept (a local entry needs its length up front). The flight goes now:
                // a concurrent reader fetches for itself rather than wait for nothing.
                let slot = lead.into_slot();
                let m = manifest_of_answer(&resp, 0);
                check_read(&a.cond, &m.meta.view(), m.mtime_ms)?;
                let body = stream::pass(resp, gw.up.timeout, a.bucket.clone(), slot);
                return Ok(Prep::Pass {
                    m: Box::new(m),
                    body,
                });
            }
            fill_whole(&shard, &gw, b, k, &mut resp).await?;
            drop(lead);
            continue;
        }
        // A ranged GET of an unknown object: one ranged GET learns it and fetches its blocks.
        if let (
            true,
            Some(Range::Int {
                first,
                last: Some(last),
            }),
        ) = (a.want_body, a.range)
        {
            if last >= first
                && last - first < MAX_BLOCK_RANGE_BYTES
                && manifest::of(b, k, &gw).is_none()
            {
                let Some((m, fetched)) = probe(&shard, &gw, b, k, first, last).await? else {
                    continue;
                };
                check_read(&a.cond, &m.meta.view(), m.mtime_ms)?;
                let Some(r) = a
                    .range
                    .and_then(|r| r.check(m.size).ok())
                    .filter(|r| r.start < r.end)
                else {
                    return Err(range_error(m.size));
                };
                let bs = gw.cfg.block_bytes;
                if let Some(body) =
                    read_blocks(&shard, bs, b, k, &m.etag, r.start, r.end, &fetched).await?
                {
                    return Ok(Prep::Blocks {
                        m: Box::new(m),
                        served: Some((r.start, r.end)),
                        body: Some(body),
                    });
                }
                continue;
            }
        }
        // HEAD, or a ranged GET: what is the object?
        let m = head_manifest(&gw, b, k).await?;
        if m.size <= gw.cfg.block_bytes && a.want_body {
            let Some(_lead) = local::flight(format!("{b}\0{k}")).await? else {
                continue;
            };
            if shard.get(b, k).is_some() {
                continue;
            }
            let req = UpRequest::new(http::Method::GET, Some(b), Some(k))
                .header("if-match", format!("\"{}\"", m.etag))
                .header("x-amz-checksum-mode", CHECKSUM_MODE_ENABLED);
            let mut resp = gw.up.send(req).await.map_err(|e| unavailable(&e))?;
            if resp.status == http::StatusCode::PRECONDITION_FAILED {
                let _ = resp.collect(MAX_ERROR_BODY).await;
                manifest::forget_all(&shard, b, k).await;
                continue;
            }
            if !ok(&resp) {
                return Err(upstream_error(&mut resp).await);
            }
            fill_whole(&shard, &gw, b, k, &mut resp).await?;
            continue;
        }
        check_read(&a.cond, &m.meta.view(), m.mtime_ms)?;
        let served = match &a.range {
            None => None,
            Some(r) => match r.check(m.size).ok().filter(|x| x.start < x.end) {
                Some(x) => Some((x.start, x.end)),
                None => return Err(range_error(m.size)),
            },
        };
        if !a.want_body {
            return Ok(Prep::Blocks {
                m: Box::new(m),
                served,
                body: None,
            });
        }
        let Some((s, e)) = served else {
            return Ok(Prep::Local); // unreachable: whole reads fill above
        };
        if e - s > MAX_BLOCK_RANGE_BYTES {
            // A long range of a big object: fill it whole (one stream), then serve locally.
            let Some(_lead) = local::flight(format!("{b}\0{k}")).await? else {
                continue;
            };
            let req = UpRequest::new(http::Method::GET, Some(b), Some(k))
                .header("if-match", format!("\"{}\"", m.etag))
                .header("x-amz-checksum-mode", CHECKSUM_MODE_ENABLED);
            let mut resp = gw.up.send(req).await.map_err(|e| unavailable(&e))?;
            if !ok(&resp) {
                manifest::forget_all(&shard, b, k).await;
                return Err(upstream_error(&mut resp).await);
            }
            fill_whole(&shard, &gw, b, k, &mut resp).await?;
            continue;
        }
        let bs = gw.cfg.block_bytes;
        let mut fetched = HashMap::new();
        match ensure_blocks(&shard, &gw, b, k, &m, s / bs, (e - 1) / bs, e, &mut fetched).await? {
            Blocks::Changed => continue,
            Blocks::Ready => {}
        }
        if let Some(body) = read_blocks(&shard, bs, b, k, &m.etag, s, e, &fetched).await? {
            return Ok(Prep::Blocks {
                m: Box::new(m),
                served: Some((s, e)),
                body: Some(body),
            });
        }
    }
    Err(s3_error!(
        ServiceUnavailable,
        "the object kept changing upstream while it was read; try again"
    ))
}

impl GatewayS3 {
    async fn prep(
        &self,
        bucket: &str,
        key: &str,
        range: Option<Range>,
        cond: ReadConds,
        want_body: bool,
        plain: bool,
    ) -> S3Result<Prep> {
        crate::s3::check_key(key)?;
        let a = Ask {
            bucket: bucket.to_string(),
            key: key.to_string(),
            range,
            cond,
            want_body,
            plain,
            asked_at: Instant::now(),
        };
        let gw = self.gw.clone();
        self.inner
            .shard_of(bucket, key)
            .run(move |shard| prepare(shard, gw, a))
            .await
    }
}

pub(super) fn block_headers(
    m: &Manifest,
    served: Option<(u64, u64)>,
    checksum_mode: bool,
) -> S3Result<http::HeaderMap> {
    let mut h = http::HeaderMap::new();
    super::hook::headers_of(&mut h, m, served, checksum_mode)
        .ok_or_else(|| error::internal("building headers"))?;
    Ok(h)
}

/// The read conditions of a GetObject or HeadObject input, and its range (none for a part).
macro_rules! conds_and_range {
    ($i:expr) => {
        (
            ReadConds {
                if_match: $i.if_match.clone(),
                if_none_match: $i.if_none_match.clone(),
                if_modified_since: $i.if_modified_since.clone(),
                if_unmodified_since: $i.if_unmodified_since.clone(),
            },
            if $i.part_number.is_some() {
                None
            } else {
                $i.range
            },
        )
    };
}

#[async_trait::async_trait]
impl S3 for GatewayS3 {
    async fn get_object(
        &self,
        mut req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let i = &mut req.input;
        let part = self
            .part_of(&i.bucket, &i.key, i.part_number.take(), i.range.is_some())
            .await?;
        if let Some(p) = &part {
            i.range = p.range;
        }
        let mut resp = self.get_object_inner(req).await?;
        if let Some(p) = &part {
            p.headers(&mut resp.headers);
        }
        Ok(resp)
    }

    async fn head_object(
        &self,
        mut req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let i = &mut req.input;
        let part = self
            .part_of(&i.bucket, &i.key, i.part_number.take(), i.range.is_some())
            .await?;
        if let Some(p) = &part {
            i.range = p.range;
        }
        let mut resp = self.head_object_inner(req).await?;
        if let Some(p) = &part {
            p.headers(&mut resp.headers);
            if p.range.is_some() {
                resp.status = Some(http::StatusCode::PARTIAL_CONTENT); // as the upstream and S3 answer
            }
        }
        Ok(resp)
    }
}

/// Where part `partNumber` of an object lies, as the upstream told (`GatewayS3::part_as_range`).
struct PartSpan {
    /// The part's bytes; `None`: the whole object (the upstream answered 200).
    range: Option<Range>,
    parts_count: Option<u32>,
}

impl PartSpan {
    fn headers(&self, h: &mut http::HeaderMap) {
        if let Some(n) = self.parts_count {
            h.insert("x-amz-mp-parts-count", http::HeaderValue::from(n));
        }
    }
}

impl GatewayS3 {
    /// GET / HEAD with `?partNumber=N`: a local entry (a fill, or a PUT's body) knows no part
    /// layout, so the upstream is asked where the part lies (`HEAD ?partNumber=N`: its
    /// Content-Range and `x-amz-mp-parts-count`) and the part is then served as that byte
    /// range, hit or miss. Checked first as plain bale checks it (`crate::s3::get`).
    /// `part_as_range` of a request's `partNumber`, when it has one.
    async fn part_of(
        &self,
        b: &str,
        k: &str,
        pn: Option<i32>,
        has_range: bool,
    ) -> S3Result<Option<PartSpan>> {
        match pn {
            Some(pn) => Ok(Some(self.part_as_range(b, k, pn, has_range).await?)),
            None => Ok(None),
        }
    }

    async fn part_as_range(
        &self,
        b: &str,
        k: &str,
        pn: i32,
        has_range: bool,
    ) -> S3Result<PartSpan> {
        if has_range {
            return Err(s3_error!(
                InvalidRequest,
                "Cannot specify both Range header and partNumber query parameter"
            ));
        }
        if !(1..=crate::s3::limits::MAX_PART_NUMBER).contains(&pn) {
            return Err(s3_error!(
                InvalidArgument,
                "Part number must be an integer between 1 and 10000, inclusive"
            ));
        }
        let (b, k) = (b.to_string(), k.to_string());
        let gw = self.gw.clone();
        // On the key's owner core, where the upstream client's pool lives for this key.
        self.inner
            .shard_of(&b, &k)
            .run(move |_shard| async move {
                let mut req = UpRequest::new(http::Method::HEAD, Some(&b), Some(&k));
                req.query = vec![("partNumber".to_string(), pn.to_string())];
                let mut resp = gw.up.send(req).await.map_err(|e| unavailable(&e))?;
                if resp.status == http::StatusCode::RANGE_NOT_SATISFIABLE {
                    return Err(s3_error!(
                        InvalidPart,
                        "The requested partnumber is not satisfiable"
                    ));
                }
                if !ok(&resp) {
                    return Err(upstream_error(&mut resp).await);
                }
                let parts_count = resp
                    .header("x-amz-mp-parts-count")
                    .and_then(|v| v.trim().parse().ok());
                let range = match resp.header("content-range") {
                    None => None,
                    Some(cr) => {
                        let span = cr
                            .trim()
                            .strip_prefix("bytes ")
                            .and_then(|r| r.split_once('/'))
                            .and_then(|(r, _)| r.split_once('-'))
                            .and_then(|(a, z)| Some((a.parse::<u64>().ok()?, z.parse::<u64>().ok()?)))
                            .filter(|(a, z)| a <= z)
                            .ok_or_else(|| {
                                s3_error!(
                                    ServiceUnavailable,
                                    "upstream answered partNumber with a Content-Range the gateway cannot read"
                                )
                            })?;
                        Some(Range::Int {
                            first: span.0,
                            last: Some(span.1),
                        })
                    }
                };
                Ok(PartSpan { range, parts_count })
            })
            .await
    }

    async fn get_object_inner(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let i = &req.input;
        let (cond, range) = conds_and_range!(i);
        let ck = crate::s3::headers::checksum_mode_enabled(
            i.checksum_mode.as_ref().map(|m| m.as_str().as_bytes()),
        );
        let plain = i.part_number.is_none()
            && i.response_content_type.is_none()
            && i.response_content_encoding.is_none()
            && i.response_content_language.is_none()
            && i.response_content_disposition.is_none()
            && i.response_cache_control.is_none()
            && i.response_expires.is_none();
        match self
            .prep(&i.bucket.clone(), &i.key.clone(), range, cond, true, plain)
            .await?
        {
            Prep::Local => crate::s3::get::get_object(&self.inner, req).await,
            Prep::Blocks { m, served, body } => {
                let headers = block_headers(&m, served, ck)?;
                Ok(crate::s3::get::get_response(
                    body.map(crate::s3::body::whole),
                    headers,
                ))
            }
            Prep::Stream { m, body } => {
                let headers = block_headers(&m, None, ck)?;
                Ok(crate::s3::get::get_response(Some(body), headers))
            }
            Prep::Pass { m, body } => {
                let mut headers = block_headers(&m, None, ck)?;
                headers.remove(http::header::CONTENT_LENGTH);
                Ok(crate::s3::get::get_response(Some(body), headers))
            }
        }
    }

    async fn head_object_inner(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let i = &req.input;
        let (cond, range) = conds_and_range!(i);
        let ck = crate::s3::headers::checksum_mode_enabled(
            i.checksum_mode.as_ref().map(|m| m.as_str().as_bytes()),
        );
        match self
            .prep(&i.bucket.clone(), &i.key.clone(), range, cond, false, false)
            .await?
        {
            Prep::Local => crate::s3::get::head_object(&self.inner, req).await,
            Prep::Stream { m, .. } | Prep::Pass { m, .. } => {
                // HEAD never fills; answered like block-served objects if it ever comes here.
                let mut resp = S3Response::new(HeadObjectOutput::default());
                resp.headers = block_headers(&m, None, ck)?;
                Ok(resp)
            }
            Prep::Blocks { m, served, .. } => {
                let headers = block_headers(&m, served, ck)?;
                let mut resp = S3Response::new(HeadObjectOutput::default());
                resp.headers = headers;
                if served.is_some() {
                    resp.status = Some(http::StatusCode::PARTIAL_CONTENT);
                }
                Ok(resp)
            }
        }
    }
}
