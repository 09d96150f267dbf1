//! Writing an answer with the ring's own send (no readiness poll): the head and a whole body in
//! one gathered write (`writev`: the body is not copied behind the head; only a body up to
//! `COPY_BODY_MAX_BYTES`, an error's XML, is), a streamed body frame by frame. Each send that makes no progress for the idle
//! timeout ends the connection (hyper's side has `IdleIo` for the same).

use std::future::Future;
use std::io;
use std::io::Write as _;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use monoio::buf::{IoBuf, IoVecBuf};
use monoio::io::AsyncWriteRent;
use monoio::net::TcpStream;

use super::pool::give_map;
use super::wire::{date_now, encode_head, BodyLen};
use super::{Timer, COPY_BODY_MAX_BYTES};
use crate::conns::ConnSlot;

/// A connection's iovec pair for gathered writes (see [`Link::iov`]).
pub(super) type Iov = Option<Box<[libc::iovec; 2]>>;

/// Writes the response; `Ok(false)` when the connection must close after it. The connection's
/// reusable timer and iovec pair come as one argument.
pub(super) async fn response(
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    mut resp: http::Response<s3s::Body>,
    is_head: bool,
    (timer, iov): (&mut Timer, &mut Iov),
    idle: Duration,
    conn: &ConnSlot,
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
    let mut link = Link {
        stream,
        timer,
        idle,
        conn,
        iov,
    };
    match whole {
        Some(b) if b.len() <= COPY_BODY_MAX_BYTES => {
            out.extend_from_slice(&b);
            link.send_vec(out).await?;
        }
        Some(b) => link.send_gathered(out, b).await?,
        None => {
            link.send_vec(out).await?;
            if f.send_body && body_len != BodyLen::None {
                link.stream_body(out, &mut body, f.chunked).await?;
            }
        }
    }
    Ok(!f.close)
}

/// The connection's sending side: its stream, its timer, its idle bound and its slot (told of
/// progress, so the core's table knows the connection is alive).
struct Link<'a> {
    stream: &'a mut TcpStream,
    timer: &'a mut Timer,
    idle: Duration,
    conn: &'a ConnSlot,
    /// The gathered write's iovec pair (the ring reads it while the write is in flight, so
    /// it lives on the heap: allocated once per connection, on its first gathered write).
    iov: &'a mut Iov,
}

/// A head and a body written together: two iovecs, nothing copied.
struct Gather {
    head: Vec<u8>,
    body: Bytes,
    iov: Box<[libc::iovec; 2]>,
}

// SAFETY: `iov` is on the heap and points into `head`'s and `body`'s heap bytes, none of which
// move or change while the ring owns the value (it is only moved, never touched, until the
// write completes).
unsafe impl IoVecBuf for Gather {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        self.iov.as_ptr()
    }
    fn read_iovec_len(&self) -> usize {
        2
    }
}

impl Link<'_> {
    /// Sends all of `buf`'s bytes and gives the buffer back; on an error (or a send cancelled
    /// by the idle timeout, which takes the buffer along) `buf` is left empty.
    async fn send_vec(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        let (r, back) = self.send_all(std::mem::take(buf)).await;
        if let Some(b) = back {
            *buf = b;
        }
        r
    }

    /// `head` then `body` in one `writev`; what a short write leaves is sent piece by piece.
    async fn send_gathered(&mut self, head: &mut Vec<u8>, body: Bytes) -> io::Result<()> {
        let mut iov = self.iov.take().unwrap_or_else(|| {
            Box::new(
                [libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                }; 2],
            )
        });
        let h = std::mem::take(head);
        iov[0] = libc::iovec {
            iov_base: h.as_ptr() as *mut libc::c_void,
            iov_len: h.len(),
        };
        iov[1] = libc::iovec {
            iov_base: body.as_ptr() as *mut libc::c_void,
            iov_len: body.len(),
        };
        let total = h.len() + body.len();
        let g = Gather { head: h, body, iov };
        let deadline = Instant::now() + self.idle;
        let done = {
            let mut write = std::pin::pin!(self.stream.writev(g));
            let mut sleep = self.timer.at(deadline);
            std::future::poll_fn(|cx| {
                if let Poll::Ready(r) = write.as_mut().poll(cx) {
                    return Poll::Ready(Some(r));
                }
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                Poll::Pending
            })
            .await
        };
        let Some((r, g)) = done else {
            return Err(idle_timeout());
        };
        let Gather { head: h, body, iov } = g;
        *self.iov = Some(iov);
        *head = h;
        let n = r?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        crate::metrics::bytes_out(n);
        self.conn.touched(Instant::now());
        if n == total {
            return Ok(());
        }
        // A short write (a full socket buffer): the rest, piece by piece.
        let hl = head.len();
        if n < hl {
            head.drain(..n);
            self.send_vec(head).await?;
            self.send(body).await
        } else {
            self.send(body.slice(n - hl..)).await
        }
    }

    async fn send<B: IoBuf>(&mut self, buf: B) -> io::Result<()> {
        self.send_all(buf).await.0
    }

    /// One send per step until every byte is written; each step must make progress within the
    /// idle timeout.
    async fn send_all<B: IoBuf>(&mut self, mut buf: B) -> (io::Result<()>, Option<B>) {
        let len = buf.bytes_init();
        let mut pos = 0;
        while pos < len {
            let deadline = Instant::now() + self.idle;
            let mut write = std::pin::pin!(self.stream.write(buf.slice(pos..len)));
            let mut sleep = self.timer.at(deadline);
            let done = std::future::poll_fn(|cx| {
                if let Poll::Ready(r) = write.as_mut().poll(cx) {
                    return Poll::Ready(Some(r));
                }
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                Poll::Pending
            })
            .await;
            let Some((r, slice)) = done else {
                return (Err(idle_timeout()), None);
            };
            buf = slice.into_inner();
            match r {
                Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), Some(buf)),
                Ok(n) => {
                    pos += n;
                    crate::metrics::bytes_out(n);
                    self.conn.touched(Instant::now());
                }
                Err(e) => return (Err(e), Some(buf)),
            }
        }
        (Ok(()), Some(buf))
    }

    /// Sends a streamed body frame by frame (chunked when hyper would chunk it).
    async fn stream_body(
        &mut self,
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
                        write!(scratch, "{:X}\r\n", data.len())?;
                        self.send_vec(scratch).await?;
                        self.send(data).await?;
                        self.send(&b"\r\n"[..]).await?;
                    } else {
                        self.send(data).await?;
                    }
                }
            }
        }
        if chunked {
            self.send(&b"0\r\n\r\n"[..]).await?;
        }
        Ok(())
    }
}

fn idle_timeout() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "connection idle timeout (response not read)",
    )
}
