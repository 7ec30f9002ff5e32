//! A call's target and body, filled with the request's values and the answers of
//! the calls it depends on.
//!
//! Every value is encoded for where it goes, so that no value adds structure of its
//! own: a route parameter is kept as received in a path (still percent-encoded, as
//! a rewrite keeps it) and has `& = + ;` encoded in a query; a query value has
//! `/ ? #` encoded too; a value from an answer is decoded text, so everything but
//! the unreserved characters is encoded. In a JSON body, values are decoded and
//! written as JSON strings, and `Json` writes an answer's value as the JSON it is.
//!
//! In a path, a query value or an answer's value must also be one whole segment
//! (`fits_in_path`). Encoding alone would not do: `..` and `.` are unreserved, so
//! `/teams/{user.team}` with `..` would reach `/` on the backend, an empty value
//! (`/users/`) names the collection instead of one member, and `%2F` is read as `/`
//! by some servers. A request whose query value does not fit is refused with 400
//! before any call (`query_values_fit`); an answer's value that does not fit fails
//! its call.

use std::borrow::Cow;
use std::fmt::Write;

use http::Uri;
use http::uri::PathAndQuery;
use percent_encoding::{
    AsciiSet, NON_ALPHANUMERIC, percent_decode_str, percent_encode, utf8_percent_encode,
};
use serde_json::Value;

use super::call::{Answered, CallError};
use crate::route::path::{encoded, query_values};
use crate::transform::shape::Step;

/// One piece of a compiled template.
#[derive(Debug, Clone, Copy)]
pub enum Piece {
    Text(&'static str),
    /// A value as text: encoded for the path or query in a target, a JSON string's
    /// content in a body.
    Value(Source),
    /// An answer's value as JSON (a body's `"{user.address}"`, a whole string).
    Json(Source),
}

/// Where a value comes from.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// The route's parameter at this position.
    Param(usize),
    /// The request's first query parameter of this name (empty without one).
    Query(&'static str),
    /// The value at `path` in the answer of the call this call needs at `slot`.
    Answer {
        slot: usize,
        /// The call's key, for errors.
        key: &'static str,
        path: &'static [Step],
        /// The reference as written (`user.team_id`), for errors.
        text: &'static str,
    },
}

/// What a template is filled from: the request and the answers of the calls this
/// call needs, in its slots' order.
pub struct Values<'a> {
    pub uri: &'a Uri,
    pub params: &'a matchit::Params<'a, 'a>,
    pub needs: &'a [&'a Result<Answered, CallError>],
}

/// `unreserved` of RFC 3986 §2.3 stays; everything else of an answer's text is
/// encoded.
const ANSWER_IN_TARGET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Whether the request's value of each query parameter in `names` (those the calls
/// put in a path) is one whole segment: what a request must give before any call.
pub fn query_values_fit(names: &[&str], uri: &Uri) -> bool {
    names.iter().all(|name| {
        fits_in_path(&percent_decode_str(first_query_value(uri, name)).collect::<Vec<u8>>())
    })
}

/// The request's first value of the query parameter `name`; empty without one.
fn first_query_value<'u>(uri: &'u Uri, name: &str) -> &'u str {
    query_values(uri.query().unwrap_or(""), name)
        .next()
        .unwrap_or("")
}

/// Whether decoded `value` can stand in a path as it is meant to: not empty, not a
/// dot segment, and without `/`, `\` or control characters, which make or end
/// segments on some servers however they are encoded.
fn fits_in_path(value: &[u8]) -> bool {
    !matches!(value, b"" | b"." | b"..")
        && !value
            .iter()
            .any(|&b| b == b'/' || b == b'\\' || b < 0x20 || b == 0x7f)
}

impl Values<'_> {
    /// The target, or why there is none.
    pub fn target(&self, pieces: &[Piece]) -> Result<PathAndQuery, CallError> {
        let mut out = String::with_capacity(64);
        let mut in_query = false;
        for piece in pieces {
            match piece {
                Piece::Text(text) => {
                    in_query |= text.contains('?');
                    out.push_str(text);
                }
                Piece::Value(Source::Param(i)) if in_query => {
                    encoded(&mut out, self.param(*i), &['&', '=', '+', ';', '#']);
                }
                Piece::Value(Source::Param(i)) => out.push_str(self.param(*i)),
                Piece::Value(Source::Query(name)) if in_query => {
                    encoded(
                        &mut out,
                        self.query(name),
                        &['&', '=', '+', ';', '/', '?', '#'],
                    );
                }
                // `query_values_fit` refused a request with a value that does not fit.
                Piece::Value(Source::Query(name)) => {
                    let value: Vec<u8> = percent_decode_str(self.query(name)).collect();
                    if !fits_in_path(&value) {
                        return Err(CallError::Target);
                    }
                    let _ = write!(out, "{}", percent_encode(&value, ANSWER_IN_TARGET));
                }
                Piece::Value(source) | Piece::Json(source) => {
                    let text = self.text(source)?;
                    if !in_query && !fits_in_path(text.as_bytes()) {
                        return Err(match source {
                            Source::Answer { text, .. } => CallError::NotSegment(text),
                            _ => CallError::Target,
                        });
                    }
                    let _ = write!(out, "{}", utf8_percent_encode(&text, ANSWER_IN_TARGET));
                }
            }
        }
        PathAndQuery::try_from(out).map_err(|_| CallError::Target)
    }

    /// The body: the pieces' JSON.
    pub fn body(&self, pieces: &[Piece]) -> Result<Vec<u8>, CallError> {
        let mut out = Vec::with_capacity(128);
        for piece in pieces {
            match piece {
                Piece::Text(text) => out.extend_from_slice(text.as_bytes()),
                Piece::Value(source) => {
                    // Written as a JSON string, then its quotes taken off: the text
                    // goes inside a string of the template.
                    let text = Value::String(self.text(source)?.into_owned()).to_string();
                    if let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
                        out.extend_from_slice(inner.as_bytes());
                    }
                }
                Piece::Json(source) => {
                    let value = self.answer(source)?;
                    let _ = serde_json::to_writer(&mut out, value.as_ref());
                }
            }
        }
        Ok(out)
    }

    fn param(&self, i: usize) -> &str {
        self.params.iter().nth(i).map_or("", |(_, v)| v)
    }

    fn query(&self, name: &str) -> &str {
        first_query_value(self.uri, name)
    }

    /// A value as decoded text: a scalar of an answer, or a request value.
    fn text(&self, source: &Source) -> Result<Cow<'_, str>, CallError> {
        let raw = match source {
            Source::Param(i) => self.param(*i),
            Source::Query(name) => self.query(name),
            Source::Answer { text, .. } => {
                return match self.answer(source)?.as_ref() {
                    Value::String(s) => Ok(Cow::Owned(s.clone())),
                    Value::Number(n) => Ok(Cow::Owned(n.to_string())),
                    Value::Bool(b) => Ok(Cow::Borrowed(if *b { "true" } else { "false" })),
                    _ => Err(CallError::NoValue(text)),
                };
            }
        };
        Ok(percent_decode_str(raw).decode_utf8_lossy())
    }

    /// The value an answer source names.
    fn answer(&self, source: &Source) -> Result<Cow<'_, Value>, CallError> {
        let Source::Answer {
            slot,
            key,
            path,
            text,
        } = source
        else {
            return Err(CallError::Target);
        };
        let answer = match self.needs.get(*slot) {
            Some(Ok(answered)) => &answered.answer,
            _ => return Err(CallError::Needs(key)),
        };
        match answer.at(path) {
            Some(value) if !value.is_null() => Ok(value),
            _ => Err(CallError::NoValue(text)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static TEAM_ID: &[Step] = &[Step::Key("team"), Step::Key("id")];
    static TEAM: &[Step] = &[Step::Key("team")];
    static NAME: &[Step] = &[Step::Key("name")];
    static ADDRESS: &[Step] = &[Step::Key("address")];

    fn filled(
        uri: &str,
        answer: &str,
        f: impl FnOnce(&Values<'_>) -> Result<String, CallError>,
    ) -> Result<String, CallError> {
        let mut router = matchit::Router::new();
        router.insert("/d/{id}", ()).expect("route");
        let uri: Uri = uri.parse().expect("uri");
        let matched = router.at(uri.path()).expect("match");
        let answer = Ok(Answered {
            answer: crate::aggregate::Answer::Value(serde_json::from_str(answer).expect("json")),
            caching: crate::aggregate::caching::Caching::default(),
        });
        let values = Values {
            uri: &uri,
            params: &matched.params,
            needs: &[&answer],
        };
        f(&values)
    }

    fn user(path: &'static [Step], text: &'static str) -> Source {
        Source::Answer {
            slot: 0,
            key: "user",
            path,
            text,
        }
    }

    #[test]
    fn targets_encode_each_value_for_its_place() {
        let pieces = [
            Piece::Text("/teams/"),
            Piece::Value(user(TEAM_ID, "user.team.id")),
            Piece::Text("/of/"),
            Piece::Value(Source::Param(0)),
            Piece::Text("?by="),
            Piece::Value(user(NAME, "user.name")),
            Piece::Text("&id="),
            Piece::Value(Source::Param(0)),
            Piece::Text("&q="),
            Piece::Value(Source::Query("q")),
        ];
        let target = filled(
            "/d/a%2Fb&c?q=x/y%26z",
            r#"{"team": {"id": 7}, "name": "a/b?c d&e"}"#,
            |v| v.target(&pieces).map(|t| t.to_string()),
        );
        assert_eq!(
            target.expect("target"),
            "/teams/7/of/a%2Fb&c?by=a%2Fb%3Fc%20d%26e&id=a%2Fb%26c&q=x%2Fy%26z"
        );
    }

    /// In a path a query value or an answer's value is one whole segment, decoded and
    /// encoded again; after the `?` it is data and keeps its dots and slashes.
    #[test]
    fn values_in_a_path_are_one_segment() {
        let pieces = [
            Piece::Text("/f/"),
            Piece::Value(Source::Query("name")),
            Piece::Text("/"),
            Piece::Value(user(NAME, "user.name")),
            Piece::Text("?q="),
            Piece::Value(Source::Query("name")),
            Piece::Text("&n="),
            Piece::Value(user(NAME, "user.name")),
        ];
        let target = |query: &str, name: &str| {
            let answer = serde_json::json!({ "name": name }).to_string();
            filled(&format!("/d/1?{query}"), &answer, |v| {
                v.target(&pieces).map(|t| t.to_string())
            })
        };
        assert_eq!(
            target("name=a%20b.c%FF", "x y.z").expect("target"),
            "/f/a%20b.c%FF/x%20y.z?q=a%20b.c%FF&n=x%20y.z"
        );
        for bad in [
            "name=..",
            "name=%2E",
            "name=",
            "",
            "name=a%2fb",
            "name=%5C",
            "name=%7F",
        ] {
            assert_eq!(target(bad, "n"), Err(CallError::Target), "{bad}");
        }
        for bad in ["..", ".", "", "a/b", "a\\b", "a\u{0}b", "\n"] {
            assert_eq!(
                target("name=n", bad),
                Err(CallError::NotSegment("user.name")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn bodies_are_json_with_values_escaped_or_whole() {
        let pieces = [
            Piece::Text(r#"{"id":""#),
            Piece::Value(Source::Param(0)),
            Piece::Text(r#"","team":"#),
            Piece::Json(user(TEAM, "user.team")),
            Piece::Text(r#","note":"by "#),
            Piece::Value(user(NAME, "user.name")),
            Piece::Text(r#""}"#),
        ];
        let body = filled("/d/a%22b", r#"{"team": {"id": 7}, "name": "q\"s"}"#, |v| {
            v.body(&pieces)
                .map(|b| String::from_utf8(b).expect("utf-8"))
        })
        .expect("body");
        let body: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(
            body,
            serde_json::json!({"id": "a\"b", "team": {"id": 7}, "note": "by q\"s"})
        );
    }

    #[test]
    fn a_missing_or_structured_value_is_an_error() {
        let pieces = [
            Piece::Text("/x/"),
            Piece::Value(user(ADDRESS, "user.address")),
        ];
        for answer in [
            r#"{"name": "n"}"#,
            r#"{"address": {"city": "c"}}"#,
            r#"{"address": null}"#,
        ] {
            assert_eq!(
                filled("/d/1", answer, |v| v.target(&pieces).map(|t| t.to_string())),
                Err(CallError::NoValue("user.address")),
                "{answer}"
            );
        }
    }
}
