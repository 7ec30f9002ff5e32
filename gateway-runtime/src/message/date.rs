//! The `Date` field (RFC 9110 §6.6.1) for responses the gateway writes, formatted once
//! per second per worker thread rather than once per response.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

struct CachedDate {
    second: u64,
    /// `date: Sun, 06 Nov 1994 08:49:37 GMT\r\n`
    field: Vec<u8>,
}

thread_local! {
    static DATE: RefCell<CachedDate> = const {
        RefCell::new(CachedDate { second: u64::MAX, field: Vec::new() })
    };
}

/// Appends a `date` field line for the current second to `out`.
pub fn write_date_field(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|cached| {
        if cached.second != second {
            cached.second = second;
            cached.field.clear();
            cached.field.extend_from_slice(b"date: ");
            cached
                .field
                .extend_from_slice(httpdate::fmt_http_date(now).as_bytes());
            cached.field.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(&cached.field);
    });
}

#[cfg(test)]
mod tests {
    /// The field is an IMF-fixdate line.
    #[test]
    fn format() {
        let mut out = Vec::new();
        super::write_date_field(&mut out);
        let line = String::from_utf8(out).expect("ASCII");
        assert!(
            line.starts_with("date: ") && line.ends_with(" GMT\r\n"),
            "{line}"
        );
        assert_eq!(line.len(), "date: Sun, 06 Nov 1994 08:49:37 GMT\r\n".len());
    }
}
