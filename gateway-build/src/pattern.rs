//! Route path patterns in matchit syntax (`/users/{id}`, `/files/{*rest}`), taken apart
//! so that checks can reason about their parameters and static prefix, and put back
//! together in a canonical form in which parameter names no longer matter.

use std::ops::Range;

/// A parsed path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// Parameters in order of appearance.
    pub params: Vec<Param>,
    /// The pattern with its parameters renamed `p0`, `p1`…: two routes with the same
    /// canonical pattern match exactly the same paths.
    pub canonical: String,
    /// The literal text before the first parameter.
    pub static_prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub catch_all: bool,
    /// Byte range of `{name}` inside the pattern.
    pub range: Range<usize>,
}

impl Pattern {
    pub fn param_index(&self, name: &str) -> Option<usize> {
        self.params.iter().position(|p| p.name == name)
    }
}

/// Parses a pattern; matchit itself is the judge of validity, so this only needs to
/// split a pattern that matchit accepted.
pub fn parse(pattern: &str) -> Result<Pattern, String> {
    let mut scratch = matchit::Router::new();
    scratch
        .insert(pattern, ())
        .map_err(|e| describe_insert_error(&e))?;
    let mut params = Vec::new();
    let mut canonical = String::with_capacity(pattern.len());
    let mut static_prefix = None;
    let mut chars = pattern.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|&(_, c)| c) == Some('{') => {
                chars.next();
                canonical.push_str("{{");
            }
            '}' if chars.peek().map(|&(_, c)| c) == Some('}') => {
                chars.next();
                canonical.push_str("}}");
            }
            '{' => {
                static_prefix.get_or_insert_with(|| unescape(&pattern[..at]));
                let close = pattern[at..]
                    .find('}')
                    .map(|i| at + i)
                    .ok_or("unclosed `{`")?;
                let inner = &pattern[at + 1..close];
                let (name, catch_all) = match inner.strip_prefix('*') {
                    Some(name) => (name, true),
                    None => (inner, false),
                };
                let star = if catch_all { "*" } else { "" };
                canonical.push_str(&format!("{{{star}p{}}}", params.len()));
                params.push(Param {
                    name: name.to_owned(),
                    catch_all,
                    range: at..close + 1,
                });
                while chars.peek().is_some_and(|&(i, _)| i <= close) {
                    chars.next();
                }
            }
            c => canonical.push(c),
        }
    }
    let static_prefix = static_prefix.unwrap_or_else(|| unescape(pattern));
    Ok(Pattern {
        params,
        canonical,
        static_prefix,
    })
}

/// One piece of a `rewrite` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RewritePart {
    Literal(String),
    /// A parameter by name, with its byte range inside the template.
    Param {
        name: String,
        range: Range<usize>,
    },
}

/// Splits a rewrite template such as `/users/{id}` into literal text and parameters;
/// `{*rest}` and `{rest}` both name the catch-all `rest`.
pub fn parse_rewrite(template: &str) -> Result<Vec<RewritePart>, (Range<usize>, String)> {
    let mut parts = Vec::new();
    let mut rest = 0;
    while let Some(open) = template[rest..].find('{').map(|i| rest + i) {
        if open > rest {
            parts.push(RewritePart::Literal(template[rest..open].to_owned()));
        }
        let close = template[open..]
            .find('}')
            .map(|i| open + i)
            .ok_or_else(|| (open..template.len(), "unclosed `{`".to_owned()))?;
        let name = template[open + 1..close].trim_start_matches('*');
        if name.is_empty() || name.contains('{') {
            return Err((open..close + 1, "write a parameter as `{name}`".to_owned()));
        }
        parts.push(RewritePart::Param {
            name: name.to_owned(),
            range: open..close + 1,
        });
        rest = close + 1;
    }
    if rest < template.len() {
        parts.push(RewritePart::Literal(template[rest..].to_owned()));
    }
    Ok(parts)
}

fn unescape(text: &str) -> String {
    text.replace("{{", "{").replace("}}", "}")
}

/// matchit's insert errors, in our message style.
pub fn describe_insert_error(e: &matchit::InsertError) -> String {
    match e {
        matchit::InsertError::Conflict { with } => format!("conflicts with `{with}`"),
        matchit::InsertError::InvalidParamSegment => {
            "only one parameter is allowed per path segment".into()
        }
        matchit::InsertError::InvalidParam => {
            "parameters must be written `{name}` with a non-empty name (write `{{` or `}}` for a literal brace)".into()
        }
        matchit::InsertError::InvalidCatchAll => {
            "a catch-all parameter `{*name}` must be the last segment".into()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parameter names vanish from the canonical form.
    #[test]
    fn canonical_forms_ignore_parameter_names() {
        let a = parse("/x/{id}/files/{*rest}").unwrap();
        let b = parse("/x/{user_id}/files/{*path}").unwrap();
        assert_eq!(a.canonical, "/x/{p0}/files/{*p1}");
        assert_eq!(a.canonical, b.canonical);
        assert_eq!(a.static_prefix, "/x/");
        assert_eq!(a.param_index("rest"), Some(1));
        assert!(a.params[1].catch_all);
        assert_eq!(a.params[0].range, 3..7);
    }

    /// Patterns matchit refuses are refused with its reason.
    #[test]
    fn invalid_patterns() {
        assert!(parse("/x/{*rest}/y").unwrap_err().contains("catch-all"));
        assert!(parse("/x/{}").is_err());
        assert_eq!(parse("/static").unwrap().static_prefix, "/static");
    }

    /// Rewrite templates name parameters with or without the catch-all star.
    #[test]
    fn rewrites() {
        let parts = parse_rewrite("/u/{id}/{*rest}").unwrap();
        assert_eq!(parts.len(), 4);
        assert_eq!(
            parts[3],
            RewritePart::Param {
                name: "rest".into(),
                range: 8..15
            }
        );
        assert!(parse_rewrite("/u/{id").is_err());
        assert!(parse_rewrite("/u/{}").is_err());
    }
}
