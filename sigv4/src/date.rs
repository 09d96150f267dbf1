//! Request dates: `x-amz-date` (ISO 8601 basic) and `Date` (RFC 1123).

/// Parses the date formats S3 accepts in `Date` / `x-amz-date`: RFC 1123
/// (`Sun, 06 Nov 1994 08:49:37 GMT`, also with a numeric zone like `+0000`) and ISO 8601
/// basic (`19941106T084937Z`). Unix seconds.
pub fn parse_request_date(s: &str) -> Option<i64> {
    let s = s.trim();
    if !s.is_ascii() {
        return None; // (and every slice below is on a char boundary)
    }
    if let Some(t) = parse_amz_date(s) {
        return Some(t);
    }
    let mut it = s.split_ascii_whitespace();
    let mut first = it.next()?;
    if first.ends_with(',') {
        let wd = &first[..first.len() - 1];
        if !matches!(wd, "Mon" | "Tue" | "Wed" | "Thu" | "Fri" | "Sat" | "Sun") {
            return None;
        }
        first = it.next()?;
    }
    let (day, mon, year, hms, zone) = (first, it.next()?, it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || day.len() > 2 || year.len() != 4 {
        return None;
    }
    let num = |s: &str| -> Option<u32> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == mon)? as u8
        + 1;
    let mut t = hms.split(':');
    let (h, mi, sec) = (t.next()?, t.next()?, t.next()?);
    if t.next().is_some() || h.len() != 2 || mi.len() != 2 || sec.len() != 2 {
        return None;
    }
    let offset_s: i64 = match zone {
        "GMT" | "UTC" | "UT" | "Z" => 0,
        z if z.len() == 5 && (z.starts_with('+') || z.starts_with('-')) => {
            let hh = num(&z[1..3])? as i64;
            let mm = num(&z[3..5])? as i64;
            if hh > 23 || mm > 59 {
                return None;
            }
            let o = hh * 3600 + mm * 60;
            if z.starts_with('-') {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    let date = time::Date::from_calendar_date(
        num(year)? as i32,
        time::Month::try_from(month).ok()?,
        u8::try_from(num(day)?).ok()?,
    )
    .ok()?;
    let tm = time::Time::from_hms(
        u8::try_from(num(h)?).ok()?,
        u8::try_from(num(mi)?).ok()?,
        u8::try_from(num(sec)?).ok()?,
    )
    .ok()?;
    Some(
        time::PrimitiveDateTime::new(date, tm)
            .assume_utc()
            .unix_timestamp()
            - offset_s,
    )
}

/// `YYYYMMDDTHHMMSSZ` -> unix seconds.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| -> Option<u32> {
        let d = &b[r];
        if !d.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(d).ok()?.parse().ok()
    };
    let date = time::Date::from_calendar_date(
        n(0..4)? as i32,
        time::Month::try_from(n(4..6)? as u8).ok()?,
        n(6..8)? as u8,
    )
    .ok()?;
    let t = time::Time::from_hms(n(9..11)? as u8, n(11..13)? as u8, n(13..15)? as u8).ok()?;
    Some(
        time::PrimitiveDateTime::new(date, t)
            .assume_utc()
            .unix_timestamp(),
    )
}

/// A request time as `YYYYMMDDTHHMMSSZ` (the `x-amz-date` form), on the stack.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AmzDate([u8; 16]);

impl AmzDate {
    /// Unix seconds -> `YYYYMMDDTHHMMSSZ` (UTC; years outside 0..=9999 clamped).
    pub fn from_unix(secs: i64) -> Self {
        let t = time::OffsetDateTime::from_unix_timestamp(secs)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let mut out = *b"00000000T000000Z";
        let mut put = |at: usize, width: usize, mut v: u32| {
            for i in (0..width).rev() {
                out[at + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, t.year().clamp(0, 9999) as u32);
        put(4, 2, t.month() as u32);
        put(6, 2, t.day() as u32);
        put(9, 2, t.hour() as u32);
        put(11, 2, t.minute() as u32);
        put(13, 2, t.second() as u32);
        AmzDate(out)
    }

    /// `YYYYMMDDTHHMMSSZ`
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    /// `YYYYMMDD` (the credential scope's date).
    pub fn date(&self) -> &str {
        &self.as_str()[..8]
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl std::fmt::Display for AmzDate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for AmzDate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AmzDate({})", self.as_str())
    }
}
