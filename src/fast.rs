//! GET/HEAD fast path in front of s3s.
//!
//! Plain object reads (path-style `GET|HEAD /bucket/key`, SigV4 in the Authorization header,
//! optionally one `Range`, `x-amz-checksum-mode` and the conditional headers If-Match,
//! If-None-Match, If-Modified-Since, If-Unmodified-Since) are the product's hot path. This
//! module verifies the signature exactly as SigV4 (and s3s) define it, looks the object up on
//! its shard and answers, without s3s's generic routing, DTO building and XML machinery. What
//! it looked up it answers too: the object (headers from `crate::s3::headers`, the same
//! function the s3s handlers use), and a missing key or bucket, a failed precondition or an
//! unsatisfiable range (the same `S3Error` from the same lookup, serialized by s3s's own
//! `S3Error::to_http_response`). Anything else — another operation, presigned URLs, a query
//! string, a header it cannot read as s3s would, a signature this code does not accept —
//! returns `Err(req)` and goes to s3s unchanged (through `crate::sigcheck`). What this path
//! accepts is never looser than S3: one `Authorization` header, `host` signed, the credential
//! scope's date, region and service exactly the request's and the server's.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::Arc;

use sigv4::{parse_amz_date, parse_request_date, AmzDate, CanonicalRequest, Scope};

use s3s::dto::{ETagCondition, Timestamp, TimestampFormat};

use crate::s3::get::{lookup, RangeHeader, ReadReq};
use crate::s3::headers::{checksum_mode_enabled, object_headers, Overrides};
use crate::s3::BaleS3;

/// Largest clock difference accepted, seconds (same as s3s: 15 minutes).
const MAX_SKEW_S: i64 = crate::sigcheck::MAX_SKEW_S;

pub struct FastPath {
    pub s3: BaleS3,
}

/// What the fast path reads of a request: hyper's parsed `http::Request`, or the raw head
/// `crate::front` parsed in place (nothing copied). Header names are looked up without
/// regard to case; values come in the order they were sent.
pub(crate) trait Head {
    /// The method as sent (`GET`, `HEAD` ...).
    fn method(&self) -> &str;
    fn path(&self) -> &str;
    fn query(&self) -> Option<&str>;
    /// The authority of an absolute-form request target, if any.
    fn authority(&self) -> Option<&str>;
    /// Every value of header `name`, in order.
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a;
    fn contains(&self, name: &str) -> bool {
        self.values(name).next().is_some()
    }
}

impl<B> Head for http::Request<B> {
    fn method(&self) -> &str {
        http::Request::method(self).as_str()
    }
    fn path(&self) -> &str {
        self.uri().path()
    }
    fn query(&self) -> Option<&str> {
        self.uri().query()
    }
    fn authority(&self) -> Option<&str> {
        self.uri().authority().map(|a| a.as_str())
    }
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers()
            .get_all(name)
            .into_iter()
            .map(http::HeaderValue::as_bytes)
    }
}

/// A header value as `http::HeaderValue::to_str` reads it: visible ASCII (and tab) only.
pub(crate) fn header_str(v: &[u8]) -> Option<&str> {
    if v.iter().all(|&c| c == b'\t' || (32..127).contains(&c)) {
        // SAFETY-free: checked ASCII above, so this cannot fail.
        std::str::from_utf8(v).ok()
    } else {
        None
    }
}

/// The decoded path; borrowed (nothing allocated) when nothing is escaped.
pub(crate) fn percent_decode(s: &str) -> Option<Cow<'_, str>> {
    let b = s.as_bytes();
    if !b.contains(&b'%') {
        return Some(Cow::Borrowed(s));
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            // Exactly two hex digits (`u8::from_str_radix` would also take "+1").
            let (hi, lo) = (hex_val(*b.get(i + 1)?)?, hex_val(*b.get(i + 2)?)?);
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Header names the fast path reads (lower case).
mod names {
    pub const X_AMZ_DATE: &str = "x-amz-date";
    pub const X_AMZ_CONTENT_SHA256: &str = "x-amz-content-sha256";
    pub const X_AMZ_CHECKSUM_MODE: &str = "x-amz-checksum-mode";
    pub const SSE_C_ALGORITHM: &str = "x-amz-server-side-encryption-customer-algorithm";
    pub const EXPECTED_BUCKET_OWNER: &str = "x-amz-expected-bucket-owner";
    pub const REQUEST_PAYER: &str = "x-amz-request-payer";
    pub const AUTHORIZATION: &str = "authorization";
    pub const DATE: &str = "date";
    pub const RANGE: &str = "range";
    pub const IF_MATCH: &str = "if-match";
    pub const IF_NONE_MATCH: &str = "if-none-match";
    pub const IF_MODIFIED_SINCE: &str = "if-modified-since";
    pub const IF_UNMODIFIED_SINCE: &str = "if-unmodified-since";
}

/// A header that may appear at most once: `Ok(None)` when absent, `Err(())` when repeated
/// or not visible ASCII (s3s reads such a header as absent or refuses it; either way the
/// fast path leaves the request to it).
pub(crate) fn at_most_one<'a, H: Head>(h: &'a H, name: &'a str) -> Result<Option<&'a str>, ()> {
    let mut it = h.values(name);
    let Some(v) = it.next() else { return Ok(None) };
    if it.next().is_some() {
        return Err(());
    }
    header_str(v).map(Some).ok_or(())
}

/// Parses a SigV4 `Authorization` value this path can verify: S3's service and terminal.
fn parse_auth(v: &str) -> Option<sigv4::Authorization<'_>> {
    let a = sigv4::parse_authorization(v).ok()?;
    (a.service == "s3" && a.terminal == "aws4_request").then_some(a)
}

/// Writes the SigV4 canonical request of a fast-path request into `out`: the signed headers
/// exactly as the Authorization header lists them (lower case, each present; `host` may come
/// from an absolute-form URI), the query as it came (only `x-id=<Op>` reaches here, already
/// canonical). `false` when the request cannot be canonicalised that way.
fn canonical_request<H: Head>(
    req: &H,
    decoded_path: &str,
    signed_headers: &str,
    payload: &str,
    out: &mut String,
) -> bool {
    let mut w = CanonicalRequest::new(out, req.method());
    w.uri(decoded_path).raw_query(req.query().unwrap_or(""));
    for name in signed_headers.split(';') {
        if name.is_empty() || name.bytes().any(|c| c.is_ascii_uppercase()) {
            return false;
        }
        w.header_name(name);
        let mut first = true;
        for v in req.values(name) {
            let Some(v) = header_str(v) else { return false };
            first = false;
            w.header_value(v);
        }
        if first {
            if name == "host" {
                // HTTP/1.1 puts the host in the header; an absolute-form URI carries it instead.
                match req.authority() {
                    Some(a) => {
                        w.header_value(a);
                    }
                    None => return false,
                }
            } else {
                return false; // a signed header that is not present
            }
        }
        w.header_end();
    }
    w.finish(signed_headers, payload);
    true
}

/// Verifies the request's SigV4 header signature and that its key may read `bucket` (write it,
/// with `write`: the front's small PUTs, docs/adr/0030) (the per-core key table of
/// `crate::keys`: an unknown key or one outside its scope goes to s3s, which answers
/// InvalidAccessKeyId or AccessDenied). Only `x-id` may appear in the query.
pub(crate) fn verify<H: Head>(
    fp: &FastPath,
    req: &H,
    decoded_path: &str,
    bucket: &str,
    write: bool,
) -> bool {
    let h = req;
    let Ok(Some(auth)) = at_most_one(h, names::AUTHORIZATION) else {
        return false;
    };
    let Some(auth) = parse_auth(auth) else {
        return false;
    };
    if auth.region != fp.s3.region {
        return false;
    }
    if !auth.signed_headers.split(';').any(|n| n == "host") {
        return false; // S3 requires `host` to be signed
    }
    // The request time: x-amz-date, else Date (RFC 1123), which SigV4 allows.
    let date_buf: AmzDate;
    let amz_date = match at_most_one(h, names::X_AMZ_DATE) {
        Ok(Some(d)) => d,
        Ok(None) => {
            let Ok(Some(d)) = at_most_one(h, names::DATE) else {
                return false;
            };
            let Some(t) = parse_request_date(d) else {
                return false;
            };
            date_buf = AmzDate::from_unix(t);
            date_buf.as_str()
        }
        Err(()) => return false,
    };
    let Some(ts) = parse_amz_date(amz_date) else {
        return false;
    };
    // The scope's date is exactly the request's (an empty one is no prefix match).
    if auth.date.len() != 8 || auth.date.as_bytes() != &amz_date.as_bytes()[..8] {
        return false;
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if (now - ts).abs() > MAX_SKEW_S {
        return false;
    }
    let Ok(Some(payload)) = at_most_one(h, names::X_AMZ_CONTENT_SHA256) else {
        return false;
    };
    // The canonical request is built in this core's reused buffer (no allocation once it has
    // grown to the largest request seen).
    CANON.with(|c| {
        let mut canon = c.borrow_mut();
        canon.clear();
        if !canonical_request(req, decoded_path, auth.signed_headers, payload, &mut canon) {
            return false;
        }
        check_signature(&auth, amz_date, bucket, write, &canon)
    })
}

thread_local! {
    /// The canonical request buffer of this core's fast path.
    static CANON: RefCell<String> = RefCell::new(String::with_capacity(1024));
}

fn check_signature(
    auth: &sigv4::Authorization<'_>,
    amz_date: &str,
    bucket: &str,
    write: bool,
    canon: &str,
) -> bool {
    crate::keys::with_key(auth.access_key, |k| {
        let Some(k) = k else { return false };
        let allowed = if write {
            k.key.can_write(bucket)
        } else {
            k.key.can_read(bucket)
        };
        if !allowed {
            return false;
        }
        let key = k.signing_key(auth.date, auth.region, "s3");
        sigv4::sign_canonical_request(
            &key,
            amz_date,
            &Scope::new(auth.date, auth.region, "s3"),
            canon,
        )
        .matches(auth.signature)
    })
}

/// Headers that change what a GET returns and that the fast path leaves to s3s.
fn has_unhandled_headers<H: Head>(h: &H) -> bool {
    h.contains(names::SSE_C_ALGORITHM)
        || h.contains(names::EXPECTED_BUCKET_OWNER)
        || h.contains(names::REQUEST_PAYER)
}

/// The four conditional headers, read as s3s reads them: at most one each, an empty value is
/// absent. `Err(())` (repeated, not ASCII, unparseable) leaves the request to s3s, which
/// answers its own 400. Nothing is allocated when none is present.
fn conditions<H: Head>(h: &H, r: &mut ReadReq) -> Result<(), ()> {
    fn one<'a, H: Head>(h: &'a H, name: &'a str) -> Result<Option<&'a str>, ()> {
        Ok(at_most_one(h, name)?.filter(|v| !v.is_empty()))
    }
    let etag = |v: &str| ETagCondition::parse_http_header(v.as_bytes()).map_err(|_| ());
    let date = |v: &str| Timestamp::parse(TimestampFormat::HttpDate, v).map_err(|_| ());
    if let Some(v) = one(h, names::IF_MATCH)? {
        r.cond.if_match = Some(etag(v)?);
    }
    if let Some(v) = one(h, names::IF_NONE_MATCH)? {
        r.cond.if_none_match = Some(etag(v)?);
    }
    if let Some(v) = one(h, names::IF_MODIFIED_SINCE)? {
        r.cond.if_modified_since = Some(date(v)?);
    }
    if let Some(v) = one(h, names::IF_UNMODIFIED_SINCE)? {
        r.cond.if_unmodified_since = Some(date(v)?);
    }
    Ok(())
}

/// The lookup outcomes the fast path answers itself, exactly as s3s would (same `S3Error`
/// from the same `lookup`, serialized by s3s's own `to_http_response`): a missing key or
/// bucket, a failed precondition (412, or 304), an unsatisfiable range. Anything else (an
/// internal error, ...) goes to s3s.
fn answers_itself(e: &s3s::S3Error, bucket: &str) -> bool {
    use s3s::S3ErrorCode as C;
    // s3s refuses a bucket name it does not accept before looking anything up.
    s3s::path::check_bucket_name(bucket)
        && matches!(
            e.code(),
            C::NoSuchKey
                | C::NoSuchBucket
                | C::PreconditionFailed
                | C::NotModified
                | C::InvalidRange
        )
}

/// Tries to answer the request; `Err(req)` hands it back untouched for s3s.
pub async fn try_serve(
    fp: &Arc<FastPath>,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<s3s::Body>, http::Request<hyper::body::Incoming>> {
    match try_answer(fp, &req, http::HeaderMap::new()).await {
        Some(resp) => Ok(resp),
        None => Err(req),
    }
}

/// The range header as `crate::s3::get::range_header` reads it; `None` when repeated.
fn range_of<H: Head>(h: &H) -> Option<RangeHeader> {
    let mut it = h.values(names::RANGE);
    let Some(v) = it.next() else {
        return Some(RangeHeader::Absent);
    };
    if it.next().is_some() {
        return None;
    }
    Some(crate::s3::get::classify_range(v))
}

/// Tries to answer the request; `None` declines it (nothing was sent or changed: s3s serves
/// it). `headers` is the (empty) map the answer's headers go into: `crate::front` passes a
/// reused one, so a warm hit allocates nothing.
pub(crate) async fn try_answer<H: Head>(
    fp: &Arc<FastPath>,
    req: &H,
    headers: http::HeaderMap,
) -> Option<http::Response<s3s::Body>> {
    let is_head = match req.method() {
        "GET" => false,
        "HEAD" => true,
        _ => return None,
    };
    if req
        .query()
        .is_some_and(|q| !q.starts_with("x-id=") || q.contains('&'))
    {
        return None;
    }
    if has_unhandled_headers(req) {
        return None;
    }
    // One rule for both paths (`crate::s3::get::range_header`): an unusable Range is
    // ignored as S3 does; `bytes=-0` or a start past the end answer 416.
    let range = match range_of(req)? {
        RangeHeader::Range(r) => Some(r),
        RangeHeader::Absent | RangeHeader::Ignored => None,
    };
    let mut r = ReadReq {
        range,
        want_body: !is_head,
        ..Default::default()
    };
    conditions(req, &mut r).ok()?;
    // Kept for the gateway, which answers what the lookup does not find.
    let gw_range = r.range;
    let gw_cond = match crate::gateway::get() {
        Some(_) => r.cond.clone(),
        None => Default::default(),
    };
    let checksum_mode = match at_most_one(req, names::X_AMZ_CHECKSUM_MODE) {
        Ok(v) => checksum_mode_enabled(v.map(str::as_bytes)),
        Err(()) => return None,
    };
    let decoded = percent_decode(req.path())?;
    let (bucket, key) = decoded.strip_prefix('/').and_then(|p| p.split_once('/'))?;
    if bucket.is_empty() || key.is_empty() || key.len() > crate::s3::limits::MAX_KEY_BYTES {
        return None;
    }
    if !verify(fp, req, &decoded, bucket, false) {
        return None;
    }
    // Gateway mode: a ranged read inside a local block entry, before the lookup (whose
    // miss would build an `S3Error`: 2 allocations).
    let mut headers = headers;
    if let Some(range) = gw_range.filter(|_| crate::gateway::get().is_some()) {
        match crate::gateway::hook::block_first(
            &fp.s3, bucket, key, range, &gw_cond, is_head, headers,
        )
        .await
        {
            Ok(resp) => return Some(resp),
            Err(h) => headers = h,
        }
    }
    let mut found = match lookup(&fp.s3, bucket, key, r).await {
        Ok(f) => f,
        // Gateway mode: a miss is filled from the upstream by the s3s-side handlers.
        Err(e)
            if matches!(
                e.code(),
                s3s::S3ErrorCode::NoSuchKey | s3s::S3ErrorCode::NoSuchBucket
            ) && crate::gateway::fast_path_miss_declines() =>
        {
            // A block entry's ranged hit, or a miss filled from the upstream (gateway::hook).
            return crate::gateway::hook::fast_miss(
                &fp.s3,
                bucket,
                key,
                gw_range,
                gw_cond,
                is_head,
                checksum_mode,
                headers,
            )
            .await;
        }
        Err(e) if answers_itself(&e, bucket) => {
            return match e.to_http_response() {
                Ok(resp) => Some(resp),
                Err(e) => {
                    tracing::warn!(error = %e, "fast path could not build an error; s3s answers");
                    None
                }
            };
        }
        Err(_) => return None,
    };
    if crate::gateway::fast_path_declines(bucket, key, found.seq, found.mtime_ms) {
        return None; // gateway: a stale copy is re-checked upstream first
    }
    let body = match found.body.take() {
        Some(p) if !is_head => p.into_body(),
        _ => s3s::Body::empty(),
    };
    let mut resp = http::Response::new(body);
    *resp.headers_mut() = headers;
    if found.served.is_some() {
        *resp.status_mut() = http::StatusCode::PARTIAL_CONTENT;
    }
    match object_headers(
        resp.headers_mut(),
        &found.view(),
        checksum_mode,
        false,
        &Overrides::default(),
    ) {
        Ok(()) => Some(resp),
        Err(_) => {
            tracing::warn!("fast path could not build a response; s3s answers instead");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::headers::http_date;

    #[test]
    fn dates() {
        assert_eq!(parse_amz_date("20130524T000000Z"), Some(1_369_353_600));
        assert_eq!(parse_amz_date("2013-05-24"), None);
        assert_eq!(
            http_date(1_369_353_600_000),
            "Fri, 24 May 2013 00:00:00 GMT"
        );
    }

    /// The AWS S3 documentation's GET Object example (with Range), through the fast path's
    /// canonical request: the published signature.
    #[test]
    fn aws_example_canonical_request() {
        let empty = sigv4::EMPTY_SHA256;
        let req = http::Request::builder()
            .method("GET")
            .uri("/test.txt")
            .header("host", "examplebucket.s3.amazonaws.com")
            .header("range", "bytes=0-9")
            .header("x-amz-content-sha256", empty)
            .header("x-amz-date", "20130524T000000Z")
            .body(())
            .unwrap();
        let signed = "host;range;x-amz-content-sha256;x-amz-date";
        let mut canon = String::new();
        assert!(canonical_request(
            &req,
            "/test.txt",
            signed,
            empty,
            &mut canon
        ));
        assert_eq!(
            sigv4::sha256_hex(canon.as_bytes()).as_str(),
            "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
        );
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let key = sigv4::signing_key(secret, "20130524", "us-east-1", "s3");
        let scope = Scope::new("20130524", "us-east-1", "s3");
        assert!(
            sigv4::sign_canonical_request(&key, "20130524T000000Z", &scope, &canon)
                .matches("f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
        );
        // Refused shapes: an upper-case or empty signed name, a signed header not present.
        for bad in ["Host;range", "host;;range", "host;range;x-amz-meta-absent"] {
            let mut c = String::new();
            assert!(
                !canonical_request(&req, "/test.txt", bad, empty, &mut c),
                "{bad}"
            );
        }
        // `host` from an absolute-form URI when there is no Host header.
        let req = http::Request::builder()
            .method("GET")
            .uri("http://h:1/b/k?x-id=GetObject")
            .body(())
            .unwrap();
        let mut c = String::new();
        assert!(canonical_request(&req, "/b/k", "host", empty, &mut c));
        assert_eq!(
            c,
            format!("GET\n/b/k\nx-id=GetObject\nhost:h:1\n\nhost\n{empty}")
        );
    }

    #[test]
    fn percent_decoding_needs_two_hex_digits() {
        assert_eq!(percent_decode("/b/k%20x").as_deref(), Some("/b/k x"));
        assert_eq!(
            percent_decode("/b/%e2%82%AC").as_deref(),
            Some("/b/\u{20ac}")
        );
        assert_eq!(percent_decode("/b/plain").as_deref(), Some("/b/plain"));
        // `u8::from_str_radix("+1", 16)` is Ok(1): "%+1" must not become byte 1.
        assert_eq!(percent_decode("/b/x%+1"), None);
        assert_eq!(percent_decode("/b/x%-1"), None);
        assert_eq!(percent_decode("/b/x%1"), None);
        assert_eq!(percent_decode("/b/x%"), None);
        assert_eq!(percent_decode("/b/x%zz"), None);
        assert_eq!(percent_decode("/b/%ff"), None); // not UTF-8
    }

    #[test]
    fn headers_that_must_be_single() {
        let mut h = http::Request::new(());
        assert_eq!(at_most_one(&h, "x-amz-date"), Ok(None));
        h.headers_mut()
            .insert("x-amz-date", "20130524T000000Z".parse().unwrap());
        assert_eq!(at_most_one(&h, "x-amz-date"), Ok(Some("20130524T000000Z")));
        assert_eq!(at_most_one(&h, "X-Amz-Date"), Ok(Some("20130524T000000Z")));
        h.headers_mut()
            .append("x-amz-date", "20130524T000000Z".parse().unwrap());
        assert_eq!(at_most_one(&h, "x-amz-date"), Err(()));
        h.headers_mut().insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_bytes(b"\xff").unwrap(),
        );
        assert_eq!(at_most_one(&h, "authorization"), Err(()));
    }

    #[test]
    fn auth_header() {
        let a = parse_auth("AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc").unwrap();
        assert_eq!(
            (
                a.access_key,
                a.date,
                a.region,
                a.signed_headers,
                a.signature
            ),
            ("AK", "20130524", "us-east-1", "host;x-amz-date", "abc")
        );
        assert!(parse_auth("AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=abc").is_none());
    }
}
