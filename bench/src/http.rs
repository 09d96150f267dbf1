//! A minimal blocking HTTP/1.1 keep-alive client over one TCP connection (TCP_NODELAY on),
//! signing each request with SigV4 unless told not to. No pipelining: one request in flight.
//! `https://` endpoints go through rustls (ring), trusting the CA given with --ca-cert.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::sign::{self, Signer};

#[derive(Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// Host header value (`127.0.0.1:9000`).
    pub host: String,
    /// For https: the client config and the name the certificate must carry.
    pub tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )>,
}

impl Endpoint {
    /// `http://host:port`, or `https://host:port` with `ca` (a PEM file) to trust.
    pub fn parse(url: &str, ca: Option<&std::path::Path>) -> Result<Self, String> {
        let (rest, https) = if let Some(r) = url.strip_prefix("http://") {
            (r, false)
        } else if let Some(r) = url.strip_prefix("https://") {
            (r, true)
        } else {
            return Err(format!(
                "endpoint must be http://host:port or https://host:port, got {url:?}"
            ));
        };
        let host = rest.trim_end_matches('/').to_string();
        if host.contains('/') {
            return Err(format!("endpoint must not have a path: {url:?}"));
        }
        let with_port = if host.contains(':') {
            host.clone()
        } else if https {
            format!("{host}:443")
        } else {
            format!("{host}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| format!("resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("resolve {host}: no address"))?;
        let tls = if https {
            let ca = ca.ok_or("an https:// endpoint needs --ca-cert (the PEM CA to trust)")?;
            Some(tls_config(ca, &host)?)
        } else {
            None
        };
        Ok(Endpoint { addr, host, tls })
    }
}

fn tls_config(
    ca: &std::path::Path,
    host: &str,
) -> Result<
    (
        Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    ),
    String,
> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca)
        .map_err(|e| format!("read --ca-cert {}: {e:?}", ca.display()))?
    {
        let c = c.map_err(|e| format!("parse --ca-cert {}: {e:?}", ca.display()))?;
        roots
            .add(c)
            .map_err(|e| format!("--ca-cert {}: {e}", ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("rustls: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name_only = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let name = rustls::pki_types::ServerName::try_from(name_only.to_string())
        .map_err(|e| format!("server name {name_only:?}: {e}"))?;
    Ok((Arc::new(cfg), name))
}

/// One connection: plain TCP or TLS over it.
enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Conn {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(b),
            Conn::Tls(s) => s.read(b),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(b),
            Conn::Tls(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

#[derive(Clone)]
pub struct Creds {
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
}

pub struct Req<'a> {
    pub method: &'a str,
    /// Unencoded path, `/bucket/key`.
    pub path: &'a str,
    /// Unencoded query pairs.
    pub query: &'a [(&'a str, &'a str)],
    /// Inclusive byte range.
    pub range: Option<(u64, u64)>,
    pub body: Option<&'a [u8]>,
    /// Further headers, sent and signed (lower-case names, e.g. `if-none-match`).
    pub headers: &'a [(&'a str, &'a str)],
}

impl<'a> Req<'a> {
    pub fn new(method: &'a str, path: &'a str) -> Self {
        Req {
            method,
            path,
            query: &[],
            range: None,
            body: None,
            headers: &[],
        }
    }
}

#[derive(Debug, Default)]
pub struct Resp {
    pub status: u16,
    pub content_length: Option<u64>,
    pub content_range: Option<String>,
    /// Body bytes received.
    pub body_len: u64,
}

pub struct Client {
    ep: Endpoint,
    signer: Option<Signer>,
    stream: Option<Conn>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    head: Vec<u8>,
    /// New connections made (the first included).
    pub connects: u64,
}

const BUF: usize = 256 << 10;

impl Client {
    pub fn new(ep: &Endpoint, creds: Option<&Creds>) -> Self {
        Client {
            ep: ep.clone(),
            signer: creds.map(|c| Signer::new(&c.access_key, &c.secret_key, &c.region)),
            stream: None,
            buf: vec![0; BUF],
            start: 0,
            end: 0,
            head: Vec::with_capacity(1024),
            connects: 0,
        }
    }

    pub fn connect(&mut self) -> Result<(), String> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.ep.addr)
                .map_err(|e| format!("connect {}: {e}", self.ep.addr))?;
            s.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
            s.set_read_timeout(Some(Duration::from_secs(120))).ok();
            s.set_write_timeout(Some(Duration::from_secs(120))).ok();
            self.stream = Some(match &self.ep.tls {
                None => Conn::Plain(s),
                Some((cfg, name)) => {
                    let c = rustls::ClientConnection::new(cfg.clone(), name.clone())
                        .map_err(|e| format!("tls: {e}"))?;
                    Conn::Tls(Box::new(rustls::StreamOwned::new(c, s)))
                }
            });
            self.start = 0;
            self.end = 0;
            self.connects += 1;
        }
        Ok(())
    }

    /// Send one request; the response body goes to `sink` in pieces. A reused connection that
    /// fails before any response byte arrived (the server closed an idle keep-alive) is
    /// reconnected and the request sent once more; any other failure is an error.
    pub fn send(&mut self, req: &Req, sink: &mut dyn FnMut(&[u8])) -> Result<Resp, String> {
        let reused = self.stream.is_some();
        match self.send_once(req, sink) {
            Err((e, got_bytes)) => {
                self.stream = None;
                if reused && !got_bytes {
                    self.send_once(req, sink).map_err(|(e, _)| {
                        self.stream = None;
                        e
                    })
                } else {
                    Err(e)
                }
            }
            Ok(r) => Ok(r),
        }
    }

    fn build_head(&mut self, req: &Req) {
        let path = sign::uri_encode(req.path, false);
        let query = sign::canonical_query(req.query);
        let h = &mut self.head;
        h.clear();
        h.extend_from_slice(req.method.as_bytes());
        h.push(b' ');
        h.extend_from_slice(path.as_bytes());
        if !query.is_empty() {
            h.push(b'?');
            h.extend_from_slice(query.as_bytes());
        }
        h.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        h.extend_from_slice(self.ep.host.as_bytes());
        h.extend_from_slice(b"\r\n");
        if let Some((a, b)) = req.range {
            h.extend_from_slice(format!("range: bytes={a}-{b}\r\n").as_bytes());
        }
        for (k, v) in req.headers {
            h.extend_from_slice(k.as_bytes());
            h.extend_from_slice(b": ");
            h.extend_from_slice(v.as_bytes());
            h.extend_from_slice(b"\r\n");
        }
        if let Some(body) = req.body {
            h.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
        } else if req.method == "PUT" || req.method == "POST" {
            h.extend_from_slice(b"content-length: 0\r\n");
        }
        if let Some(s) = self.signer.as_mut() {
            let unix = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let payload = if req.body.is_some() {
                sign::UNSIGNED
            } else {
                sign::EMPTY_SHA256
            };
            for (k, v) in s.sign(
                req.method,
                &self.ep.host,
                &path,
                &query,
                payload,
                unix,
                req.headers,
            ) {
                h.extend_from_slice(k.as_bytes());
                h.extend_from_slice(b": ");
                h.extend_from_slice(v.as_bytes());
                h.extend_from_slice(b"\r\n");
            }
        }
        h.extend_from_slice(b"\r\n");
    }

    fn send_once(
        &mut self,
        req: &Req,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<Resp, (String, bool)> {
        self.connect().map_err(|e| (e, true))?;
        self.build_head(req);
        {
            let s = self.stream.as_mut().unwrap();
            let w = match req.body {
                Some(b) if b.len() <= 64 << 10 => {
                    self.head.extend_from_slice(b);
                    s.write_all(&self.head)
                }
                Some(b) => s.write_all(&self.head).and_then(|_| s.write_all(b)),
                None => s.write_all(&self.head),
            };
            w.map_err(|e| (format!("write: {e}"), false))?;
        }
        // response head
        let head_end = loop {
            if let Some(p) = find(&self.buf[self.start..self.end], b"\r\n\r\n") {
                break self.start + p + 4;
            }
            let got_any = self.end > self.start;
            if self.fill().map_err(|e| (e, got_any))? == 0 {
                return Err((
                    if got_any {
                        "connection closed in response head".into()
                    } else {
                        "connection closed".into()
                    },
                    got_any,
                ));
            }
        };
        let mut resp = Resp::default();
        let mut chunked = false;
        let mut close = false;
        {
            let text = std::str::from_utf8(&self.buf[self.start..head_end - 4])
                .map_err(|_| ("non-UTF-8 response head".to_string(), true))?;
            let mut lines = text.split("\r\n");
            let status = lines.next().unwrap_or("");
            let mut parts = status.splitn(3, ' ');
            let ver = parts.next().unwrap_or("");
            resp.status = parts
                .next()
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| (format!("bad status line {status:?}"), true))?;
            if ver == "HTTP/1.0" {
                close = true;
            }
            for l in lines {
                let Some((k, v)) = l.split_once(':') else {
                    continue;
                };
                let v = v.trim();
                if k.eq_ignore_ascii_case("content-length") {
                    resp.content_length = v.parse().ok();
                } else if k.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = v.to_ascii_lowercase().contains("chunked");
                } else if k.eq_ignore_ascii_case("connection") {
                    close = v.eq_ignore_ascii_case("close");
                } else if k.eq_ignore_ascii_case("content-range") {
                    resp.content_range = Some(v.to_string());
                }
            }
        }
        self.start = head_end;
        let no_body =
            req.method == "HEAD" || resp.status == 204 || resp.status == 304 || resp.status < 200;
        if no_body {
        } else if chunked {
            self.read_chunked(&mut resp, sink).map_err(|e| (e, true))?;
        } else if let Some(n) = resp.content_length {
            self.read_exact_body(n, &mut resp, sink)
                .map_err(|e| (e, true))?;
        } else {
            // until EOF
            loop {
                if self.start < self.end {
                    sink(&self.buf[self.start..self.end]);
                    resp.body_len += (self.end - self.start) as u64;
                    self.start = self.end;
                }
                if self.fill().map_err(|e| (e, true))? == 0 {
                    break;
                }
            }
            close = true;
        }
        if close {
            self.stream = None;
        }
        Ok(resp)
    }

    /// Read more bytes into the buffer; returns how many (0 = EOF).
    fn fill(&mut self) -> Result<usize, String> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let n = self.buf.len();
                self.buf.resize(n * 2, 0);
            }
        }
        let s = self.stream.as_mut().ok_or("not connected")?;
        loop {
            match s.read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    fn read_exact_body(
        &mut self,
        mut n: u64,
        resp: &mut Resp,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<(), String> {
        while n > 0 {
            if self.start == self.end && self.fill()? == 0 {
                return Err(format!("connection closed with {n} body bytes missing"));
            }
            let take = ((self.end - self.start) as u64).min(n) as usize;
            sink(&self.buf[self.start..self.start + take]);
            self.start += take;
            n -= take as u64;
            resp.body_len += take as u64;
        }
        Ok(())
    }

    fn read_line(&mut self) -> Result<String, String> {
        loop {
            if let Some(p) = find(&self.buf[self.start..self.end], b"\r\n") {
                let l = String::from_utf8_lossy(&self.buf[self.start..self.start + p]).into_owned();
                self.start += p + 2;
                return Ok(l);
            }
            if self.fill()? == 0 {
                return Err("connection closed in chunked body".into());
            }
        }
    }

    fn read_chunked(&mut self, resp: &mut Resp, sink: &mut dyn FnMut(&[u8])) -> Result<(), String> {
        loop {
            let line = self.read_line()?;
            let size_s = line.split(';').next().unwrap_or("").trim();
            let size =
                u64::from_str_radix(size_s, 16).map_err(|_| format!("bad chunk size {line:?}"))?;
            if size == 0 {
                // trailers until empty line
                while !self.read_line()?.is_empty() {}
                return Ok(());
            }
            self.read_exact_body(size, resp, sink)?;
            if !self.read_line()?.is_empty() {
                return Err("missing CRLF after chunk".into());
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
