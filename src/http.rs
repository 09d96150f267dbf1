//! HTTP/1.1 connections: hyper on monoio, health endpoints, panic containment.

use std::cell::Cell;
use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::time::Duration;

use futures::FutureExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use monoio::io::IntoPollIo;
use monoio::net::TcpStream;
use monoio_compat::hyper::{MonoioIo, MonoioTimer};
use s3s::service::S3Service;

/// Largest request head (request line + headers) accepted, bytes. Larger gets 431.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

#[derive(Clone, Copy)]
pub struct ConnLimits {
    pub header_timeout: Duration,
}

fn is_health(path: &str) -> bool {
    matches!(path, "/health" | "/minio/health/live" | "/minio/health/ready" | "/minio/health/cluster")
}

fn plain(status: http::StatusCode, body: &'static str) -> http::Response<s3s::Body> {
    let mut r = http::Response::new(s3s::Body::from(bytes::Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}

fn internal_error_xml() -> http::Response<s3s::Body> {
    let mut r = plain(
        http::StatusCode::INTERNAL_SERVER_ERROR,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message></Error>",
    );
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/xml"));
    r
}

async fn handle(svc: S3Service, req: http::Request<Incoming>) -> Result<http::Response<s3s::Body>, Infallible> {
    if (req.method() == http::Method::GET || req.method() == http::Method::HEAD) && is_health(req.uri().path()) {
        return Ok(plain(http::StatusCode::OK, ""));
    }
    let req = req.map(s3s::Body::from);
    match AssertUnwindSafe(svc.call(req)).catch_unwind().await {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(e)) => {
            tracing::error!(error = ?e, "request failed inside s3s");
            Ok(internal_error_xml())
        }
        Err(_) => {
            tracing::error!("panic while serving a request; answered 500, connection kept");
            Ok(internal_error_xml())
        }
    }
}

/// Serves one connection to completion (or until shutdown asks it to finish).
pub async fn serve_conn(
    stream: TcpStream,
    svc: S3Service,
    limits: ConnLimits,
    shutdown: futures::future::Shared<futures::channel::oneshot::Receiver<()>>,
    active: Rc<Cell<usize>>,
) {
    struct Guard(Rc<Cell<usize>>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.set(self.0.get() - 1);
        }
    }
    let _g = Guard(active);
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "set_nodelay failed");
    }
    let io = match stream.into_poll_io() {
        Ok(io) => MonoioIo::new(io),
        Err(e) => {
            tracing::debug!(error = %e, "cannot switch stream to poll io");
            return;
        }
    };
    let service = hyper::service::service_fn(move |req| handle(svc.clone(), req));
    let conn = http1::Builder::new()
        .timer(MonoioTimer)
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEADER_BYTES)
        .keep_alive(true)
        .serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let finished = {
        let mut c = conn.as_mut().fuse();
        let mut sd = shutdown.fuse();
        futures::select_biased! {
            r = c => Some(r),
            _ = sd => None,
        }
    };
    let result = match finished {
        Some(r) => r,
        None => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
