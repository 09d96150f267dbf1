use rand::{Rng, RngCore, SeedableRng};

use super::*;

fn random_shards(rng: &mut rand::rngs::StdRng, k: usize, len: usize) -> Vec<Vec<u8>> {
    (0..k)
        .map(|_| {
            let mut v = vec![0u8; len];
            rng.fill_bytes(&mut v);
            v
        })
        .collect()
}

fn encode_all(codec: &StripeCodec, data: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let len = data[0].len();
    let mut parity = vec![vec![0u8; len]; codec.parity_shards()];
    let drefs: Vec<&[u8]> = data.iter().map(|d| d.as_slice()).collect();
    let mut prefs: Vec<&mut [u8]> = parity.iter_mut().map(|p| p.as_mut_slice()).collect();
    codec.encode(&drefs, &mut prefs).unwrap();
    parity
}

/// Every way of losing up to m shards of a stripe restores every shard byte for byte.
#[test]
fn any_m_losses_restore_every_shard() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    for (k, m) in [(1, 1), (2, 1), (2, 2), (4, 2), (6, 3), (8, 4), (10, 4)] {
        let codec = StripeCodec::new(k, m).unwrap();
        let len = 64 * 37;
        let data = random_shards(&mut rng, k, len);
        let parity = encode_all(&codec, &data);
        let all: Vec<&[u8]> = data
            .iter()
            .chain(parity.iter())
            .map(|v| v.as_slice())
            .collect();
        let n = k + m;
        // Every loss pattern of exactly m shards for small stripes; 200 random ones otherwise.
        let patterns: Vec<u64> = if n <= 10 {
            (0u64..1 << n)
                .filter(|p| p.count_ones() as usize == m)
                .collect()
        } else {
            (0..200)
                .map(|_| {
                    let mut p = 0u64;
                    while (p.count_ones() as usize) < m {
                        p |= 1 << rng.random_range(0..n);
                    }
                    p
                })
                .collect()
        };
        for lost in patterns {
            let present: Vec<bool> = (0..n).map(|i| lost & (1 << i) == 0).collect();
            for want in (0..n).filter(|i| !present[*i]) {
                // Lost shards hold garbage going in.
                let mut bufs: Vec<Vec<u8>> = (0..n)
                    .map(|i| {
                        if present[i] {
                            all[i].to_vec()
                        } else {
                            vec![0xa5; len]
                        }
                    })
                    .collect();
                let mut refs: Vec<&mut [u8]> = bufs.iter_mut().map(|b| b.as_mut_slice()).collect();
                codec.reconstruct(&mut refs, &present, want).unwrap();
                assert_eq!(bufs[want], all[want], "{k}+{m} lost {lost:b} shard {want}");
            }
        }
    }
}

/// More than m losses is refused, never answered with wrong bytes.
#[test]
fn too_many_losses_is_refused() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(15);
    let codec = StripeCodec::new(4, 2).unwrap();
    let data = random_shards(&mut rng, 4, 4096);
    let parity = encode_all(&codec, &data);
    let mut bufs: Vec<Vec<u8>> = data.iter().chain(parity.iter()).cloned().collect();
    let mut refs: Vec<&mut [u8]> = bufs.iter_mut().map(|b| b.as_mut_slice()).collect();
    let present = [false, false, false, true, true, true];
    let err = codec.reconstruct(&mut refs, &present, 0).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
}

/// The property degraded reads rely on: parity over any sub-range equals that range of the
/// whole shard's parity, and decoding just that range restores just those bytes.
#[test]
fn sub_ranges_encode_and_decode_alone() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(16);
    let codec = StripeCodec::new(4, 2).unwrap();
    let len = 1 << 16;
    let data = random_shards(&mut rng, 4, len);
    let parity = encode_all(&codec, &data);
    for _ in 0..50 {
        let start = rng.random_range(0..len - 1);
        let n = rng.random_range(1..=len - start);
        let sub: Vec<Vec<u8>> = data.iter().map(|d| d[start..start + n].to_vec()).collect();
        let sub_parity = encode_all(&codec, &sub);
        for j in 0..2 {
            assert_eq!(
                sub_parity[j],
                parity[j][start..start + n],
                "range {start}+{n}"
            );
        }
        let mut bufs: Vec<Vec<u8>> = sub.iter().chain(sub_parity.iter()).cloned().collect();
        bufs[0].fill(0);
        bufs[2].fill(0);
        let mut refs: Vec<&mut [u8]> = bufs.iter_mut().map(|b| b.as_mut_slice()).collect();
        codec
            .reconstruct(&mut refs, &[false, true, false, true, true, true], 2)
            .unwrap();
        assert_eq!(bufs[2], &data[2][start..start + n]);
    }
}

#[test]
fn bad_shapes_are_refused() {
    assert!(StripeCodec::new(0, 2).is_err());
    assert!(StripeCodec::new(4, 0).is_err());
    assert!(StripeCodec::new(33, 2).is_err());
    assert!(StripeCodec::new(4, 17).is_err());
    assert_eq!(shard_bytes_for(0), 4096);
    assert_eq!(shard_bytes_for(4097), 8192);
}

/// Files: encode a stripe of data files of different lengths (shorter ones read as zeros),
/// lose two, read ranges back degraded, rebuild both byte for byte, verify parity, and find a
/// flipped byte.
#[test]
fn files_encode_degrade_rebuild_verify() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    let (k, m) = (4, 2);
    let lens = [3 << 20, (1 << 20) + 4097, 12345, 0];
    let mut paths = Vec::new();
    let mut contents = Vec::new();
    for (i, len) in lens.iter().enumerate() {
        let mut v = vec![0u8; *len];
        rng.fill_bytes(&mut v);
        let p = dir.path().join(format!("data-{i}"));
        std::fs::write(&p, &v).unwrap();
        paths.push(p);
        contents.push(v);
    }
    for j in 0..m {
        paths.push(dir.path().join(format!("parity-{j}")));
    }
    let shard_bytes = shard_bytes_for(*lens.iter().max().unwrap() as u64);
    let codec = StripeCodec::new(k, m).unwrap();
    let refs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
    let report = encode_files(&codec, &refs[..k], &refs[k..], shard_bytes).unwrap();
    assert_eq!(report.written_bytes, shard_bytes * m as u64);
    assert!(verify_files(&codec, &refs, shard_bytes).unwrap().is_empty());

    // Lose data shard 1 and parity shard 0.
    let mut present: Vec<Option<&Path>> = refs.iter().map(|p| Some(*p)).collect();
    present[1] = None;
    present[k] = None;
    for _ in 0..100 {
        let len = rng.random_range(1..70_000u64);
        let off = rng.random_range(0..lens[1] as u64 - len);
        let got = read_range(&codec, &present, 1, off, len).unwrap();
        assert_eq!(got, &contents[1][off as usize..(off + len) as usize]);
    }
    // Rebuild both into fresh files, rate-limited, with progress reaching the end.
    for want in [1, k] {
        let out = dir.path().join(format!("rebuilt-{want}"));
        let mut last = 0;
        rebuild_file(&codec, &present, want, &out, shard_bytes, 0, |d, t| {
            assert!(d > last && d <= t);
            last = d;
        })
        .unwrap();
        assert_eq!(last, shard_bytes);
        let rebuilt = std::fs::read(&out).unwrap();
        let original = std::fs::read(refs[want]).unwrap();
        assert_eq!(rebuilt.len() as u64, shard_bytes);
        assert_eq!(&rebuilt[..original.len()], &original[..]);
        assert!(rebuilt[original.len()..].iter().all(|b| *b == 0));
    }
    // Scrub: a flipped byte in a parity file is found in the right chunk.
    let mut p = std::fs::read(refs[k + 1]).unwrap();
    p[(2 << 20) + 5] ^= 0x40;
    std::fs::write(refs[k + 1], &p).unwrap();
    let bad = verify_files(&codec, &refs, shard_bytes).unwrap();
    assert_eq!(bad, vec![(2 << 20, STRIPE_CHUNK_BYTES as u64)]);
}
