//! On-disk encodings: volume records, journal entries, index snapshot. See io/FORMAT.md; keep the
//! two in step. All integers are little-endian.

use std::rc::Rc;

use bytes::Bytes;

use crate::buf::round_up_u64;
use crate::error::{Error, Result};

/// Record header magic: bytes "BALR".
pub const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"BALR");
/// Record format version written: a 32-byte header (data length, seq, a CRC32C of the
/// namespace and key instead of the names, header CRC), then the data, no trailer (ADR 27).
pub const RECORD_VERSION: u16 = 3;
/// The record version of formats 1 and 2 (header, names, data, CRC trailer): still read.
pub const RECORD_VERSION_NAMED: u16 = 1;
/// Record header size in bytes (version 3, including its CRC); the data follows it.
pub const RECORD_HEADER_BYTES: u64 = 32;
/// Fixed header size of a version-1 record (the names and the data follow it).
pub const RECORD_HEADER_BYTES_NAMED: u64 = 36;
const _: () = assert!(
    RECORD_HEADER_BYTES < RECORD_HEADER_BYTES_NAMED,
    "a record's head length tells its version"
);
/// Journal format version written (first byte of every entry payload). Version 3: a flags byte
/// after the lsn (`ENTRY_BATCH_START`, `ENTRY_RECORD_SYNCED_WITH_JOURNAL`; ADR 22). Version 2:
/// extents may name records at unaligned (8-byte granular) offsets, and each relocate move
/// carries the record's new span. Versions 2 and 1 (aligned records) are still read.
pub const JOURNAL_VERSION: u8 = 3;
/// The journal version of format 2 (packed records, no flags byte; still read).
pub const JOURNAL_VERSION_PACKED: u8 = 2;
/// The journal version of data directories written before packed records (still read).
pub const JOURNAL_VERSION_ALIGNED: u8 = 1;
/// Snapshot magic: bytes "BALS".
pub const SNAPSHOT_MAGIC: u32 = u32::from_le_bytes(*b"BALS");
/// Snapshot format version written. Version 3: objects front-coded against the previous one
/// (namespace once per run, key's shared prefix, metadata's shared ends and hex-packed middle)
/// with variable-length integers (ADR 23). Versions 2 and 1 are still read.
pub const SNAPSHOT_VERSION: u32 = 3;
/// The snapshot version of format 2 (packed records; fixed-width layout of version 1).
pub const SNAPSHOT_VERSION_PACKED: u32 = 2;
/// The snapshot version of data directories written before packed records (still read).
pub const SNAPSHOT_VERSION_ALIGNED: u32 = 1;
/// Packed records start at multiples of this many bytes, and their spans are multiples of it.
pub const PACK_GRANULE_BYTES: u64 = 8;
/// Largest namespace in bytes.
pub const MAX_NS_BYTES: usize = 1024;
/// Largest key in bytes. Room for a 1,024-byte key plus a suffix of up to 64 bytes that a
/// caller may add to derive keys of its own (the server's multipart upload records add 33).
pub const MAX_KEY_BYTES: usize = 1024 + 64;
const _: () = assert!(
    MAX_KEY_BYTES <= u16::MAX as usize,
    "key_len is a u16 on disk"
);
/// Largest journal entry payload accepted at replay (guards against garbage lengths).
pub const MAX_JOURNAL_ENTRY_BYTES: u32 = 64 << 20;

/// Number of checksum blocks covering `data_len` bytes.
pub fn block_count(data_len: u64, block_bytes: u32) -> u64 {
    data_len.div_ceil(block_bytes as u64)
}

/// Trailer size of a version-1 record: n_blocks u32, CRC table, trailer CRC u32.
pub fn trailer_bytes(data_len: u64, block_bytes: u32) -> u64 {
    4 + 4 * block_count(data_len, block_bytes) + 4
}

/// Exact bytes of a record of the version written: header and data, without padding.
pub fn record_raw_bytes(data_len: u64) -> u64 {
    RECORD_HEADER_BYTES + data_len
}

/// Exact bytes of a version-1 record: header, names, data and trailer, without padding.
pub fn record_raw_bytes_named(
    ns_len: usize,
    key_len: usize,
    data_len: u64,
    block_bytes: u32,
) -> u64 {
    RECORD_HEADER_BYTES_NAMED
        + ns_len as u64
        + key_len as u64
        + data_len
        + trailer_bytes(data_len, block_bytes)
}

/// Exact bytes of the record an extent names, from its head length (`data_offset -
/// record_offset`): 32 is a version-3 record (no trailer), anything longer (at least 36) a
/// version-1 record, whose CRC trailer follows the data. None: not a head any version has.
pub fn record_raw_bytes_of_extent(head_bytes: u64, data_len: u64, block_bytes: u32) -> Option<u64> {
    match head_bytes {
        RECORD_HEADER_BYTES => head_bytes.checked_add(data_len),
        h if h >= RECORD_HEADER_BYTES_NAMED && block_bytes > 0 => {
            let trailer = block_count(data_len, block_bytes)
                .checked_mul(4)?
                .checked_add(8)?;
            h.checked_add(data_len)?.checked_add(trailer)
        }
        _ => None,
    }
}

/// Span of a packed record: its exact bytes rounded up to [`PACK_GRANULE_BYTES`].
pub fn packed_span_bytes(raw_bytes: u64) -> u64 {
    round_up_u64(raw_bytes, PACK_GRANULE_BYTES)
}

/// Total aligned span of a streamed record of `raw_bytes`.
pub fn record_span_bytes(raw_bytes: u64, align_bytes: u32) -> u64 {
    round_up_u64(raw_bytes, align_bytes as u64)
}

/// What a version-3 record keeps of its names: CRC32C of `ns_len u16 ‖ ns ‖ key` (enough to
/// tell a record from another one read by mistake; the index holds the names).
pub fn record_key_check(ns: &str, key: &str) -> u32 {
    let c = crc32c::crc32c(&(ns.len() as u16).to_le_bytes());
    let c = crc32c::crc32c_append(c, ns.as_bytes());
    crc32c::crc32c_append(c, key.as_bytes())
}

/// Encode a record header of the version written ([`RECORD_VERSION`]); the data follows it.
pub fn encode_record_head(out: &mut Vec<u8>, ns: &str, key: &str, data_len: u64, seq: u64) {
    assert!(ns.len() <= MAX_NS_BYTES && key.len() <= MAX_KEY_BYTES);
    let start = out.len();
    out.extend_from_slice(&RECORD_MAGIC.to_le_bytes());
    out.extend_from_slice(&RECORD_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // flags
    out.extend_from_slice(&data_len.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&record_key_check(ns, key).to_le_bytes());
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    assert_eq!((out.len() - start) as u64, RECORD_HEADER_BYTES);
}

/// Encode a version-1 record header followed by ns and key bytes (formats 1 and 2; written
/// only when `EngineConfig::record_version` asks for it, to make old directories in tests).
pub fn encode_record_head_named(
    out: &mut Vec<u8>,
    ns: &str,
    key: &str,
    data_len: u64,
    seq: u64,
    block_bytes: u32,
) {
    assert!(ns.len() <= MAX_NS_BYTES && key.len() <= MAX_KEY_BYTES);
    let start = out.len();
    out.extend_from_slice(&RECORD_MAGIC.to_le_bytes());
    out.extend_from_slice(&RECORD_VERSION_NAMED.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // flags
    out.extend_from_slice(&(ns.len() as u16).to_le_bytes());
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(&block_bytes.to_le_bytes());
    out.extend_from_slice(&data_len.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    assert_eq!((out.len() - start) as u64, RECORD_HEADER_BYTES_NAMED);
    out.extend_from_slice(ns.as_bytes());
    out.extend_from_slice(key.as_bytes());
}

/// How a record names what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordNames {
    /// Version 3: [`record_key_check`] of its namespace and key.
    KeyCheck(u32),
    /// Version 1: the names follow the header; the data's checksum block size.
    Inline {
        ns_len: u16,
        key_len: u16,
        block_bytes: u32,
    },
}

/// Parsed fixed record header (either version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    pub version: u16,
    pub flags: u16,
    pub data_len: u64,
    pub seq: u64,
    pub names: RecordNames,
}

impl RecordHeader {
    /// Bytes from the record's start to its first data byte.
    pub fn head_bytes(&self) -> u64 {
        match self.names {
            RecordNames::KeyCheck(_) => RECORD_HEADER_BYTES,
            RecordNames::Inline {
                ns_len, key_len, ..
            } => RECORD_HEADER_BYTES_NAMED + u64::from(ns_len) + u64::from(key_len),
        }
    }

    /// Whether `record` (its bytes from the start, at least through the names) was written
    /// for `ns`/`key`.
    pub fn names_match(&self, record: &[u8], ns: &str, key: &str) -> bool {
        match self.names {
            RecordNames::KeyCheck(c) => c == record_key_check(ns, key),
            RecordNames::Inline {
                ns_len, key_len, ..
            } => {
                let at = RECORD_HEADER_BYTES_NAMED as usize;
                let (ns_len, key_len) = (ns_len as usize, key_len as usize);
                ns_len == ns.len()
                    && key_len == key.len()
                    && record.get(at..at + ns_len) == Some(ns.as_bytes())
                    && record.get(at + ns_len..at + ns_len + key_len) == Some(key.as_bytes())
            }
        }
    }
}

/// Decode and check a record header of version 3 or 1 (magic, version, CRC). Needs at least
/// [`RECORD_HEADER_BYTES_NAMED`] bytes for a version-1 header, [`RECORD_HEADER_BYTES`] for
/// version 3.
pub fn decode_record_header(b: &[u8]) -> std::result::Result<RecordHeader, String> {
    if b.len() < 6 {
        return Err("short record header".into());
    }
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    if u32_at(0) != RECORD_MAGIC {
        return Err(format!("bad record magic {:#x}", u32_at(0)));
    }
    let version = u16_at(4);
    let head = match version {
        RECORD_VERSION => RECORD_HEADER_BYTES as usize,
        RECORD_VERSION_NAMED => RECORD_HEADER_BYTES_NAMED as usize,
        v => return Err(format!("unknown record version {v}")),
    };
    if b.len() < head {
        return Err("short record header".into());
    }
    if crc32c::crc32c(&b[..head - 4]) != u32_at(head - 4) {
        return Err("record header crc mismatch".into());
    }
    Ok(if version == RECORD_VERSION {
        RecordHeader {
            version,
            flags: u16_at(6),
            data_len: u64_at(8),
            seq: u64_at(16),
            names: RecordNames::KeyCheck(u32_at(24)),
        }
    } else {
        RecordHeader {
            version,
            flags: u16_at(6),
            data_len: u64_at(16),
            seq: u64_at(24),
            names: RecordNames::Inline {
                ns_len: u16_at(8),
                key_len: u16_at(10),
                block_bytes: u32_at(12),
            },
        }
    })
}

/// Encode a version-1 record's trailer: n_blocks, CRC table, trailer CRC.
pub fn encode_record_trailer(out: &mut Vec<u8>, crcs: &[u32]) {
    let start = out.len();
    out.extend_from_slice(&(crcs.len() as u32).to_le_bytes());
    for c in crcs {
        out.extend_from_slice(&c.to_le_bytes());
    }
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Location and checksums of one extent, as stored in the journal and the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtentRec {
    pub volume_id: u32,
    /// Offset of the record (its header) in the volume file: aligned for streamed records, a
    /// multiple of [`PACK_GRANULE_BYTES`] for packed ones.
    pub record_offset: u64,
    /// Offset of the first data byte in the volume file.
    pub data_offset: u64,
    /// Data length in bytes.
    pub len: u64,
    /// Span of the whole record in bytes: aligned for streamed records, its exact bytes rounded
    /// up to [`PACK_GRANULE_BYTES`] for packed ones.
    pub span_bytes: u64,
    pub block_bytes: u32,
    pub crcs: Rc<[u32]>,
}

/// One relocated extent (compaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub extent_index: u32,
    pub volume_id: u32,
    pub record_offset: u64,
    pub data_offset: u64,
    /// The copy's span (journal version 2); 0 in version-1 entries: the span is unchanged.
    pub span_bytes: u64,
}

/// A journal entry (decoded payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Put {
        seq: u64,
        mtime_ms: u64,
        ns: String,
        key: String,
        meta: Bytes,
        extent: ExtentRec,
    },
    Delete {
        seq: u64,
        ns: String,
        key: String,
    },
    Compose {
        seq: u64,
        mtime_ms: u64,
        ns: String,
        key: String,
        meta: Bytes,
        remove_sources: bool,
        /// (ns, key, seq of the source version used)
        sources: Vec<(String, String, u64)>,
    },
    Relocate {
        seq: u64,
        ns: String,
        key: String,
        moves: Vec<Move>,
    },
}

const KIND_PUT: u8 = 1;
const KIND_DELETE: u8 = 2;
const KIND_COMPOSE: u8 = 3;
const KIND_RELOCATE: u8 = 4;

impl Entry {
    /// The object sequence number this entry carries.
    pub fn seq(&self) -> u64 {
        match self {
            Entry::Put { seq, .. }
            | Entry::Delete { seq, .. }
            | Entry::Compose { seq, .. }
            | Entry::Relocate { seq, .. } => *seq,
        }
    }
}

/// Little-endian writer helpers.
pub struct Enc<'a>(pub &'a mut Vec<u8>);

impl Enc<'_> {
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn str16(&mut self, s: &str) {
        assert!(s.len() <= u16::MAX as usize);
        self.u16(s.len() as u16);
        self.0.extend_from_slice(s.as_bytes());
    }
    pub fn bytes32(&mut self, b: &[u8]) {
        assert!(b.len() <= u32::MAX as usize);
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    /// LEB128: seven bits a byte, low first, the high bit set on all but the last.
    pub fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    pub fn extent(&mut self, e: &ExtentRec) {
        self.u32(e.volume_id);
        self.u64(e.record_offset);
        self.u64(e.data_offset);
        self.u64(e.len);
        self.u64(e.span_bytes);
        self.u32(e.block_bytes);
        self.u32(e.crcs.len() as u32);
        for c in e.crcs.iter() {
            self.u32(*c);
        }
    }
}

/// Little-endian reader; every getter fails (None) on short input.
pub struct Dec<'a> {
    pub b: &'a [u8],
    pub pos: usize,
}

impl<'a> Dec<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Dec { b, pos: 0 }
    }
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.b.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    pub fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    /// A LEB128 `u64` in its shortest form (a longer one, or one past 64 bits, fails).
    pub fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            let bits = u64::from(b & 0x7f);
            if i == 9 && b > 1 {
                return None;
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                if i > 0 && b == 0 {
                    return None;
                }
                return Some(v);
            }
        }
        None
    }
    pub fn str16(&mut self) -> Option<String> {
        let n = self.u16()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
    pub fn bytes32(&mut self) -> Option<Bytes> {
        let n = self.u32()? as usize;
        Some(Bytes::copy_from_slice(self.take(n)?))
    }
    pub fn extent(&mut self) -> Option<ExtentRec> {
        let volume_id = self.u32()?;
        let record_offset = self.u64()?;
        let data_offset = self.u64()?;
        let len = self.u64()?;
        let span_bytes = self.u64()?;
        let block_bytes = self.u32()?;
        let n = self.u32()? as usize;
        if block_bytes == 0 || n as u64 != block_count(len, block_bytes) {
            return None;
        }
        let raw = self.take(n.checked_mul(4)?)?;
        let crcs: Rc<[u32]> = raw
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        Some(ExtentRec {
            volume_id,
            record_offset,
            data_offset,
            len,
            span_bytes,
            block_bytes,
            crcs,
        })
    }
    pub fn done(&self) -> bool {
        self.pos == self.b.len()
    }
    /// Bytes not consumed yet.
    pub fn remaining_bytes(&self) -> usize {
        self.b.len() - self.pos
    }
    /// Capacity to reserve for `count` items of at least `min_item_bytes` each: never more than
    /// the remaining input can hold, so a forged count cannot drive a large allocation.
    pub fn bounded_capacity(&self, count: u64, min_item_bytes: usize) -> usize {
        assert!(min_item_bytes > 0);
        count.min((self.remaining_bytes() / min_item_bytes) as u64) as usize
    }
}

/// Smallest encoding of a snapshot object: ns str16 + key str16 (empty), size, mtime_ms, seq,
/// meta bytes32 (empty), n_extents.
pub const MIN_SNAPSHOT_OBJECT_BYTES: usize = 2 + 2 + 8 + 8 + 8 + 4 + 4;
/// Smallest encoding of an extent (no CRCs): volume_id, record_offset, data_offset, len,
/// span_bytes, block_bytes, n.
pub const MIN_EXTENT_BYTES: usize = 4 + 8 + 8 + 8 + 8 + 4 + 4;
/// Smallest encoding of a compose source: ns str16 + key str16 (empty), source_seq.
pub const MIN_COMPOSE_SOURCE_BYTES: usize = 2 + 2 + 8;
/// Smallest encoding of one relocate move: extent_index, volume_id, record_offset, data_offset
/// (version 1; version 2 adds span_bytes u64).
pub const MOVE_BYTES: usize = 4 + 4 + 8 + 8;

/// Entry flag (journal version 3): the first entry of a commit batch (one journal write).
pub const ENTRY_BATCH_START: u8 = 1;
/// Entry flag (journal version 3): a Put whose record's volume was fdatasynced at the same time
/// as the journal write that holds this entry, not before it. Only entries of the journal's
/// last batch can name a record that did not reach the disk; recovery verifies those (ADR 22).
pub const ENTRY_RECORD_SYNCED_WITH_JOURNAL: u8 = 2;
/// Every flag bit this code knows; an entry with another bit set does not decode.
pub const ENTRY_FLAGS_KNOWN: u8 = ENTRY_BATCH_START | ENTRY_RECORD_SYNCED_WITH_JOURNAL;

/// Append one framed journal entry without flags (see `encode_journal_entry_flagged`).
#[allow(dead_code)] // the fuzz crate's and the tests' encoder
pub fn encode_journal_entry(out: &mut Vec<u8>, lsn: u64, e: &Entry) {
    encode_journal_entry_flagged(out, lsn, 0, e)
}

/// Append one framed journal entry: [len u32][crc32c u32][payload], payload =
/// [version u8][kind u8][lsn u64][flags u8][kind-specific fields]. The lsn and flags are
/// written after the kind byte in every kind, so they are written by each arm.
pub fn encode_journal_entry_flagged(out: &mut Vec<u8>, lsn: u64, flags: u8, e: &Entry) {
    assert_eq!(flags & !ENTRY_FLAGS_KNOWN, 0, "unknown journal entry flags");
    let frame_start = out.len();
    out.extend_from_slice(&[0u8; 8]);
    let payload_start = out.len();
    let mut w = Enc(out);
    w.u8(JOURNAL_VERSION);
    match e {
        Entry::Put {
            seq,
            mtime_ms,
            ns,
            key,
            meta,
            extent,
        } => {
            w.u8(KIND_PUT);
            w.u64(lsn);
            w.u8(flags);
            w.u64(*seq);
            w.u64(*mtime_ms);
            w.str16(ns);
            w.str16(key);
            w.bytes32(meta);
            w.extent(extent);
        }
        Entry::Delete { seq, ns, key } => {
            w.u8(KIND_DELETE);
            w.u64(lsn);
            w.u8(flags);
            w.u64(*seq);
            w.str16(ns);
            w.str16(key);
        }
        Entry::Compose {
            seq,
            mtime_ms,
            ns,
            key,
            meta,
            remove_sources,
            sources,
        } => {
            w.u8(KIND_COMPOSE);
            w.u64(lsn);
            w.u8(flags);
            w.u64(*seq);
            w.u64(*mtime_ms);
            w.str16(ns);
            w.str16(key);
            w.bytes32(meta);
            w.u8(*remove_sources as u8);
            w.u32(sources.len() as u32);
            for (sns, skey, sseq) in sources {
                w.str16(sns);
                w.str16(skey);
                w.u64(*sseq);
            }
        }
        Entry::Relocate {
            seq,
            ns,
            key,
            moves,
        } => {
            w.u8(KIND_RELOCATE);
            w.u64(lsn);
            w.u8(flags);
            w.u64(*seq);
            w.str16(ns);
            w.str16(key);
            w.u32(moves.len() as u32);
            for m in moves {
                w.u32(m.extent_index);
                w.u32(m.volume_id);
                w.u64(m.record_offset);
                w.u64(m.data_offset);
                w.u64(m.span_bytes);
            }
        }
    }
    let payload_len = out.len() - payload_start;
    assert!(
        payload_len <= MAX_JOURNAL_ENTRY_BYTES as usize,
        "journal entry too large"
    );
    let crc = crc32c::crc32c(&out[payload_start..]);
    out[frame_start..frame_start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    out[frame_start + 4..frame_start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Decode one entry payload (after the frame's length and CRC were checked); flags dropped.
pub fn decode_journal_payload(p: &[u8]) -> Option<(u64, Entry)> {
    decode_journal_payload_flagged(p).map(|(lsn, _, e)| (lsn, e))
}

/// Decode one entry payload: (lsn, flags, entry). Entries of versions 1 and 2 have no flags
/// byte and decode with flags 0 (their records were durable before the journal named them).
pub fn decode_journal_payload_flagged(p: &[u8]) -> Option<(u64, u8, Entry)> {
    let mut d = Dec::new(p);
    let version = d.u8()?;
    if !matches!(
        version,
        JOURNAL_VERSION | JOURNAL_VERSION_PACKED | JOURNAL_VERSION_ALIGNED
    ) {
        return None;
    }
    let kind = d.u8()?;
    let lsn = d.u64()?;
    let flags = if version == JOURNAL_VERSION {
        d.u8()?
    } else {
        0
    };
    if flags & !ENTRY_FLAGS_KNOWN != 0 {
        return None;
    }
    let e = match kind {
        KIND_PUT => Entry::Put {
            seq: d.u64()?,
            mtime_ms: d.u64()?,
            ns: d.str16()?,
            key: d.str16()?,
            meta: d.bytes32()?,
            extent: d.extent()?,
        },
        KIND_DELETE => Entry::Delete {
            seq: d.u64()?,
            ns: d.str16()?,
            key: d.str16()?,
        },
        KIND_COMPOSE => {
            let seq = d.u64()?;
            let mtime_ms = d.u64()?;
            let ns = d.str16()?;
            let key = d.str16()?;
            let meta = d.bytes32()?;
            let remove_sources = d.u8()? != 0;
            let n = d.u32()? as usize;
            let mut sources =
                Vec::with_capacity(d.bounded_capacity(n as u64, MIN_COMPOSE_SOURCE_BYTES));
            for _ in 0..n {
                sources.push((d.str16()?, d.str16()?, d.u64()?));
            }
            Entry::Compose {
                seq,
                mtime_ms,
                ns,
                key,
                meta,
                remove_sources,
                sources,
            }
        }
        KIND_RELOCATE => {
            let seq = d.u64()?;
            let ns = d.str16()?;
            let key = d.str16()?;
            let n = d.u32()? as usize;
            let mut moves = Vec::with_capacity(d.bounded_capacity(n as u64, MOVE_BYTES));
            for _ in 0..n {
                let extent_index = d.u32()?;
                let volume_id = d.u32()?;
                let record_offset = d.u64()?;
                let data_offset = d.u64()?;
                let span_bytes = if version == JOURNAL_VERSION_ALIGNED {
                    0
                } else {
                    d.u64()?
                };
                moves.push(Move {
                    extent_index,
                    volume_id,
                    record_offset,
                    data_offset,
                    span_bytes,
                });
            }
            Entry::Relocate {
                seq,
                ns,
                key,
                moves,
            }
        }
        _ => return None,
    };
    if !d.done() {
        return None;
    }
    Some((lsn, flags, e))
}

/// Result of scanning a journal image: the entries and the length of the valid prefix.
pub struct JournalScan {
    pub entries: Vec<(u64, Entry)>,
    /// For each entry (same order): its frame's byte offset in the journal and its flags.
    pub frames: Vec<(u64, u8)>,
    pub valid_bytes: u64,
    /// Why the scan stopped before the end, if it did.
    pub tail_error: Option<String>,
}

/// Parse a whole journal image, stopping at the first bad frame (torn or corrupt tail).
pub fn scan_journal(b: &[u8]) -> JournalScan {
    let mut pos = 0usize;
    let mut entries = Vec::new();
    let mut frames = Vec::new();
    let mut tail_error = None;
    while pos < b.len() {
        if b.len() - pos < 8 {
            tail_error = Some(format!("short frame header at {pos}"));
            break;
        }
        let len = u32::from_le_bytes(b[pos..pos + 4].try_into().unwrap());
        let crc = u32::from_le_bytes(b[pos + 4..pos + 8].try_into().unwrap());
        if len == 0 || len > MAX_JOURNAL_ENTRY_BYTES || (b.len() - pos - 8) < len as usize {
            tail_error = Some(format!("bad frame length {len} at {pos}"));
            break;
        }
        let payload = &b[pos + 8..pos + 8 + len as usize];
        if crc32c::crc32c(payload) != crc {
            tail_error = Some(format!("frame crc mismatch at {pos}"));
            break;
        }
        match decode_journal_payload_flagged(payload) {
            Some((lsn, flags, e)) => {
                entries.push((lsn, e));
                frames.push((pos as u64, flags));
            }
            None => {
                tail_error = Some(format!("undecodable entry at {pos}"));
                break;
            }
        }
        pos += 8 + len as usize;
    }
    JournalScan {
        entries,
        frames,
        valid_bytes: pos as u64,
        tail_error,
    }
}

/// Whether `b[from..]` holds a run of at least 512 zero bytes: the mark of a write that never
/// reached the disk (sectors read back as zeros), as opposed to flipped bits.
pub fn has_zero_sector(b: &[u8], from: usize) -> bool {
    const RUN: usize = 512;
    let mut run = 0usize;
    for x in &b[from.min(b.len())..] {
        if *x == 0 {
            run += 1;
            if run >= RUN {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

/// After a bad frame at `from`, the offset of any later frame that is whole, CRC-valid and
/// decodable. A torn tail has none (appends only ever extend the file); finding one means the
/// damage is in the middle of the journal, where truncating would drop acknowledged entries.
/// Cost: one CRC over each candidate whose length field fits; only runs after damage is found.
pub fn valid_frame_after(b: &[u8], from: usize) -> Option<usize> {
    let mut pos = from + 1;
    while pos + 8 <= b.len() {
        let len = u32::from_le_bytes(b[pos..pos + 4].try_into().unwrap());
        if len != 0 && len <= MAX_JOURNAL_ENTRY_BYTES && b.len() - pos - 8 >= len as usize {
            let crc = u32::from_le_bytes(b[pos + 4..pos + 8].try_into().unwrap());
            let payload = &b[pos + 8..pos + 8 + len as usize];
            if crc32c::crc32c(payload) == crc && decode_journal_payload(payload).is_some() {
                return Some(pos);
            }
        }
        pos += 1;
    }
    None
}

/// Snapshot header: magic, version, next_seq, applied_lsn, object count.
pub fn encode_snapshot_header(out: &mut Vec<u8>, next_seq: u64, applied_lsn: u64, objects: u64) {
    let mut w = Enc(out);
    w.u32(SNAPSHOT_MAGIC);
    w.u32(SNAPSHOT_VERSION);
    w.u64(next_seq);
    w.u64(applied_lsn);
    w.u64(objects);
}

/// Bytes of a snapshot holding no objects: the header (magic, version, next_seq, applied_lsn,
/// n_objects) and the trailing CRC.
pub const SNAPSHOT_EMPTY_BYTES: u64 = 4 + 4 + 8 + 8 + 8 + 4;

/// Bytes of the fixed-width (version 1 and 2) encoding of one object whose extents hold
/// `crc_counts` CRCs.
pub fn snapshot_object_bytes_v2(
    ns_len: usize,
    key_len: usize,
    meta_len: usize,
    crc_counts: impl Iterator<Item = usize>,
) -> u64 {
    let extents: u64 = crc_counts
        .map(|n| MIN_EXTENT_BYTES as u64 + 4 * n as u64)
        .sum();
    (MIN_SNAPSHOT_OBJECT_BYTES + ns_len + key_len + meta_len) as u64 + extents
}

/// Most bytes a version-3 object takes beyond its fixed-width encoding: flags (1), key varints
/// (3 + 3 instead of a u16), size, mtime and seq varints (3 × 10 instead of 3 × 8), metadata
/// varints (2 + 2 + 5 instead of a u32), the extent count (5 instead of 4).
const SNAPSHOT_V3_OBJECT_SLACK_BYTES: u64 = 1 + 4 + 6 + 5 + 1;
/// Most bytes a version-3 extent takes beyond its fixed-width encoding: volume (5), record
/// offset, header, length, tail (4 × 10) and block size (5) varints instead of 44 bytes, no
/// CRC count.
const SNAPSHOT_V3_EXTENT_SLACK_BYTES: u64 = 5 + 40 + 5 - 44;

/// Most bytes `SnapshotEncoder::object` writes for one object whose extents hold `crc_counts`
/// CRCs, whatever the object before it (front coding only ever saves): what the index accounts
/// for the snapshot (disk headroom), an upper bound of the file's size.
pub fn snapshot_object_bytes(
    ns_len: usize,
    key_len: usize,
    meta_len: usize,
    crc_counts: impl Iterator<Item = usize>,
) -> u64 {
    let mut extents = 0u64;
    let v2 = snapshot_object_bytes_v2(
        ns_len,
        key_len,
        meta_len,
        crc_counts.inspect(|_| extents += 1),
    );
    v2 + SNAPSHOT_V3_OBJECT_SLACK_BYTES + extents * SNAPSHOT_V3_EXTENT_SLACK_BYTES
}

/// One snapshot object record of the fixed-width layout (versions 1 and 2: read, and written
/// by tests and tools that make old images).
#[allow(clippy::too_many_arguments)]
pub fn encode_snapshot_object_v2(
    out: &mut Vec<u8>,
    ns: &str,
    key: &str,
    size: u64,
    mtime_ms: u64,
    seq: u64,
    meta: &[u8],
    extents: &[ExtentRec],
) {
    let mut w = Enc(out);
    w.str16(ns);
    w.str16(key);
    w.u64(size);
    w.u64(mtime_ms);
    w.u64(seq);
    w.bytes32(meta);
    w.u32(extents.len() as u32);
    for e in extents {
        w.extent(e);
    }
}

/// Object flag of version 3: a namespace (str16) follows; otherwise the object is in the
/// previous object's namespace.
const SNAP_NEW_NS: u8 = 1;
/// Most bytes of a version-3 object's metadata taken from the previous object's (shared start
/// plus shared end): bounds what a small input can make the decoder build.
pub const SNAPSHOT_META_SHARED_MAX_BYTES: usize = 255;

/// Smallest version-3 object: flags, key shared and suffix lengths, size, mtime_ms, seq,
/// metadata shared start, shared end and middle, extent count (one byte each).
pub const MIN_SNAPSHOT_V3_OBJECT_BYTES: usize = 10;
/// Smallest version-3 extent (no CRCs): volume, record offset, header, length, tail, block
/// size (one byte each).
pub const MIN_SNAPSHOT_V3_EXTENT_BYTES: usize = 6;

fn is_hex_digit(c: u8) -> bool {
    c.is_ascii_digit() || (b'a'..=b'f').contains(&c)
}

fn hex_value(c: u8) -> u8 {
    if c.is_ascii_digit() {
        c - b'0'
    } else {
        c - b'a' + 10
    }
}

/// Writes version-3 snapshot objects, each front-coded against the one before it (see
/// io/FORMAT.md, "Snapshot"). One encoder per snapshot, objects in order.
#[derive(Default)]
pub struct SnapshotEncoder {
    ns: Option<String>,
    key: Vec<u8>,
    meta: Vec<u8>,
}

impl SnapshotEncoder {
    /// One object, after the previous one.
    #[allow(clippy::too_many_arguments)]
    pub fn object(
        &mut self,
        out: &mut Vec<u8>,
        ns: &str,
        key: &str,
        size: u64,
        mtime_ms: u64,
        seq: u64,
        meta: &[u8],
        extents: &[ExtentRec],
    ) {
        let mut w = Enc(out);
        let key = key.as_bytes();
        let shared = if self.ns.as_deref() == Some(ns) {
            w.u8(0);
            common_prefix(&self.key, key)
        } else {
            w.u8(SNAP_NEW_NS);
            w.str16(ns);
            self.ns = Some(ns.to_string());
            0
        };
        w.varint(shared as u64);
        w.varint((key.len() - shared) as u64);
        w.0.extend_from_slice(&key[shared..]);
        self.key.clear();
        self.key.extend_from_slice(key);
        w.varint(size);
        w.varint(mtime_ms);
        w.varint(seq);
        let (pre, suf) = meta_shared(&self.meta, meta);
        let mid = &meta[pre..meta.len() - suf];
        let packed =
            !mid.is_empty() && mid.len().is_multiple_of(2) && mid.iter().all(|c| is_hex_digit(*c));
        w.varint(pre as u64);
        w.varint(suf as u64);
        w.varint((mid.len() as u64) << 1 | u64::from(packed));
        if packed {
            for pair in mid.chunks_exact(2) {
                w.u8(hex_value(pair[0]) << 4 | hex_value(pair[1]));
            }
        } else {
            w.0.extend_from_slice(mid);
        }
        self.meta.clear();
        self.meta.extend_from_slice(meta);
        w.varint(extents.len() as u64);
        for e in extents {
            // The index's extents hold their data inside their record's span
            // (`Shard::resolve_extent`).
            let head = e.data_offset.checked_sub(e.record_offset);
            let tail = head.and_then(|h| e.span_bytes.checked_sub(h)?.checked_sub(e.len));
            let (Some(head), Some(tail)) = (head, tail) else {
                panic!("snapshot of an extent whose data is outside its record: {e:?}");
            };
            w.varint(u64::from(e.volume_id));
            w.varint(e.record_offset);
            w.varint(head);
            w.varint(e.len);
            w.varint(tail);
            w.varint(u64::from(e.block_bytes));
            for c in e.crcs.iter() {
                w.u32(*c);
            }
        }
    }
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// (shared start, shared end) of `meta` with the previous object's `prev`: as long as they
/// go, at most `SNAPSHOT_META_SHARED_MAX_BYTES` together, never overlapping; one hex digit
/// shorter when that makes an odd middle of hex digits even (packed: a digest that differs
/// from the previous one, whatever digits they happen to share).
fn meta_shared(prev: &[u8], meta: &[u8]) -> (usize, usize) {
    let most = prev.len().min(meta.len());
    let pre = common_prefix(prev, meta).min(SNAPSHOT_META_SHARED_MAX_BYTES);
    let mut suf = prev
        .iter()
        .rev()
        .zip(meta.iter().rev())
        .take_while(|(x, y)| x == y)
        .count()
        .min(most - pre)
        .min(SNAPSHOT_META_SHARED_MAX_BYTES - pre);
    let mid = &meta[pre..meta.len() - suf];
    if !mid.len().is_multiple_of(2) && mid.iter().all(|c| is_hex_digit(*c)) {
        if pre > 0 && is_hex_digit(meta[pre - 1]) {
            return (pre - 1, suf);
        }
        if suf > 0 && is_hex_digit(meta[meta.len() - suf]) {
            suf -= 1;
        }
    }
    (pre, suf)
}

/// A decoded snapshot object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapObject {
    pub ns: String,
    pub key: String,
    pub size: u64,
    pub mtime_ms: u64,
    pub seq: u64,
    pub meta: Bytes,
    pub extents: Vec<ExtentRec>,
}

/// Decoded snapshot.
pub struct Snapshot {
    /// The version it was written in.
    pub version: u32,
    pub next_seq: u64,
    pub applied_lsn: u64,
    pub objects: Vec<SnapObject>,
}

/// What a snapshot's header says, besides its objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotHead {
    /// The version it was written in.
    pub version: u32,
    pub next_seq: u64,
    pub applied_lsn: u64,
    /// How many objects it holds.
    pub objects: u64,
}

/// Decode a whole snapshot image; the last 4 bytes are the CRC32C of everything before them.
/// Tests, fuzzing and tools; opening a shard streams the objects (`decode_snapshot_each`).
pub fn decode_snapshot(b: &[u8]) -> Result<Snapshot> {
    let mut objects = Vec::new();
    let head = decode_snapshot_each(b, |o| {
        objects.push(o.clone());
        Ok(())
    })?;
    Ok(Snapshot {
        version: head.version,
        next_seq: head.next_seq,
        applied_lsn: head.applied_lsn,
        objects,
    })
}

/// Decode a snapshot image object by object: the CRC and header are checked first, then
/// `each` sees every object in key order (borrowed: nothing of the whole snapshot is held at
/// once, so opening a shard of millions of objects needs no second copy of its index).
/// An error from `each` stops the decode and is returned; so is a malformed object, after
/// `each` has seen the objects before it.
pub fn decode_snapshot_each(
    b: &[u8],
    mut each: impl FnMut(&SnapObject) -> Result<()>,
) -> Result<SnapshotHead> {
    let bad = |what: &str| Error::corrupt(format!("index.snap: {what}"));
    if b.len() < 36 {
        return Err(bad("too short"));
    }
    let (body, tail) = b.split_at(b.len() - 4);
    let want = u32::from_le_bytes(tail.try_into().unwrap());
    if crc32c::crc32c(body) != want {
        return Err(bad("crc mismatch"));
    }
    let mut d = Dec::new(body);
    if d.u32() != Some(SNAPSHOT_MAGIC) {
        return Err(bad("bad magic"));
    }
    let version = d.u32().ok_or_else(|| bad("header"))?;
    let min_object_bytes = match version {
        SNAPSHOT_VERSION => MIN_SNAPSHOT_V3_OBJECT_BYTES,
        SNAPSHOT_VERSION_PACKED | SNAPSHOT_VERSION_ALIGNED => MIN_SNAPSHOT_OBJECT_BYTES,
        _ => return Err(bad("unknown version")),
    };
    let next_seq = d.u64().ok_or_else(|| bad("header"))?;
    let applied_lsn = d.u64().ok_or_else(|| bad("header"))?;
    let n = d.u64().ok_or_else(|| bad("header"))?;
    // Every object takes at least its version's smallest encoding: a count the body cannot
    // hold is refused before anything is reserved (finding F1: a forged count reserved 2 GiB).
    if n > (d.remaining_bytes() / min_object_bytes) as u64 {
        return Err(bad(&format!(
            "object count {n} exceeds what {} remaining bytes can hold",
            d.remaining_bytes()
        )));
    }
    // Version 3 codes each object against the one before it, so the previous one is kept
    // until the next is decoded.
    let mut prev: Option<SnapObject> = None;
    for i in 0..n {
        let o = if version == SNAPSHOT_VERSION {
            decode_snapshot_object_v3(&mut d, prev.as_ref())
        } else {
            decode_snapshot_object_v2(&mut d)
        }
        .ok_or_else(|| bad(&format!("object {i} undecodable")))?;
        if let Some(p) = prev.replace(o) {
            each(&p)?;
        }
    }
    if let Some(p) = prev {
        each(&p)?;
    }
    if !d.done() {
        return Err(bad("trailing bytes"));
    }
    Ok(SnapshotHead {
        version,
        next_seq,
        applied_lsn,
        objects: n,
    })
}

fn decode_snapshot_object_v2(d: &mut Dec<'_>) -> Option<SnapObject> {
    let ns = d.str16()?;
    let key = d.str16()?;
    let size = d.u64()?;
    let mtime_ms = d.u64()?;
    let seq = d.u64()?;
    let meta = d.bytes32()?;
    let ne = d.u32()? as usize;
    let mut extents = Vec::with_capacity(d.bounded_capacity(ne as u64, MIN_EXTENT_BYTES));
    for _ in 0..ne {
        extents.push(d.extent()?);
    }
    Some(SnapObject {
        ns,
        key,
        size,
        mtime_ms,
        seq,
        meta,
        extents,
    })
}

fn decode_snapshot_object_v3(d: &mut Dec<'_>, prev: Option<&SnapObject>) -> Option<SnapObject> {
    let ns = match (d.u8()?, prev) {
        (SNAP_NEW_NS, _) => d.str16()?,
        (0, Some(p)) => p.ns.clone(),
        _ => return None,
    };
    let prev_key = match prev {
        Some(p) if p.ns == ns => p.key.as_bytes(),
        _ => &[],
    };
    let shared = usize::try_from(d.varint()?).ok()?;
    let suffix_len = usize::try_from(d.varint()?).ok()?;
    if shared > prev_key.len() || shared.checked_add(suffix_len)? > u16::MAX as usize {
        return None;
    }
    let mut key = Vec::with_capacity(shared + suffix_len.min(d.remaining_bytes()));
    key.extend_from_slice(&prev_key[..shared]);
    key.extend_from_slice(d.take(suffix_len)?);
    let key = String::from_utf8(key).ok()?;
    let size = d.varint()?;
    let mtime_ms = d.varint()?;
    let seq = d.varint()?;
    let prev_meta: &[u8] = prev.map_or(&[], |p| &p.meta);
    let pre = usize::try_from(d.varint()?).ok()?;
    let suf = usize::try_from(d.varint()?).ok()?;
    let mid = d.varint()?;
    let (mid_len, packed) = (usize::try_from(mid >> 1).ok()?, mid & 1 == 1);
    if pre.checked_add(suf)? > prev_meta.len().min(SNAPSHOT_META_SHARED_MAX_BYTES)
        || mid_len > u32::MAX as usize
        || (packed && (mid_len == 0 || !mid_len.is_multiple_of(2)))
    {
        return None;
    }
    let raw = d.take(if packed { mid_len / 2 } else { mid_len })?;
    let mut meta = Vec::with_capacity(pre + mid_len + suf);
    meta.extend_from_slice(&prev_meta[..pre]);
    if packed {
        for b in raw {
            meta.push(HEX_DIGITS[(b >> 4) as usize]);
            meta.push(HEX_DIGITS[(b & 15) as usize]);
        }
    } else {
        meta.extend_from_slice(raw);
    }
    meta.extend_from_slice(&prev_meta[prev_meta.len() - suf..]);
    let ne = d.varint()?;
    let mut extents = Vec::with_capacity(d.bounded_capacity(ne, MIN_SNAPSHOT_V3_EXTENT_BYTES));
    for _ in 0..ne {
        let volume_id = u32::try_from(d.varint()?).ok()?;
        let record_offset = d.varint()?;
        let head = d.varint()?;
        let len = d.varint()?;
        let tail = d.varint()?;
        let block_bytes = u32::try_from(d.varint()?).ok()?;
        let data_offset = record_offset.checked_add(head)?;
        let span_bytes = head.checked_add(len)?.checked_add(tail)?;
        record_offset.checked_add(span_bytes)?;
        if block_bytes == 0 {
            return None;
        }
        let n = usize::try_from(block_count(len, block_bytes)).ok()?;
        let raw = d.take(n.checked_mul(4)?)?;
        let crcs: Rc<[u32]> = raw
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        extents.push(ExtentRec {
            volume_id,
            record_offset,
            data_offset,
            len,
            span_bytes,
            block_bytes,
            crcs,
        });
    }
    Some(SnapObject {
        ns,
        key,
        size,
        mtime_ms,
        seq,
        meta: Bytes::from(meta),
        extents,
    })
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// The whole image of `s` in `version`'s layout (3, or the fixed-width 2 and 1), its CRC
/// included: tests, fuzzing and tools that make or check images.
pub fn encode_snapshot(s: &Snapshot, version: u32) -> Vec<u8> {
    let mut out = Vec::new();
    encode_snapshot_header(&mut out, s.next_seq, s.applied_lsn, s.objects.len() as u64);
    out[4..8].copy_from_slice(&version.to_le_bytes());
    let mut enc = SnapshotEncoder::default();
    for o in &s.objects {
        let args = (
            &o.ns, &o.key, o.size, o.mtime_ms, o.seq, &o.meta, &o.extents,
        );
        if version == SNAPSHOT_VERSION {
            enc.object(
                &mut out, args.0, args.1, args.2, args.3, args.4, args.5, args.6,
            );
        } else {
            encode_snapshot_object_v2(
                &mut out, args.0, args.1, args.2, args.3, args.4, args.5, args.6,
            );
        }
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

#[cfg(test)]
mod tests;
