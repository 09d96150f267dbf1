//! Stripes (ADR 19, erasure coding): `k` sealed volumes of one shard and `m` parity files,
//! spread over `k + m` data directories, described by a manifest. This room holds the manifest
//! format, the blocking file work (encode, recover at open, rebuild of lost files) that runs
//! on the shard's worker thread or at open, and the degraded read of one aligned span. The
//! shard's encoding passes, scrub and member reads while serving are `striping`'s room.
//!
//! Positions are relative to the shard's home directory: the shard's directory at position
//! `p` is `dirs[p]` (`(home + p) mod n` of the set; `None` when that directory failed).
//! Positions `0..=m` hold the shard's copies (journal, snapshot, open volumes). A stripe's
//! member `j` (a volume, `vol-NNNNNNNN.dat`) lives at position `j`, its parity `i`
//! (`parity-SSSSSSSS-I.dat`) at position `k + i`. The manifest (`stripe-SSSSSSSS.ec`) is kept
//! in every copy directory (positions `0..=m`), like the journal. Byte layouts: io/FORMAT.md,
//! "Stripes".

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use super::space::VolFile;

use crate::ec::{self, StripeCodec};
use crate::error::{Error, Result};

/// Manifest magic.
pub(crate) const MANIFEST_MAGIC: &[u8; 8] = b"BALESTRP";
/// Manifest format version.
pub(crate) const MANIFEST_VERSION: u32 = 1;
/// Fixed bytes before the members: magic, version, stripe id, k, m, reserved, shard_bytes.
const MANIFEST_HEAD_BYTES: usize = 28;
/// Suffix of every temporary file of this room (removed at open).
const TMP_SUFFIX: &str = ".ec-tmp";

/// How a shard's stripes are spread: the codec shape and the shard's directory at each
/// position (`k + m` of them; `None`: failed).
#[derive(Debug, Clone)]
pub struct StripeLayout {
    pub k: usize,
    pub m: usize,
    pub dirs: Vec<Option<PathBuf>>,
    /// Rebuild of lost stripe files at open, bytes per second (0: unbounded).
    pub rebuild_rate_bytes_per_s: u64,
}

/// One stripe as its manifest records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub(crate) stripe_id: u32,
    pub(crate) k: u8,
    pub(crate) m: u8,
    pub(crate) shard_bytes: u64,
    /// Member volumes in stripe order: (volume id, bytes of its file when encoded).
    pub(crate) members: Vec<(u32, u64)>,
    /// Position of each stripe file (members, then parity), relative to the shard's home.
    pub(crate) positions: Vec<u8>,
}

impl Manifest {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(MANIFEST_HEAD_BYTES + self.members.len() * 12 + 64);
        b.extend_from_slice(MANIFEST_MAGIC);
        b.extend_from_slice(&MANIFEST_VERSION.to_le_bytes());
        b.extend_from_slice(&self.stripe_id.to_le_bytes());
        b.push(self.k);
        b.push(self.m);
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&self.shard_bytes.to_le_bytes());
        for (id, len) in &self.members {
            b.extend_from_slice(&id.to_le_bytes());
            b.extend_from_slice(&len.to_le_bytes());
        }
        b.extend_from_slice(&self.positions);
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8]) -> std::result::Result<Manifest, String> {
        if b.len() < MANIFEST_HEAD_BYTES + 4 || &b[..8] != MANIFEST_MAGIC {
            return Err("not a stripe manifest (magic)".into());
        }
        let (body, crc) = b.split_at(b.len() - 4);
        if crc32c::crc32c(body).to_le_bytes() != crc {
            return Err("stripe manifest CRC mismatch".into());
        }
        let u32_at = |o: usize| u32::from_le_bytes(body[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_le_bytes(body[o..o + 8].try_into().expect("8 bytes"));
        let version = u32_at(8);
        if version != MANIFEST_VERSION {
            return Err(format!("stripe manifest version {version}"));
        }
        let (k, m) = (body[16], body[17]);
        if k == 0 || m == 0 {
            return Err(format!("stripe manifest shape {k}+{m}"));
        }
        let want = MANIFEST_HEAD_BYTES + k as usize * 12 + (k as usize + m as usize);
        if body.len() != want {
            return Err(format!(
                "stripe manifest of {} bytes, {want} for {k}+{m}",
                body.len()
            ));
        }
        let shard_bytes = u64_at(20);
        if shard_bytes == 0 || !shard_bytes.is_multiple_of(ec::SHARD_ALIGN_BYTES) {
            return Err(format!("stripe manifest shard_bytes {shard_bytes}"));
        }
        let members: Vec<(u32, u64)> = (0..k as usize)
            .map(|j| {
                let o = MANIFEST_HEAD_BYTES + j * 12;
                (u32_at(o), u64_at(o + 4))
            })
            .collect();
        if members.iter().any(|(_, len)| *len > shard_bytes) {
            return Err("stripe member longer than shard_bytes".into());
        }
        let positions = body[MANIFEST_HEAD_BYTES + k as usize * 12..].to_vec();
        let mut seen = positions.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != positions.len() {
            return Err("stripe files share a position".into());
        }
        Ok(Manifest {
            stripe_id: u32_at(12),
            k,
            m,
            shard_bytes,
            members,
            positions,
        })
    }

    /// Position (relative) of stripe file `i` (members `0..k`, then parity).
    pub(crate) fn position(&self, i: usize) -> usize {
        self.positions[i] as usize
    }

    /// Path of stripe file `i` in the shard directory `dir`.
    pub(crate) fn file_path(&self, dir: &Path, i: usize) -> PathBuf {
        if i < self.k as usize {
            super::space::vol_path(dir, self.members[i].0)
        } else {
            parity_path(dir, self.stripe_id, i - self.k as usize)
        }
    }
}

pub(crate) fn manifest_path(dir: &Path, stripe_id: u32) -> PathBuf {
    dir.join(format!("stripe-{stripe_id:08}.ec"))
}

pub(crate) fn parity_path(dir: &Path, stripe_id: u32, i: usize) -> PathBuf {
    dir.join(format!("parity-{stripe_id:08}-{i}.dat"))
}

pub(crate) fn tmp_of(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(TMP_SUFFIX);
    PathBuf::from(s)
}

fn io(context: String, e: std::io::Error) -> Error {
    Error::io(context, e)
}

fn fsync_dir(dir: &Path) -> Result<()> {
    crate::sys::fsync_dir(dir).map_err(|e| io(format!("fsync dir {}", dir.display()), e))
}

/// Writes `bytes` to `path` durably: temporary name, fsync, rename, fsync of the directory.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_of(path);
    let mut f = fs::File::create(&tmp).map_err(|e| io(format!("create {}", tmp.display()), e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| io(format!("write {}", tmp.display()), e))?;
    fs::rename(&tmp, path).map_err(|e| io(format!("rename to {}", path.display()), e))?;
    fsync_dir(path.parent().expect("a file in a directory"))
}

/// The stripe manifests of a shard: every valid one found in any copy directory (a stripe
/// is committed once its manifest is durable in one copy: its parity was durable before),
/// written to the copy directories that lack it.
pub(crate) fn load_manifests(layout: &StripeLayout) -> Result<BTreeMap<u32, Manifest>> {
    let mut found: BTreeMap<u32, Manifest> = BTreeMap::new();
    let copies: Vec<&PathBuf> = layout.dirs[..=layout.m.min(layout.dirs.len() - 1)]
        .iter()
        .flatten()
        .collect();
    for dir in &copies {
        let Ok(rd) = fs::read_dir(dir) else { continue };
        for ent in rd.flatten() {
            let name = ent.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_prefix("stripe-"))
                .and_then(|n| n.strip_suffix(".ec"))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let p = ent.path();
            match fs::read(&p)
                .map_err(|e| e.to_string())
                .and_then(|b| Manifest::decode(&b))
            {
                Ok(m) if m.stripe_id == id => {
                    found.entry(id).or_insert(m);
                }
                Ok(_) => {
                    tracing::warn!(path = %p.display(), "stripe manifest names another stripe: ignored")
                }
                Err(why) => {
                    tracing::warn!(path = %p.display(), %why, "unreadable stripe manifest: ignored (another copy may hold it)")
                }
            }
        }
    }
    for m in found.values() {
        if m.k as usize != layout.k || m.m as usize != layout.m {
            return Err(Error::Corrupt {
                context: format!(
                    "stripe {} is {}+{}, the set is {}+{}",
                    m.stripe_id, m.k, m.m, layout.k, layout.m
                ),
            });
        }
        if m.positions.iter().any(|p| *p as usize >= layout.dirs.len()) {
            return Err(Error::Corrupt {
                context: format!("stripe {} names a position past the set", m.stripe_id),
            });
        }
        for dir in &copies {
            let p = manifest_path(dir, m.stripe_id);
            let ok = fs::read(&p)
                .ok()
                .and_then(|b| Manifest::decode(&b).ok())
                .is_some_and(|x| x == *m);
            if !ok {
                write_durably(&p, &m.encode())?;
            }
        }
    }
    Ok(found)
}

/// Makes the stripe files agree with the manifests, at open: temporary files and parity of
/// stripes without a manifest (a crash before it) are removed; a striped volume's copies in
/// positions other than its member's (a crash between the manifest and their removal, or a
/// copy rebuilt from another copy) are removed; a member copied to a non-copy position for a
/// stripe that never got its manifest is removed. Stripe files missing from a live directory
/// are left to the rebuild while serving (rebuild.rs) or to `rebuild_stripe_files`.
pub(crate) fn reconcile(layout: &StripeLayout, manifests: &BTreeMap<u32, Manifest>) -> Result<()> {
    // volume id -> its member position
    let mut member_at: BTreeMap<u32, usize> = BTreeMap::new();
    for m in manifests.values() {
        for (j, (id, _)) in m.members.iter().enumerate() {
            member_at.insert(*id, m.position(j));
        }
    }
    for (pos, dir) in layout.dirs.iter().enumerate() {
        let Some(dir) = dir else { continue };
        if !dir.exists() {
            fs::create_dir_all(dir).map_err(|e| io(format!("create dir {}", dir.display()), e))?;
            fsync_dir(dir.parent().unwrap_or(dir))?;
            continue;
        }
        let is_copy = pos <= layout.m;
        let rd = fs::read_dir(dir).map_err(|e| io(format!("read dir {}", dir.display()), e))?;
        let mut removed = false;
        for ent in rd.flatten() {
            let name = ent.file_name();
            let Some(name) = name.to_str() else { continue };
            let remove = if name.ends_with(TMP_SUFFIX) {
                true
            } else if let Some(rest) = name.strip_prefix("parity-") {
                let sid = rest.split('-').next().and_then(|s| s.parse::<u32>().ok());
                !sid.is_some_and(|s| manifests.contains_key(&s))
            } else if let Some(id) = name
                .strip_prefix("vol-")
                .and_then(|s| s.strip_suffix(".dat"))
                .and_then(|s| s.parse::<u32>().ok())
            {
                match member_at.get(&id) {
                    Some(&p) => p != pos,
                    // Not striped: a volume of the copies, or a member copied for a stripe
                    // that never got its manifest.
                    None => !is_copy,
                }
            } else {
                false
            };
            if remove {
                let p = ent.path();
                tracing::info!(path = %p.display(), "removing a stripe file no manifest places here");
                fs::remove_file(&p).map_err(|e| io(format!("remove {}", p.display()), e))?;
                removed = true;
            }
        }
        if removed {
            fsync_dir(dir)?;
        }
    }
    Ok(())
}

/// `bale disk replace` (the shard not open, nothing serving): the stripe files of the shard
/// laid out as `layout` made to agree with the manifests (`reconcile`), then every one missing
/// from a live directory rebuilt from `k` others at `layout.rebuild_rate_bytes_per_s`, into a
/// temporary name renamed when complete, progress logged. Returns the files rebuilt.
pub fn rebuild_stripe_files(layout: &StripeLayout) -> Result<u32> {
    for d in layout.dirs[..=layout.m.min(layout.dirs.len() - 1)]
        .iter()
        .flatten()
    {
        if !d.exists() {
            // A shard that never had this copy (nothing to rebuild from it).
            return Ok(0);
        }
    }
    let ms = load_manifests(layout)?;
    reconcile(layout, &ms)?;
    rebuild_missing(layout, &ms)
}

/// Rebuilds every stripe file missing from a live directory from `k` others (blocking).
fn rebuild_missing(layout: &StripeLayout, manifests: &BTreeMap<u32, Manifest>) -> Result<u32> {
    let codec = StripeCodec::new(layout.k, layout.m)?;
    let mut jobs: Vec<(&Manifest, usize)> = Vec::new();
    for m in manifests.values() {
        for i in 0..layout.k + layout.m {
            if let Some(dir) = &layout.dirs[m.position(i)] {
                if !m.file_path(dir, i).exists() {
                    jobs.push((m, i));
                }
            }
        }
    }
    if jobs.is_empty() {
        return Ok(0);
    }
    let files = jobs.len() as u32;
    let total: u64 = jobs.iter().map(|(m, _)| m.shard_bytes).sum();
    tracing::info!(
        files = jobs.len(),
        total_bytes = total,
        rate_bytes_per_s = layout.rebuild_rate_bytes_per_s,
        "rebuilding lost stripe files from the surviving ones"
    );
    let started = std::time::Instant::now();
    let mut done_bytes = 0u64;
    for (m, want) in jobs {
        let paths: Vec<Option<PathBuf>> = (0..layout.k + layout.m)
            .map(|i| {
                layout.dirs[m.position(i)]
                    .as_ref()
                    .map(|d| m.file_path(d, i))
                    .filter(|p| i != want && p.exists())
            })
            .collect();
        let refs: Vec<Option<&Path>> = paths.iter().map(|p| p.as_deref()).collect();
        let dir = layout.dirs[m.position(want)]
            .as_ref()
            .expect("live position");
        let out = m.file_path(dir, want);
        let tmp = tmp_of(&out);
        // A member is as long as it was when encoded (reads past its end see the manifest's
        // length, not the shard's); parity is shard_bytes long.
        let len = if want < layout.k {
            m.members[want].1
        } else {
            m.shard_bytes
        };
        let base = done_bytes;
        ec::rebuild_file(
            &codec,
            &refs,
            want,
            &tmp,
            m.shard_bytes,
            layout.rebuild_rate_bytes_per_s,
            |bytes, _| {
                let so_far = base + bytes;
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                let rate = so_far as f64 / secs;
                let eta_s = if rate > 0.0 {
                    (total - so_far.min(total)) as f64 / rate
                } else {
                    0.0
                };
                tracing::info!(
                    percent = format!("{:.1}", so_far as f64 * 100.0 / total.max(1) as f64),
                    bytes = so_far,
                    total_bytes = total,
                    mb_per_s = format!("{:.1}", rate / 1e6),
                    eta_s = format!("{eta_s:.0}"),
                    "stripe rebuild progress"
                );
            },
        )?;
        let f = fs::OpenOptions::new()
            .write(true)
            .open(&tmp)
            .map_err(|e| io(format!("open {}", tmp.display()), e))?;
        f.set_len(len)
            .and_then(|()| f.sync_all())
            .map_err(|e| io(format!("sync {}", tmp.display()), e))?;
        fs::rename(&tmp, &out).map_err(|e| io(format!("rename to {}", out.display()), e))?;
        fsync_dir(dir)?;
        done_bytes += m.shard_bytes;
        tracing::info!(stripe = m.stripe_id, file = %out.display(), "stripe file rebuilt");
    }
    tracing::info!(
        bytes = done_bytes,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "stripe rebuild done"
    );
    Ok(files)
}

/// What encoding one stripe did (for the log and the bench).
#[derive(Debug, Clone, Default)]
pub(crate) struct EncodeReport {
    pub(crate) data_bytes: u64,
    pub(crate) parity_bytes: u64,
    pub(crate) elapsed: std::time::Duration,
}

/// Encodes `manifest`'s stripe (blocking, on the shard's worker): members not yet at their
/// position are copied there from `sources` (the copy the shard reads), parity is written and
/// fdatasynced, directories fsynced, and then the manifest is written durably to every copy
/// directory. The extra copies of the members are NOT dropped here (`drop_extra_copies`,
/// after the caller switched its reads to the members).
pub(crate) fn encode(
    layout: &StripeLayout,
    manifest: &Manifest,
    sources: &[PathBuf],
) -> Result<EncodeReport> {
    let codec = StripeCodec::new(layout.k, layout.m)?;
    let dir = |i: usize| -> Result<&PathBuf> {
        layout.dirs[manifest.position(i)]
            .as_ref()
            .ok_or_else(|| Error::Unprotected(format!("stripe position {i} has no directory")))
    };
    let k = layout.k;
    // Every copy of every member must hold the same bytes: a copy that differs (damaged while
    // nobody read it) would go into the parity, or become the member, unnoticed. Which copy
    // is right is the scrubber's and the rebuild's question; the stripe waits.
    for (j, (id, _)) in manifest.members.iter().enumerate() {
        let copies: Vec<PathBuf> = layout.dirs[..=layout.m]
            .iter()
            .flatten()
            .map(|d| super::space::vol_path(d, *id))
            .collect();
        if let Some(why) = copies_differ(&copies)? {
            return Err(Error::Corrupt {
                context: format!(
                    "stripe {}: the copies of member {j} (volume {id}) differ ({why}): not \
                     encoded",
                    manifest.stripe_id
                ),
            });
        }
    }
    let mut data = Vec::with_capacity(k);
    for (j, src) in sources.iter().enumerate() {
        let d = dir(j)?;
        fs::create_dir_all(d).map_err(|e| io(format!("create dir {}", d.display()), e))?;
        let dst = manifest.file_path(d, j);
        if !dst.exists() {
            let tmp = tmp_of(&dst);
            fs::copy(src, &tmp)
                .map_err(|e| io(format!("copy {} to {}", src.display(), tmp.display()), e))?;
            fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(|e| io(format!("fsync {}", tmp.display()), e))?;
            fs::rename(&tmp, &dst).map_err(|e| io(format!("rename to {}", dst.display()), e))?;
            fsync_dir(d)?;
        }
        data.push(dst);
    }
    let mut tmps = Vec::with_capacity(layout.m);
    for i in 0..layout.m {
        let d = dir(k + i)?;
        fs::create_dir_all(d).map_err(|e| io(format!("create dir {}", d.display()), e))?;
        tmps.push(tmp_of(&manifest.file_path(d, k + i)));
    }
    let drefs: Vec<&Path> = data.iter().map(PathBuf::as_path).collect();
    let prefs: Vec<&Path> = tmps.iter().map(PathBuf::as_path).collect();
    let r = ec::encode_files(&codec, &drefs, &prefs, manifest.shard_bytes)?;
    for (i, tmp) in tmps.iter().enumerate() {
        let d = dir(k + i)?;
        let fin = manifest.file_path(d, k + i);
        fs::rename(tmp, &fin).map_err(|e| io(format!("rename to {}", fin.display()), e))?;
        fsync_dir(d)?;
    }
    let bytes = manifest.encode();
    for d in layout.dirs[..=layout.m].iter().flatten() {
        write_durably(&manifest_path(d, manifest.stripe_id), &bytes)?;
    }
    Ok(EncodeReport {
        data_bytes: r.read_bytes,
        parity_bytes: r.written_bytes,
        elapsed: r.elapsed,
    })
}

/// Whether the files `paths` differ (length or bytes); None when they are identical.
fn copies_differ(paths: &[PathBuf]) -> Result<Option<String>> {
    let mut files = Vec::with_capacity(paths.len());
    let mut len = None;
    for p in paths {
        let f = fs::File::open(p).map_err(|e| io(format!("open {}", p.display()), e))?;
        let l = f
            .metadata()
            .map_err(|e| io(format!("stat {}", p.display()), e))?
            .len();
        if *len.get_or_insert(l) != l {
            return Ok(Some(format!(
                "{} is {l} bytes long, not {}",
                p.display(),
                len.unwrap_or(0)
            )));
        }
        files.push(std::io::BufReader::with_capacity(ec::STRIPE_CHUNK_BYTES, f));
    }
    let Some((first, rest)) = files.split_first_mut() else {
        return Ok(None);
    };
    let mut a = vec![0u8; ec::STRIPE_CHUNK_BYTES];
    let mut b = vec![0u8; ec::STRIPE_CHUNK_BYTES];
    let mut offset = 0u64;
    loop {
        let n =
            read_full(first, &mut a).map_err(|e| io(format!("read {}", paths[0].display()), e))?;
        if n == 0 {
            return Ok(None);
        }
        for (i, f) in rest.iter_mut().enumerate() {
            let got = read_full(f, &mut b[..n])
                .map_err(|e| io(format!("read {}", paths[i + 1].display()), e))?;
            if got != n || a[..n] != b[..n] {
                return Ok(Some(format!(
                    "{} and {} differ in the {n} bytes at {offset}",
                    paths[0].display(),
                    paths[i + 1].display()
                )));
            }
        }
        offset += n as u64;
    }
}

/// Reads until `buf` is full or the end of the file; the bytes read.
fn read_full(r: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..])? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}

/// Removes the copies of `manifest`'s members that are not the member itself (the copy
/// positions other than the member's), then fsyncs those directories.
pub(crate) fn drop_extra_copies(layout: &StripeLayout, manifest: &Manifest) -> Result<()> {
    for d in layout.dirs[..=layout.m].iter().enumerate() {
        let (pos, Some(dir)) = d else { continue };
        let mut removed = false;
        for (j, (id, _)) in manifest.members.iter().enumerate() {
            if manifest.position(j) == pos {
                continue;
            }
            let p = super::space::vol_path(dir, *id);
            match fs::remove_file(&p) {
                Ok(()) => removed = true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(format!("remove {}", p.display()), e)),
            }
        }
        if removed {
            fsync_dir(dir)?;
        }
    }
    Ok(())
}

/// The files of one stripe as the shard reads them while serving.
pub(crate) struct StripeFiles {
    pub(crate) manifest: Manifest,
    pub(crate) codec: Arc<StripeCodec>,
    /// Path of each stripe file (members, then parity); `None` where its directory failed.
    pub(crate) paths: Vec<Option<PathBuf>>,
    /// Per stripe file: found missing or failed a read.
    pub(crate) failed: Vec<Cell<bool>>,
}

impl StripeFiles {
    pub(crate) fn new(layout: &StripeLayout, manifest: Manifest, codec: Arc<StripeCodec>) -> Self {
        let paths: Vec<Option<PathBuf>> = (0..layout.k + layout.m)
            .map(|i| {
                layout.dirs[manifest.position(i)]
                    .as_ref()
                    .map(|d| manifest.file_path(d, i))
            })
            .collect();
        let failed = paths
            .iter()
            .map(|p| Cell::new(p.as_ref().is_none_or(|p| !p.exists())))
            .collect();
        StripeFiles {
            manifest,
            codec,
            paths,
            failed,
        }
    }

    /// The stripe files a degraded read may use (failed ones left out), owned (the read runs
    /// on the worker thread).
    pub(crate) fn sources(&self) -> Vec<Option<PathBuf>> {
        self.paths
            .iter()
            .zip(&self.failed)
            .map(|(p, f)| p.clone().filter(|_| !f.get()))
            .collect()
    }
}

/// Reads `[offset, offset + len)` of stripe file `want` by decoding it from `k` others
/// (blocking: on the shard's worker thread).
pub(crate) fn read_degraded(
    codec: &StripeCodec,
    sources: &[Option<PathBuf>],
    want: usize,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>> {
    let refs: Vec<Option<&Path>> = sources
        .iter()
        .enumerate()
        .map(|(i, p)| p.as_deref().filter(|_| i != want))
        .collect();
    ec::read_range(codec, &refs, want, offset, len)
}

/// A shard's erasure coding state (ADR 19).
pub(crate) struct Stripes {
    pub(crate) layout: StripeLayout,
    pub(crate) codec: Arc<StripeCodec>,
    /// Every stripe of the shard (for the counters; reads reach theirs through `VolFile`).
    pub(crate) all: std::cell::RefCell<Vec<Rc<StripeFiles>>>,
    pub(crate) next_id: Cell<u32>,
    /// An `encode_stripes` pass is running.
    pub(crate) encoding: Cell<bool>,
    /// An encoding failed (copies that differ, an I/O error): no more until the next open.
    pub(crate) blocked: Cell<bool>,
    pub(crate) degraded_reads: Cell<u64>,
    pub(crate) encoded_bytes: Cell<u64>,
    /// Lost stripe files rebuilt while serving (rebuild.rs).
    pub(crate) rebuild: super::rebuild::RebuildState,
}

impl Stripes {
    pub(crate) fn new(layout: StripeLayout) -> Result<Stripes> {
        let codec = Arc::new(StripeCodec::new(layout.k, layout.m)?);
        if layout.dirs.len() != layout.k + layout.m {
            return Err(Error::Invalid(format!(
                "a {}+{} stripe layout needs {} directories, got {}",
                layout.k,
                layout.m,
                layout.k + layout.m,
                layout.dirs.len()
            )));
        }
        Ok(Stripes {
            layout,
            codec,
            all: Default::default(),
            next_id: Cell::new(1),
            encoding: Cell::new(false),
            blocked: Cell::new(false),
            degraded_reads: Cell::new(0),
            encoded_bytes: Cell::new(0),
            rebuild: Default::default(),
        })
    }

    pub(crate) fn count(&self) -> u32 {
        self.all.borrow().len() as u32
    }

    pub(crate) fn files_lost(&self) -> u32 {
        self.all
            .borrow()
            .iter()
            .map(|f| f.failed.iter().filter(|c| c.get()).count() as u32)
            .sum()
    }

    /// Registers a stripe and returns its files, shared by its members' `VolFile`s.
    pub(crate) fn add(&self, manifest: Manifest) -> Rc<StripeFiles> {
        self.next_id
            .set(self.next_id.get().max(manifest.stripe_id.saturating_add(1)));
        let f = Rc::new(StripeFiles::new(&self.layout, manifest, self.codec.clone()));
        self.all.borrow_mut().push(f.clone());
        f
    }
}

/// A `VolFile` for member `j` of `files`: the member opened O_DIRECT, or, when it is lost,
/// a placeholder never read (reads of a lost member decode).
pub(crate) fn member_volume(files: &Rc<StripeFiles>, j: usize) -> Result<VolFile> {
    let id = files.manifest.members[j].0;
    let path = files.paths[j].clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "<lost member of stripe {}>",
            files.manifest.stripe_id
        ))
    });
    let std_file = if files.failed[j].get() {
        None
    } else {
        match crate::sys::open_direct(&path, false) {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "stripe member cannot be opened: reads of it decode from the stripe's others");
                files.failed[j].set(true);
                None
            }
        }
    };
    let std_file = match std_file {
        Some(f) => f,
        None => fs::File::open("/dev/null").map_err(|e| io("open /dev/null".into(), e))?,
    };
    let file = monoio::fs::File::from_std(std_file)
        .map_err(|e| io(format!("register {}", path.display()), e))?;
    Ok(VolFile {
        id,
        path,
        file,
        dir_synced: Cell::new(true),
        mirrors: Vec::new(),
        stripe: Some((files.clone(), j)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            stripe_id: 7,
            k: 4,
            m: 2,
            shard_bytes: 8192,
            members: vec![(3, 8192), (4, 4096), (5, 100), (6, 0)],
            positions: vec![0, 1, 2, 3, 4, 5],
        }
    }

    #[test]
    fn manifest_round_trips_and_rejects_damage() {
        let m = manifest();
        let b = m.encode();
        assert_eq!(b.len(), MANIFEST_HEAD_BYTES + 4 * 12 + 6 + 4);
        assert_eq!(&b[..8], MANIFEST_MAGIC);
        assert_eq!(Manifest::decode(&b).unwrap(), m);
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 0x40;
            assert!(Manifest::decode(&bad).is_err(), "flip at {i} accepted");
        }
        assert!(Manifest::decode(&b[..b.len() - 1]).is_err());
        let mut dup = m.clone();
        dup.positions[5] = 0;
        assert!(Manifest::decode(&dup.encode()).is_err());
        let mut long = m.clone();
        long.members[0].1 = 9000;
        assert!(Manifest::decode(&long.encode()).is_err());
    }

    fn layout(root: &Path) -> StripeLayout {
        StripeLayout {
            k: 4,
            m: 2,
            dirs: (0..6)
                .map(|i| Some(root.join(format!("d{i}")).join("shard-0000")))
                .collect(),
            rebuild_rate_bytes_per_s: 0,
        }
    }

    /// Volumes 3..=6 in the copy directories (positions 0..=2), as mirroring leaves them.
    fn volumes(l: &StripeLayout) -> Vec<Vec<u8>> {
        let lens = [8192usize, 4096, 100, 0];
        let vols: Vec<Vec<u8>> = lens
            .iter()
            .enumerate()
            .map(|(j, n)| (0..*n).map(|b| (b * 31 + j * 7) as u8).collect())
            .collect();
        for d in l.dirs[..=2].iter().flatten() {
            fs::create_dir_all(d).unwrap();
            for (j, v) in vols.iter().enumerate() {
                fs::write(super::super::space::vol_path(d, 3 + j as u32), v).unwrap();
            }
        }
        vols
    }

    #[test]
    fn encode_drop_degraded_read_and_rebuild() {
        let t = tempfile::tempdir().unwrap();
        let l = layout(t.path());
        let vols = volumes(&l);
        let m = manifest();
        let src = l.dirs[0].as_ref().unwrap();
        let sources: Vec<PathBuf> = (3..=6)
            .map(|id| super::super::space::vol_path(src, id))
            .collect();
        let r = encode(&l, &m, &sources).unwrap();
        assert_eq!(r.parity_bytes, 2 * 8192);
        drop_extra_copies(&l, &m).unwrap();
        for (j, v) in vols.iter().enumerate() {
            for (pos, d) in l.dirs.iter().enumerate() {
                let p = super::super::space::vol_path(d.as_ref().unwrap(), 3 + j as u32);
                assert_eq!(p.exists(), pos == j, "vol {j} at {pos}");
            }
            let p = super::super::space::vol_path(l.dirs[j].as_ref().unwrap(), 3 + j as u32);
            assert_eq!(&fs::read(&p).unwrap(), v);
        }
        for d in l.dirs[..=2].iter().flatten() {
            assert!(manifest_path(d, 7).exists());
        }
        assert_eq!(load_manifests(&l).unwrap()[&7], m);
        // Member 1 lost: a span decoded from the others.
        let lost = super::super::space::vol_path(l.dirs[1].as_ref().unwrap(), 4);
        fs::remove_file(&lost).unwrap();
        let files = StripeFiles::new(&l, m.clone(), Arc::new(StripeCodec::new(4, 2).unwrap()));
        assert!(files.failed[1].get());
        let got = read_degraded(&files.codec, &files.sources(), 1, 0, 4096).unwrap();
        assert_eq!(got, vols[1]);
        // Member 0 lost too (m = 2 lost): still decodes.
        let mut srcs = files.sources();
        srcs[0] = None;
        let got = read_degraded(&files.codec, &srcs, 0, 4096, 4096).unwrap();
        assert_eq!(got, vols[0][4096..]);
        // Reconcile rebuilds the lost member at its length.
        fs::remove_file(manifest_path(l.dirs[0].as_ref().unwrap(), 7)).unwrap();
        let ms = load_manifests(&l).unwrap();
        assert!(manifest_path(l.dirs[0].as_ref().unwrap(), 7).exists());
        reconcile(&l, &ms).unwrap();
        assert!(
            !lost.exists(),
            "open leaves the rebuild to the serving shard"
        );
        assert_eq!(rebuild_stripe_files(&l).unwrap(), 1);
        assert_eq!(fs::read(&lost).unwrap(), vols[1]);
    }

    #[test]
    fn copies_that_differ_are_not_encoded() {
        let t = tempfile::tempdir().unwrap();
        let l = layout(t.path());
        volumes(&l);
        let p = super::super::space::vol_path(l.dirs[2].as_ref().unwrap(), 4);
        let mut b = fs::read(&p).unwrap();
        b[100] ^= 1;
        fs::write(&p, b).unwrap();
        let src = l.dirs[0].as_ref().unwrap();
        let sources: Vec<PathBuf> = (3..=6)
            .map(|id| super::super::space::vol_path(src, id))
            .collect();
        let e = encode(&l, &manifest(), &sources).unwrap_err().to_string();
        assert!(e.contains("differ"), "{e}");
        assert!(!manifest_path(src, 7).exists());
        assert!(!parity_path(l.dirs[4].as_ref().unwrap(), 7, 0).exists());
    }

    #[test]
    fn a_stripe_without_manifest_is_undone_at_open() {
        let t = tempfile::tempdir().unwrap();
        let l = layout(t.path());
        let vols = volumes(&l);
        let m = manifest();
        let src = l.dirs[0].as_ref().unwrap();
        let sources: Vec<PathBuf> = (3..=6)
            .map(|id| super::super::space::vol_path(src, id))
            .collect();
        encode(&l, &m, &sources).unwrap();
        // A crash before any manifest was durable: only parity and copied members exist.
        for d in l.dirs[..=2].iter().flatten() {
            fs::remove_file(manifest_path(d, 7)).unwrap();
        }
        fs::write(
            tmp_of(&parity_path(l.dirs[5].as_ref().unwrap(), 7, 1)),
            b"x",
        )
        .unwrap();
        let ms = load_manifests(&l).unwrap();
        assert!(ms.is_empty());
        reconcile(&l, &ms).unwrap();
        for (pos, d) in l.dirs.iter().enumerate() {
            let names: Vec<String> = fs::read_dir(d.as_ref().unwrap())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            if pos <= 2 {
                // The mirrored volumes stay, untouched.
                assert_eq!(names.len(), 4, "{names:?}");
                for (j, v) in vols.iter().enumerate() {
                    let p = super::super::space::vol_path(d.as_ref().unwrap(), 3 + j as u32);
                    assert_eq!(&fs::read(p).unwrap(), v);
                }
            } else {
                assert!(names.is_empty(), "{pos}: {names:?}");
            }
        }
    }
}
