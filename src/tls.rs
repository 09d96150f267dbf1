//! HTTPS: rustls (ring provider) over the same poll-mode TCP stream the plain path uses, with
//! the certificate reloaded on SIGHUP.
//!
//! The served `ServerConfig` lives in one process-wide slot with a generation counter. A
//! SIGHUP (its own signal-hook registration: other SIGHUP users coexist) makes a reloader
//! thread read the certificate and key again; a good pair replaces the slot and bumps the
//! generation, a bad one is logged once and the old pair keeps serving. Each core keeps its own
//! acceptor and compares the generation (one atomic load) when it accepts a TLS connection,
//! never per request. Connections already open keep the certificate they were accepted with.
//!
//! The handshake is bounded by `--header-timeout-s` and ends early on shutdown or eviction: a
//! client that connects and never finishes it holds its slot no longer than a client that
//! connects and never sends a request head. See docs/adr/0013-tls-and-doctor.md.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context};
use futures::FutureExt;
use monoio::net::TcpStream;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::Digest;
use tokio_rustls::TlsAcceptor;

use crate::conns::{ConnSlot, ConnTable};
use crate::http::{ConnLimits, Handlers};

/// Largest certificate or key file read, bytes (a PEM chain is a few KiB; anything near this
/// is the wrong file).
pub const MAX_PEM_FILE_BYTES: u64 = 1 << 20;

/// Where the certificate chain and its private key are read from (PEM files).
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The config every core serves new TLS connections with, and its generation.
static CURRENT: Mutex<Option<Arc<ServerConfig>>> = Mutex::new(None);
static GENERATION: AtomicU64 = AtomicU64::new(0);

fn read_pem(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot read the TLS {what} file {}", path.display()))?
        .len();
    if len > MAX_PEM_FILE_BYTES {
        anyhow::bail!(
            "the TLS {what} file {} is {len} bytes: more than {MAX_PEM_FILE_BYTES}; is it the right file?",
            path.display()
        );
    }
    std::fs::read(path)
        .with_context(|| format!("cannot read the TLS {what} file {}", path.display()))
}

/// SHA-256 of the leaf certificate, as `AB:CD:...` (what `openssl x509 -fingerprint -sha256`
/// prints), so an operator can tell which certificate is being served.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let d = sha2::Sha256::digest(cert.as_ref());
    let hex: Vec<String> = d.iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

/// Reads and checks a certificate chain and key; the key must match the leaf certificate.
/// Returns the config and the leaf's fingerprint.
pub fn load(files: &TlsFiles) -> anyhow::Result<(Arc<ServerConfig>, String)> {
    let cert_pem = read_pem(&files.cert, "certificate")?;
    let key_pem = read_pem(&files.key, "key")?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("{e:?}"))
        .with_context(|| {
            format!(
                "cannot parse the PEM certificates in {}",
                files.cert.display()
            )
        })?;
    let Some(leaf) = chain.first() else {
        anyhow::bail!(
            "no certificate (-----BEGIN CERTIFICATE-----) in {}",
            files.cert.display()
        );
    };
    let fp = fingerprint(leaf);
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| anyhow!("{e:?}"))
        .with_context(|| {
            format!(
                "no usable private key (PKCS#8, PKCS#1 or SEC1 PEM) in {}",
                files.key.display()
            )
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("rustls: no usable protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .with_context(|| {
            format!(
                "the key in {} does not fit the certificate in {}",
                files.key.display(),
                files.cert.display()
            )
        })?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(cfg), fp))
}

/// Makes `cfg` the config for new TLS connections on every core.
pub fn install(cfg: Arc<ServerConfig>) {
    *CURRENT.lock().expect("tls config lock poisoned") = Some(cfg);
    GENERATION.fetch_add(1, Ordering::Release);
}

/// Loads the files again; on success serves the new pair, else logs why and keeps the old.
pub fn reload(files: &TlsFiles) -> bool {
    match load(files) {
        Ok((cfg, fp)) => {
            install(cfg);
            tracing::info!(cert = %files.cert.display(), sha256 = %fp, "TLS certificate reloaded");
            true
        }
        Err(e) => {
            tracing::error!(
                error = format!("{e:#}"),
                "TLS certificate reload failed; still serving the previous certificate"
            );
            false
        }
    }
}

/// With a certificate and key given: loads and checks them (an error stops start-up), serves
/// them on every core and reloads them on each SIGHUP. Without: nothing.
pub fn start(cert: Option<&Path>, key: Option<&Path>) -> anyhow::Result<()> {
    let (Some(cert), Some(key)) = (cert, key) else {
        return Ok(());
    };
    let files = TlsFiles {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
    };
    let (cfg, fp) = load(&files)?;
    tracing::info!(cert = %cert.display(), sha256 = %fp, "TLS certificate loaded");
    install(cfg);
    spawn_reloader(files)
}

/// Starts the thread that reloads the certificate on each SIGHUP.
pub fn spawn_reloader(files: TlsFiles) -> anyhow::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])
        .context("cannot install the SIGHUP handler for TLS reload")?;
    std::thread::Builder::new()
        .name("bale-tls-reload".into())
        .spawn(move || {
            for _ in signals.forever() {
                reload(&files);
            }
        })
        .context("cannot start the TLS reload thread")?;
    Ok(())
}

/// One core's acceptor, refreshed when the process-wide generation moved.
pub struct CoreTls {
    generation: u64,
    acceptor: TlsAcceptor,
}

impl CoreTls {
    /// None when no config was installed.
    pub fn new() -> Option<Self> {
        let generation = GENERATION.load(Ordering::Acquire);
        let cfg = CURRENT.lock().expect("tls config lock poisoned").clone()?;
        Some(Self {
            generation,
            acceptor: TlsAcceptor::from(cfg),
        })
    }

    /// The acceptor for a connection accepted now (one atomic load when nothing changed).
    pub fn acceptor(&mut self) -> TlsAcceptor {
        let g = GENERATION.load(Ordering::Acquire);
        if g != self.generation {
            if let Some(cfg) = CURRENT.lock().expect("tls config lock poisoned").clone() {
                self.acceptor = TlsAcceptor::from(cfg);
            }
            self.generation = g;
        }
        self.acceptor.clone()
    }
}

/// Serves one TLS connection: the handshake (bounded by the header timeout, cut short by
/// shutdown or eviction), then HTTP exactly as on a plain connection.
pub async fn serve_tls_conn(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    handlers: Handlers,
    limits: ConnLimits,
    shutdown: futures::future::Shared<futures::channel::oneshot::Receiver<()>>,
    table: Rc<RefCell<ConnTable>>,
    slot: Rc<ConnSlot>,
) {
    let _g = crate::http::SlotGuard::new(table, slot.clone());
    let Some(io) = crate::http::prepare(stream, limits, &slot) else {
        return;
    };
    let handshake = monoio::time::timeout(limits.header_timeout, acceptor.accept(io));
    let tls = {
        let mut hs = std::pin::pin!(handshake.fuse());
        let mut sd = shutdown.clone().fuse();
        let mut ev = slot.evicted().fuse();
        futures::select_biased! {
            r = hs => r,
            _ = ev => return,
            _ = sd => return,
        }
    };
    let tls = match tls {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(
                timeout_s = limits.header_timeout.as_secs(),
                "TLS handshake timed out"
            );
            return;
        }
    };
    crate::http::serve_http(tls, handlers, limits, shutdown, slot).await;
}
