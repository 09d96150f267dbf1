//! Deterministic object contents: every byte of an object is a function of its key and offset,
//! so any range of any object can be regenerated and checked without storing anything.
//!
//! Byte `o` of object `key` is byte `o % 8` (little endian) of `mix(seed(key) ^ (o / 8) * K)`,
//! where `mix` is the SplitMix64 finaliser and `seed` is FNV-1a 64 of the key bytes. It costs a
//! few instructions per 8 bytes, so verification runs at several GB/s and never limits a run.

/// FNV-1a 64 of the key, finalised, used as the content seed.
pub fn key_seed(key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key.as_bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

#[inline(always)]
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[inline(always)]
fn word(seed: u64, idx: u64) -> u64 {
    mix(seed ^ idx.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// Fill `out` with the object's bytes starting at `offset`.
pub fn fill(seed: u64, offset: u64, out: &mut [u8]) {
    let mut pos = offset;
    let mut i = 0;
    // leading partial word
    while i < out.len() && !pos.is_multiple_of(8) {
        out[i] = word(seed, pos / 8).to_le_bytes()[(pos % 8) as usize];
        i += 1;
        pos += 1;
    }
    let mut chunks = out[i..].chunks_exact_mut(8);
    let mut w = pos / 8;
    for c in &mut chunks {
        c.copy_from_slice(&word(seed, w).to_le_bytes());
        w += 1;
    }
    let rem = chunks.into_remainder();
    if !rem.is_empty() {
        let b = word(seed, w).to_le_bytes();
        rem.copy_from_slice(&b[..rem.len()]);
    }
}

/// Checks a streamed body against the expected bytes, chunk by chunk.
pub struct Verifier {
    seed: u64,
    start: u64,
    pos: u64,
    /// Offset (from the start of the object) of the first mismatch, if any.
    pub mismatch: Option<u64>,
}

impl Verifier {
    pub fn new(key: &str, offset: u64) -> Self {
        Verifier {
            seed: key_seed(key),
            start: offset,
            pos: offset,
            mismatch: None,
        }
    }

    /// Bytes seen so far.
    pub fn seen(&self) -> u64 {
        self.pos - self.start
    }

    pub fn feed(&mut self, mut data: &[u8]) {
        if self.mismatch.is_some() {
            self.pos += data.len() as u64;
            return;
        }
        // leading partial word, byte by byte
        while !data.is_empty() && !self.pos.is_multiple_of(8) {
            let exp = word(self.seed, self.pos / 8).to_le_bytes()[(self.pos % 8) as usize];
            if data[0] != exp {
                self.mismatch = Some(self.pos);
                self.pos += data.len() as u64;
                return;
            }
            data = &data[1..];
            self.pos += 1;
        }
        if data.is_empty() {
            return;
        }
        let mut w = self.pos / 8;
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            let got = u64::from_le_bytes(c.try_into().unwrap());
            if got != word(self.seed, w) {
                let exp = word(self.seed, w).to_le_bytes();
                let k = c
                    .iter()
                    .zip(exp.iter())
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                self.mismatch = Some(w * 8 + k as u64);
                self.pos += data.len() as u64;
                return;
            }
            w += 1;
        }
        self.pos = w * 8;
        let rem = chunks.remainder();
        if !rem.is_empty() {
            let exp = word(self.seed, w).to_le_bytes();
            for (k, b) in rem.iter().enumerate() {
                if *b != exp[k] {
                    self.mismatch = Some(self.pos + k as u64);
                    break;
                }
            }
            self.pos += rem.len() as u64;
        }
    }
}

/// Parse sizes like `4096`, `4k`, `64KiB`, `1m`, `16MiB`, `1g` (binary units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.trim_end_matches("ib").trim_end_matches('b');
    let (num, mul) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let v: f64 = num.parse().map_err(|_| format!("bad size {s:?}"))?;
    if v < 0.0 {
        return Err(format!("bad size {s:?}"));
    }
    Ok((v * mul as f64) as u64)
}

pub fn fmt_size(n: u64) -> String {
    if n >= 1 << 30 && n.is_multiple_of(1 << 30) {
        format!("{}GiB", n >> 30)
    } else if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{}MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{}KiB", n >> 10)
    } else {
        format!("{n}B")
    }
}

/// A small fast PRNG (SplitMix64 stream) for key and offset choice.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(mix(seed ^ 0x5851_f42d_4c95_7f2d))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }
    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Zipf(s) over [0, n): precomputed CDF, binary search per draw.
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: u64, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n as usize);
        let mut acc = 0.0;
        for i in 1..=n {
            acc += 1.0 / (i as f64).powf(s);
            cdf.push(acc);
        }
        for v in &mut cdf {
            *v /= acc;
        }
        Zipf { cdf }
    }
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        let u = rng.unit();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_offset_regenerates() {
        let seed = key_seed("a/b/c");
        let mut whole = vec![0u8; 1000];
        fill(seed, 0, &mut whole);
        for off in [0usize, 1, 7, 8, 9, 63, 500] {
            for len in [0usize, 1, 5, 8, 17, 300] {
                let mut part = vec![0u8; len];
                fill(seed, off as u64, &mut part);
                assert_eq!(&part[..], &whole[off..off + len]);
                let mut v = Verifier::new("a/b/c", off as u64);
                // feed in odd pieces
                for piece in whole[off..off + len].chunks(3) {
                    v.feed(piece);
                }
                assert_eq!(v.mismatch, None);
                assert_eq!(v.seen(), len as u64);
            }
        }
    }

    #[test]
    fn mismatch_found_at_its_offset() {
        let mut buf = vec![0u8; 100];
        fill(key_seed("k"), 10, &mut buf);
        buf[37] ^= 1;
        let mut v = Verifier::new("k", 10);
        v.feed(&buf[..20]);
        v.feed(&buf[20..]);
        assert_eq!(v.mismatch, Some(47));
        let mut v = Verifier::new("other", 10);
        v.feed(&buf);
        assert!(v.mismatch.is_some());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4k").unwrap(), 4096);
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("16m").unwrap(), 16 << 20);
        assert_eq!(parse_size("123").unwrap(), 123);
        assert_eq!(fmt_size(4096), "4KiB");
        assert_eq!(fmt_size(1 << 20), "1MiB");
    }

    #[test]
    fn zipf_skews_to_low_ranks() {
        let z = Zipf::new(1000, 1.0);
        let mut r = Rng::new(1);
        let mut low = 0;
        for _ in 0..10000 {
            if z.sample(&mut r) < 10 {
                low += 1;
            }
        }
        assert!(low > 3000, "{low}");
    }
}
