//! The index's spill file (ADR 29): where a shard's key blocks go when they do not fit its
//! memory budget (`Pager`: the budget, the bytes resident, the file and its free space), and
//! the bytes a block takes there (`Data::encode` / `decode`, a CRC32C over each). Scratch
//! space: recreated at every open, never read across restarts (io/FORMAT.md, "Index spill
//! file"). Which blocks go and when is `keys`'s.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::keys::{Data, BLOCK_MAX_KEYS};
use crate::error::Error;

type Result<T> = std::result::Result<T, Error>;

/// Spill file space is handed out in units of this many bytes.
const SPILL_UNIT: u64 = 4096;
/// Name of a shard's spill file in its directory (io/FORMAT.md, "Index spill file").
pub(super) const SPILL_FILE: &str = "index.spill";

/// A value a block can write to the spill file and read back: fixed size, plain bytes.
pub(super) trait Pod: Copy {
    const BYTES: usize;
    fn put(&self, out: &mut [u8]);
    fn take(b: &[u8]) -> Self;
}

impl Pod for u64 {
    const BYTES: usize = 8;
    fn put(&self, out: &mut [u8]) {
        out.copy_from_slice(&self.to_le_bytes());
    }
    fn take(b: &[u8]) -> Self {
        u64::from_le_bytes(b.try_into().expect("8 bytes"))
    }
}

impl<V: Pod> Data<V> {
    /// The block as the spill file holds it: key count (u32), key bytes (u32), the ends, the
    /// keys, the values, and a CRC32C of all of that.
    pub(super) fn encode(&self) -> Vec<u8> {
        let n = self.len();
        let mut out = Vec::with_capacity(12 + 2 * n + self.keys.len() + n * V::BYTES);
        out.extend_from_slice(&(n as u32).to_le_bytes());
        out.extend_from_slice(&(self.keys.len() as u32).to_le_bytes());
        for e in &self.ends {
            out.extend_from_slice(&e.to_le_bytes());
        }
        out.extend_from_slice(&self.keys);
        let at = out.len();
        out.resize(at + n * V::BYTES, 0);
        for (v, chunk) in self.vals.iter().zip(out[at..].chunks_exact_mut(V::BYTES)) {
            v.put(chunk);
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decode what `encode` wrote (buffers sized exactly).
    pub(super) fn decode(b: &[u8]) -> std::result::Result<Data<V>, String> {
        let bad = |what: &str| format!("spilled block {what} ({} bytes)", b.len());
        if b.len() < 12 {
            return Err(bad("too short"));
        }
        let (body, crc) = b.split_at(b.len() - 4);
        if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err(bad("fails its CRC"));
        }
        let n = u32::from_le_bytes(body[0..4].try_into().expect("4")) as usize;
        let kb = u32::from_le_bytes(body[4..8].try_into().expect("4")) as usize;
        if body.len() != 8 + 2 * n + kb + n * V::BYTES || n == 0 || n > BLOCK_MAX_KEYS {
            return Err(bad("has a wrong length"));
        }
        let mut p = 8;
        let mut ends = Vec::with_capacity(n);
        for c in body[p..p + 2 * n].chunks_exact(2) {
            ends.push(u16::from_le_bytes([c[0], c[1]]));
        }
        p += 2 * n;
        let keys = body[p..p + kb].to_vec();
        p += kb;
        let mut vals = Vec::with_capacity(n);
        for c in body[p..].chunks_exact(V::BYTES) {
            vals.push(V::take(c));
        }
        if *ends.last().expect("n > 0") as usize != kb {
            return Err(bad("has inconsistent key ends"));
        }
        Ok(Data { keys, ends, vals })
    }
}

/// Where a shard's index blocks live when they do not fit its memory budget: the budget, the
/// bytes resident, and the spill file with its free space.
pub(super) struct Pager {
    /// Resident bytes allowed (usize::MAX: no budget).
    pub(super) limit: usize,
    /// Heap bytes of the resident blocks' buffers.
    pub(super) resident: Cell<usize>,
    /// The spill file (None without a budget).
    pub(super) file: Option<(File, PathBuf)>,
    /// End of the spill file's used space.
    pub(super) end: u64,
    /// Free spill space: bytes (a multiple of `SPILL_UNIT`) -> offsets.
    pub(super) free: BTreeMap<u64, Vec<u64>>,
    /// Blocks written to / read from the spill file, and failed writes.
    pub(super) writes: u64,
    pub(super) reads: Cell<u64>,
    pub(super) write_errors: u64,
}

impl Default for Pager {
    fn default() -> Self {
        Pager {
            limit: usize::MAX,
            resident: Cell::new(0),
            file: None,
            end: 0,
            free: BTreeMap::new(),
            writes: 0,
            reads: Cell::new(0),
            write_errors: 0,
        }
    }
}

impl Pager {
    /// A pager for `dir` keeping at most `budget` bytes of blocks resident (0: no budget, no
    /// spill file). The spill file is created empty (truncated when a previous run left one).
    pub(super) fn open(dir: &Path, budget: u64) -> Result<Pager> {
        let path = dir.join(SPILL_FILE);
        if budget == 0 {
            // A file a previous run with a budget left is scratch: drop it.
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("remove {}", path.display()), e)),
            }
            return Ok(Pager::default());
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| Error::io(format!("create index spill file {}", path.display()), e))?;
        Ok(Pager::with_file(file, path, budget as usize))
    }

    pub(super) fn with_file(file: File, path: PathBuf, budget: usize) -> Pager {
        Pager {
            limit: budget.max(1),
            file: Some((file, path)),
            ..Pager::default()
        }
    }

    /// Drop every spill copy (the index was emptied): the file is truncated.
    pub(super) fn clear(&mut self) -> Result<()> {
        self.resident.set(0);
        self.end = 0;
        self.free.clear();
        if let Some((file, path)) = &self.file {
            file.set_len(0)
                .map_err(|e| Error::io(format!("truncate {}", path.display()), e))?;
        }
        Ok(())
    }

    /// Whether resident blocks pass the budget (a reader promoted some).
    #[inline]
    pub(super) fn over(&self) -> bool {
        self.resident.get() > self.limit
    }

    /// Heap bytes of the resident blocks.
    pub(super) fn resident_bytes(&self) -> u64 {
        self.resident.get() as u64
    }

    /// Bytes of the spill file in use.
    pub(super) fn spill_bytes(&self) -> u64 {
        self.end
            - self
                .free
                .iter()
                .map(|(b, o)| b * o.len() as u64)
                .sum::<u64>()
    }

    pub(super) fn add(&self, n: usize) {
        self.resident.set(self.resident.get() + n);
    }

    pub(super) fn sub(&self, n: usize) {
        self.resident.set(self.resident.get() - n);
    }

    /// Write `bytes` to free spill space: (offset, length).
    pub(super) fn write(&mut self, bytes: &[u8]) -> Result<(u64, u32)> {
        if self.file.is_none() {
            return Err(Error::Io {
                context: "index spill: no spill file (no budget)".into(),
                source: std::io::Error::other("no spill file"),
            });
        }
        let need = (bytes.len() as u64).div_ceil(SPILL_UNIT) * SPILL_UNIT;
        let (off, have) = match self.free.range(need..).next().map(|(b, _)| *b) {
            Some(b) => {
                let offs = self.free.get_mut(&b).expect("listed");
                let off = offs.pop().expect("non-empty");
                if offs.is_empty() {
                    self.free.remove(&b);
                }
                (off, b)
            }
            None => {
                self.end += need;
                (self.end - need, need)
            }
        };
        let (file, path) = self.file.as_ref().expect("checked");
        if let Err(e) = file.write_all_at(bytes, off) {
            let context = format!(
                "write {} bytes of an index block to {} at {off}",
                bytes.len(),
                path.display()
            );
            self.release_span(off, have);
            return Err(Error::io(context, e));
        }
        if have > need {
            self.release_span(off + need, have - need);
        }
        self.writes += 1;
        Ok((off, bytes.len() as u32))
    }

    pub(super) fn read<V: Pod>(
        &self,
        (off, len): (u64, u32),
    ) -> std::result::Result<Data<V>, String> {
        let (file, path) = self.file.as_ref().ok_or("no spill file")?;
        let mut b = vec![0u8; len as usize];
        file.read_exact_at(&mut b, off)
            .map_err(|e| format!("read {len} bytes at {off} of {}: {e}", path.display()))?;
        self.reads.set(self.reads.get() + 1);
        Data::decode(&b).map_err(|e| format!("{e} at {off} of {}", path.display()))
    }

    /// The spill copy at `at` is no longer needed.
    pub(super) fn release(&mut self, (off, len): (u64, u32)) {
        let n = u64::from(len).div_ceil(SPILL_UNIT) * SPILL_UNIT;
        self.release_span(off, n);
    }

    pub(super) fn release_span(&mut self, off: u64, n: u64) {
        if off + n == self.end {
            self.end = off;
        } else {
            self.free.entry(n).or_default().push(off);
        }
    }
}
