//! The gateway's lean HTTP/1.1 client connection to a plain-http upstream (ADR 15, part 4):
//! monoio's io_uring `TcpStream` read and written directly by the request's own task (no
//! connection task, no readiness adapter), the answer head parsed in place by `httparse`.
//!
//! Framing of answers: no body (HEAD, 1xx, 204, 304), `Content-Length`, `chunked` (trailers
//! read and dropped), or to the end of the connection. 1xx heads (`100 Continue`) are skipped.
//! A connection goes back to its core's pool only when its answer was read to the end, the
//! upstream did not ask to close it, and no read or write on it was cut (cancelled by a
//! timeout, failed): anything else drops it, so a connection with an unread body is never
//! reused. The caller owns the timeouts (every await here runs under one).

use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

/// Largest answer head accepted from the upstream, bytes.
pub(super) const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The read buffer a connection starts with, bytes (grows to [`MAX_HEAD_BYTES`] for a head).
const READ_BUF_BYTES: usize = 16 * 1024;
/// Largest body read handed out as one chunk, bytes.
const MAX_BODY_READ_BYTES: usize = 256 * 1024;
/// Most headers in an answer head.
const MAX_HEADERS: usize = 96;
/// Longest chunk-size or trailer line, bytes.
const MAX_LINE_BYTES: usize = 4096;
/// Request bodies at most this long are written in one write with the head, bytes.
const INLINE_BODY_BYTES: usize = 16 * 1024;
/// The slowest average an answer's body may arrive at, bytes per second of waiting on the
/// upstream: a body read may wait, in all, at most the upstream timeout plus its bytes at this
/// rate. Each read is also cut by the per-chunk timeout (the caller's); this bounds the TOTAL
/// time of an upstream that dribbles (a byte every 200 ms resets any per-read timer: without
/// this, a 1 MiB body would hold its request for 58 hours). The time counted is the time spent
/// in [`Conn::next_body`], i.e. waiting for the upstream, never the time the caller takes
/// between reads (a slow client or disk sets the pace of a streamed fill, not the upstream).
pub(super) const MIN_BODY_BYTES_PER_S: u64 = 64 * 1024;
/// The grace of that bound when no gateway is installed (unit tests), otherwise the upstream
/// timeout (`--upstream-timeout-ms`).
const DEFAULT_BODY_GRACE: Duration = Duration::from_secs(5);

fn bad(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// One kept-alive connection to the upstream.
pub(super) struct Conn {
    stream: TcpStream,
    /// Bytes read and not consumed yet: `buf[pos..]`.
    buf: Vec<u8>,
    pos: usize,
    /// Set while a read or write is in flight: a cut one (its future dropped by a timeout)
    /// leaves it set, and the connection is never reused.
    busy: bool,
    /// Bytes received since the last request was written (0: the upstream said nothing yet,
    /// so a request it dropped on an idle kept-alive connection can be sent again).
    pub(super) received_bytes: u64,
    /// Requests written on this connection.
    pub(super) requests: u64,
    /// Time spent waiting in [`Conn::next_body`] for the current answer's body, and the body
    /// bytes it handed out ([`MIN_BODY_BYTES_PER_S`]).
    body_waited: Duration,
    body_bytes: u64,
}

/// How the answer's body is delimited, and how far it was read.
#[derive(Debug, PartialEq)]
pub(super) enum Framing {
    /// Read to its end.
    Done,
    /// This many bytes left.
    Length(u64),
    Chunked(Chunk),
    /// Until the upstream closes (never reused).
    UntilClose,
}

#[derive(Debug, PartialEq)]
pub(super) enum Chunk {
    /// At a chunk-size line.
    Size,
    /// In a chunk's data, this many bytes left.
    Data(u64),
    /// At the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines up to an empty one.
    Trailers,
}

/// An answer head.
pub(super) struct Head {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub framing: Framing,
    /// The connection may carry another request after this answer's body.
    pub keep_alive: bool,
}

impl Conn {
    pub(super) async fn connect(addr: std::net::SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect_addr(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(READ_BUF_BYTES),
            pos: 0,
            busy: false,
            received_bytes: 0,
            requests: 0,
            body_waited: Duration::ZERO,
            body_bytes: 0,
        })
    }

    /// Whether this connection can carry another request: nothing cut on it, nothing unread.
    pub(super) fn reusable(&self) -> bool {
        !self.busy && self.pos == self.buf.len()
    }

    /// Whether the upstream closed this idle connection (or sent on it unasked), asked the
    /// kernel without waiting (one `recv(MSG_PEEK | MSG_DONTWAIT)`). Used before a request
    /// whose body cannot be sent twice.
    pub(super) fn closed_while_idle(&self) -> bool {
        let mut b = [0u8; 1];
        // SAFETY: a valid fd owned by `self.stream`, a 1-byte buffer on the stack.
        let n = unsafe {
            libc::recv(
                self.stream.as_raw_fd(),
                b.as_mut_ptr().cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return !matches!(e.kind(), io::ErrorKind::WouldBlock);
        }
        true
    }

    fn avail(&self) -> &[u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    /// Reads more bytes into the buffer (keeping the unconsumed ones), growing it up to
    /// `max_bytes`. `Ok(0)`: the upstream closed.
    async fn fill(&mut self, max_bytes: usize) -> io::Result<usize> {
        if self.pos >= self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.len() == self.buf.capacity() {
            if self.buf.capacity() >= max_bytes {
                return Err(bad("upstream answer head or line too long"));
            }
            let want = (self.buf.capacity() * 2).min(max_bytes);
            self.buf.reserve_exact(want - self.buf.len());
        }
        let (len, cap) = (self.buf.len(), self.buf.capacity());
        let b = std::mem::take(&mut self.buf);
        self.busy = true;
        let (r, s) = self.stream.read(b.slice_mut(len..cap)).await;
        self.busy = false;
        self.buf = s.into_inner();
        let n = r?;
        self.received_bytes += n as u64;
        Ok(n)
    }

    /// Writes all of `b`; gives it back.
    async fn write<B: IoBuf + 'static>(&mut self, b: B) -> (io::Result<()>, B) {
        self.busy = true;
        let (r, b) = self.stream.write_all(b).await;
        self.busy = false;
        (r.map(|_| ()), b)
    }

    /// Writes a request head (and inline body) that the socket's send buffer takes at once
    /// with one non-blocking `send` (an idle kept-alive connection's buffer is empty): no
    /// io_uring round trip, whose completion waits for the core's next loop turn (part 5:
    /// 21 µs p50 per miss with the previous fill on the core). Whatever the kernel did not
    /// take goes through io_uring as before. The connection is idle here: no io_uring
    /// operation of ours is in flight on the socket.
    async fn write_now(&mut self, b: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        // SAFETY: a valid fd owned by `self.stream`; `b` is a live buffer of `b.len()` bytes.
        let n = unsafe {
            libc::send(
                self.stream.as_raw_fd(),
                b.as_ptr().cast(),
                b.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        match usize::try_from(n) {
            Ok(n) if n == b.len() => (Ok(()), b),
            Ok(n) => {
                let (r, rest) = self.write(b.slice(n..)).await;
                (r, rest.into_inner())
            }
            Err(_) => {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted {
                    self.write(b).await
                } else {
                    (Err(e), b)
                }
            }
        }
    }

    /// Writes a request: `head` (ending in the empty line), then `body` if any; gives the
    /// head back (as it was: a request sent again reuses it). A body up to
    /// [`INLINE_BODY_BYTES`] goes out in the head's write.
    pub(super) async fn send_head(
        &mut self,
        mut head: Vec<u8>,
        body: Option<Bytes>,
    ) -> (io::Result<()>, Vec<u8>) {
        self.received_bytes = 0;
        // A kept-alive connection must be silent between answers: bytes there (an answer
        // longer than its Content-Length whose extra bytes came after it was read, or shaped
        // as an answer to smuggle one) would be read as the answer to THIS request, and a
        // fill would keep them under this request's key. One non-blocking peek; the caller
        // sends a GET/HEAD again on a new connection (nothing was received on this one).
        if self.requests > 0 && self.closed_while_idle() {
            return (
                Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "pooled upstream connection closed, or has unasked bytes",
                )),
                head,
            );
        }
        self.requests += 1;
        let head_len = head.len();
        match body {
            Some(b) if b.len() <= INLINE_BODY_BYTES => {
                head.extend_from_slice(&b);
                let (r, mut head) = self.write_now(head).await;
                head.truncate(head_len);
                (r, head)
            }
            Some(b) => {
                let (r, head) = self.write(head).await;
                if r.is_err() {
                    return (r, head);
                }
                (self.write(b).await.0, head)
            }
            None => self.write_now(head).await,
        }
    }

    /// Writes one piece of a streamed request body.
    pub(super) async fn send_body(&mut self, b: Bytes) -> io::Result<()> {
        self.write(b).await.0
    }

    /// Reads the answer's head (1xx heads skipped). `is_head`: the request was a HEAD (no
    /// body whatever the head says).
    pub(super) async fn read_head(&mut self, is_head: bool) -> io::Result<Head> {
        self.body_waited = Duration::ZERO;
        self.body_bytes = 0;
        loop {
            let parsed = {
                let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut resp = httparse::Response::new(&mut hs);
                match resp.parse(self.avail()) {
                    Ok(httparse::Status::Complete(n)) => Some((n, head_of(&resp, is_head)?)),
                    Ok(httparse::Status::Partial) => None,
                    Err(_) => return Err(bad("malformed upstream answer head")),
                }
            };
            match parsed {
                Some((n, h)) => {
                    self.pos += n;
                    if h.status.is_informational() {
                        if h.status == http::StatusCode::SWITCHING_PROTOCOLS {
                            return Err(bad("upstream switched protocols"));
                        }
                        continue;
                    }
                    return Ok(h);
                }
                None => {
                    if self.fill(MAX_HEAD_BYTES).await? == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "upstream closed before its answer head",
                        ));
                    }
                }
            }
        }
    }

    /// The next piece of the body; `Ok(None)` at its end. Bytes already buffered are copied
    /// out; a `Content-Length` body's later bytes are read straight into the chunk handed out.
    pub(super) async fn next_body(&mut self, f: &mut Framing) -> io::Result<Option<Bytes>> {
        let started = Instant::now();
        let r = self.next_body_inner(f).await;
        self.body_waited += started.elapsed();
        if let Ok(Some(b)) = &r {
            self.body_bytes += b.len() as u64;
        }
        if r.is_ok() && *f != Framing::Done {
            let grace = super::get().map_or(DEFAULT_BODY_GRACE, |g| g.cfg.timeout);
            let allowed = grace
                + Duration::from_secs_f64(self.body_bytes as f64 / MIN_BODY_BYTES_PER_S as f64);
            if self.body_waited > allowed {
                self.busy = true; // never reused: the rest of the body is unread
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "upstream body slower than {MIN_BODY_BYTES_PER_S} bytes/s: {} bytes in {} ms of waiting",
                        self.body_bytes,
                        self.body_waited.as_millis()
                    ),
                ));
            }
        }
        r
    }

    async fn next_body_inner(&mut self, f: &mut Framing) -> io::Result<Option<Bytes>> {
        loop {
            match f {
                Framing::Done => return Ok(None),
                Framing::Length(0) => {
                    *f = Framing::Done;
                    return Ok(None);
                }
                Framing::Length(left) => {
                    let avail = self.avail().len();
                    if avail > 0 {
                        let n = avail.min(usize::try_from(*left).unwrap_or(usize::MAX));
                        let out = Bytes::copy_from_slice(&self.avail()[..n]);
                        self.pos += n;
                        *left -= n as u64;
                        if *left == 0 {
                            *f = Framing::Done;
                        }
                        return Ok(Some(out));
                    }
                    let want = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(MAX_BODY_READ_BYTES);
                    let out = self.read_new(want).await?;
                    if out.is_empty() {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "upstream closed mid-body",
                        ));
                    }
                    *left -= out.len() as u64;
                    if *left == 0 {
                        *f = Framing::Done;
                    }
                    return Ok(Some(out));
                }
                Framing::UntilClose => {
                    if !self.avail().is_empty() {
                        let out = Bytes::copy_from_slice(self.avail());
                        self.pos = self.buf.len();
                        return Ok(Some(out));
                    }
                    let out = self.read_new(MAX_BODY_READ_BYTES).await?;
                    if out.is_empty() {
                        *f = Framing::Done;
                        return Ok(None);
                    }
                    return Ok(Some(out));
                }
                Framing::Chunked(c) => {
                    if let Some(out) = self.chunked_step(c).await? {
                        return Ok(Some(out));
                    }
                    if *c == Chunk::Trailers {
                        // The trailers were read to their empty line.
                        *f = Framing::Done;
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Reads at most `want` new bytes into a fresh buffer (the buffer is empty).
    async fn read_new(&mut self, want: usize) -> io::Result<Bytes> {
        let b = BytesMut::with_capacity(want);
        self.busy = true;
        let (r, b) = self.stream.read(b).await;
        self.busy = false;
        let n = r?;
        self.received_bytes += n as u64;
        Ok(b.freeze())
    }

    /// A line (without its CRLF) from the buffer, reading more as needed.
    async fn line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(i) = self.avail().windows(2).position(|w| w == b"\r\n") {
                let l = self.avail()[..i].to_vec();
                self.pos += i + 2;
                return Ok(l);
            }
            if self.avail().len() > MAX_LINE_BYTES {
                return Err(bad("upstream chunk line too long"));
            }
            if self.fill(MAX_HEAD_BYTES).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "upstream closed mid-body (chunked)",
                ));
            }
        }
    }

    /// One step of a chunked body: `Some(data)`, or `None` after a framing step (the caller
    /// loops; `Chunk::Trailers` returned as `None` means the body ended).
    async fn chunked_step(&mut self, c: &mut Chunk) -> io::Result<Option<Bytes>> {
        match c {
            Chunk::Size => {
                let l = self.line().await?;
                let hex = l.split(|&b| b == b';').next().unwrap_or(&[]);
                let hex = std::str::from_utf8(hex)
                    .map_err(|_| bad("bad chunk size"))?
                    .trim();
                if hex.is_empty() || hex.len() > 15 {
                    return Err(bad("bad chunk size"));
                }
                let n = u64::from_str_radix(hex, 16).map_err(|_| bad("bad chunk size"))?;
                *c = if n == 0 {
                    Chunk::Trailers
                } else {
                    Chunk::Data(n)
                };
                if *c == Chunk::Trailers {
                    // Trailer lines up to the empty one.
                    while !self.line().await?.is_empty() {}
                }
                Ok(None)
            }
            Chunk::Data(left) => {
                if self.avail().is_empty() && self.fill(MAX_HEAD_BYTES).await? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "upstream closed mid-body (chunked)",
                    ));
                }
                let n = self
                    .avail()
                    .len()
                    .min(usize::try_from(*left).unwrap_or(usize::MAX));
                let out = Bytes::copy_from_slice(&self.avail()[..n]);
                self.pos += n;
                *left -= n as u64;
                if *left == 0 {
                    *c = Chunk::DataEnd;
                }
                Ok(Some(out))
            }
            Chunk::DataEnd => {
                if !self.line().await?.is_empty() {
                    return Err(bad("chunk data longer than its size"));
                }
                *c = Chunk::Size;
                Ok(None)
            }
            Chunk::Trailers => Ok(None),
        }
    }
}

/// The head's status, headers, framing and whether the connection stays open.
fn head_of(r: &httparse::Response<'_, '_>, is_head: bool) -> io::Result<Head> {
    let status = http::StatusCode::from_u16(r.code.ok_or_else(|| bad("no status"))?)
        .map_err(|_| bad("bad status"))?;
    let mut headers = http::HeaderMap::with_capacity(r.headers.len());
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut close = r.version == Some(0);
    for h in r.headers.iter() {
        let name =
            http::HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| bad("bad header name"))?;
        let value = http::HeaderValue::from_bytes(h.value).map_err(|_| bad("bad header value"))?;
        if name == http::header::CONTENT_LENGTH {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| bad("bad Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(bad("conflicting Content-Length"));
            }
            length = Some(n);
        } else if name == http::header::TRANSFER_ENCODING {
            let last = h.value.rsplit(|&b| b == b',').next().unwrap_or(&[]);
            chunked = last.trim_ascii().eq_ignore_ascii_case(b"chunked");
            if !chunked {
                close = true; // a body delimited by the end of the connection
            }
        } else if name == http::header::CONNECTION {
            for t in h.value.split(|&b| b == b',') {
                let t = t.trim_ascii();
                if t.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") && r.version == Some(0) {
                    close = false;
                }
            }
        }
        headers.append(name, value);
    }
    let no_body = is_head
        || status.is_informational()
        || status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED;
    let framing = if no_body {
        Framing::Done
    } else if chunked {
        Framing::Chunked(Chunk::Size)
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        close = true;
        Framing::UntilClose
    };
    Ok(Head {
        status,
        headers,
        framing,
        keep_alive: !close,
    })
}

/// Appends `name: value\r\n`, refusing bytes that would end the line early.
pub(super) fn push_header(out: &mut Vec<u8>, name: &str, value: &str) -> io::Result<()> {
    if name.bytes().any(|b| b <= b' ' || b == b':' || b >= 0x7f)
        || value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "header not sendable upstream",
        ));
    }
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn parse(raw: &[u8], is_head: bool) -> io::Result<Head> {
        let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut r = httparse::Response::new(&mut hs);
        assert!(r.parse(raw).unwrap().is_complete());
        head_of(&r, is_head)
    }

    #[test]
    fn framing_of_heads() {
        let h = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false).unwrap();
        assert_eq!(h.framing, Framing::Length(5));
        assert!(h.keep_alive);
        let h = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true).unwrap();
        assert_eq!(h.framing, Framing::Done);
        let h = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(h.framing, Framing::Chunked(Chunk::Size));
        assert!(!h.keep_alive);
        let h = parse(b"HTTP/1.1 200 OK\r\n\r\n", false).unwrap();
        assert_eq!(h.framing, Framing::UntilClose);
        assert!(!h.keep_alive);
        let h = parse(
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(h.framing, Framing::Done);
        let h = parse(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false).unwrap();
        assert!(!h.keep_alive);
        assert!(parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            false
        )
        .is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false).is_err());
        let mut v = Vec::new();
        assert!(push_header(&mut v, "x-a", "1\r\nx-b: 2").is_err());
        assert!(push_header(&mut v, "x a", "1").is_err());
        push_header(&mut v, "x-a", "1").unwrap();
        assert_eq!(v, b"x-a: 1\r\n");
    }

    /// A one-connection server answering each request with the next of `answers` (raw
    /// bytes; a `None` closes the connection), the connection's requests sent back.
    fn serve(answers: Vec<Option<Vec<u8>>>) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            for a in answers {
                let mut req = Vec::new();
                let mut b = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut b).unwrap();
                    if n == 0 {
                        return;
                    }
                    req.extend_from_slice(&b[..n]);
                }
                match a {
                    Some(a) => {
                        // Byte by byte in pieces, so that every state meets a short read.
                        for piece in a.chunks(3) {
                            s.write_all(piece).unwrap();
                            s.flush().unwrap();
                        }
                    }
                    None => return,
                }
            }
        });
        (addr, t)
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
            .block_on(f)
    }

    async fn body(c: &mut Conn, f: &mut Framing) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(b) = c.next_body(f).await? {
            out.extend_from_slice(&b);
        }
        Ok(out)
    }

    #[test]
    fn answers_over_one_connection() {
        let (addr, t) = serve(vec![
            Some(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 11\r\nETag: \"e\"\r\n\r\nhello world".to_vec()),
            Some(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nx-t: 1\r\n\r\n".to_vec()),
            Some(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()),
            // The last answer is cut short: the server closes after it (the client is still
            // reading its body, so the server must not wait for another request first).
            Some(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort".to_vec()),
        ]);
        run(async move {
            let mut c = Conn::connect(addr).await.unwrap();
            for want in [&b"hello world"[..], b"hello world", b""] {
                c.send_head(b"GET / HTTP/1.1\r\n\r\n".to_vec(), None)
                    .await
                    .0
                    .unwrap();
                let mut h = c.read_head(false).await.unwrap();
                assert!(h.keep_alive);
                assert_eq!(body(&mut c, &mut h.framing).await.unwrap(), want);
                assert_eq!(h.framing, Framing::Done);
                assert!(c.reusable());
            }
            c.send_head(b"GET / HTTP/1.1\r\n\r\n".to_vec(), None)
                .await
                .0
                .unwrap();
            let mut h = c.read_head(false).await.unwrap();
            let e = body(&mut c, &mut h.framing).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
            assert_ne!(h.framing, Framing::Done);
            assert_eq!(c.requests, 4);
        });
        t.join().unwrap();
    }

    #[test]
    fn unasked_bytes_on_a_kept_alive_connection_are_never_an_answer() {
        // An answer longer than its Content-Length: the extra bytes, shaped as an answer,
        // arrive after the announced body was read. The next request must not take them.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut b = [0u8; 4096];
            let _ = s.read(&mut b).unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(50));
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL")
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(300));
        });
        run(async move {
            let mut c = Conn::connect(addr).await.unwrap();
            c.send_head(b"GET /a HTTP/1.1\r\n\r\n".to_vec(), None)
                .await
                .0
                .unwrap();
            let mut h = c.read_head(false).await.unwrap();
            assert_eq!(body(&mut c, &mut h.framing).await.unwrap(), b"hello");
            assert!(c.reusable()); // nothing extra had arrived yet
            monoio::time::sleep(std::time::Duration::from_millis(150)).await;
            let (r, _) = c.send_head(b"GET /b HTTP/1.1\r\n\r\n".to_vec(), None).await;
            assert_eq!(r.unwrap_err().kind(), io::ErrorKind::ConnectionAborted);
            assert_eq!(c.received_bytes, 0); // a GET is sent again on a new connection
        });
        t.join().unwrap();
    }

    #[test]
    fn closed_before_the_head_is_an_error_with_nothing_received() {
        let (addr, t) = serve(vec![None]);
        run(async move {
            let mut c = Conn::connect(addr).await.unwrap();
            c.send_head(b"GET / HTTP/1.1\r\n\r\n".to_vec(), None)
                .await
                .0
                .unwrap();
            assert!(c.read_head(false).await.is_err());
            assert_eq!(c.received_bytes, 0);
            assert!(c.closed_while_idle());
        });
        t.join().unwrap();
    }
}
