//! Bucket operations: create, head, delete, list, location.

use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::dto::private_acl_only;
use super::error::{self, no_such_bucket};
use super::{now_ms, owner, timestamp_ms, BaleS3};
use crate::buckets::{valid_bucket_name, CreateOutcome, DeleteBlocked};

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
    match s.buckets.create_off_core(name, now_ms()).await {
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
    s.bucket_exists(&req.input.bucket)?;
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
    match s.buckets.remove_off_core(&name).await {
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
        s.shard(shard_id)
            .call(move |shard| async move { shard.has_any(&ns) })
    });
    for r in futures::future::join_all(checks).await {
        if r? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Largest `max-buckets` (S3's limit).
const MAX_BUCKETS_PAGE: i32 = 10_000;

pub async fn list(
    s: &BaleS3,
    req: S3Request<ListBucketsInput>,
) -> S3Result<S3Response<ListBucketsOutput>> {
    // A key limited to some buckets lists only those (as MinIO does under a policy).
    let reader = req.credentials.as_ref().map(|c| c.access_key.as_str());
    let visible = |name: &str| {
        reader
            .is_none_or(|ak| crate::keys::with_key(ak, |k| k.is_some_and(|k| k.key.can_read(name))))
    };
    let i = req.input;
    let max = match i.max_buckets {
        None => None,
        Some(n) if (1..=MAX_BUCKETS_PAGE).contains(&n) => Some(n as usize),
        Some(_) => {
            return Err(s3_error!(
                InvalidArgument,
                "max-buckets must be an integer between 1 and {MAX_BUCKETS_PAGE}"
            ))
        }
    };
    // The token is the last bucket name of the previous page (URL-safe base64).
    let after = i
        .continuation_token
        .as_deref()
        .map(|t| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t.as_bytes())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .filter(|n| !n.is_empty())
                .ok_or_else(|| {
                    s3_error!(
                        InvalidArgument,
                        "The continuation token provided is incorrect"
                    )
                })
        })
        .transpose()?;
    let prefix = i.prefix.as_deref().unwrap_or("");
    let mut all = s.buckets.list();
    all.sort_by(|a, b| a.0.cmp(&b.0)); // already sorted today; pages depend on it
    let mut names = all
        .into_iter()
        .filter(|(name, _)| name.starts_with(prefix) && visible(name))
        .filter(|(name, _)| after.as_ref().is_none_or(|a| name > a));
    let mut buckets = Vec::new();
    let mut truncated = false;
    for (name, info) in names.by_ref() {
        if max.is_some_and(|m| buckets.len() == m) {
            truncated = true;
            break;
        }
        buckets.push(Bucket {
            name: Some(name),
            creation_date: Some(timestamp_ms(info.created_ms)),
            bucket_region: Some(s.region.clone()),
        });
    }
    let token = if truncated {
        buckets.last().and_then(|b| b.name.as_deref()).map(|n| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(n.as_bytes())
        })
    } else {
        None
    };
    Ok(S3Response::new(ListBucketsOutput {
        buckets: Some(buckets),
        owner: Some(owner()),
        continuation_token: token,
        prefix: i.prefix,
    }))
}

/// The only ACL bale has: the owner holds FULL_CONTROL (as MinIO answers).
fn owner_only_grants() -> Grants {
    let o = owner();
    vec![Grant {
        grantee: Some(Grantee {
            display_name: o.display_name,
            email_address: None,
            id: o.id,
            type_: Type::from_static(Type::CANONICAL_USER),
            uri: None,
        }),
        permission: Some(Permission::from_static(Permission::FULL_CONTROL)),
    }]
}

pub(crate) fn acl_not_implemented() -> s3s::S3Error {
    s3_error!(
        NotImplemented,
        "Only the canned ACL 'private' (the owner has FULL_CONTROL) is supported"
    )
}

/// A PutObjectAcl / PutBucketAcl that sets nothing but "the owner has FULL_CONTROL": the
/// canned ACL `private`, nothing at all, or a policy granting exactly that.
pub(crate) fn is_private_acl(
    canned: Option<&str>,
    grant_headers: [Option<&String>; 5],
    policy: Option<&AccessControlPolicy>,
) -> bool {
    if canned.is_some_and(|c| c != "private") || grant_headers.iter().any(Option::is_some) {
        return false;
    }
    let Some(p) = policy else { return true };
    if canned.is_some() {
        return false; // both a canned ACL and a body: S3 refuses; so do we
    }
    let me = owner();
    if p.owner
        .as_ref()
        .is_some_and(|o| o.id.is_some() && o.id != me.id)
    {
        return false;
    }
    p.grants.as_deref().unwrap_or_default().iter().all(|g| {
        g.permission.as_ref().map(|p| p.as_str()) == Some(Permission::FULL_CONTROL)
            && g.grantee.as_ref().is_some_and(|ge| {
                ge.type_.as_str() == Type::CANONICAL_USER && ge.id.is_some() && ge.id == me.id
            })
    })
}

async fn object_exists(s: &BaleS3, bucket: &str, key: &str) -> S3Result<()> {
    let r = super::get::ReadReq {
        want_body: false,
        ..Default::default()
    };
    super::get::lookup(s, bucket, key, r).await.map(|_| ())
}

pub async fn get_object_acl(
    s: &BaleS3,
    req: S3Request<GetObjectAclInput>,
) -> S3Result<S3Response<GetObjectAclOutput>> {
    let i = req.input;
    object_exists(s, &i.bucket, &i.key).await?;
    Ok(S3Response::new(GetObjectAclOutput {
        grants: Some(owner_only_grants()),
        owner: Some(owner()),
        ..Default::default()
    }))
}

pub async fn put_object_acl(
    s: &BaleS3,
    req: S3Request<PutObjectAclInput>,
) -> S3Result<S3Response<PutObjectAclOutput>> {
    let i = req.input;
    object_exists(s, &i.bucket, &i.key).await?;
    private_acl_only!(i);
    Ok(S3Response::new(PutObjectAclOutput::default()))
}

pub async fn get_bucket_acl(
    s: &BaleS3,
    req: S3Request<GetBucketAclInput>,
) -> S3Result<S3Response<GetBucketAclOutput>> {
    s.bucket_exists(&req.input.bucket)?;
    Ok(S3Response::new(GetBucketAclOutput {
        grants: Some(owner_only_grants()),
        owner: Some(owner()),
    }))
}

pub async fn put_bucket_acl(
    s: &BaleS3,
    req: S3Request<PutBucketAclInput>,
) -> S3Result<S3Response<PutBucketAclOutput>> {
    let i = req.input;
    s.bucket_exists(&i.bucket)?;
    private_acl_only!(i);
    Ok(S3Response::new(PutBucketAclOutput::default()))
}

pub async fn location(
    s: &BaleS3,
    req: S3Request<GetBucketLocationInput>,
) -> S3Result<S3Response<GetBucketLocationOutput>> {
    s.bucket_exists(&req.input.bucket)?;
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
