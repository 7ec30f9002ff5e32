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
    use crate::message::fields::Fields;
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
        /// The route's parameter at this position.
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
        /// Known at start-up.
        Fixed(Box<[u8]>),
        Template(Box<[Part]>),
    }

    #[derive(Debug)]
    enum Part {
        Text(Box<[u8]>),
        Param(usize),
        ClientIp,
        Header(&'static [u8]),
    }

    /// What the request half of a policy computed for its response half: response
    /// values that read the request, in the order of their operations.
    #[derive(Debug, Default)]
    pub struct HeaderToken(Vec<Vec<u8>>);

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
            let response_reads_request = response.iter().any(|op| {
                matches!(
                    op,
                    Op::Set(_, Value::Template(_)) | Op::Add(_, Value::Template(_))
                )
            });
            Ok(HeaderRules {
                request,
                response,
                response_reads_request,
            })
        }

        /// The request phase: applies the request operations, and renders the response
        /// values that read the request. `slots[i]` is where the route captures the
        /// policy's `i`-th parameter.
        pub fn request(
            &self,
            req: &mut Request,
            params: &Params<'_, '_>,
            slots: &[usize],
            cx: &RequestContext,
        ) -> HeaderToken {
            let values = Values { params, slots, cx };
            let mut token = HeaderToken::default();
            if self.response_reads_request {
                for op in self.response.iter() {
                    if let Op::Set(_, Value::Template(parts)) | Op::Add(_, Value::Template(parts)) =
                        op
                    {
                        token.0.push(values.render(parts, &req.fields));
                    }
                }
            }
            for op in self.request.iter() {
                let fields = &mut req.fields;
                match op {
                    Op::Remove(name) => fields.remove(name),
                    Op::Rename(from, to) => rename(fields, from, to),
                    Op::Set(name, value) | Op::Add(name, value) => {
                        let rendered;
                        let value = match value {
                            Value::Fixed(bytes) => &bytes[..],
                            Value::Template(parts) => {
                                rendered = values.render(parts, fields);
                                &rendered[..]
                            }
                        };
                        if matches!(op, Op::Set(..)) {
                            fields.remove(name);
                        }
                        if !value.is_empty() {
                            fields.append(name, value);
                        }
                    }
                }
            }
            token
        }

        /// The response phase: applies the response operations.
        pub fn respond(&self, token: HeaderToken, response: &mut Response) {
            let fields = response.fields_mut();
            let mut rendered = token.0.into_iter();
            for op in self.response.iter() {
                match op {
                    Op::Remove(name) => fields.remove(name),
                    Op::Rename(from, to) => rename(fields, from, to),
                    Op::Set(name, value) | Op::Add(name, value) => {
                        let owned;
                        let value = match value {
                            Value::Fixed(bytes) => &bytes[..],
                            Value::Template(_) => {
                                owned = rendered.next().unwrap_or_default();
                                &owned[..]
                            }
                        };
                        if matches!(op, Op::Set(..)) {
                            fields.remove(name);
                        }
                        if !value.is_empty() {
                            fields.append(name, value);
                        }
                    }
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
                    let inner = text.trim_matches([' ', '\t']);
                    if !is_field_value(inner.as_bytes()) {
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
            [Part::Text(text)] => Value::Fixed(text.trim_ascii().into()),
            _ => Value::Template(resolved.into_boxed_slice()),
        })
    }

    /// What request values are read from.
    struct Values<'r> {
        params: &'r Params<'r, 'r>,
        slots: &'r [usize],
        cx: &'r RequestContext,
    }

    impl Values<'_> {
        fn render(&self, parts: &[Part], fields: &Fields) -> Vec<u8> {
            let mut out = Vec::new();
            for part in parts {
                match part {
                    Part::Text(text) => out.extend_from_slice(text),
                    Part::Param(slot) => {
                        let index = self.slots.get(*slot).copied().unwrap_or(usize::MAX);
                        if let Some((_, value)) = self.params.iter().nth(index) {
                            out.extend_from_slice(value.as_bytes());
                        }
                    }
                    Part::ClientIp => out.extend_from_slice(self.cx.client_ip.as_bytes()),
                    Part::Header(name) => {
                        if let Some(value) = fields.get(name) {
                            out.extend_from_slice(value);
                        }
                    }
                }
            }
            // Request values are field values already; only the template's own ends
            // may leave whitespace to trim.
            if out.trim_ascii().len() != out.len() {
                out = out.trim_ascii().to_vec();
            }
            out
        }
    }

    fn rename(fields: &mut Fields, from: &[u8], to: &[u8]) {
        let values: Vec<Vec<u8>> = fields.get_all(from).map(<[u8]>::to_vec).collect();
        if values.is_empty() {
            return;
        }
        fields.remove(from);
        for value in values {
            fields.append(to, &value);
        }
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
