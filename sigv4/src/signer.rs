//! A request signer for S3 clients (header auth): the load generator and the gateway's
//! upstream client both sign with it.

pub use crate::{EMPTY_SHA256, UNSIGNED_PAYLOAD as UNSIGNED};

/// S3's URI encoding: unreserved bytes stay, everything else is %XX (upper case);
/// `/` stays unless `encode_slash`.
pub fn uri_encode(input: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(input.len() + 8);
    crate::push_uri_encoded(&mut out, input, encode_slash);
    out
}

/// Canonical query string from unencoded pairs (sorted by encoded key, then value).
pub fn canonical_query(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    crate::push_canonical_query(&mut out, pairs);
    out
}

pub struct Signer {
    access_key: String,
    secret_key: String,
    region: String,
    keys: crate::SigningKeyCache,
}

impl Signer {
    pub fn new(access_key: &str, secret_key: &str, region: &str) -> Self {
        Signer {
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            region: region.into(),
            keys: crate::SigningKeyCache::new(),
        }
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
        let date = crate::AmzDate::from_unix(unix as i64);
        let mut hdrs: Vec<(&str, &str)> = vec![
            ("host", host),
            ("x-amz-content-sha256", payload_hash),
            ("x-amz-date", date.as_str()),
        ];
        hdrs.extend_from_slice(extra);
        hdrs.sort();
        let mut signed = String::with_capacity(64);
        for (i, (k, _)) in hdrs.iter().enumerate() {
            if i > 0 {
                signed.push(';');
            }
            signed.push_str(k);
        }
        let mut creq = String::with_capacity(256);
        let mut c = crate::CanonicalRequest::new(&mut creq, method);
        c.raw_uri(path).raw_query(query);
        for (k, v) in &hdrs {
            c.header(k, [*v]);
        }
        c.finish(&signed, payload_hash);
        let scope = crate::Scope::new(date.date(), &self.region, "s3");
        let key = self
            .keys
            .get(&self.secret_key, scope.date, scope.region, scope.service);
        let sig = crate::sign_canonical_request(&key, date.as_str(), &scope, &creq);
        let mut auth = String::with_capacity(256);
        crate::push_authorization(&mut auth, &self.access_key, &scope, &signed, sig.as_str());
        [
            ("x-amz-date", date.as_str().to_string()),
            ("x-amz-content-sha256", payload_hash.to_string()),
            ("authorization", auth),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "Example: GET Object" of the AWS SigV4 header-auth documentation.
    #[test]
    fn aws_doc_get_object() {
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
        assert_eq!(h[0].1, "20130524T000000Z");
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
