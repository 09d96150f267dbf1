//! `Slot`: what the index keeps per object next to its key (48 bytes; ADR 23), and `Wide`,
//! the full description of objects a slot cannot hold by itself.
//!
//! The common object (one extent whose record this object wrote or copied, at most one
//! checksum block, no metadata or metadata of a template whose packed run is 16 bytes: a
//! server's ETag) is held in the slot entirely, bit-packed: nothing else in memory but its key
//! and its record's entry in the volume's record table. Every other object's slot names an
//! entry of the index's wide table (`vol == WIDE_VOL`), which holds the 64-byte description
//! the index kept for every object before (ADR 17, 21).

use crate::format::block_count;

/// Bits of `seq` and `mtime_ms` a slot holds (a wide entry holds more).
const BITS_48: u64 = (1 << 48) - 1;
/// Bits of a record offset (1 TiB volumes).
const OFFSET_BITS: u32 = 40;
const OFFSET_MASK: u64 = (1 << OFFSET_BITS) - 1;
/// `Slot::vol` of an object described by a wide entry (its index in the record-offset bits).
const WIDE_VOL: u32 = (1 << 24) - 1;
/// Bits of the record's header length (`data_offset - record_offset`).
const HEAD_MASK: u64 = (1 << 11) - 1;
/// Bits of the object's size.
const SIZE_MASK: u32 = (1 << 24) - 1;
/// Bits of the record's tail (`span - head - size`: trailer and padding).
const TAIL_MAX: u32 = u8::MAX as u32;
/// Template id of an object without metadata.
pub(super) const NO_TEMPLATE: u32 = u16::MAX as u32;
/// Bytes of a template's packed run a slot holds (a 128-bit digest: an MD5 in hex).
pub(super) const RUN_BYTES: usize = 16;

/// One object, bit-packed (48 bytes):
/// `w0`: seq (48 bits) | header bytes (11) | log2 of the checksum block bytes (5);
/// `w1`: mtime_ms (48) | template id (16; `NO_TEMPLATE`: no metadata);
/// `w2`: record offset (40; for a wide slot, its wide entry) | volume id (24; `WIDE_VOL`);
/// `w3`: size (24) | tail bytes (8); the CRC of the one block; the template's packed run.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    w0: u64,
    w1: u64,
    w2: u64,
    w3: u32,
    crc: u32,
    run: [u8; RUN_BYTES],
}

const _: () = assert!(std::mem::size_of::<Slot>() == 48);

impl super::spill::Pod for Slot {
    const BYTES: usize = 48;
    fn put(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.w0.to_le_bytes());
        out[8..16].copy_from_slice(&self.w1.to_le_bytes());
        out[16..24].copy_from_slice(&self.w2.to_le_bytes());
        out[24..28].copy_from_slice(&self.w3.to_le_bytes());
        out[28..32].copy_from_slice(&self.crc.to_le_bytes());
        out[32..48].copy_from_slice(&self.run);
    }
    fn take(b: &[u8]) -> Self {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        Slot {
            w0: u64_at(0),
            w1: u64_at(8),
            w2: u64_at(16),
            w3: u32_at(24),
            crc: u32_at(28),
            run: b[32..48].try_into().expect("16 bytes"),
        }
    }
}

/// What a slot holds of a compact object, unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Compact {
    pub(super) seq: u64,
    pub(super) mtime_ms: u64,
    pub(super) size: u64,
    pub(super) vol: u32,
    pub(super) record_offset: u64,
    pub(super) head_bytes: u32,
    pub(super) tail_bytes: u32,
    pub(super) block_bytes: u32,
    /// The CRC of the only block (0 when the object is empty).
    pub(super) crc: u32,
    /// `NO_TEMPLATE`, or the template of the metadata whose packed run is `run`.
    pub(super) template: u32,
    pub(super) run: [u8; RUN_BYTES],
}

impl Compact {
    /// Checksum blocks of the object (0 or 1).
    pub(super) fn n_crcs(&self) -> u64 {
        block_count(self.size, self.block_bytes)
    }

    pub(super) fn span_bytes(&self) -> u64 {
        u64::from(self.head_bytes) + self.size + u64::from(self.tail_bytes)
    }
}

/// An object a slot cannot hold by itself (several extents, several blocks, metadata that is
/// not a template's 16-byte run, fields past a slot's bits): the index's wide entry (64
/// bytes). A spilled one (`vol == SPILL_VOL`) names its extents' entry in the side table.
#[derive(Debug, Clone, Copy)]
pub(super) struct Wide {
    pub(super) seq: u64,
    pub(super) mtime_ms: u64,
    pub(super) size: u64,
    /// Offset of the record; for a spilled object, its index in `Index::spill`.
    pub(super) record_offset: u64,
    pub(super) vol: u32,
    /// `data_offset - record_offset`.
    pub(super) head_bytes: u32,
    /// `span_bytes - head_bytes - size`.
    pub(super) tail_bytes: u32,
    /// The CRC of the only block (objects of at most one block).
    pub(super) crc: u32,
    /// Arena piece: the metadata (verbatim, or a template's packed run), then (more than one
    /// block) the CRC table, little-endian.
    pub(super) chunk: u32,
    pub(super) offset: u32,
    /// `TEMPLATED | template id` (ADR 21), or the length of verbatim metadata.
    pub(super) meta: u32,
    pub(super) block_bytes: u32,
}

const _: () = assert!(std::mem::size_of::<Wide>() == 64);

/// `Wide::vol` of an object whose extents are in the side table (`Index::spill`).
pub(super) const SPILL_VOL: u32 = u32::MAX;
/// `Wide::meta` of templated metadata (`MAX_META_BYTES` is far below it).
pub(super) const TEMPLATED: u32 = 1 << 31;

impl Wide {
    pub(super) fn spilled(&self) -> bool {
        self.vol == SPILL_VOL
    }

    /// CRCs of a single-extent object.
    pub(super) fn n_crcs(&self) -> u64 {
        assert!(!self.spilled());
        block_count(self.size, self.block_bytes)
    }

    /// The template of its metadata, when it has one.
    pub(super) fn template(&self) -> Option<u32> {
        (self.meta & TEMPLATED != 0).then_some(self.meta & !TEMPLATED)
    }

    /// Bytes of its CRC table in the arena.
    pub(super) fn crc_bytes(&self) -> u32 {
        if !self.spilled() && self.n_crcs() > 1 {
            4 * self.n_crcs() as u32
        } else {
            0
        }
    }
}

impl Slot {
    /// The slot of `c`, when it fits one.
    pub(super) fn compact(c: &Compact) -> Option<Slot> {
        let fits = c.seq <= BITS_48
            && c.mtime_ms <= BITS_48
            && c.size <= u64::from(SIZE_MASK)
            && c.vol < WIDE_VOL
            && c.record_offset <= OFFSET_MASK
            && u64::from(c.head_bytes) <= HEAD_MASK
            && c.tail_bytes <= TAIL_MAX
            && c.block_bytes.is_power_of_two()
            && c.template <= NO_TEMPLATE
            && c.n_crcs() <= 1
            && (c.n_crcs() == 1 || c.crc == 0);
        fits.then(|| Slot {
            w0: c.seq
                | u64::from(c.head_bytes) << 48
                | u64::from(c.block_bytes.trailing_zeros()) << 59,
            w1: c.mtime_ms | u64::from(c.template) << 48,
            w2: c.record_offset | u64::from(c.vol) << OFFSET_BITS,
            w3: c.size as u32 | c.tail_bytes << 24,
            crc: c.crc,
            run: c.run,
        })
    }

    /// The slot of wide entry `i`.
    pub(super) fn wide(i: u32) -> Slot {
        Slot {
            w0: 0,
            w1: 0,
            w2: u64::from(i) | u64::from(WIDE_VOL) << OFFSET_BITS,
            w3: 0,
            crc: 0,
            run: [0; RUN_BYTES],
        }
    }

    /// The wide entry it names, or what it holds itself.
    pub(super) fn get(&self) -> Result<Compact, u32> {
        let vol = (self.w2 >> OFFSET_BITS) as u32;
        if vol == WIDE_VOL {
            return Err((self.w2 & OFFSET_MASK) as u32);
        }
        Ok(Compact {
            seq: self.w0 & BITS_48,
            mtime_ms: self.w1 & BITS_48,
            size: u64::from(self.w3 & SIZE_MASK),
            vol,
            record_offset: self.w2 & OFFSET_MASK,
            head_bytes: ((self.w0 >> 48) & HEAD_MASK) as u32,
            tail_bytes: self.w3 >> 24,
            block_bytes: 1 << (self.w0 >> 59),
            crc: self.crc,
            template: (self.w1 >> 48) as u32,
            run: self.run,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Compact {
        Compact {
            seq: BITS_48,
            mtime_ms: 1_764_500_000_000,
            size: u64::from(SIZE_MASK),
            vol: WIDE_VOL - 1,
            record_offset: OFFSET_MASK,
            head_bytes: HEAD_MASK as u32,
            tail_bytes: TAIL_MAX,
            block_bytes: 1 << 31,
            crc: 0xdead_beef,
            template: NO_TEMPLATE,
            run: *b"0123456789abcdef",
        }
    }

    #[test]
    fn compact_round_trips_at_every_field_limit() {
        let c = sample();
        assert_eq!(Slot::compact(&c).expect("fits").get(), Ok(c));
        let small = Compact {
            seq: 1,
            mtime_ms: 0,
            size: 0,
            vol: 0,
            record_offset: 0,
            head_bytes: 36,
            tail_bytes: 12,
            block_bytes: 16384,
            crc: 0,
            template: 0,
            run: [7; RUN_BYTES],
        };
        assert_eq!(Slot::compact(&small).expect("fits").get(), Ok(small));
    }

    #[test]
    fn fields_past_a_slot_do_not_fit() {
        let c = sample();
        let past: [fn(&mut Compact); 9] = [
            |c| c.seq += 1,
            |c| c.mtime_ms = BITS_48 + 1,
            |c| c.size += 1,
            |c| c.vol = WIDE_VOL,
            |c| c.record_offset += 1,
            |c| c.head_bytes += 1,
            |c| c.tail_bytes += 1,
            |c| c.block_bytes = 3 << 10,
            |c| c.template = NO_TEMPLATE + 1,
        ];
        for (i, f) in past.iter().enumerate() {
            let mut d = c;
            f(&mut d);
            assert!(Slot::compact(&d).is_none(), "field {i} past its bits");
        }
        // Two blocks need a CRC table: not a slot's.
        let mut d = c;
        d.block_bytes = 1 << 23;
        assert!(d.n_crcs() == 2 && Slot::compact(&d).is_none());
        // An empty object has no CRC to keep.
        let mut e = c;
        (e.size, e.crc) = (0, 1);
        assert!(Slot::compact(&e).is_none());
    }

    #[test]
    fn wide_slots_name_their_entry() {
        assert_eq!(Slot::wide(7).get(), Err(7));
        assert_eq!(Slot::wide(u32::MAX).get(), Err(u32::MAX));
    }
}
