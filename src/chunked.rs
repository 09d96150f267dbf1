//! aws-chunked framing guard.
//!
//! s3s decodes `aws-chunked` bodies and verifies each chunk's signature, but it buffers a whole
//! chunk before checking it and has no limit on a chunk's declared size: a client declaring a
//! 4 GiB chunk would make it buffer 4 GiB. This guard sits in front of s3s, scans the framing as
//! the bytes stream past (without copying or changing them) and fails the body as soon as a
//! chunk header declares more than `MAX_CHUNK_BYTES` or is malformed.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// Largest aws-chunked chunk accepted, bytes. SDKs send 64 KiB (minio-go, Rust SDK) to 8 MiB.
pub const MAX_CHUNK_BYTES: u64 = 16 << 20;
/// Longest chunk header line (`<hex size>;chunk-signature=<64 hex>\r\n`), bytes.
pub const MAX_CHUNK_HEADER_BYTES: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("aws-chunked chunk of {0} bytes exceeds the limit of {MAX_CHUNK_BYTES} bytes")]
    TooLarge(u64),
    #[error("malformed aws-chunked chunk header")]
    Malformed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Reading a chunk header line; holds the bytes seen so far.
    Header,
    /// Inside chunk data: bytes left, then the CRLF.
    Data(u64),
    /// Expecting the CRLF after chunk data: bytes of it left.
    DataEnd(u8),
    /// After the final zero-size chunk: trailers or nothing; not scanned.
    Done,
}

/// Incremental scanner over the aws-chunked framing.
#[derive(Debug)]
pub struct ChunkScanner {
    state: State,
    header: Vec<u8>,
}

impl Default for ChunkScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkScanner {
    pub fn new() -> Self {
        Self {
            state: State::Header,
            header: Vec::with_capacity(96),
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Feeds the next bytes of the body.
    pub fn feed(&mut self, mut buf: &[u8]) -> Result<(), ChunkError> {
        while !buf.is_empty() {
            match self.state {
                State::Done => return Ok(()),
                State::Data(left) => {
                    let n = (left.min(buf.len() as u64)) as usize;
                    buf = &buf[n..];
                    self.state = if left - n as u64 == 0 {
                        State::DataEnd(2)
                    } else {
                        State::Data(left - n as u64)
                    };
                }
                State::DataEnd(left) => {
                    let expect = if left == 2 { b'\r' } else { b'\n' };
                    if buf[0] != expect {
                        return Err(ChunkError::Malformed);
                    }
                    buf = &buf[1..];
                    self.state = if left == 1 {
                        State::Header
                    } else {
                        State::DataEnd(1)
                    };
                }
                State::Header => {
                    let nl = buf.iter().position(|b| *b == b'\n');
                    let take = nl.map(|p| p + 1).unwrap_or(buf.len());
                    if self.header.len() + take > MAX_CHUNK_HEADER_BYTES {
                        return Err(ChunkError::Malformed);
                    }
                    self.header.extend_from_slice(&buf[..take]);
                    buf = &buf[take..];
                    if nl.is_some() {
                        let size = parse_header(&self.header)?;
                        self.header.clear();
                        self.state = if size == 0 {
                            State::Done
                        } else {
                            State::Data(size)
                        };
                    }
                }
            }
        }
        Ok(())
    }
}

/// Parses `<hex>[;ext...]\r\n` and checks the size against the limit.
fn parse_header(line: &[u8]) -> Result<u64, ChunkError> {
    let line = line.strip_suffix(b"\r\n").ok_or(ChunkError::Malformed)?;
    let hex_end = line.iter().position(|b| *b == b';').unwrap_or(line.len());
    let hex = &line[..hex_end];
    if hex.is_empty() || hex.len() > 16 {
        return Err(ChunkError::Malformed);
    }
    let mut size: u64 = 0;
    for b in hex {
        let d = (*b as char).to_digit(16).ok_or(ChunkError::Malformed)? as u64;
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(d))
            .ok_or(ChunkError::TooLarge(u64::MAX))?;
    }
    if size > MAX_CHUNK_BYTES {
        return Err(ChunkError::TooLarge(size));
    }
    Ok(size)
}

pin_project_lite::pin_project! {
    /// An HTTP body that scans aws-chunked framing as it passes through.
    pub struct GuardedBody<B> {
        #[pin]
        inner: B,
        scanner: ChunkScanner,
        failed: bool,
    }
}

impl<B> GuardedBody<B> {
    pub fn new(inner: B) -> Self {
        Self {
            inner,
            scanner: ChunkScanner::new(),
            failed: false,
        }
    }
}

impl<B> Body for GuardedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<s3s::StdError>,
{
    type Data = Bytes;
    type Error = s3s::StdError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        if *this.failed {
            return Poll::Ready(None);
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if let Err(e) = this.scanner.feed(data) {
                        *this.failed = true;
                        tracing::info!(error = %e, "refusing aws-chunked body");
                        let s3e = match e {
                            ChunkError::TooLarge(_) => s3s::s3_error!(EntityTooLarge, "{e}"),
                            ChunkError::Malformed => s3s::s3_error!(IncompleteBody, "{e}"),
                        };
                        return Poll::Ready(Some(Err(Box::new(s3e))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) if !this.scanner.is_done() => {
                // The body ended without the final zero-length chunk: a cut-short upload.
                *this.failed = true;
                let e = s3s::s3_error!(
                    IncompleteBody,
                    "The aws-chunked body ended without its final chunk"
                );
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(chunks: &[usize]) -> Vec<u8> {
        let mut v = Vec::new();
        for &n in chunks {
            v.extend_from_slice(format!("{n:x};chunk-signature={}\r\n", "a".repeat(64)).as_bytes());
            v.extend(std::iter::repeat_n(b'x', n));
            v.extend_from_slice(b"\r\n");
        }
        v.extend_from_slice(format!("0;chunk-signature={}\r\n\r\n", "b".repeat(64)).as_bytes());
        v
    }

    #[test]
    fn accepts_valid_framing_in_any_split() {
        let body = framed(&[65536, 65536, 100]);
        for step in [1usize, 7, 4096, 65536, body.len()] {
            let mut s = ChunkScanner::new();
            for part in body.chunks(step) {
                s.feed(part).unwrap();
            }
            assert!(s.is_done(), "step {step}");
        }
    }

    #[test]
    fn refuses_oversized_chunk_before_its_data() {
        let mut s = ChunkScanner::new();
        let hdr = format!(
            "{:x};chunk-signature={}\r\n",
            MAX_CHUNK_BYTES + 1,
            "a".repeat(64)
        );
        assert_eq!(
            s.feed(hdr.as_bytes()),
            Err(ChunkError::TooLarge(MAX_CHUNK_BYTES + 1))
        );
        let mut s = ChunkScanner::new();
        assert!(s.feed(b"ffffffffffffffffff;x\r\n").is_err());
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            &b"zz\r\n"[..],
            b"\r\n",
            b"10\r\n0123456789abcdefXY",
            &[b'1'; 2000],
        ] {
            let mut s = ChunkScanner::new();
            assert!(s.feed(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
