//! Unit tests of the on-disk format (encode/decode round trips, bounds on hostile input).

use super::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Records the largest single allocation made by the current thread.
struct LargestAlloc;

thread_local! {
    static LARGEST_ALLOC_BYTES: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only records sizes.
unsafe impl GlobalAlloc for LargestAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LARGEST_ALLOC_BYTES.try_with(|m| m.set(m.get().max(layout.size())));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: LargestAlloc = LargestAlloc;

fn largest_alloc_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST_ALLOC_BYTES.with(|m| m.set(0));
    let r = f();
    (r, LARGEST_ALLOC_BYTES.with(|m| m.get()))
}

fn with_crc(mut body: Vec<u8>) -> Vec<u8> {
    let crc = crc32c::crc32c(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    body
}

#[test]
fn snapshot_with_a_huge_object_count_fails_without_a_large_allocation() {
    for n in [1u64 << 26, u64::MAX, 3] {
        let mut img = Vec::new();
        encode_snapshot_header(&mut img, 1, 0, n);
        img.extend_from_slice(&[0u8; 40]); // room for one object at most, and it is bad
        let img = with_crc(img);
        let (r, largest) = largest_alloc_during(|| decode_snapshot(&img));
        let err = r.err().expect("a short body must not decode").to_string();
        assert!(
            err.contains("index.snap"),
            "count {n}: unexpected error {err}"
        );
        assert!(largest < 4096, "count {n}: allocated {largest} bytes");
    }
}

#[test]
fn finding_f1_input_fails_cleanly() {
    // The 36-byte index.snap of finding F1: objects 2^24, valid CRC, no body.
    let hex = "42414c5301000000010000000000000000000000000000000000000100000000";
    let mut img: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    img = with_crc(img);
    assert_eq!(&img[32..], &[0x83, 0x36, 0x92, 0x4b]);
    let (r, largest) = largest_alloc_during(|| decode_snapshot(&img));
    let err = r.err().expect("must not decode").to_string();
    assert!(err.contains("object count 16777216 exceeds"), "{err}");
    assert!(largest < 4096, "allocated {largest} bytes");
}

#[test]
fn snapshot_object_with_a_huge_extent_count_fails_without_a_large_allocation() {
    let mut img = Vec::new();
    encode_snapshot_header(&mut img, 1, 0, 1);
    let mut w = Enc(&mut img);
    w.str16("ns");
    w.str16("key");
    w.u64(0);
    w.u64(0);
    w.u64(1);
    w.bytes32(b"");
    w.u32(u32::MAX); // extents claimed; none follow
    let img = with_crc(img);
    let (r, largest) = largest_alloc_during(|| decode_snapshot(&img));
    assert!(r.is_err());
    assert!(largest < 4096, "allocated {largest} bytes");
}

#[test]
fn journal_payload_with_huge_counts_fails_without_a_large_allocation() {
    for kind in [KIND_COMPOSE, KIND_RELOCATE] {
        let mut p = Vec::new();
        let mut w = Enc(&mut p);
        w.u8(JOURNAL_VERSION);
        w.u8(kind);
        w.u64(7);
        w.u8(0); // flags (version 3)
        w.u64(9);
        if kind == KIND_COMPOSE {
            w.u64(0);
        }
        w.str16("ns");
        w.str16("key");
        if kind == KIND_COMPOSE {
            w.bytes32(b"");
            w.u8(0);
        }
        w.u32(u32::MAX);
        let (r, largest) = largest_alloc_during(|| decode_journal_payload(&p));
        assert!(r.is_none());
        assert!(largest < 4096, "kind {kind}: allocated {largest} bytes");
    }
}

#[test]
fn snapshot_object_bytes_matches_the_encoding() {
    let ext = |n: usize| ExtentRec {
        volume_id: 1,
        record_offset: 0,
        data_offset: 40,
        len: n as u64 * 16384,
        span_bytes: 4096,
        block_bytes: 16384,
        crcs: vec![7u32; n].into(),
    };
    for (ns, key, meta, exts) in [
        ("", "", &b""[..], vec![]),
        ("bucket", "a/b/c", &b"meta-bytes"[..], vec![ext(1)]),
        ("b", "k", &b""[..], vec![ext(0), ext(3), ext(64)]),
    ] {
        let mut out = Vec::new();
        encode_snapshot_object(&mut out, ns, key, 0, 0, 1, meta, &exts);
        let est = snapshot_object_bytes(
            ns.len(),
            key.len(),
            meta.len(),
            exts.iter().map(|e| e.crcs.len()),
        );
        assert_eq!(out.len() as u64, est);
    }
    let mut h = Vec::new();
    encode_snapshot_header(&mut h, 1, 2, 3);
    assert_eq!(h.len() as u64 + 4, SNAPSHOT_EMPTY_BYTES);
}

#[test]
fn bounded_capacity_never_exceeds_what_the_input_holds() {
    let b = [0u8; 100];
    let mut d = Dec::new(&b);
    assert_eq!(d.bounded_capacity(u64::MAX, 10), 10);
    assert_eq!(d.bounded_capacity(3, 10), 3);
    d.take(95).unwrap();
    assert_eq!(d.bounded_capacity(u64::MAX, 10), 0);
}

#[test]
fn journal_entry_flags_round_trip_and_older_versions_read_as_unflagged() {
    let e = Entry::Delete {
        seq: 5,
        ns: "ns".into(),
        key: "k".into(),
    };
    let flags = ENTRY_BATCH_START | ENTRY_RECORD_SYNCED_WITH_JOURNAL;
    let mut f = Vec::new();
    encode_journal_entry_flagged(&mut f, 9, flags, &e);
    let p = &f[8..];
    assert_eq!((p[0], p[10]), (JOURNAL_VERSION, flags));
    assert_eq!(
        decode_journal_payload_flagged(p),
        Some((9, flags, e.clone()))
    );
    let scan = scan_journal(&f);
    assert_eq!(scan.frames, vec![(0, flags)]);
    // Version 2: the same entry without the flags byte reads with flags 0.
    let mut v2 = p.to_vec();
    v2.remove(10);
    v2[0] = JOURNAL_VERSION_PACKED;
    assert_eq!(decode_journal_payload_flagged(&v2), Some((9, 0, e.clone())));
    // A flag bit this code does not know: the entry does not decode (a tail, at replay).
    let mut unknown = p.to_vec();
    unknown[10] = 0x80;
    assert_eq!(decode_journal_payload_flagged(&unknown), None);
    // Version 4 is not read.
    let mut v4 = p.to_vec();
    v4[0] = JOURNAL_VERSION + 1;
    assert_eq!(decode_journal_payload(&v4), None);
}
