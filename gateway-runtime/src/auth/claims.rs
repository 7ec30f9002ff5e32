//! Claims: looking one up by path, and turning one into a header value for the
//! upstream. A value that would need control characters in a field is refused rather
//! than cleaned, so a claim can never split or end the request head it is forwarded in.

use serde_json::{Map, Value};

/// The claims of a verified token or of an introspection answer.
pub type Claims = Map<String, Value>;

/// The claim at `path`: the top-level claim of that exact name if there is one (URL
/// claim names such as `https://example.com/roles` hold dots), otherwise the path
/// read through nested objects (`realm_access.roles`).
pub fn lookup<'c>(claims: &'c Claims, path: &str) -> Option<&'c Value> {
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    let mut parts = path.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

/// A claim forwarded to the upstream as a header.
#[derive(Debug, Clone, Copy)]
pub struct ClaimHeader {
    /// The claim's path (`sub`, `realm_access.roles`).
    pub claim: &'static str,
    /// Lower-case field name.
    pub header: &'static str,
}

/// A claim that cannot be forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unforwardable;

/// The header values of a policy's forwarded claims, rendered once when a credential
/// is verified, then set on every request it comes with; `None` for a claim it lacks.
#[derive(Debug, Default)]
pub struct Forwarded(Box<[Option<Box<[u8]>>]>);

impl Forwarded {
    pub fn render(claims: &Claims, headers: &[ClaimHeader]) -> Result<Self, Unforwardable> {
        headers
            .iter()
            .map(|forward| {
                lookup(claims, forward.claim)
                    .map(|value| header_value(value).map(Vec::into_boxed_slice))
                    .transpose()
            })
            .collect::<Result<_, _>>()
            .map(Forwarded)
    }

    /// Sets the values on `fields` (the driver has removed any a client sent).
    #[cfg(feature = "server")]
    pub fn apply(&self, headers: &[ClaimHeader], fields: &mut crate::message::fields::Fields) {
        for (header, value) in headers.iter().zip(&self.0) {
            if let Some(value) = value {
                fields.append(header.header.as_bytes(), value);
            }
        }
    }
}

/// The header value for a claim: a string as it is, an array's elements joined with
/// `,` (strings as they are, other values as JSON), anything else as JSON text.
pub fn header_value(value: &Value) -> Result<Vec<u8>, Unforwardable> {
    let mut out = Vec::new();
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(&mut out, item);
            }
        }
        other => write(&mut out, other),
    }
    if out.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(Unforwardable);
    }
    Ok(out)
}

fn write(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::String(text) => out.extend_from_slice(text.trim_matches([' ', '\t']).as_bytes()),
        // Serialising a `Value` into a `Vec` cannot fail.
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: &str) -> Claims {
        serde_json::from_str(json).expect("claims")
    }

    #[test]
    fn paths() {
        let c = claims(r#"{"sub":"u1","realm_access":{"roles":["a","b"]},"https://x.io/r":"v"}"#);
        assert_eq!(lookup(&c, "sub"), Some(&Value::from("u1")));
        assert_eq!(lookup(&c, "https://x.io/r"), Some(&Value::from("v")));
        assert!(lookup(&c, "realm_access.roles").is_some_and(Value::is_array));
        assert_eq!(lookup(&c, "realm_access.nope"), None);
        assert_eq!(lookup(&c, "sub.x"), None);
    }

    #[test]
    fn header_values() {
        let value = |json: &str| header_value(&serde_json::from_str(json).expect("json"));
        assert_eq!(value(r#""u1""#), Ok(b"u1".to_vec()));
        assert_eq!(value(r#"["a","b",3]"#), Ok(b"a,b,3".to_vec()));
        assert_eq!(value(r#"{"k":1}"#), Ok(br#"{"k":1}"#.to_vec()));
        assert_eq!(value("true"), Ok(b"true".to_vec()));
        assert_eq!(value(r#""a\r\nX-Admin: 1""#), Err(Unforwardable));
        assert_eq!(value(r#"["a\u0000"]"#), Err(Unforwardable));
        // JSON text escapes control characters, so nested values are safe as they are.
        assert_eq!(value(r#"{"k":"\n"}"#), Ok(br#"{"k":"\n"}"#.to_vec()));
    }
}
