//! The response head on the wire (docs/adr/0020-http-front.md): written exactly as hyper 1's
//! server writes it, with the `Date` formatted once per second per core and numbers formatted
//! without allocating.

use std::cell::Cell;

thread_local! {
    /// (unix second, "Sun, 06 Nov 1994 08:49:37 GMT") of the last Date written on this core.
    static DATE: Cell<(u64, [u8; 29])> = const { Cell::new((u64::MAX, [0; 29])) };
}

/// The length of a response body as hyper classifies it.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(super) enum BodyLen {
    /// Empty (`is_end_stream`).
    None,
    Known(u64),
    Unknown,
}

/// What the head written by [`encode_head`] says about the body.
#[derive(Debug, PartialEq)]
pub(super) struct Framing {
    pub(super) send_body: bool,
    pub(super) chunked: bool,
    pub(super) close: bool,
}

/// Writes the response head exactly as hyper 1's server writes it (lower-case names in the
/// map's order, `content-length` and `date` placed as hyper places them).
pub(super) fn encode_head(
    out: &mut Vec<u8>,
    status: http::StatusCode,
    headers: &http::HeaderMap,
    body: BodyLen,
    is_head: bool,
    date: &[u8],
) -> Framing {
    use http::header;
    if status == http::StatusCode::OK {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let no_content = matches!(
        status,
        http::StatusCode::NO_CONTENT | http::StatusCode::NOT_MODIFIED
    );
    let can_have_len = !status.is_informational() && !no_content;
    let can_have_body = !is_head && !status.is_informational() && !no_content;
    let mut f = Framing {
        send_body: can_have_body,
        chunked: false,
        close: false,
    };
    let mut wrote_len = false;
    let mut wrote_date = false;
    let line = |out: &mut Vec<u8>, name: &header::HeaderName, v: &http::HeaderValue| {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    for (name, v) in headers {
        if *name == header::CONTENT_LENGTH {
            match body {
                BodyLen::Known(_) | BodyLen::Unknown => {
                    if !wrote_len {
                        line(out, name, v);
                        wrote_len = true;
                    }
                }
                BodyLen::None if is_head => {
                    line(out, name, v);
                    wrote_len = true;
                }
                BodyLen::None => {}
            }
            continue;
        }
        if *name == header::CONNECTION
            && v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
        {
            f.close = true;
        }
        if *name == header::DATE {
            wrote_date = true;
        }
        line(out, name, v);
    }
    if !wrote_len {
        match body {
            BodyLen::Unknown => {
                if can_have_body {
                    out.extend_from_slice(b"transfer-encoding: chunked\r\n");
                    f.chunked = true;
                } else {
                    f.close = true;
                }
            }
            BodyLen::None | BodyLen::Known(0) => {
                if can_have_len && !is_head {
                    out.extend_from_slice(b"content-length: 0\r\n");
                }
            }
            BodyLen::Known(n) => {
                if can_have_len {
                    out.extend_from_slice(b"content-length: ");
                    let mut b = itoa_buf(n);
                    out.extend_from_slice(b.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
    }
    if !wrote_date {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(date);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    f
}

/// A decimal number without allocating.
pub(super) struct Digits {
    buf: [u8; 20],
    at: usize,
}

impl Digits {
    pub(super) fn as_bytes(&mut self) -> &[u8] {
        &self.buf[self.at..]
    }
}

pub(super) fn itoa_buf(mut n: u64) -> Digits {
    let mut d = Digits {
        buf: [0; 20],
        at: 20,
    };
    loop {
        d.at -= 1;
        d.buf[d.at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return d;
        }
    }
}

/// Today's `Date` value (IMF-fixdate), formatted once per second per core.
pub(super) fn date_now() -> [u8; 29] {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with(|c| {
        let (at, v) = c.get();
        if at == secs {
            return v;
        }
        let v = imf_fixdate(secs);
        c.set((secs, v));
        v
    })
}

fn imf_fixdate(secs: u64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let t = time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let mut o = [0u8; 29];
    let two = |o: &mut [u8], v: u8| {
        o[0] = b'0' + v / 10;
        o[1] = b'0' + v % 10;
    };
    o[..3].copy_from_slice(DAYS[t.weekday().number_days_from_monday() as usize]);
    o[3..5].copy_from_slice(b", ");
    two(&mut o[5..7], t.day());
    o[7] = b' ';
    o[8..11].copy_from_slice(MONTHS[t.month() as usize - 1]);
    o[11] = b' ';
    let y = t.year().clamp(0, 9999) as u16;
    two(&mut o[12..14], (y / 100) as u8);
    two(&mut o[14..16], (y % 100) as u8);
    o[16] = b' ';
    two(&mut o[17..19], t.hour());
    o[19] = b':';
    two(&mut o[20..22], t.minute());
    o[22] = b':';
    two(&mut o[23..25], t.second());
    o[25..29].copy_from_slice(b" GMT");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_imf_fixdate() {
        assert_eq!(&imf_fixdate(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(
            &imf_fixdate(1_369_353_600),
            b"Fri, 24 May 2013 00:00:00 GMT"
        );
        let now = date_now();
        assert_eq!(&now[25..], b" GMT");
    }

    #[test]
    fn digits() {
        for n in [0u64, 7, 10, 4096, u64::MAX] {
            assert_eq!(itoa_buf(n).as_bytes(), n.to_string().as_bytes());
        }
    }

    fn head_of(status: u16, h: &[(&str, &str)], body: BodyLen, is_head: bool) -> (String, Framing) {
        let mut m = http::HeaderMap::new();
        for (k, v) in h {
            m.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let mut out = Vec::new();
        let f = encode_head(
            &mut out,
            http::StatusCode::from_u16(status).unwrap(),
            &m,
            body,
            is_head,
            b"Sun, 06 Nov 1994 08:49:37 GMT",
        );
        (String::from_utf8(out).unwrap(), f)
    }

    /// The heads hyper 1 writes for the same responses (its `Server::encode`).
    #[test]
    fn heads_as_hyper_writes_them() {
        let d = "date: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n";
        let (s, f) = head_of(
            200,
            &[
                ("etag", "\"x\""),
                ("content-length", "3"),
                ("x-amz-request-id", "A"),
            ],
            BodyLen::Known(3),
            false,
        );
        assert_eq!(
            s,
            format!(
                "HTTP/1.1 200 OK\r\netag: \"x\"\r\ncontent-length: 3\r\nx-amz-request-id: A\r\n{d}"
            )
        );
        assert!(f.send_body && !f.chunked && !f.close);
        // HEAD: the body is empty, content-length kept in place, no body sent.
        let (s, f) = head_of(200, &[("content-length", "3")], BodyLen::None, true);
        assert_eq!(s, format!("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n{d}"));
        assert!(!f.send_body);
        // An empty GET body: the header is dropped and an implicit 0 goes last.
        let (s, _) = head_of(
            200,
            &[("content-length", "0"), ("etag", "e")],
            BodyLen::None,
            false,
        );
        assert_eq!(
            s,
            format!("HTTP/1.1 200 OK\r\netag: e\r\ncontent-length: 0\r\n{d}")
        );
        // No content-length header: hyper appends the body's length.
        let (s, _) = head_of(
            404,
            &[("content-type", "application/xml")],
            BodyLen::Known(12),
            false,
        );
        assert_eq!(
            s,
            format!("HTTP/1.1 404 Not Found\r\ncontent-type: application/xml\r\ncontent-length: 12\r\n{d}")
        );
        // HEAD of an error with a body: length announced, body not sent.
        let (s, f) = head_of(404, &[], BodyLen::Known(12), true);
        assert_eq!(
            s,
            format!("HTTP/1.1 404 Not Found\r\ncontent-length: 12\r\n{d}")
        );
        assert!(!f.send_body);
        // 304: no length at all.
        let (s, f) = head_of(304, &[("etag", "e")], BodyLen::None, false);
        assert_eq!(s, format!("HTTP/1.1 304 Not Modified\r\netag: e\r\n{d}"));
        assert!(!f.send_body);
        // Unknown length: chunked.
        let (s, f) = head_of(200, &[], BodyLen::Unknown, false);
        assert_eq!(
            s,
            format!("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n{d}")
        );
        assert!(f.chunked);
        // connection: close is kept and closes.
        let (_, f) = head_of(500, &[("connection", "close")], BodyLen::Known(1), false);
        assert!(f.close);
    }
}
