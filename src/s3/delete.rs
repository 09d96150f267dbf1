//! DeleteObject and DeleteObjects.

use std::collections::BTreeMap;

use bale_io::Expect;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::error;
use super::limits::MAX_DELETE_KEYS;
use super::BaleS3;

pub async fn delete_object(
    s: &BaleS3,
    req: S3Request<DeleteObjectInput>,
) -> S3Result<S3Response<DeleteObjectOutput>> {
    let i = req.input;
    s.bucket_exists(&i.bucket)?;
    let route = s.shard_of(&i.bucket, &i.key);
    let (bucket, key, if_match) = (i.bucket, i.key, i.if_match);
    route
        .run(move |shard| async move {
            let expect = match &if_match {
                None => Expect::Any,
                Some(c) => {
                    let Some(obj) = shard.get(&bucket, &key) else {
                        return Err(error::no_such_key());
                    };
                    let etag = super::meta::ObjMeta::load(&obj.meta, &bucket, &key)?.etag;
                    if !super::cond::etag_matches(c, &etag) {
                        return Err(s3_error!(
                            PreconditionFailed,
                            "At least one of the pre-conditions you specified did not hold"
                        ));
                    }
                    Expect::Seq(obj.seq)
                }
            };
            shard
                .delete(&bucket, &key, expect)
                .await
                .map_err(error::engine)?;
            Ok(())
        })
        .await?;
    Ok(S3Response::new(DeleteObjectOutput::default()))
}

pub async fn delete_objects(
    s: &BaleS3,
    req: S3Request<DeleteObjectsInput>,
) -> S3Result<S3Response<DeleteObjectsOutput>> {
    let i = req.input;
    s.bucket_exists(&i.bucket)?;
    let objects = i.delete.objects;
    if objects.len() > MAX_DELETE_KEYS {
        return Err(s3_error!(
            MalformedXML,
            "DeleteObjects accepts at most {} keys",
            MAX_DELETE_KEYS
        ));
    }
    let quiet = i.delete.quiet.unwrap_or(false);
    let mut by_shard: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for o in &objects {
        by_shard
            .entry(s.topo.shard_for(&i.bucket, &o.key))
            .or_default()
            .push(o.key.clone());
    }
    let jobs = by_shard.into_iter().map(|(shard_id, keys)| {
        let bucket = i.bucket.clone();
        s.shard(shard_id).call(move |shard| async move {
            let deletes = keys.into_iter().map(|k| {
                let shard = shard.clone();
                let bucket = bucket.clone();
                async move {
                    let r = if k.len() > super::limits::MAX_KEY_BYTES || k.is_empty() {
                        Err((
                            "KeyTooLongError".to_string(),
                            "Your key is too long".to_string(),
                        ))
                    } else {
                        shard
                            .delete(&bucket, &k, Expect::Any)
                            .await
                            .map(|_| ())
                            .map_err(|e| {
                                tracing::warn!(key = %k, "delete failed");
                                // The same code and message a DeleteObject would answer.
                                let f = error::Failure::of_engine(e);
                                (f.code().as_str().to_string(), f.message().into_owned())
                            })
                    };
                    (k, r)
                }
            });
            // Concurrent deletes on one shard share group commits.
            futures::future::join_all(deletes).await
        })
    });
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for r in futures::future::join_all(jobs).await {
        for (key, res) in r? {
            match res {
                Ok(()) => {
                    if !quiet {
                        deleted.push(DeletedObject {
                            key: Some(key),
                            ..Default::default()
                        })
                    }
                }
                Err((code, message)) => errors.push(Error {
                    code: Some(code),
                    key: Some(key),
                    message: Some(message),
                    version_id: None,
                }),
            }
        }
    }
    Ok(S3Response::new(DeleteObjectsOutput {
        deleted: Some(deleted),
        errors: Some(errors),
        ..Default::default()
    }))
}
