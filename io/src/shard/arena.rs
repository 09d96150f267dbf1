//! The index's arena: shared chunks of `Bytes` holding what does not fit an object's slot
//! (verbatim metadata, packed template runs of wide slots, CRC tables of objects of more than
//! one checksum block; ADR 17).

use bytes::Bytes;

use super::extent::Crcs;

/// Chunk id of a piece with nothing in the arena.
pub(super) const NO_CHUNK: u32 = u32::MAX;

/// New arena pieces are staged up to this many bytes before they become a chunk (a batch's
/// pieces become one at the end of the batch, whatever their size).
const ARENA_CHUNK_BYTES: usize = 64 << 10;
/// The arena is rewritten when its chunks (with their table entries) hold more than a quarter
/// more than the bytes objects use, plus this much. Each batch makes one chunk (56 bytes of
/// table and allocator overhead besides its pieces), so under small batches this rewrites
/// after about a quarter as many batches as objects stored: a few piece copies per batch.
const ARENA_SLACK_BYTES: usize = 1 << 20;

pub(super) struct Chunk {
    bytes: Bytes,
    /// Bytes of the chunk live objects still use; the chunk goes when none are.
    live_bytes: u32,
}

/// Chunks of `Bytes` holding metadata and CRC tables; pieces are handed out as
/// `Bytes::slice`s (a refcount, no allocation). New pieces are staged and become a chunk (one
/// allocation of their exact size) at the end of each batch (`freeze`), before any reader can
/// see them. A chunk is freed when no object uses it; `sparse` says when the chunks hold much
/// more than the objects use (the index then rewrites the arena).
#[derive(Default)]
pub(super) struct Arena {
    pub(super) chunks: Vec<Chunk>,
    free: Vec<u32>,
    staging: Vec<u8>,
    /// The chunk id `staging` becomes.
    staging_id: Option<u32>,
    staging_live: u32,
    /// Bytes of the chunks in the table, and the bytes of them objects use.
    pub(super) chunk_bytes: usize,
    pub(super) live_bytes: usize,
}

impl Arena {
    /// Store `meta` followed by `crcs` (little-endian) as one piece: (chunk, offset).
    pub(super) fn put(&mut self, meta: &[u8], crcs: Option<&Crcs>) -> (u32, u32) {
        let n = meta.len() + crcs.map_or(0, |c| 4 * c.len());
        if n == 0 {
            return (NO_CHUNK, 0);
        }
        if !self.staging.is_empty() && self.staging.len() + n > ARENA_CHUNK_BYTES {
            self.freeze();
        }
        let id = match self.staging_id {
            Some(id) => id,
            None => {
                let id = self.free.pop().unwrap_or_else(|| {
                    self.chunks.push(Chunk {
                        bytes: Bytes::new(),
                        live_bytes: 0,
                    });
                    (self.chunks.len() - 1) as u32
                });
                assert!(id < NO_CHUNK, "arena chunk ids exhausted");
                self.staging_id = Some(id);
                id
            }
        };
        let off = u32::try_from(self.staging.len()).expect("staging bounded by one batch");
        if self.staging.capacity() == 0 {
            self.staging.reserve_exact(ARENA_CHUNK_BYTES.max(n));
        }
        self.staging.extend_from_slice(meta);
        if let Some(c) = crcs {
            for i in 0..c.len() {
                self.staging.extend_from_slice(&c.get(i).to_le_bytes());
            }
        }
        self.staging_live += n as u32;
        self.live_bytes += n;
        (id, off)
    }

    /// Make the staged pieces a chunk readers can slice.
    pub(super) fn freeze(&mut self) {
        let Some(id) = self.staging_id.take() else {
            return;
        };
        let bytes = Bytes::copy_from_slice(&self.staging);
        // The first clone of a `Bytes` made from a vector allocates its shared header: do it
        // here, so that slicing the chunk in `get` never does.
        drop(bytes.clone());
        self.staging.clear();
        if self.staging.capacity() > 4 * ARENA_CHUNK_BYTES {
            self.staging = Vec::new();
        }
        let live_bytes = std::mem::take(&mut self.staging_live);
        self.chunk_bytes += bytes.len();
        self.chunks[id as usize] = Chunk { bytes, live_bytes };
        if live_bytes == 0 {
            self.drop_chunk(id);
        }
    }

    fn drop_chunk(&mut self, id: u32) {
        let b = std::mem::take(&mut self.chunks[id as usize].bytes);
        self.chunk_bytes -= b.len();
        self.free.push(id);
    }

    /// The bytes of a piece, borrowed.
    pub(super) fn bytes(&self, chunk: u32, off: u32, len: u32) -> &[u8] {
        if len == 0 {
            return &[];
        }
        assert!(self.staging_id != Some(chunk), "piece of an unfrozen chunk");
        &self.chunks[chunk as usize].bytes[off as usize..(off + len) as usize]
    }

    pub(super) fn slice(&self, chunk: u32, off: u32, len: u64) -> Bytes {
        if len == 0 {
            return Bytes::new();
        }
        assert!(self.staging_id != Some(chunk), "slice of an unfrozen chunk");
        let off = off as usize;
        self.chunks[chunk as usize]
            .bytes
            .slice(off..off + len as usize)
    }

    /// The piece of `n` bytes in `chunk` is no longer used.
    pub(super) fn release(&mut self, chunk: u32, n: u32) {
        if n == 0 {
            return;
        }
        self.live_bytes -= n as usize;
        if self.staging_id == Some(chunk) {
            self.staging_live -= n;
            return;
        }
        let c = &mut self.chunks[chunk as usize];
        assert!(c.live_bytes >= n, "arena chunk {chunk} released twice");
        c.live_bytes -= n;
        if c.live_bytes == 0 {
            self.drop_chunk(chunk);
        }
    }

    /// The chunks (with their table entries) hold much more than the objects use: after
    /// deletes left chunks partly used, or many small batches made many small chunks.
    pub(super) fn sparse(&self) -> bool {
        let used_chunks = self.chunks.len() - self.free.len();
        let held = self.chunk_bytes + used_chunks * (std::mem::size_of::<Chunk>() + 16);
        held > self.live_bytes + self.live_bytes / 4 + ARENA_SLACK_BYTES
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;

    #[test]
    fn arena_pieces_round_trip_and_free() {
        let mut a = Arena::default();
        let crcs = Crcs::Owned(Rc::from(vec![1u32, 0xdead_beef]));
        let (c1, o1) = a.put(b"meta-one", Some(&crcs));
        let (c2, o2) = a.put(b"two", None);
        assert_eq!(a.put(b"", None), (NO_CHUNK, 0));
        a.freeze();
        assert_eq!(c1, c2, "one batch, one chunk");
        assert_eq!(&a.slice(c1, o1, 8)[..], b"meta-one");
        let t = Crcs::Arena(a.slice(c1, o1 + 8, 8));
        assert_eq!((t.len(), t.get(0), t.get(1)), (2, 1, 0xdead_beef));
        assert_eq!(&*t.to_rc(), &[1, 0xdead_beef]);
        assert_eq!(&a.slice(c2, o2, 3)[..], b"two");
        assert_eq!(a.live_bytes, 19);
        a.release(c1, 16);
        assert_eq!(a.chunks[c1 as usize].bytes.len(), 19, "chunk still used");
        a.release(c2, 3);
        assert!(a.chunks[c1 as usize].bytes.is_empty() && a.free == vec![c1]);
        assert_eq!((a.live_bytes, a.chunk_bytes), (0, 0));
        // The freed id is reused by the next batch.
        let (c3, _) = a.put(b"x", None);
        a.freeze();
        assert_eq!(c3, c1);
    }

    #[test]
    fn arena_is_sparse_after_deletes() {
        let mut a = Arena::default();
        let mut pieces = Vec::new();
        for i in 0..100_000u32 {
            pieces.push(a.put(&i.to_le_bytes().repeat(16), None));
            if i % 1000 == 999 {
                a.freeze();
            }
        }
        a.freeze();
        assert!(!a.sparse());
        // Keep one piece in eight: every chunk stays, mostly garbage.
        for (i, (c, _)) in pieces.iter().enumerate() {
            if i % 8 != 0 {
                a.release(*c, 64);
            }
        }
        assert!(a.sparse());
    }
}
