//! The S3 front: one file per operation family. This layer speaks S3 and turns each request
//! into engine calls on the shard that owns the object (see `router`).

pub mod body;
pub mod bucket;
pub mod cond;
pub mod copy;
pub mod delete;
mod dto;
pub mod error;
pub mod get;
pub mod headers;
pub mod ingest;
pub mod list;
pub mod meta;
pub mod mpu_checksum;
pub mod multipart;
pub mod put;

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

use bale_io::Shard;

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, S3};

use crate::buckets::Buckets;
use crate::router::{on_shard, Topology};

/// Explicit limits of the S3 layer.
pub mod limits {
    /// Longest object key, bytes (S3's limit).
    pub const MAX_KEY_BYTES: usize = 1024;
    /// Largest single PUT / part, bytes (S3's limit: 5 GiB).
    pub const MAX_PUT_BYTES: u64 = 5 << 30;
    /// Smallest multipart part except the last (S3's limit: 5 MiB).
    pub const MIN_PART_BYTES: u64 = 5 << 20;
    /// Highest part number.
    pub const MAX_PART_NUMBER: i32 = 10_000;
    /// Largest read handed to the engine at once when streaming a GET.
    pub const READ_WINDOW_BYTES: u64 = 1 << 20;
    /// Objects (or ranges) up to this size are answered from one read, in one body chunk.
    pub const SINGLE_READ_BYTES: u64 = 1 << 20;
    /// Keys per DeleteObjects request.
    pub const MAX_DELETE_KEYS: usize = 1000;
    /// User metadata total (keys + values), bytes (S3's limit: 2 KiB).
    pub const MAX_USER_META_BYTES: usize = 2048;
}

/// Request extension the HTTP layer sets on a PUT streamed with `Transfer-Encoding: chunked`,
/// no Content-Length and `x-amz-content-sha256: UNSIGNED-PAYLOAD` (some SDKs send unknown
/// lengths so). Its Content-Length header is then a placeholder: the body is counted as it
/// streams, and limited to `limits::MAX_PUT_BYTES` while it streams.
#[derive(Clone, Copy, Debug)]
pub struct UnknownLength;

#[derive(Clone)]
pub struct BaleS3 {
    pub topo: Arc<Topology>,
    pub buckets: Arc<Buckets>,
    pub region: String,
}

/// One shard to run a closure on: `BaleS3::shard_of(bucket, key)` (the owner of a key) or
/// `BaleS3::shard(id)` (fan-outs over every shard). A routing failure (the owning core is
/// gone or the closure panicked) is a logged 500 InternalError (`error::route`).
pub struct OnShard<'a> {
    topo: &'a Arc<Topology>,
    shard_id: usize,
}

impl OnShard<'_> {
    /// Runs `f` on the shard's core; its `S3Result` is the answer.
    pub async fn run<T, F, Fut>(self, f: F) -> S3Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = S3Result<T>> + 'static,
    {
        on_shard(self.topo, self.shard_id, f)
            .await
            .map_err(error::route)?
    }

    /// Runs `f` on the shard's core, for closures that do not answer an `S3Result`.
    pub async fn call<T, F, Fut>(self, f: F) -> S3Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        on_shard(self.topo, self.shard_id, f)
            .await
            .map_err(error::route)
    }
}

impl BaleS3 {
    /// Holds `bucket` open for a write (a DeleteBucket waits it out), or NoSuchBucket.
    pub fn writing(&self, bucket: &str) -> S3Result<crate::buckets::WriteGuard> {
        self.buckets
            .write_guard(bucket)
            .ok_or_else(|| error::no_such_bucket(bucket))
    }

    /// The shard that owns `key` in `bucket`. Computed at once, so the closure handed to
    /// `run` may move the strings this borrowed.
    pub fn shard_of(&self, bucket: &str, key: &str) -> OnShard<'_> {
        self.shard(self.topo.shard_for(bucket, key))
    }

    pub fn shard(&self, shard_id: usize) -> OnShard<'_> {
        OnShard {
            topo: &self.topo,
            shard_id,
        }
    }

    /// 404 NoSuchBucket unless `bucket` exists (reads; writes hold `Buckets::write_guard`
    /// instead, which also keeps a concurrent DeleteBucket out).
    pub fn bucket_exists(&self, bucket: &str) -> S3Result<()> {
        if self.buckets.exists(bucket) {
            Ok(())
        } else {
            Err(error::no_such_bucket(bucket))
        }
    }
}

/// Test hook: when the environment variable `BALE_TEST_PANIC_KEY` is set at start, reading
/// that exact key panics inside the request (on the shard's core), so tests can prove a panic
/// costs one 500 and nothing else. Unset (always, in production) it is one pointer compare.
pub fn test_panic_hook(key: &str) {
    static KEY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let k = KEY.get_or_init(|| {
        std::env::var("BALE_TEST_PANIC_KEY")
            .ok()
            .filter(|k| !k.is_empty())
    });
    if let Some(k) = k {
        if k == key {
            panic!("BALE_TEST_PANIC_KEY: deliberate panic for key {key}");
        }
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn timestamp_ms(ms: u64) -> Timestamp {
    Timestamp::from(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
}

/// The owner every bucket, object and upload has (bale has one account).
pub fn owner() -> Owner {
    Owner {
        display_name: Some("bale".into()),
        id: Some("bale".into()),
    }
}

pub fn check_key(key: &str) -> S3Result<()> {
    if key.len() > limits::MAX_KEY_BYTES {
        return Err(s3s::s3_error!(
            KeyTooLongError,
            "Your key is too long (limit {} bytes)",
            limits::MAX_KEY_BYTES
        ));
    }
    if key.is_empty() {
        return Err(s3s::s3_error!(
            InvalidArgument,
            "Object key must not be empty"
        ));
    }
    Ok(())
}

#[async_trait::async_trait]
impl S3 for BaleS3 {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        bucket::create(self, req).await
    }
    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        bucket::head(self, req).await
    }
    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        bucket::delete(self, req).await
    }
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        bucket::list(self, req).await
    }
    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        bucket::location(self, req).await
    }
    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        put::put_object(self, req).await
    }
    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        get::get_object(self, req).await
    }
    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        get::head_object(self, req).await
    }
    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        delete::delete_object(self, req).await
    }
    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        delete::delete_objects(self, req).await
    }
    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        list::list_objects_v2(self, req).await
    }
    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        list::list_objects_v1(self, req).await
    }
    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        copy::copy_object(self, req).await
    }
    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        multipart::create(self, req).await
    }
    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        multipart::upload_part(self, req).await
    }
    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        multipart::upload_part_copy(self, req).await
    }
    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        multipart::complete(self, req).await
    }
    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        multipart::abort(self, req).await
    }
    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        multipart::list_parts(self, req).await
    }
    async fn get_object_acl(
        &self,
        req: S3Request<GetObjectAclInput>,
    ) -> S3Result<S3Response<GetObjectAclOutput>> {
        bucket::get_object_acl(self, req).await
    }
    async fn put_object_acl(
        &self,
        req: S3Request<PutObjectAclInput>,
    ) -> S3Result<S3Response<PutObjectAclOutput>> {
        bucket::put_object_acl(self, req).await
    }
    async fn get_bucket_acl(
        &self,
        req: S3Request<GetBucketAclInput>,
    ) -> S3Result<S3Response<GetBucketAclOutput>> {
        bucket::get_bucket_acl(self, req).await
    }
    async fn put_bucket_acl(
        &self,
        req: S3Request<PutBucketAclInput>,
    ) -> S3Result<S3Response<PutBucketAclOutput>> {
        bucket::put_bucket_acl(self, req).await
    }
    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        multipart::list_uploads(self, req).await
    }
}
