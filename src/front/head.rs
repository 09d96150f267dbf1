//! The request heads the front takes (docs/adr/0020-http-front.md): a plain HTTP/1.1 GET or
//! HEAD of an object, origin-form target, no framing headers, parsed in place by `httparse`
//! and read by the fast path through [`crate::fast::Head`]. Anything else is hyper's.

use crate::http::MAX_HEADER_BYTES;

/// Most header lines in a head the front parses (hyper's default limit, 100); a head with
/// more goes to hyper.
pub const MAX_HEADERS: usize = 100;
/// Longest request target the front takes, bytes (a key is at most 1,024 bytes, escaped up to
/// three times that); a longer one goes to hyper.
pub const MAX_TARGET_BYTES: usize = 8 * 1024;

/// A head as `httparse` parsed it, read by the fast path through `crate::fast::Head`.
pub(crate) struct RawHead<'b> {
    pub(super) method: &'b str,
    pub(super) path: &'b str,
    query: Option<&'b str>,
    headers: &'b [httparse::Header<'b>],
}

impl crate::fast::Head for RawHead<'_> {
    fn method(&self) -> &str {
        self.method
    }
    fn path(&self) -> &str {
        self.path
    }
    fn query(&self) -> Option<&str> {
        self.query
    }
    fn authority(&self) -> Option<&str> {
        None // only origin-form targets are taken
    }
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

/// Bytes of a request target the front takes: a subset of what `http::Uri` accepts in an
/// origin-form path and query (no fragment, no bytes above 0x7e, no `"`, `<`, `>`, `\`, `^`,
/// backquote, `{`, `|`, `}`); anything else goes to hyper, which answers as before.
fn target_byte_ok(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'/'
                | b'%'
                | b'?'
        )
}

/// Headers that change how the connection or the request body is handled: a request with
/// any of them is hyper's.
fn framing_header(name: &str) -> bool {
    const NAMES: [&str; 6] = [
        "content-length",
        "transfer-encoding",
        "expect",
        "connection",
        "upgrade",
        "te",
    ];
    NAMES.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// The request as the fast path may read it, or `None` when it is hyper's.
pub(super) fn takeable<'b>(req: &'b httparse::Request<'_, 'b>) -> Option<RawHead<'b>> {
    let method = req.method?;
    if method != "GET" && method != "HEAD" {
        return None;
    }
    let head = object_head(req, method)?;
    if head.headers.iter().any(|h| framing_header(h.name)) {
        return None;
    }
    Some(head)
}

/// A small PUT the front may serve itself (docs/adr/0030-put-on-the-front.md): an object
/// target as for GET, exactly one `Content-Length` and no other framing header (no
/// `Transfer-Encoding`, `Expect`, `Connection` ...); what else it must carry is
/// `super::put`'s to decide. `None` when it is hyper's.
pub(super) fn takeable_put<'b>(req: &'b httparse::Request<'_, 'b>) -> Option<RawHead<'b>> {
    if req.method? != "PUT" {
        return None;
    }
    let head = object_head(req, "PUT")?;
    let mut lengths = 0;
    for h in head.headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            lengths += 1;
        } else if framing_header(h.name) {
            return None;
        }
    }
    (lengths == 1).then_some(head)
}

impl<'b> RawHead<'b> {
    /// Every header line, in order.
    pub(super) fn headers(&self) -> &'b [httparse::Header<'b>] {
        self.headers
    }
}

/// An HTTP/1.1 request for an object (origin-form target of conservative bytes naming a
/// bucket and a key, not a health/allocation path, a head within `handle_inner`'s size rule).
fn object_head<'b>(req: &'b httparse::Request<'_, 'b>, method: &'b str) -> Option<RawHead<'b>> {
    if req.version? != 1 {
        return None; // HTTP/1.0 keep-alive rules: hyper's
    }
    let target = req.path?;
    if !target.starts_with('/')
        || target.len() > MAX_TARGET_BYTES
        || !target.bytes().all(target_byte_ok)
    {
        return None;
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    // Only object paths (a bucket and a key, as sent): the endpoints hyper's side answers
    // before the fast path (health, metrics, the allocation counter) and bucket-level
    // requests have no key.
    let (bucket, key) = path[1..].split_once('/')?;
    if bucket.is_empty() || key.is_empty() {
        return None;
    }
    if crate::http::is_health(path) || (crate::allocs::ENABLED && path == crate::allocs::ENDPOINT) {
        return None;
    }
    let headers: &'b [httparse::Header<'b>] = req.headers;
    // The same size rule as `crate::http::handle_inner` (a refused head is hyper's to answer).
    let head_bytes = headers
        .iter()
        .map(|h| h.name.len() + h.value.len() + 4)
        .sum::<usize>()
        + path.len()
        + query.map_or(0, str::len);
    if head_bytes > MAX_HEADER_BYTES {
        return None;
    }
    Some(RawHead {
        method,
        path,
        query,
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_take(raw: &[u8]) -> Option<(String, Option<String>)> {
        let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut hs);
        match req.parse(raw) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return None,
        }
        takeable(&req).map(|h| (h.path.to_string(), h.query.map(str::to_string)))
    }

    #[test]
    fn what_the_front_takes() {
        let ok = b"GET /b/k?x-id=GetObject HTTP/1.1\r\nHost: h\r\nX-Amz-Date: 1\r\n\r\n";
        assert_eq!(
            parse_take(ok),
            Some(("/b/k".into(), Some("x-id=GetObject".into())))
        );
        for bad in [
            &b"GET /b/k HTTP/1.0\r\nHost: h\r\n\r\n"[..],
            b"POST /b/k HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /b/k HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            b"GET /b/k HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n",
            b"GET /b/k HTTP/1.1\r\nConnection: close\r\n\r\n",
            b"GET /b/k HTTP/1.1\r\nCONNECTION: keep-alive\r\n\r\n",
            b"GET /b/k HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            b"GET /b/k HTTP/1.1\r\nUpgrade: h2c\r\n\r\n",
            b"GET http://h/b/k HTTP/1.1\r\n\r\n",
            b"GET /b/k#f HTTP/1.1\r\n\r\n",
            b"GET /b/k{ HTTP/1.1\r\n\r\n",
            b"GET /bucket HTTP/1.1\r\n\r\n",
            b"GET /bucket/ HTTP/1.1\r\n\r\n",
            b"GET //k HTTP/1.1\r\n\r\n",
            b"GET /minio/health/live HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(parse_take(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn what_the_front_takes_for_a_put() {
        let take = |raw: &[u8]| {
            let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut hs);
            assert!(req.parse(raw).unwrap().is_complete());
            takeable_put(&req).map(|h| h.path.to_string())
        };
        assert_eq!(
            take(b"PUT /b/k HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n"),
            Some("/b/k".into())
        );
        for bad in [
            &b"PUT /b/k HTTP/1.1\r\nHost: h\r\n\r\n"[..], // no length
            b"PUT /b/k HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
            b"PUT /b/k HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
            b"PUT /b/k HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"PUT /b/k HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\n",
            b"PUT /b/k HTTP/1.0\r\nContent-Length: 3\r\n\r\n",
            b"PUT /b HTTP/1.1\r\nContent-Length: 3\r\n\r\n",
            b"GET /b/k HTTP/1.1\r\nContent-Length: 3\r\n\r\n",
            b"POST /b/k HTTP/1.1\r\nContent-Length: 3\r\n\r\n",
        ] {
            assert_eq!(take(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn raw_head_reads_headers_like_a_header_map() {
        use crate::fast::Head;
        let raw = b"GET /b/k HTTP/1.1\r\nX-Amz-Date: a\r\nhost: h\r\nx-amz-date: b\r\n\r\n";
        let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut hs);
        assert!(req.parse(raw).unwrap().is_complete());
        let h = takeable(&req).unwrap();
        let v: Vec<&[u8]> = h.values("x-amz-date").collect();
        assert_eq!(v, vec![&b"a"[..], b"b"]);
        assert!(h.contains("HOST"));
        assert!(!h.contains("range"));
        assert_eq!(h.method(), "GET");
        assert_eq!(h.authority(), None);
    }
}
