//! Erasure coding of stripes: `k` data shards and `m` parity shards, Reed-Solomon over GF(2^8)
//! (`reed-solomon-erasure` with its SIMD kernels; why not `reed-solomon-simd`, which the design
//! card names, is measured in `docs/adr/0019-erasure-coding.md`: its decode pays a fixed
//! ~0.5 ms per call, which a degraded 4 KiB GET cannot afford).
//!
//! A stripe is `k` sealed data files plus `m` parity files, all `shard_bytes` long (a data file
//! shorter than that reads as zeros past its end). The code is byte-positional: parity byte `o`
//! depends only on byte `o` of each data shard. So a degraded read decodes only the bytes it
//! needs, from the same range of `k` other shards, and encoding streams in chunks.
//!
//! This room knows shards, files and byte ranges, nothing of records or volumes' contents.
//! Its file functions block (pread/pwrite/fdatasync): they run on a shard's worker thread
//! (ADR 10), never on a core's ring.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use reed_solomon_erasure::galois_8::ReedSolomon;

use crate::error::{Error, Result};

/// Most data shards in a stripe.
pub const MAX_DATA_SHARDS: usize = 32;
/// Most parity shards in a stripe.
pub const MAX_PARITY_SHARDS: usize = 16;
/// Shard files are a multiple of this long (O_DIRECT reads of any aligned span stay inside).
pub const SHARD_ALIGN_BYTES: u64 = 4096;

/// Reed-Solomon coder for one stripe shape (`k` data + `m` parity shards).
pub struct StripeCodec {
    k: usize,
    m: usize,
    rs: ReedSolomon,
}

impl std::fmt::Debug for StripeCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StripeCodec({}+{})", self.k, self.m)
    }
}

fn codec_error(what: &str, e: reed_solomon_erasure::Error) -> Error {
    Error::Invalid(format!("erasure coding: {what}: {e:?}"))
}

fn io_error(context: String, source: std::io::Error) -> Error {
    Error::Io { context, source }
}

impl StripeCodec {
    /// A coder for `k` data and `m` parity shards (1 ≤ k ≤ 32, 1 ≤ m ≤ 16).
    pub fn new(k: usize, m: usize) -> Result<StripeCodec> {
        if !(1..=MAX_DATA_SHARDS).contains(&k) || !(1..=MAX_PARITY_SHARDS).contains(&m) {
            return Err(Error::Invalid(format!(
                "erasure coding {k}+{m}: data shards must be 1..={MAX_DATA_SHARDS} and parity \
                 shards 1..={MAX_PARITY_SHARDS}"
            )));
        }
        let rs = ReedSolomon::new(k, m).map_err(|e| codec_error("stripe shape", e))?;
        Ok(StripeCodec { k, m, rs })
    }

    /// Data shards.
    pub fn data_shards(&self) -> usize {
        self.k
    }

    /// Parity shards.
    pub fn parity_shards(&self) -> usize {
        self.m
    }

    /// Compute the `m` parity ranges of `k` data ranges (all the same length, taken at the same
    /// offset of each shard).
    pub fn encode(&self, data: &[&[u8]], parity: &mut [&mut [u8]]) -> Result<()> {
        assert_eq!(data.len(), self.k, "one range per data shard");
        assert_eq!(parity.len(), self.m, "one range per parity shard");
        let len = data[0].len();
        assert!(
            data.iter().all(|d| d.len() == len),
            "data ranges differ in length"
        );
        assert!(
            parity.iter().all(|p| p.len() == len),
            "parity ranges differ in length"
        );
        if len == 0 {
            return Ok(());
        }
        self.rs
            .encode_sep(data, parity)
            .map_err(|e| codec_error("encode", e))
    }

    /// Reconstruct shard `want` (data `0..k`, parity `k..k+m`) over one range in place:
    /// `shards[i]` holds shard `i`'s range where `present[i]`, and is overwritten for lost ones
    /// (at least `k` must be present; all ranges the same length).
    pub fn reconstruct(
        &self,
        shards: &mut [&mut [u8]],
        present: &[bool],
        want: usize,
    ) -> Result<()> {
        assert_eq!(
            shards.len(),
            self.k + self.m,
            "one slot per shard of the stripe"
        );
        assert_eq!(present.len(), shards.len());
        assert!(want < self.k + self.m);
        let len = shards[0].len();
        assert!(
            shards.iter().all(|s| s.len() == len),
            "ranges differ in length"
        );
        let have = present.iter().filter(|p| **p).count();
        if have < self.k {
            return Err(Error::Corrupt {
                context: format!(
                    "erasure coding {}+{}: {have} shards left, {} needed to decode",
                    self.k, self.m, self.k
                ),
            });
        }
        if present[want] || len == 0 {
            return Ok(());
        }
        let mut slots: Vec<(&mut [u8], bool)> = shards
            .iter_mut()
            .zip(present)
            .map(|(s, p)| (&mut **s, *p))
            .collect();
        if want < self.k {
            self.rs.reconstruct_data(&mut slots)
        } else {
            self.rs.reconstruct(&mut slots)
        }
        .map_err(|e| codec_error("decode", e))
    }
}

/// Read `buf.len()` bytes at `offset`; bytes past the end of the file read as zeros.
fn read_padded(file: &File, path: &Path, offset: u64, buf: &mut [u8]) -> Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => {
                buf[done..].fill(0);
                break;
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(io_error(
                    format!("{}: read {} bytes at {offset}", path.display(), buf.len()),
                    e,
                ))
            }
        }
    }
    Ok(())
}

fn open_read(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| io_error(format!("{}: open", path.display()), e))
}

/// What encoding or rebuilding a stripe took.
#[derive(Debug, Clone, Copy, Default)]
pub struct StripeReport {
    /// Bytes read from the shards read.
    pub read_bytes: u64,
    /// Bytes written to the shards written.
    pub written_bytes: u64,
    pub elapsed: Duration,
}

/// Chunk size of file-level encoding, rebuild and verification.
pub const STRIPE_CHUNK_BYTES: usize = 1 << 20;

/// The length of every shard of a stripe whose longest data file is `bytes` long.
pub fn shard_bytes_for(bytes: u64) -> u64 {
    bytes.div_ceil(SHARD_ALIGN_BYTES).max(1) * SHARD_ALIGN_BYTES
}

/// Write the `m` parity files of the stripe made of `data` files (each zero-padded to
/// `shard_bytes`, a multiple of `SHARD_ALIGN_BYTES`), and make them durable (fdatasync)
/// before returning. Parity files are created or truncated.
pub fn encode_files(
    codec: &StripeCodec,
    data: &[&Path],
    parity: &[&Path],
    shard_bytes: u64,
) -> Result<StripeReport> {
    assert_eq!(data.len(), codec.k);
    assert_eq!(parity.len(), codec.m);
    assert_eq!(shard_bytes % SHARD_ALIGN_BYTES, 0);
    let t0 = Instant::now();
    let inputs = data
        .iter()
        .map(|p| open_read(p))
        .collect::<Result<Vec<_>>>()?;
    let outputs = parity
        .iter()
        .map(|p| create_shard_file(p, shard_bytes))
        .collect::<Result<Vec<_>>>()?;
    let mut dbufs = vec![vec![0u8; STRIPE_CHUNK_BYTES]; codec.k];
    let mut pbufs = vec![vec![0u8; STRIPE_CHUNK_BYTES]; codec.m];
    let mut report = StripeReport::default();
    let mut offset = 0u64;
    while offset < shard_bytes {
        let n = (shard_bytes - offset).min(STRIPE_CHUNK_BYTES as u64) as usize;
        for ((f, p), b) in inputs.iter().zip(data).zip(dbufs.iter_mut()) {
            read_padded(f, p, offset, &mut b[..n])?;
        }
        let drefs: Vec<&[u8]> = dbufs.iter().map(|b| &b[..n]).collect();
        let mut prefs: Vec<&mut [u8]> = pbufs.iter_mut().map(|b| &mut b[..n]).collect();
        codec.encode(&drefs, &mut prefs)?;
        for ((f, p), b) in outputs.iter().zip(parity).zip(pbufs.iter()) {
            f.write_all_at(&b[..n], offset).map_err(|e| {
                io_error(format!("{}: write {n} bytes at {offset}", p.display()), e)
            })?;
        }
        report.read_bytes += (n * codec.k) as u64;
        report.written_bytes += (n * codec.m) as u64;
        offset += n as u64;
    }
    for (f, p) in outputs.iter().zip(parity) {
        f.sync_data()
            .map_err(|e| io_error(format!("{}: fdatasync", p.display()), e))?;
    }
    report.elapsed = t0.elapsed();
    Ok(report)
}

fn create_shard_file(path: &Path, shard_bytes: u64) -> Result<File> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| io_error(format!("{}: create", path.display()), e))?;
    f.set_len(shard_bytes)
        .map_err(|e| io_error(format!("{}: set length {shard_bytes}", path.display()), e))?;
    Ok(f)
}

/// Read the same range of `k` present shards (other than `skip`) into `bufs`; returns which
/// slots were filled.
fn read_sources(
    codec: &StripeCodec,
    shards: &[Option<(&Path, &File)>],
    skip: usize,
    offset: u64,
    bufs: &mut [&mut [u8]],
) -> Result<Vec<bool>> {
    let mut present = vec![false; shards.len()];
    let mut got = 0;
    for (i, s) in shards.iter().enumerate() {
        if got == codec.k {
            break;
        }
        if let (Some((p, f)), true) = (s, i != skip) {
            read_padded(f, p, offset, bufs[i])?;
            present[i] = true;
            got += 1;
        }
    }
    if got < codec.k {
        return Err(Error::Corrupt {
            context: format!(
                "erasure coding {}+{}: shard {skip} lost and only {got} others readable, {} \
                 needed",
                codec.k, codec.m, codec.k
            ),
        });
    }
    Ok(present)
}

fn open_shards<'a>(shards: &[Option<&'a Path>]) -> Result<Vec<Option<(&'a Path, File)>>> {
    shards
        .iter()
        .map(|s| s.map(|p| open_read(p).map(|f| (p, f))).transpose())
        .collect()
}

/// Read `[offset, offset+len)` of shard `want` of a stripe whose shard files are `shards`
/// (`None` = lost), decoding from the same range of `k` others when `want` is lost.
pub fn read_range(
    codec: &StripeCodec,
    shards: &[Option<&Path>],
    want: usize,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>> {
    assert_eq!(shards.len(), codec.k + codec.m);
    let n = len as usize;
    if let Some(p) = shards[want] {
        let mut out = vec![0u8; n];
        read_padded(&open_read(p)?, p, offset, &mut out)?;
        return Ok(out);
    }
    let files = open_shards(shards)?;
    let views: Vec<Option<(&Path, &File)>> = files
        .iter()
        .map(|s| s.as_ref().map(|(p, f)| (*p, f)))
        .collect();
    let mut bufs = vec![vec![0u8; n]; shards.len()];
    let mut refs: Vec<&mut [u8]> = bufs.iter_mut().map(|b| b.as_mut_slice()).collect();
    let present = read_sources(codec, &views, want, offset, &mut refs)?;
    codec.reconstruct(&mut refs, &present, want)?;
    Ok(std::mem::take(&mut bufs[want]))
}

/// Rebuild lost shard `want` into `out` (created or truncated, `shard_bytes` long, made
/// durable) from the shards present, writing at most `rate_bytes_per_s` (0 = unbounded),
/// calling `progress(done_bytes, shard_bytes)` after each chunk.
pub fn rebuild_file(
    codec: &StripeCodec,
    shards: &[Option<&Path>],
    want: usize,
    out: &Path,
    shard_bytes: u64,
    rate_bytes_per_s: u64,
    mut progress: impl FnMut(u64, u64),
) -> Result<StripeReport> {
    assert_eq!(shards.len(), codec.k + codec.m);
    assert_eq!(shard_bytes % SHARD_ALIGN_BYTES, 0);
    let t0 = Instant::now();
    let files = open_shards(shards)?;
    let views: Vec<Option<(&Path, &File)>> = files
        .iter()
        .enumerate()
        .map(|(i, s)| s.as_ref().filter(|_| i != want).map(|(p, f)| (*p, f)))
        .collect();
    let target = create_shard_file(out, shard_bytes)?;
    let mut bufs = vec![vec![0u8; STRIPE_CHUNK_BYTES]; shards.len()];
    let mut report = StripeReport::default();
    let mut offset = 0u64;
    while offset < shard_bytes {
        let n = (shard_bytes - offset).min(STRIPE_CHUNK_BYTES as u64) as usize;
        let mut refs: Vec<&mut [u8]> = bufs.iter_mut().map(|b| &mut b[..n]).collect();
        let present = read_sources(codec, &views, want, offset, &mut refs)?;
        codec.reconstruct(&mut refs, &present, want)?;
        target
            .write_all_at(refs[want], offset)
            .map_err(|e| io_error(format!("{}: write at {offset}", out.display()), e))?;
        report.read_bytes += (n * codec.k) as u64;
        report.written_bytes += n as u64;
        offset += n as u64;
        progress(offset, shard_bytes);
        if rate_bytes_per_s > 0 {
            let due =
                Duration::from_secs_f64(report.written_bytes as f64 / rate_bytes_per_s as f64);
            if let Some(wait) = due.checked_sub(t0.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    target
        .sync_data()
        .map_err(|e| io_error(format!("{}: fdatasync", out.display()), e))?;
    report.elapsed = t0.elapsed();
    Ok(report)
}

/// Check the parity of a whole stripe: the chunks (offset, length) whose parity does not match
/// the data (what the scrubber reports). Every shard must be present.
pub fn verify_files(
    codec: &StripeCodec,
    shards: &[&Path],
    shard_bytes: u64,
) -> Result<Vec<(u64, u64)>> {
    assert_eq!(shards.len(), codec.k + codec.m);
    let files = shards
        .iter()
        .map(|p| open_read(p))
        .collect::<Result<Vec<_>>>()?;
    let mut bufs = vec![vec![0u8; STRIPE_CHUNK_BYTES]; shards.len()];
    let mut expect = vec![vec![0u8; STRIPE_CHUNK_BYTES]; codec.m];
    let mut bad = Vec::new();
    let mut offset = 0u64;
    while offset < shard_bytes {
        let n = (shard_bytes - offset).min(STRIPE_CHUNK_BYTES as u64) as usize;
        for ((f, p), b) in files.iter().zip(shards).zip(bufs.iter_mut()) {
            read_padded(f, p, offset, &mut b[..n])?;
        }
        let drefs: Vec<&[u8]> = bufs[..codec.k].iter().map(|b| &b[..n]).collect();
        let mut prefs: Vec<&mut [u8]> = expect.iter_mut().map(|b| &mut b[..n]).collect();
        codec.encode(&drefs, &mut prefs)?;
        if (0..codec.m).any(|j| expect[j][..n] != bufs[codec.k + j][..n]) {
            bad.push((offset, n as u64));
        }
        offset += n as u64;
    }
    Ok(bad)
}

#[cfg(test)]
mod tests;
