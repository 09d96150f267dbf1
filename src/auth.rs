//! The s3s side of access keys (`crate::keys`): [`KeysAuth`] gives s3s the secret of an access
//! key (unknown keys get S3's `InvalidAccessKeyId`; s3s's SimpleAuth answers NotSignedUp), and
//! [`KeysAccess`] decides, before the request body is read, whether the key may run the
//! operation on its bucket: 403 `AccessDenied` otherwise.

use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::dto::{CopyObjectInput, CopySource, UploadPartCopyInput};
use s3s::path::S3Path;
use s3s::{s3_error, S3Request, S3Result};

use crate::keys;

pub struct KeysAuth;

#[async_trait::async_trait]
impl S3Auth for KeysAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match keys::secret_of(access_key) {
            Some(s) => Ok(SecretKey::from(s)),
            None => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            )),
        }
    }
}

/// Whether an operation only reads: its S3 name starts with `Get`, `Head` or `List`.
pub fn is_read_op(name: &str) -> bool {
    name.starts_with("Get") || name.starts_with("Head") || name.starts_with("List")
}

fn denied() -> s3s::S3Error {
    s3_error!(AccessDenied, "Access Denied")
}

/// Whether `access_key` may run operation `op` on `bucket` (`None`: no bucket, i.e.
/// ListBuckets, which every key may run: it lists only the buckets the key can read).
pub fn allowed(access_key: &str, op: &str, bucket: Option<&str>) -> bool {
    keys::with_key(access_key, |k| {
        let Some(k) = k else { return false };
        if k.key.is_unrestricted() {
            return true;
        }
        match bucket {
            None => is_read_op(op),
            Some(b) if is_read_op(op) => k.key.can_read(b),
            Some(b) => k.key.can_write(b),
        }
    })
}

/// The source bucket of a copy must be readable by the key too.
fn check_copy_source<T>(req: &S3Request<T>, source: &CopySource) -> S3Result<()> {
    let Some(c) = &req.credentials else {
        return Err(denied());
    };
    let ok = match source {
        CopySource::Bucket { bucket, .. } => allowed(&c.access_key, "GetObject", Some(bucket)),
        // Access points and outposts name no bucket of this server: only an unrestricted key.
        _ => keys::with_key(&c.access_key, |k| {
            k.is_some_and(|k| k.key.is_unrestricted())
        }),
    };
    if ok {
        Ok(())
    } else {
        Err(denied())
    }
}

pub struct KeysAccess;

#[async_trait::async_trait]
impl S3Access for KeysAccess {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let Some(c) = cx.credentials() else {
            return Err(s3_error!(AccessDenied, "Signature is required"));
        };
        let bucket = match cx.s3_path() {
            S3Path::Root => None,
            S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } => Some(&**bucket),
        };
        if allowed(&c.access_key, cx.s3_op().name(), bucket) {
            Ok(())
        } else {
            Err(denied())
        }
    }

    async fn copy_object(&self, req: &mut S3Request<CopyObjectInput>) -> S3Result<()> {
        check_copy_source(req, &req.input.copy_source)
    }

    async fn upload_part_copy(&self, req: &mut S3Request<UploadPartCopyInput>) -> S3Result<()> {
        check_copy_source(req, &req.input.copy_source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_ops() {
        for op in [
            "GetObject",
            "HeadObject",
            "ListObjectsV2",
            "ListBuckets",
            "HeadBucket",
        ] {
            assert!(is_read_op(op), "{op}");
        }
        for op in [
            "PutObject",
            "CopyObject",
            "DeleteObject",
            "DeleteObjects",
            "CreateBucket",
            "DeleteBucket",
            "CreateMultipartUpload",
            "UploadPart",
            "UploadPartCopy",
            "CompleteMultipartUpload",
            "AbortMultipartUpload",
            "PutObjectTagging",
            "RestoreObject",
            "SelectObjectContent",
        ] {
            assert!(!is_read_op(op), "{op}");
        }
    }
}
