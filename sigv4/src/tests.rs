use super::*;

// ---- AWS's SigV4 test suite ("aws-sig-v4-test-suite", 2015-08-30) ---------------------------
//
// Credentials AKIDEXAMPLE / wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, region us-east-1,
// service `service`, x-amz-date 20150830T123600Z, host example.amazonaws.com.

const SUITE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const SUITE_DATE: &str = "20150830T123600Z";

struct Suite<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a [(&'a str, &'a str)],
    /// Besides host and x-amz-date; lower-case names, any order.
    headers: &'a [(&'a str, &'a [&'a str])],
    payload: &'a str,
}

/// (canonical request, string to sign, Authorization header) for a suite request.
fn suite(t: &Suite) -> (String, String, String) {
    let mut headers: Vec<(&str, &[&str])> = vec![
        ("host", &["example.amazonaws.com"]),
        ("x-amz-date", &[SUITE_DATE]),
    ];
    headers.extend_from_slice(t.headers);
    headers.sort_by(|a, b| a.0.cmp(b.0));
    let signed = headers.iter().map(|h| h.0).collect::<Vec<_>>().join(";");
    let mut creq = String::new();
    let mut c = CanonicalRequest::new(&mut creq, t.method);
    c.uri(t.path).query(t.query);
    for (name, values) in &headers {
        c.header(name, values.iter().copied());
    }
    c.finish(&signed, &sha256_hex(t.payload.as_bytes()).to_string());

    let scope = Scope::new(&SUITE_DATE[..8], "us-east-1", "service");
    let mut sts = String::new();
    string_to_sign(&mut sts, SUITE_DATE, &scope, &creq);
    let key = signing_key(SUITE_SECRET, scope.date, scope.region, scope.service);
    let sig = sign_canonical_request(&key, SUITE_DATE, &scope, &creq);
    assert_eq!(
        sig,
        sign(&key, &sts),
        "streamed and built string to sign agree"
    );
    let mut auth = String::new();
    push_authorization(&mut auth, "AKIDEXAMPLE", &scope, &signed, sig.as_str());
    (creq, sts, auth)
}

fn suite_auth(signed: &str, sig: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
         SignedHeaders={signed}, Signature={sig}"
    )
}

const GET: Suite = Suite {
    method: "GET",
    path: "/",
    query: &[],
    headers: &[],
    payload: "",
};

#[test]
fn suite_get_vanilla() {
    let (creq, sts, auth) = suite(&GET);
    assert_eq!(
        creq,
        "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\
         e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert!(sts.starts_with(
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
    ));
    assert_eq!(
        auth,
        suite_auth(
            "host;x-amz-date",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        )
    );
}

#[test]
fn suite_get_vanilla_query_order_key_case() {
    let (creq, _, auth) = suite(&Suite {
        query: &[("Param2", "value2"), ("Param1", "value1")],
        ..GET
    });
    assert!(creq.starts_with("GET\n/\nParam1=value1&Param2=value2\n"));
    assert_eq!(
        auth,
        suite_auth(
            "host;x-amz-date",
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        )
    );
}

#[test]
fn suite_get_vanilla_query_order_key() {
    // Same name twice: sorted by value too (s3s's order keeps the request's order instead).
    let q = [("Param1", "value2"), ("Param1", "Value1")];
    let (creq, sts, auth) = suite(&Suite { query: &q, ..GET });
    assert_eq!(
        creq,
        "GET\n/\nParam1=Value1&Param1=value2\nhost:example.amazonaws.com\n\
         x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\
         e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        sts,
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
         704b4cef673542d84cdff252633f065e8daeba5f168b77116f8b1bcaf3d38f89"
    );
    assert_eq!(
        auth,
        suite_auth(
            "host;x-amz-date",
            "eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1"
        )
    );
    let mut s3s = String::new();
    push_canonical_query_s3s(&mut s3s, &q);
    assert_eq!(s3s, "Param1=value2&Param1=Value1");
}

#[test]
fn suite_get_vanilla_query_unreserved() {
    const U: &str = "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let (creq, _, auth) = suite(&Suite {
        query: &[(U, U)],
        ..GET
    });
    assert!(creq.starts_with(&format!("GET\n/\n{U}={U}\n")));
    assert_eq!(
        auth,
        suite_auth(
            "host;x-amz-date",
            "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197"
        )
    );
}

#[test]
fn suite_get_vanilla_empty_query_key() {
    let (_, _, auth) = suite(&Suite {
        query: &[("Param1", "value1")],
        ..GET
    });
    assert_eq!(
        auth,
        suite_auth(
            "host;x-amz-date",
            "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb"
        )
    );
}

#[test]
fn suite_get_utf8() {
    let (creq, _, auth) = suite(&Suite {
        path: "/\u{1234}",
        ..GET
    });
    assert!(creq.starts_with("GET\n/%E1%88%B4\n\n"));
    assert_eq!(
        auth,
        suite_auth(
            "host;x-amz-date",
            "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"
        )
    );
}

#[test]
fn suite_get_header_key_duplicate() {
    let (creq, _, auth) = suite(&Suite {
        headers: &[("my-header1", &["value2", "value2", "value1"])],
        ..GET
    });
    assert!(creq.contains("\nmy-header1:value2,value2,value1\n"));
    assert_eq!(
        auth,
        suite_auth(
            "host;my-header1;x-amz-date",
            "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea"
        )
    );
}

#[test]
fn suite_get_header_value_trim() {
    let (creq, _, auth) = suite(&Suite {
        headers: &[
            ("my-header1", &[" value1"]),
            ("my-header2", &[" \"a   b   c\""]),
        ],
        ..GET
    });
    assert!(creq.contains("\nmy-header1:value1\nmy-header2:\"a b c\"\n"));
    assert_eq!(
        auth,
        suite_auth(
            "host;my-header1;my-header2;x-amz-date",
            "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"
        )
    );
}

#[test]
fn suite_post_vanilla() {
    let (_, _, auth) = suite(&Suite {
        method: "POST",
        ..GET
    });
    assert_eq!(
        auth,
        suite_auth(
            "host;x-amz-date",
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
        )
    );
}

#[test]
fn suite_post_x_www_form_urlencoded() {
    let (creq, sts, auth) = suite(&Suite {
        method: "POST",
        headers: &[("content-type", &["application/x-www-form-urlencoded"])],
        payload: "Param1=value1",
        ..GET
    });
    assert_eq!(
        creq,
        "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\n\
         x-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n\
         9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"
    );
    assert_eq!(
        sts,
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
         42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281"
    );
    assert_eq!(
        auth,
        suite_auth(
            "content-type;host;x-amz-date",
            "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
        )
    );
}

#[test]
fn suite_post_x_www_form_urlencoded_parameters() {
    let (creq, _, auth) = suite(&Suite {
        method: "POST",
        headers: &[(
            "content-type",
            &["application/x-www-form-urlencoded; charset=utf8"],
        )],
        payload: "Param1=value1",
        ..GET
    });
    assert!(creq.contains("\ncontent-type:application/x-www-form-urlencoded; charset=utf8\n"));
    assert_eq!(
        auth,
        suite_auth(
            "content-type;host;x-amz-date",
            "1a72ec8f64bd914b0e42e42607c7fbce7fb2c7465f63e3092b3b0d39fa77a6fe"
        )
    );
}

// ---- AWS S3 documentation examples ----------------------------------------------------------
//
// AKIAIOSFODNN7EXAMPLE / wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY, us-east-1, s3,
// 20130524T000000Z.

const S3_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const S3_DATE: &str = "20130524T000000Z";

fn s3_scope() -> Scope<'static> {
    Scope::new("20130524", "us-east-1", "s3")
}

fn s3_key() -> [u8; 32] {
    signing_key(S3_SECRET, "20130524", "us-east-1", "s3")
}

/// "Example: GET Object" (header auth, with Range).
#[test]
fn s3_get_object() {
    let mut creq = String::new();
    let mut c = CanonicalRequest::new(&mut creq, "GET");
    c.uri("/test.txt")
        .raw_query("")
        .header("host", ["examplebucket.s3.amazonaws.com"])
        .header("range", ["bytes=0-9"])
        .header("x-amz-content-sha256", [EMPTY_SHA256])
        .header("x-amz-date", [S3_DATE]);
    c.finish("host;range;x-amz-content-sha256;x-amz-date", EMPTY_SHA256);
    assert_eq!(
        creq,
        "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n\
         x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
         x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n\
         e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let mut sts = String::new();
    string_to_sign(&mut sts, S3_DATE, &s3_scope(), &creq);
    assert_eq!(
        sts,
        "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n\
         7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
    );
    let sig = sign_canonical_request(&s3_key(), S3_DATE, &s3_scope(), &creq);
    assert_eq!(
        sig.as_str(),
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    );
    assert!(sig.matches("f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"));
    assert!(!sig.matches("f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb40"));
    assert!(!sig.matches("f0e8bdb8"));
}

/// "Example: PUT Object" (single chunk; `$` in the path is encoded once).
#[test]
fn s3_put_object() {
    let payload = sha256_hex(b"Welcome to Amazon S3.");
    let mut creq = String::new();
    let mut c = CanonicalRequest::new(&mut creq, "PUT");
    c.uri("/test$file.text")
        .query::<&str, &str>(&[])
        .header("date", ["Fri, 24 May 2013 00:00:00 GMT"])
        .header("host", ["examplebucket.s3.amazonaws.com"])
        .header("x-amz-content-sha256", [payload.as_str()])
        .header("x-amz-date", [S3_DATE])
        .header("x-amz-storage-class", ["REDUCED_REDUNDANCY"]);
    c.finish(
        "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
        payload.as_str(),
    );
    assert!(creq.starts_with("PUT\n/test%24file.text\n\n"));
    let sig = sign_canonical_request(&s3_key(), S3_DATE, &s3_scope(), &creq);
    assert_eq!(
        sig.as_str(),
        "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
    );
}

/// "Example: PUT Object" with STREAMING-AWS4-HMAC-SHA256-PAYLOAD: seed and chunk signatures.
#[test]
fn s3_chunked_upload() {
    let mut creq = String::new();
    let mut c = CanonicalRequest::new(&mut creq, "PUT");
    c.uri("/examplebucket/chunkObject.txt")
        .raw_query("")
        .header("content-encoding", ["aws-chunked"])
        .header("content-length", ["66824"])
        .header("host", ["s3.amazonaws.com"])
        .header("x-amz-content-sha256", [STREAMING_PAYLOAD])
        .header("x-amz-date", [S3_DATE])
        .header("x-amz-decoded-content-length", ["66560"])
        .header("x-amz-storage-class", ["REDUCED_REDUNDANCY"]);
    c.finish(
        "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;\
         x-amz-decoded-content-length;x-amz-storage-class",
        STREAMING_PAYLOAD,
    );
    let (key, scope) = (s3_key(), s3_scope());
    let mut sts = String::new();
    string_to_sign(&mut sts, S3_DATE, &scope, &creq);
    assert!(sts.ends_with("\ncee3fed04b70f867d036f722359b0b1f2f0e5dc0efadbc082b76c4c60e316455"));
    let seed = sign_canonical_request(&key, S3_DATE, &scope, &creq);
    assert_eq!(
        seed.as_str(),
        "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
    );

    let a64k = vec![b'a'; 65536];
    let mut sts = String::new();
    chunk_string_to_sign(&mut sts, S3_DATE, &scope, seed.as_str(), &a64k);
    assert_eq!(
        sts,
        "AWS4-HMAC-SHA256-PAYLOAD\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n\
         4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9\n\
         e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
         bf718b6f653bebc184e1479f1935b8da974d701b893afcf49e701f3e2f9f9c5a"
    );
    let c1 = chunk_signature(&key, S3_DATE, &scope, seed.as_str(), &a64k);
    assert_eq!(c1, sign(&key, &sts));
    assert_eq!(
        c1.as_str(),
        "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
    );
    let c2 = chunk_signature(&key, S3_DATE, &scope, c1.as_str(), &[b'a'; 1024]);
    assert_eq!(
        c2.as_str(),
        "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
    );
    let c3 = chunk_signature(&key, S3_DATE, &scope, c2.as_str(), b"");
    assert_eq!(
        c3.as_str(),
        "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"
    );
}

/// "Example: PUT Object" with STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER (sigv4-streaming-trailers).
#[test]
fn s3_chunked_upload_with_trailer() {
    let mut creq = String::new();
    let mut c = CanonicalRequest::new(&mut creq, "PUT");
    c.uri("/examplebucket/chunkObject.txt")
        .raw_query("")
        .header("content-encoding", ["aws-chunked"])
        .header("host", ["s3.amazonaws.com"])
        .header("x-amz-content-sha256", [STREAMING_PAYLOAD_TRAILER])
        .header("x-amz-date", [S3_DATE])
        .header("x-amz-decoded-content-length", ["66560"])
        .header("x-amz-storage-class", ["REDUCED_REDUNDANCY"])
        .header("x-amz-trailer", ["x-amz-checksum-crc32c"]);
    c.finish(
        "content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;\
         x-amz-storage-class;x-amz-trailer",
        STREAMING_PAYLOAD_TRAILER,
    );
    let (key, scope) = (s3_key(), s3_scope());
    let seed = sign_canonical_request(&key, S3_DATE, &scope, &creq);
    assert_eq!(
        seed.as_str(),
        "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
    );
    let c1 = chunk_signature(&key, S3_DATE, &scope, seed.as_str(), &[b'a'; 65536]);
    assert_eq!(
        c1.as_str(),
        "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2"
    );
    let c2 = chunk_signature(&key, S3_DATE, &scope, c1.as_str(), &[b'a'; 1024]);
    assert_eq!(
        c2.as_str(),
        "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7"
    );
    let c3 = chunk_signature(&key, S3_DATE, &scope, c2.as_str(), b"");
    assert_eq!(
        c3.as_str(),
        "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992"
    );
    let mut trailers = String::new();
    push_canonical_trailer(&mut trailers, "X-Amz-Checksum-Crc32c", " sOO8/Q== ");
    assert_eq!(trailers, "x-amz-checksum-crc32c:sOO8/Q==\n");
    let mut sts = String::new();
    trailer_string_to_sign(&mut sts, S3_DATE, &scope, c3.as_str(), trailers.as_bytes());
    assert_eq!(
        sts,
        "AWS4-HMAC-SHA256-TRAILER\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n\
         2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992\n\
         1e376db7e1a34a8ef1c4bcee131a2d60a1cb62503747488624e10995f448d774"
    );
    let t = trailer_signature(&key, S3_DATE, &scope, c3.as_str(), trailers.as_bytes());
    assert_eq!(t, sign(&key, &sts));
    assert_eq!(
        t.as_str(),
        "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"
    );
}

// ---- primitives -----------------------------------------------------------------------------

#[test]
fn signing_key_cache_and_long_secrets() {
    let mut c = SigningKeyCache::new();
    let k = c.get(S3_SECRET, "20130524", "us-east-1", "s3");
    assert_eq!(k, s3_key());
    assert_eq!(c.get(S3_SECRET, "20130524", "us-east-1", "s3"), k);
    assert_ne!(c.get(S3_SECRET, "20130525", "us-east-1", "s3"), k);
    assert_ne!(c.get(S3_SECRET, "20130524", "eu-west-1", "s3"), k);
    assert_ne!(c.get(S3_SECRET, "20130524", "us-east-1", "service"), k);
    assert_eq!(c.get(S3_SECRET, "20130524", "us-east-1", "s3"), k);
    // A secret longer than the stack buffer takes the heap path, same result.
    let long = "x".repeat(500);
    let mut v = b"AWS4".to_vec();
    v.extend_from_slice(long.as_bytes());
    let k1 = hmac_sha256(&v, b"20130524");
    let k2 = hmac_sha256(&k1, b"r");
    let k3 = hmac_sha256(&k2, b"s3");
    assert_eq!(
        signing_key(&long, "20130524", "r", "s3"),
        hmac_sha256(&k3, b"aws4_request")
    );
    let edge = "y".repeat(128);
    let mut v = b"AWS4".to_vec();
    v.extend_from_slice(edge.as_bytes());
    let k1 = hmac_sha256(&v, b"d");
    let k2 = hmac_sha256(&k1, b"r");
    let k3 = hmac_sha256(&k2, b"s");
    assert_eq!(
        signing_key(&edge, "d", "r", "s"),
        hmac_sha256(&k3, b"aws4_request")
    );
}

#[test]
fn uri_encoding() {
    let mut s = String::new();
    push_canonical_uri(&mut s, "/b/a b/c+d%e\u{e9}~_.-");
    assert_eq!(s, "/b/a%20b/c%2Bd%25e%C3%A9~_.-");
    let mut s = String::new();
    push_uri_encoded(&mut s, "x/y=z&", true);
    assert_eq!(s, "x%2Fy%3Dz%26");
    let mut s = String::new();
    push_canonical_query(
        &mut s,
        &[("prefix", "x/y"), ("list-type", "2"), ("acl", "")],
    );
    assert_eq!(s, "acl=&list-type=2&prefix=x%2Fy");
}

#[test]
fn header_values() {
    let mut s = String::new();
    push_header_value(&mut s, "  a \t b\u{a0} c  ");
    assert_eq!(s, "a b c");
    let mut s = String::new();
    push_header_value(&mut s, "plain");
    assert_eq!(s, "plain");
    let mut s = String::new();
    let mut c = CanonicalRequest::new(&mut s, "GET");
    c.raw_uri("/x").raw_query("a=b");
    c.header_name("h")
        .header_value(" 1 ")
        .header_value("2  3")
        .header_end();
    c.header("e", []);
    c.finish("e;h", UNSIGNED_PAYLOAD);
    assert_eq!(s, "GET\n/x\na=b\nh:1,2 3\ne:\n\ne;h\nUNSIGNED-PAYLOAD");
}

#[test]
fn authorization_header() {
    let v = "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature=abc";
    let a = parse_authorization(v).unwrap();
    assert_eq!(
        a,
        Authorization {
            access_key: "AK",
            date: "20130524",
            region: "us-east-1",
            service: "s3",
            terminal: "aws4_request",
            signed_headers: "host;x-amz-date",
            signature: "abc",
        }
    );
    assert_eq!(a.scope(), Scope::new("20130524", "us-east-1", "s3"));
    let mut out = String::new();
    push_authorization(
        &mut out,
        a.access_key,
        &a.scope(),
        a.signed_headers,
        a.signature,
    );
    assert_eq!(out, v);
    // Any order, spaces around components.
    let b = parse_authorization(
        "AWS4-HMAC-SHA256 Signature=abc,SignedHeaders=host , Credential=AK/d/r/s/t",
    )
    .unwrap();
    assert_eq!(
        (b.signature, b.signed_headers, b.terminal),
        ("abc", "host", "t")
    );
    for bad in [
        "AWS4-HMAC-SHA256",
        "AWS4-HMAC-SHA256Credential=AK/d/r/s/t, SignedHeaders=h, Signature=x",
        "AWS4-HMAC-SHA256 Credential=AK/d/r/s/t, SignedHeaders=h",
        "AWS4-HMAC-SHA256 Credential=AK/d/r/s, SignedHeaders=h, Signature=x",
        "AWS4-HMAC-SHA256 Credential=AK/d/r/s/t/u, SignedHeaders=h, Signature=x",
        "AWS AK:sig",
    ] {
        assert!(parse_authorization(bad).is_err(), "{bad}");
    }
    assert!(parse_authorization("AWS4-HMAC-SHA256 Credential=x")
        .unwrap_err()
        .contains("three components"));
    assert!(
        parse_authorization("AWS4-HMAC-SHA256 Credential=x, SignedHeaders=h, Signature=s")
            .unwrap_err()
            .contains("Credential is mal-formed")
    );
}

#[test]
fn constant_time_compare() {
    assert!(constant_time_eq(b"", b""));
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
}

#[test]
fn hex_and_digests() {
    assert_eq!(sha256_hex(b"").as_str(), EMPTY_SHA256);
    let mut s = String::from("x");
    push_hex_lower(&mut s, &[0, 0xab, 0xff]);
    assert_eq!(s, "x00abff");
    assert_eq!(format!("{}", sha256_hex(b"")), EMPTY_SHA256);
}

#[test]
fn amz_dates() {
    let t = 1_369_353_600; // 2013-05-24T00:00:00Z
    assert_eq!(parse_amz_date("20130524T000000Z"), Some(t));
    assert_eq!(parse_amz_date("2013-05-24"), None);
    assert_eq!(parse_amz_date("20130524T000000"), None);
    assert_eq!(parse_amz_date("20130230T000000Z"), None);
    assert_eq!(parse_amz_date("20130524T240000Z"), None);
    assert_eq!(parse_amz_date("2013052\u{e9}T00000Z"), None);
    assert_eq!(parse_amz_date("2013052AT000000Z"), None);
    assert_eq!(parse_amz_date("+0130524T000000Z"), None);
    let d = AmzDate::from_unix(t);
    assert_eq!(d.as_str(), "20130524T000000Z");
    assert_eq!(d.date(), "20130524");
    assert_eq!(AmzDate::from_unix(t + 86399).as_str(), "20130524T235959Z");
    assert_eq!(AmzDate::from_unix(0).as_str(), "19700101T000000Z");
    assert_eq!(
        AmzDate::from_unix(951_825_600 + 3661).as_str(),
        "20000229T130101Z"
    );
    for secs in [0, 1, 951_825_600, 1_369_353_600, 4_102_444_799] {
        assert_eq!(
            parse_amz_date(AmzDate::from_unix(secs).as_str()),
            Some(secs)
        );
    }
}

#[test]
fn request_dates() {
    let t = 1_369_353_600; // 2013-05-24T00:00:00Z
    assert_eq!(parse_request_date("Fri, 24 May 2013 00:00:00 GMT"), Some(t));
    assert_eq!(parse_request_date("24 May 2013 00:00:00 GMT"), Some(t));
    assert_eq!(
        parse_request_date("Fri, 24 May 2013 02:00:00 +0200"),
        Some(t)
    );
    assert_eq!(
        parse_request_date("Thu, 23 May 2013 23:00:00 -0100"),
        Some(t)
    );
    assert_eq!(parse_request_date("20130524T000000Z"), Some(t));
    assert_eq!(parse_request_date("whenever"), None);
    assert_eq!(parse_request_date(""), None);
    assert_eq!(parse_request_date("Fri, 24 May 2013 00:00:00"), None);
    assert_eq!(parse_request_date("Fri, 32 May 2013 00:00:00 GMT"), None);
    assert_eq!(parse_request_date("Fri, 24 Foo 2013 00:00:00 GMT"), None);
    assert_eq!(parse_request_date("Fri, 24 May 2013 0:00:00 GMT"), None);
    assert_eq!(parse_request_date("Xyz, 24 May 2013 00:00:00 GMT"), None);
    assert_eq!(parse_request_date("Fri, 24 May 2013 00:00:00 +2400"), None);
    assert_eq!(
        parse_request_date("Fri, 24 May 2013 00:00:00 +1\u{e9}2"),
        None
    );
    assert_eq!(parse_request_date("\u{e9}, 24 May 2013 00:00:00 GMT"), None);
}

// ---- SigV2 ----------------------------------------------------------------------------------

const NO_QUERY: &[(&str, &str)] = &[];

/// AWS's S3 SigV2 documentation ("Object GET", path-style form of
/// `GET /photos/puppy.jpg`, Host: johnsmith.s3.amazonaws.com).
#[test]
fn v2_aws_doc_object_get() {
    let mut h = http::HeaderMap::new();
    h.insert("host", "johnsmith.s3.amazonaws.com".parse().unwrap());
    h.insert("date", "Tue, 27 Mar 2007 19:36:42 +0000".parse().unwrap());
    let sts = v2::string_to_sign(
        &http::Method::GET,
        "/johnsmith/photos/puppy.jpg",
        NO_QUERY,
        &h,
        None,
    );
    assert_eq!(
        sts,
        "GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/johnsmith/photos/puppy.jpg"
    );
    assert_eq!(
        v2::signature(S3_SECRET, &sts),
        "bWq2s1WEIj+Ydj0vQ697zp+IXMU="
    );
}

// The newer documentation's examples, as s3s's own tests use them (path-style forms).
#[test]
fn v2_string_to_sign_matches_s3s() {
    let mut h = http::HeaderMap::new();
    h.insert("date", "Tue, 27 Mar 2007 19:36:42 +0000".parse().unwrap());
    let sts = v2::string_to_sign(
        &http::Method::GET,
        "/awsexamplebucket1/photos/puppy.jpg",
        NO_QUERY,
        &h,
        None,
    );
    assert_eq!(
        sts,
        "GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/awsexamplebucket1/photos/puppy.jpg"
    );
    assert_eq!(
        v2::signature(S3_SECRET, &sts),
        "qgk2+6Sv9/oM7G3qLEjTH1a1l1g="
    );

    let mut h = http::HeaderMap::new();
    h.insert("date", "Tue, 27 Mar 2007 21:06:08 +0000".parse().unwrap());
    h.insert("x-amz-acl", "public-read".parse().unwrap());
    h.insert("content-type", "application/x-download".parse().unwrap());
    h.insert("content-md5", "4gJE4saaMU4BqNR0kLY+lw==".parse().unwrap());
    h.append("x-amz-meta-reviewedby", "joe@example.com".parse().unwrap());
    h.append("x-amz-meta-reviewedby", "jane@example.com".parse().unwrap());
    h.insert("x-amz-meta-filechecksum", "0x02661779".parse().unwrap());
    h.insert("x-amz-meta-checksumalgorithm", "crc32".parse().unwrap());
    let sts = v2::string_to_sign(
        &http::Method::PUT,
        "/static.example.com/db-backup.dat.gz",
        NO_QUERY,
        &h,
        None,
    );
    assert_eq!(
        sts,
        "PUT\n4gJE4saaMU4BqNR0kLY+lw==\napplication/x-download\nTue, 27 Mar 2007 21:06:08 +0000\n\
         x-amz-acl:public-read\nx-amz-meta-checksumalgorithm:crc32\n\
         x-amz-meta-filechecksum:0x02661779\n\
         x-amz-meta-reviewedby:joe@example.com,jane@example.com\n\
         /static.example.com/db-backup.dat.gz"
    );
    assert_eq!(
        v2::signature(S3_SECRET, &sts),
        "jtBQa0Aq+DkULFI8qrpwIjGEx0E="
    );

    // x-amz-date present: the Date line is empty; sub-resources in s3s's order, a repeated
    // one left out.
    let mut h = http::HeaderMap::new();
    h.insert("date", "Tue, 27 Mar 2007 21:20:27 +0000".parse().unwrap());
    h.insert(
        "x-amz-date",
        "Tue, 27 Mar 2007 21:20:26 +0000".parse().unwrap(),
    );
    let q = [
        ("versionId", "v+1"),
        ("acl", ""),
        ("foo", "bar"),
        ("uploads", ""),
        ("tagging", ""),
        ("tagging", "x"),
    ];
    let sts = v2::string_to_sign(&http::Method::GET, "/b/k", &q, &h, None);
    assert_eq!(
        sts,
        "GET\n\n\n\nx-amz-date:Tue, 27 Mar 2007 21:20:26 +0000\n/b/k?acl&uploads&versionId=v+1"
    );

    // Presigned: the Expires value takes the Date line.
    let sts = v2::string_to_sign(
        &http::Method::GET,
        "/awsexamplebucket1/photos/puppy.jpg",
        NO_QUERY,
        &http::HeaderMap::new(),
        Some("1175139620"),
    );
    assert_eq!(
        sts,
        "GET\n\n\n1175139620\n/awsexamplebucket1/photos/puppy.jpg"
    );
}
