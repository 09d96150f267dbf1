//! The HTTP/1.1 front of a plain connection (docs/adr/0020-http-front.md): request heads are
//! parsed in place with `httparse`, and while they are plain GET/HEAD requests the fast path
//! answers (`crate::fast::try_answer`), the answer is written here, head and small body in one
//! write, with the bytes hyper would have written for it. The first request the front does
//! not take (another method, a body, `Connection`/`Expect`/`Upgrade`, HTTP/1.0, a target or a
//! head it is not sure of, a request the fast path declines) hands the connection to hyper for
//! the rest of its life, the bytes already read replayed first ([`Replay`]): whatever is not
//! the hot path is served exactly as before.
//!
//! Limits kept on the front (ADR 9/10): the header read timeout runs from the moment a head is
//! awaited, as hyper's does (a slow or idle client is cut at the same deadline, without an
//! answer); a head that reaches `MAX_HEADER_BYTES` unfinished goes to hyper, which refuses it
//! as before (431); the idle timeout is the connection's `IdleIo`; in-flight slots, request
//! ids, metrics, request logging and panic containment are those of `crate::http`.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures::FutureExt;
use monoio::io::poll_io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::conns::ConnSlot;
use crate::http::{ConnLimits, Handlers, MAX_HEADER_BYTES};

/// Most header lines in a head the front parses (hyper's default limit, 100); a head with
/// more goes to hyper.
pub const MAX_HEADERS: usize = 100;
/// Longest request target the front takes, bytes (a key is at most 1,024 bytes, escaped up to
/// three times that); a longer one goes to hyper.
pub const MAX_TARGET_BYTES: usize = 8 * 1024;
/// Read buffer a connection starts with, bytes; it grows (up to `MAX_HEADER_BYTES`) only for
/// a head that does not fit.
pub const READ_BUF_BYTES: usize = 8 * 1024;
/// A body up to this size is copied behind the head and sent with it in one write, bytes.
pub const COPY_BODY_MAX_BYTES: usize = 64 * 1024;
/// Buffers kept per core for reuse (read and write buffers, header maps).
const POOL_MAX: usize = 256;
/// A buffer larger than this is freed, not pooled, bytes.
const POOL_MAX_BYTES: usize = 128 * 1024;

thread_local! {
    static BUFS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    static MAPS: RefCell<Vec<http::HeaderMap>> = const { RefCell::new(Vec::new()) };
    /// (unix second, "Sun, 06 Nov 1994 08:49:37 GMT") of the last Date written on this core.
    static DATE: Cell<(u64, [u8; 29])> = const { Cell::new((u64::MAX, [0; 29])) };
}

/// A buffer from this core's pool (empty; its capacity is kept).
fn take_buf(min_cap: usize) -> Vec<u8> {
    let mut v = BUFS.with(|p| p.borrow_mut().pop()).unwrap_or_default();
    v.clear();
    v.reserve(min_cap);
    v
}

fn give_buf(v: Vec<u8>) {
    if v.capacity() == 0 || v.capacity() > POOL_MAX_BYTES {
        return;
    }
    BUFS.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_MAX {
            p.push(v);
        }
    });
}

fn take_map() -> http::HeaderMap {
    MAPS.with(|p| p.borrow_mut().pop()).unwrap_or_default()
}

fn give_map(mut m: http::HeaderMap) {
    m.clear();
    MAPS.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_MAX {
            p.push(m);
        }
    });
}

/// The connection's byte stream with the bytes the front read and did not consume in front:
/// hyper reads those first, then the stream.
pub struct Replay<T> {
    prefix: Vec<u8>,
    pos: usize,
    io: T,
}

impl<T> Replay<T> {
    pub fn new(prefix: Vec<u8>, io: T) -> Self {
        Self { prefix, pos: 0, io }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Replay<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.prefix.len() {
            let n = (this.prefix.len() - this.pos).min(buf.remaining());
            buf.put_slice(&this.prefix[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                give_buf(std::mem::take(&mut this.prefix));
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Replay<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// How the front left a connection.
pub enum Outcome {
    /// Closed (the client left, a timeout, shutdown, an I/O error).
    Closed,
    /// Hyper serves the rest; these bytes were read and not consumed (possibly none).
    HandOver(Vec<u8>),
}

/// A head as `httparse` parsed it, read by the fast path through `crate::fast::Head`.
pub(crate) struct RawHead<'b> {
    method: &'b str,
    path: &'b str,
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
fn takeable<'b>(req: &'b httparse::Request<'_, 'b>) -> Option<RawHead<'b>> {
    if req.version? != 1 {
        return None; // HTTP/1.0 keep-alive rules: hyper's
    }
    let method = req.method?;
    if method != "GET" && method != "HEAD" {
        return None;
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
    if headers.iter().any(|h| framing_header(h.name)) {
        return None;
    }
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

/// Serves requests on a plain connection until one is not the front's (`HandOver`) or the
/// connection ends.
pub async fn serve<T>(
    io: &mut T,
    handlers: &Handlers,
    limits: ConnLimits,
    shutdown: &futures::future::Shared<futures::channel::oneshot::Receiver<()>>,
    conn: &Rc<ConnSlot>,
) -> Outcome
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let Some(fp) = handlers.fast.as_ref() else {
        return Outcome::HandOver(Vec::new());
    };
    let mut rb = take_buf(READ_BUF_BYTES);
    rb.resize(rb.capacity(), 0);
    let mut out = take_buf(1024);
    let (mut start, mut end) = (0usize, 0usize);
    let mut sd = shutdown.clone();
    let mut sleep: Option<Pin<Box<monoio::time::Sleep>>> = None;
    let outcome = 'conn: loop {
        // A head is awaited from now: hyper's header read timeout starts here too.
        let deadline = Instant::now() + limits.header_timeout;
        loop {
            let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut hs);
            match req.parse(&rb[start..end]) {
                Ok(httparse::Status::Complete(head_len)) => {
                    let Some(head) = takeable(&req) else {
                        break 'conn Stop::HandOver;
                    };
                    let is_head = head.method == "HEAD";
                    let resp = match answer(fp, &head, limits.max_inflight, conn).await {
                        Some(r) => r,
                        None => break 'conn Stop::HandOver,
                    };
                    start += head_len;
                    if start == end {
                        (start, end) = (0, 0);
                    }
                    match write_response(io, &mut out, resp, is_head).await {
                        // Shutdown asked while this request was served: it was finished, the
                        // connection closes (hyper's graceful shutdown does the same).
                        Ok(true) if shutdown.peek().is_some() => break 'conn Stop::Closed,
                        Ok(true) => break,
                        Ok(false) => break 'conn Stop::Closed,
                        Err(e) => {
                            tracing::debug!(error = %e, "connection ended while answering");
                            break 'conn Stop::Closed;
                        }
                    }
                }
                Ok(httparse::Status::Partial) => {}
                // hyper parses with the same httparse and answers its own 400
                Err(_) => break 'conn Stop::HandOver,
            }
            // More bytes are needed for this head.
            if end - start >= MAX_HEADER_BYTES {
                break 'conn Stop::HandOver; // hyper answers 431
            }
            if start > 0 {
                rb.copy_within(start..end, 0);
                (start, end) = (0, end - start);
            }
            if end == rb.len() {
                let grown = (rb.len() * 2).min(MAX_HEADER_BYTES);
                rb.resize(grown, 0);
            }
            let sleep = match sleep.as_mut() {
                Some(s) => {
                    if s.deadline() != monoio::time::Instant::from_std(deadline) {
                        s.as_mut().reset(monoio::time::Instant::from_std(deadline));
                    }
                    s
                }
                None => sleep.insert(Box::pin(monoio::time::sleep_until(
                    monoio::time::Instant::from_std(deadline),
                ))),
            };
            let idle = end == 0;
            let read = std::future::poll_fn(|cx| {
                let mut b = ReadBuf::new(&mut rb[end..]);
                match Pin::new(&mut *io).poll_read(cx, &mut b) {
                    Poll::Ready(Ok(())) => return Poll::Ready(Read::Bytes(b.filled().len())),
                    Poll::Ready(Err(e)) => return Poll::Ready(Read::Failed(e)),
                    Poll::Pending => {}
                }
                if idle && sd.poll_unpin(cx).is_ready() {
                    return Poll::Ready(Read::Shutdown);
                }
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Read::TimedOut);
                }
                Poll::Pending
            })
            .await;
            match read {
                Read::Bytes(0) => break 'conn Stop::Closed,
                Read::Bytes(n) => end += n,
                Read::Failed(e) => {
                    tracing::debug!(error = %e, "connection ended");
                    break 'conn Stop::Closed;
                }
                Read::Shutdown => break 'conn Stop::Closed,
                Read::TimedOut => {
                    tracing::debug!("read header from client timeout");
                    break 'conn Stop::Closed;
                }
            }
        }
    };
    give_buf(out);
    match outcome {
        Stop::Closed => {
            give_buf(rb);
            Outcome::Closed
        }
        Stop::HandOver => hand_over(rb, start, end),
    }
}

enum Stop {
    Closed,
    HandOver,
}

enum Read {
    Bytes(usize),
    Failed(io::Error),
    Shutdown,
    TimedOut,
}

fn hand_over(mut rb: Vec<u8>, start: usize, end: usize) -> Outcome {
    rb.truncate(end);
    rb.drain(..start);
    Outcome::HandOver(rb)
}

/// The fast path's answer with everything `crate::http::handle` does around it (in-flight
/// slot, request id, metrics, log line, panic containment); `None` when it declines (hyper
/// then serves the request from the start).
async fn answer(
    fp: &std::sync::Arc<crate::fast::FastPath>,
    head: &RawHead<'_>,
    max_inflight: usize,
    conn: &Rc<ConnSlot>,
) -> Option<http::Response<s3s::Body>> {
    // At the limit: hyper's side answers 503 SlowDown as before.
    let slot = crate::http::InflightGuard::try_new(max_inflight)?;
    crate::spin::request_started();
    conn.request_started();
    let id = crate::http::request_id();
    let op = if head.method == "HEAD" {
        crate::metrics::Op::HeadObject
    } else {
        crate::metrics::Op::GetObject
    };
    let timer = crate::metrics::RequestTimer::start(op);
    let served = crate::logging::with_request_id(
        Some(id),
        AssertUnwindSafe(crate::fast::try_answer(fp, head, take_map())).catch_unwind(),
    )
    .await;
    drop(slot);
    let mut resp = match served {
        Ok(Some(r)) => r,
        Ok(None) => {
            conn.request_ended();
            crate::spin::request_ended();
            return None; // the timer drops uncounted
        }
        Err(_) => {
            tracing::error!(
                "panic while serving a request (fast path); answered 500, connection kept"
            );
            crate::http::internal_error_xml()
        }
    };
    crate::http::stamp_request_id(&mut resp, &id);
    let ns = timer.finish(&resp);
    if crate::logging::log_requests() {
        tracing::info!(
            request_id = %String::from_utf8_lossy(&id),
            method = %head.method,
            path = %head.path,
            op = %crate::metrics::OP_NAMES[op as usize],
            status = resp.status().as_u16(),
            duration_us = ns / 1000,
            "request"
        );
    }
    conn.request_ended();
    crate::spin::request_ended();
    Some(resp)
}

/// The length of a response body as hyper classifies it.
#[derive(Clone, Copy, PartialEq, Debug)]
enum BodyLen {
    /// Empty (`is_end_stream`).
    None,
    Known(u64),
    Unknown,
}

/// What the head written by [`encode_head`] says about the body.
#[derive(Debug, PartialEq)]
struct Framing {
    send_body: bool,
    chunked: bool,
    close: bool,
}

/// Writes the response head exactly as hyper 1's server writes it (lower-case names in the
/// map's order, `content-length` and `date` placed as hyper places them).
fn encode_head(
    out: &mut Vec<u8>,
    status: http::StatusCode,
    headers: &http::HeaderMap,
    body: BodyLen,
    is_head: bool,
    date: &[u8],
) -> Framing {
    use http::header;
    if status == http::StatusCode::OK {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let no_content = matches!(
        status,
        http::StatusCode::NO_CONTENT | http::StatusCode::NOT_MODIFIED
    );
    let can_have_len = !status.is_informational() && !no_content;
    let can_have_body = !is_head && !status.is_informational() && !no_content;
    let mut f = Framing {
        send_body: can_have_body,
        chunked: false,
        close: false,
    };
    let mut wrote_len = false;
    let mut wrote_date = false;
    let line = |out: &mut Vec<u8>, name: &header::HeaderName, v: &http::HeaderValue| {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    for (name, v) in headers {
        if *name == header::CONTENT_LENGTH {
            match body {
                BodyLen::Known(_) | BodyLen::Unknown => {
                    if !wrote_len {
                        line(out, name, v);
                        wrote_len = true;
                    }
                }
                BodyLen::None if is_head => {
                    line(out, name, v);
                    wrote_len = true;
                }
                BodyLen::None => {}
            }
            continue;
        }
        if *name == header::CONNECTION
            && v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
        {
            f.close = true;
        }
        if *name == header::DATE {
            wrote_date = true;
        }
        line(out, name, v);
    }
    if !wrote_len {
        match body {
            BodyLen::Unknown => {
                if can_have_body {
                    out.extend_from_slice(b"transfer-encoding: chunked\r\n");
                    f.chunked = true;
                } else {
                    f.close = true;
                }
            }
            BodyLen::None | BodyLen::Known(0) => {
                if can_have_len && !is_head {
                    out.extend_from_slice(b"content-length: 0\r\n");
                }
            }
            BodyLen::Known(n) => {
                if can_have_len {
                    out.extend_from_slice(b"content-length: ");
                    let mut b = itoa_buf(n);
                    out.extend_from_slice(b.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
    }
    if !wrote_date {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(date);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    f
}

/// A decimal number without allocating.
struct Digits {
    buf: [u8; 20],
    at: usize,
}

impl Digits {
    fn as_bytes(&mut self) -> &[u8] {
        &self.buf[self.at..]
    }
}

fn itoa_buf(mut n: u64) -> Digits {
    let mut d = Digits {
        buf: [0; 20],
        at: 20,
    };
    loop {
        d.at -= 1;
        d.buf[d.at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return d;
        }
    }
}

/// Today's `Date` value (IMF-fixdate), formatted once per second per core.
fn date_now() -> [u8; 29] {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with(|c| {
        let (at, v) = c.get();
        if at == secs {
            return v;
        }
        let v = imf_fixdate(secs);
        c.set((secs, v));
        v
    })
}

fn imf_fixdate(secs: u64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let t = time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let mut o = [0u8; 29];
    let two = |o: &mut [u8], v: u8| {
        o[0] = b'0' + v / 10;
        o[1] = b'0' + v % 10;
    };
    o[..3].copy_from_slice(DAYS[t.weekday().number_days_from_monday() as usize]);
    o[3..5].copy_from_slice(b", ");
    two(&mut o[5..7], t.day());
    o[7] = b' ';
    o[8..11].copy_from_slice(MONTHS[t.month() as usize - 1]);
    o[11] = b' ';
    let y = t.year().clamp(0, 9999) as u16;
    two(&mut o[12..14], (y / 100) as u8);
    two(&mut o[14..16], (y % 100) as u8);
    o[16] = b' ';
    two(&mut o[17..19], t.hour());
    o[19] = b':';
    two(&mut o[20..22], t.minute());
    o[22] = b':';
    two(&mut o[23..25], t.second());
    o[25..29].copy_from_slice(b" GMT");
    o
}

/// Writes the response; `Ok(false)` when the connection must close after it.
async fn write_response<T: AsyncWrite + Unpin>(
    io: &mut T,
    out: &mut Vec<u8>,
    mut resp: http::Response<s3s::Body>,
    is_head: bool,
) -> io::Result<bool> {
    use http_body::Body as _;
    let body_len = {
        let b = resp.body();
        if b.is_end_stream() {
            BodyLen::None
        } else {
            b.size_hint()
                .exact()
                .map_or(BodyLen::Unknown, BodyLen::Known)
        }
    };
    out.clear();
    let f = encode_head(
        out,
        resp.status(),
        resp.headers(),
        body_len,
        is_head,
        &date_now(),
    );
    give_map(std::mem::take(resp.headers_mut()));
    let mut body = resp.into_body();
    let whole: Option<Bytes> = if f.send_body && !f.chunked {
        body.bytes()
    } else {
        None
    };
    match whole {
        Some(b) if b.len() <= COPY_BODY_MAX_BYTES => {
            out.extend_from_slice(&b);
            write_all(io, out).await?;
        }
        Some(b) => {
            write_all(io, out).await?;
            write_all(io, &b).await?;
        }
        None => {
            write_all(io, out).await?;
            if f.send_body && body_len != BodyLen::None {
                stream_body(io, out, &mut body, f.chunked).await?;
            }
        }
    }
    std::future::poll_fn(|cx| Pin::new(&mut *io).poll_flush(cx)).await?;
    Ok(!f.close)
}

/// Sends a streamed body frame by frame (chunked when hyper would chunk it).
async fn stream_body<T: AsyncWrite + Unpin>(
    io: &mut T,
    scratch: &mut Vec<u8>,
    body: &mut s3s::Body,
    chunked: bool,
) -> io::Result<()> {
    use http_body::Body as _;
    loop {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await;
        match frame {
            None => break,
            Some(Err(e)) => {
                return Err(io::Error::other(format!("response body failed: {e}")));
            }
            Some(Ok(f)) => {
                let Ok(data) = f.into_data() else { continue };
                if data.is_empty() {
                    continue;
                }
                if chunked {
                    scratch.clear();
                    scratch.extend_from_slice(format!("{:X}\r\n", data.len()).as_bytes());
                    write_all(io, scratch).await?;
                    write_all(io, &data).await?;
                    write_all(io, b"\r\n").await?;
                } else {
                    write_all(io, &data).await?;
                }
            }
        }
    }
    if chunked {
        write_all(io, b"0\r\n\r\n").await?;
    }
    Ok(())
}

async fn write_all<T: AsyncWrite + Unpin>(io: &mut T, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = std::future::poll_fn(|cx| Pin::new(&mut *io).poll_write(cx, buf)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    Ok(())
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

    #[test]
    fn dates_are_imf_fixdate() {
        assert_eq!(&imf_fixdate(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(
            &imf_fixdate(1_369_353_600),
            b"Fri, 24 May 2013 00:00:00 GMT"
        );
        let now = date_now();
        assert_eq!(&now[25..], b" GMT");
    }

    #[test]
    fn digits() {
        for n in [0u64, 7, 10, 4096, u64::MAX] {
            assert_eq!(itoa_buf(n).as_bytes(), n.to_string().as_bytes());
        }
    }

    fn head_of(status: u16, h: &[(&str, &str)], body: BodyLen, is_head: bool) -> (String, Framing) {
        let mut m = http::HeaderMap::new();
        for (k, v) in h {
            m.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let mut out = Vec::new();
        let f = encode_head(
            &mut out,
            http::StatusCode::from_u16(status).unwrap(),
            &m,
            body,
            is_head,
            b"Sun, 06 Nov 1994 08:49:37 GMT",
        );
        (String::from_utf8(out).unwrap(), f)
    }

    /// The heads hyper 1 writes for the same responses (its `Server::encode`).
    #[test]
    fn heads_as_hyper_writes_them() {
        let d = "date: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n";
        let (s, f) = head_of(
            200,
            &[
                ("etag", "\"x\""),
                ("content-length", "3"),
                ("x-amz-request-id", "A"),
            ],
            BodyLen::Known(3),
            false,
        );
        assert_eq!(
            s,
            format!(
                "HTTP/1.1 200 OK\r\netag: \"x\"\r\ncontent-length: 3\r\nx-amz-request-id: A\r\n{d}"
            )
        );
        assert!(f.send_body && !f.chunked && !f.close);
        // HEAD: the body is empty, content-length kept in place, no body sent.
        let (s, f) = head_of(200, &[("content-length", "3")], BodyLen::None, true);
        assert_eq!(s, format!("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n{d}"));
        assert!(!f.send_body);
        // An empty GET body: the header is dropped and an implicit 0 goes last.
        let (s, _) = head_of(
            200,
            &[("content-length", "0"), ("etag", "e")],
            BodyLen::None,
            false,
        );
        assert_eq!(
            s,
            format!("HTTP/1.1 200 OK\r\netag: e\r\ncontent-length: 0\r\n{d}")
        );
        // No content-length header: hyper appends the body's length.
        let (s, _) = head_of(
            404,
            &[("content-type", "application/xml")],
            BodyLen::Known(12),
            false,
        );
        assert_eq!(
            s,
            format!("HTTP/1.1 404 Not Found\r\ncontent-type: application/xml\r\ncontent-length: 12\r\n{d}")
        );
        // HEAD of an error with a body: length announced, body not sent.
        let (s, f) = head_of(404, &[], BodyLen::Known(12), true);
        assert_eq!(
            s,
            format!("HTTP/1.1 404 Not Found\r\ncontent-length: 12\r\n{d}")
        );
        assert!(!f.send_body);
        // 304: no length at all.
        let (s, f) = head_of(304, &[("etag", "e")], BodyLen::None, false);
        assert_eq!(s, format!("HTTP/1.1 304 Not Modified\r\netag: e\r\n{d}"));
        assert!(!f.send_body);
        // Unknown length: chunked.
        let (s, f) = head_of(200, &[], BodyLen::Unknown, false);
        assert_eq!(
            s,
            format!("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n{d}")
        );
        assert!(f.chunked);
        // connection: close is kept and closes.
        let (_, f) = head_of(500, &[("connection", "close")], BodyLen::Known(1), false);
        assert!(f.close);
    }
}
