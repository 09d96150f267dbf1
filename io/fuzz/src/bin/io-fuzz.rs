//! Stable driver over every engine decoder target. `io-fuzz --help`.

#[allow(dead_code)]
#[path = "../../../../fuzz/src/driver.rs"]
mod driver;

#[global_allocator]
static ALLOC: driver::PeakAlloc = driver::PeakAlloc;

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let targets = [
        driver::Target { name: "record_header", run: bale_io_fuzz::record_header, generate: gen::record_header },
        driver::Target { name: "journal", run: bale_io_fuzz::journal, generate: gen::journal },
        driver::Target { name: "journal_payload", run: bale_io_fuzz::journal_payload, generate: gen::journal_payload },
        driver::Target { name: "snapshot", run: bale_io_fuzz::snapshot, generate: gen::snapshot },
    ];
    driver::main_with(&targets, root);
}

/// Structured generators: valid encodings with random fields (then the driver mutates them).
mod gen {
    use super::driver::Rng;
    use bale_io_fuzz::format::*;
    use bale_io_fuzz::FIX_CRC;

    fn flags(rng: &mut Rng) -> u8 {
        if rng.chance(10) { 0 } else { FIX_CRC }
    }

    pub fn extent(rng: &mut Rng) -> ExtentRec {
        let block_bytes = [4096u32, 65536, 1 << 20, 1, 7][rng.below(5)];
        let len = if block_bytes < 4096 || rng.chance(3) { rng.size(300) as u64 } else { rng.below(1 << 22) as u64 };
        let n = block_count(len, block_bytes) as usize;
        let crcs: Vec<u32> = (0..n).map(|_| rng.next() as u32).collect();
        ExtentRec {
            volume_id: rng.next() as u32 % 8,
            record_offset: (rng.below(1 << 20) as u64) * 4096,
            data_offset: rng.next() % (1 << 32),
            len,
            span_bytes: len + 4096,
            block_bytes,
            crcs: crcs.into(),
        }
    }

    pub fn entry(rng: &mut Rng) -> Entry {
        let seq = if rng.chance(4) { rng.interesting_u64() } else { rng.next() % 100_000 };
        match rng.below(4) {
            0 => Entry::Put {
                seq,
                mtime_ms: rng.next(),
                ns: rng.string(20),
                key: rng.string(60),
                meta: rng.blob(80).into(),
                extent: extent(rng),
            },
            1 => Entry::Delete { seq, ns: rng.string(20), key: rng.string(60) },
            2 => Entry::Compose {
                seq,
                mtime_ms: rng.next(),
                ns: rng.string(20),
                key: rng.string(60),
                meta: rng.blob(40).into(),
                remove_sources: rng.chance(2),
                sources: { let n = rng.size(5); (0..n).map(|_| (rng.string(10), rng.string(20), rng.next())).collect() },
            },
            _ => Entry::Relocate {
                seq,
                ns: rng.string(20),
                key: rng.string(60),
                moves: (0..{ let n = rng.size(5); n })
                    .map(|_| Move {
                        extent_index: rng.below(10) as u32,
                        volume_id: rng.below(8) as u32,
                        record_offset: rng.next() % (1 << 40),
                        data_offset: rng.next() % (1 << 40),
                        span_bytes: rng.next() % (1 << 40),
                    })
                    .collect(),
            },
        }
    }

    pub fn record_header(rng: &mut Rng) -> Vec<u8> {
        let mut out = vec![flags(rng)];
        let ns = rng.string(20);
        let key = rng.string(100);
        if rng.chance(2) {
            encode_record_head(&mut out, &ns, &key, rng.interesting_u64(), rng.next());
        } else {
            encode_record_head_named(&mut out, &ns, &key, rng.interesting_u64() % (1 << 40), rng.next(), 4096);
        }
        out
    }

    pub fn journal(rng: &mut Rng) -> Vec<u8> {
        let mut out = vec![flags(rng)];
        let mut lsn = rng.below(1000) as u64;
        for _ in 0..rng.size(6) {
            encode_journal_entry(&mut out, lsn, &entry(rng));
            lsn += 1;
        }
        if rng.chance(4) {
            // torn tail
            let cut = rng.below(out.len());
            out.truncate(cut.max(1));
        }
        out
    }

    pub fn journal_payload(rng: &mut Rng) -> Vec<u8> {
        let mut out = Vec::new();
        encode_journal_entry(&mut out, rng.next(), &entry(rng));
        out.drain(..8);
        out
    }

    pub fn snapshot(rng: &mut Rng) -> Vec<u8> {
        let mut out = vec![flags(rng)];
        let n = rng.size(5);
        encode_snapshot_header(&mut out, rng.next() % 100_000, rng.next() % 100_000, n as u64);
        // Version 3 (front-coded) mostly, the fixed-width version 2 sometimes; objects that share
        // namespaces, key prefixes and metadata ends with the one before, as a server's do.
        let v2 = rng.next() % 4 == 0;
        if v2 {
            out[5..9].copy_from_slice(&SNAPSHOT_VERSION_PACKED.to_le_bytes());
        }
        let mut enc = SnapshotEncoder::default();
        let (mut ns, mut key, mut meta) = (rng.string(20), rng.string(60), rng.blob(60));
        for _ in 0..n {
            let nx = rng.size(3);
            let mut exts: Vec<ExtentRec> = (0..nx).map(|_| extent(rng)).collect();
            if !v2 {
                // An index's extents: the data inside the record's span.
                for e in &mut exts {
                    e.data_offset = e.record_offset + 36 + rng.size(100) as u64;
                    e.span_bytes = e.data_offset - e.record_offset + e.len + rng.size(4096) as u64;
                }
            }
            let size = exts.iter().map(|e| e.len).sum();
            match rng.next() % 4 {
                0 => ns = rng.string(20),
                1 => key = rng.string(60),
                _ => key.push_str(&rng.string(4)),
            }
            if rng.next() % 2 == 0 {
                meta = rng.blob(60);
            }
            let (seq, mtime) = (rng.next() % 100_000, rng.next());
            if v2 {
                encode_snapshot_object_v2(&mut out, &ns, &key, size, mtime, seq, &meta, &exts);
            } else {
                enc.object(&mut out, &ns, &key, size, mtime, seq, &meta, &exts);
            }
        }
        let crc = crc32c::crc32c(&out[1..]);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }
}
