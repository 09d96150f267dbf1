//! The HTTP/1.1 front of a plain connection (docs/adr/0020-http-front.md, 0024): request heads
//! are read with the ring's own receive (no readiness poll, no failed read per request),
//! parsed in place with `httparse` ([`head`]), and while they are plain GET/HEAD requests the
//! fast path answers (`crate::fast::try_answer`); the answer is written by the ring's own send
//! ([`send`]), head and small body in one write, with the bytes hyper would have written for
//! it ([`wire`]). Small plain PUTs (one `Content-Length` up to 1 MiB, header SigV4, nothing
//! else to interpret) are read, verified and stored here too ([`put`], docs/adr/0030). The
//! first request the front does not take (another method, any other body,
//! `Connection`/`Expect`/`Upgrade`, HTTP/1.0, a target or a head it is not sure of, a request
//! the fast path declines) hands the connection to hyper (poll I/O) for the rest of its life,
//! the bytes already read replayed first ([`Replay`]): whatever is not the hot path is served
//! exactly as before.
//!
//! Limits kept on the front (ADR 9/10): the header read timeout runs from the moment a head is
//! awaited, as hyper's does (a slow or idle client is cut at the same deadline, without an
//! answer); a head that reaches `MAX_HEADER_BYTES` unfinished goes to hyper, which refuses it
//! as before (431); a response write that makes no progress for the idle timeout ends the
//! connection, as `IdleIo` does on hyper's side; in-flight slots, request ids, metrics,
//! request logging and panic containment are those of `crate::http`.

mod head;
mod pool;
mod put;
mod replay;
mod send;
mod wire;

use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Instant;

use futures::FutureExt;
use monoio::buf::IoBufMut;
use monoio::io::AsyncReadRent;
use monoio::net::TcpStream;

use crate::conns::ConnSlot;
use crate::http::{ConnLimits, Handlers, MAX_HEADER_BYTES};
pub use head::{MAX_HEADERS, MAX_TARGET_BYTES};
pub use put::MAX_FRONT_PUT_BYTES;
pub use replay::Replay;

/// Read buffer a connection starts with, bytes; it grows (up to `MAX_HEADER_BYTES`) only for
/// a head that does not fit.
pub const READ_BUF_BYTES: usize = 8 * 1024;
/// A body up to this size is copied behind the head and sent with it in one write, bytes; a
/// larger one is sent from its own buffer in the same `writev` (copying a cold 4 KiB body cost
/// more than a second iovec: docs/adr/0024).
pub const COPY_BODY_MAX_BYTES: usize = 512;

/// How the front left a connection.
pub enum Outcome {
    /// Closed (the client left, a timeout, shutdown, an I/O error).
    Closed,
    /// Hyper serves the rest; these bytes were read and not consumed (possibly none).
    HandOver(Vec<u8>),
}

/// The connection's one timer, re-armed for each wait (a head, a write's progress): no timer
/// is allocated per request.
struct Timer(Option<Pin<Box<monoio::time::Sleep>>>);

impl Timer {
    fn at(&mut self, deadline: Instant) -> Pin<&mut monoio::time::Sleep> {
        let at = monoio::time::Instant::from_std(deadline);
        match &mut self.0 {
            Some(s) => {
                if s.deadline() != at {
                    s.as_mut().reset(at);
                }
            }
            None => self.0 = Some(Box::pin(monoio::time::sleep_until(at))),
        }
        self.0.as_mut().expect("armed above").as_mut()
    }
}

/// Serves requests on a plain connection until one is not the front's (`HandOver`) or the
/// connection ends.
pub async fn serve(
    stream: &mut TcpStream,
    handlers: &Handlers,
    limits: ConnLimits,
    shutdown: &futures::future::Shared<futures::channel::oneshot::Receiver<()>>,
    conn: &Rc<ConnSlot>,
) -> Outcome {
    let Some(fp) = handlers.fast.as_ref() else {
        return Outcome::HandOver(Vec::new());
    };
    // rb[start..] is read and not yet consumed.
    let mut rb = pool::take_buf(READ_BUF_BYTES);
    let mut start = 0usize;
    let mut out = pool::take_buf(1024);
    let mut sd = shutdown.clone();
    let mut timer = Timer(None);
    let mut iov: send::Iov = None;
    let outcome = 'conn: loop {
        // A head is awaited from now: hyper's header read timeout starts here too.
        let deadline = Instant::now() + limits.header_timeout;
        loop {
            let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut hs);
            match req.parse(&rb[start..]) {
                Ok(httparse::Status::Complete(head_len)) => {
                    let (resp, is_head) = if let Some(head) = head::takeable(&req) {
                        let is_head = head.method == "HEAD";
                        let resp = match answer(fp, &head, limits.max_inflight, conn).await {
                            Some(r) => r,
                            None => break 'conn Stop::HandOver,
                        };
                        start += head_len;
                        if start == rb.len() {
                            rb.clear();
                            start = 0;
                        }
                        (resp, is_head)
                    } else {
                        // A small PUT (docs/adr/0030), decided from the head alone.
                        let Some(p) = head::takeable_put(&req).and_then(|h| put::prepare(fp, &h))
                        else {
                            break 'conn Stop::HandOver;
                        };
                        // At the limit: hyper's side answers 503 SlowDown as before.
                        let Some(slot) = crate::http::InflightGuard::try_new(limits.max_inflight)
                        else {
                            break 'conn Stop::HandOver;
                        };
                        start += head_len;
                        let resp = put_answer(
                            fp,
                            p,
                            stream,
                            (&mut rb, &mut start),
                            (&mut timer, limits.idle_timeout),
                            conn,
                        )
                        .await;
                        drop(slot);
                        match resp {
                            Some(r) => (r, false),
                            None => break 'conn Stop::Closed,
                        }
                    };
                    let sent = send::response(
                        stream,
                        &mut out,
                        resp,
                        is_head,
                        (&mut timer, &mut iov),
                        limits.idle_timeout,
                        conn,
                    )
                    .await;
                    match sent {
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
            if rb.len() - start >= MAX_HEADER_BYTES {
                break 'conn Stop::HandOver; // hyper answers 431
            }
            if start > 0 {
                rb.copy_within(start.., 0);
                rb.truncate(rb.len() - start);
                start = 0;
            }
            if rb.len() == rb.capacity() {
                let grown = (rb.capacity() * 2).clamp(READ_BUF_BYTES, MAX_HEADER_BYTES);
                rb.reserve_exact(grown - rb.len());
            }
            let end = rb.len();
            let limit = rb.capacity().min(MAX_HEADER_BYTES);
            let idle = end == 0;
            // The receive owns the buffer while it is in flight; a receive cancelled by a
            // timeout or shutdown takes it along (the connection closes then).
            let mut recv =
                std::pin::pin!(stream.read(std::mem::take(&mut rb).slice_mut(end..limit)));
            let mut sleep = timer.at(deadline);
            let read = std::future::poll_fn(|cx| {
                if let Poll::Ready((r, buf)) = recv.as_mut().poll(cx) {
                    return Poll::Ready(Read::Done(r, buf.into_inner()));
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
                Read::Done(r, buf) => {
                    rb = buf;
                    match r {
                        Ok(0) => break 'conn Stop::Closed,
                        Ok(n) => {
                            crate::metrics::bytes_in(n);
                            conn.touched(Instant::now());
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "connection ended");
                            break 'conn Stop::Closed;
                        }
                    }
                }
                Read::Shutdown => break 'conn Stop::Closed,
                Read::TimedOut => {
                    tracing::debug!("read header from client timeout");
                    break 'conn Stop::Closed;
                }
            }
        }
    };
    pool::give_buf(out);
    match outcome {
        Stop::Closed => {
            pool::give_buf(rb);
            Outcome::Closed
        }
        Stop::HandOver => {
            rb.drain(..start);
            Outcome::HandOver(rb)
        }
    }
}

enum Stop {
    Closed,
    HandOver,
}

enum Read {
    Done(io::Result<usize>, Vec<u8>),
    Shutdown,
    TimedOut,
}

/// The fast path's answer with everything `crate::http::handle` does around it (in-flight
/// slot, request id, metrics, log line, panic containment); `None` when it declines (hyper
/// then serves the request from the start).
async fn answer(
    fp: &std::sync::Arc<crate::fast::FastPath>,
    head: &head::RawHead<'_>,
    max_inflight: usize,
    conn: &Rc<ConnSlot>,
) -> Option<http::Response<s3s::Body>> {
    // At the limit: hyper's side answers 503 SlowDown as before.
    let slot = crate::http::InflightGuard::try_new(max_inflight)?;
    let op = if head.method == "HEAD" {
        crate::metrics::Op::HeadObject
    } else {
        crate::metrics::Op::GetObject
    };
    let scope = crate::http::RequestScope::start(conn, op);
    let served = crate::logging::with_request_id(
        Some(scope.id()),
        AssertUnwindSafe(crate::fast::try_answer(fp, head, pool::take_map())).catch_unwind(),
    )
    .await;
    drop(slot);
    let mut resp = match served {
        Ok(Some(r)) => r,
        Ok(None) => return None, // the scope ends uncounted
        Err(_) => {
            tracing::error!(
                "panic while serving a request (fast path); answered 500, connection kept"
            );
            crate::http::internal_error_xml()
        }
    };
    let logged = crate::logging::log_requests().then_some((head.method, head.path));
    scope.answered(&mut resp, logged);
    Some(resp)
}

/// A small PUT the front took (`put::prepare` passed): its body read, stored and answered with
/// everything `crate::http::handle` does around a request (request id, metrics, log line);
/// `None` when the connection failed while the body was read (it closes without an answer).
async fn put_answer(
    fp: &std::sync::Arc<crate::fast::FastPath>,
    p: put::PutReq,
    stream: &mut TcpStream,
    (rb, start): (&mut Vec<u8>, &mut usize),
    (timer, idle): (&mut Timer, std::time::Duration),
    conn: &Rc<ConnSlot>,
) -> Option<http::Response<s3s::Body>> {
    let scope = crate::http::RequestScope::start(conn, crate::metrics::Op::PutObject);
    let logged_path = p.logged_path().map(str::to_string);
    let body = put::read_body(stream, rb, start, p.len(), timer, idle, conn).await;
    let mut resp = match body {
        Ok(body) => {
            crate::logging::with_request_id(
                Some(scope.id()),
                put::answer(fp, p, body, pool::take_map()),
            )
            .await
        }
        Err(put::BodyEnd::Short) => put::incomplete_body(),
        Err(put::BodyEnd::Failed(e)) => {
            tracing::debug!(error = %e, "connection ended while reading a request body");
            return None;
        }
    };
    let logged = logged_path.as_deref().map(|path| ("PUT", path));
    scope.answered(&mut resp, logged);
    Some(resp)
}
