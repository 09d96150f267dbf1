//! Object metadata as stored in the engine's opaque `meta` bytes.
//!
//! Format (version 1): one version byte, then fields as `tag u8, len u16 LE, bytes`. Unknown
//! tags are skipped, so later versions can add fields. User metadata is a repeated pair of
//! fields (key, value). Bounded: S3 limits user metadata to 2 KiB; the whole encoding is kept
//! under 64 KiB by construction (every field is length-checked when encoded).

use bytes::{BufMut, Bytes, BytesMut};

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
    pub fn from_request(
        headers: &http::HeaderMap,
        content_type: Option<&String>,
        content_encoding: Option<&String>,
        content_language: Option<&String>,
        content_disposition: Option<&String>,
        cache_control: Option<&String>,
        user: Vec<(String, String)>,
    ) -> ObjMeta {
        ObjMeta {
            content_type: Some(
                content_type
                    .cloned()
                    .unwrap_or_else(|| super::put::DEFAULT_CONTENT_TYPE.to_string()),
            ),
            content_encoding: content_encoding.cloned(),
            content_language: content_language.cloned(),
            content_disposition: content_disposition.cloned(),
            cache_control: cache_control.cloned(),
            expires: headers
                .get(http::header::EXPIRES)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            user,
            ..Default::default()
        }
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

    /// Decodes; malformed input gives `None` (never a panic).
    pub fn decode(src: &[u8]) -> Option<ObjMeta> {
        let (&ver, mut rest) = src.split_first()?;
        if ver != VERSION {
            return None;
        }
        let mut m = ObjMeta::default();
        let mut pending_key: Option<String> = None;
        while !rest.is_empty() {
            if rest.len() < 3 {
                return None;
            }
            let tag = rest[0];
            let len = u16::from_le_bytes([rest[1], rest[2]]) as usize;
            let v = rest.get(3..3 + len)?;
            rest = &rest[3 + len..];
            let s = || String::from_utf8(v.to_vec()).ok();
            match tag {
                T_ETAG => m.etag = s()?,
                T_CONTENT_TYPE => m.content_type = Some(s()?),
                T_CONTENT_ENCODING => m.content_encoding = Some(s()?),
                T_CONTENT_LANGUAGE => m.content_language = Some(s()?),
                T_CONTENT_DISPOSITION => m.content_disposition = Some(s()?),
                T_CACHE_CONTROL => m.cache_control = Some(s()?),
                T_EXPIRES => m.expires = Some(s()?),
                T_CHECKSUM_TYPE => m.checksum_type = Some(s()?),
                T_USER_KEY => pending_key = Some(s()?),
                T_USER_VALUE => m.user.push((pending_key.take()?, s()?)),
                T_CHECKSUM => {
                    let t = s()?;
                    let (a, v) = t.split_once(':')?;
                    m.checksums.push((a.to_string(), v.to_string()));
                }
                T_PARTS_COUNT => m.parts_count = Some(u32::from_le_bytes(v.try_into().ok()?)),
                _ => {}
            }
        }
        Some(m)
    }

    pub fn checksum(&self, algo: &str) -> Option<&str> {
        self.checksums
            .iter()
            .find(|(a, _)| a == algo)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let m = ObjMeta {
            etag: "d41d8cd98f00b204e9800998ecf8427e".into(),
            content_type: Some("text/plain".into()),
            cache_control: Some("no-cache".into()),
            user: vec![("a".into(), "".into()), ("ключ".into(), "значение".into())],
            checksums: vec![("crc32".into(), "AAAAAA==".into())],
            parts_count: Some(3),
            ..Default::default()
        };
        let b = m.encode().unwrap();
        assert_eq!(ObjMeta::decode(&b).unwrap(), m);
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
