//! The upstream's connections: the per-core pools of kept-alive ones (hyper's senders for
//! https, lean `h1` connections for plain http), opening new ones (TCP, TLS over rustls, the
//! hyper handshake) and the TLS client configuration.
//!
//! The client that uses them is `upstream`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use hyper::client::conn::http1::SendRequest;
use monoio::io::IntoPollIo;
use monoio_compat::hyper::MonoioIo;

use super::exchange::UpBody;
use super::h1;
use super::upstream::{UpError, Upstream};

/// Largest answer head accepted from the upstream, bytes.
const MAX_HEAD_BYTES: usize = h1::MAX_HEAD_BYTES;
/// Idle connections kept per core.
const POOL_PER_CORE: usize = 32;

thread_local! {
    /// Idle connections of this core (https).
    static POOL: RefCell<HashMap<usize, Vec<SendRequest<UpBody>>>> = RefCell::new(HashMap::new());
    /// Idle lean connections of this core (http).
    static LEAN_POOL: RefCell<HashMap<usize, Vec<h1::Conn>>> = RefCell::new(HashMap::new());
}

pub(super) fn tls_config(ca: Option<&std::path::Path>) -> anyhow::Result<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let path = ca
        .map(|p| p.to_path_buf())
        .unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into());
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&path)
        .with_context(|| format!("cannot read CA certificates from {}", path.display()))?;
    for c in certs {
        let c = c.with_context(|| format!("bad PEM in {}", path.display()))?;
        roots
            .add(c)
            .with_context(|| format!("bad CA certificate in {}", path.display()))?;
    }
    if roots.is_empty() {
        anyhow::bail!("no CA certificate in {}", path.display());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl Upstream {
    fn id(&self) -> usize {
        self as *const Upstream as usize
    }

    pub(super) fn give_back(&self, s: SendRequest<UpBody>) {
        if s.is_closed() {
            return;
        }
        POOL.with(|p| {
            let mut p = p.borrow_mut();
            let v = p.entry(self.id()).or_default();
            if v.len() < POOL_PER_CORE {
                v.push(s);
            }
        });
    }

    pub(super) fn give_back_lean(&self, c: h1::Conn) {
        LEAN_POOL.with(|p| {
            let mut p = p.borrow_mut();
            let v = p.entry(self.id()).or_default();
            if v.len() < POOL_PER_CORE {
                v.push(c);
            }
        });
    }

    /// The most recently used idle lean connection; `check`: only one the upstream did not
    /// close meanwhile (one non-blocking peek each).
    pub(super) fn pooled_lean(&self, check: bool) -> Option<h1::Conn> {
        LEAN_POOL.with(|p| {
            let mut p = p.borrow_mut();
            let v = p.get_mut(&self.id())?;
            while let Some(c) = v.pop() {
                if !check || !c.closed_while_idle() {
                    return Some(c);
                }
            }
            None
        })
    }

    pub(super) fn pooled(&self) -> Option<SendRequest<UpBody>> {
        POOL.with(|p| {
            let mut p = p.borrow_mut();
            let v = p.get_mut(&self.id())?;
            while let Some(s) = v.pop() {
                if !s.is_closed() {
                    return Some(s);
                }
            }
            None
        })
    }

    pub(super) async fn connect(&self) -> anyhow::Result<SendRequest<UpBody>> {
        let stream = monoio::net::TcpStream::connect_addr(self.endpoint.addr)
            .await
            .with_context(|| format!("connect {}", self.endpoint.addr))?;
        let _ = stream.set_nodelay(true);
        let io = stream.into_poll_io().context("poll io")?;
        let builder = {
            let mut b = hyper::client::conn::http1::Builder::new();
            b.max_buf_size(MAX_HEAD_BYTES);
            b
        };
        let sender = match &self.tls {
            None => {
                let (s, conn) = builder
                    .handshake(MonoioIo::new(io))
                    .await
                    .context("HTTP handshake")?;
                monoio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "gateway: upstream connection ended");
                    }
                });
                s
            }
            Some(tls) => {
                let name = rustls_pki_types::ServerName::try_from(
                    self.endpoint
                        .host
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_string(),
                )
                .context("upstream host is no TLS server name")?;
                let t = tls.connect(name, io).await.context("TLS handshake")?;
                let (s, conn) = builder
                    .handshake(MonoioIo::new(t))
                    .await
                    .context("HTTP handshake")?;
                monoio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "gateway: upstream connection ended");
                    }
                });
                s
            }
        };
        Ok(sender)
    }

    pub(super) async fn connect_lean(&self) -> Result<h1::Conn, UpError> {
        h1::Conn::connect(self.endpoint.addr)
            .await
            .with_context(|| format!("connect {}", self.endpoint.addr))
            .map_err(UpError::Unreachable)
    }
}
