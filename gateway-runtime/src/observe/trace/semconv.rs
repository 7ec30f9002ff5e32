//! The spans' names, attributes and status, after OpenTelemetry's stable HTTP semantic
//! conventions (<https://opentelemetry.io/docs/specs/semconv/http/http-spans/>).

use std::net::IpAddr;

use super::context::{Begun, SpanContext};
use super::span::{SpanDetail, SpanRecord};
use crate::observe::clock::unix_nanos;

/// An attribute's value, as the exporter writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Text(&'a str),
    Int(i64),
    /// A number written as text (`error.type = "502"`).
    Digits(u16),
    Ip(IpAddr),
    /// `{scheme}://{authority}{path}`.
    Url(&'a str, &'a str, &'a str),
}

/// Why a span failed: its `error.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    Status(u16),
    Fault(&'static str),
}

impl SpanRecord {
    /// The server span of a sampled request, begun now.
    pub fn server(
        begun: Begun,
        method: &http::Method,
        uri: &http::Uri,
        host: Option<&str>,
        secure: bool,
        version: http::Version,
    ) -> Box<SpanRecord> {
        let now = unix_nanos();
        Box::new(SpanRecord {
            context: begun.span,
            parent: begun.parent,
            start: now,
            end: now,
            method: known_method(method),
            status: None,
            detail: SpanDetail::Server {
                route: None,
                path: uri.path().into(),
                host: host.map(|host| strip_port(host).into()),
                client: None,
                secure,
                version: match version {
                    http::Version::HTTP_2 => "2",
                    http::Version::HTTP_10 => "1.0",
                    _ => "1.1",
                },
            },
        })
    }

    /// Ends a server span: answered `status` on the route of template `template`, to
    /// `client`.
    pub fn answered(&mut self, template: Option<&'static str>, status: u16, peer: IpAddr) {
        self.end = unix_nanos();
        self.status = Some(status);
        if let SpanDetail::Server { route, client, .. } = &mut self.detail {
            *route = template;
            *client = Some(peer);
        }
    }

    /// A client span, begun now: the gateway's request `context` (a child of `parent`)
    /// to `upstream` at `authority`, `method` on `target` (its query is left out: it
    /// may carry what should not leave the gateway).
    pub fn client(
        context: SpanContext,
        parent: SpanContext,
        upstream: &'static str,
        method: &http::Method,
        secure: bool,
        authority: &http::uri::Authority,
        target: &str,
    ) -> Box<SpanRecord> {
        let now = unix_nanos();
        Box::new(SpanRecord {
            context,
            parent: Some(parent.span_id),
            start: now,
            end: now,
            method: known_method(method),
            status: None,
            detail: SpanDetail::Client {
                upstream,
                scheme: if secure { "https" } else { "http" },
                authority: authority.clone(),
                path: match target.bytes().position(|b| b == b'?') {
                    Some(query) => target[..query].into(),
                    None => target.into(),
                },
                fault: None,
            },
        })
    }

    /// Ends a client span with what came back: a status, or the fault's name.
    pub fn returned(&mut self, outcome: Result<u16, &'static str>) {
        self.end = unix_nanos();
        match outcome {
            Ok(status) => self.status = Some(status),
            Err(why) => {
                if let SpanDetail::Client { fault, .. } = &mut self.detail {
                    *fault = Some(why);
                }
            }
        }
    }

    pub fn is_server(&self) -> bool {
        matches!(self.detail, SpanDetail::Server { .. })
    }

    /// The span's name: `{method} {route}` for the server span (the method alone when
    /// no route matched), never the raw path; `{method}` for a client span.
    pub fn name(&self) -> (&'static str, Option<&'static str>) {
        match &self.detail {
            SpanDetail::Server { route, .. } => (self.method, *route),
            SpanDetail::Client { .. } => (self.method, None),
        }
    }

    /// Server spans fail on 5xx only (a 4xx is the client's); client spans from 4xx
    /// on, and when no response came.
    pub fn error(&self) -> Option<ErrorType> {
        match (&self.detail, self.status) {
            (
                SpanDetail::Client {
                    fault: Some(fault), ..
                },
                _,
            ) => Some(ErrorType::Fault(fault)),
            (SpanDetail::Server { .. }, Some(status)) if status >= 500 => {
                Some(ErrorType::Status(status))
            }
            (SpanDetail::Client { .. }, Some(status)) if status >= 400 => {
                Some(ErrorType::Status(status))
            }
            _ => None,
        }
    }

    /// Each attribute, in order.
    pub fn attributes(&self, mut visit: impl FnMut(&'static str, Value<'_>)) {
        visit("http.request.method", Value::Text(self.method));
        match &self.detail {
            SpanDetail::Server {
                route,
                path,
                host,
                client,
                secure,
                version,
            } => {
                visit("url.path", Value::Text(path));
                visit(
                    "url.scheme",
                    Value::Text(if *secure { "https" } else { "http" }),
                );
                if let Some(route) = route {
                    visit("http.route", Value::Text(route));
                }
                if let Some(host) = host {
                    visit("server.address", Value::Text(host));
                }
                if let Some(client) = client {
                    visit("client.address", Value::Ip(*client));
                }
                visit("network.protocol.version", Value::Text(version));
            }
            SpanDetail::Client {
                upstream,
                scheme,
                authority,
                path,
                ..
            } => {
                visit("url.full", Value::Url(scheme, authority.as_str(), path));
                let (host, port) = split_authority(authority.as_str());
                visit("server.address", Value::Text(host.trim_matches(['[', ']'])));
                let port = port.unwrap_or(if *scheme == "https" { 443 } else { 80 });
                visit("server.port", Value::Int(i64::from(port)));
                visit("gateway.upstream", Value::Text(upstream));
            }
        }
        if let Some(status) = self.status {
            visit("http.response.status_code", Value::Int(i64::from(status)));
        }
        match self.error() {
            Some(ErrorType::Status(status)) => visit("error.type", Value::Digits(status)),
            Some(ErrorType::Fault(fault)) => visit("error.type", Value::Text(fault)),
            None => {}
        }
    }
}

/// The method as the conventions name it: one of the registered methods, or `_OTHER`,
/// which keeps made-up methods out of span names.
fn known_method(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::PATCH => "PATCH",
        http::Method::TRACE => "TRACE",
        http::Method::CONNECT => "CONNECT",
        _ => "_OTHER",
    }
}

/// `host` without its port: `server.address` is the name alone.
fn strip_port(host: &str) -> &str {
    split_authority(host).0
}

/// A target's `host[:port]` (no userinfo: targets are checked at start-up), split by
/// the last `:` outside brackets. `http::uri::Authority::host` and `port_u16` do the
/// same with general searches that were a tenth of a sampled request's spans.
fn split_authority(authority: &str) -> (&str, Option<u16>) {
    let bytes = authority.as_bytes();
    match bytes.iter().rposition(|&b| b == b':') {
        // `[::1]:8080` or `example.com:8080`; not the colons inside `[::1]`.
        Some(colon) if !bytes[colon..].contains(&b']') => {
            (&authority[..colon], authority[colon + 1..].parse().ok())
        }
        _ => (authority, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:443"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(split_authority("10.0.0.1:8443"), ("10.0.0.1", Some(8443)));
        assert_eq!(split_authority("[::1]:80"), ("[::1]", Some(80)));
        assert_eq!(split_authority("api.example"), ("api.example", None));
    }
}
