//! The path an upstream sees: the request's own, its prefix stripped, or a rewrite
//! template filled with the route's parameters. The query is always carried over.

use std::fmt::Write;

use http::Uri;
use http::uri::PathAndQuery;

/// One piece of a compiled rewrite template.
#[derive(Debug, Clone, Copy)]
pub enum RewriteSegment<'a> {
    Literal(&'a str),
    /// The route's parameter at this position, in the path part.
    Param(usize),
    /// The route's parameter at this position, after the template's `?`: characters
    /// that would end or start a query parameter are percent-encoded, so a path value
    /// cannot add parameters of its own.
    QueryParam(usize),
}

/// The request's path without `prefix`. The compiler has checked that every path the
/// route matches starts with `prefix` at a segment boundary.
pub fn strip_prefix(uri: &Uri, prefix: &str) -> Option<PathAndQuery> {
    let rest = uri.path().strip_prefix(prefix).unwrap_or(uri.path());
    let mut out = String::with_capacity(rest.len() + 1 + uri.query().map_or(0, |q| q.len() + 1));
    if !rest.starts_with('/') {
        out.push('/');
    }
    out.push_str(rest);
    push_query(&mut out, uri);
    PathAndQuery::try_from(out).ok()
}

/// The rewrite template filled in, and the request's query after it. Parameter
/// values are taken from the request path as received (still percent-encoded), so
/// they cannot introduce new path structure.
pub fn rewrite(
    uri: &Uri,
    segments: &[RewriteSegment<'_>],
    params: &matchit::Params<'_, '_>,
) -> Option<PathAndQuery> {
    let mut out = String::with_capacity(uri.path().len() + 16);
    for segment in segments {
        match *segment {
            RewriteSegment::Literal(text) => out.push_str(text),
            RewriteSegment::Param(i) => out.push_str(param(params, i)),
            RewriteSegment::QueryParam(i) => {
                encoded(&mut out, param(params, i), &['&', '=', '+', ';']);
            }
        }
    }
    push_query(&mut out, uri);
    PathAndQuery::try_from(out).ok()
}

/// The values of the query parameters named `name`, as received (`""` for a name
/// without `=`).
pub fn query_values<'q>(query: &'q str, name: &str) -> impl Iterator<Item = &'q str> {
    query
        .split('&')
        .filter_map(move |pair| match pair.split_once('=') {
            Some((key, value)) if key == name => Some(value),
            None if pair == name => Some(""),
            _ => None,
        })
}

/// Appends `value` with each of `special` percent-encoded.
pub(crate) fn encoded(out: &mut String, value: &str, special: &[char]) {
    for c in value.chars() {
        if special.contains(&c) {
            let _ = write!(out, "%{:02X}", c as u32);
        } else {
            out.push(c);
        }
    }
}

fn param<'v>(params: &matchit::Params<'_, 'v>, i: usize) -> &'v str {
    params.iter().nth(i).map_or("", |(_, v)| v)
}

/// Appends the request's query, after the template's own query if it has one.
fn push_query(out: &mut String, uri: &Uri) {
    if let Some(query) = uri.query() {
        out.push(if out.contains('?') { '&' } else { '?' });
        out.push_str(query);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stripping keeps a leading slash and the query.
    #[test]
    fn strips() {
        let uri: Uri = "/api/orders/7?x=1".parse().unwrap();
        assert_eq!(strip_prefix(&uri, "/api").unwrap(), "/orders/7?x=1");
        assert_eq!(strip_prefix(&uri, "/api/").unwrap(), "/orders/7?x=1");
        let uri: Uri = "/api".parse().unwrap();
        assert_eq!(strip_prefix(&uri, "/api").unwrap(), "/");
    }

    /// Rewrites fill parameters by position.
    #[test]
    fn rewrites() {
        let mut router = matchit::Router::new();
        router.insert("/v2/users/{p0}/{*p1}", ()).unwrap();
        let uri: Uri = "/v2/users/42/a/b?q".parse().unwrap();
        let m = router.at(uri.path()).unwrap();
        let segments = [
            RewriteSegment::Literal("/users/"),
            RewriteSegment::Param(0),
            RewriteSegment::Literal("/files/"),
            RewriteSegment::Param(1),
        ];
        assert_eq!(
            rewrite(&uri, &segments, &m.params).unwrap(),
            "/users/42/files/a/b?q"
        );
    }
}
