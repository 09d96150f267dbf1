//! The web console (`--console-listen`, off by default): one page, served from the binary, that
//! signs in with an S3 key and lists, uploads, downloads and deletes objects, and draws the
//! GET/PUT rate and latency from `/metrics`.
//!
//! It runs on its own thread with its own small monoio runtime, so the S3 port's cores and
//! their request path are the same with the console on or off. The browser signs every S3
//! request itself (SigV4, in `sigv4.js`); this listener only serves the page's files and
//! forwards signed requests under `/api/s3/` to the S3 port (see `proxy.rs`), where they are
//! checked like any other client's. The secret key never reaches the console listener except
//! as a signature. Decisions and limits: docs/adr/0014-console.md.

mod assets;
mod proxy;

use std::cell::RefCell;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use futures::channel::oneshot;
use futures::FutureExt;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use monoio::io::IntoPollIo;
use monoio::net::TcpStream;
use monoio_compat::hyper::{MonoioIo, MonoioTimer};

use crate::conns::{Admit, ConnSlot, ConnTable};

/// Connections the console holds at once (a browser opens six per origin). At the limit the
/// oldest connection that never sent a request head is evicted first (`ConnTable`'s rule).
pub const MAX_CONSOLE_CONNECTIONS: usize = 64;
/// Largest request head the console reads, bytes (a signed S3 request's head is under 2 KiB).
/// Larger is answered 431 by hyper.
pub const MAX_CONSOLE_HEADER_BYTES: usize = 16 * 1024;
/// Time a client has to send a request head before its connection is closed.
pub const CONSOLE_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// io_uring submission queue entries of the console's runtime (it serves a few browsers).
const CONSOLE_RING_ENTRIES: u32 = 256;
/// Id under which the console's connection table logs refusals (the cores use 0..cores).
const CONSOLE_TABLE_ID: usize = usize::MAX;

/// What the console needs from `bale serve`.
pub struct ConsoleConfig {
    /// Where the console listens.
    pub listen: SocketAddr,
    /// The S3 port (`--listen`); an unspecified address (0.0.0.0, ::) is reached on loopback.
    pub s3_listen: SocketAddr,
    /// The region the page signs for (`--region`).
    pub region: String,
    /// A connection that moves no bytes for this long is closed (`--idle-timeout-s`).
    pub idle_timeout: Duration,
}

/// The running console; dropping it stops the console thread.
pub struct Console {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Console {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("the console thread panicked");
            }
        }
    }
}

/// The address the console forwards S3 requests to.
fn upstream_of(s3_listen: SocketAddr) -> SocketAddr {
    let ip = match s3_listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, s3_listen.port())
}

/// Two listen addresses that would take the same port on some interface.
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Binds the console's listener (failing clearly if it cannot) and starts its thread.
pub fn start(cfg: ConsoleConfig) -> anyhow::Result<Console> {
    if overlaps(cfg.listen, cfg.s3_listen) {
        bail!(
            "--console-listen {} overlaps the S3 address --listen {}: give the console its own port (e.g. 127.0.0.1:9001)",
            cfg.listen,
            cfg.s3_listen
        );
    }
    crate::runtime::probe_listen(cfg.listen).context("cannot start the console")?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("bale-console".into())
        .spawn(move || run(cfg, ready_tx, stop_rx))
        .context("cannot start the console thread")?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(Console {
            stop: Some(stop_tx),
            thread: Some(thread),
        }),
        Ok(Err(e)) => {
            let _ = thread.join();
            bail!(e)
        }
        Err(_) => {
            let _ = thread.join();
            bail!("the console thread exited during start")
        }
    }
}

fn run(
    cfg: ConsoleConfig,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
    stop: oneshot::Receiver<()>,
) {
    let rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .with_entries(CONSOLE_RING_ENTRIES)
        .enable_timer()
        .build();
    match rt {
        Ok(mut rt) => rt.block_on(serve(cfg, ready, stop)),
        Err(e) => {
            let _ = ready.send(Err(format!(
                "cannot start the console's io_uring runtime: {e}"
            )));
        }
    }
}

/// Shared by every connection of the console.
struct Ctx {
    assets: assets::Assets,
    upstream: SocketAddr,
    idle_timeout: Duration,
}

async fn serve(
    cfg: ConsoleConfig,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
    stop: oneshot::Receiver<()>,
) {
    let opts = monoio::net::ListenerOpts::new()
        .reuse_port(false)
        .reuse_addr(true)
        .backlog(128);
    let listener = match monoio::net::TcpListener::bind_with_config(cfg.listen, &opts) {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err(format!(
                "cannot listen on {} (--console-listen): {e}",
                cfg.listen
            )));
            return;
        }
    };
    let ctx = Rc::new(Ctx {
        assets: assets::Assets::new(&cfg.region),
        upstream: upstream_of(cfg.s3_listen),
        idle_timeout: cfg.idle_timeout,
    });
    let _ = ready.send(Ok(()));
    tracing::info!(listen = %cfg.listen, upstream = %ctx.upstream, "console is serving");

    let table = Rc::new(RefCell::new(ConnTable::new(MAX_CONSOLE_CONNECTIONS)));
    let mut stop = stop.fuse();
    loop {
        let accepted = {
            let mut acc = std::pin::pin!(listener.accept().fuse());
            futures::select_biased! {
                _ = stop => None,
                r = acc => Some(r),
            }
        };
        let Some(r) = accepted else { break };
        match r {
            Ok((stream, _peer)) => {
                let admitted = table.borrow_mut().admit(CONSOLE_TABLE_ID);
                let slot = match admitted {
                    Admit::Admitted(s) | Admit::Evicted(s) => s,
                    Admit::Refused => continue, // dropping the stream closes it
                };
                let fut = serve_conn(stream, ctx.clone(), table.clone(), slot);
                monoio::spawn(async move {
                    if std::panic::AssertUnwindSafe(fut)
                        .catch_unwind()
                        .await
                        .is_err()
                    {
                        tracing::error!("panic in a console connection; connection dropped");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "console accept failed");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    tracing::info!("console stopped");
}

/// A console answer: a page file or an error (`Full`), or an S3 answer streamed through.
pub(crate) type ConsoleBody = Either<Full<Bytes>, Incoming>;

/// Serves one browser connection until it closes, idles out or is evicted.
async fn serve_conn(
    stream: TcpStream,
    ctx: Rc<Ctx>,
    table: Rc<RefCell<ConnTable>>,
    slot: Rc<ConnSlot>,
) {
    struct Guard(Rc<RefCell<ConnTable>>, Rc<ConnSlot>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.borrow_mut().release(&self.1);
        }
    }
    let _g = Guard(table, slot.clone());
    let _ = stream.set_nodelay(true);
    let io = match stream.into_poll_io() {
        Ok(io) => MonoioIo::new(crate::idle::IdleIo::new(io, ctx.idle_timeout, slot.clone())),
        Err(e) => {
            tracing::debug!(error = %e, "console: cannot switch stream to poll io");
            return;
        }
    };
    let conn_slot = slot.clone();
    let service = hyper::service::service_fn(move |req| {
        let ctx = ctx.clone();
        let slot = conn_slot.clone();
        async move {
            slot.request_started();
            let resp = route(&ctx, req).await;
            slot.request_ended();
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = http1::Builder::new()
        .timer(MonoioTimer)
        .header_read_timeout(CONSOLE_HEADER_TIMEOUT)
        .max_buf_size(MAX_CONSOLE_HEADER_BYTES)
        .keep_alive(true)
        .serve_connection(io, service);
    let mut conn = std::pin::pin!(conn.fuse());
    let mut evicted = slot.evicted().fuse();
    futures::select_biased! {
        r = conn => if let Err(e) = r {
            tracing::debug!(error = %e, "console connection ended with an error");
        },
        _ = evicted => {} // dropping the connection closes the socket
    }
}

/// The console's whole surface: the page's files (GET/HEAD) and signed S3 requests under
/// `/api/s3/`. Everything else is refused and its connection closed.
async fn route(ctx: &Ctx, req: http::Request<Incoming>) -> http::Response<ConsoleBody> {
    if let Some(rest) = req.uri().path().strip_prefix(proxy::API_PREFIX) {
        if rest.starts_with('/') {
            return proxy::forward(ctx.upstream, req).await;
        }
    }
    ctx.assets.answer(&req)
}

/// A short answer from the console itself (an S3-style XML error, so the page shows it like
/// one from the S3 port). Refusals close the connection: the body is never read.
pub(crate) fn refusal(
    status: http::StatusCode,
    code: &str,
    message: &str,
) -> http::Response<ConsoleBody> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    let mut r = http::Response::new(Either::Left(Full::new(Bytes::from(body))));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    h.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    r
}

/// Text made safe for XML and HTML element content and attribute values.
pub(crate) fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_s3_port_is_reached_on_loopback_when_it_listens_everywhere() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(upstream_of(a("0.0.0.0:9000")), a("127.0.0.1:9000"));
        assert_eq!(upstream_of(a("[::]:9000")), a("[::1]:9000"));
        assert_eq!(upstream_of(a("10.1.2.3:9000")), a("10.1.2.3:9000"));
    }

    #[test]
    fn the_console_needs_a_port_of_its_own() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(overlaps(a("127.0.0.1:9000"), a("127.0.0.1:9000")));
        assert!(overlaps(a("0.0.0.0:9000"), a("127.0.0.1:9000")));
        assert!(overlaps(a("127.0.0.1:9000"), a("[::]:9000")));
        assert!(!overlaps(a("127.0.0.1:9001"), a("127.0.0.1:9000")));
        assert!(!overlaps(a("127.0.0.2:9000"), a("127.0.0.1:9000")));
    }

    #[test]
    fn errors_are_escaped() {
        assert_eq!(xml_escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&#39;");
    }
}
