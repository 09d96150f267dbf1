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
    for (n, version) in [1u64 << 26, u64::MAX, 3]
        .into_iter()
        .flat_map(|n| [(n, SNAPSHOT_VERSION), (n, SNAPSHOT_VERSION_PACKED)])
    {
        let mut img = Vec::new();
        encode_snapshot_header(&mut img, 1, 0, n);
        img[4..8].copy_from_slice(&version.to_le_bytes());
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
    img[4..8].copy_from_slice(&SNAPSHOT_VERSION_PACKED.to_le_bytes());
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

fn snap_extent(n: usize) -> ExtentRec {
    ExtentRec {
        volume_id: 1,
        record_offset: 0,
        data_offset: 40,
        len: n as u64 * 16384,
        span_bytes: 40 + n as u64 * 16384 + 8 + 4 * n as u64,
        block_bytes: 16384,
        crcs: vec![7u32; n].into(),
    }
}

#[test]
fn snapshot_object_bytes_bounds_both_encodings() {
    let huge = ExtentRec {
        volume_id: u32::MAX,
        record_offset: u64::MAX / 4,
        data_offset: u64::MAX / 4 + u64::MAX / 8,
        len: 0,
        span_bytes: u64::MAX / 8 + 1,
        block_bytes: u32::MAX,
        crcs: vec![].into(),
    };
    for (ns, key, meta, exts) in [
        ("", "", &b""[..], vec![]),
        ("bucket", "a/b/c", &b"meta-bytes"[..], vec![snap_extent(1)]),
        (
            "b",
            "k",
            &b""[..],
            vec![snap_extent(0), snap_extent(3), snap_extent(64)],
        ),
        ("b", "k", &[b'f'; 300][..], vec![huge.clone(), huge]),
    ] {
        let mut out = Vec::new();
        encode_snapshot_object_v2(&mut out, ns, key, 0, 0, 1, meta, &exts);
        let crcs = || exts.iter().map(|e| e.crcs.len());
        let v2 = snapshot_object_bytes_v2(ns.len(), key.len(), meta.len(), crcs());
        assert_eq!(out.len() as u64, v2);
        // Version 3 at its largest: a new namespace, nothing shared, the widest varints.
        let mut out = Vec::new();
        let max = u64::MAX;
        SnapshotEncoder::default().object(&mut out, ns, key, max, max, max, meta, &exts);
        let bound = snapshot_object_bytes(ns.len(), key.len(), meta.len(), crcs());
        assert!(out.len() as u64 <= bound, "{} > {bound}", out.len());
    }
    let mut h = Vec::new();
    encode_snapshot_header(&mut h, 1, 2, 3);
    assert_eq!(h.len() as u64 + 4, SNAPSHOT_EMPTY_BYTES);
}

#[test]
fn varints_round_trip_and_only_the_shortest_form_decodes() {
    for v in [0, 1, 127, 128, 300, u32::MAX as u64, 1 << 56, u64::MAX] {
        let mut out = Vec::new();
        Enc(&mut out).varint(v);
        let mut d = Dec::new(&out);
        assert_eq!((d.varint(), d.done()), (Some(v), true), "{v}");
    }
    for bad in [
        &[0x80, 0x00][..],                                             // 0 in two bytes
        &[0xff, 0x80, 0x00],                                           // a trailing zero group
        &[0x80; 10],                                                   // never ends
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02], // past 64 bits
        &[0x80],                                                       // cut short
    ] {
        assert_eq!(Dec::new(bad).varint(), None, "{bad:?}");
    }
}

/// Objects like a server's: one bucket, keys sharing long prefixes, metadata differing only
/// in a digest, plus the odd ones (new namespace, user metadata, no metadata, several extents).
fn sample_snapshot() -> Snapshot {
    let mut objects = Vec::new();
    for (i, ns) in ["a", "bucket", "bucket2"].iter().enumerate() {
        for j in 0..50u64 {
            let etag = format!(
                "{:032x}",
                (j + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) as u128 * 7919
            );
            let meta = match j % 5 {
                0 => Bytes::new(),
                1 => Bytes::from(format!("v1et:\"{etag}\"x-amz-meta-k: user {j}")),
                _ => Bytes::from(format!("\x01et:{etag}ct:binary/octet-stream")),
            };
            let extents = match j % 7 {
                0 => vec![snap_extent(2), snap_extent(0)],
                _ => vec![ExtentRec {
                    volume_id: i as u32,
                    record_offset: 8 * j * 1000,
                    data_offset: 8 * j * 1000 + 140,
                    len: 1024,
                    span_bytes: 1192,
                    block_bytes: 16384,
                    crcs: vec![j as u32].into(),
                }],
            };
            let size = extents.iter().map(|e| e.len).sum();
            objects.push(SnapObject {
                ns: ns.to_string(),
                key: format!(
                    "files/insert_log/4492/4493/{}/{}/{}",
                    j / 8,
                    100 + j % 8,
                    10_000 + j
                ),
                size,
                mtime_ms: 1_764_500_000_000 + j,
                seq: 1000 + j,
                meta,
                extents,
            });
        }
    }
    Snapshot {
        version: SNAPSHOT_VERSION,
        next_seq: 5000,
        applied_lsn: 77,
        objects,
    }
}

#[test]
fn snapshot_versions_round_trip_and_version_3_is_smaller() {
    let s = sample_snapshot();
    let mut sizes = Vec::new();
    for version in [
        SNAPSHOT_VERSION,
        SNAPSHOT_VERSION_PACKED,
        SNAPSHOT_VERSION_ALIGNED,
    ] {
        let img = encode_snapshot(&s, version);
        let d = decode_snapshot(&img).expect("decodes");
        assert_eq!(d.version, version);
        assert_eq!((d.next_seq, d.applied_lsn), (s.next_seq, s.applied_lsn));
        assert_eq!(d.objects, s.objects, "version {version}");
        // Deterministic: the same objects make the same image.
        assert_eq!(encode_snapshot(&d, version), img);
        sizes.push(img.len());
    }
    assert_eq!(sizes[1], sizes[2], "versions 1 and 2 share a layout");
    assert!(
        sizes[0] * 2 < sizes[1],
        "version 3 {} vs 2 {}",
        sizes[0],
        sizes[1]
    );
}

#[test]
fn snapshot_v3_packs_a_digest_that_differs() {
    let meta = |etag: &str| Bytes::from(format!("\x01et:{etag}ct:binary/octet-stream"));
    let (a, b) = (
        format!("{:032x}", u128::MAX / 3),
        format!("{:032x}", u128::MAX / 7),
    );
    let (c, d) = (format!("{:032x}", 0xaa_u8), format!("{:032x}", 0xab_u8));
    let mut enc = SnapshotEncoder::default();
    let mut out = [(); 4].map(|_| Vec::new());
    let ext = [snap_extent(1)];
    for (i, etag) in [&a, &b, &c, &d].into_iter().enumerate() {
        enc.object(
            &mut out[i],
            "b",
            &format!("k{i}"),
            16384,
            1,
            2,
            &meta(etag),
            &ext,
        );
    }
    // flags, key (1 + 1 + 1), size 3, mtime 1, seq 1, meta (1 + 1 + 1 + 16 packed), extents
    // (1 + volume 1 + offset 1 + head 1 + length 3 + tail 1 + block 3 + CRC 4).
    assert_eq!(
        out[1].len(),
        1 + 3 + 3 + 1 + 1 + 19 + 1 + 14,
        "{:?}",
        out[1]
    );
    // Digests sharing 31 leading digits: the last two, packed in one byte.
    assert_eq!(out[3].len(), 1 + 3 + 3 + 1 + 1 + 4 + 1 + 14, "{:?}", out[3]);
    let mut all = Vec::new();
    encode_snapshot_header(&mut all, 1, 0, 4);
    out.iter().for_each(|o| all.extend_from_slice(o));
    let s = decode_snapshot(&with_crc(all)).expect("decodes");
    let metas: Vec<_> = s.objects.iter().map(|o| o.meta.clone()).collect();
    assert_eq!(metas, [&a, &b, &c, &d].map(|e| meta(e)));
}

#[test]
fn snapshot_v3_refuses_what_it_cannot_have_written() {
    let s = sample_snapshot();
    let img = encode_snapshot(&s, SNAPSHOT_VERSION);
    // Every truncation (CRC fixed up) fails cleanly.
    for cut in (36..img.len() - 4).step_by(7) {
        let r = decode_snapshot(&with_crc(img[..cut].to_vec()));
        assert!(r.is_err(), "cut at {cut}");
    }
    let one = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut body = Vec::new();
        encode_snapshot_header(&mut body, 1, 0, 1);
        f(&mut body);
        decode_snapshot(&with_crc(body)).map(|s| s.objects.len())
    };
    let v = |out: &mut Vec<u8>, vs: &[u64]| vs.iter().for_each(|x| Enc(out).varint(*x));
    // A minimal valid object, to show the cases below fail for the reason they name.
    assert_eq!(
        one(&|b| {
            b.push(SNAP_NEW_NS);
            Enc(b).str16("n");
            v(b, &[0, 1]);
            b.push(b'k');
            v(b, &[0, 0, 0, 0, 0, 0, 0])
        })
        .ok(),
        Some(1)
    );
    // The first object must name its namespace.
    assert!(one(&|b| {
        b.push(0);
        v(b, &[0, 1]);
        b.push(b'k');
        v(b, &[0, 0, 0, 0, 0, 0, 0])
    })
    .is_err());
    // Unknown flags.
    assert!(one(&|b| {
        b.push(2);
        Enc(b).str16("n");
        v(b, &[0, 1]);
        b.push(b'k');
        v(b, &[0, 0, 0, 0, 0, 0, 0])
    })
    .is_err());
    // A shared key prefix longer than the previous key.
    assert!(one(&|b| {
        b.push(SNAP_NEW_NS);
        Enc(b).str16("n");
        v(b, &[1, 1]);
        b.push(b'k');
        v(b, &[0, 0, 0, 0, 0, 0, 0])
    })
    .is_err());
    // Shared metadata with no previous metadata.
    assert!(one(&|b| {
        b.push(SNAP_NEW_NS);
        Enc(b).str16("n");
        v(b, &[0, 1]);
        b.push(b'k');
        v(b, &[0, 0, 0, 1, 0, 0, 0])
    })
    .is_err());
    // An odd packed middle.
    assert!(one(&|b| {
        b.push(SNAP_NEW_NS);
        Enc(b).str16("n");
        v(b, &[0, 1]);
        b.push(b'k');
        v(b, &[0, 0, 0, 0, 0, 3]);
        b.push(0xab);
        v(b, &[0])
    })
    .is_err());
    // An extent whose span overflows, and one of block size 0.
    assert!(one(&|b| {
        b.push(SNAP_NEW_NS);
        Enc(b).str16("n");
        v(b, &[0, 1]);
        b.push(b'k');
        v(b, &[0, 0, 0, 0, 0, 0, 1, 0, u64::MAX, 1, 0, 1])
    })
    .is_err());
    assert!(one(&|b| {
        b.push(SNAP_NEW_NS);
        Enc(b).str16("n");
        v(b, &[0, 1]);
        b.push(b'k');
        v(b, &[0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0])
    })
    .is_err());
}

#[test]
fn snapshot_v3_huge_counts_fail_without_a_large_allocation() {
    // An extent count the input cannot hold, a key suffix longer than the input, a CRC table
    // of 2^40 entries.
    for tail in [
        &[0u64, 0, 0, 0, 0, 0, 1 << 40][..],
        &[0, 1 << 30],
        &[0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1 << 42, 1],
    ] {
        let mut body = Vec::new();
        encode_snapshot_header(&mut body, 1, 0, 1);
        body.push(SNAP_NEW_NS);
        Enc(&mut body).str16("n");
        if tail.len() != 2 {
            Enc(&mut body).varint(0);
            Enc(&mut body).varint(0);
        }
        for x in tail {
            Enc(&mut body).varint(*x);
        }
        body.extend_from_slice(&[0; 16]);
        let (r, largest) = largest_alloc_during(|| decode_snapshot(&with_crc(body.clone())));
        assert!(r.is_err());
        assert!(largest < 4096, "allocated {largest} bytes");
    }
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

#[test]
fn a_version_3_record_header_is_32_bytes_and_checks_its_names() {
    let mut b = Vec::new();
    encode_record_head(&mut b, "bucket", "a/key", 1024, 77);
    assert_eq!(b.len() as u64, RECORD_HEADER_BYTES);
    assert_eq!(&b[..4], b"BALR");
    assert_eq!(u16::from_le_bytes([b[4], b[5]]), 3);
    let h = decode_record_header(&b).unwrap();
    assert_eq!(h.version, RECORD_VERSION);
    assert_eq!((h.data_len, h.seq, h.flags), (1024, 77, 0));
    assert_eq!(h.head_bytes(), 32);
    assert!(h.names_match(&b, "bucket", "a/key"));
    assert!(!h.names_match(&b, "bucket", "a/kez"));
    assert!(
        !h.names_match(&b, "bucke", "ta/key"),
        "the namespace length is checked"
    );
    assert_eq!(
        h.names,
        RecordNames::KeyCheck(record_key_check("bucket", "a/key"))
    );
    // Every byte is covered by the header CRC.
    for i in 0..32 {
        let mut bad = b.clone();
        bad[i] ^= 0x10;
        assert!(decode_record_header(&bad).is_err(), "byte {i}");
    }
    assert!(decode_record_header(&b[..31]).is_err());
    let mut v2 = b.clone();
    v2[4] = 2;
    let crc = crc32c::crc32c(&v2[..28]);
    v2[28..32].copy_from_slice(&crc.to_le_bytes());
    assert!(decode_record_header(&v2)
        .unwrap_err()
        .contains("unknown record version 2"));
}

#[test]
fn a_version_1_record_header_is_still_read() {
    let mut b = Vec::new();
    encode_record_head_named(&mut b, "ns", "key", 5000, 9, 16384);
    assert_eq!(b.len(), 36 + 2 + 3);
    let h = decode_record_header(&b).unwrap();
    assert_eq!(h.version, RECORD_VERSION_NAMED);
    assert_eq!((h.data_len, h.seq), (5000, 9));
    assert_eq!(h.head_bytes(), 41);
    assert!(h.names_match(&b, "ns", "key"));
    assert!(!h.names_match(&b, "ns", "kez"));
    assert!(!h.names_match(&b[..40], "ns", "key"), "names cut short");
    assert!(decode_record_header(&b[..35]).is_err());
}

#[test]
fn record_bytes_follow_from_the_head_length() {
    assert_eq!(record_raw_bytes(1024), 1056);
    assert_eq!(packed_span_bytes(record_raw_bytes(1024)), 1056);
    assert_eq!(packed_span_bytes(record_raw_bytes(1)), 40);
    assert_eq!(record_raw_bytes_of_extent(32, 1024, 16384), Some(1056));
    // Version 1: 36 + names, then the trailer (n_blocks, one CRC, trailer CRC).
    assert_eq!(
        record_raw_bytes_of_extent(36 + 5 + 96, 1024, 16384),
        Some(record_raw_bytes_named(5, 96, 1024, 16384))
    );
    assert_eq!(
        record_raw_bytes_named(5, 96, 1024, 16384),
        36 + 101 + 1024 + 12
    );
    for head in [0, 31, 33, 35] {
        assert_eq!(
            record_raw_bytes_of_extent(head, 10, 16384),
            None,
            "head {head}"
        );
    }
    assert_eq!(record_raw_bytes_of_extent(40, 10, 0), None);
    assert_eq!(record_raw_bytes_of_extent(32, u64::MAX, 16384), None);
    // A forged version-1 head: a CRC table larger than 64 bits can count (io/fuzz finding).
    assert_eq!(record_raw_bytes_of_extent(40, u64::MAX / 2, 1), None);
    assert_eq!(record_span_bytes(record_raw_bytes(4064), 4096), 4096);
    assert_eq!(record_span_bytes(record_raw_bytes(4065), 4096), 8192);
}
