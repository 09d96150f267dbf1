//! Fuzz targets for the engine's on-disk decoders.
//!
//! `format` is private in bale-io (io/src/lib.rs: `mod format;`), so this crate compiles the very
//! same source file, io/src/format.rs, unchanged. It needs `crate::error` (io/src/error.rs, also
//! compiled as is) and `crate::buf::round_up_u64` (io/src/buf.rs needs monoio, so a copy of that
//! one function stands in; the decoders do not call it).
//!
//! Input layout for every target except `journal_payload`: byte 0 holds flags, the rest is the
//! image. Flag `FIX_CRC` (bit 0) makes the target recompute the image's CRC32C fields before
//! decoding, so mutations reach the parsers behind the CRC checks instead of dying at them.
//!
//! Properties checked (a panic = a finding):
//! - no decoder panics, overflows (overflow checks are on) or allocates without bound (driver);
//! - whatever decodes re-encodes to exactly the bytes it was decoded from (the encoders are the
//!   engine's own), so a decoder never accepts something it would not have written;
//! - `scan_journal`'s valid prefix ends at a frame boundary and `tail_error` is set iff bytes
//!   were left over.

#[allow(dead_code)]
mod buf {
    /// Copy of io/src/buf.rs `round_up_u64` (that file needs monoio).
    pub fn round_up_u64(v: u64, align: u64) -> u64 {
        debug_assert!(align.is_power_of_two());
        (v + align - 1) & !(align - 1)
    }
}

#[allow(dead_code)]
#[path = "../../src/error.rs"]
mod error;

#[allow(dead_code)]
#[path = "../../src/format.rs"]
pub mod format;

use format::*;

/// Flag bit in byte 0: recompute CRCs before decoding.
pub const FIX_CRC: u8 = 1;

fn split(data: &[u8]) -> Option<(u8, Vec<u8>)> {
    let (&f, img) = data.split_first()?;
    Some((f, img.to_vec()))
}

fn class(parts: &[u64]) -> u64 {
    parts.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, p| (h ^ p).wrapping_mul(0x100_0000_01b3))
}

fn err_kind(s: &str) -> u64 {
    // class by the message text up to its first number
    s.bytes().take_while(|b| !b.is_ascii_digit()).fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64))
}

/// Fixed record header of either version (version 3: 32 bytes, magic, version, flags, data
/// length, seq, key check, CRC; version 1: 36 bytes, magic, version, flags, name lengths,
/// block size, data length, seq, CRC).
pub fn record_header(data: &[u8]) -> u64 {
    let Some((flags, mut img)) = split(data) else { return 0 };
    if flags & FIX_CRC != 0 && img.len() >= 6 {
        let head = match u16::from_le_bytes([img[4], img[5]]) {
            RECORD_VERSION => RECORD_HEADER_BYTES as usize,
            _ => RECORD_HEADER_BYTES_NAMED as usize,
        };
        if img.len() >= head {
            let crc = crc32c::crc32c(&img[..head - 4]);
            img[head - 4..head].copy_from_slice(&crc.to_le_bytes());
        }
    }
    match decode_record_header(&img) {
        Ok(h) => {
            let head = h.head_bytes();
            match h.names {
                RecordNames::KeyCheck(check) => {
                    assert_eq!(head, RECORD_HEADER_BYTES);
                    // Re-encode with names whose check is not known: compare all but the check
                    // and the CRC, then the check's field position.
                    let mut out = Vec::new();
                    encode_record_head(&mut out, "", "", h.data_len, h.seq);
                    if h.flags == 0 {
                        assert_eq!(&out[..24], &img[..24], "record header does not re-encode to its bytes");
                    }
                    assert_eq!(u32::from_le_bytes(img[24..28].try_into().unwrap()), check);
                    // A record's exact bytes follow from its head length without overflow.
                    let _ = record_raw_bytes_of_extent(head, h.data_len, 4096);
                    class(&[1, 3, (h.flags != 0) as u64])
                }
                RecordNames::Inline { ns_len, key_len, block_bytes } => {
                    if h.flags == 0 && (ns_len as usize) <= MAX_NS_BYTES && (key_len as usize) <= MAX_KEY_BYTES {
                        let mut out = Vec::new();
                        let ns = "n".repeat(ns_len as usize);
                        let key = "k".repeat(key_len as usize);
                        encode_record_head_named(&mut out, &ns, &key, h.data_len, h.seq, block_bytes);
                        assert_eq!(&out[..36], &img[..36], "record header does not re-encode to its bytes");
                    }
                    // what the engine derives from a header must not overflow either
                    if block_bytes != 0 {
                        let _ = block_count(h.data_len, block_bytes);
                        let _ = record_raw_bytes_of_extent(head, h.data_len, block_bytes);
                    }
                    class(&[1, 1, (h.flags != 0) as u64, (ns_len > 1024) as u64, (key_len > 1024) as u64, (block_bytes == 0) as u64])
                }
            }
        }
        Err(e) => class(&[2, err_kind(&e)]),
    }
}

/// Recompute each frame's CRC where its length fits (walks frames like `scan_journal`).
pub fn fix_journal_crcs(img: &mut [u8]) {
    let mut pos = 0usize;
    while img.len() - pos >= 8 {
        let len = u32::from_le_bytes(img[pos..pos + 4].try_into().unwrap()) as usize;
        if len == 0 || img.len() - pos - 8 < len {
            break;
        }
        let crc = crc32c::crc32c(&img[pos + 8..pos + 8 + len]);
        img[pos + 4..pos + 8].copy_from_slice(&crc.to_le_bytes());
        pos += 8 + len;
    }
}

/// A whole journal image through `scan_journal` (replay at open).
pub fn journal(data: &[u8]) -> u64 {
    let Some((flags, mut img)) = split(data) else { return 0 };
    if flags & FIX_CRC != 0 {
        fix_journal_crcs(&mut img);
    }
    let scan = scan_journal(&img);
    let valid = scan.valid_bytes as usize;
    assert!(valid <= img.len());
    assert_eq!(scan.tail_error.is_some(), valid < img.len(), "tail_error vs valid_bytes: {:?}", scan.tail_error);
    let mut kinds = Vec::new();
    for (_, e) in &scan.entries {
        kinds.push(match e {
            Entry::Put { .. } => 1,
            Entry::Delete { .. } => 2,
            Entry::Compose { .. } => 3,
            Entry::Relocate { .. } => 4,
        });
    }
    assert_canonical_journal(&scan.entries, &img[..valid]);
    kinds.truncate(4);
    kinds.push(scan.tail_error.as_deref().map(err_kind).unwrap_or(0));
    class(&kinds)
}

/// `re` (re-encoded) must equal `orig` byte for byte, with one known, harmless exception: a
/// Compose entry's `remove_sources` byte is decoded as `!= 0`, so any non-zero byte is accepted
/// and re-encodes as 1 (noted in docs/RELIABILITY.md).
fn assert_canonical(e: &Entry, re: &[u8], orig: &[u8]) {
    if re == orig {
        return;
    }
    let diffs: Vec<usize> = (0..re.len().min(orig.len())).filter(|&i| re[i] != orig[i]).collect();
    let tolerated = matches!(e, Entry::Compose { .. })
        && re.len() == orig.len()
        && diffs.len() == 1
        && re[diffs[0]] == 1
        && orig[diffs[0]] > 1;
    assert!(tolerated, "journal entry does not re-encode to its bytes (first difference at {:?})", diffs.first());
}

/// Re-encode one decoded entry (with its flags) and check it against the payload `orig` it was
/// decoded from. Versions 1 and 2 (read, never written) are written as the current version:
/// the payload must match with the flags byte (version 3) taken out and the version byte put
/// back, except a version-1 Relocate, whose moves gained a field in version 2: that one must
/// decode back to the same entry.
fn check_entry(lsn: u64, e: &Entry, orig: &[u8]) {
    let flags = decode_journal_payload_flagged(orig).map_or(0, |(_, f, _)| f);
    let mut one = Vec::new();
    encode_journal_entry_flagged(&mut one, lsn, flags, e);
    let mut re = one[8..].to_vec();
    let old = orig.first().copied().filter(|v| *v != JOURNAL_VERSION);
    if let Some(v) = old {
        re.remove(10); // [version][kind][lsn u64][flags]
        re[0] = v;
        if v == JOURNAL_VERSION_ALIGNED && matches!(e, Entry::Relocate { .. }) {
            re[0] = JOURNAL_VERSION_PACKED;
            assert_eq!(decode_journal_payload(&re), Some((lsn, e.clone())), "version 1 Relocate does not round-trip");
            return;
        }
    }
    assert_canonical(e, &re, orig);
}

/// Every decoded entry against its own frame of `orig` (the valid prefix of the image).
fn assert_canonical_journal(entries: &[(u64, Entry)], orig: &[u8]) {
    let mut pos = 0;
    for (lsn, e) in entries {
        let n = u32::from_le_bytes(orig[pos..pos + 4].try_into().unwrap()) as usize;
        check_entry(*lsn, e, &orig[pos + 8..pos + 8 + n]);
        pos += 8 + n;
    }
    assert_eq!(pos, orig.len(), "decoded entries do not cover the valid prefix");
}

/// One entry payload (after the frame's length and CRC) through `decode_journal_payload`.
pub fn journal_payload(data: &[u8]) -> u64 {
    match decode_journal_payload(data) {
        Some((lsn, e)) => {
            check_entry(lsn, &e, data);
            class(&[1, data.get(1).copied().unwrap_or(0) as u64])
        }
        None => class(&[2, data.first().copied().unwrap_or(0).min(2) as u64, data.get(1).copied().unwrap_or(0).min(5) as u64]),
    }
}

/// A whole index snapshot image through `decode_snapshot` (open from checkpoint).
pub fn snapshot(data: &[u8]) -> u64 {
    let Some((flags, mut img)) = split(data) else { return 0 };
    if flags & FIX_CRC != 0 && img.len() >= 4 {
        let n = img.len() - 4;
        let crc = crc32c::crc32c(&img[..n]);
        img[n..].copy_from_slice(&crc.to_le_bytes());
    }
    match decode_snapshot(&img) {
        Ok(s) => {
            let out = encode_snapshot(&s, s.version);
            if s.version == SNAPSHOT_VERSION {
                // Version 3 front-codes against the previous object; a decoder accepts some
                // choices of shared lengths the encoder would not make. What it accepts must
                // mean the same objects again, and the encoder's image is a fixed point.
                let again = decode_snapshot(&out).expect("an encoded snapshot decodes");
                assert!(again.objects == s.objects, "snapshot does not round trip");
                assert!(encode_snapshot(&again, again.version) == out, "snapshot encoding is not stable");
            } else {
                // The fixed-width versions re-encode to exactly their bytes.
                assert!(out == img, "snapshot does not re-encode to its bytes");
            }
            class(&[1, s.objects.len().min(4) as u64])
        }
        Err(e) => class(&[2, err_kind(&e.to_string())]),
    }
}
