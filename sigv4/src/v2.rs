//! S3's Signature Version 2 (`Authorization: AWS AK:sig`, and presigned
//! `?AWSAccessKeyId=..&Expires=..&Signature=..`), byte for byte as s3s 0.14.1 builds the string
//! to sign, so that the server can check a signature before s3s does.

use base64::Engine as _;
use hmac::{KeyInit, Mac};

type HmacSha1 = hmac::Hmac<sha1::Sha1>;

/// The single value of a header as s3s reads it (`OrderedHeaders::get_unique`: valid UTF-8,
/// exactly one).
pub fn unique<'a>(h: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    let mut it = h
        .get_all(name)
        .iter()
        .filter_map(|v| std::str::from_utf8(v.as_bytes()).ok());
    let v = it.next()?;
    if it.next().is_some() {
        return None;
    }
    Some(v)
}

/// s3s's list of sub-resources in the SigV2 canonicalized resource (sorted).
pub const SUBRESOURCES: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "cors",
    "defaultObjectAcl",
    "delete",
    "inventory",
    "lifecycle",
    "location",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "partNumber",
    "policy",
    "replication",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "select",
    "select-type",
    "storageClass",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

/// SigV2 string-to-sign, byte for byte as s3s 0.14.1 builds it
/// (`sig_v2::create_string_to_sign`, path-style: no virtual-host bucket), from the raw
/// (still encoded) path and the decoded query pairs in request order. `expires`: `None`
/// for header auth (`Mode::HeaderAuth`: the Date line), the `Expires` query value for a
/// presigned URL (`Mode::PresignedUrl`).
pub fn string_to_sign<K: AsRef<str>, V: AsRef<str>>(
    method: &http::Method,
    raw_path: &str,
    decoded_query: &[(K, V)],
    h: &http::HeaderMap,
    expires: Option<&str>,
) -> String {
    let mut s = String::with_capacity(256);
    s.push_str(method.as_str());
    s.push('\n');
    s.push_str(unique(h, "content-md5").unwrap_or(""));
    s.push('\n');
    s.push_str(unique(h, "content-type").unwrap_or(""));
    s.push('\n');
    match expires {
        Some(e) => s.push_str(e),
        None if unique(h, "x-amz-date").is_none() => s.push_str(unique(h, "date").unwrap_or("")),
        None => {}
    }
    s.push('\n');
    let mut names: Vec<&str> = h
        .keys()
        .map(http::HeaderName::as_str)
        .filter(|n| n.starts_with("x-amz-"))
        .collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let mut vals = h
            .get_all(name)
            .iter()
            .filter_map(|v| std::str::from_utf8(v.as_bytes()).ok());
        let Some(first) = vals.next() else { continue };
        s.push_str(name);
        s.push(':');
        s.push_str(first.trim());
        for v in vals {
            s.push(',');
            s.push_str(v.trim());
        }
        s.push('\n');
    }
    s.push_str(raw_path);
    let mut first = true;
    for sub in SUBRESOURCES {
        let mut vals = decoded_query.iter().filter(|(k, _)| k.as_ref() == *sub);
        let (Some((_, v)), None) = (vals.next(), vals.next()) else {
            continue;
        };
        s.push(if first { '?' } else { '&' });
        first = false;
        s.push_str(sub);
        let v = v.as_ref();
        if !v.is_empty() {
            s.push('=');
            s.push_str(v);
        }
    }
    s
}

/// The SigV2 signature: base64 of HMAC-SHA1(secret, string to sign).
pub fn signature(secret: &str, string_to_sign: &str) -> String {
    let mut m = <HmacSha1 as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("hmac accepts any key length");
    m.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
}
