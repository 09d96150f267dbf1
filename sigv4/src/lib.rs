//! AWS Signature Version 4 for S3, and S3's Signature Version 2, in one place.
//!
//! Used by the server (`bale`: the GET/HEAD fast path and the pre-s3s checks), the load
//! generator (`bale-bench`) and the HTTP fuzzer, which all used to carry their own copies.
//!
//! The pieces, in the order a signature is made:
//!
//! * [`signing_key`] (or a [`SigningKeyCache`]): `HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date),
//!   region), service), "aws4_request")`.
//! * [`CanonicalRequest`]: the canonical request, written into a caller's `String`: method,
//!   canonical URI ([`push_canonical_uri`], S3's rule: the decoded path encoded once, `/`
//!   kept), canonical query ([`push_canonical_query`]), canonical headers (values normalised
//!   by [`push_header_value`]), signed headers, payload hash.
//! * [`string_to_sign`] / [`sign_canonical_request`]: the string to sign and the signature
//!   (the latter streams the string to sign into the HMAC: no buffer at all).
//! * aws-chunked uploads: [`chunk_signature`] and [`trailer_signature`] (and their strings
//!   to sign).
//! * [`parse_authorization`] / [`push_authorization`]: the `Authorization` header.
//! * [`parse_amz_date`], [`AmzDate`], [`parse_request_date`]: `x-amz-date` / `Date`.
//! * [`constant_time_eq`] / [`HexDigest::matches`]: comparing signatures.
//! * [`v2`]: SigV2 string to sign and HMAC-SHA1 signature, as s3s 0.14.1 builds them.
//!
//! Allocation: everything that produces text appends to a caller-provided `String`;
//! signatures and digests come back as fixed-size [`HexDigest`]s. Only the canonical query
//! from decoded pairs ([`push_canonical_query`]) and SigV2 allocate internally.

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

mod date;
pub mod signer;
pub mod v2;

pub use date::{parse_amz_date, parse_request_date, AmzDate};

type HmacSha256 = hmac::Hmac<Sha256>;

/// The only SigV4 algorithm S3 accepts in `Authorization`.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// SHA-256 of the empty string, hex.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// `x-amz-content-sha256` for a payload that is not signed.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// `x-amz-content-sha256` for an aws-chunked upload with signed chunks.
pub const STREAMING_PAYLOAD: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
/// `x-amz-content-sha256` for an aws-chunked upload with signed chunks and trailers.
pub const STREAMING_PAYLOAD_TRAILER: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
/// `x-amz-content-sha256` for an aws-chunked upload with unsigned chunks and trailers.
pub const STREAMING_UNSIGNED_PAYLOAD_TRAILER: &str = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";

// ---- hashing and hex ------------------------------------------------------------------------

/// HMAC-SHA256.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key).expect("hmac accepts any key length");
    m.update(data);
    m.finalize().into_bytes().into()
}

const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Appends `b` as lower-case hex.
pub fn push_hex_lower(out: &mut String, b: &[u8]) {
    out.reserve(b.len() * 2);
    for x in b {
        out.push(HEX_LOWER[(x >> 4) as usize] as char);
        out.push(HEX_LOWER[(x & 15) as usize] as char);
    }
}

/// A 32-byte value (SHA-256 digest, SigV4 signature) as 64 lower-case hex characters, on
/// the stack.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HexDigest([u8; 64]);

impl HexDigest {
    pub fn new(b: &[u8; 32]) -> Self {
        let mut h = [0u8; 64];
        for (i, x) in b.iter().enumerate() {
            h[2 * i] = HEX_LOWER[(x >> 4) as usize];
            h[2 * i + 1] = HEX_LOWER[(x & 15) as usize];
        }
        HexDigest(h)
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }

    /// Compares with a signature from a request, in constant time.
    pub fn matches(&self, provided: &str) -> bool {
        constant_time_eq(&self.0, provided.as_bytes())
    }
}

impl std::fmt::Display for HexDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for HexDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HexDigest({})", self.as_str())
    }
}

/// A SigV4 signature: hex of the final HMAC.
pub type Signature = HexDigest;

/// SHA-256 of `data`, hex.
pub fn sha256_hex(data: &[u8]) -> HexDigest {
    HexDigest::new(&Sha256::digest(data).into())
}

/// Equality of two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// ---- signing key ----------------------------------------------------------------------------

/// The SigV4 signing key for one day (`YYYYMMDD`), region and service.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    // "AWS4" + secret, on the stack for any ordinary secret (AWS's are 40 bytes).
    let mut buf = [0u8; 132];
    let k_date = if let Some(dst) = buf.get_mut(4..4 + secret.len()) {
        dst.copy_from_slice(secret.as_bytes());
        buf[..4].copy_from_slice(b"AWS4");
        let k = hmac_sha256(&buf[..4 + secret.len()], date.as_bytes());
        buf.fill(0);
        k
    } else {
        let mut v = Vec::with_capacity(4 + secret.len());
        v.extend_from_slice(b"AWS4");
        v.extend_from_slice(secret.as_bytes());
        let k = hmac_sha256(&v, date.as_bytes());
        v.fill(0);
        k
    };
    let k = hmac_sha256(&k_date, region.as_bytes());
    let k = hmac_sha256(&k, service.as_bytes());
    hmac_sha256(&k, b"aws4_request")
}

/// Remembers the last signing key derived, so that a signer or verifier derives one per day
/// (per region and service) instead of one per request. One cache serves one secret: keep it
/// next to the secret (per core, per client). Allocates only when the key changes.
#[derive(Debug, Default)]
pub struct SigningKeyCache {
    last: Option<CachedKey>,
}

#[derive(Debug)]
struct CachedKey {
    date: String,
    region: String,
    service: String,
    key: [u8; 32],
}

impl SigningKeyCache {
    pub const fn new() -> Self {
        SigningKeyCache { last: None }
    }

    /// The signing key for `date`/`region`/`service` under `secret` (the cache's one secret).
    pub fn get(&mut self, secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
        if let Some(c) = &self.last {
            if c.date == date && c.region == region && c.service == service {
                return c.key;
            }
        }
        let key = signing_key(secret, date, region, service);
        self.last = Some(CachedKey {
            date: date.to_string(),
            region: region.to_string(),
            service: service.to_string(),
            key,
        });
        key
    }
}

// ---- canonical request ----------------------------------------------------------------------

/// Appends `s` URI-encoded as SigV4 defines it: unreserved bytes (`A-Z a-z 0-9 - _ . ~`)
/// stay, every other byte becomes `%XX` (upper-case hex); `/` stays unless `encode_slash`.
pub fn push_uri_encoded(out: &mut String, s: &str, encode_slash: bool) {
    out.reserve(s.len());
    for &c in s.as_bytes() {
        match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'~' | b'.' => {
                out.push(c as char)
            }
            b'/' if !encode_slash => out.push('/'),
            _ => {
                out.push('%');
                out.push(HEX_UPPER[(c >> 4) as usize] as char);
                out.push(HEX_UPPER[(c & 15) as usize] as char);
            }
        }
    }
}

/// Appends S3's canonical URI for a (percent-decoded) path: each byte encoded once (S3 does
/// not double-encode, unlike other services), `/` kept, no path normalisation.
pub fn push_canonical_uri(out: &mut String, decoded_path: &str) {
    push_uri_encoded(out, decoded_path, false);
}

/// Appends the canonical query string for decoded `(name, value)` pairs: both URI-encoded
/// (`/` too), sorted by encoded name and then value (the SigV4 rule), joined by `&`.
pub fn push_canonical_query<K: AsRef<str>, V: AsRef<str>>(out: &mut String, pairs: &[(K, V)]) {
    let mut enc = encode_pairs(pairs);
    enc.sort();
    join_pairs(out, &enc);
}

/// As [`push_canonical_query`], but sorted by encoded name only, stable (pairs with the same
/// name keep the request's order): how s3s 0.14.1 builds it, which is what the server must
/// match when it checks a signature s3s will check again.
pub fn push_canonical_query_s3s<K: AsRef<str>, V: AsRef<str>>(out: &mut String, pairs: &[(K, V)]) {
    let mut enc = encode_pairs(pairs);
    enc.sort_by(|a, b| a.0.cmp(&b.0));
    join_pairs(out, &enc);
}

fn encode_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| {
            let (k, v) = (k.as_ref(), v.as_ref());
            let (mut ek, mut ev) = (
                String::with_capacity(k.len()),
                String::with_capacity(v.len()),
            );
            push_uri_encoded(&mut ek, k, true);
            push_uri_encoded(&mut ev, v, true);
            (ek, ev)
        })
        .collect()
}

fn join_pairs(out: &mut String, enc: &[(String, String)]) {
    for (i, (k, v)) in enc.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
}

/// Appends a header value normalised as SigV4 requires: leading and trailing whitespace
/// removed, inner runs of whitespace collapsed to one space.
pub fn push_header_value(out: &mut String, v: &str) {
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

/// Writes a canonical request into a caller's `String`, part by part, in order:
///
/// ```text
/// CanonicalRequest::new(out, method)       METHOD\n
///   .uri(decoded) | .raw_uri(canonical)    URI\n
///   .query(pairs) | .raw_query(canonical)  QUERY\n
///   .header(name, values) ...              name:v1,v2\n   (sorted names, lower case)
///   .finish(signed_headers, payload_hash)  \nSIGNED\nPAYLOAD
/// ```
///
/// The writer only appends; it checks nothing (ordering of names, duplicates): callers that
/// verify a request decide what they accept.
pub struct CanonicalRequest<'a> {
    out: &'a mut String,
    values_in_line: bool,
}

impl<'a> CanonicalRequest<'a> {
    /// Appends the method line.
    pub fn new(out: &'a mut String, method: &str) -> Self {
        out.push_str(method);
        out.push('\n');
        CanonicalRequest {
            out,
            values_in_line: false,
        }
    }

    /// The canonical URI from the decoded path ([`push_canonical_uri`]).
    pub fn uri(&mut self, decoded_path: &str) -> &mut Self {
        push_canonical_uri(self.out, decoded_path);
        self.out.push('\n');
        self
    }

    /// A canonical URI given as is (already encoded).
    pub fn raw_uri(&mut self, canonical: &str) -> &mut Self {
        self.out.push_str(canonical);
        self.out.push('\n');
        self
    }

    /// The canonical query from decoded pairs ([`push_canonical_query`]).
    pub fn query<K: AsRef<str>, V: AsRef<str>>(&mut self, pairs: &[(K, V)]) -> &mut Self {
        push_canonical_query(self.out, pairs);
        self.out.push('\n');
        self
    }

    /// The canonical query, s3s's order ([`push_canonical_query_s3s`]).
    pub fn query_s3s<K: AsRef<str>, V: AsRef<str>>(&mut self, pairs: &[(K, V)]) -> &mut Self {
        push_canonical_query_s3s(self.out, pairs);
        self.out.push('\n');
        self
    }

    /// A canonical query string given as is (already encoded and sorted; may be empty).
    pub fn raw_query(&mut self, canonical: &str) -> &mut Self {
        self.out.push_str(canonical);
        self.out.push('\n');
        self
    }

    /// One canonical header line: `name:` then the normalised values joined by `,`.
    pub fn header<'v>(
        &mut self,
        name: &str,
        values: impl IntoIterator<Item = &'v str>,
    ) -> &mut Self {
        self.header_name(name);
        for v in values {
            self.header_value(v);
        }
        self.header_end()
    }

    /// Starts a header line (`name:`); then [`Self::header_value`] per value and
    /// [`Self::header_end`]. For callers whose values can fail to convert.
    pub fn header_name(&mut self, name: &str) -> &mut Self {
        self.out.push_str(name);
        self.out.push(':');
        self.values_in_line = false;
        self
    }

    /// One value of the current header line, normalised, `,`-separated from the previous.
    pub fn header_value(&mut self, v: &str) -> &mut Self {
        if self.values_in_line {
            self.out.push(',');
        }
        self.values_in_line = true;
        push_header_value(self.out, v);
        self
    }

    /// Ends the current header line.
    pub fn header_end(&mut self) -> &mut Self {
        self.out.push('\n');
        self.values_in_line = false;
        self
    }

    /// Appends the blank line after the headers, the signed-headers line and the payload
    /// hash (hex SHA-256, [`UNSIGNED_PAYLOAD`], [`STREAMING_PAYLOAD`], ...).
    pub fn finish(self, signed_headers: &str, payload_hash: &str) {
        self.out.push('\n');
        self.out.push_str(signed_headers);
        self.out.push('\n');
        self.out.push_str(payload_hash);
    }
}

// ---- string to sign and signatures ----------------------------------------------------------

/// The credential scope: `date/region/service/aws4_request`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scope<'a> {
    /// `YYYYMMDD`
    pub date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
}

impl<'a> Scope<'a> {
    pub fn new(date: &'a str, region: &'a str, service: &'a str) -> Self {
        Scope {
            date,
            region,
            service,
        }
    }

    /// Appends `date/region/service/aws4_request`.
    pub fn push(&self, out: &mut String) {
        self.write(&mut |s| out.push_str(s));
    }

    fn write(&self, w: &mut impl FnMut(&str)) {
        w(self.date);
        w("/");
        w(self.region);
        w("/");
        w(self.service);
        w("/aws4_request");
    }
}

/// Writes a string to sign to `w`: `algorithm \n amz_date \n scope` then `\n` + each line.
fn write_sts(
    w: &mut impl FnMut(&str),
    algorithm: &str,
    amz_date: &str,
    scope: &Scope,
    lines: &[&str],
) {
    w(algorithm);
    w("\n");
    w(amz_date);
    w("\n");
    scope.write(w);
    for l in lines {
        w("\n");
        w(l);
    }
}

fn hmac_over(key: &[u8; 32], f: impl FnOnce(&mut dyn FnMut(&str))) -> Signature {
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key).expect("hmac accepts any key length");
    f(&mut |s: &str| m.update(s.as_bytes()));
    HexDigest::new(&m.finalize().into_bytes().into())
}

/// Appends the string to sign for a canonical request:
/// `AWS4-HMAC-SHA256\n<amz_date>\n<scope>\n<hex sha256(canonical_request)>`.
pub fn string_to_sign(out: &mut String, amz_date: &str, scope: &Scope, canonical_request: &str) {
    let h = sha256_hex(canonical_request.as_bytes());
    write_sts(
        &mut |s| out.push_str(s),
        ALGORITHM,
        amz_date,
        scope,
        &[h.as_str()],
    );
}

/// The signature of a string to sign under a signing key.
pub fn sign(signing_key: &[u8; 32], string_to_sign: &str) -> Signature {
    HexDigest::new(&hmac_sha256(signing_key, string_to_sign.as_bytes()))
}

/// The signature of a canonical request: as `sign(key, string_to_sign(..))`, with the string
/// to sign streamed into the HMAC instead of built.
pub fn sign_canonical_request(
    signing_key: &[u8; 32],
    amz_date: &str,
    scope: &Scope,
    canonical_request: &str,
) -> Signature {
    let h = sha256_hex(canonical_request.as_bytes());
    hmac_over(signing_key, |w| {
        write_sts(&mut |s| w(s), ALGORITHM, amz_date, scope, &[h.as_str()])
    })
}

const CHUNK_ALGORITHM: &str = "AWS4-HMAC-SHA256-PAYLOAD";
const TRAILER_ALGORITHM: &str = "AWS4-HMAC-SHA256-TRAILER";

/// Appends the string to sign of one aws-chunked chunk (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`):
/// `AWS4-HMAC-SHA256-PAYLOAD\n<amz_date>\n<scope>\n<previous signature>\n<hex sha256("")>\n
/// <hex sha256(chunk)>`. The first chunk's previous signature is the request's (the seed);
/// the last chunk is empty.
pub fn chunk_string_to_sign(
    out: &mut String,
    amz_date: &str,
    scope: &Scope,
    prev_signature: &str,
    chunk: &[u8],
) {
    let h = sha256_hex(chunk);
    write_sts(
        &mut |s| out.push_str(s),
        CHUNK_ALGORITHM,
        amz_date,
        scope,
        &[prev_signature, EMPTY_SHA256, h.as_str()],
    );
}

/// The signature of one aws-chunked chunk (see [`chunk_string_to_sign`]).
pub fn chunk_signature(
    signing_key: &[u8; 32],
    amz_date: &str,
    scope: &Scope,
    prev_signature: &str,
    chunk: &[u8],
) -> Signature {
    let h = sha256_hex(chunk);
    hmac_over(signing_key, |w| {
        write_sts(
            &mut |s| w(s),
            CHUNK_ALGORITHM,
            amz_date,
            scope,
            &[prev_signature, EMPTY_SHA256, h.as_str()],
        )
    })
}

/// Appends one canonical trailer line, `name:value\n` (name lower-cased, value trimmed).
/// The canonical trailers are these lines sorted by name (as s3s checks them).
pub fn push_canonical_trailer(out: &mut String, name: &str, value: &str) {
    for c in name.chars() {
        out.push(c.to_ascii_lowercase());
    }
    out.push(':');
    out.push_str(value.trim());
    out.push('\n');
}

/// Appends the string to sign of the trailer block
/// (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`): `AWS4-HMAC-SHA256-TRAILER\n<amz_date>\n
/// <scope>\n<previous (last chunk's) signature>\n<hex sha256(canonical trailers)>`.
pub fn trailer_string_to_sign(
    out: &mut String,
    amz_date: &str,
    scope: &Scope,
    prev_signature: &str,
    canonical_trailers: &[u8],
) {
    let h = sha256_hex(canonical_trailers);
    write_sts(
        &mut |s| out.push_str(s),
        TRAILER_ALGORITHM,
        amz_date,
        scope,
        &[prev_signature, h.as_str()],
    );
}

/// The trailer signature (`x-amz-trailer-signature`, see [`trailer_string_to_sign`]).
pub fn trailer_signature(
    signing_key: &[u8; 32],
    amz_date: &str,
    scope: &Scope,
    prev_signature: &str,
    canonical_trailers: &[u8],
) -> Signature {
    let h = sha256_hex(canonical_trailers);
    hmac_over(signing_key, |w| {
        write_sts(
            &mut |s| w(s),
            TRAILER_ALGORITHM,
            amz_date,
            scope,
            &[prev_signature, h.as_str()],
        )
    })
}

// ---- Authorization header -------------------------------------------------------------------

/// The parts of a SigV4 `Authorization` header
/// (`AWS4-HMAC-SHA256 Credential=AK/date/region/service/aws4_request, SignedHeaders=..,
/// Signature=..`), borrowed from it. Nothing is checked beyond the shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Authorization<'a> {
    pub access_key: &'a str,
    pub date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    pub terminal: &'a str,
    pub signed_headers: &'a str,
    pub signature: &'a str,
}

impl<'a> Authorization<'a> {
    pub fn scope(&self) -> Scope<'a> {
        Scope::new(self.date, self.region, self.service)
    }
}

/// Parses a SigV4 `Authorization` header value. `Err(message)` names what is malformed, in
/// S3's words. The three components may come in any order, each trimmed; a repeated one
/// counts last; the credential has exactly five `/`-separated parts.
pub fn parse_authorization(v: &str) -> Result<Authorization<'_>, &'static str> {
    const THREE: &str = "the authorization header requires three components: Credential, \
                         SignedHeaders, and Signature.";
    let rest = v
        .strip_prefix(ALGORITHM)
        .filter(|r| r.starts_with(' '))
        .ok_or(THREE)?;
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
    let (Some(cred), Some(sh), Some(sig)) = (cred, sh, sig) else {
        return Err(THREE);
    };
    let mut c = cred.split('/');
    let (Some(access_key), Some(date), Some(region), Some(service), Some(terminal), None) =
        (c.next(), c.next(), c.next(), c.next(), c.next(), c.next())
    else {
        return Err("the Credential is mal-formed; expecting \
                    \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".");
    };
    Ok(Authorization {
        access_key,
        date,
        region,
        service,
        terminal,
        signed_headers: sh,
        signature: sig,
    })
}

/// Appends an `Authorization` header value:
/// `AWS4-HMAC-SHA256 Credential=<ak>/<scope>, SignedHeaders=<signed>, Signature=<sig>`.
pub fn push_authorization(
    out: &mut String,
    access_key: &str,
    scope: &Scope,
    signed_headers: &str,
    signature: &str,
) {
    out.push_str(ALGORITHM);
    out.push_str(" Credential=");
    out.push_str(access_key);
    out.push('/');
    scope.push(out);
    out.push_str(", SignedHeaders=");
    out.push_str(signed_headers);
    out.push_str(", Signature=");
    out.push_str(signature);
}

#[cfg(test)]
mod tests;
