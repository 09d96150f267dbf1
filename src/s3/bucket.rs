//! Bucket operations: create, head, delete, list, location.

use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::error::{self, no_such_bucket};
use super::{now_ms, timestamp_ms, BaleS3};
use crate::buckets::{valid_bucket_name, CreateOutcome, DeleteBlocked};
use crate::router::on_shard;

pub async fn create(
    s: &BaleS3,
    req: S3Request<CreateBucketInput>,
) -> S3Result<S3Response<CreateBucketOutput>> {
    let name = &req.input.bucket;
    if !valid_bucket_name(name) {
        return Err(s3_error!(
            InvalidBucketName,
            "The specified bucket is not valid: {name}"
        ));
    }
    if let Some(cfg) = &req.input.create_bucket_configuration {
        if let Some(loc) = &cfg.location_constraint {
            let loc = loc.as_str();
            if !loc.is_empty() && loc != s.region {
                return Err(s3_error!(
                    InvalidLocationConstraint,
                    "The specified location-constraint {loc} is not valid for this server (region {})",
                    s.region
                ));
            }
        }
    }
    match s.buckets.create(name, now_ms()) {
        Ok(CreateOutcome::Created) => {
            tracing::info!(bucket = %name, "bucket created");
            Ok(S3Response::new(CreateBucketOutput {
                location: Some(format!("/{name}")),
            }))
        }
        Ok(CreateOutcome::AlreadyExists) => Err(s3_error!(
            BucketAlreadyOwnedByYou,
            "Your previous request to create the named bucket succeeded and you already own it."
        )),
        Err(e) => {
            tracing::error!(error = %e, bucket = %name, "cannot persist bucket registry");
            Err(error::internal("bucket registry write failed"))
        }
    }
}

pub async fn head(
    s: &BaleS3,
    req: S3Request<HeadBucketInput>,
) -> S3Result<S3Response<HeadBucketOutput>> {
    if !s.buckets.exists(&req.input.bucket) {
        return Err(no_such_bucket(&req.input.bucket));
    }
    Ok(S3Response::new(HeadBucketOutput {
        bucket_region: Some(s.region.clone()),
        ..Default::default()
    }))
}

pub async fn delete(
    s: &BaleS3,
    req: S3Request<DeleteBucketInput>,
) -> S3Result<S3Response<DeleteBucketOutput>> {
    let name = req.input.bucket.clone();
    // Held until the bucket is gone (or the delete fails): no object write can start meanwhile,
    // and none was in flight when it was taken.
    let _deleting = match s.buckets.delete_guard(&name) {
        Ok(g) => g,
        Err(DeleteBlocked::Missing) => return Err(no_such_bucket(&name)),
        Err(DeleteBlocked::WritesInFlight) => {
            return Err(s3_error!(
                BucketNotEmpty,
                "The bucket you tried to delete is not empty (object writes are in flight)"
            ))
        }
    };
    if !bucket_is_empty(s, &name).await? {
        return Err(s3_error!(
            BucketNotEmpty,
            "The bucket you tried to delete is not empty"
        ));
    }
    super::multipart::drop_all_uploads(s, &name).await?;
    match s.buckets.remove(&name) {
        Ok(true) => {
            tracing::info!(bucket = %name, "bucket deleted");
            Ok(S3Response::new(DeleteBucketOutput {}))
        }
        Ok(false) => Err(no_such_bucket(&name)),
        Err(e) => {
            tracing::error!(error = %e, bucket = %name, "cannot persist bucket registry");
            Err(error::internal("bucket registry write failed"))
        }
    }
}

pub async fn bucket_is_empty(s: &BaleS3, name: &str) -> S3Result<bool> {
    let checks = (0..s.topo.shard_count).map(|shard_id| {
        let ns = name.to_string();
        on_shard(
            &s.topo,
            shard_id,
            move |shard| async move { shard.has_any(&ns) },
        )
    });
    for r in futures::future::join_all(checks).await {
        if r.map_err(error::route)? {
            return Ok(false);
        }
    }
    Ok(true)
}

pub async fn list(
    s: &BaleS3,
    _req: S3Request<ListBucketsInput>,
) -> S3Result<S3Response<ListBucketsOutput>> {
    let buckets = s
        .buckets
        .list()
        .into_iter()
        .map(|(name, info)| Bucket {
            name: Some(name),
            creation_date: Some(timestamp_ms(info.created_ms)),
            bucket_region: Some(s.region.clone()),
        })
        .collect();
    Ok(S3Response::new(ListBucketsOutput {
        buckets: Some(buckets),
        owner: Some(owner()),
        ..Default::default()
    }))
}

pub fn owner() -> Owner {
    Owner {
        display_name: Some("bale".into()),
        id: Some("bale".into()),
    }
}

pub async fn location(
    s: &BaleS3,
    req: S3Request<GetBucketLocationInput>,
) -> S3Result<S3Response<GetBucketLocationOutput>> {
    if !s.buckets.exists(&req.input.bucket) {
        return Err(no_such_bucket(&req.input.bucket));
    }
    // AWS answers an empty LocationConstraint for us-east-1.
    let loc = if s.region == "us-east-1" {
        None
    } else {
        Some(BucketLocationConstraint::from(s.region.clone()))
    };
    Ok(S3Response::new(GetBucketLocationOutput {
        location_constraint: loc,
    }))
}
