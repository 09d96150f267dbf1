//! The page's files, compiled into the binary: no CDN, no bundle, nothing fetched at run time.

use bytes::Bytes;
use http_body_util::{Either, Full};

use super::{refusal, xml_escape, ConsoleBody};

const INDEX_HTML: &str = include_str!("index.html");
const CONSOLE_CSS: &str = include_str!("console.css");
const CONSOLE_JS: &str = include_str!("console.js");
const METRICS_JS: &str = include_str!("metrics.js");
const SIGV4_JS: &str = include_str!("sigv4.js");
/// Replaced in index.html by the region the page signs for.
const REGION_MARK: &str = "{{REGION}}";

/// Scripts and styles from the console's own origin only (no inline code, so a key or object
/// name rendered into the page can never run), requests to the same origin only, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: Bytes,
}

pub struct Assets {
    files: Vec<Asset>,
}

impl Assets {
    pub fn new(region: &str) -> Self {
        let index = INDEX_HTML.replace(REGION_MARK, &xml_escape(region));
        let file = |path, content_type, body: Bytes| Asset {
            path,
            content_type,
            body,
        };
        let js = "text/javascript; charset=utf-8";
        Self {
            files: vec![
                file("/", "text/html; charset=utf-8", Bytes::from(index)),
                file(
                    "/console.css",
                    "text/css; charset=utf-8",
                    Bytes::from_static(CONSOLE_CSS.as_bytes()),
                ),
                file("/console.js", js, Bytes::from_static(CONSOLE_JS.as_bytes())),
                file("/metrics.js", js, Bytes::from_static(METRICS_JS.as_bytes())),
                file("/sigv4.js", js, Bytes::from_static(SIGV4_JS.as_bytes())),
            ],
        }
    }

    /// GET or HEAD of one of the page's files; 405 for another method, 404 for another path.
    pub fn answer<B>(&self, req: &http::Request<B>) -> http::Response<ConsoleBody> {
        let path = match req.uri().path() {
            "/index.html" => "/",
            p => p,
        };
        let Some(a) = self.files.iter().find(|a| a.path == path) else {
            return refusal(
                http::StatusCode::NOT_FOUND,
                "NotFound",
                "The console serves its page at / and S3 requests under /api/s3/.",
            );
        };
        if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
            let mut r = refusal(
                http::StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "The console's page is read with GET or HEAD.",
            );
            r.headers_mut().insert(
                http::header::ALLOW,
                http::HeaderValue::from_static("GET, HEAD"),
            );
            return r;
        }
        let mut r = http::Response::new(Either::Left(Full::new(a.body.clone())));
        let h = r.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(a.content_type),
        );
        for (k, v) in [
            ("content-security-policy", CSP),
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "DENY"),
            ("referrer-policy", "no-referrer"),
            ("cache-control", "no-store"),
        ] {
            h.insert(k, http::HeaderValue::from_static(v));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(a: &Assets, method: &str, path: &str) -> http::Response<ConsoleBody> {
        a.answer(
            &http::Request::builder()
                .method(method)
                .uri(path)
                .body(())
                .unwrap(),
        )
    }

    #[test]
    fn page_files_are_served_with_their_types_and_policy() {
        let a = Assets::new("eu-<west>-1");
        let r = get(&a, "GET", "/");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
        assert!(r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'"));
        let Either::Left(body) = r.into_body() else {
            panic!("a page file is a full body")
        };
        let _ = body; // the region substitution is checked on the text below
        let idx = &a.files[0].body;
        let text = std::str::from_utf8(idx).unwrap();
        assert!(text.contains("eu-&lt;west&gt;-1") && !text.contains(REGION_MARK));
        assert_eq!(get(&a, "HEAD", "/sigv4.js").status(), 200);
        assert_eq!(get(&a, "GET", "/index.html").status(), 200);
    }

    #[test]
    fn other_paths_and_methods_are_refused() {
        let a = Assets::new("us-east-1");
        assert_eq!(get(&a, "GET", "/favicon.ico").status(), 404);
        assert_eq!(get(&a, "GET", "/../etc/passwd").status(), 404);
        let r = get(&a, "POST", "/");
        assert_eq!(r.status(), 405);
        assert_eq!(r.headers()["allow"], "GET, HEAD");
        assert_eq!(r.headers()["connection"], "close");
    }
}
