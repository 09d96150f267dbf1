//! Connection idle timeout: a connection that makes no progress in either direction for
//! `idle` is closed. It bounds keep-alive idleness, slowly trickled bodies (each gap between
//! received bytes), and clients that stop reading their response. (A request head has its own,
//! tighter bound: hyper's header read timeout.)

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use std::rc::Rc;

use monoio::io::poll_io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::conns::ConnSlot;

pin_project_lite::pin_project! {
    pub struct IdleIo<T> {
        #[pin]
        inner: T,
        idle: Duration,
        last_progress: Instant,
        sleep: Option<Pin<Box<monoio::time::Sleep>>>,
        // Told of progress too, so the core's table knows which connections are idle.
        slot: Rc<ConnSlot>,
    }
}

impl<T> IdleIo<T> {
    pub fn new(inner: T, idle: Duration, slot: Rc<ConnSlot>) -> Self {
        Self {
            inner,
            idle,
            last_progress: Instant::now(),
            sleep: None,
            slot,
        }
    }
}

/// On Pending: fail if idle too long, else make sure a timer will wake us at the deadline.
fn check_idle(
    last_progress: Instant,
    idle: Duration,
    sleep: &mut Option<Pin<Box<monoio::time::Sleep>>>,
    cx: &mut Context<'_>,
) -> Poll<io::Error> {
    let deadline = last_progress + idle;
    if Instant::now() >= deadline {
        return Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            "connection idle timeout",
        ));
    }
    let mono_deadline = monoio::time::Instant::from_std(deadline);
    let s = sleep.get_or_insert_with(|| Box::pin(monoio::time::sleep_until(mono_deadline)));
    if s.deadline() != mono_deadline {
        s.as_mut().reset(mono_deadline);
    }
    match s.as_mut().poll(cx) {
        Poll::Ready(()) => Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            "connection idle timeout",
        )),
        Poll::Pending => Poll::Pending,
    }
}

use std::future::Future;

impl<T: AsyncRead> AsyncRead for IdleIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        match this.inner.poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    crate::metrics::bytes_in(buf.filled().len() - before);
                    let now = Instant::now();
                    *this.last_progress = now;
                    this.slot.touched(now);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match check_idle(*this.last_progress, *this.idle, this.sleep, cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<T: AsyncWrite> AsyncWrite for IdleIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        match this.inner.poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    crate::metrics::bytes_out(n);
                    let now = Instant::now();
                    *this.last_progress = now;
                    this.slot.touched(now);
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match check_idle(*this.last_progress, *this.idle, this.sleep, cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        match this.inner.poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    crate::metrics::bytes_out(n);
                    let now = Instant::now();
                    *this.last_progress = now;
                    this.slot.touched(now);
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match check_idle(*this.last_progress, *this.idle, this.sleep, cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}
