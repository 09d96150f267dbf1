//! Which S3 operation a request is, from its method, path shape, query and one header: the
//! label of `bale_requests_total{op}` and `bale_request_duration_seconds{op}`. Computed before
//! the request is served (refused requests are counted under the operation they asked for);
//! path-style addressing, as bale serves.

/// Operations counted separately; everything else is `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    GetObject,
    PutObject,
    HeadObject,
    DeleteObject,
    ListObjectsV2,
    ListObjects,
    ListObjectVersions,
    DeleteObjects,
    CopyObject,
    CreateBucket,
    DeleteBucket,
    HeadBucket,
    ListBuckets,
    GetBucketLocation,
    CreateMultipartUpload,
    UploadPart,
    UploadPartCopy,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    ListParts,
    ListMultipartUploads,
    /// Another bucket or object sub-resource (?tagging, ?acl, ?versioning ...).
    Other,
    /// `/health`, `/minio/health/*`.
    Health,
    /// `GET /metrics`.
    Metrics,
}

pub const N_OPS: usize = Op::Metrics as usize + 1;

pub const OP_NAMES: [&str; N_OPS] = [
    "GetObject",
    "PutObject",
    "HeadObject",
    "DeleteObject",
    "ListObjectsV2",
    "ListObjects",
    "ListObjectVersions",
    "DeleteObjects",
    "CopyObject",
    "CreateBucket",
    "DeleteBucket",
    "HeadBucket",
    "ListBuckets",
    "GetBucketLocation",
    "CreateMultipartUpload",
    "UploadPart",
    "UploadPartCopy",
    "CompleteMultipartUpload",
    "AbortMultipartUpload",
    "ListParts",
    "ListMultipartUploads",
    "Other",
    "Health",
    "Metrics",
];

/// The query's parameter names, presigned-URL and `x-id` parameters left out.
fn params(q: &str) -> impl Iterator<Item = &str> {
    q.split('&')
        .map(|kv| kv.split('=').next().unwrap_or(""))
        .filter(|n| !n.is_empty() && *n != "x-id" && !n.starts_with("X-Amz-"))
}

fn has(q: &str, name: &str) -> bool {
    params(q).any(|n| n == name)
}

/// Classifies a request. Cheap for the hot case (a GET of a key with no query).
pub fn classify(method: &http::Method, uri: &http::Uri, headers: &http::HeaderMap) -> Op {
    use http::Method as M;
    let path = uri.path();
    let q = uri.query().unwrap_or("");
    let rest = path.strip_prefix('/').unwrap_or(path);
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return if *method == M::GET {
            Op::ListBuckets
        } else {
            Op::Other
        };
    }
    if key.is_empty() {
        return bucket_op(method, q);
    }
    let plain = params(q).next().is_none();
    match *method {
        M::GET if plain || has(q, "partNumber") => Op::GetObject,
        M::GET if has(q, "uploadId") => Op::ListParts,
        M::HEAD => Op::HeadObject,
        M::PUT if has(q, "uploadId") => {
            if headers.contains_key("x-amz-copy-source") {
                Op::UploadPartCopy
            } else {
                Op::UploadPart
            }
        }
        M::PUT if plain => {
            if headers.contains_key("x-amz-copy-source") {
                Op::CopyObject
            } else {
                Op::PutObject
            }
        }
        M::DELETE if has(q, "uploadId") => Op::AbortMultipartUpload,
        M::DELETE if plain => Op::DeleteObject,
        M::POST if has(q, "uploads") => Op::CreateMultipartUpload,
        M::POST if has(q, "uploadId") => Op::CompleteMultipartUpload,
        _ => Op::Other,
    }
}

fn bucket_op(method: &http::Method, q: &str) -> Op {
    use http::Method as M;
    let plain_or = |names: &[&str]| params(q).all(|n| names.contains(&n));
    const LIST_PARAMS: &[&str] = &[
        "prefix",
        "delimiter",
        "marker",
        "max-keys",
        "encoding-type",
        "list-type",
        "continuation-token",
        "start-after",
        "fetch-owner",
    ];
    match *method {
        M::GET if has(q, "location") => Op::GetBucketLocation,
        M::GET if has(q, "uploads") => Op::ListMultipartUploads,
        M::GET if has(q, "versions") => Op::ListObjectVersions,
        M::GET if plain_or(LIST_PARAMS) => {
            if q.split('&').any(|kv| kv == "list-type=2") {
                Op::ListObjectsV2
            } else {
                Op::ListObjects
            }
        }
        M::HEAD => Op::HeadBucket,
        M::PUT if params(q).next().is_none() => Op::CreateBucket,
        M::DELETE if params(q).next().is_none() => Op::DeleteBucket,
        M::POST if has(q, "delete") => Op::DeleteObjects,
        _ => Op::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(m: &str, u: &str, copy: bool) -> &'static str {
        let mut h = http::HeaderMap::new();
        if copy {
            h.insert("x-amz-copy-source", "b/src".parse().unwrap());
        }
        OP_NAMES[classify(&m.parse().unwrap(), &u.parse().unwrap(), &h) as usize]
    }

    #[test]
    fn operations() {
        let cases = [
            ("GET", "/", false, "ListBuckets"),
            ("GET", "/b/k", false, "GetObject"),
            ("GET", "/b/k?x-id=GetObject", false, "GetObject"),
            (
                "GET",
                "/b/k?X-Amz-Signature=x&X-Amz-Date=y",
                false,
                "GetObject",
            ),
            ("GET", "/b/k?partNumber=2", false, "GetObject"),
            ("GET", "/b/k?uploadId=u", false, "ListParts"),
            ("GET", "/b/k?tagging", false, "Other"),
            ("HEAD", "/b/k", false, "HeadObject"),
            ("PUT", "/b/k", false, "PutObject"),
            ("PUT", "/b/k", true, "CopyObject"),
            ("PUT", "/b/k?partNumber=1&uploadId=u", false, "UploadPart"),
            (
                "PUT",
                "/b/k?partNumber=1&uploadId=u",
                true,
                "UploadPartCopy",
            ),
            ("DELETE", "/b/k", false, "DeleteObject"),
            ("DELETE", "/b/k?uploadId=u", false, "AbortMultipartUpload"),
            ("POST", "/b/k?uploads", false, "CreateMultipartUpload"),
            ("POST", "/b/k?uploadId=u", false, "CompleteMultipartUpload"),
            ("GET", "/b", false, "ListObjects"),
            ("GET", "/b/", false, "ListObjects"),
            ("GET", "/b?list-type=2&prefix=a", false, "ListObjectsV2"),
            ("GET", "/b?location", false, "GetBucketLocation"),
            ("GET", "/b?uploads", false, "ListMultipartUploads"),
            ("GET", "/b?versions", false, "ListObjectVersions"),
            ("GET", "/b?versioning", false, "Other"),
            ("HEAD", "/b", false, "HeadBucket"),
            ("PUT", "/b", false, "CreateBucket"),
            ("PUT", "/b?tagging", false, "Other"),
            ("DELETE", "/b", false, "DeleteBucket"),
            ("POST", "/b?delete", false, "DeleteObjects"),
            ("PATCH", "/b/k", false, "Other"),
        ];
        for (m, u, copy, want) in cases {
            assert_eq!(op(m, u, copy), want, "{m} {u}");
        }
    }
}
