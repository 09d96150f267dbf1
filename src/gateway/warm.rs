//! `bale warm s3://bucket/prefix`: prefetches objects into a running gateway by reading them
//! through it (S3 with the gateway's own keys): a ListObjectsV2 walk of the prefix (the
//! gateway answers it from the upstream), then a GET of each object, several at once, the
//! bytes discarded. Each GET is a miss that fills the local tier, or a hit. Progress goes to
//! stderr; exit 1 if any object could not be read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use clap::Args;
use futures::StreamExt;

use super::upstream::{Endpoint, UpRequest, Upstream};

#[derive(Args, Debug, Clone)]
pub struct WarmArgs {
    /// What to prefetch: s3://bucket or s3://bucket/prefix.
    pub target: String,

    /// The running bale gateway.
    #[arg(long, env = "BALE_ENDPOINT", default_value = "http://127.0.0.1:9000")]
    pub endpoint: String,

    /// Access key of the gateway (bale's own keys).
    #[arg(long, env = "BALE_ACCESS_KEY", default_value = crate::config::DEFAULT_ACCESS_KEY)]
    pub access_key: String,

    /// Secret key of the gateway.
    #[arg(long, env = "BALE_SECRET_KEY", hide_env_values = true, default_value = crate::config::DEFAULT_SECRET_KEY)]
    pub secret_key: String,

    /// Region the gateway accepts in signatures.
    #[arg(long, env = "BALE_REGION", default_value = "us-east-1")]
    pub region: String,

    /// Objects read at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,

    /// Seconds to wait for each answer.
    #[arg(long, default_value_t = 300)]
    pub timeout_s: u64,
}

/// (bucket, prefix) of `s3://bucket[/prefix]`.
pub fn parse_target(t: &str) -> anyhow::Result<(String, String)> {
    let rest = t
        .strip_prefix("s3://")
        .ok_or_else(|| anyhow!("give s3://bucket[/prefix], got {t:?}"))?;
    let (b, p) = rest.split_once('/').unwrap_or((rest, ""));
    if b.is_empty() {
        anyhow::bail!("no bucket in {t:?}");
    }
    Ok((b.to_string(), p.to_string()))
}

fn tags<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(s) = rest.find(&open) {
        let after = &rest[s + open.len()..];
        let Some(e) = after.find(&close) else { break };
        out.push(&after[..e]);
        rest = &after[e + close.len()..];
    }
    out
}

async fn list(
    up: &Arc<Upstream>,
    bucket: &str,
    prefix: &str,
) -> anyhow::Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut req = UpRequest::new(http::Method::GET, Some(bucket), None);
        req.query = vec![
            ("list-type".into(), "2".into()),
            ("prefix".into(), prefix.into()),
        ];
        if let Some(t) = &token {
            req.query.push(("continuation-token".into(), t.clone()));
        }
        let mut resp = up.send(req).await.context("ListObjectsV2")?;
        let body = resp.collect(64 << 20).await.context("ListObjectsV2 body")?;
        let text = String::from_utf8_lossy(&body).into_owned();
        if !resp.status.is_success() {
            anyhow::bail!("ListObjectsV2 answered {}: {text}", resp.status);
        }
        for c in tags(&text, "Contents") {
            let key = tags(c, "Key").first().copied().unwrap_or("");
            let key = quick_xml::escape::unescape(key)
                .map(|k| k.into_owned())
                .unwrap_or_else(|_| key.to_string());
            let size = tags(c, "Size")
                .first()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            out.push((key, size));
        }
        let truncated = tags(&text, "IsTruncated").first() == Some(&"true");
        token = tags(&text, "NextContinuationToken")
            .first()
            .map(|t| t.to_string());
        if !truncated || token.is_none() {
            return Ok(out);
        }
    }
}

async fn fetch(up: Arc<Upstream>, bucket: String, key: String) -> anyhow::Result<u64> {
    let mut resp = up
        .send(UpRequest::new(http::Method::GET, Some(&bucket), Some(&key)))
        .await?;
    let mut n = 0u64;
    while let Some(c) = resp.next_chunk().await? {
        n += c.len() as u64;
    }
    if !resp.status.is_success() {
        anyhow::bail!("GET {key} answered {}", resp.status);
    }
    Ok(n)
}

/// Runs `bale warm`.
pub fn run(a: WarmArgs) -> anyhow::Result<()> {
    let (bucket, prefix) = parse_target(&a.target)?;
    let ep = Endpoint::parse(&a.endpoint)?;
    let up = Arc::new(Upstream::new(
        ep,
        &a.access_key,
        &a.secret_key,
        &a.region,
        false,
        Duration::from_secs(a.timeout_s.max(1)),
        None,
    )?);
    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .context("cannot start a runtime")?;
    rt.block_on(async move {
        let objects = list(&up, &bucket, &prefix).await?;
        let total_bytes: u64 = objects.iter().map(|o| o.1).sum();
        let total = objects.len();
        eprintln!(
            "warm: {total} objects, {} MiB under s3://{bucket}/{prefix}",
            total_bytes >> 20
        );
        let started = Instant::now();
        let (mut done, mut bytes, mut failed) = (0usize, 0u64, 0usize);
        let mut s = futures::stream::iter(objects.into_iter().map(|(k, _)| {
            let (up, bucket) = (up.clone(), bucket.clone());
            async move {
                let r = fetch(up, bucket, k.clone()).await;
                (k, r)
            }
        }))
        .buffer_unordered(a.concurrency.max(1));
        while let Some((k, r)) = s.next().await {
            done += 1;
            match r {
                Ok(n) => bytes += n,
                Err(e) => {
                    failed += 1;
                    eprintln!("\nwarm: {k}: {e:#}");
                }
            }
            let pct = (done * 100).checked_div(total).unwrap_or(100);
            let bar: String = (0..40)
                .map(|i| if i * 100 / 40 < pct { '#' } else { '.' })
                .collect();
            eprint!(
                "\rwarm: [{bar}] {done}/{total} objects, {} MiB, {:.1}s",
                bytes >> 20,
                started.elapsed().as_secs_f64()
            );
        }
        eprintln!();
        if failed > 0 {
            anyhow::bail!("{failed} of {total} objects could not be read");
        }
        eprintln!(
            "warm: done: {done} objects, {bytes} bytes in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(parse_target("s3://b").unwrap(), ("b".into(), "".into()));
        assert_eq!(
            parse_target("s3://b/p/q").unwrap(),
            ("b".into(), "p/q".into())
        );
        assert!(parse_target("b/p").is_err());
        assert!(parse_target("s3:///p").is_err());
    }

    #[test]
    fn list_xml() {
        let x = "<R><IsTruncated>false</IsTruncated><Contents><Key>a&amp;b</Key><Size>3</Size></Contents></R>";
        assert_eq!(tags(x, "Contents").len(), 1);
        assert_eq!(tags(x, "IsTruncated"), vec!["false"]);
    }
}
