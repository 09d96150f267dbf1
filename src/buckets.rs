//! The bucket registry: names and creation times, shared by all cores.
//!
//! Buckets change rarely and are read on PUT and on a GET miss (to tell NoSuchBucket from
//! NoSuchKey); the GET hit path never touches this. The registry is persisted as
//! `buckets.json` in the first data directory, replaced atomically (write, fsync, rename,
//! fsync dir) before a create or delete is acknowledged.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use anyhow::Context;
use serde::{Deserialize, Serialize};

pub const BUCKETS_FILE: &str = "buckets.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BucketInfo {
    pub created_ms: u64,
}

pub struct Buckets {
    path: PathBuf,
    /// The registry's copies in the other live data directories, written with it.
    copies: Vec<PathBuf>,
    map: RwLock<BTreeMap<String, BucketInfo>>,
    /// Serialises writers so the file always matches the map.
    write_lock: std::sync::Mutex<()>,
    /// Object writes in flight and deletes in progress, per bucket (only buckets with either).
    gates: Mutex<HashMap<String, Gate>>,
}

/// What is happening to a bucket's contents right now.
#[derive(Default)]
struct Gate {
    /// Object writes (PUT, copy, upload part, complete ...) between their bucket check and
    /// their commit.
    writers: u32,
    /// A DeleteBucket is checking emptiness and removing the bucket.
    deleting: bool,
}

/// Held by an object write from its bucket check to its commit: while any is held, the bucket
/// cannot be deleted (so no write commits into a deleted bucket).
pub struct WriteGuard {
    buckets: Arc<Buckets>,
    name: String,
}

impl Drop for WriteGuard {
    fn drop(&mut self) {
        let mut g = self.buckets.gates.lock().expect("bucket gates poisoned");
        let gate = g
            .get_mut(&self.name)
            .expect("a held write guard has a gate");
        assert!(gate.writers > 0);
        gate.writers -= 1;
        if gate.writers == 0 && !gate.deleting {
            g.remove(&self.name);
        }
    }
}

/// Held by DeleteBucket while it checks emptiness and removes the bucket: new writes see the
/// bucket as gone meanwhile.
pub struct DeleteGuard {
    buckets: Arc<Buckets>,
    name: String,
}

impl Drop for DeleteGuard {
    fn drop(&mut self) {
        let mut g = self.buckets.gates.lock().expect("bucket gates poisoned");
        let gate = g
            .get_mut(&self.name)
            .expect("a held delete guard has a gate");
        gate.deleting = false;
        if gate.writers == 0 {
            g.remove(&self.name);
        }
    }
}

/// Why a bucket cannot be deleted right now.
pub enum DeleteBlocked {
    Missing,
    WritesInFlight,
}

pub enum CreateOutcome {
    Created,
    AlreadyExists,
}

impl Buckets {
    /// Opens the registry of the first of `dirs` (the live data directories) and keeps it
    /// in every one of them (with redundancy, losing a directory loses no bucket).
    pub fn open(dirs: &[PathBuf]) -> anyhow::Result<Self> {
        if dirs.is_empty() {
            anyhow::bail!("no live data directory for the bucket registry");
        }
        // The newest copy is read (one written while another directory was away wins).
        let mtime = |d: &PathBuf| {
            fs::metadata(d.join(BUCKETS_FILE))
                .and_then(|m| m.modified())
                .ok()
        };
        let newest = (0..dirs.len())
            .max_by_key(|&i| (mtime(&dirs[i]), std::cmp::Reverse(i)))
            .unwrap_or(0);
        let path = dirs[newest].join(BUCKETS_FILE);
        let copies: Vec<PathBuf> = (0..dirs.len())
            .filter(|&i| i != newest)
            .map(|i| dirs[i].join(BUCKETS_FILE))
            .collect();
        let map = if path.exists() {
            let text = fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| format!("{} is corrupt", path.display()))?
        } else {
            BTreeMap::new()
        };
        let b = Self {
            path,
            copies,
            map: RwLock::new(map),
            write_lock: std::sync::Mutex::new(()),
            gates: Mutex::new(HashMap::new()),
        };
        // A copy that differs (a replaced or stale directory) gets the first one's registry.
        let want = serde_json::to_string(&*b.map.read().expect("bucket map poisoned"))?;
        for c in &b.copies {
            if fs::read_to_string(c).ok().as_deref() != Some(want.as_str()) {
                write_atomic(c, want.as_bytes())?;
            }
        }
        Ok(b)
    }

    /// Starts an object write into `name`; None if the bucket does not exist or is being
    /// deleted. Not on the GET path: one short lock per write.
    pub fn write_guard(self: &Arc<Self>, name: &str) -> Option<WriteGuard> {
        let mut g = self.gates.lock().expect("bucket gates poisoned");
        if g.get(name).is_some_and(|x| x.deleting) || !self.exists(name) {
            return None;
        }
        g.entry(name.to_string()).or_default().writers += 1;
        Some(WriteGuard {
            buckets: self.clone(),
            name: name.to_string(),
        })
    }

    /// Starts a bucket delete: refused while object writes are in flight; from here until the
    /// guard drops, new writes answer as if the bucket were gone.
    pub fn delete_guard(self: &Arc<Self>, name: &str) -> Result<DeleteGuard, DeleteBlocked> {
        let mut g = self.gates.lock().expect("bucket gates poisoned");
        if !self.exists(name) {
            return Err(DeleteBlocked::Missing);
        }
        let gate = g.entry(name.to_string()).or_default();
        if gate.writers > 0 || gate.deleting {
            if gate.writers == 0 && !gate.deleting {
                g.remove(name);
            }
            return Err(DeleteBlocked::WritesInFlight);
        }
        gate.deleting = true;
        Ok(DeleteGuard {
            buckets: self.clone(),
            name: name.to_string(),
        })
    }

    pub fn exists(&self, name: &str) -> bool {
        self.map
            .read()
            .expect("bucket map poisoned")
            .contains_key(name)
    }

    pub fn list(&self) -> Vec<(String, BucketInfo)> {
        self.map
            .read()
            .expect("bucket map poisoned")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub fn create(&self, name: &str, now_ms: u64) -> anyhow::Result<CreateOutcome> {
        let _w = self.write_lock.lock().expect("bucket writer poisoned");
        let mut next = self.map.read().expect("bucket map poisoned").clone();
        if next.contains_key(name) {
            return Ok(CreateOutcome::AlreadyExists);
        }
        next.insert(name.to_string(), BucketInfo { created_ms: now_ms });
        self.persist(&next)?;
        *self.map.write().expect("bucket map poisoned") = next;
        Ok(CreateOutcome::Created)
    }

    /// `create`, run on a short-lived thread: the registry write (write, fsync, rename, fsync
    /// dir) may sleep on the device, and the core that serves the request must not (ADR 10).
    /// Bucket creates and deletes are rare: a thread each costs nothing that matters.
    pub async fn create_off_core(
        self: &Arc<Self>,
        name: &str,
        now_ms: u64,
    ) -> anyhow::Result<CreateOutcome> {
        let (me, name) = (self.clone(), name.to_string());
        off_core(move || me.create(&name, now_ms)).await?
    }

    /// `remove`, off the core (see `create_off_core`).
    pub async fn remove_off_core(self: &Arc<Self>, name: &str) -> anyhow::Result<bool> {
        let (me, name) = (self.clone(), name.to_string());
        off_core(move || me.remove(&name)).await?
    }

    /// Removes the bucket; returns false if it did not exist.
    pub fn remove(&self, name: &str) -> anyhow::Result<bool> {
        let _w = self.write_lock.lock().expect("bucket writer poisoned");
        let mut next = self.map.read().expect("bucket map poisoned").clone();
        if next.remove(name).is_none() {
            return Ok(false);
        }
        self.persist(&next)?;
        *self.map.write().expect("bucket map poisoned") = next;
        Ok(true)
    }

    fn persist(&self, map: &BTreeMap<String, BucketInfo>) -> anyhow::Result<()> {
        let text = serde_json::to_string(map)?;
        for p in std::iter::once(&self.path).chain(&self.copies) {
            write_atomic(p, text.as_bytes())?;
        }
        Ok(())
    }
}

/// Replaces `path` with `bytes` atomically and durably (write, fsync, rename, fsync dir).
fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut f =
        fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.sync_all()
        .with_context(|| format!("cannot sync {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot rename into {}", path.display()))?;
    if let Some(parent) = path.parent() {
        fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// Runs `f` on its own thread and waits for it without blocking the calling core.
async fn off_core<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
    let (tx, rx) = futures::channel::oneshot::channel();
    std::thread::Builder::new()
        .name("bale-registry".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .context("cannot start the bucket registry thread")?;
    rx.await
        .context("the bucket registry thread ended without an answer")
}

/// S3 bucket naming rules (general purpose buckets).
pub fn valid_bucket_name(name: &str) -> bool {
    let b = name.as_bytes();
    if !(3..=63).contains(&b.len()) {
        return false;
    }
    if !b
        .iter()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'.' || *c == b'-')
    {
        return false;
    }
    let first = b[0];
    let last = b[b.len() - 1];
    if !(first.is_ascii_lowercase() || first.is_ascii_digit())
        || !(last.is_ascii_lowercase() || last.is_ascii_digit())
    {
        return false;
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return false;
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return false;
    }
    !(name.starts_with("xn--")
        || name.starts_with("sthree-")
        || name.ends_with("-s3alias")
        || name.ends_with("--ol-s3"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["abc", "my-bucket.1", "a1b", "milvus-bucket"] {
            assert!(valid_bucket_name(ok), "{ok}");
        }
        for bad in [
            "ab",
            "ABC",
            "-abc",
            "abc-",
            "a..b",
            "192.168.1.1",
            "a_b",
            "xn--abc",
            &"a".repeat(64),
        ] {
            assert!(!valid_bucket_name(bad), "{bad}");
        }
    }

    #[test]
    fn delete_waits_for_writers_and_blocks_new_ones() {
        let t = tempfile::tempdir().unwrap();
        let b = Arc::new(Buckets::open(&[t.path().to_path_buf()]).unwrap());
        b.create("abc", 1).unwrap();
        assert!(b.write_guard("nope").is_none());
        let w = b.write_guard("abc").expect("bucket exists");
        assert!(matches!(
            b.delete_guard("abc"),
            Err(DeleteBlocked::WritesInFlight)
        ));
        drop(w);
        let d = b.delete_guard("abc").ok().expect("no writers left");
        assert!(b.write_guard("abc").is_none(), "writes wait out a delete");
        drop(d);
        assert!(
            b.write_guard("abc").is_some(),
            "a failed delete lets writes in"
        );
        assert!(b.gates.lock().unwrap().is_empty());
    }

    #[test]
    fn persists() {
        let t = tempfile::tempdir().unwrap();
        let b = Buckets::open(&[t.path().to_path_buf()]).unwrap();
        assert!(matches!(
            b.create("abc", 1).unwrap(),
            CreateOutcome::Created
        ));
        assert!(matches!(
            b.create("abc", 2).unwrap(),
            CreateOutcome::AlreadyExists
        ));
        let b2 = Buckets::open(&[t.path().to_path_buf()]).unwrap();
        assert!(b2.exists("abc"));
        assert!(b2.remove("abc").unwrap());
        assert!(!Buckets::open(&[t.path().to_path_buf()])
            .unwrap()
            .exists("abc"));
    }
}
