//! The bucket registry: names and creation times, shared by all cores.
//!
//! Buckets change rarely and are read on PUT and on a GET miss (to tell NoSuchBucket from
//! NoSuchKey); the GET hit path never touches this. The registry is persisted as
//! `buckets.json` in the first data directory, replaced atomically (write, fsync, rename,
//! fsync dir) before a create or delete is acknowledged.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::sync::RwLock;

use anyhow::Context;
use serde::{Deserialize, Serialize};

pub const BUCKETS_FILE: &str = "buckets.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BucketInfo {
    pub created_ms: u64,
}

pub struct Buckets {
    path: PathBuf,
    map: RwLock<BTreeMap<String, BucketInfo>>,
    /// Serialises writers so the file always matches the map.
    write_lock: std::sync::Mutex<()>,
}

pub enum CreateOutcome {
    Created,
    AlreadyExists,
}

impl Buckets {
    pub fn open(first_dir: &std::path::Path) -> anyhow::Result<Self> {
        let path = first_dir.join(BUCKETS_FILE);
        let map = if path.exists() {
            let text = fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| format!("{} is corrupt", path.display()))?
        } else {
            BTreeMap::new()
        };
        Ok(Self {
            path,
            map: RwLock::new(map),
            write_lock: std::sync::Mutex::new(()),
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
        let tmp = self.path.with_extension("json.tmp");
        let mut f =
            fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(serde_json::to_string(map)?.as_bytes())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("cannot sync {}", tmp.display()))?;
        fs::rename(&tmp, &self.path)
            .with_context(|| format!("cannot rename into {}", self.path.display()))?;
        if let Some(parent) = self.path.parent() {
            fs::File::open(parent)?.sync_all()?;
        }
        Ok(())
    }
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
    fn persists() {
        let t = tempfile::tempdir().unwrap();
        let b = Buckets::open(t.path()).unwrap();
        assert!(matches!(
            b.create("abc", 1).unwrap(),
            CreateOutcome::Created
        ));
        assert!(matches!(
            b.create("abc", 2).unwrap(),
            CreateOutcome::AlreadyExists
        ));
        let b2 = Buckets::open(t.path()).unwrap();
        assert!(b2.exists("abc"));
        assert!(b2.remove("abc").unwrap());
        assert!(!Buckets::open(t.path()).unwrap().exists("abc"));
    }
}
