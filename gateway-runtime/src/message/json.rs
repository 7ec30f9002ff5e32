//! Quoting for the few JSON texts written by hand (error bodies, `gateway check
//! --format json`, JSON access logs), where a serializer would be a dependency for one
//! function.

use std::fmt::Write as _;

/// `text` as a JSON string literal, quotes included (RFC 8259 §7).
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    quote_into(&mut out, text);
    out
}

/// Appends `text` as a JSON string literal, quotes included. Runs without an escape
/// are copied whole: the access log writes several per line.
pub fn quote_into(out: &mut String, text: &str) {
    out.push('"');
    let mut rest = text;
    while let Some(at) = rest
        .bytes()
        .position(|b| b == b'"' || b == b'\\' || b < 0x20)
    {
        // An ASCII byte: `at` and `at + 1` are character boundaries.
        out.push_str(&rest[..at]);
        match rest.as_bytes()[at] {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            control => {
                let _ = write!(out, "\\u{control:04x}");
            }
        }
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
    out.push('"');
}

#[cfg(test)]
mod tests {
    /// Quotes, backslashes and control characters are escaped.
    #[test]
    fn quoting() {
        assert_eq!(super::quote("a\"b\\\n\u{1}"), r#""a\"b\\\n\u0001""#);
        assert_eq!(
            super::quote("é\"x\u{1f}ü"),
            r#""é\"x\u001fü""#,
            "runs of any script"
        );
        assert_eq!(super::quote(""), r#""""#);
    }
}
