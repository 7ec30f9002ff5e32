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

/// Appends `text` as a JSON string literal, quotes included.
pub fn quote_into(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    /// Quotes, backslashes and control characters are escaped.
    #[test]
    fn quoting() {
        assert_eq!(super::quote("a\"b\\\n\u{1}"), r#""a\"b\\\n\u0001""#);
    }
}
