//! Fuzz targets for the server library's byte parsers. Each target panics when a property
//! breaks; the return value is an outcome class for the stable driver's feedback (src/driver.rs).
//!
//! - `chunked`: `bale::chunked::ChunkScanner`, the aws-chunked framing guard in front of s3s.
//!   Fed whole, byte by byte and in random pieces it must give the same verdict, and that verdict
//!   must equal an independent reference reading of the framing (chunk header line at most 1024
//!   bytes, 1..=16 hex digits, declared size at most 16 MiB, CRLF after each chunk's data).
//! - `objmeta`: `bale::s3::meta::ObjMeta::decode` on arbitrary bytes: no panic, and whatever
//!   decodes re-encodes and decodes to the same value.
//! - `objmeta_roundtrip`: an `ObjMeta` built from the input encodes and decodes to itself.
//! - `bucket_name`: every name `valid_bucket_name` accepts is 3..=63 bytes of [a-z0-9.-], a single
//!   plain path component (never `.`, `..`, or containing `/` or NUL), so it can never address a
//!   filesystem path outside where it is put, and cannot collide by case.
//! - `keys_file`: `bale::keys::parse_keys_file` (the `--keys-file` TOML) on arbitrary bytes: no
//!   panic, errors are one line, and every accepted key is within the documented bounds (access
//!   key 3..=128 of [A-Za-z0-9._-], secret 8..=128 printable ASCII, at most 1,000 keys and 100
//!   bucket patterns, each a bucket name or prefix of [a-z0-9.-]).

use bale::chunked::{ChunkError, ChunkScanner, MAX_CHUNK_BYTES, MAX_CHUNK_HEADER_BYTES};
use bale::s3::meta::ObjMeta;

fn class(parts: &[u64]) -> u64 {
    parts
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, p| (h ^ p).wrapping_mul(0x100_0000_01b3))
}

fn feed_pieces(body: &[u8], mut piece: impl FnMut() -> usize) -> Result<(), ChunkError> {
    let mut s = ChunkScanner::new();
    let mut rest = body;
    while !rest.is_empty() {
        let n = piece().clamp(1, rest.len());
        s.feed(&rest[..n])?;
        rest = &rest[n..];
    }
    Ok(())
}

/// Independent reading of the aws-chunked framing, for the whole body at once. `Ok` means
/// "nothing wrong so far" (a body that stops mid-chunk is not an error for the guard).
pub fn chunked_reference(b: &[u8]) -> Result<(), ChunkError> {
    let mut pos = 0usize;
    loop {
        if pos == b.len() {
            return Ok(());
        }
        let Some(nl) = b[pos..].iter().position(|c| *c == b'\n') else {
            return if b.len() - pos > MAX_CHUNK_HEADER_BYTES {
                Err(ChunkError::Malformed)
            } else {
                Ok(())
            };
        };
        let line = &b[pos..pos + nl + 1];
        if line.len() > MAX_CHUNK_HEADER_BYTES {
            return Err(ChunkError::Malformed);
        }
        if line.len() < 2 || line[line.len() - 2] != b'\r' {
            return Err(ChunkError::Malformed);
        }
        let text = &line[..line.len() - 2];
        let hex = match text.iter().position(|c| *c == b';') {
            Some(i) => &text[..i],
            None => text,
        };
        if hex.is_empty() || hex.len() > 16 || !hex.iter().all(|c| c.is_ascii_hexdigit()) {
            return Err(ChunkError::Malformed);
        }
        let size = u64::from_str_radix(std::str::from_utf8(hex).unwrap(), 16).unwrap();
        if size > MAX_CHUNK_BYTES {
            return Err(ChunkError::TooLarge(size));
        }
        if size == 0 {
            return Ok(()); // final chunk; trailers are not scanned
        }
        pos += nl + 1;
        if ((b.len() - pos) as u64) < size {
            return Ok(());
        }
        pos += size as usize;
        for want in [b'\r', b'\n'] {
            if pos == b.len() {
                return Ok(());
            }
            if b[pos] != want {
                return Err(ChunkError::Malformed);
            }
            pos += 1;
        }
    }
}

/// Byte 0 seeds the piece sizes; the rest is the body.
pub fn chunked(data: &[u8]) -> u64 {
    let Some((&seed, body)) = data.split_first() else {
        return 0;
    };
    let mut whole = ChunkScanner::new();
    let r_whole = whole.feed(body);
    let r_bytes = feed_pieces(body, || 1);
    let mut x = seed as u64 | 1;
    let r_pieces = feed_pieces(body, || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % 70) as usize + 1
    });
    assert_eq!(r_whole, r_bytes, "whole vs byte-by-byte verdicts differ");
    assert_eq!(r_whole, r_pieces, "whole vs random pieces verdicts differ");
    let r_ref = chunked_reference(body);
    assert_eq!(r_whole, r_ref, "scanner and reference disagree");
    // an error must be sticky for a well-behaved caller: GuardedBody stops at the first one
    match r_whole {
        Ok(()) => class(&[0, body.len().min(3) as u64]),
        Err(ChunkError::Malformed) => class(&[1]),
        Err(ChunkError::TooLarge(n)) => class(&[2, (n == u64::MAX) as u64]),
    }
}

pub fn objmeta(data: &[u8]) -> u64 {
    match ObjMeta::decode(data) {
        Some(m) => {
            let enc = m.encode().expect("a decoded ObjMeta must encode");
            let again = ObjMeta::decode(&enc).expect("an encoded ObjMeta must decode");
            assert_eq!(m, again, "decode(encode(decode(x))) != decode(x)");
            class(&[
                1,
                m.user.len().min(3) as u64,
                m.checksums.len().min(3) as u64,
                m.parts_count.is_some() as u64,
                m.content_type.is_some() as u64,
            ])
        }
        None => class(&[2, data.first().copied().unwrap_or(0).min(2) as u64]),
    }
}

/// Input: fields separated by 0xff; strings are lossy UTF-8. Checksum algorithm names lose any
/// ':' (the server only ever stores fixed names: crc32, crc32c, crc64nvme, sha1, sha256).
pub fn objmeta_roundtrip(data: &[u8]) -> u64 {
    let mut f = data
        .split(|b| *b == 0xff)
        .map(|s| String::from_utf8_lossy(s).into_owned());
    let mut next = || f.next();
    let opt = |s: Option<String>| s.filter(|s| !s.starts_with('-'));
    let mut m = ObjMeta {
        etag: next().unwrap_or_default(),
        content_type: opt(next()),
        content_encoding: opt(next()),
        content_language: opt(next()),
        content_disposition: opt(next()),
        cache_control: opt(next()),
        expires: opt(next()),
        checksum_type: opt(next()),
        parts_count: next().and_then(|s| s.parse().ok()),
        ..Default::default()
    };
    while let Some(k) = next() {
        match k.as_bytes().first() {
            Some(b'#') => {
                let v = next().unwrap_or_default();
                m.checksums.push((k[1..].replace(':', ""), v));
            }
            _ => {
                let v = next().unwrap_or_default();
                m.user.push((k, v));
            }
        }
    }
    match m.encode() {
        Ok(enc) => {
            let back = ObjMeta::decode(&enc).expect("encoded ObjMeta must decode");
            assert_eq!(back, m, "ObjMeta does not survive encode/decode");
            class(&[1, m.user.len().min(4) as u64, m.checksums.len().min(4) as u64])
        }
        Err(_) => class(&[2]),
    }
}

pub fn bucket_name(data: &[u8]) -> u64 {
    let Ok(name) = std::str::from_utf8(data) else {
        return 0;
    };
    let ok = bale::buckets::valid_bucket_name(name);
    if ok {
        assert!((3..=63).contains(&name.len()), "accepted length {}", name.len());
        assert!(
            name.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-'),
            "accepted a character outside [a-z0-9.-]: {name:?}"
        );
        assert!(name != "." && name != "..", "accepted a dot name");
        let comps: Vec<_> = std::path::Path::new(name).components().collect();
        assert!(
            matches!(comps.as_slice(), [std::path::Component::Normal(c)] if *c == std::ffi::OsStr::new(name)),
            "accepted name is not a single plain path component: {name:?}"
        );
        assert!(!name.contains(".."), "accepted '..' inside a name: {name:?}");
        assert!(name.parse::<std::net::Ipv4Addr>().is_err(), "accepted an IPv4 address: {name:?}");
    }
    class(&[
        ok as u64,
        name.len().min(70) as u64 / 10,
        name.bytes().next().map(|c| c.is_ascii_alphanumeric() as u64).unwrap_or(9),
    ])
}

pub fn keys_file(data: &[u8]) -> u64 {
    use bale::keys::{self, BucketPattern};
    match keys::parse_keys_file(data) {
        Err(e) => {
            assert!(!e.contains('\n'), "a multi-line error: {e:?}");
            class(&[0, e.len().min(200) as u64 / 20])
        }
        Ok(ks) => {
            assert!(ks.len() <= keys::MAX_KEYS);
            for k in &ks {
                assert!(keys::ACCESS_KEY_CHARS.contains(&k.access_key.len()));
                assert!(k
                    .access_key
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-')));
                assert!(keys::SECRET_KEY_CHARS.contains(&k.secret_key.len()));
                assert!(k.secret_key.bytes().all(|c| c.is_ascii_graphic()));
                for p in k.buckets.iter().flatten() {
                    let (BucketPattern::Exact(n) | BucketPattern::Prefix(n)) = p;
                    assert!(n.len() < keys::MAX_PATTERN_CHARS);
                    assert!(n
                        .bytes()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'-')));
                    assert!(matches!(p, BucketPattern::Prefix(_)) || !n.is_empty());
                }
                assert!(k.buckets.as_ref().is_none_or(|b| !b.is_empty() && b.len() <= keys::MAX_BUCKET_PATTERNS));
            }
            class(&[1, ks.len().min(10) as u64, ks.iter().filter(|k| k.buckets.is_some()).count().min(10) as u64])
        }
    }
}
