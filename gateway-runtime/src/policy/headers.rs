//! Header rules: set, add, remove and rename request fields (request phase) and
//! response fields (response phase).
//!
//! Within one policy the operations run in a fixed order: remove, rename, set, add.
//! `set` replaces every field of the name; `add` appends one more. A value is a
//! template: literal text, which may hold `${env:…}` and `${file:…}` references resolved
//! once at start-up (for credentials meant for the upstream), and request values
//! filled in per request: `{param.NAME}` (a route parameter), `{client_ip}` (the peer
//! address) and `{header.NAME}` (the first value of a request field); `{{` and `}}`
//! are literal braces. A value that comes out empty adds no field, as nginx's
//! `proxy_set_header` does. Response values are rendered in the request phase, since
//! the request has moved on to the upstream by the response phase.
//!
//! Names must be RFC 9110 tokens and literal values field values (§5.5: no CR, LF or
//! NUL). Fields that frame the message or concern one hop (`Connection`,
//! `Content-Length`, `Transfer-Encoding`, …) and the ones the proxy itself writes
//! (`Host`, `X-Forwarded-*`) cannot be touched: the gateway frames every message and
//! sets those, so a rule on them would either break the message or be overwritten.

/// Whether `name` is an RFC 9110 token (§5.6.2), as a field name must be.
pub fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// Whether `value` is a field value (RFC 9110 §5.5): visible characters, spaces and
/// tabs, not starting or ending with whitespace; bytes above 127 pass as obs-text.
pub fn is_field_value(value: &[u8]) -> bool {
    let no_controls = value
        .iter()
        .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f));
    let trimmed = value.first().is_none_or(|b| !matches!(b, b' ' | b'\t'))
        && value.last().is_none_or(|b| !matches!(b, b' ' | b'\t'));
    no_controls && trimmed
}

/// Why a rule may not touch the field `name`, if it may not.
pub fn forbidden(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    match lower.as_str() {
        "connection"
        | "keep-alive"
        | "proxy-connection"
        | "te"
        | "upgrade"
        | "trailer"
        | "proxy-authenticate"
        | "proxy-authorization" => Some("it concerns one connection only (hop-by-hop)"),
        "content-length" | "transfer-encoding" => Some("the gateway frames every message itself"),
        "host" | "x-forwarded-for" | "x-forwarded-proto" | "x-forwarded-host" => {
            Some("the gateway sets it on every forwarded request")
        }
        _ => None,
    }
}

/// One piece of a value template, as parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    /// Literal text, still holding any `${…}` references.
    Text(String),
    Param(String),
    ClientIp,
    Header(String),
}

/// Splits a value into literal text and request values.
pub fn parse_value(text: &str) -> Result<Vec<TemplatePart>, String> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("$${") {
            literal.push_str("$${");
            rest = &rest[3..];
        } else if rest.starts_with("${") {
            // A start-up reference: kept whole for `Setting::resolve`.
            let end = rest.find('}').ok_or("unclosed `${`")?;
            literal.push_str(&rest[..=end]);
            rest = &rest[end + 1..];
        } else if rest.starts_with("{{") || rest.starts_with("}}") {
            literal.push(c);
            rest = &rest[2..];
        } else if c == '{' {
            let end = rest
                .find('}')
                .ok_or("unclosed `{`: write `{{` for a literal brace")?;
            let inner = &rest[1..end];
            let part = if inner == "client_ip" {
                TemplatePart::ClientIp
            } else if let Some(name) = inner.strip_prefix("param.") {
                TemplatePart::Param(name.to_owned())
            } else if let Some(name) = inner.strip_prefix("header.") {
                if !is_token(name) {
                    return Err(format!("`{name}` is not a header name"));
                }
                TemplatePart::Header(name.to_ascii_lowercase())
            } else {
                return Err(format!(
                    "unknown value `{{{inner}}}`: use `{{param.NAME}}`, `{{client_ip}}` or `{{header.NAME}}` (`{{{{` for a literal brace)"
                ));
            };
            if !literal.is_empty() {
                parts.push(TemplatePart::Text(std::mem::take(&mut literal)));
            }
            parts.push(part);
            rest = &rest[end + 1..];
        } else if c == '}' {
            return Err("a lone `}`: write `}}` for a literal brace".into());
        } else {
            literal.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    if !literal.is_empty() {
        parts.push(TemplatePart::Text(literal));
    }
    Ok(parts)
}

#[cfg(feature = "server")]
pub use rules::{HeaderOp, HeaderRules, HeaderRulesSpec, HeaderToken, ValuePart};

#[cfg(feature = "server")]
mod rules {
    use super::is_field_value;
    use crate::message::fields::{Fields, ValueWriter};
    use crate::message::response::Response;
    use crate::pipeline::RequestContext;
    use crate::pipeline::gateway::{Params, Request};
    use crate::settings::{Setting, SettingError};

    /// A header policy as compiled: its operations in their order of application.
    #[derive(Debug)]
    pub struct HeaderRulesSpec {
        pub name: &'static str,
        pub request: &'static [HeaderOp],
        pub response: &'static [HeaderOp],
    }

    /// One operation; names as written, compared without regard to case.
    #[derive(Debug)]
    pub enum HeaderOp {
        Remove(&'static str),
        Rename {
            from: &'static str,
            to: &'static str,
        },
        Set {
            name: &'static str,
            value: &'static [ValuePart],
        },
        Add {
            name: &'static str,
            value: &'static [ValuePart],
        },
    }

    /// One piece of a compiled value.
    #[derive(Debug)]
    pub enum ValuePart {
        /// Resolved at start-up.
        Text(Setting),
        /// The route parameter the route passes at this position.
        Param(usize),
        ClientIp,
        /// A request field, lower-case.
        Header(&'static str),
    }

    /// A header policy ready for requests: references resolved and checked.
    #[derive(Debug)]
    pub struct HeaderRules {
        request: Box<[Op]>,
        response: Box<[Op]>,
        /// Whether some response value needs the request.
        response_reads_request: bool,
    }

    #[derive(Debug)]
    enum Op {
        Remove(&'static [u8]),
        Rename(&'static [u8], &'static [u8]),
        Set(&'static [u8], Value),
        Add(&'static [u8], Value),
    }

    #[derive(Debug)]
    enum Value {
        /// Known at start-up, trimmed and not empty: copied as it is.
        Fixed(Box<[u8]>),
        /// Known at start-up to be empty: adds nothing.
        Empty,
        /// Read from the request each time.
        Template(Box<[Part]>),
    }

    #[derive(Debug)]
    enum Part {
        Text(Box<[u8]>),
        Param(usize),
        ClientIp,
        Header(&'static [u8]),
    }

    impl Op {
        /// The value of a `Set` or `Add` that reads the request.
        fn request_value(&self) -> Option<&[Part]> {
            match self {
                Op::Set(_, Value::Template(parts)) | Op::Add(_, Value::Template(parts)) => {
                    Some(parts)
                }
                _ => None,
            }
        }
    }

    /// What the request half of a policy computed for its response half: response
    /// values that read the request, in the order of their operations.
    #[derive(Debug, Default)]
    pub struct HeaderToken(Vec<Vec<u8>>);

    /// Where a value's request pieces come from. `params[i]` is the route's
    /// parameter key (`p0`, …) of the policy's `i`-th parameter.
    struct Values<'r> {
        params: &'r Params<'r, 'r>,
        keys: &'r [&'static str],
        cx: &'r RequestContext,
    }

    impl Values<'_> {
        fn write(&self, parts: &[Part], w: &mut ValueWriter<'_>) {
            for part in parts {
                match part {
                    Part::Text(text) => w.push(text),
                    Part::Param(slot) => {
                        let key = self.keys.get(*slot).copied().unwrap_or_default();
                        w.push(self.params.get(key).unwrap_or_default().as_bytes());
                    }
                    Part::ClientIp => w.push(self.cx.client_ip.as_bytes()),
                    Part::Header(name) => w.push_field(name),
                }
            }
        }
    }

    impl HeaderRules {
        /// Resolves the references of `spec`, naming every bad value.
        pub fn new(spec: &'static HeaderRulesSpec) -> Result<Self, Vec<SettingError>> {
            let mut errors = Vec::new();
            let mut ops = |list: &'static [HeaderOp]| -> Box<[Op]> {
                list.iter()
                    .filter_map(|op| match op {
                        HeaderOp::Remove(name) => Some(Op::Remove(name.as_bytes())),
                        HeaderOp::Rename { from, to } => {
                            Some(Op::Rename(from.as_bytes(), to.as_bytes()))
                        }
                        HeaderOp::Set { name, value } => value_of(value, &mut errors)
                            .map(|value| Op::Set(name.as_bytes(), value)),
                        HeaderOp::Add { name, value } => value_of(value, &mut errors)
                            .map(|value| Op::Add(name.as_bytes(), value)),
                    })
                    .collect()
            };
            let request = ops(spec.request);
            let response = ops(spec.response);
            if !errors.is_empty() {
                return Err(errors);
            }
            let response_reads_request = response.iter().any(|op| op.request_value().is_some());
            Ok(HeaderRules {
                request,
                response,
                response_reads_request,
            })
        }

        /// The request phase: applies the request operations, and renders the response
        /// values that read the request. Inlined into the route's function, where the
        /// common case (constant values, no response values to render) is a loop over
        /// the operations and nothing else. `keys[i]` is the route's key for the policy's
        /// `i`-th parameter.
        #[inline]
        pub fn request(
            &self,
            req: &mut Request,
            params: &Params<'_, '_>,
            keys: &[&'static str],
            cx: &RequestContext,
        ) -> HeaderToken {
            let values = Values { params, keys, cx };
            let mut token = HeaderToken::default();
            if self.response_reads_request {
                for parts in self.response.iter().filter_map(Op::request_value) {
                    let mut rendered = Vec::new();
                    req.fields
                        .write_value(&mut rendered, |w| values.write(parts, w));
                    token.0.push(rendered);
                }
            }
            apply(&self.request, &mut req.fields, |parts, w| {
                values.write(parts, w)
            });
            token
        }

        /// The response phase: applies the response operations.
        pub fn respond(&self, token: HeaderToken, response: &mut Response) {
            let mut rendered = token.0.into_iter();
            apply(&self.response, response.fields_mut(), |_, w| {
                w.push(&rendered.next().unwrap_or_default());
            });
        }
    }

    /// Applies `ops` to `fields`, with `write` writing each templated value. Fixed
    /// values are copied as they are: most rules set a constant.
    #[inline]
    fn apply(
        ops: &[Op],
        fields: &mut Fields,
        mut write: impl FnMut(&[Part], &mut ValueWriter<'_>),
    ) {
        for op in ops {
            match op {
                Op::Remove(name) => fields.remove(name),
                Op::Rename(from, to) => fields.rename(from, to),
                Op::Set(name, Value::Fixed(value)) => fields.set(name, value),
                Op::Set(name, Value::Empty) => fields.remove(name),
                Op::Set(name, Value::Template(parts)) => fields.set_with(name, |w| write(parts, w)),
                Op::Add(name, Value::Fixed(value)) => fields.append(name, value),
                Op::Add(_, Value::Empty) => {}
                Op::Add(name, Value::Template(parts)) => {
                    fields.append_with(name, |w| write(parts, w));
                }
            }
        }
    }

    /// A compiled value with its references resolved; `None` after recording why not.
    fn value_of(parts: &'static [ValuePart], errors: &mut Vec<SettingError>) -> Option<Value> {
        let mut resolved = Vec::with_capacity(parts.len());
        for part in parts {
            resolved.push(match part {
                ValuePart::Text(setting) => {
                    let text = match setting.resolve() {
                        Ok(text) => text,
                        Err(e) => {
                            errors.push(e);
                            return None;
                        }
                    };
                    // Whitespace at the ends is allowed next to request values.
                    if !is_field_value(text.trim_matches([' ', '\t']).as_bytes()) {
                        errors.push(SettingError::new(
                            setting.origin,
                            "the value holds a control character (CR, LF, NUL…), which a header field cannot carry",
                        ));
                        return None;
                    }
                    Part::Text(text.into_bytes().into_boxed_slice())
                }
                ValuePart::Param(i) => Part::Param(*i),
                ValuePart::ClientIp => Part::ClientIp,
                ValuePart::Header(name) => Part::Header(name.as_bytes()),
            });
        }
        Some(match resolved.as_slice() {
            [Part::Text(text)] if text.trim_ascii().is_empty() => Value::Empty,
            [Part::Text(text)] => Value::Fixed(text.trim_ascii().into()),
            _ => Value::Template(resolved.into_boxed_slice()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names are tokens; values are field values without control characters.
    #[test]
    fn names_and_values() {
        assert!(is_token("X-Request-Id"));
        assert!(!is_token("X Request"));
        assert!(!is_token("X:Y"));
        assert!(!is_token(""));
        assert!(is_field_value(b"a b\tc"));
        assert!(is_field_value("caf\u{e9}".as_bytes()));
        assert!(!is_field_value(b"a\r\nX-Evil: 1"));
        assert!(!is_field_value(b"a\0"));
        assert!(!is_field_value(b" a"));
        assert!(forbidden("Content-Length").is_some());
        assert!(forbidden("x-forwarded-for").is_some());
        assert!(forbidden("X-Env").is_none());
    }

    /// Templates split into text and request values, with braces escaped.
    #[test]
    fn templates() {
        assert_eq!(
            parse_value("user-{param.id} from {client_ip}, {header.X-Trace} {{x}} ${env:A}")
                .unwrap(),
            vec![
                TemplatePart::Text("user-".into()),
                TemplatePart::Param("id".into()),
                TemplatePart::Text(" from ".into()),
                TemplatePart::ClientIp,
                TemplatePart::Text(", ".into()),
                TemplatePart::Header("x-trace".into()),
                TemplatePart::Text(" {x} ${env:A}".into()),
            ]
        );
        assert!(parse_value("{nope}").unwrap_err().contains("unknown value"));
        assert!(parse_value("{param.id").is_err());
        assert!(parse_value("a}").is_err());
    }
}
