//! Raw HTTP/S3 requests fed through a real bale process over a socket.
//!
//! Starts `bale serve` (own data dir, free port), creates a bucket and a few objects, then sends
//! generated requests for a bounded time, from several client threads, in two shapes:
//! - signed: a well-formed, correctly signed (SigV4, UNSIGNED-PAYLOAD) S3 request built from
//!   fuzzed parts (method, key, query parameters and values, S3 headers such as Range,
//!   x-amz-copy-source, conditional and checksum headers, XML bodies for DeleteObjects and
//!   CompleteMultipartUpload with mutated bytes). The signature is valid, so these get past auth
//!   into s3s's parsers and bale's handlers.
//! - raw: the bytes of such a request (or of a corpus file) mutated at random, then the write
//!   side shut, so the HTTP parser, header handling and auth parsing see garbage.
//!
//! Findings (the run exits 1):
//! - bale exits or stops answering GET /health (checked every 200 requests and at the end);
//! - a signed request gets no response at all within 10 s (hang);
//! - a 5xx other than 501/503 whose shape is not one of the open findings F3/F4 of
//!   docs/RELIABILITY.md (bale should answer 500 only for internal faults); with --fail-on-5xx
//!   also those known shapes. Samples are kept under artifacts/http/ and printed;
//! - a line containing "panicked" in bale's log.
//!
//! Usage: fuzz-http [--seconds S] [--seed N] [--threads N] [--bale PATH] [--keep] [--fail-on-5xx]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

#[path = "../driver.rs"]
#[allow(dead_code)]
mod driver;
use driver::Rng;

const AK: &str = "fuzzaccess";
const SK: &str = "fuzzsecret/key+x";
const REGION: &str = "us-east-1";
const BUCKET: &str = "fuzz";

fn uri_encode(s: &str, slash: bool) -> String {
    let mut o = String::with_capacity(s.len());
    sigv4::push_uri_encoded(&mut o, s, slash);
    o
}

/// The system clock's time as `YYYYMMDDTHHMMSSZ`.
fn amz_date_now() -> sigv4::AmzDate {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    sigv4::AmzDate::from_unix(secs)
}

struct Req {
    method: String,
    path: String, // decoded, starts with '/'
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Serialises `r` with a valid SigV4 header signature over UNSIGNED-PAYLOAD.
fn signed_bytes(r: &Req, host: &str) -> Vec<u8> {
    let now = amz_date_now();
    let full = now.as_str();
    let mut headers: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    headers.push(("host".into(), host.into()));
    headers.push(("x-amz-date".into(), full.to_string()));
    headers.push(("x-amz-content-sha256".into(), sigv4::UNSIGNED_PAYLOAD.into()));
    headers.sort();
    headers.dedup_by(|a, b| a.0 == b.0);
    let mut cq = String::new();
    sigv4::push_canonical_query(&mut cq, &r.query);
    let cpath = uri_encode(&r.path, false);
    let sh = headers
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let mut creq = String::new();
    let mut c = sigv4::CanonicalRequest::new(&mut creq, &r.method);
    c.raw_uri(&cpath).raw_query(&cq);
    for (k, v) in &headers {
        c.header(k, [v.as_str()]);
    }
    c.finish(&sh, sigv4::UNSIGNED_PAYLOAD);
    let scope = sigv4::Scope::new(now.date(), REGION, "s3");
    let key = sigv4::signing_key(SK, scope.date, scope.region, scope.service);
    let sig = sigv4::sign_canonical_request(&key, full, &scope, &creq);
    let mut auth = String::new();
    sigv4::push_authorization(&mut auth, AK, &scope, &sh, sig.as_str());
    let mut out = format!(
        "{} {cpath}{}{cq} HTTP/1.1\r\n",
        r.method,
        if cq.is_empty() { "" } else { "?" }
    );
    for (k, v) in &headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("authorization: {auth}\r\n"));
    out.push_str(&format!("content-length: {}\r\nconnection: close\r\n\r\n", r.body.len()));
    let mut b = out.into_bytes();
    b.extend_from_slice(&r.body);
    b
}

/// Sends `data`, optionally shuts the write side, reads the whole response. None = no bytes
/// back before the timeout. Returns (status or 0 if unparsable, raw response).
fn exchange(port: u16, data: &[u8], shut: bool, timeout: Duration) -> Option<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    let _ = s.set_nodelay(true);
    let _ = s.write_all(data);
    if shut {
        let _ = s.shutdown(Shutdown::Write);
    }
    let mut resp = Vec::new();
    let mut buf = [0u8; 16384];
    let start = Instant::now();
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                resp.extend_from_slice(&buf[..n]);
                if resp.len() > 64 << 20 {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => {
                if resp.is_empty() && start.elapsed() >= timeout {
                    return None;
                }
                break;
            }
        }
    }
    let status = std::str::from_utf8(resp.get(9..12).unwrap_or(b""))
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Some((status, resp))
}

const KEYS: &[&str] = &[
    "obj/a", "obj/b", "obj/big", "obj/a/../b", "obj//x", "obj/%2e%2e", "../../etc/passwd",
    "obj/\u{e9}", "obj/ sp", "", "obj/a?b", "obj/a#b", "obj/\u{0}", "\u{fffd}",
];
const QKEYS: &[&str] = &[
    "uploads", "uploadId", "partNumber", "delete", "list-type", "prefix", "delimiter",
    "max-keys", "continuation-token", "start-after", "marker", "encoding-type", "location",
    "versionId", "max-uploads", "max-parts", "part-number-marker", "key-marker",
    "upload-id-marker", "fetch-owner", "tagging", "acl", "versioning", "x-id",
    "response-content-type", "X-Amz-Expires",
];
const QVALS: &[&str] = &[
    "", "2", "1", "0", "-1", "10000", "2147483648", "99999999999999999999", "url", "/", "obj/",
    "AAAA", "%", "\u{fffd}", "true", "-0",
];
const HEADERS: &[&str] = &[
    "range", "x-amz-copy-source", "x-amz-copy-source-range", "if-none-match", "if-match",
    "if-modified-since", "if-unmodified-since", "content-md5", "x-amz-checksum-crc32",
    "x-amz-checksum-crc32c", "x-amz-checksum-sha256", "x-amz-checksum-algorithm",
    "x-amz-decoded-content-length", "content-encoding", "content-type", "x-amz-meta-a",
    "x-amz-metadata-directive", "x-amz-sdk-checksum-algorithm", "x-amz-trailer", "expires",
    "cache-control", "x-amz-checksum-mode", "x-amz-mp-object-size", "x-amz-expected-bucket-owner",
];
const HVALS: &[&str] = &[
    "bytes=0-0", "bytes=-1", "bytes=5-", "bytes=0-18446744073709551615", "bytes=10-5",
    "bytes=0-1,3-4", "bytes=", "bytes=-0", "bytes=99999999999-", "fuzz/obj/a", "/fuzz/obj/a",
    "fuzz/obj/a?versionId=x", "fuzz/../fuzz/obj/a", "%2Ffuzz%2Fobj%2Fa", "*", "\"abc\"",
    "Wed, 21 Oct 2015 07:28:00 GMT", "garbage", "1B2M2Y8AsgTpgAmY7PhCfg==", "AAAAAA==",
    "aws-chunked", "CRC32", "SHA256", "18446744073709551615", "-1", "COPY", "REPLACE", "",
    "\u{7f}", "a\u{e9}",
];

fn pick<'a>(rng: &mut Rng, v: &'a [&'a str]) -> &'a str {
    v[rng.below(v.len())]
}

fn fuzz_string(rng: &mut Rng, base: &str) -> String {
    let mut b = base.as_bytes().to_vec();
    let k = rng.below(3);
    for _ in 0..k {
        driver::mutate(rng, &mut b, &[], 2048);
    }
    // header values and paths must stay on one line to remain a *valid* signed request
    b.retain(|c| *c != b'\r' && *c != b'\n');
    String::from_utf8_lossy(&b).into_owned()
}

fn delete_xml(rng: &mut Rng) -> Vec<u8> {
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Delete>");
    let n = rng.size(4);
    for _ in 0..n {
        s.push_str(&format!("<Object><Key>{}</Key></Object>", pick(rng, KEYS)));
    }
    if rng.chance(2) {
        s.push_str("<Quiet>true</Quiet>");
    }
    s.push_str("</Delete>");
    s.into_bytes()
}

fn complete_xml(rng: &mut Rng) -> Vec<u8> {
    let mut s = String::from("<CompleteMultipartUpload>");
    let n = rng.size(3);
    for i in 0..n {
        s.push_str(&format!(
            "<Part><PartNumber>{}</PartNumber><ETag>\"{}\"</ETag></Part>",
            [i as u64 + 1, 0, 10001, u64::MAX][rng.below(4)],
            ["d41d8cd98f00b204e9800998ecf8427e", "zz", ""][rng.below(3)]
        ));
    }
    s.push_str("</CompleteMultipartUpload>");
    s.into_bytes()
}

fn gen_req(rng: &mut Rng, upload_id: &str) -> Req {
    let method = ["GET", "HEAD", "PUT", "POST", "DELETE", "GET", "GET", "PUT"][rng.below(8)].to_string();
    let key = { let b = pick(rng, KEYS); fuzz_string(rng, b) };
    let path = match rng.below(6) {
        0 => "/".to_string(),
        1 => format!("/{BUCKET}"),
        2 => format!("/{}", fuzz_string(rng, BUCKET)),
        _ => format!("/{BUCKET}/{key}"),
    };
    let mut query = Vec::new();
    let nq = rng.size(3);
    for _ in 0..nq {
        let k = pick(rng, QKEYS).to_string();
        let v = if k == "uploadId" && rng.chance(2) {
            upload_id.to_string()
        } else {
            { let b = pick(rng, QVALS); fuzz_string(rng, b) }
        };
        query.push((k, v));
    }
    let mut headers = Vec::new();
    let nh = rng.size(3);
    for _ in 0..nh {
        let v = { let b = pick(rng, HVALS); fuzz_string(rng, b) };
        headers.push((pick(rng, HEADERS).to_string(), v));
    }
    let mut body = match rng.below(5) {
        0 => delete_xml(rng),
        1 => complete_xml(rng),
        2 => rng.blob(5000),
        _ => Vec::new(),
    };
    if !body.is_empty() && rng.chance(2) {
        let k = 1 + rng.below(4);
        for _ in 0..k {
            driver::mutate(rng, &mut body, &[], 1 << 20);
        }
    }
    if method == "POST" && rng.chance(2) {
        query.push((["delete", "uploads", "uploadId"][rng.below(3)].to_string(), upload_id.to_string()));
    }
    Req { method, path, query, headers, body }
}

/// Which open finding (docs/RELIABILITY.md) a 5xx answer matches, if any.
fn known_5xx(raw: bool, req: &[u8]) -> Option<&'static str> {
    let end = req.windows(4).position(|w| w == b"\r\n\r\n");
    let head = String::from_utf8_lossy(&req[..end.unwrap_or(req.len())]).to_ascii_lowercase();
    let body_len = end.map(|e| req.len() - e - 4);
    let cl = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    if let (Some(cl), Some(b)) = (cl, body_len) {
        if raw && b < cl {
            return Some("F4");
        }
    }
    let line = head.lines().next().unwrap_or("");
    if line.starts_with("head ") {
        if let Some(q) = line.split(' ').nth(1).and_then(|t| t.split_once('?')).map(|x| x.1) {
            for kv in q.split('&') {
                if let Some((k, v)) = kv.split_once('=') {
                    let ctl = v.match_indices('%').any(|(i, _)| {
                        v.get(i + 1..i + 3)
                            .and_then(|h| u8::from_str_radix(h, 16).ok())
                            .is_some_and(|c| c < 0x20 || c == 0x7f)
                    });
                    if k.starts_with("response-") && ctl {
                        return Some("F3");
                    }
                }
            }
        }
    }
    None
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn health(port: u16) -> bool {
    matches!(
        exchange(port, b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n", false, Duration::from_secs(10)),
        Some((200, _))
    )
}

struct Server {
    child: Child,
    port: u16,
    dir: PathBuf,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(bale: &Path) -> Server {
    let dir = std::env::temp_dir().join(format!("bale-fuzz-http-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("bale.log");
    for _ in 0..5 {
        let port = free_port();
        let child = Command::new(bale)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
            .arg(dir.join("data"))
            .args(["--access-key", AK, "--secret-key", SK, "--header-timeout-s", "5", "--idle-timeout-s", "5"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(std::fs::OpenOptions::new().append(true).open(&log).unwrap()))
            .spawn()
            .expect("start bale");
        let mut s = Server { child, port, dir: dir.clone(), log: log.clone() };
        for _ in 0..200 {
            if health(port) {
                return s;
            }
            if let Ok(Some(_)) = s.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = s.child.kill();
        let _ = s.child.wait();
    }
    panic!("bale did not start; see {}", log.display());
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seconds = 30.0f64;
    let mut seed = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut threads = 4usize;
    let mut bale = root.join("../target/release/bale");
    let mut keep = false;
    let mut fail_5xx = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => seconds = it.next().unwrap().parse().unwrap(),
            "--seed" => seed = it.next().unwrap().parse().unwrap(),
            "--threads" => threads = it.next().unwrap().parse().unwrap(),
            "--bale" => bale = it.next().unwrap().into(),
            "--keep" => keep = true,
            "--fail-on-5xx" => fail_5xx = true,
            _ => {
                eprintln!("usage: fuzz-http [--seconds S] [--seed N] [--threads N] [--bale PATH] [--keep] [--fail-on-5xx]");
                std::process::exit(2);
            }
        }
    }
    if let Ok(b) = std::env::var("BALE_BIN") {
        bale = b.into();
    }
    let mut srv = start(&bale);
    let port = srv.port;
    let host = format!("127.0.0.1:{port}");
    // setup: bucket, objects, one open multipart upload
    let put = |path: &str, q: Vec<(String, String)>, method: &str, body: Vec<u8>| {
        let r = Req { method: method.into(), path: path.into(), query: q, headers: vec![], body };
        let x = exchange(port, &signed_bytes(&r, &host), false, Duration::from_secs(10));
        if let Some((st, resp)) = &x {
            if *st != 200 {
                eprintln!("setup {method} {path}: {st}\n{}", String::from_utf8_lossy(resp));
            }
        }
        x.map(|x| x.0)
    };
    assert_eq!(put(&format!("/{BUCKET}"), vec![], "PUT", vec![]), Some(200), "create bucket");
    for (k, n) in [("obj/a", 10usize), ("obj/b", 5000), ("obj/big", 300_000)] {
        assert_eq!(put(&format!("/{BUCKET}/{k}"), vec![], "PUT", vec![b'x'; n]), Some(200), "put {k}");
    }
    let upload_id = {
        let r = Req { method: "POST".into(), path: format!("/{BUCKET}/obj/mp"), query: vec![("uploads".into(), "".into())], headers: vec![], body: vec![] };
        let (st, resp) = exchange(port, &signed_bytes(&r, &host), false, Duration::from_secs(10)).expect("create upload");
        assert_eq!(st, 200, "create multipart upload");
        let t = String::from_utf8_lossy(&resp).into_owned();
        let a = t.find("<UploadId>").map(|i| i + 10).unwrap_or(0);
        let b = t.find("</UploadId>").unwrap_or(a);
        t[a..b].to_string()
    };
    let raw_corpus: Vec<Vec<u8>> = {
        let mut v = Vec::new();
        if let Ok(rd) = std::fs::read_dir(root.join("corpus/http")) {
            for e in rd.flatten() {
                if let Ok(b) = std::fs::read(e.path()) {
                    v.push(b);
                }
            }
        }
        v
    };
    let art = root.join("artifacts/http");
    let stop = Arc::new(AtomicBool::new(false));
    let counts: Arc<[AtomicU64; 12]> = Arc::new(Default::default()); // signed, raw, 2xx, 3xx/4xx, 500s, 501/503, hangs, noresp(raw), signed 500s, F3, F4, unknown 5xx
    let fatal = Arc::new(Mutex::new(Vec::<String>::new()));
    let samples = Arc::new(Mutex::new(Vec::<String>::new()));
    let codes = Arc::new(Mutex::new(std::collections::HashMap::<String, u64>::new()));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut hs = Vec::new();
    for t in 0..threads {
        let (stop, counts, fatal, samples, codes) = (stop.clone(), counts.clone(), fatal.clone(), samples.clone(), codes.clone());
        let (host, upload_id, raw_corpus, art) = (host.clone(), upload_id.clone(), raw_corpus.clone(), art.clone());
        hs.push(std::thread::spawn(move || {
            let mut rng = Rng::new(seed.wrapping_add(t as u64 * 104729));
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                n += 1;
                let raw = rng.chance(3);
                let req = gen_req(&mut rng, &upload_id);
                let mut bytes = signed_bytes(&req, &host);
                if raw {
                    if !raw_corpus.is_empty() && rng.chance(3) {
                        bytes = raw_corpus[rng.below(raw_corpus.len())].clone();
                    }
                    let k = 1 + rng.below(6);
                    for _ in 0..k {
                        driver::mutate(&mut rng, &mut bytes, &raw_corpus, 1 << 20);
                    }
                    counts[1].fetch_add(1, Ordering::Relaxed);
                } else {
                    counts[0].fetch_add(1, Ordering::Relaxed);
                }
                match exchange(port, &bytes, raw, Duration::from_secs(10)) {
                    None if !raw => {
                        counts[6].fetch_add(1, Ordering::Relaxed);
                        let p = art.join(format!("hang-{t}-{n}"));
                        let _ = std::fs::create_dir_all(&art);
                        let _ = std::fs::write(&p, &bytes);
                        fatal.lock().unwrap().push(format!("no response in 10 s to a signed request (saved {})", p.display()));
                    }
                    None => {
                        counts[7].fetch_add(1, Ordering::Relaxed);
                    }
                    Some((st, resp)) => {
                        let i = match st {
                            200..=299 => 2,
                            503 | 501 => 5,
                            500..=599 => 4,
                            _ => 3,
                        };
                        if !raw {
                            let body = String::from_utf8_lossy(&resp);
                            let code = body.find("<Code>").map(|a| body[a + 6..].split('<').next().unwrap_or("").to_string()).unwrap_or_else(|| st.to_string());
                            *codes.lock().unwrap().entry(code).or_insert(0) += 1;
                        }
                        counts[i].fetch_add(1, Ordering::Relaxed);
                        if i == 4 {
                            if !raw {
                                counts[8].fetch_add(1, Ordering::Relaxed);
                            }
                            match known_5xx(raw, &bytes) {
                                Some("F3") => counts[9].fetch_add(1, Ordering::Relaxed),
                                Some(_) => counts[10].fetch_add(1, Ordering::Relaxed),
                                None => {
                                    let p = art.join(format!("unknown-{st}-{t}-{n}"));
                                    let _ = std::fs::create_dir_all(&art);
                                    let _ = std::fs::write(&p, &bytes);
                                    let _ = std::fs::write(p.with_extension("response"), &resp);
                                    fatal.lock().unwrap().push(format!("{st} of a new shape (not F3/F4): saved {}", p.display()));
                                    counts[11].fetch_add(1, Ordering::Relaxed)
                                }
                            };
                            let mut s = samples.lock().unwrap();
                            let p = art.join(format!("{}-{st}-{t}-{n}", if raw { "raw" } else { "signed" }));
                            if counts[4].load(Ordering::Relaxed) <= 500 {
                                let _ = std::fs::create_dir_all(&art);
                                let _ = std::fs::write(&p, &bytes);
                                let _ = std::fs::write(p.with_extension("response"), &resp);
                            }
                            if s.len() < 20 {
                                let head = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).replace("\r\n", " | ");
                                let body = String::from_utf8_lossy(&resp);
                                let code = body.find("<Code>").map(|a| body[a + 6..].split('<').next().unwrap_or("").to_string()).unwrap_or_default();
                                s.push(format!("{st} {code} <- {head} (saved {})", p.display()));
                            }
                        }
                    }
                }
                if n % 200 == 0 && t == 0 && !health(port) {
                    fatal.lock().unwrap().push("GET /health failed during the run".into());
                    stop.store(true, Ordering::Relaxed);
                }
            }
        }));
    }
    for h in hs {
        let _ = h.join();
    }
    let alive = matches!(srv.child.try_wait(), Ok(None)) && health(port);
    if !alive {
        fatal.lock().unwrap().push(format!("bale is down after the run: {:?}", srv.child.try_wait()));
    }
    let log = std::fs::read_to_string(&srv.log).unwrap_or_default();
    let panics: Vec<&str> = log.lines().filter(|l| l.contains("panicked")).collect();
    for p in panics.iter().take(5) {
        fatal.lock().unwrap().push(format!("panic in bale's log: {p}"));
    }
    let c: Vec<u64> = counts.iter().map(|a| a.load(Ordering::Relaxed)).collect();
    let total = c[0] + c[1];
    println!(
        "fuzz-http: seed {seed}, {seconds} s, {threads} threads: {total} requests ({} signed, {} raw-mutated), {:.0}/s",
        c[0],
        c[1],
        total as f64 / seconds
    );
    println!(
        "  responses: 2xx {}, 3xx/4xx {}, 500/502/504.. {} ({} to signed requests), 501/503 {}; signed without response {}; raw without response {}",
        c[2], c[3], c[4], c[8], c[5], c[6], c[7]
    );
    let mut cv: Vec<(String, u64)> = codes.lock().unwrap().iter().map(|(k, v)| (k.clone(), *v)).collect();
    cv.sort_by(|a, b| b.1.cmp(&a.1));
    println!(
        "  signed requests by answer: {}",
        cv.iter().take(14).map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
    );
    println!(
        "  5xx by shape: F3 (HEAD, control character in response-*) {}, F4 (body shorter than Content-Length) {}, new shapes {}",
        c[9], c[10], c[11]
    );
    println!("  bale alive and healthy at the end: {alive}; panics in log: {}", panics.len());
    let s = samples.lock().unwrap();
    for x in s.iter() {
        println!("  5xx sample: {x}");
    }
    let _ = srv.child.kill();
    let _ = srv.child.wait();
    if !keep {
        let _ = std::fs::remove_dir_all(&srv.dir);
    } else {
        println!("  kept {}", srv.dir.display());
    }
    let f = fatal.lock().unwrap();
    for x in f.iter() {
        println!("  FINDING: {x}");
    }
    if c[4] > 0 && !fail_5xx {
        println!("  ({} 5xx answers of the known open shapes F3/F4 are reported, not fatal; --fail-on-5xx fails on them too)", c[4] - c[11]);
    }
    if !f.is_empty() || (fail_5xx && c[4] > 0) {
        std::process::exit(1);
    }
}
