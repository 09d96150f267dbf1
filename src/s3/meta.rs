//! Object metadata as stored in the engine's opaque `meta` bytes.
//!
//! Format (version 1): one version byte, then fields as `tag u8, len u16 LE, bytes`. Unknown
//! tags are skipped, so later versions can add fields. User metadata is a repeated pair of
//! fields (key, value). Bounded: S3 limits user metadata to 2 KiB; the whole encoding is kept
//! under 64 KiB by construction (every field is length-checked when encoded).

use bytes::{BufMut, Bytes, BytesMut};
use s3s::{s3_error, S3Result};

/// What S3 stores when a PUT names no Content-Type.
pub const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";

const VERSION: u8 = 1;

const T_ETAG: u8 = 1;
const T_CONTENT_TYPE: u8 = 2;
const T_CONTENT_ENCODING: u8 = 3;
const T_CONTENT_LANGUAGE: u8 = 4;
const T_CONTENT_DISPOSITION: u8 = 5;
const T_CACHE_CONTROL: u8 = 6;
const T_EXPIRES: u8 = 7;
const T_USER_KEY: u8 = 8;
const T_USER_VALUE: u8 = 9;
const T_CHECKSUM: u8 = 10; // "<algo>:<base64>"
const T_PARTS_COUNT: u8 = 11;
const T_CHECKSUM_TYPE: u8 = 12;
const T_CHECKSUM_ALGORITHM: u8 = 13;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ObjMeta {
    /// Hex MD5 (or `md5-of-md5s-N` for multipart), without quotes.
    pub etag: String,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_language: Option<String>,
    pub content_disposition: Option<String>,
    pub cache_control: Option<String>,
    /// RFC 7231 HTTP-date as the client sent it.
    pub expires: Option<String>,
    pub user: Vec<(String, String)>,
    /// (algorithm lower-case: crc32, crc32c, crc64nvme, sha1, sha256; base64 value)
    pub checksums: Vec<(String, String)>,
    pub checksum_type: Option<String>,
    pub parts_count: Option<u32>,
    /// Multipart upload descriptors only: the `x-amz-checksum-algorithm` given at
    /// CreateMultipartUpload (lower-case, as in `checksums`).
    pub checksum_algorithm: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("metadata field too large: {0} bytes (limit 65535)")]
pub struct TooLarge(usize);

fn put_field(b: &mut BytesMut, tag: u8, v: &[u8]) -> Result<(), TooLarge> {
    let len = u16::try_from(v.len()).map_err(|_| TooLarge(v.len()))?;
    b.put_u8(tag);
    b.put_u16_le(len);
    b.put_slice(v);
    Ok(())
}

impl ObjMeta {
    /// The metadata a write request sets (PutObject, CreateMultipartUpload, CopyObject with
    /// REPLACE): standard headers, `Expires` as sent, user metadata; S3's default Content-Type.
    /// `aws-chunked` is transport framing and never part of the stored Content-Encoding.
    /// Everything is validated (see `validate`), so no stored object can hold a value GET/HEAD
    /// cannot send back.
    pub fn from_request(
        headers: &http::HeaderMap,
        content_type: Option<&String>,
        content_encoding: Option<&String>,
        content_language: Option<&String>,
        content_disposition: Option<&String>,
        cache_control: Option<&String>,
        user: Vec<(String, String)>,
    ) -> S3Result<ObjMeta> {
        let m = ObjMeta {
            content_type: Some(
                content_type
                    .cloned()
                    .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_string()),
            ),
            content_encoding: content_encoding.and_then(|e| strip_aws_chunked(e)),
            content_language: content_language.cloned(),
            content_disposition: content_disposition.cloned(),
            cache_control: cache_control.cloned(),
            expires: headers
                .get(http::header::EXPIRES)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            user,
            ..Default::default()
        };
        m.validate()?;
        Ok(m)
    }

    /// Refuses (400 InvalidArgument) what a response header could not carry: control
    /// characters in standard header values and user metadata values (user values may arrive
    /// RFC 2047 encoded and decode to anything), and user metadata names that are not lower-case
    /// HTTP tokens.
    pub fn validate(&self) -> S3Result<()> {
        for (name, v) in [
            ("Content-Type", &self.content_type),
            ("Content-Encoding", &self.content_encoding),
            ("Content-Language", &self.content_language),
            ("Content-Disposition", &self.content_disposition),
            ("Cache-Control", &self.cache_control),
            ("Expires", &self.expires),
        ] {
            if let Some(v) = v {
                if !header_value_ok(v) || http::HeaderValue::from_str(v).is_err() {
                    return Err(s3_error!(
                        InvalidArgument,
                        "The {name} value holds characters a header cannot carry"
                    ));
                }
            }
        }
        for (k, v) in &self.user {
            if !user_name_ok(k) {
                return Err(s3_error!(
                    InvalidArgument,
                    "User metadata name {k:?} is not a valid header name"
                ));
            }
            if !header_value_ok(v) {
                return Err(s3_error!(
                    InvalidArgument,
                    "The value of user metadata {k:?} holds control characters"
                ));
            }
        }
        Ok(())
    }

    pub fn encode(&self) -> Result<Bytes, TooLarge> {
        let mut b = BytesMut::with_capacity(64 + self.etag.len());
        b.put_u8(VERSION);
        put_field(&mut b, T_ETAG, self.etag.as_bytes())?;
        for (tag, v) in [
            (T_CONTENT_TYPE, &self.content_type),
            (T_CONTENT_ENCODING, &self.content_encoding),
            (T_CONTENT_LANGUAGE, &self.content_language),
            (T_CONTENT_DISPOSITION, &self.content_disposition),
            (T_CACHE_CONTROL, &self.cache_control),
            (T_EXPIRES, &self.expires),
            (T_CHECKSUM_TYPE, &self.checksum_type),
            (T_CHECKSUM_ALGORITHM, &self.checksum_algorithm),
        ] {
            if let Some(v) = v {
                put_field(&mut b, tag, v.as_bytes())?;
            }
        }
        for (k, v) in &self.user {
            put_field(&mut b, T_USER_KEY, k.as_bytes())?;
            put_field(&mut b, T_USER_VALUE, v.as_bytes())?;
        }
        for (a, v) in &self.checksums {
            put_field(&mut b, T_CHECKSUM, format!("{a}:{v}").as_bytes())?;
        }
        if let Some(n) = self.parts_count {
            put_field(&mut b, T_PARTS_COUNT, &n.to_le_bytes())?;
        }
        Ok(b.freeze())
    }

    /// The metadata of a stored object (or upload record) `key` in namespace `ns`, wherever
    /// a request needs it. Undecodable metadata has one answer everywhere: the key is logged
    /// and the request fails with 500 InternalError (ADR 0008); nothing falls back to an empty
    /// default.
    pub fn load(src: &[u8], ns: &str, key: &str) -> S3Result<ObjMeta> {
        Self::decode(src).ok_or_else(|| {
            tracing::error!(ns = ?ns, key = ?key, "undecodable object metadata");
            super::error::internal_error()
        })
    }

    /// Decodes; malformed input gives `None` (never a panic).
    pub fn decode(src: &[u8]) -> Option<ObjMeta> {
        MetaView::parse(src).map(|v| v.to_owned())
    }

    pub fn checksum(&self, algo: &str) -> Option<&str> {
        self.checksums
            .iter()
            .find(|(a, _)| a == algo)
            .map(|(_, v)| v.as_str())
    }

    /// This metadata as a view (what response headers and conditions read).
    pub fn view(&self) -> MetaView<'_> {
        MetaView {
            etag: &self.etag,
            content_type: self.content_type.as_deref(),
            content_encoding: self.content_encoding.as_deref(),
            content_language: self.content_language.as_deref(),
            content_disposition: self.content_disposition.as_deref(),
            cache_control: self.cache_control.as_deref(),
            expires: self.expires.as_deref(),
            checksum_type: self.checksum_type.as_deref(),
            checksum_algorithm: self.checksum_algorithm.as_deref(),
            parts_count: self.parts_count,
            lists: Lists::Owned(self),
        }
    }
}

/// Stored metadata read in place: every field borrows from the encoded bytes (or from an
/// `ObjMeta`), so reading an object's metadata on the GET path allocates nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetaView<'a> {
    pub etag: &'a str,
    pub content_type: Option<&'a str>,
    pub content_encoding: Option<&'a str>,
    pub content_language: Option<&'a str>,
    pub content_disposition: Option<&'a str>,
    pub cache_control: Option<&'a str>,
    pub expires: Option<&'a str>,
    pub checksum_type: Option<&'a str>,
    pub checksum_algorithm: Option<&'a str>,
    pub parts_count: Option<u32>,
    lists: Lists<'a>,
}

/// Where a view's repeated fields (user metadata, checksums) are read from.
#[derive(Debug, Clone, Copy, Default)]
enum Lists<'a> {
    #[default]
    None,
    /// The encoded fields after the version byte, already validated by `MetaView::parse`.
    Raw(&'a [u8]),
    Owned(&'a ObjMeta),
}

/// The `(tag, value)` fields of an encoding (after its version byte); stops at the first
/// malformed field.
fn fields(mut rest: &[u8]) -> impl Iterator<Item = Result<(u8, &[u8]), ()>> {
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        if rest.len() < 3 {
            rest = &[];
            return Some(Err(()));
        }
        let tag = rest[0];
        let len = u16::from_le_bytes([rest[1], rest[2]]) as usize;
        let Some(v) = rest.get(3..3 + len) else {
            rest = &[];
            return Some(Err(()));
        };
        rest = &rest[3 + len..];
        Some(Ok((tag, v)))
    })
}

impl<'a> MetaView<'a> {
    /// Reads an encoding in place, checking all of it (what `ObjMeta::decode` accepts);
    /// malformed input gives `None`.
    pub fn parse(src: &'a [u8]) -> Option<MetaView<'a>> {
        let (&ver, rest) = src.split_first()?;
        if ver != VERSION {
            return None;
        }
        let mut m = MetaView {
            lists: Lists::Raw(rest),
            ..Default::default()
        };
        let mut pending_key = false;
        for f in fields(rest) {
            let (tag, v) = f.ok()?;
            let s = || std::str::from_utf8(v).ok();
            match tag {
                T_ETAG => m.etag = s()?,
                T_CONTENT_TYPE => m.content_type = Some(s()?),
                T_CONTENT_ENCODING => m.content_encoding = Some(s()?),
                T_CONTENT_LANGUAGE => m.content_language = Some(s()?),
                T_CONTENT_DISPOSITION => m.content_disposition = Some(s()?),
                T_CACHE_CONTROL => m.cache_control = Some(s()?),
                T_EXPIRES => m.expires = Some(s()?),
                T_CHECKSUM_TYPE => m.checksum_type = Some(s()?),
                T_CHECKSUM_ALGORITHM => m.checksum_algorithm = Some(s()?),
                T_USER_KEY => {
                    s()?;
                    pending_key = true;
                }
                T_USER_VALUE => {
                    s()?;
                    if !std::mem::take(&mut pending_key) {
                        return None;
                    }
                }
                T_CHECKSUM => {
                    s()?.split_once(':')?;
                }
                T_PARTS_COUNT => m.parts_count = Some(u32::from_le_bytes(v.try_into().ok()?)),
                _ => {}
            }
        }
        Some(m)
    }

    /// Like `parse`, for a stored object (or upload record) `key` in namespace `ns`:
    /// undecodable metadata is logged and answers 500, as `ObjMeta::load`.
    pub fn load(src: &'a [u8], ns: &str, key: &str) -> S3Result<MetaView<'a>> {
        Self::parse(src).ok_or_else(|| {
            tracing::error!(ns = ?ns, key = ?key, "undecodable object metadata");
            super::error::internal_error()
        })
    }

    /// User metadata `(name, value)`, in stored order.
    pub fn user(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let (raw, owned) = self.split_lists();
        let mut pending: Option<&'a str> = None;
        fields(raw)
            .filter_map(move |f| {
                let (tag, v) = f.ok()?;
                let v = std::str::from_utf8(v).ok()?;
                match tag {
                    T_USER_KEY => {
                        pending = Some(v);
                        None
                    }
                    T_USER_VALUE => Some((pending.take()?, v)),
                    _ => None,
                }
            })
            .chain(owned.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// Stored checksums `(algorithm, base64 value)`, in stored order.
    pub fn checksums(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let (raw, owned) = match self.lists {
            Lists::Owned(m) => (&[][..], &m.checksums[..]),
            Lists::Raw(r) => (r, &[][..]),
            Lists::None => (&[][..], &[][..]),
        };
        fields(raw)
            .filter_map(|f| match f.ok()? {
                (T_CHECKSUM, v) => std::str::from_utf8(v).ok()?.split_once(':'),
                _ => None,
            })
            .chain(owned.iter().map(|(a, v)| (a.as_str(), v.as_str())))
    }

    pub fn checksum(&self, algo: &str) -> Option<&'a str> {
        self.checksums().find(|(a, _)| *a == algo).map(|(_, v)| v)
    }

    fn split_lists(&self) -> (&'a [u8], &'a [(String, String)]) {
        match self.lists {
            Lists::Owned(m) => (&[], &m.user),
            Lists::Raw(r) => (r, &[]),
            Lists::None => (&[], &[]),
        }
    }

    /// An owned copy.
    pub fn to_owned(&self) -> ObjMeta {
        let s = |v: Option<&str>| v.map(str::to_string);
        ObjMeta {
            etag: self.etag.to_string(),
            content_type: s(self.content_type),
            content_encoding: s(self.content_encoding),
            content_language: s(self.content_language),
            content_disposition: s(self.content_disposition),
            cache_control: s(self.cache_control),
            expires: s(self.expires),
            user: self
                .user()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            checksums: self
                .checksums()
                .map(|(a, v)| (a.to_string(), v.to_string()))
                .collect(),
            checksum_type: s(self.checksum_type),
            parts_count: self.parts_count,
            checksum_algorithm: s(self.checksum_algorithm),
        }
    }
}

/// `Content-Encoding` without `aws-chunked` (transport framing, S3 never stores it); `None`
/// when nothing else is left.
pub fn strip_aws_chunked(v: &str) -> Option<String> {
    let kept: Vec<&str> = v
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("aws-chunked"))
        .collect();
    if kept.is_empty() {
        None
    } else {
        Some(kept.join(", "))
    }
}

/// No control characters but tab (a header value cannot carry CR, LF, NUL, DEL, ...).
fn header_value_ok(v: &str) -> bool {
    v.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// A lower-case HTTP token (RFC 9110 tchar), so `x-amz-meta-<name>` is a header name.
fn user_name_ok(k: &str) -> bool {
    !k.is_empty()
        && k.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_reads_what_decode_reads() {
        let m = ObjMeta {
            etag: "abc".into(),
            content_type: Some("text/plain".into()),
            cache_control: Some("no-cache".into()),
            expires: Some("x".into()),
            user: vec![("a".into(), "1".into()), ("b".into(), "é".into())],
            checksums: vec![
                ("crc32".into(), "AAAAAA==".into()),
                ("sha256".into(), "x:y".into()),
            ],
            checksum_type: Some("FULL_OBJECT".into()),
            parts_count: Some(7),
            checksum_algorithm: Some("crc32c".into()),
            ..Default::default()
        };
        let enc = m.encode().unwrap();
        let v = MetaView::parse(&enc).unwrap();
        assert_eq!(v.to_owned(), m);
        assert_eq!(ObjMeta::decode(&enc).unwrap(), m);
        assert_eq!(v.checksum("sha256"), Some("x:y"));
        assert_eq!(v.checksum("crc64nvme"), None);
        let from_owned = m.view();
        assert_eq!(
            v.user().collect::<Vec<_>>(),
            from_owned.user().collect::<Vec<_>>()
        );
        assert_eq!(
            v.checksums().collect::<Vec<_>>(),
            from_owned.checksums().collect::<Vec<_>>()
        );
        // Malformed: a value without a key, a checksum without ':', bad UTF-8, truncation.
        for bad in [
            &[VERSION, T_USER_VALUE, 1, 0, b'x'][..],
            &[VERSION, T_CHECKSUM, 1, 0, b'x'][..],
            &[VERSION, T_ETAG, 1, 0, 0xff][..],
            &[VERSION, T_ETAG, 5, 0, b'x'][..],
            &[VERSION, T_ETAG, 1][..],
            &[2][..],
            &[][..],
        ] {
            assert!(MetaView::parse(bad).is_none(), "{bad:?}");
            assert!(ObjMeta::decode(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn undecodable_metadata_is_an_internal_error() {
        let e = ObjMeta::load(&[9, 9, 9], "bucket", "key").unwrap_err();
        assert_eq!(e.code(), &s3s::S3ErrorCode::InternalError);
        let ok = ObjMeta {
            etag: "e".into(),
            ..Default::default()
        };
        let b = ok.encode().unwrap();
        assert_eq!(ObjMeta::load(&b, "bucket", "key").unwrap(), ok);
    }

    #[test]
    fn roundtrip() {
        let m = ObjMeta {
            etag: "d41d8cd98f00b204e9800998ecf8427e".into(),
            content_type: Some("text/plain".into()),
            cache_control: Some("no-cache".into()),
            user: vec![("a".into(), "".into()), ("ключ".into(), "значение".into())],
            checksums: vec![("crc32".into(), "AAAAAA==".into())],
            parts_count: Some(3),
            checksum_algorithm: Some("crc32".into()),
            ..Default::default()
        };
        let b = m.encode().unwrap();
        assert_eq!(ObjMeta::decode(&b).unwrap(), m);
    }

    #[test]
    fn aws_chunked_stripped() {
        assert_eq!(
            strip_aws_chunked("gzip, aws-chunked").as_deref(),
            Some("gzip")
        );
        assert_eq!(
            strip_aws_chunked("AWS-CHUNKED,gzip,br").as_deref(),
            Some("gzip, br")
        );
        assert_eq!(strip_aws_chunked("aws-chunked"), None);
        assert_eq!(strip_aws_chunked(" , "), None);
        assert_eq!(strip_aws_chunked("gzip").as_deref(), Some("gzip"));
    }

    #[test]
    fn validation() {
        let ok = ObjMeta {
            content_type: Some("text/plain; charset=utf-8".into()),
            user: vec![("a-b_c.1".into(), "ключ\tü".into())],
            ..Default::default()
        };
        assert!(ok.validate().is_ok());
        for bad in ["a\r\nb", "a\0", "\x01", "\x7f"] {
            let m = ObjMeta {
                user: vec![("k".into(), bad.into())],
                ..Default::default()
            };
            assert!(m.validate().is_err(), "{bad:?}");
            let m = ObjMeta {
                cache_control: Some(bad.into()),
                ..Default::default()
            };
            assert!(m.validate().is_err(), "{bad:?}");
        }
        for bad in ["", "a b", "a:b", "A", "ключ", "a/b"] {
            let m = ObjMeta {
                user: vec![(bad.into(), "v".into())],
                ..Default::default()
            };
            assert!(m.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        for n in 0..200u32 {
            let v: Vec<u8> = (0..n)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 3) as u8)
                .collect();
            let _ = ObjMeta::decode(&v);
        }
        assert!(ObjMeta::decode(&[1, T_ETAG, 10, 0, b'a']).is_none());
    }
}
