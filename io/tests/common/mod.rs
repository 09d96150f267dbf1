//! Helpers shared by the engine's integration tests: a runtime, deterministic bytes, a config.

pub mod small;

use std::future::Future;

use bale_io::EngineConfig;

/// Run `f` to completion on a fresh io_uring runtime (timers on).
pub fn rt<F: Future>(f: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .expect("io_uring runtime")
        .block_on(f)
}

/// Deterministic pseudo-random bytes.
pub fn gen(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The default engine config with a 64 KiB write buffer (so streamed writes take several).
pub fn cfg() -> EngineConfig {
    EngineConfig {
        write_buffer_bytes: 64 * 1024,
        ..EngineConfig::default()
    }
}
