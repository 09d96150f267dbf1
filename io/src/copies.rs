//! Copies of a shard (mirror, ADR 19): the generation that tells a current copy from a stale
//! one, and the rebuild of a lost or stale copy from a current one.
//!
//! Each copy of a shard is a whole shard directory (`shard-NNNN/`: journal, snapshot,
//! volumes) in another data directory, written and synced together by the shard. A copy's
//! `copy.gen` holds its generation (decimal, one line; missing means 0). The generation of the
//! surviving copies is raised whenever a copy is marked failed while serving and after every
//! rebuild, so a copy that was away (or failed) while the others moved on has a lower
//! generation than they do and is never trusted again: it is rebuilt. Rebuilds run before the
//! shard opens (nothing writes the source meanwhile), file by file into `shard-NNNN.rebuild/`,
//! renamed over the copy when complete: a crash leaves the old copy (stale, rebuilt again at
//! the next start) and a partial `.rebuild` directory (removed and started over).

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The generation file of a shard copy.
pub const GENERATION_FILE: &str = "copy.gen";
/// Suffix of the directory a copy is rebuilt into before it is renamed into place.
pub const REBUILD_SUFFIX: &str = "rebuild";
/// Rebuild copies in chunks of this size (the rate bound is checked per chunk).
const REBUILD_CHUNK_BYTES: usize = 1 << 20;
/// Rebuild progress is logged at most this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

fn invalid(path: &Path, what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("{}: {what}", path.display()),
    )
}

/// Generation of the copy in `shard_dir` (0 when it has no generation file).
pub fn generation(shard_dir: &Path) -> std::io::Result<u64> {
    let path = shard_dir.join(GENERATION_FILE);
    match fs::read_to_string(&path) {
        Ok(t) => t
            .trim()
            .parse::<u64>()
            .map_err(|_| invalid(&path, "not a generation number")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

/// Writes the generation of the copy in `shard_dir` durably (tmp file, fsync, rename, fsync
/// of the directory).
pub fn set_generation(shard_dir: &Path, gen: u64) -> std::io::Result<()> {
    let path = shard_dir.join(GENERATION_FILE);
    let tmp = shard_dir.join(format!("{GENERATION_FILE}.tmp"));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(format!("{gen}\n").as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, &path)?;
    crate::sys::fsync_dir(shard_dir)
}

/// Raises the generation of every copy in `shard_dirs` to one more than the highest of them.
pub fn raise_generation(shard_dirs: &[PathBuf]) -> std::io::Result<()> {
    let mut top = 0;
    for d in shard_dirs {
        top = top.max(generation(d)?);
    }
    for d in shard_dirs {
        set_generation(d, top + 1)?;
    }
    Ok(())
}

/// Whether `shard_dir` holds a shard copy (its snapshot exists: every opened shard has one).
pub fn holds_copy(shard_dir: &Path) -> bool {
    shard_dir.join("index.snap").is_file()
}

/// Bytes a rebuild of `shard_dir` copies (the lengths of its files).
pub fn copy_bytes(shard_dir: &Path) -> std::io::Result<u64> {
    let mut n = 0;
    for ent in fs::read_dir(shard_dir)? {
        let ent = ent?;
        if copied(&ent.file_name().to_string_lossy()) {
            n += ent.metadata()?.len();
        }
    }
    Ok(n)
}

/// Files a rebuild copies: everything but the lock, unfinished temporary files and the index
/// spill file (scratch, ADR 29).
fn copied(name: &str) -> bool {
    name != "LOCK" && name != "index.spill" && !name.ends_with(".tmp")
}

/// Progress of a rebuild of several copies, logged (percent, bytes, rate, ETA) as it goes.
pub struct Rebuild {
    total_bytes: u64,
    done_bytes: u64,
    rate_bytes_per_s: u64,
    started: Instant,
    logged: Instant,
}

impl Rebuild {
    /// A rebuild of `total_bytes` at most `rate_bytes_per_s` (0: unbounded).
    pub fn new(total_bytes: u64, rate_bytes_per_s: u64) -> Rebuild {
        let now = Instant::now();
        Rebuild {
            total_bytes,
            done_bytes: 0,
            rate_bytes_per_s,
            started: now,
            logged: now,
        }
    }

    /// Bytes copied so far.
    pub fn done_bytes(&self) -> u64 {
        self.done_bytes
    }

    /// Rebuilds the copy `dst` from the current copy `src` (neither is open by a shard): every
    /// file into `dst.rebuild/`, fsynced, then the old `dst` (if any) removed and the new one
    /// renamed into place, then the generation of both raised above every other copy's.
    pub fn copy(&mut self, src: &Path, dst: &Path) -> std::io::Result<()> {
        let tmp = dst.with_extension(REBUILD_SUFFIX);
        if tmp.exists() {
            tracing::info!(path = %tmp.display(), "removing an unfinished rebuild (starting it over)");
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(&tmp)?;
        let mut names: Vec<_> = fs::read_dir(src)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()?;
        names.sort();
        for name in names {
            if !copied(&name.to_string_lossy()) {
                continue;
            }
            let from = src.join(&name);
            if !fs::metadata(&from)?.is_file() {
                continue;
            }
            self.copy_file(&from, &tmp.join(&name))?;
        }
        // Stripe files (erasure coding, ADR 19) are not copies: a member volume or a parity
        // file that only this directory holds is kept (they never change once written, so a
        // stale directory's are still right); the engine's open removes what no stripe
        // manifest places here.
        if dst.is_dir() {
            for ent in fs::read_dir(dst)? {
                let ent = ent?;
                let name = ent.file_name();
                let n = name.to_string_lossy();
                let stripe_file =
                    (n.starts_with("vol-") || n.starts_with("parity-")) && n.ends_with(".dat");
                if stripe_file && !tmp.join(&name).exists() {
                    fs::rename(ent.path(), tmp.join(&name))?;
                }
            }
        }
        crate::sys::fsync_dir(&tmp)?;
        if dst.exists() {
            let old = dst.with_extension("stale");
            if old.exists() {
                fs::remove_dir_all(&old)?;
            }
            fs::rename(dst, &old)?;
            fs::remove_dir_all(&old)?;
        }
        fs::rename(&tmp, dst)?;
        if let Some(parent) = dst.parent() {
            crate::sys::fsync_dir(parent)?;
        }
        raise_generation(&[src.to_path_buf(), dst.to_path_buf()])?;
        tracing::info!(from = %src.display(), to = %dst.display(), "shard copy rebuilt");
        Ok(())
    }

    fn copy_file(&mut self, from: &Path, to: &Path) -> std::io::Result<()> {
        let mut r = fs::File::open(from)?;
        let mut w = fs::File::create(to)?;
        let mut buf = vec![0u8; REBUILD_CHUNK_BYTES];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                break;
            }
            w.write_all(&buf[..n])?;
            self.done_bytes += n as u64;
            self.pace_and_report();
        }
        w.sync_all()
    }

    /// Sleeps while ahead of the rate bound; logs progress every few seconds.
    fn pace_and_report(&mut self) {
        if self.rate_bytes_per_s > 0 {
            let due =
                Duration::from_secs_f64(self.done_bytes as f64 / self.rate_bytes_per_s as f64);
            let spent = self.started.elapsed();
            if due > spent {
                std::thread::sleep(due - spent);
            }
        }
        if self.logged.elapsed() >= PROGRESS_EVERY {
            self.logged = Instant::now();
            self.report("rebuild progress");
        }
    }

    /// Logs percent, bytes, rate and ETA.
    pub fn report(&self, what: &str) {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = self.done_bytes as f64 / secs;
        let left = self.total_bytes.saturating_sub(self.done_bytes);
        let eta_s = if rate > 0.0 { left as f64 / rate } else { 0.0 };
        let pct = if self.total_bytes == 0 {
            100.0
        } else {
            100.0 * self.done_bytes as f64 / self.total_bytes as f64
        };
        tracing::info!(
            percent = format!("{pct:.1}"),
            done_bytes = self.done_bytes,
            total_bytes = self.total_bytes,
            mb_per_s = format!("{:.1}", rate / 1e6),
            eta_s = format!("{eta_s:.0}"),
            "{what}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_and_a_rebuild() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a/shard-0000"), t.path().join("b/shard-0000"));
        fs::create_dir_all(&a).unwrap();
        assert_eq!(generation(&a).unwrap(), 0);
        fs::write(a.join("index.snap"), b"snap").unwrap();
        fs::write(a.join("vol-00000001.dat"), vec![7u8; 3 << 20]).unwrap();
        fs::write(a.join("LOCK"), b"").unwrap();
        // A stale copy with other contents, and an unfinished rebuild, are replaced.
        fs::create_dir_all(&b).unwrap();
        fs::write(b.join("index.snap"), b"old").unwrap();
        fs::create_dir_all(b.with_extension(REBUILD_SUFFIX)).unwrap();
        let total = copy_bytes(&a).unwrap();
        assert_eq!(total, 4 + (3 << 20));
        let mut r = Rebuild::new(total, 0);
        r.copy(&a, &b).unwrap();
        assert_eq!(r.done_bytes(), total);
        assert_eq!(fs::read(b.join("index.snap")).unwrap(), b"snap");
        assert_eq!(
            fs::read(b.join("vol-00000001.dat")).unwrap(),
            vec![7u8; 3 << 20]
        );
        assert!(!b.join("LOCK").exists());
        assert!(!b.with_extension(REBUILD_SUFFIX).exists());
        assert_eq!(generation(&a).unwrap(), 1);
        assert_eq!(generation(&b).unwrap(), 1);
        assert!(holds_copy(&b));
        raise_generation(std::slice::from_ref(&a)).unwrap();
        assert_eq!(generation(&a).unwrap(), 2);
        fs::write(a.join(GENERATION_FILE), b"x").unwrap();
        assert!(generation(&a).is_err());
    }

    #[test]
    fn the_rate_bound_holds() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        fs::create_dir_all(&a).unwrap();
        fs::write(a.join("vol-00000001.dat"), vec![1u8; 4 << 20]).unwrap();
        let started = Instant::now();
        let mut r = Rebuild::new(4 << 20, 16 << 20);
        r.copy(&a, &b).unwrap();
        // 4 MiB at 16 MiB/s: at least a quarter second.
        assert!(started.elapsed() >= Duration::from_millis(240));
    }
}
