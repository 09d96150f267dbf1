//! The shard: index, volumes, journal, committer.

use std::path::Path;
use std::rc::Rc;

use bytes::Bytes;

use crate::{EngineConfig, Expect, Result};

/// Immutable snapshot of one stored object version.
#[derive(Debug)]
pub struct Object {
    pub size: u64,
    /// Unix ms at commit.
    pub mtime_ms: u64,
    /// Unique, increasing per shard; identifies this version.
    pub seq: u64,
    /// Opaque, given at finish/compose.
    pub meta: Bytes,
    extents: Vec<u64>,
}

impl Object {
    /// One size per extent (multipart parts).
    pub fn part_sizes(&self) -> impl Iterator<Item = u64> + '_ {
        self.extents.iter().copied()
    }
}

/// One entry of a listing.
#[derive(Debug)]
pub enum ListItem {
    Object { key: String, obj: Rc<Object> },
    Prefix(String),
}

/// Shard counters.
#[derive(Debug, Clone, Default)]
pub struct ShardStats {
    pub objects: u64,
    pub live_bytes: u64,
    pub disk_bytes: u64,
    pub garbage_bytes: u64,
    pub volumes: u32,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub corrupt_reads: u64,
}

/// Result of `Shard::compact`.
#[derive(Debug, Clone, Default)]
pub struct CompactStats {
    pub volumes_compacted: u32,
    pub records_moved: u64,
    pub bytes_moved: u64,
    pub bytes_reclaimed: u64,
}

/// Result of `Shard::scrub`.
#[derive(Debug, Clone, Default)]
pub struct ScrubStats {
    pub objects_checked: u64,
    pub bytes_checked: u64,
    pub corrupt_objects: u64,
}

/// One shard: owns one directory.
pub struct Shard {}

/// Streams one object's data into its reserved span.
pub struct PutWriter {}

impl Shard {
    pub async fn open(_dir: &Path, _cfg: EngineConfig) -> Result<Rc<Shard>> {
        todo!()
    }
    pub fn get(&self, _ns: &str, _key: &str) -> Option<Rc<Object>> {
        todo!()
    }
    pub async fn read(&self, _obj: &Object, _offset: u64, _len: u64) -> Result<Bytes> {
        todo!()
    }
    pub fn put(self: &Rc<Self>, _ns: &str, _key: &str, _size_bytes: u64) -> Result<PutWriter> {
        todo!()
    }
    pub async fn delete(
        &self,
        _ns: &str,
        _key: &str,
        _expect: Expect,
    ) -> Result<Option<Rc<Object>>> {
        todo!()
    }
    pub async fn compose(
        &self,
        _ns: &str,
        _key: &str,
        _sources: &[(String, String)],
        _meta: Bytes,
        _expect: Expect,
        _remove_sources: bool,
    ) -> Result<Rc<Object>> {
        todo!()
    }
    pub fn list(
        &self,
        _ns: &str,
        _prefix: &str,
        _after: Option<&str>,
        _delimiter: Option<&str>,
        _limit: usize,
    ) -> Vec<ListItem> {
        todo!()
    }
    pub fn has_any(&self, _ns: &str) -> bool {
        todo!()
    }
    pub async fn compact(&self, _min_garbage_ratio: f64) -> Result<CompactStats> {
        todo!()
    }
    pub async fn scrub(&self, _max_bytes_per_s: u64) -> Result<ScrubStats> {
        todo!()
    }
    pub async fn checkpoint(&self) -> Result<()> {
        todo!()
    }
    pub async fn close(&self) -> Result<()> {
        todo!()
    }
    pub fn stats(&self) -> ShardStats {
        todo!()
    }
}

impl PutWriter {
    pub async fn write(&mut self, _data: Bytes) -> Result<()> {
        todo!()
    }
    pub async fn finish(self, _meta: Bytes, _expect: Expect) -> Result<Rc<Object>> {
        todo!()
    }
}
