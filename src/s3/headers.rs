//! The one place an object's response headers are built, for GET and HEAD through s3s and for
//! the fast path (`crate::fast`), so the two can never answer different headers.
//!
//! s3s's `GetObjectOutput` / `HeadObjectOutput` would build the same headers from DTO fields;
//! the s3s handlers instead leave those fields empty and hand this map over as
//! `S3Response::headers`, which s3s 0.14.1 merges into the response after the DTO's own
//! headers (`resp.headers.extend(..)`; for GetObject also after its `response-*` overrides,
//! which is why the overrides are applied here as well). The only DTO field still set is
//! GetObject's `content_range`, from the same `Found::served`: s3s picks the 206 status from it.

use std::cell::RefCell;
use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use s3s::dto::{ChecksumMode, Timestamp};

use super::meta::MetaView;

/// `response-*` query overrides of GetObject / HeadObject (none on the fast path).
#[derive(Default)]
pub struct Overrides<'a> {
    pub content_type: Option<&'a str>,
    pub content_encoding: Option<&'a str>,
    pub content_language: Option<&'a str>,
    pub content_disposition: Option<&'a str>,
    pub cache_control: Option<&'a str>,
    pub expires: Option<&'a Timestamp>,
}

/// What the headers describe: the object a read found, and the span it serves.
pub struct Obj<'a> {
    pub meta: MetaView<'a>,
    /// The whole object's size.
    pub size: u64,
    pub mtime_ms: u64,
    /// Byte range served `[start, end)`, when a Range or partNumber applied.
    pub served: Option<(u64, u64)>,
}

/// A header value the stored metadata could not produce (never expected: metadata is
/// validated on write, see `ObjMeta::validate`).
#[derive(Debug)]
pub struct BadHeader;

impl From<http::header::InvalidHeaderValue> for BadHeader {
    fn from(_: http::header::InvalidHeaderValue) -> Self {
        BadHeader
    }
}

impl From<http::header::InvalidHeaderName> for BadHeader {
    fn from(_: http::header::InvalidHeaderName) -> Self {
        BadHeader
    }
}

/// Fills `h` with the object's headers: Accept-Ranges, Content-Length, Content-Range (when a
/// range or part was served), ETag, Last-Modified, Content-Type/-Encoding/-Language/
/// -Disposition, Cache-Control and Expires (each overridable), user metadata (`x-amz-meta-*`,
/// RFC 2047 for non-ASCII values), stored checksums (`checksum_on`, whole reads only) and
/// `x-amz-mp-parts-count` (only when the request named a part number).
pub fn object_headers(
    h: &mut HeaderMap,
    f: &Obj<'_>,
    checksum_on: bool,
    part_number_given: bool,
    o: &Overrides<'_>,
) -> Result<(), BadHeader> {
    let m = &f.meta;
    h.reserve(8);
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let len = match f.served {
        Some((a, e)) => {
            let v = arena_fmt(format_args!(
                "bytes {}-{}/{}",
                a,
                e.saturating_sub(1),
                f.size
            ))?;
            h.insert(header::CONTENT_RANGE, v);
            e - a
        }
        None => f.size,
    };
    h.insert(header::CONTENT_LENGTH, arena_fmt(format_args!("{len}"))?);
    h.insert(header::ETAG, arena_fmt(format_args!("\"{}\"", m.etag))?);
    h.insert(
        header::LAST_MODIFIED,
        arena_value(29, |b| write_http_date(b, f.mtime_ms / 1000))?,
    );
    for (name, over, stored) in [
        (header::CONTENT_TYPE, o.content_type, m.content_type),
        (
            header::CONTENT_ENCODING,
            o.content_encoding,
            m.content_encoding,
        ),
        (
            header::CONTENT_LANGUAGE,
            o.content_language,
            m.content_language,
        ),
        (
            header::CONTENT_DISPOSITION,
            o.content_disposition,
            m.content_disposition,
        ),
        (header::CACHE_CONTROL, o.cache_control, m.cache_control),
    ] {
        if let Some(v) = over.or(stored) {
            h.insert(name, arena_str(v)?);
        }
    }
    // Expires goes back as it was stored (S3 does the same, even for a value that is no
    // HTTP-date); a `response-expires` override is a timestamp.
    if let Some(t) = o.expires {
        let s = time::OffsetDateTime::from(t.clone()).unix_timestamp();
        h.insert(
            header::EXPIRES,
            HeaderValue::try_from(http_date_s(s.max(0) as u64))?,
        );
    } else if let Some(v) = m.expires {
        h.insert(header::EXPIRES, arena_str(v)?);
    }
    for (k, v) in m.user() {
        let name = HeaderName::try_from(format!("x-amz-meta-{k}"))?;
        h.append(name, HeaderValue::try_from(encode_meta_value(v))?);
    }
    for (name, v) in checksum_headers(*m, checksum_on, f.served.is_some()) {
        h.insert(HeaderName::from_static(name), arena_str(v)?);
    }
    if part_number_given {
        if let Some(n) = m.parts_count {
            h.insert("x-amz-mp-parts-count", HeaderValue::from(n));
        }
    }
    Ok(())
}

/// The stored checksums a GET/HEAD returns, as (response header, value): only with
/// `x-amz-checksum-mode: ENABLED` and only for whole-object reads (S3 returns no checksum
/// for a range). Both the fast path and the s3s path build their checksum headers from this.
pub fn checksum_headers<'m>(
    meta: MetaView<'m>,
    enabled: bool,
    ranged: bool,
) -> impl Iterator<Item = (&'static str, &'m str)> + 'm {
    const ALGOS: [(&str, &str); 5] = [
        ("crc32", "x-amz-checksum-crc32"),
        ("crc32c", "x-amz-checksum-crc32c"),
        ("crc64nvme", "x-amz-checksum-crc64nvme"),
        ("sha1", "x-amz-checksum-sha1"),
        ("sha256", "x-amz-checksum-sha256"),
    ];
    let on = enabled && !ranged;
    ALGOS
        .into_iter()
        .filter(move |_| on)
        .filter_map(move |(a, h)| meta.checksum(a).map(|v| (h, v)))
        .chain(
            meta.checksum_type
                .filter(move |_| on)
                .map(|t| ("x-amz-checksum-type", t)),
        )
}

/// `x-amz-checksum-mode` as S3 reads it: on only for the exact value `ENABLED`.
pub fn checksum_mode_enabled(v: Option<&[u8]>) -> bool {
    v == Some(ChecksumMode::ENABLED.as_bytes())
}

/// Non-ASCII metadata values go out RFC 2047 encoded (one `B` encoded word), as S3 does.
pub fn encode_meta_value(v: &str) -> String {
    if v.bytes().all(|c| (0x20..0x7f).contains(&c)) {
        return v.to_string();
    }
    use base64::Engine as _;
    format!(
        "=?UTF-8?B?{}?=",
        base64::engine::general_purpose::STANDARD.encode(v.as_bytes())
    )
}

/// RFC 7231 IMF-fixdate of a time in milliseconds since the epoch (whole seconds).
pub fn http_date(ms: u64) -> String {
    http_date_s(ms / 1000)
}

fn http_date_s(s: u64) -> String {
    let mut b = String::with_capacity(29);
    write_http_date(&mut b, s);
    b
}

fn write_http_date(out: &mut impl std::fmt::Write, s: u64) {
    let t = time::OffsetDateTime::from_unix_timestamp(s as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let wd = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        [t.weekday().number_days_from_monday() as usize];
    let mo = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][t.month() as usize - 1];
    // Writing into a String or a BytesMut with room cannot fail.
    let _ = write!(
        out,
        "{wd}, {:02} {mo} {} {:02}:{:02}:{:02} GMT",
        t.day(),
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    );
}

/// Bytes of each chunk of a core's header arena.
const ARENA_CHUNK: usize = 64 << 10;

thread_local! {
    /// This core's header arena: response header values are formatted into it and handed out
    /// as slices of a shared chunk (`Bytes` reference counts), so building a value allocates
    /// nothing; a new chunk is allocated when one is used up (every few hundred responses),
    /// and a chunk is freed when the last value cut from it is dropped.
    static ARENA: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// A header value of at most `max` bytes written by `f` into this core's arena (more than
/// `max` is still correct, only no longer free of allocation).
pub fn arena_value(max: usize, f: impl FnOnce(&mut BytesMut)) -> Result<HeaderValue, BadHeader> {
    ARENA.with(|a| {
        let mut a = a.borrow_mut();
        if a.capacity() < max {
            *a = BytesMut::with_capacity(ARENA_CHUNK.max(max));
        }
        f(&mut a);
        HeaderValue::from_maybe_shared(a.split().freeze()).map_err(|_| BadHeader)
    })
}

/// A formatted header value, from this core's arena.
pub fn arena_fmt(args: std::fmt::Arguments<'_>) -> Result<HeaderValue, BadHeader> {
    arena_value(128, |b| {
        let _ = b.write_fmt(args);
    })
}

/// A copy of `v` as a header value, from this core's arena.
pub fn arena_str(v: &str) -> Result<HeaderValue, BadHeader> {
    arena_bytes(v.as_bytes())
}

/// A copy of `v` as a header value, from this core's arena.
pub fn arena_bytes(v: &[u8]) -> Result<HeaderValue, BadHeader> {
    arena_value(v.len(), |b| b.put_slice(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::meta::ObjMeta;

    fn found(meta: &ObjMeta, served: Option<(u64, u64)>) -> Obj<'_> {
        Obj {
            size: 10,
            mtime_ms: 1_369_353_600_000,
            meta: meta.view(),
            served,
        }
    }

    #[test]
    fn whole_object() {
        let m = ObjMeta {
            etag: "abc".into(),
            content_type: Some("text/plain".into()),
            expires: Some("not a date".into()),
            user: vec![("a".into(), "x".into()), ("b".into(), "é".into())],
            checksums: vec![("crc32".into(), "AAAAAA==".into())],
            parts_count: Some(3),
            ..Default::default()
        };
        let mut h = HeaderMap::new();
        object_headers(&mut h, &found(&m, None), true, false, &Overrides::default()).unwrap();
        let g = |n: &str| h.get(n).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(g("accept-ranges").as_deref(), Some("bytes"));
        assert_eq!(g("content-length").as_deref(), Some("10"));
        assert_eq!(g("content-range"), None);
        assert_eq!(g("etag").as_deref(), Some("\"abc\""));
        assert_eq!(
            g("last-modified").as_deref(),
            Some("Fri, 24 May 2013 00:00:00 GMT")
        );
        assert_eq!(g("content-type").as_deref(), Some("text/plain"));
        assert_eq!(g("expires").as_deref(), Some("not a date"));
        assert_eq!(g("x-amz-meta-a").as_deref(), Some("x"));
        assert_eq!(g("x-amz-meta-b").as_deref(), Some("=?UTF-8?B?w6k=?="));
        assert_eq!(g("x-amz-checksum-crc32").as_deref(), Some("AAAAAA=="));
        assert_eq!(g("x-amz-mp-parts-count"), None);

        let mut h = HeaderMap::new();
        let ts = Timestamp::parse(
            s3s::dto::TimestampFormat::HttpDate,
            "Wed, 21 Oct 2015 07:28:00 GMT",
        )
        .unwrap();
        let o = Overrides {
            content_type: Some("a/b"),
            expires: Some(&ts),
            ..Default::default()
        };
        object_headers(&mut h, &found(&m, Some((2, 5))), true, true, &o).unwrap();
        let g = |n: &str| h.get(n).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(g("content-length").as_deref(), Some("3"));
        assert_eq!(g("content-range").as_deref(), Some("bytes 2-4/10"));
        assert_eq!(g("content-type").as_deref(), Some("a/b"));
        assert_eq!(
            g("expires").as_deref(),
            Some("Wed, 21 Oct 2015 07:28:00 GMT")
        );
        assert_eq!(g("x-amz-checksum-crc32"), None, "no checksum for a range");
        assert_eq!(g("x-amz-mp-parts-count").as_deref(), Some("3"));
    }

    #[test]
    fn dates() {
        assert_eq!(
            http_date(1_369_353_600_000),
            "Fri, 24 May 2013 00:00:00 GMT"
        );
    }

    #[test]
    fn checksum_headers_only_whole_and_enabled() {
        let m = ObjMeta {
            checksums: vec![
                ("crc32".into(), "AAAAAA==".into()),
                ("sha256".into(), "x".into()),
            ],
            checksum_type: Some("FULL_OBJECT".into()),
            ..Default::default()
        };
        let all: Vec<_> = checksum_headers(m.view(), true, false).collect();
        assert_eq!(
            all,
            vec![
                ("x-amz-checksum-crc32", "AAAAAA=="),
                ("x-amz-checksum-sha256", "x"),
                ("x-amz-checksum-type", "FULL_OBJECT")
            ]
        );
        assert_eq!(checksum_headers(m.view(), false, false).count(), 0);
        assert_eq!(checksum_headers(m.view(), true, true).count(), 0);
        assert!(checksum_mode_enabled(Some(b"ENABLED")));
        assert!(!checksum_mode_enabled(Some(b"enabled")));
        assert!(!checksum_mode_enabled(None));
    }
}
