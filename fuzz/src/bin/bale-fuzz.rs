//! Stable driver over the server-library targets. `bale-fuzz --help`.

#[allow(dead_code)]
#[path = "../driver.rs"]
mod driver;

#[global_allocator]
static ALLOC: driver::PeakAlloc = driver::PeakAlloc;

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let targets = [
        driver::Target { name: "chunked", run: bale_fuzz::chunked, generate: gen::chunked },
        driver::Target { name: "objmeta", run: bale_fuzz::objmeta, generate: gen::objmeta },
        driver::Target { name: "objmeta_roundtrip", run: bale_fuzz::objmeta_roundtrip, generate: gen::objmeta_roundtrip },
        driver::Target { name: "bucket_name", run: bale_fuzz::bucket_name, generate: gen::bucket_name },
        driver::Target { name: "keys_file", run: bale_fuzz::keys_file, generate: gen::keys_file },
    ];
    driver::main_with(&targets, root);
}

mod gen {
    use super::driver::Rng;
    use bale::s3::meta::ObjMeta;

    pub fn chunked(rng: &mut Rng) -> Vec<u8> {
        let mut out = vec![rng.next() as u8];
        let sig = || "chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648";
        for _ in 0..rng.size(5) {
            let size: u64 = match rng.below(6) {
                0 => rng.below(64) as u64,
                1 => 16 << 20,
                2 => (16 << 20) + 1,
                3 => rng.interesting_u64(),
                _ => rng.below(300) as u64 + 1,
            };
            let hex = if rng.chance(2) { format!("{size:x}") } else { format!("{size:X}") };
            out.extend_from_slice(hex.as_bytes());
            if !rng.chance(4) {
                out.push(b';');
                out.extend_from_slice(sig().as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            let n = (size as usize).min(600);
            out.extend(rng.bytes(n));
            if n as u64 == size {
                out.extend_from_slice(b"\r\n");
            }
        }
        if rng.chance(2) {
            out.extend_from_slice(format!("0;{}\r\n", sig()).as_bytes());
            if rng.chance(2) {
                out.extend_from_slice(b"x-amz-checksum-crc32:AAAAAA==\r\n");
            }
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    fn meta(rng: &mut Rng) -> ObjMeta {
        let o = |rng: &mut Rng, m: usize| if rng.chance(2) { Some(rng.string(m)) } else { None };
        ObjMeta {
            etag: rng.string(40),
            content_type: o(rng, 30),
            content_encoding: o(rng, 10),
            content_language: o(rng, 10),
            content_disposition: o(rng, 30),
            cache_control: o(rng, 20),
            expires: o(rng, 30),
            user: { let n = rng.size(3); (0..n).map(|_| (rng.string(10), rng.string(20))).collect() },
            checksums: { let n = rng.size(2); (0..n).map(|_| (["crc32", "crc32c", "sha256"][rng.below(3)].to_string(), rng.string(44))).collect() },
            checksum_type: o(rng, 10),
            checksum_algorithm: o(rng, 10),
            parts_count: if rng.chance(2) { Some(rng.next() as u32) } else { None },
        }
    }

    pub fn objmeta(rng: &mut Rng) -> Vec<u8> {
        meta(rng).encode().unwrap().to_vec()
    }

    pub fn objmeta_roundtrip(rng: &mut Rng) -> Vec<u8> {
        let n = rng.size(14);
        let mut out = Vec::new();
        for i in 0..n {
            if i > 0 {
                out.push(0xff);
            }
            let s = rng.string(20);
            out.extend_from_slice(s.as_bytes());
        }
        out
    }

    pub fn bucket_name(rng: &mut Rng) -> Vec<u8> {
        const A: &[u8] = b"abcxyz0189.-";
        let n = rng.size(70);
        let mut s: Vec<u8> = (0..n).map(|_| A[rng.below(A.len())]).collect();
        if rng.chance(8) {
            s = [&b"xn--"[..], b"sthree-", b"192.168.1.1", b"..", b".", b"a/b", b"A-b"][rng.below(7)].to_vec();
        }
        s
    }

    pub fn keys_file(rng: &mut Rng) -> Vec<u8> {
        const FIELDS: &[&str] = &["access_key", "secret_key", "access", "buckets", "extra"];
        const VALUES: &[&str] = &[
            "\"reader\"", "\"ab\"", "\"a/b\"", "\"reader-secret-1\"", "\"short\"", "\"read-only\"",
            "\"read-write\"", "\"admin\"", "[\"logs\", \"team-*\"]", "[\"*\"]", "[]", "[\"A*b\"]", "1",
            "true", "[1]", "{ a = 1 }", "\"\\u00e9\u{e9}\"",
        ];
        let mut out = String::new();
        for i in 0..rng.size(6) {
            out.push_str(if rng.chance(10) { "[keys]\n" } else { "[[keys]]\n" });
            for _ in 0..rng.size(5) {
                let f = FIELDS[rng.below(FIELDS.len())];
                let v = if rng.chance(6) { format!("\"k{i}{}\"", rng.string(8)) } else { VALUES[rng.below(VALUES.len())].to_string() };
                out.push_str(&format!("{f} = {v}\n"));
            }
        }
        if rng.chance(8) {
            out.push_str("other = 1\n");
        }
        out.into_bytes()
    }
}
