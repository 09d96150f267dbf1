//! `bale-bench ec`: the erasure code's own speed on this machine (issue 14), no server.
//!
//! For each stripe shape: encode throughput (data bytes in per second), reconstruction
//! throughput with one and with m shards lost, and the latency of a degraded 4 KiB read's
//! decode (the CPU a degraded GET adds on top of its k reads). Measured for bale's codec
//! (`bale_io::ec`: reed-solomon-erasure, GF(2^8), SIMD kernels) and for reed-solomon-simd
//! (GF(2^16), the crate the design card names) side by side, on the same random data.

use std::time::{Duration, Instant};

use bale_io::ec::StripeCodec;
use clap::Args;
use rand::RngCore;
use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

#[derive(Args, Clone)]
pub struct EcArgs {
    /// Stripe shapes, K+M, comma-separated.
    #[arg(long, default_value = "2+2,4+2,6+3,8+4,10+4")]
    pub shapes: String,
    /// Bytes per shard in the throughput runs.
    #[arg(long, default_value_t = 1 << 20)]
    pub shard_bytes: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 1.0)]
    pub seconds: f64,
    /// Print one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Run `f` repeatedly for about `secs`; returns (runs, elapsed).
fn time_for(secs: f64, mut f: impl FnMut()) -> (u64, Duration) {
    f(); // warm-up
    let t0 = Instant::now();
    let mut n = 0;
    while t0.elapsed().as_secs_f64() < secs {
        f();
        n += 1;
    }
    (n, t0.elapsed())
}

fn parse_shapes(s: &str) -> Result<Vec<(usize, usize)>, String> {
    s.split(',')
        .map(|p| {
            let (k, m) = p
                .trim()
                .split_once('+')
                .ok_or_else(|| format!("shape {p:?} is not K+M"))?;
            Ok((
                k.parse().map_err(|_| format!("bad K in {p:?}"))?,
                m.parse().map_err(|_| format!("bad M in {p:?}"))?,
            ))
        })
        .collect()
}

struct Row {
    codec: &'static str,
    shape: String,
    encode_mb_s: f64,
    decode1_mb_s: f64,
    decode_m_mb_s: f64,
    degraded_4k_us: f64,
}

fn mb_s(bytes: u64, runs: u64, d: Duration) -> f64 {
    (bytes * runs) as f64 / d.as_secs_f64() / 1e6
}

fn bench_bale(k: usize, m: usize, a: &EcArgs, data: &[Vec<u8>]) -> Row {
    let len = a.shard_bytes;
    let codec = StripeCodec::new(k, m).expect("stripe shape");
    let mut parity = vec![vec![0u8; len]; m];
    let drefs: Vec<&[u8]> = data.iter().map(|d| &d[..len]).collect();
    let (n, d) = time_for(a.seconds, || {
        let mut p: Vec<&mut [u8]> = parity.iter_mut().map(|p| p.as_mut_slice()).collect();
        codec.encode(&drefs, &mut p).expect("encode");
    });
    let encode_mb_s = mb_s((len * k) as u64, n, d);
    let mut bufs: Vec<Vec<u8>> = data.iter().chain(parity.iter()).cloned().collect();
    let mut decode = |lost: usize, bytes: usize, secs: f64| {
        let present: Vec<bool> = (0..k + m).map(|i| i >= lost).collect();
        let mut refs: Vec<&mut [u8]> = bufs.iter_mut().map(|b| &mut b[..bytes]).collect();
        time_for(secs, || {
            codec.reconstruct(&mut refs, &present, 0).expect("decode");
        })
    };
    let (n1, d1) = decode(1, len, a.seconds);
    let (nm, dm) = decode(m.min(k), len, a.seconds);
    let (n4, d4) = decode(1, 4096, a.seconds / 2.0);
    Row {
        codec: "bale: rs-erasure GF(2^8)",
        shape: format!("{k}+{m}"),
        encode_mb_s,
        decode1_mb_s: mb_s(len as u64, n1, d1),
        decode_m_mb_s: mb_s(len as u64, nm, dm),
        degraded_4k_us: d4.as_secs_f64() * 1e6 / n4 as f64,
    }
}

fn bench_simd(k: usize, m: usize, a: &EcArgs, data: &[Vec<u8>]) -> Row {
    let len = a.shard_bytes;
    let mut enc = ReedSolomonEncoder::new(k, m, len).expect("stripe shape");
    let mut parity: Vec<Vec<u8>> = Vec::new();
    let (n, d) = time_for(a.seconds, || {
        enc.reset(k, m, len).expect("reset");
        for s in data {
            enc.add_original_shard(&s[..len]).expect("add");
        }
        let r = enc.encode().expect("encode");
        parity = r.recovery_iter().map(|p| p.to_vec()).collect();
    });
    let encode_mb_s = mb_s((len * k) as u64, n, d);
    let mut dec = ReedSolomonDecoder::new(k, m, len).expect("stripe shape");
    let mut decode = |lost: usize, bytes: usize, secs: f64| {
        time_for(secs, || {
            dec.reset(k, m, bytes).expect("reset");
            for (i, s) in data.iter().enumerate().skip(lost) {
                dec.add_original_shard(i, &s[..bytes]).expect("add");
            }
            for (j, p) in parity.iter().enumerate().take(lost) {
                dec.add_recovery_shard(j, &p[..bytes]).expect("add");
            }
            let r = dec.decode().expect("decode");
            assert!(r.restored_original(0).is_some());
        })
    };
    let (n1, d1) = decode(1, len, a.seconds);
    let (nm, dm) = decode(m.min(k), len, a.seconds);
    let (n4, d4) = decode(1, 4096, a.seconds / 2.0);
    Row {
        codec: "reed-solomon-simd GF(2^16)",
        shape: format!("{k}+{m}"),
        encode_mb_s,
        decode1_mb_s: mb_s(len as u64, n1, d1),
        decode_m_mb_s: mb_s(len as u64, nm, dm),
        degraded_4k_us: d4.as_secs_f64() * 1e6 / n4 as f64,
    }
}

pub fn run(a: EcArgs) -> i32 {
    let shapes = match parse_shapes(&a.shapes) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bale-bench ec: {e}");
            return 2;
        }
    };
    let kmax = shapes.iter().map(|s| s.0).max().unwrap_or(1);
    let mut rng = rand::rng();
    let data: Vec<Vec<u8>> = (0..kmax)
        .map(|_| {
            let mut v = vec![0u8; a.shard_bytes];
            rng.fill_bytes(&mut v);
            v
        })
        .collect();
    let mut rows = Vec::new();
    for &(k, m) in &shapes {
        rows.push(bench_bale(k, m, &a, &data[..k]));
        rows.push(bench_simd(k, m, &a, &data[..k]));
    }
    if a.json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({"codec": r.codec, "shape": r.shape,
                    "encode_mb_s": r.encode_mb_s, "decode1_mb_s": r.decode1_mb_s,
                    "decode_m_mb_s": r.decode_m_mb_s, "degraded_4k_us": r.degraded_4k_us,
                    "shard_bytes": a.shard_bytes})
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
    } else {
        println!(
            "{:<28} {:>5} {:>12} {:>14} {:>14} {:>15}",
            "codec", "k+m", "encode MB/s", "decode-1 MB/s", "decode-m MB/s", "degraded 4K µs"
        );
        for r in &rows {
            println!(
                "{:<28} {:>5} {:>12.0} {:>14.0} {:>14.0} {:>15.1}",
                r.codec, r.shape, r.encode_mb_s, r.decode1_mb_s, r.decode_m_mb_s, r.degraded_4k_us
            );
        }
    }
    0
}
