//! One exchange with the upstream, as the gateway's handlers see it: the request
//! ([`UpRequest`], its body [`UpBody`], the [`Tee`] that copies a streamed body on its way) and
//! the answer ([`UpResponse`]: its head, and its body read by chunks or whole, from hyper's
//! connection or the lean one of `h1`, which goes back to the pool at the body's end).
//!
//! The client that sends them is `upstream`; the connections, `pool`.

use std::cell::RefCell;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskCx, Poll};

use anyhow::anyhow;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;

use super::h1;
use super::upstream::{UpError, Upstream};

/// Largest object body read into memory from the upstream without a Content-Length, bytes
/// (past it, a request that asked for it gets the rest as it arrives: `UpRequest::stream_unsized`).
pub const MAX_UNSIZED_BODY_BYTES: usize = 64 << 20;

/// Request bodies sent upstream: nothing, bytes in memory, or a stream (the client's body,
/// optionally copied as it passes into a buffer the caller keeps).
pub enum UpBody {
    Full(Option<Bytes>),
    Stream {
        inner: s3s::Body,
        tee: Option<std::rc::Rc<RefCell<Tee>>>,
    },
}

/// What a streamed body copied on its way upstream (up to `limit` bytes; past it the copy is
/// dropped and `overflow` set).
#[derive(Default)]
pub struct Tee {
    pub chunks: Vec<Bytes>,
    pub bytes: u64,
    pub limit: u64,
    pub overflow: bool,
}

impl Body for UpBody {
    type Data = Bytes;
    type Error = s3s::StdError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskCx<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            UpBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            UpBody::Stream { inner, tee } => {
                let r = Pin::new(inner).poll_frame(cx);
                if let (Poll::Ready(Some(Ok(f))), Some(t)) = (&r, tee.as_ref()) {
                    if let Some(d) = f.data_ref() {
                        let mut t = t.borrow_mut();
                        t.bytes += d.len() as u64;
                        if t.bytes > t.limit {
                            t.overflow = true;
                            t.chunks.clear();
                        } else if !t.overflow {
                            t.chunks.push(d.clone());
                        }
                    }
                }
                r
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpBody::Full(b) => b.is_none(),
            UpBody::Stream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            UpBody::Full(None) => SizeHint::with_exact(0),
            UpBody::Stream { inner, .. } => inner.size_hint(),
        }
    }
}

/// One request to the upstream. `headers` are sent and signed as given (lower-case names).
pub struct UpRequest<'a> {
    pub method: http::Method,
    pub bucket: Option<&'a str>,
    pub key: Option<&'a str>,
    /// Decoded query pairs.
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: UpBody,
    /// Exact body length for streamed bodies (Content-Length); in-memory bodies know theirs.
    pub content_length: Option<u64>,
    /// A GET whose 2xx answer has no Content-Length: past [`MAX_UNSIZED_BODY_BYTES`] the
    /// answer comes back without a `content-length` (the bytes read so far, then the rest as
    /// it arrives) instead of failing. Within it, the body is read into memory and its length
    /// set either way.
    pub stream_unsized: bool,
}

impl<'a> UpRequest<'a> {
    pub fn new(method: http::Method, bucket: Option<&'a str>, key: Option<&'a str>) -> Self {
        UpRequest {
            method,
            bucket,
            key,
            query: Vec::new(),
            headers: Vec::new(),
            body: UpBody::Full(None),
            content_length: None,
            stream_unsized: false,
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }
}

/// An answer whose head arrived; the body is read with [`UpResponse::collect`] or
/// [`UpResponse::next_chunk`]. Reading it to its end puts the connection back in the pool.
pub struct UpResponse {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub(super) body: RespBody,
    pub(super) up: Arc<Upstream>,
}

/// Where the rest of an answer's body comes from.
pub(super) enum RespBody {
    /// Read to its end (or cut: the connection is gone).
    Done,
    /// Read into memory already (an object's body sent without a length).
    Buffered(Option<Bytes>),
    /// The first bytes of a body without a length, read into memory already, then the rest.
    Prefixed {
        prefix: std::collections::VecDeque<Bytes>,
        rest: Box<RespBody>,
    },
    /// https: hyper's body and the connection's sender (pooled again at the end).
    Hyper {
        body: Incoming,
        sender: SendRequest<UpBody>,
        /// Time spent waiting for the body so far, and the bytes it brought: bounded in all
        /// as the lean client bounds it (`h1::MIN_BODY_BYTES_PER_S`).
        waited: std::time::Duration,
        got_bytes: u64,
    },
    /// http: the lean client's connection, pooled again at the end when it may be.
    Lean {
        conn: h1::Conn,
        framing: h1::Framing,
        keep_alive: bool,
    },
}

impl UpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The ETag without quotes.
    pub fn etag(&self) -> Option<String> {
        self.header("etag").map(|e| {
            e.trim()
                .trim_start_matches("W/")
                .trim_matches('"')
                .to_string()
        })
    }

    /// The next body chunk, within the timeout; `Ok(None)` at the end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, UpError> {
        let t = self.up.timeout;
        loop {
            match &mut self.body {
                RespBody::Done => return Ok(None),
                RespBody::Buffered(b) => match b.take() {
                    Some(d) if !d.is_empty() => return Ok(Some(d)),
                    _ => {
                        self.body = RespBody::Done;
                        return Ok(None);
                    }
                },
                RespBody::Prefixed { prefix, .. } => {
                    if let Some(d) = prefix.pop_front() {
                        return Ok(Some(d));
                    }
                    if let RespBody::Prefixed { rest, .. } =
                        std::mem::replace(&mut self.body, RespBody::Done)
                    {
                        self.body = *rest;
                    }
                }
                RespBody::Hyper {
                    body,
                    waited,
                    got_bytes,
                    ..
                } => {
                    let started = std::time::Instant::now();
                    let f = monoio::time::timeout(t, body.frame()).await;
                    *waited += started.elapsed();
                    let allowed =
                        t + std::time::Duration::from_secs(*got_bytes / h1::MIN_BODY_BYTES_PER_S);
                    if *waited > allowed {
                        // A dribbling upstream resets the per-read timer with every byte.
                        self.body = RespBody::Done;
                        return Err(UpError::Timeout(allowed));
                    }
                    let f = match f {
                        Err(_) => {
                            self.body = RespBody::Done;
                            return Err(UpError::Timeout(t));
                        }
                        Ok(None) => {
                            if let RespBody::Hyper { sender, .. } =
                                std::mem::replace(&mut self.body, RespBody::Done)
                            {
                                self.up.give_back(sender);
                            }
                            return Ok(None);
                        }
                        Ok(Some(Err(e))) => {
                            self.body = RespBody::Done;
                            return Err(UpError::Unreachable(
                                anyhow!(e).context("reading the body"),
                            ));
                        }
                        Ok(Some(Ok(f))) => f,
                    };
                    if let Ok(d) = f.into_data() {
                        if let RespBody::Hyper { got_bytes, .. } = &mut self.body {
                            *got_bytes += d.len() as u64;
                        }
                        if !d.is_empty() {
                            return Ok(Some(d));
                        }
                    }
                }
                RespBody::Lean { conn, framing, .. } => {
                    let c = match monoio::time::timeout(t, conn.next_body(framing)).await {
                        Err(_) => {
                            self.body = RespBody::Done;
                            return Err(UpError::Timeout(t));
                        }
                        Ok(Err(e)) => {
                            self.body = RespBody::Done;
                            return Err(UpError::Unreachable(
                                anyhow!(e).context("reading the body"),
                            ));
                        }
                        Ok(Ok(c)) => c,
                    };
                    if *framing == h1::Framing::Done {
                        // At its end: the connection goes back before the caller sees the
                        // last bytes, ready for the next request.
                        self.finish_lean();
                    }
                    match c {
                        None => return Ok(None),
                        Some(d) if d.is_empty() => {}
                        Some(d) => return Ok(Some(d)),
                    }
                }
            }
        }
    }

    /// The lean connection of an answer read to its end goes back to the pool (when the
    /// upstream keeps it open and nothing is left unread on it).
    pub(super) fn finish_lean(&mut self) {
        if let RespBody::Lean {
            conn, keep_alive, ..
        } = std::mem::replace(&mut self.body, RespBody::Done)
        {
            if keep_alive && conn.reusable() {
                self.up.give_back_lean(conn);
            }
        }
    }

    /// An object's body the upstream sent without a Content-Length (chunked, or to the end
    /// of the connection) is read into memory, at most [`MAX_UNSIZED_BODY_BYTES`], and its
    /// length set as the answer's `content-length`: the fill paths need one up front. A
    /// longer body is an error, or with `stream_over`, the answer stays without a
    /// `content-length`: the bytes read so far come first, then the rest as it arrives.
    pub(super) async fn buffer_unsized(&mut self, stream_over: bool) -> Result<(), UpError> {
        let mut read = std::collections::VecDeque::new();
        let mut n = 0usize;
        while let Some(c) = self.next_chunk().await? {
            n += c.len();
            read.push_back(c);
            if n > MAX_UNSIZED_BODY_BYTES {
                if !stream_over {
                    return Err(UpError::Unreachable(anyhow!(
                        "upstream answer without a length longer than {MAX_UNSIZED_BODY_BYTES} bytes"
                    )));
                }
                let rest = Box::new(std::mem::replace(&mut self.body, RespBody::Done));
                self.body = RespBody::Prefixed { prefix: read, rest };
                return Ok(());
            }
        }
        let body = if read.len() == 1 {
            read.pop_front().unwrap_or_default()
        } else {
            let mut out = bytes::BytesMut::with_capacity(n);
            for c in &read {
                out.extend_from_slice(c);
            }
            out.freeze()
        };
        self.headers.insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from(body.len()),
        );
        self.body = RespBody::Buffered(Some(body));
        Ok(())
    }

    /// The whole body (answers that are small: XML, errors), at most `limit` bytes.
    pub async fn collect(&mut self, limit: usize) -> Result<Bytes, UpError> {
        let mut out = bytes::BytesMut::new();
        while let Some(c) = self.next_chunk().await? {
            if out.len() + c.len() > limit {
                return Err(UpError::Unreachable(anyhow!(
                    "upstream answer longer than {limit} bytes"
                )));
            }
            out.extend_from_slice(&c);
        }
        Ok(out.freeze())
    }
}
