//! bale storage engine: packed O_DIRECT volumes on io_uring, a journaled in-memory index,
//! group commit, recovery, compaction, an S3-FIFO object cache and scrubbing.
//!
//! Everything is per shard, `!Send`, and runs on the monoio (io_uring) runtime of the core that
//! owns the shard. See `docs/engine-api.md` for the contract and `io/FORMAT.md` for the on-disk
//! format.

mod buf;
mod cache;
pub mod copies;
pub mod ec;
mod error;
mod format;
mod offload;
mod punch;
mod shard;
pub mod stats;
mod sys;

pub use error::{Error, Result};

/// Index snapshot images in every version the engine reads, for tests and tools that make or
/// check them (io/FORMAT.md, "Snapshot"); not part of the engine API.
#[doc(hidden)]
pub mod snapshot_image {
    pub use crate::format::{
        decode_snapshot, encode_snapshot, SnapObject, Snapshot, SNAPSHOT_VERSION,
        SNAPSHOT_VERSION_ALIGNED, SNAPSHOT_VERSION_PACKED,
    };
}
pub use format::{MAX_KEY_BYTES, MAX_NS_BYTES};
pub use shard::{
    rebuild_stripe_files, yield_now, BackgroundTotals, CompactStats, ListItem, Meta, Object,
    PutWriter, ScrubStats, Shard, ShardStats, StripeLayout, META_INLINE_BYTES,
};

/// Default `EngineConfig::align_bytes`.
pub(crate) const DEFAULT_ALIGN_BYTES: u32 = 4096;
/// Default `EngineConfig::block_bytes`.
pub(crate) const DEFAULT_BLOCK_BYTES: u32 = 16384;

/// Engine configuration (per shard).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// O_DIRECT alignment; a format parameter. Default 4096.
    pub align_bytes: u32,
    /// Checksum block: one CRC32C per block of object data. Default 16384.
    pub block_bytes: u32,
    /// Roll to a new volume file past this size. Default 1 GiB.
    pub volume_target_bytes: u64,
    /// Aligned staging buffer per `PutWriter`. Default 1 MiB.
    pub write_buffer_bytes: usize,
    /// Per-shard object cache size (0 = off).
    pub cache_bytes: u64,
    /// Only objects up to this size are cached. Default 1 MiB.
    pub cache_max_object_bytes: u64,
    /// Free space a PUT (or a compaction copy) may not allocate into, on top of the size of an
    /// index snapshot: it keeps room for journal appends (DELETE, multipart complete) and
    /// checkpoints on a full disk, so space can always be freed (ADR 5). 0 turns the check off.
    /// Per shard. Default 64 MiB.
    pub reserve_bytes: u64,
    /// Objects of at most this many bytes are packed (FORMAT.md, "Packed records"): the PUT
    /// holds them in memory and the group commit writes a batch's records back to back, 8-byte
    /// granular, in one aligned write. 0 places every record at an aligned offset (format 1's
    /// placement). At most [`MAX_PACK_BYTES`]. Default 64 KiB.
    pub pack_max_bytes: u64,
    /// Heap bytes this shard's index keeps its key blocks in (ADR 29): past it, cold blocks
    /// are written to the shard's spill file (`index.spill`, scratch, never read across
    /// restarts) and read back when needed. 0 (default): no budget, no spill file.
    pub index_memory_bytes: u64,
    /// Record format written (io/FORMAT.md, "Volume record"): 3 (default), or 1, the record of
    /// formats 1 and 2 (names and CRC trailer in the record), which upgrade tests use to make a
    /// directory as older code wrote it. Both are always read.
    #[doc(hidden)]
    pub record_version: u16,
}

/// Largest `EngineConfig::pack_max_bytes`: bounds the memory a packed PUT holds.
pub const MAX_PACK_BYTES: u64 = 1 << 20;

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            align_bytes: DEFAULT_ALIGN_BYTES,
            block_bytes: DEFAULT_BLOCK_BYTES,
            volume_target_bytes: 1 << 30,
            write_buffer_bytes: 1 << 20,
            cache_bytes: 0,
            cache_max_object_bytes: 1 << 20,
            reserve_bytes: 64 << 20,
            pack_max_bytes: 64 << 10,
            index_memory_bytes: 0,
            record_version: format::RECORD_VERSION,
        }
    }
}

/// A precondition checked atomically at commit time (in the group-commit apply step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// No condition.
    Any,
    /// The key must not exist.
    Absent,
    /// The key must exist with exactly this version (`Object::seq`).
    Seq(u64),
}
