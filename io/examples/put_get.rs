//! Put one object, read it back whole and as a range, reopen the shard and read it again.
//!
//! `cargo run -p bale-io --example put_get -- /tmp/bale-demo`

use bale_io::{EngineConfig, Expect, Shard};
use bytes::Bytes;

fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/tmp/bale-put-get".into());
    let dir = std::path::PathBuf::from(dir);
    let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .expect("io_uring runtime");
    rt.block_on(async {
        let shard = Shard::open(&dir, EngineConfig::default())
            .await
            .expect("open");
        let body = b"hello from bale: packed O_DIRECT volumes on io_uring\n".repeat(100);
        let mut w = shard
            .put("demo-bucket", "greeting.txt", body.len() as u64)
            .expect("put");
        for chunk in body.chunks(1000) {
            w.write(Bytes::copy_from_slice(chunk)).await.expect("write");
        }
        let obj = w
            .finish(Bytes::from_static(b"content-type: text/plain"), Expect::Any)
            .await
            .expect("finish");
        println!("stored seq {} ({} bytes), durable", obj.seq, obj.size);
        let all = shard.read(&obj, 0, obj.size).await.expect("read");
        assert_eq!(&all[..], &body[..]);
        let part = shard.read(&obj, 6, 4).await.expect("ranged read");
        println!("bytes 6..10: {:?}", std::str::from_utf8(&part).unwrap());
        shard.close().await.expect("close");
        drop(shard);

        let shard = Shard::open(&dir, EngineConfig::default())
            .await
            .expect("reopen");
        let obj = shard
            .get("demo-bucket", "greeting.txt")
            .expect("survives reopen");
        let all = shard.read(&obj, 0, obj.size).await.expect("read");
        assert_eq!(&all[..], &body[..]);
        println!("after reopen: {:?}, meta {:?}", shard.stats(), obj.meta);
    });
}
