//! ListObjectsV2 and ListObjects (V1): one ordered listing merged across all shards.

use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::meta::ObjMeta;
use super::{owner, timestamp_ms, BaleS3};

const MAX_KEYS: usize = 1000;

/// One listed entry, Send so it can cross cores.
pub enum Entry {
    Object {
        key: String,
        size: u64,
        mtime_ms: u64,
        etag: String,
    },
    Prefix(String),
}

impl Entry {
    fn name(&self) -> &str {
        match self {
            Entry::Object { key, .. } => key,
            Entry::Prefix(p) => p,
        }
    }
}

pub struct Page {
    pub entries: Vec<Entry>,
    pub truncated: bool,
    /// Where the next page starts (exclusive), when truncated.
    pub next_after: Option<String>,
}

/// Lists `ns` across every shard: keys (and collapsed prefixes) > `after`, at most `limit`.
pub async fn list_ns(
    s: &BaleS3,
    ns: &str,
    prefix: &str,
    after: Option<&str>,
    delimiter: Option<&str>,
    limit: usize,
) -> S3Result<Page> {
    if limit == 0 {
        // max-keys=0: an empty, untruncated page, without asking any shard.
        return Ok(Page {
            entries: Vec::new(),
            truncated: false,
            next_after: None,
        });
    }
    let delimiter = delimiter.filter(|d| !d.is_empty()).map(str::to_string);
    // A marker that is itself a collapsed prefix (V1 NextMarker) skips that whole subtree.
    let skip_subtree;
    let after = match (&delimiter, after) {
        (Some(d), Some(a))
            if a.len() > prefix.len() && a.starts_with(prefix) && a.ends_with(d.as_str()) =>
        {
            skip_subtree = format!("{a}\u{10FFFF}");
            Some(skip_subtree.as_str())
        }
        (_, a) => a,
    };
    let jobs = (0..s.topo.shard_count).map(|shard_id| {
        let (ns, prefix, after, delimiter) = (
            ns.to_string(),
            prefix.to_string(),
            after.map(str::to_string),
            delimiter.clone(),
        );
        s.shard(shard_id).run(move |shard| async move {
            shard
                .list(
                    &ns,
                    &prefix,
                    after.as_deref(),
                    delimiter.as_deref(),
                    limit + 1,
                )
                .into_iter()
                .map(|item| match item {
                    bale_io::ListItem::Object { key, obj } => Ok(Entry::Object {
                        etag: ObjMeta::load(&obj.meta, &ns, &key)?.etag,
                        key,
                        size: obj.size,
                        mtime_ms: obj.mtime_ms,
                    }),
                    bale_io::ListItem::Prefix(p) => Ok(Entry::Prefix(p)),
                })
                .collect::<S3Result<Vec<_>>>()
        })
    });
    let mut all = Vec::new();
    for r in futures::future::join_all(jobs).await {
        all.extend(r?);
    }
    all.sort_by(|a, b| a.name().cmp(b.name()));
    all.dedup_by(|a, b| matches!((&*a, &*b), (Entry::Prefix(x), Entry::Prefix(y)) if x == y));
    let truncated = all.len() > limit;
    all.truncate(limit);
    let next_after = if truncated {
        all.last().map(|e| match e {
            Entry::Object { key, .. } => key.clone(),
            // Skip everything under a collapsed prefix on the next page.
            Entry::Prefix(p) => format!("{p}\u{10FFFF}"),
        })
    } else {
        None
    };
    Ok(Page {
        entries: all,
        truncated,
        next_after,
    })
}

fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn encode_token(after: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(after.as_bytes())
}

fn decode_token(t: &str) -> S3Result<String> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t.as_bytes())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "The continuation token provided is incorrect"
            )
        })
}

fn max_keys(m: Option<i32>) -> S3Result<usize> {
    match m {
        None => Ok(MAX_KEYS),
        Some(n) if n < 0 => Err(s3_error!(
            InvalidArgument,
            "max-keys must be a non-negative integer"
        )),
        Some(n) => Ok((n as usize).min(MAX_KEYS)),
    }
}

fn split(entries: Vec<Entry>, url: bool) -> (Vec<Object>, Vec<CommonPrefix>) {
    let enc = |s: String| if url { url_encode(&s) } else { s };
    let mut objs = Vec::new();
    let mut prefixes = Vec::new();
    for e in entries {
        match e {
            Entry::Object {
                key,
                size,
                mtime_ms,
                etag,
            } => objs.push(Object {
                key: Some(enc(key)),
                size: Some(size as i64),
                last_modified: Some(timestamp_ms(mtime_ms)),
                e_tag: Some(ETag::Strong(etag)),
                storage_class: Some(ObjectStorageClass::from_static(
                    ObjectStorageClass::STANDARD,
                )),
                ..Default::default()
            }),
            Entry::Prefix(p) => prefixes.push(CommonPrefix {
                prefix: Some(enc(p)),
            }),
        }
    }
    (objs, prefixes)
}

fn is_url(e: &Option<EncodingType>) -> S3Result<bool> {
    match e {
        None => Ok(false),
        Some(e) if e.as_str().eq_ignore_ascii_case("url") => Ok(true),
        Some(e) => Err(s3_error!(
            InvalidArgument,
            "Invalid Encoding Method specified in Request: {}",
            e.as_str()
        )),
    }
}

pub async fn list_objects_v2(
    s: &BaleS3,
    req: S3Request<ListObjectsV2Input>,
) -> S3Result<S3Response<ListObjectsV2Output>> {
    let i = req.input;
    s.bucket_exists(&i.bucket)?;
    let url = is_url(&i.encoding_type)?;
    let limit = max_keys(i.max_keys)?;
    let prefix = i.prefix.clone().unwrap_or_default();
    let token_after = i
        .continuation_token
        .as_deref()
        .map(decode_token)
        .transpose()?;
    let after = match (token_after, i.start_after.clone()) {
        (Some(t), Some(sa)) => Some(t.max(sa)),
        (t, sa) => t.or(sa),
    };
    let page = list_ns(
        s,
        &i.bucket,
        &prefix,
        after.as_deref(),
        i.delimiter.as_deref(),
        limit,
    )
    .await?;
    let key_count = page.entries.len() as i32;
    let (mut objs, prefixes) = split(page.entries, url);
    if i.fetch_owner == Some(true) {
        for o in &mut objs {
            o.owner = Some(owner());
        }
    }
    let enc = |v: Option<String>| if url { v.map(|x| url_encode(&x)) } else { v };
    Ok(S3Response::new(ListObjectsV2Output {
        name: Some(i.bucket),
        prefix: Some(enc(Some(prefix)).unwrap_or_default()),
        // An empty delimiter is no delimiter: S3 does not echo it.
        delimiter: enc(i.delimiter.filter(|d| !d.is_empty())),
        max_keys: Some(limit as i32),
        key_count: Some(key_count),
        is_truncated: Some(page.truncated),
        continuation_token: i.continuation_token,
        next_continuation_token: page.next_after.as_deref().map(encode_token),
        start_after: enc(i.start_after),
        encoding_type: i.encoding_type,
        contents: Some(objs),
        common_prefixes: Some(prefixes),
        ..Default::default()
    }))
}

pub async fn list_objects_v1(
    s: &BaleS3,
    req: S3Request<ListObjectsInput>,
) -> S3Result<S3Response<ListObjectsOutput>> {
    let i = req.input;
    s.bucket_exists(&i.bucket)?;
    let url = is_url(&i.encoding_type)?;
    let limit = max_keys(i.max_keys)?;
    let prefix = i.prefix.clone().unwrap_or_default();
    let after = i.marker.clone().filter(|m| !m.is_empty());
    let page = list_ns(
        s,
        &i.bucket,
        &prefix,
        after.as_deref(),
        i.delimiter.as_deref(),
        limit,
    )
    .await?;
    // V1's NextMarker is the last key or prefix returned (only sent with a delimiter, as S3).
    let delimiter = i.delimiter.clone().filter(|d| !d.is_empty());
    let next_marker = if page.truncated && delimiter.is_some() {
        page.entries.last().map(|e| e.name().to_string())
    } else {
        None
    };
    let (objs, prefixes) = split(page.entries, url);
    let enc = |v: Option<String>| if url { v.map(|x| url_encode(&x)) } else { v };
    let objs = objs.into_iter().map(|mut o| {
        o.owner = Some(owner());
        o
    });
    Ok(S3Response::new(ListObjectsOutput {
        name: Some(i.bucket),
        prefix: Some(enc(Some(prefix)).unwrap_or_default()),
        delimiter: enc(delimiter),
        marker: Some(enc(i.marker).unwrap_or_default()),
        next_marker: enc(next_marker),
        max_keys: Some(limit as i32),
        is_truncated: Some(page.truncated),
        encoding_type: i.encoding_type,
        contents: Some(objs.collect()),
        common_prefixes: Some(prefixes),
        ..Default::default()
    }))
}
