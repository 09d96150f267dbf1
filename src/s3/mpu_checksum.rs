//! Multipart checksums: which algorithm and type an upload uses (S3's defaults and limits),
//! the COMPOSITE checksum (checksum of the parts' checksums, `-N`) and the FULL_OBJECT CRC of
//! the whole object combined from the parts' CRCs without reading them again.

use base64::Engine as _;
use s3s::dto::*;
use s3s::{s3_error, S3Result};

/// The checksum an upload keeps (algorithm lower-case, type) from CreateMultipartUpload's
/// `x-amz-checksum-algorithm` and `x-amz-checksum-type`, with S3's defaults and limits:
/// CRC64NVME is full-object only, SHA-1/SHA-256 composite only, CRC32/CRC32C either
/// (composite by default).
pub(super) fn checksum_choice(
    algo: Option<&str>,
    ctype: Option<&str>,
) -> S3Result<(Option<&'static str>, Option<&'static str>)> {
    let Some(a) = algo else {
        if ctype.is_some() {
            return Err(s3_error!(
                InvalidRequest,
                "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header."
            ));
        }
        return Ok((None, None));
    };
    let a = super::ingest::ALGOS
        .iter()
        .copied()
        .find(|x| x.eq_ignore_ascii_case(a))
        .ok_or_else(|| s3_error!(InvalidArgument, "Unsupported checksum algorithm: {a}"))?;
    let t = match ctype.map(str::to_ascii_uppercase).as_deref() {
        None if a == "crc64nvme" => FULL_OBJECT,
        None => COMPOSITE,
        Some(FULL_OBJECT) => FULL_OBJECT,
        Some(COMPOSITE) => COMPOSITE,
        Some(other) => {
            return Err(s3_error!(
                InvalidArgument,
                "Unsupported checksum type: {other}"
            ))
        }
    };
    let ok = match t {
        FULL_OBJECT => crc_spec(a).is_some(),
        _ => a != "crc64nvme",
    };
    if !ok {
        return Err(s3_error!(
            InvalidRequest,
            "The {} checksum type cannot be used with the {} checksum algorithm.",
            t,
            a.to_uppercase()
        ));
    }
    Ok((Some(a), Some(t)))
}

pub(super) const COMPOSITE: &str = "COMPOSITE";
pub(super) const FULL_OBJECT: &str = "FULL_OBJECT";

pub(super) fn algo_dto(a: &str) -> ChecksumAlgorithm {
    ChecksumAlgorithm::from(a.to_ascii_uppercase())
}

/// A reflected CRC with init = xorout = all ones (CRC-32, CRC-32C, CRC-64/NVME): width and
/// reflected polynomial.
pub(super) fn crc_spec(algo: &str) -> Option<(u32, u64)> {
    match algo {
        "crc32" => Some((32, 0xedb8_8320)),
        "crc32c" => Some((32, 0x82f6_3b78)),
        "crc64nvme" => Some((64, 0x9a6c_9329_ac4b_c9b5)),
        _ => None,
    }
}

/// a(x) * b(x) mod p(x) over GF(2), reflected (zlib's multmodp, any width up to 64).
pub(super) fn multmodp(width: u32, poly: u64, a: u64, mut b: u64) -> u64 {
    let mut m = 1u64 << (width - 1);
    let mut p = 0u64;
    while m != 0 {
        if a & m != 0 {
            p ^= b;
            if a & (m - 1) == 0 {
                break;
            }
        }
        m >>= 1;
        b = if b & 1 != 0 { (b >> 1) ^ poly } else { b >> 1 };
    }
    p
}

/// CRC of A‖B from crc(A), crc(B) and B's length in bytes (zlib's crc32_combine).
pub(super) fn crc_combine(width: u32, poly: u64, crc_a: u64, crc_b: u64, len_b: u64) -> u64 {
    // x^(8 * len_b) mod p: square-and-multiply over x^(2^k), starting at x^8.
    let mut sq = 1u64 << (width - 2); // x^1
    for _ in 0..3 {
        sq = multmodp(width, poly, sq, sq);
    }
    let mut xn = 1u64 << (width - 1); // x^0
    let mut n = len_b;
    while n != 0 {
        if n & 1 != 0 {
            xn = multmodp(width, poly, sq, xn);
        }
        n >>= 1;
        if n != 0 {
            sq = multmodp(width, poly, sq, sq);
        }
    }
    multmodp(width, poly, xn, crc_a) ^ crc_b
}

pub(super) fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

pub(super) fn unb64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// The object checksum of a multipart upload from its parts' checksums (base64) and sizes:
/// COMPOSITE is the checksum of the concatenated raw part checksums, then `-N`; FULL_OBJECT
/// (CRCs only) is the CRC of the whole object, combined from the parts' CRCs.
pub(super) fn object_checksum(algo: &str, ctype: &str, parts: &[(String, u64)]) -> Option<String> {
    use s3s::crypto::Checksum as _;
    if ctype == FULL_OBJECT {
        let (width, poly) = crc_spec(algo)?;
        let mut acc: Option<u64> = None;
        for (v, len) in parts {
            let raw = unb64(v)?;
            let crc = match width {
                32 => u32::from_be_bytes(raw.try_into().ok()?) as u64,
                _ => u64::from_be_bytes(raw.try_into().ok()?),
            };
            acc = Some(match acc {
                None => crc,
                Some(a) => crc_combine(width, poly, a, crc, *len),
            });
        }
        let acc = acc?;
        return Some(match width {
            32 => b64(&(acc as u32).to_be_bytes()),
            _ => b64(&acc.to_be_bytes()),
        });
    }
    let mut raws = Vec::with_capacity(parts.len() * 32);
    for (v, _) in parts {
        raws.extend_from_slice(&unb64(v)?);
    }
    let sum = match algo {
        "crc32" => b64(&s3s::crypto::Crc32::checksum(&raws)),
        "crc32c" => b64(&s3s::crypto::Crc32c::checksum(&raws)),
        "sha1" => b64(&s3s::crypto::Sha1::checksum(&raws)),
        "sha256" => b64(&s3s::crypto::Sha256::checksum(&raws)),
        _ => return None,
    };
    Some(format!("{sum}-{}", parts.len()))
}

/// The checksum fields of an S3 response: `[crc32, crc32c, crc64nvme, sha1, sha256]`.
pub(super) fn checksum_fields(algo: Option<&str>, value: Option<&str>) -> [Option<String>; 5] {
    let mut out: [Option<String>; 5] = Default::default();
    if let (Some(a), Some(v)) = (algo, value) {
        if let Some(i) = super::ingest::ALGOS.iter().position(|x| *x == a) {
            out[i] = Some(v.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3s::crypto::Checksum as _;

    fn crc_of(algo: &str, data: &[u8]) -> u64 {
        match algo {
            "crc32" => u32::from_be_bytes(s3s::crypto::Crc32::checksum(data)) as u64,
            "crc32c" => u32::from_be_bytes(s3s::crypto::Crc32c::checksum(data)) as u64,
            _ => u64::from_be_bytes(s3s::crypto::Crc64Nvme::checksum(data)),
        }
    }

    #[test]
    fn crc_combine_matches_whole() {
        let data: Vec<u8> = (0..100_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
            .collect();
        for algo in ["crc32", "crc32c", "crc64nvme"] {
            let (w, p) = crc_spec(algo).unwrap();
            for cut in [0usize, 1, 7, 4096, 65_537, 99_999, 100_000] {
                let (a, b) = data.split_at(cut);
                let got = crc_combine(w, p, crc_of(algo, a), crc_of(algo, b), b.len() as u64);
                assert_eq!(got, crc_of(algo, &data), "{algo} cut {cut}");
            }
        }
    }

    #[test]
    fn object_checksums() {
        let parts: [&[u8]; 3] = [b"hello ", b"multipart ", b"world"];
        let whole: Vec<u8> = parts.concat();
        // FULL_OBJECT: the CRC of the whole object.
        let list: Vec<(String, u64)> = parts
            .iter()
            .map(|p| (b64(&s3s::crypto::Crc32::checksum(p)), p.len() as u64))
            .collect();
        assert_eq!(
            object_checksum("crc32", FULL_OBJECT, &list).unwrap(),
            b64(&s3s::crypto::Crc32::checksum(&whole))
        );
        // COMPOSITE: checksum of the raw part checksums, then -N.
        let raws: Vec<u8> = parts
            .iter()
            .flat_map(|p| s3s::crypto::Sha256::checksum(p))
            .collect();
        let list: Vec<(String, u64)> = parts
            .iter()
            .map(|p| (b64(&s3s::crypto::Sha256::checksum(p)), p.len() as u64))
            .collect();
        assert_eq!(
            object_checksum("sha256", COMPOSITE, &list).unwrap(),
            format!("{}-3", b64(&s3s::crypto::Sha256::checksum(&raws)))
        );
        assert!(object_checksum("sha256", FULL_OBJECT, &list).is_none());
        assert!(object_checksum("crc32", COMPOSITE, &[("%%%".into(), 1)]).is_none());
    }

    #[test]
    fn checksum_choices() {
        assert_eq!(
            checksum_choice(Some("CRC32"), None).unwrap(),
            (Some("crc32"), Some(COMPOSITE))
        );
        assert_eq!(
            checksum_choice(Some("crc64nvme"), None).unwrap(),
            (Some("crc64nvme"), Some(FULL_OBJECT))
        );
        assert_eq!(
            checksum_choice(Some("CRC32C"), Some("full_object")).unwrap(),
            (Some("crc32c"), Some(FULL_OBJECT))
        );
        assert!(checksum_choice(Some("SHA256"), Some("FULL_OBJECT")).is_err());
        assert!(checksum_choice(Some("CRC64NVME"), Some("COMPOSITE")).is_err());
        assert!(checksum_choice(None, Some("COMPOSITE")).is_err());
        assert!(checksum_choice(Some("MD5"), None).is_err());
        assert_eq!(checksum_choice(None, None).unwrap(), (None, None));
    }
}
