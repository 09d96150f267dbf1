//! Request body ingestion shared by PutObject and UploadPart: length, Content-MD5 and
//! `x-amz-checksum-*` (header or aws-chunked trailer) are all checked while the body streams,
//! and user metadata is bounded, before the engine is asked to commit.

use bale_io::PutWriter;
use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt;
use s3s::checksum::ChecksumHasher;
use s3s::crypto::Checksum as _;
use s3s::dto::*;
use s3s::{s3_error, S3Result, TrailingHeaders};

use super::error;
use super::limits::{MAX_PUT_BYTES, MAX_USER_META_BYTES};

pub const ALGOS: [&str; 5] = ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"];

/// Everything needed to check a body, in Send form.
#[derive(Default)]
pub struct BodyChecks {
    /// The declared length; with `unknown_length`, the most the body may hold.
    pub size_bytes: u64,
    /// No length was declared (`Transfer-Encoding: chunked`, see `super::UnknownLength`).
    pub unknown_length: bool,
    pub content_md5: Option<[u8; 16]>,
    /// Checksums given in headers: (algo, base64).
    pub expected: Vec<(&'static str, String)>,
    /// Algorithms to compute (given, announced by x-amz-sdk-checksum-algorithm, or in a trailer).
    pub compute: Vec<&'static str>,
    /// Trailer name announced in `x-amz-trailer`, and the handle to read it after the body.
    pub trailer: Option<(&'static str, TrailingHeaders)>,
}

pub struct Ingested {
    pub md5: [u8; 16],
    /// (algo, base64) for every computed algorithm.
    pub checksums: Vec<(String, String)>,
}

fn algo_of(name: &str) -> Option<&'static str> {
    let n = name.trim().to_ascii_lowercase();
    let n = n.strip_prefix("x-amz-checksum-").unwrap_or(&n);
    ALGOS.iter().copied().find(|a| *a == n)
}

/// Builds the checks from request headers common to PutObject and UploadPart.
pub fn body_checks(
    headers: &http::HeaderMap,
    content_length: Option<i64>,
    content_md5: Option<&str>,
    given: [Option<&String>; 5],
    algorithm: Option<&str>,
    trailing: Option<TrailingHeaders>,
    unknown_length: bool,
) -> S3Result<BodyChecks> {
    let decoded = headers
        .get("x-amz-decoded-content-length")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| s3_error!(InvalidArgument, "invalid x-amz-decoded-content-length"))
        })
        .transpose()?;
    let size_bytes = match (decoded, content_length) {
        _ if unknown_length => unknown_length_limit(),
        (Some(d), _) => d,
        (None, Some(n)) if n >= 0 => n as u64,
        _ => {
            return Err(s3_error!(
                MissingContentLength,
                "You must provide the Content-Length HTTP header."
            ))
        }
    };
    if size_bytes > MAX_PUT_BYTES {
        return Err(s3_error!(
            EntityTooLarge,
            "Your proposed upload exceeds the maximum allowed size (5 GiB per PUT)"
        ));
    }
    let mut c = BodyChecks {
        size_bytes,
        unknown_length,
        ..Default::default()
    };
    // An empty `Content-MD5:` header is an invalid digest (s3s reads it as absent).
    let content_md5 = match headers.get("content-md5") {
        Some(v) => Some(v.to_str().map_err(|_| {
            s3_error!(InvalidDigest, "The Content-MD5 you specified is not valid.")
        })?),
        None => content_md5,
    };
    if let Some(m) = content_md5 {
        c.content_md5 = Some(content_md5_of(m)?);
    }
    for (algo, v) in ALGOS.iter().zip(given) {
        if let Some(v) = v {
            c.expected.push((algo, v.clone()));
            c.compute.push(algo);
        }
    }
    if let Some(a) = algorithm {
        let a = algo_of(a)
            .ok_or_else(|| s3_error!(InvalidArgument, "Unsupported checksum algorithm: {a}"))?;
        if !c.compute.contains(&a) {
            c.compute.push(a);
        }
    }
    if let Some(t) = headers.get("x-amz-trailer").and_then(|v| v.to_str().ok()) {
        let a = algo_of(t).ok_or_else(|| s3_error!(InvalidArgument, "Unsupported trailer: {t}"))?;
        if !c.compute.contains(&a) {
            c.compute.push(a);
        }
        match trailing {
            Some(h) => c.trailer = Some((a, h)),
            None => {
                return Err(s3_error!(
                    InvalidRequest,
                    "x-amz-trailer given without a streaming trailer payload"
                ))
            }
        }
    }
    Ok(c)
}

/// The digest a `Content-MD5` value (base64 of 16 bytes) names; 400 InvalidDigest otherwise.
pub fn content_md5_of(m: &str) -> S3Result<[u8; 16]> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(m.trim())
        .map_err(|_| s3_error!(InvalidDigest, "The Content-MD5 you specified is not valid."))?;
    raw.try_into()
        .map_err(|_| s3_error!(InvalidDigest, "The Content-MD5 you specified is not valid."))
}

pub fn hasher_for(algos: &[&str]) -> ChecksumHasher {
    let mut h = ChecksumHasher::default();
    for a in algos {
        match *a {
            "crc32" => h.crc32 = Some(s3s::crypto::Crc32::new()),
            "crc32c" => h.crc32c = Some(s3s::crypto::Crc32c::new()),
            "crc64nvme" => h.crc64nvme = Some(s3s::crypto::Crc64Nvme::new()),
            "sha1" => h.sha1 = Some(s3s::crypto::Sha1::new()),
            "sha256" => h.sha256 = Some(s3s::crypto::Sha256::new()),
            _ => {}
        }
    }
    h
}

/// (algorithm, base64) for every checksum `h` computed.
pub fn checksums_of(h: ChecksumHasher) -> Vec<(String, String)> {
    let sums = h.finalize();
    [
        ("crc32", sums.checksum_crc32),
        ("crc32c", sums.checksum_crc32c),
        ("crc64nvme", sums.checksum_crc64nvme),
        ("sha1", sums.checksum_sha1),
        ("sha256", sums.checksum_sha256),
    ]
    .into_iter()
    .filter_map(|(a, v)| v.map(|v| (a.to_string(), v)))
    .collect()
}

/// Body bytes hashed between two yields to the core's other tasks.
pub(crate) const HASH_SLICE_BYTES: usize = 16 * 1024;

/// What a body hashes to, fed as it streams (MD5 for the ETag, and the requested checksums).
pub struct Hashing {
    md5: s3s::crypto::Md5,
    hasher: ChecksumHasher,
    received: u64,
}

impl Hashing {
    pub fn new(c: &BodyChecks) -> Self {
        Hashing {
            md5: s3s::crypto::Md5::new(),
            hasher: hasher_for(&c.compute),
            received: 0,
        }
    }

    /// Counts and hashes one chunk; refuses a body longer than allowed.
    pub async fn feed(&mut self, chunk: &[u8], c: &BodyChecks) -> S3Result<()> {
        self.received += chunk.len() as u64;
        if self.received > c.size_bytes {
            if c.unknown_length {
                return Err(s3_error!(
                    EntityTooLarge,
                    "Your proposed upload exceeds the maximum allowed size ({} bytes per PUT)",
                    c.size_bytes
                ));
            }
            return Err(s3_error!(
                IncompleteBody,
                "The request body is longer than its declared length ({} bytes)",
                c.size_bytes
            ));
        }
        // MD5 (the ETag) runs at ~600 MB/s: a 64 KiB chunk hashed in one go holds the core
        // for ~100 µs, and every GET on this core waits for it. Hash in slices and let the
        // other tasks run between them.
        let mut rest: &[u8] = chunk;
        while !rest.is_empty() {
            let (now, later) = rest.split_at(rest.len().min(HASH_SLICE_BYTES));
            self.md5.update(now);
            self.hasher.update(now);
            rest = later;
            if !rest.is_empty() {
                crate::spin::yield_now().await;
            }
        }
        Ok(())
    }

    /// Checks length, Content-MD5, checksums and trailer once the body ended.
    pub fn finish(self, c: &BodyChecks) -> S3Result<Ingested> {
        if !c.unknown_length && self.received != c.size_bytes {
            return Err(s3_error!(
                IncompleteBody,
                "You did not provide the number of bytes specified by the Content-Length HTTP header ({} of {})",
                self.received,
                c.size_bytes
            ));
        }
        let md5: [u8; 16] = self.md5.finalize();
        if let Some(want) = c.content_md5 {
            if want != md5 {
                return Err(s3_error!(
                    BadDigest,
                    "The Content-MD5 you specified did not match what we received."
                ));
            }
        }
        let computed = checksums_of(self.hasher);
        let get = |a: &str| {
            computed
                .iter()
                .find(|(x, _)| x == a)
                .map(|(_, v)| v.as_str())
        };
        for (algo, want) in &c.expected {
            if get(algo) != Some(want.as_str()) {
                return Err(s3_error!(
                    BadDigest,
                    "The {} you specified did not match the calculated checksum.",
                    algo.to_uppercase()
                ));
            }
        }
        if let Some((algo, trailers)) = &c.trailer {
            let name = format!("x-amz-checksum-{algo}");
            let got = trailers
                .read(|h| {
                    h.get(name.as_str())
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                })
                .flatten();
            match got {
                Some(v) if Some(v.as_str()) == get(algo) => {}
                Some(_) => {
                    return Err(s3_error!(
                        BadDigest,
                        "The {} you specified did not match the calculated checksum.",
                        algo.to_uppercase()
                    ))
                }
                None => {
                    return Err(s3_error!(
                        IncompleteBody,
                        "The announced trailer {name} was not received"
                    ))
                }
            }
        }
        Ok(Ingested {
            md5,
            checksums: computed,
        })
    }
}

/// Streams `body` into `writer`, checking everything. Runs on the owning core.
pub async fn ingest(
    writer: &mut PutWriter,
    body: Option<StreamingBlob>,
    c: &BodyChecks,
) -> S3Result<Ingested> {
    let mut h = Hashing::new(c);
    if let Some(mut body) = body {
        while let Some(chunk) = body.next().await {
            let chunk: Bytes = chunk.map_err(error::body)?;
            h.feed(&chunk, c).await?;
            writer.write(chunk).await.map_err(error::engine)?;
        }
    }
    h.finish(c)
}

/// Largest body a PUT without a declared length may stream: `MAX_PUT_BYTES`. Test hook: the
/// environment variable `BALE_TEST_MAX_UNKNOWN_LENGTH_BYTES`, read once at start, lowers it so
/// the limit can be proven without sending 5 GiB.
pub fn unknown_length_limit() -> u64 {
    static LIMIT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| {
        std::env::var("BALE_TEST_MAX_UNKNOWN_LENGTH_BYTES")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(MAX_PUT_BYTES, |v| v.min(MAX_PUT_BYTES))
    })
}

pub fn hex(b: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(H[(x >> 4) as usize] as char);
        s.push(H[(x & 15) as usize] as char);
    }
    s
}

pub fn check_user_meta(m: &Option<Metadata>) -> S3Result<Vec<(String, String)>> {
    let Some(m) = m else { return Ok(Vec::new()) };
    let total: usize = m.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > MAX_USER_META_BYTES {
        return Err(s3_error!(
            MetadataTooLarge,
            "Your metadata headers exceed the maximum allowed metadata size (2 KiB)"
        ));
    }
    let mut v: Vec<(String, String)> = m
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    v.sort();
    Ok(v)
}
