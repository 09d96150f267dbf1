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

use std::cell::RefCell;
use std::sync::Arc;

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

use s3s::dto::{ETagCondition, Timestamp, TimestampFormat};

use crate::s3::get::{lookup, RangeHeader, ReadReq};
use crate::s3::headers::{checksum_mode_enabled, object_headers, Overrides};
use crate::s3::BaleS3;
use crate::sigcheck::{as_str, constant_time_eq, iso_basic, parse_iso_basic as parse_amz_date};

type HmacSha256 = hmac::Hmac<Sha256>;

/// Largest clock difference accepted, seconds (same as s3s: 15 minutes).
const MAX_SKEW_S: i64 = crate::sigcheck::MAX_SKEW_S;

pub struct FastPath {
    pub s3: BaleS3,
    pub access_key: String,
    pub secret_key: String,
}

thread_local! {
    /// (yyyymmdd, region) -> signing key; one derivation per day per core.
    static SIGNING_KEY: RefCell<Option<(String, String, [u8; 32])>> = const { RefCell::new(None) };
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key).expect("hmac accepts any key length");
    m.update(data);
    m.finalize().into_bytes().into()
}

fn signing_key(secret: &str, date: &str, region: &str) -> [u8; 32] {
    SIGNING_KEY.with(|c| {
        let mut c = c.borrow_mut();
        if let Some((d, r, k)) = c.as_ref() {
            if d == date && r == region {
                return *k;
            }
        }
        let k1 = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
        let k2 = hmac(&k1, region.as_bytes());
        let k3 = hmac(&k2, b"s3");
        let k4 = hmac(&k3, b"aws4_request");
        *c = Some((date.to_string(), region.to_string(), k4));
        k4
    })
}

fn hex_lower(b: &[u8], out: &mut String) {
    const H: &[u8; 16] = b"0123456789abcdef";
    for x in b {
        out.push(H[(x >> 4) as usize] as char);
        out.push(H[(x & 15) as usize] as char);
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if !b.contains(&b'%') {
        return Some(s.to_string());
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
    String::from_utf8(out).ok()
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// A header that may appear at most once: `Ok(None)` when absent, `Err(())` when repeated
/// or not visible ASCII (s3s reads such a header as absent or refuses it; either way the
/// fast path leaves the request to it).
fn at_most_one(
    h: &http::HeaderMap,
    name: impl http::header::AsHeaderName,
) -> Result<Option<&str>, ()> {
    let mut it = h.get_all(name).into_iter();
    let Some(v) = it.next() else { return Ok(None) };
    if it.next().is_some() {
        return Err(());
    }
    v.to_str().map(Some).map_err(|_| ())
}

fn uri_encode_path(out: &mut String, s: &str) {
    const H: &[u8; 16] = b"0123456789ABCDEF";
    for &c in s.as_bytes() {
        match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'~' | b'.' | b'/' => {
                out.push(c as char)
            }
            _ => {
                out.push('%');
                out.push(H[(c >> 4) as usize] as char);
                out.push(H[(c & 15) as usize] as char);
            }
        }
    }
}

fn push_header_value(out: &mut String, v: &str) {
    let t = v.trim();
    if !t.chars().any(char::is_whitespace) {
        out.push_str(t);
        return;
    }
    for (i, w) in t.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(w);
    }
}

struct Auth<'a> {
    access_key: &'a str,
    date: &'a str,
    region: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
}

fn parse_auth(v: &str) -> Option<Auth<'_>> {
    let rest = v.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let (mut cred, mut sh, mut sig) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(x) = part.strip_prefix("Credential=") {
            cred = Some(x);
        } else if let Some(x) = part.strip_prefix("SignedHeaders=") {
            sh = Some(x);
        } else if let Some(x) = part.strip_prefix("Signature=") {
            sig = Some(x);
        }
    }
    let mut c = cred?.split('/');
    let (access_key, date, region, service, term) =
        (c.next()?, c.next()?, c.next()?, c.next()?, c.next()?);
    if service != "s3" || term != "aws4_request" || c.next().is_some() {
        return None;
    }
    Some(Auth {
        access_key,
        date,
        region,
        signed_headers: sh?,
        signature: sig?,
    })
}

/// Verifies the request's SigV4 header signature. Only `x-id` may appear in the query.
fn verify(fp: &FastPath, req: &http::Request<hyper::body::Incoming>, decoded_path: &str) -> bool {
    let h = req.headers();
    let Ok(Some(auth)) = at_most_one(h, http::header::AUTHORIZATION) else {
        return false;
    };
    let Some(auth) = parse_auth(auth) else {
        return false;
    };
    if auth.access_key != fp.access_key || auth.region != fp.s3.region {
        return false;
    }
    if !auth.signed_headers.split(';').any(|n| n == "host") {
        return false; // S3 requires `host` to be signed
    }
    // The request time: x-amz-date, else Date (RFC 1123), which SigV4 allows.
    let date_buf: [u8; 16];
    let amz_date = match at_most_one(h, "x-amz-date") {
        Ok(Some(d)) => d,
        Ok(None) => {
            let Ok(Some(d)) = at_most_one(h, http::header::DATE) else {
                return false;
            };
            let Some(t) = crate::sigcheck::parse_request_date(d) else {
                return false;
            };
            date_buf = iso_basic(t);
            as_str(&date_buf)
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
    let Ok(Some(payload)) = at_most_one(h, "x-amz-content-sha256") else {
        return false;
    };
    let mut canon = String::with_capacity(512);
    canon.push_str(req.method().as_str());
    canon.push('\n');
    uri_encode_path(&mut canon, decoded_path);
    canon.push('\n');
    if let Some(q) = req.uri().query() {
        canon.push_str(q); // only `x-id=<Op>` reaches here: already canonical
    }
    canon.push('\n');
    for name in auth.signed_headers.split(';') {
        if name.is_empty() || name.bytes().any(|c| c.is_ascii_uppercase()) {
            return false;
        }
        canon.push_str(name);
        canon.push(':');
        let mut first = true;
        for v in h.get_all(name) {
            let Ok(v) = v.to_str() else { return false };
            if !first {
                canon.push(',');
            }
            first = false;
            push_header_value(&mut canon, v);
        }
        if first {
            if name == "host" {
                // HTTP/1.1 puts the host in the header; an absolute-form URI carries it instead.
                match req.uri().authority() {
                    Some(a) => canon.push_str(a.as_str()),
                    None => return false,
                }
            } else {
                return false; // a signed header that is not present
            }
        }
        canon.push('\n');
    }
    canon.push('\n');
    canon.push_str(auth.signed_headers);
    canon.push('\n');
    canon.push_str(payload);

    let mut sts = String::with_capacity(256);
    sts.push_str("AWS4-HMAC-SHA256\n");
    sts.push_str(amz_date);
    sts.push('\n');
    sts.push_str(auth.date);
    sts.push('/');
    sts.push_str(auth.region);
    sts.push_str("/s3/aws4_request\n");
    hex_lower(&Sha256::digest(canon.as_bytes()), &mut sts);
    let key = signing_key(&fp.secret_key, auth.date, auth.region);
    let sig = hmac(&key, sts.as_bytes());
    let mut expect = String::with_capacity(64);
    hex_lower(&sig, &mut expect);
    constant_time_eq(expect.as_bytes(), auth.signature.as_bytes())
}

/// Headers that change what a GET returns and that the fast path leaves to s3s.
fn has_unhandled_headers(h: &http::HeaderMap) -> bool {
    h.contains_key("x-amz-server-side-encryption-customer-algorithm")
        || h.contains_key("x-amz-expected-bucket-owner")
        || h.contains_key("x-amz-request-payer")
}

/// The four conditional headers, read as s3s reads them: at most one each, an empty value is
/// absent. `Err(())` (repeated, not ASCII, unparseable) leaves the request to s3s, which
/// answers its own 400. Nothing is allocated when none is present.
fn conditions(h: &http::HeaderMap, r: &mut ReadReq) -> Result<(), ()> {
    fn one(h: &http::HeaderMap, name: http::header::HeaderName) -> Result<Option<&str>, ()> {
        if !h.contains_key(&name) {
            return Ok(None);
        }
        Ok(at_most_one(h, name)?.filter(|v| !v.is_empty()))
    }
    let etag = |v: &str| ETagCondition::parse_http_header(v.as_bytes()).map_err(|_| ());
    let date = |v: &str| Timestamp::parse(TimestampFormat::HttpDate, v).map_err(|_| ());
    if let Some(v) = one(h, http::header::IF_MATCH)? {
        r.cond.if_match = Some(etag(v)?);
    }
    if let Some(v) = one(h, http::header::IF_NONE_MATCH)? {
        r.cond.if_none_match = Some(etag(v)?);
    }
    if let Some(v) = one(h, http::header::IF_MODIFIED_SINCE)? {
        r.cond.if_modified_since = Some(date(v)?);
    }
    if let Some(v) = one(h, http::header::IF_UNMODIFIED_SINCE)? {
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
    let is_head = match *req.method() {
        http::Method::GET => false,
        http::Method::HEAD => true,
        _ => return Err(req),
    };
    if req
        .uri()
        .query()
        .is_some_and(|q| !q.starts_with("x-id=") || q.contains('&'))
    {
        return Err(req);
    }
    if has_unhandled_headers(req.headers()) {
        return Err(req);
    }
    // One rule for both paths (`crate::s3::get::range_header`): an unusable Range is
    // ignored as S3 does; `bytes=-0` or a start past the end answer 416.
    let range = match crate::s3::get::range_header(req.headers()) {
        Some(RangeHeader::Range(r)) => Some(r),
        Some(RangeHeader::Absent | RangeHeader::Ignored) => None,
        None => return Err(req),
    };
    let mut r = ReadReq {
        range,
        want_body: !is_head,
        ..Default::default()
    };
    if conditions(req.headers(), &mut r).is_err() {
        return Err(req);
    }
    let checksum_mode = match at_most_one(req.headers(), "x-amz-checksum-mode") {
        Ok(v) => checksum_mode_enabled(v.map(str::as_bytes)),
        Err(()) => return Err(req),
    };
    let Some(decoded) = percent_decode(req.uri().path()) else {
        return Err(req);
    };
    let Some((bucket, key)) = decoded.strip_prefix('/').and_then(|p| p.split_once('/')) else {
        return Err(req);
    };
    if bucket.is_empty() || key.is_empty() || key.len() > crate::s3::limits::MAX_KEY_BYTES {
        return Err(req);
    }
    if !verify(fp, &req, &decoded) {
        return Err(req);
    }
    let mut found = match lookup(&fp.s3, bucket, key, r).await {
        Ok(f) => f,
        Err(e) if answers_itself(&e, bucket) => {
            return match e.to_http_response() {
                Ok(resp) => Ok(resp),
                Err(e) => {
                    tracing::warn!(error = %e, "fast path could not build an error; s3s answers");
                    Err(req)
                }
            };
        }
        Err(_) => return Err(req),
    };
    let body = match found.body.take() {
        Some(blob) if !is_head => s3s::Body::from(blob),
        _ => s3s::Body::empty(),
    };
    let mut resp = http::Response::new(body);
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
        Ok(()) => Ok(resp),
        Err(_) => {
            tracing::warn!("fast path could not build a response; s3s answers instead");
            Err(req)
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

    #[test]
    fn aws_example_signing_key() {
        // AWS SigV4 documentation example (GET /test.txt with Range, us-east-1, 20130524).
        let k = signing_key(
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "20130524",
            "us-east-1",
        );
        let mut sts = String::new();
        sts.push_str("AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n");
        sts.push_str("7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
        let mut sig = String::new();
        hex_lower(&hmac(&k, sts.as_bytes()), &mut sig);
        assert_eq!(
            sig,
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn aws_example_canonical_request_hash() {
        let canon = "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\nx-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\nx-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let mut h = String::new();
        hex_lower(&Sha256::digest(canon.as_bytes()), &mut h);
        assert_eq!(
            h,
            "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
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
        let mut h = http::HeaderMap::new();
        assert_eq!(at_most_one(&h, "x-amz-date"), Ok(None));
        h.insert("x-amz-date", "20130524T000000Z".parse().unwrap());
        assert_eq!(at_most_one(&h, "x-amz-date"), Ok(Some("20130524T000000Z")));
        h.append("x-amz-date", "20130524T000000Z".parse().unwrap());
        assert_eq!(at_most_one(&h, "x-amz-date"), Err(()));
        h.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_bytes(b"\xff").unwrap(),
        );
        assert_eq!(at_most_one(&h, http::header::AUTHORIZATION), Err(()));
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
