//! What an object's data is made of: its extents (one record each) and their CRC tables, as
//! handles carry them (ADR 17).

use std::rc::Rc;

use bytes::Bytes;

use super::space::VolFile;
use crate::format::ExtentRec;

/// The CRC32C table of one extent (one CRC per checksum block).
#[derive(Debug, Clone)]
pub(crate) enum Crcs {
    /// At most one block (`n` is 0 or 1): its CRC, inline.
    Inline { n: u8, crc: u32 },
    /// Little-endian CRCs: a slice of the index's arena.
    Arena(Bytes),
    /// As decoded from a journal entry or the snapshot.
    Owned(Rc<[u32]>),
}

impl Crcs {
    pub(super) fn len(&self) -> usize {
        match self {
            Crcs::Inline { n, .. } => *n as usize,
            Crcs::Arena(b) => b.len() / 4,
            Crcs::Owned(v) => v.len(),
        }
    }

    /// The CRC of block `i` (panics past the end, like a slice).
    pub(super) fn get(&self, i: usize) -> u32 {
        match self {
            Crcs::Inline { n, crc } => {
                assert!(i < *n as usize, "block {i} of a {n}-block extent");
                *crc
            }
            Crcs::Arena(b) => {
                let w = &b[4 * i..4 * i + 4];
                u32::from_le_bytes([w[0], w[1], w[2], w[3]])
            }
            Crcs::Owned(v) => v[i],
        }
    }

    pub(super) fn to_rc(&self) -> Rc<[u32]> {
        match self {
            Crcs::Owned(v) => v.clone(),
            _ => (0..self.len()).map(|i| self.get(i)).collect(),
        }
    }
}

/// One contiguous run of an object's data: the whole data of one record.
#[derive(Debug, Clone)]
pub(crate) struct Extent {
    pub(super) vol: Rc<VolFile>,
    pub(super) record_offset: u64,
    pub(super) data_offset: u64,
    pub(super) len: u64,
    pub(super) span_bytes: u64,
    pub(super) block_bytes: u32,
    pub(super) crcs: Crcs,
}

impl Extent {
    pub(super) fn to_rec(&self) -> ExtentRec {
        ExtentRec {
            volume_id: self.vol.id,
            record_offset: self.record_offset,
            data_offset: self.data_offset,
            len: self.len,
            span_bytes: self.span_bytes,
            block_bytes: self.block_bytes,
            crcs: self.crcs.to_rc(),
        }
    }
}
