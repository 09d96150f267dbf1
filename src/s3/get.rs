//! GetObject and HeadObject: conditionals, ranges, part numbers, response overrides.

use std::rc::Rc;

use bale_io::{Object, Shard};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::cond::{check_read, ReadConds};
use super::dto::{read_req, response_overrides};
use super::error::{self, no_such_key};
use super::headers::{checksum_mode_enabled, object_headers, Obj, Overrides};
use super::limits::SINGLE_READ_BYTES;
use super::meta::{MetaView, ObjMeta};
use super::{body, BaleS3};

/// What a GET/HEAD asked for, in Send form so it can cross to the owning core.
#[derive(Clone, Default)]
pub struct ReadReq {
    pub cond: ReadConds,
    pub range: Option<Range>,
    pub part_number: Option<i32>,
    pub want_body: bool,
}

/// A read's body: a small read whole in memory (the fast path sends it as is, without boxing
/// a stream), or a stream for a large one.
pub enum Payload {
    Whole(bytes::Bytes),
    Stream(StreamingBlob),
}

impl Payload {
    pub fn into_blob(self) -> StreamingBlob {
        match self {
            Payload::Whole(b) => body::whole(b),
            Payload::Stream(s) => s,
        }
    }

    pub fn into_body(self) -> s3s::Body {
        match self {
            Payload::Whole(b) => s3s::Body::from(b),
            Payload::Stream(s) => s3s::Body::from(s),
        }
    }
}

/// What a read found: the object's record and metadata, the span served, and the body.
pub struct Found {
    pub seq: u64,
    pub size: u64,
    pub mtime_ms: u64,
    /// The stored metadata encoding (checked at lookup; read in place by `view`).
    pub meta: bale_io::Meta,
    /// Byte range served, when a Range or partNumber applied.
    pub served: Option<(u64, u64)>,
    pub body: Option<Payload>,
}

impl Found {
    /// An owned copy of the metadata.
    pub fn obj_meta(&self) -> ObjMeta {
        self.view().meta.to_owned()
    }

    /// What the response headers are built from (`headers::object_headers`).
    pub fn view(&self) -> Obj<'_> {
        Obj {
            // Parsed once already by the lookup that found it: cannot fail here.
            meta: MetaView::parse(&self.meta).unwrap_or_default(),
            size: self.size,
            mtime_ms: self.mtime_ms,
            served: self.served,
        }
    }
}

pub enum Lookup {
    Found(Box<Found>),
    Missing,
}

/// Resolves Range / partNumber into the byte span to serve.
fn span(r: &ReadReq, obj: &Object, meta: &MetaView<'_>) -> S3Result<Option<(u64, u64)>> {
    let size = obj.size;
    if let Some(pn) = r.part_number {
        if r.range.is_some() {
            return Err(s3_error!(
                InvalidRequest,
                "Cannot specify both Range header and partNumber query parameter"
            ));
        }
        if pn < 1 {
            return Err(s3_error!(
                InvalidArgument,
                "Part number must be an integer between 1 and 10000, inclusive"
            ));
        }
        if meta.parts_count.is_none() {
            // Not a multipart object: part 1 is the whole object.
            if pn == 1 {
                return Ok(Some((0, size)));
            }
            return Err(s3_error!(
                InvalidPart,
                "The requested partnumber is not satisfiable"
            ));
        }
        let mut start = 0u64;
        for (i, len) in obj.part_sizes().enumerate() {
            if i + 1 == pn as usize {
                return Ok(Some((start, start + len)));
            }
            start += len;
        }
        return Err(s3_error!(
            InvalidPart,
            "The requested partnumber is not satisfiable"
        ));
    }
    match &r.range {
        None => Ok(None),
        // An empty span (`bytes=-N` on a 0-byte object) is not satisfiable either: S3 answers
        // 416 for any Range on an empty object.
        Some(range) => match range.check(size).ok().filter(|rg| rg.start < rg.end) {
            Some(rg) => Ok(Some((rg.start, rg.end))),
            None => {
                let mut e = s3_error!(InvalidRange, "The requested range is not satisfiable");
                let mut h = http::HeaderMap::new();
                if let Ok(v) = http::HeaderValue::from_str(&format!("bytes */{size}")) {
                    h.insert(http::header::CONTENT_RANGE, v);
                }
                e.set_headers(h);
                Err(e)
            }
        },
    }
}

/// Runs on the owning core. `None`: no such key.
async fn lookup_local(
    shard: Rc<Shard>,
    bucket: &str,
    key: &str,
    r: ReadReq,
) -> S3Result<Option<Found>> {
    crate::s3::test_panic_hook(key);
    let Some(obj) = shard.get(bucket, key) else {
        return Ok(None);
    };
    let meta = MetaView::load(&obj.meta, bucket, key)?;
    check_read(&r.cond, &meta, obj.mtime_ms)?;
    let served = span(&r, &obj, &meta)?;
    let (start, end) = served.unwrap_or((0, obj.size));
    let body = if !r.want_body {
        None
    } else if end - start <= SINGLE_READ_BYTES {
        let b = if end > start {
            shard
                .read(&obj, start, end - start)
                .await
                .map_err(error::engine)?
        } else {
            bytes::Bytes::new()
        };
        debug_assert_eq!(b.len() as u64, end - start);
        Some(Payload::Whole(b))
    } else {
        Some(Payload::Stream(body::stream(
            shard.clone(),
            obj.clone(),
            start,
            end,
        )))
    };
    Ok(Some(Found {
        seq: obj.seq,
        size: obj.size,
        mtime_ms: obj.mtime_ms,
        meta: obj.meta.clone(),
        served,
        body,
    }))
}

/// Looks `key` up on the shard that owns it: on this core with the borrowed names and no
/// allocation of its own (the fast path's common case), else one hop to the owner.
pub async fn lookup(s: &BaleS3, bucket: &str, key: &str, r: ReadReq) -> S3Result<Found> {
    let id = s.topo.shard_for(bucket, key);
    // The caller is a task on this core and monoio never moves tasks between threads (as in
    // `router::on_shard`): the `Rc` never leaves it.
    let local = match crate::router::local_shard(id) {
        Some(shard) => Ok(send_wrapper::SendWrapper::new(lookup_local(
            shard, bucket, key, r,
        ))),
        None => Err(r),
    };
    let found = match local {
        Ok(fut) => fut.await?,
        Err(r) => {
            let (b, k) = (bucket.to_string(), key.to_string());
            let res = s
                .shard(id)
                .run(move |shard| async move {
                    Ok(match lookup_local(shard, &b, &k, r).await? {
                        Some(f) => Lookup::Found(Box::new(f)),
                        None => Lookup::Missing,
                    })
                })
                .await?;
            match res {
                Lookup::Found(f) => Some(*f),
                Lookup::Missing => None,
            }
        }
    };
    match found {
        Some(f) => Ok(f),
        None => {
            s.bucket_exists(bucket)?;
            Err(no_such_key())
        }
    }
}

/// What a `Range` request header asks for, decided the same way for the fast path and for
/// s3s (S3's rules): absent, a range to resolve against the object's size (`bytes=-0` and a
/// start past the end then answer 416), or a value S3 ignores and serves the whole object for
/// (unparseable, reversed like `bytes=5-3`, several ranges, not ASCII).
#[derive(Debug, PartialEq)]
pub enum RangeHeader {
    Absent,
    Ignored,
    Range(Range),
}

/// Classifies the request's `Range` header(s); `None` when there is more than one (left to
/// s3s, which refuses a duplicated header).
pub fn range_header(h: &http::HeaderMap) -> Option<RangeHeader> {
    let mut it = h.get_all(http::header::RANGE).iter();
    let Some(v) = it.next() else {
        return Some(RangeHeader::Absent);
    };
    if it.next().is_some() {
        return None;
    }
    Some(classify_range(v.as_bytes()))
}

pub fn classify_range(v: &[u8]) -> RangeHeader {
    if v.is_empty() {
        return RangeHeader::Absent; // s3s reads an empty header as absent
    }
    if v == b"bytes=-" {
        return RangeHeader::Ignored; // s3s would read it as `bytes=-0`
    }
    match std::str::from_utf8(v).ok().map(Range::parse) {
        Some(Ok(r)) => RangeHeader::Range(r),
        _ => RangeHeader::Ignored,
    }
}

pub async fn get_object(
    s: &BaleS3,
    req: S3Request<GetObjectInput>,
) -> S3Result<S3Response<GetObjectOutput>> {
    let i = req.input;
    let o = response_overrides!(i);
    let r = read_req!(i, want_body: true);
    let mut f = lookup(s, &i.bucket, &i.key, r).await?;
    let headers = headers_of(&f, i.checksum_mode.as_ref(), i.part_number.is_some(), &o)?;
    // Only what s3s needs besides the headers: the body, and Content-Range (s3s answers 206
    // when it is set). Every header comes from `headers::object_headers`.
    Ok(get_response(f.body.take().map(Payload::into_blob), headers))
}

/// A GET's answer: the body, the headers built by `headers::object_headers`, and the
/// Content-Range s3s needs to answer 206 (also used by the gateway's block reads).
pub(crate) fn get_response(
    body: Option<StreamingBlob>,
    headers: http::HeaderMap,
) -> S3Response<GetObjectOutput> {
    let out = GetObjectOutput {
        body,
        content_range: headers
            .get(http::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        ..Default::default()
    };
    let mut resp = S3Response::new(out);
    resp.headers = headers;
    resp
}

pub async fn head_object(
    s: &BaleS3,
    req: S3Request<HeadObjectInput>,
) -> S3Result<S3Response<HeadObjectOutput>> {
    let i = req.input;
    let o = response_overrides!(i);
    let r = read_req!(i, want_body: false);
    let f = lookup(s, &i.bucket, &i.key, r).await?;
    let headers = headers_of(&f, i.checksum_mode.as_ref(), i.part_number.is_some(), &o)?;
    // s3s 0.14.1 ignores this status for HeadObject; `crate::http` sets the 206 from the
    // Content-Range header instead.
    let partial = f.served.is_some() && i.part_number.is_none();
    let mut resp = S3Response::new(HeadObjectOutput::default());
    resp.headers = headers;
    if partial {
        resp.status = Some(http::StatusCode::PARTIAL_CONTENT);
    }
    Ok(resp)
}

fn headers_of(
    f: &Found,
    mode: Option<&ChecksumMode>,
    part_number_given: bool,
    o: &Overrides<'_>,
) -> S3Result<http::HeaderMap> {
    let checksum_on = checksum_mode_enabled(mode.map(|m| m.as_str().as_bytes()));
    let mut h = http::HeaderMap::new();
    object_headers(&mut h, &f.view(), checksum_on, part_number_given, o)
        .map_err(|_| error::internal("stored metadata is no valid header"))?;
    Ok(h)
}

/// `response-*` overrides become response headers: refuse values a header cannot carry.
pub(crate) fn check_overrides(vals: [Option<&String>; 5]) -> S3Result<()> {
    for v in vals.into_iter().flatten() {
        if http::HeaderValue::from_str(v).is_err() {
            return Err(s3_error!(
                InvalidArgument,
                "A response-* override holds characters a header cannot carry"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_as_s3_reads_them() {
        let r = |v: &str| classify_range(v.as_bytes());
        assert_eq!(r(""), RangeHeader::Absent);
        assert_eq!(
            r("bytes=2-5"),
            RangeHeader::Range(Range::Int {
                first: 2,
                last: Some(5)
            })
        );
        assert_eq!(
            r("bytes=-0"),
            RangeHeader::Range(Range::Suffix { length: 0 })
        );
        for ignored in [
            "bytes=5-3",
            "bytes=abc",
            "bytes=0-1,3-4",
            "items=0-1",
            "bytes=",
        ] {
            assert_eq!(r(ignored), RangeHeader::Ignored, "{ignored}");
        }
        assert_eq!(classify_range(b"bytes=\xff"), RangeHeader::Ignored);

        let mut h = http::HeaderMap::new();
        assert_eq!(range_header(&h), Some(RangeHeader::Absent));
        h.insert(http::header::RANGE, "bytes=5-3".parse().unwrap());
        assert_eq!(range_header(&h), Some(RangeHeader::Ignored));
        h.append(http::header::RANGE, "bytes=0-1".parse().unwrap());
        assert_eq!(range_header(&h), None);
    }
}
