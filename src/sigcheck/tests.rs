//! Unit tests of the pre-s3s checks (src/sigcheck.rs).

use super::*;

const AK: &str = "AKIAIOSFODNN7EXAMPLE";
const SK: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

fn cfg() -> Config {
    Config {
        region: "us-east-1".into(),
        fixed: Some((AK.into(), SK.into())),
    }
}

#[test]
fn form_decoding() {
    assert_eq!(form_decode("a+b%20c%2Fd%zz%4"), "a b c/d%zz%4");
    assert_eq!(
        path_decode("/b/k%2B1%+1%4"),
        Some("/b/k+1%+1%4".to_string())
    );
    assert_eq!(path_decode("/b/%ff"), None);
    assert_eq!(
        query_pairs(Some("acl&versionId=a%2Bb&&x=")),
        vec![
            ("acl".to_string(), String::new()),
            ("versionId".to_string(), "a+b".to_string()),
            ("x".to_string(), String::new())
        ]
    );
    assert!(query_has("X-Amz-Signature=abc&x=1", "X-Amz-Signature"));
    assert!(!query_has("", "Signature"));
    assert!(!query_has("X-Amz-Signature=1", "Signature"));
}

fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> http::Request<()> {
    let mut b = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap()
}

fn code(r: Option<http::Response<s3s::Body>>) -> Option<(u16, String)> {
    let r = r?;
    let status = r.status().as_u16();
    let body = futures::executor::block_on(async {
        let mut b = r.into_body();
        b.store_all_limited(1 << 20).await.unwrap()
    });
    let s = String::from_utf8_lossy(&body).to_string();
    let code = s
        .split("<Code>")
        .nth(1)
        .and_then(|x| x.split("</Code>").next())
        .unwrap_or("")
        .to_string();
    Some((status, code))
}

#[test]
fn v2_dates_and_signatures() {
    let c = cfg();
    let now = 1_369_353_600;
    let date = "Fri, 24 May 2013 00:00:00 GMT";
    let sts = format!("DELETE\n\n\n{date}\n/b/k");
    let sig = sigv4::v2::signature(SK, &sts);
    let auth = format!("AWS {}:{sig}", AK);
    let mut ok = req(
        "DELETE",
        "/b/k",
        &[("authorization", &auth), ("date", date)],
    );
    assert!(check(&c, &mut ok, now).is_none());
    assert!(check(&c, &mut ok, now + 899).is_none());
    let mut r = req(
        "DELETE",
        "/b/k",
        &[("authorization", &auth), ("date", date)],
    );
    assert_eq!(
        code(check(&c, &mut r, now + 901)),
        Some((403, "RequestTimeTooSkewed".into()))
    );
    let mut r = req(
        "DELETE",
        "/b/k",
        &[("authorization", &auth), ("date", "whenever")],
    );
    assert_eq!(
        code(check(&c, &mut r, now)),
        Some((403, "AccessDenied".into()))
    );
    let mut r = req("DELETE", "/b/k", &[("authorization", &auth)]);
    assert_eq!(
        code(check(&c, &mut r, now)),
        Some((403, "AccessDenied".into()))
    );
    let bad = format!("AWS {}:{}", AK, "AAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    let mut r = req("DELETE", "/b/k", &[("authorization", &bad), ("date", date)]);
    assert_eq!(
        code(check(&c, &mut r, now)),
        Some((403, "SignatureDoesNotMatch".into()))
    );
    // Another access key: s3s answers InvalidAccessKeyId.
    let other = format!("AWS OTHER:{sig}");
    let mut r = req(
        "DELETE",
        "/b/k",
        &[("authorization", &other), ("date", date)],
    );
    assert!(check(&c, &mut r, now).is_none());
}

#[test]
fn v2_presigned() {
    let c = cfg();
    // AWS's query-string authentication example (s3s's test), path-style.
    let sts = "GET\n\n\n1175139620\n/awsexamplebucket1/photos/puppy.jpg";
    let sig = sigv4::v2::signature(SK, sts);
    let enc: String = sig
        .bytes()
        .map(|b| match b {
            b'+' => "%2B".to_string(),
            b'/' => "%2F".to_string(),
            b'=' => "%3D".to_string(),
            b => (b as char).to_string(),
        })
        .collect();
    let uri = |s: &str| {
        format!(
            "/awsexamplebucket1/photos/puppy.jpg?AWSAccessKeyId={}&Expires=1175139620&Signature={s}",
            AK
        )
    };
    let mut r = req("GET", &uri(&enc), &[]);
    assert!(check(&c, &mut r, 1_175_139_000).is_none());
    let mut r = req("GET", &uri("AAAA"), &[]);
    assert_eq!(
        code(check(&c, &mut r, 1_175_139_000)),
        Some((403, "SignatureDoesNotMatch".into()))
    );
    // Expired: left to s3s (AccessDenied "Request has expired").
    let mut r = req("GET", &uri("AAAA"), &[]);
    assert!(check(&c, &mut r, 1_175_139_621).is_none());
}

#[test]
fn v4_scope() {
    let c = cfg();
    let now = 1_369_353_600;
    let a = |cred: &str, sh: &str| {
        format!("AWS4-HMAC-SHA256 Credential={cred}, SignedHeaders={sh}, Signature=00")
    };
    let hdrs = |auth: &str| {
        vec![
            ("authorization".to_string(), auth.to_string()),
            ("x-amz-date".to_string(), "20130524T000000Z".to_string()),
            ("host".to_string(), "h".to_string()),
        ]
    };
    let run = |auth: String| {
        let h = hdrs(&auth);
        let hs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut r = req("GET", "/b/k", &hs);
        code(check(&c, &mut r, now))
    };
    let good = "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request";
    assert_eq!(run(a(good, "host;x-amz-date")), None);
    let malformed = Some((400, "AuthorizationHeaderMalformed".to_string()));
    assert_eq!(
        run(a(
            "AKIAIOSFODNN7EXAMPLE/20130524/eu-west-1/s3/aws4_request",
            "host"
        )),
        malformed
    );
    assert_eq!(
        run(a(
            "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/sts/aws4_request",
            "host"
        )),
        malformed
    );
    assert_eq!(
        run(a("AKIAIOSFODNN7EXAMPLE//us-east-1/s3/aws4_request", "host")),
        malformed
    );
    assert_eq!(
        run(a(
            "AKIAIOSFODNN7EXAMPLE/20130523/us-east-1/s3/aws4_request",
            "host"
        )),
        malformed
    );
    assert_eq!(
        run(a("AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3", "host")),
        malformed
    );
    assert_eq!(
        run(a(good, "x-amz-date")),
        Some((403, "AccessDenied".to_string()))
    );
    assert_eq!(run("AWS4-HMAC-SHA256 Credential=x".to_string()), malformed);
}

#[test]
fn duplicate_authorization_and_mixed_auth() {
    let c = cfg();
    let mut r = req(
        "GET",
        "/b/k",
        &[("authorization", "AWS a:b"), ("authorization", "AWS a:b")],
    );
    assert_eq!(
        code(check(&c, &mut r, 0)),
        Some((400, "InvalidArgument".into()))
    );
    let mut r = req(
        "GET",
        "/b/k?X-Amz-Signature=1",
        &[("authorization", "AWS a:b")],
    );
    assert_eq!(
        code(check(&c, &mut r, 0)),
        Some((400, "InvalidArgument".into()))
    );
    let mut r = req(
        "GET",
        "/b/k?X-Amz-Credential=AK%2F20130524%2Feu-west-1%2Fs3%2Faws4_request&X-Amz-Signature=1",
        &[],
    );
    assert_eq!(
        code(check(&c, &mut r, 0)),
        Some((400, "AuthorizationQueryParametersError".into()))
    );
}

#[test]
fn v4_date_header_becomes_x_amz_date() {
    let c = cfg();
    let auth = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=date;host, Signature=00";
    let mut r = req(
        "GET",
        "/b/k",
        &[
            ("authorization", auth),
            ("date", "Fri, 24 May 2013 00:00:00 GMT"),
        ],
    );
    assert!(check(&c, &mut r, 1_369_353_600).is_none());
    assert_eq!(r.headers()["x-amz-date"], "20130524T000000Z");
}

#[test]
fn ignorable_range_is_removed_or_resigned() {
    let c = cfg();
    // Unsigned (SigV2 never signs it; anonymous): removed.
    let mut r = req("GET", "/b/k", &[("range", "bytes=5-3")]);
    assert!(check(&c, &mut r, 0).is_none());
    assert!(!r.headers().contains_key("range"));
    let mut r = req("GET", "/b/k", &[("range", "bytes=-0")]);
    assert!(check(&c, &mut r, 0).is_none());
    assert!(
        r.headers().contains_key("range"),
        "bytes=-0 is a 416, not ignored"
    );

    // Signed with SigV4: verified, removed, re-signed over the rest.
    let amz = "20130524T000000Z";
    let payload = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let mut h = http::HeaderMap::new();
    h.insert("host", "h:1".parse().unwrap());
    h.insert("range", "bytes=x".parse().unwrap());
    h.insert("x-amz-content-sha256", payload.parse().unwrap());
    h.insert("x-amz-date", amz.parse().unwrap());
    let signed = ["host", "range", "x-amz-content-sha256", "x-amz-date"];
    let q = query_pairs(Some("x-id=GetObject"));
    let (canon, line) = v4_canonical(&http::Method::GET, "/b/k%20x", &q, &h, &signed, payload);
    assert_eq!(line, "host;range;x-amz-content-sha256;x-amz-date");
    let sig = v4_sign(SK, "20130524", &c.region, amz, &canon);
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={}/20130524/us-east-1/s3/aws4_request, SignedHeaders={line}, Signature={sig}",
        AK
    );
    let mut r = req(
        "GET",
        "/b/k%20x?x-id=GetObject",
        &[
            ("host", "h:1"),
            ("range", "bytes=x"),
            ("x-amz-content-sha256", payload),
            ("x-amz-date", amz),
            ("authorization", &auth),
        ],
    );
    assert!(check(&c, &mut r, 1_369_353_600).is_none());
    assert!(!r.headers().contains_key("range"));
    let new = r.headers()["authorization"].to_str().unwrap().to_string();
    let n = sigv4::parse_authorization(&new).unwrap();
    assert_eq!(n.signed_headers, "host;x-amz-content-sha256;x-amz-date");
    let (canon2, _) = v4_canonical(
        &http::Method::GET,
        "/b/k%20x",
        &q,
        r.headers(),
        &["host", "x-amz-content-sha256", "x-amz-date"],
        payload,
    );
    assert_eq!(
        n.signature,
        v4_sign(SK, "20130524", &c.region, amz, &canon2).as_str()
    );

    // A wrong signature is left alone for s3s to refuse.
    let bad = auth.replace(sig.as_str(), &"0".repeat(64));
    let mut r = req(
        "GET",
        "/b/k%20x?x-id=GetObject",
        &[
            ("host", "h:1"),
            ("range", "bytes=x"),
            ("x-amz-content-sha256", payload),
            ("x-amz-date", amz),
            ("authorization", &bad),
        ],
    );
    assert!(check(&c, &mut r, 1_369_353_600).is_none());
    assert!(r.headers().contains_key("range"));
    assert_eq!(r.headers()["authorization"], bad.as_str());
}
