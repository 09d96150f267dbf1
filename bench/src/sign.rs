//! AWS Signature Version 4 for path-style S3 requests (header auth).

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
pub const UNSIGNED: &str = "UNSIGNED-PAYLOAD";

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256>>::new_from_slice(key).expect("hmac key");
    m.update(data);
    m.finalize().into_bytes().into()
}

pub fn hex(data: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(data.len() * 2);
    for &b in data {
        s.push(H[(b >> 4) as usize] as char);
        s.push(H[(b & 15) as usize] as char);
    }
    s
}

pub fn sha256_hex(data: &[u8]) -> String {
    let d: [u8; 32] = Sha256::digest(data).into();
    hex(&d)
}

/// S3's URI encoding: unreserved bytes stay, everything else is %XX (upper case);
/// `/` stays unless `encode_slash`.
pub fn uri_encode(input: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(input.len() + 8);
    for &b in input.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'~' | b'.' => {
                out.push(b as char)
            }
            b'/' if !encode_slash => out.push('/'),
            _ => {
                out.push('%');
                out.push(b"0123456789ABCDEF"[(b >> 4) as usize] as char);
                out.push(b"0123456789ABCDEF"[(b & 15) as usize] as char);
            }
        }
    }
    out
}

/// Canonical query string from unencoded pairs (sorted by encoded key, then value).
pub fn canonical_query(pairs: &[(&str, &str)]) -> String {
    let mut enc: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (uri_encode(k, true), uri_encode(v, true)))
        .collect();
    enc.sort();
    enc.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// UTC `YYYYMMDDTHHMMSSZ` for a unix time.
pub fn amz_date(unix: u64) -> String {
    let days = (unix / 86400) as i64;
    let secs = unix % 86400;
    // civil_from_days (Howard Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

pub struct Signer {
    access_key: String,
    secret_key: String,
    region: String,
    /// (yyyymmdd, signing key) cache
    cached: Option<(String, [u8; 32])>,
}

impl Signer {
    pub fn new(access_key: &str, secret_key: &str, region: &str) -> Self {
        Signer {
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            region: region.into(),
            cached: None,
        }
    }

    fn signing_key(&mut self, day: &str) -> [u8; 32] {
        if let Some((d, k)) = &self.cached {
            if d == day {
                return *k;
            }
        }
        let k1 = hmac(
            format!("AWS4{}", self.secret_key).as_bytes(),
            day.as_bytes(),
        );
        let k2 = hmac(&k1, self.region.as_bytes());
        let k3 = hmac(&k2, b"s3");
        let k4 = hmac(&k3, b"aws4_request");
        self.cached = Some((day.to_string(), k4));
        k4
    }

    /// Returns the headers to add: (x-amz-date, x-amz-content-sha256, authorization).
    /// `path` is the already-encoded canonical URI, `query` the canonical query string;
    /// `extra` are further headers to sign (lower-case names, e.g. `range`).
    #[allow(clippy::too_many_arguments)]
    pub fn sign(
        &mut self,
        method: &str,
        host: &str,
        path: &str,
        query: &str,
        payload_hash: &str,
        unix: u64,
        extra: &[(&str, &str)],
    ) -> [(&'static str, String); 3] {
        let date = amz_date(unix);
        let day = &date[..8];
        let mut hdrs: Vec<(&str, &str)> = vec![
            ("host", host),
            ("x-amz-content-sha256", payload_hash),
            ("x-amz-date", &date),
        ];
        hdrs.extend_from_slice(extra);
        hdrs.sort();
        let mut canon_h = String::new();
        for (k, v) in &hdrs {
            canon_h.push_str(k);
            canon_h.push(':');
            canon_h.push_str(v.trim());
            canon_h.push('\n');
        }
        let signed: Vec<&str> = hdrs.iter().map(|(k, _)| *k).collect();
        let signed = signed.join(";");
        let creq = format!("{method}\n{path}\n{query}\n{canon_h}\n{signed}\n{payload_hash}");
        let scope = format!("{day}/{}/s3/aws4_request", self.region);
        let sts = format!(
            "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
            sha256_hex(creq.as_bytes())
        );
        let key = self.signing_key(day);
        let sig = hex(&hmac(&key, sts.as_bytes()));
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={sig}",
            self.access_key
        );
        [
            ("x-amz-date", date),
            ("x-amz-content-sha256", payload_hash.to_string()),
            ("authorization", auth),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date() {
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(1_369_353_600), "20130524T000000Z");
        assert_eq!(amz_date(951_825_600 + 3661), "20000229T130101Z");
    }

    /// "Example: GET Object" of the AWS SigV4 header-auth documentation.
    #[test]
    fn aws_doc_get_object() {
        assert_eq!(sha256_hex(b""), EMPTY_SHA256);
        let mut s = Signer::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "us-east-1",
        );
        let h = s.sign(
            "GET",
            "examplebucket.s3.amazonaws.com",
            "/test.txt",
            "",
            EMPTY_SHA256,
            1_369_353_600,
            &[("range", "bytes=0-9")],
        );
        assert_eq!(
            h[2].1,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn encode() {
        assert_eq!(uri_encode("a b/c+d", false), "a%20b/c%2Bd");
        assert_eq!(
            canonical_query(&[("prefix", "x/y"), ("list-type", "2")]),
            "list-type=2&prefix=x%2Fy"
        );
    }
}
