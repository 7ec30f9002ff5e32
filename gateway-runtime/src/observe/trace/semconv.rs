//! The spans' names and attributes, after OpenTelemetry's stable HTTP semantic
//! conventions (<https://opentelemetry.io/docs/specs/semconv/http/http-spans/>).

use std::net::IpAddr;
use std::time::SystemTime;

use super::context::{Begun, SpanContext};
use super::span::{Attribute, SpanKind, SpanRecord};

/// The server span of a sampled request while it runs: what its attributes need of
/// the request, taken before the request moves on.
#[derive(Debug)]
pub struct ServerSpan {
    begun: Begun,
    start: SystemTime,
    method: &'static str,
    path: String,
    host: Option<String>,
    secure: bool,
    version: http::Version,
}

impl ServerSpan {
    /// Starts recording the request `begun` began, whose parts these are.
    pub fn start(
        begun: Begun,
        method: &http::Method,
        uri: &http::Uri,
        host: Option<&str>,
        secure: bool,
        version: http::Version,
    ) -> Box<ServerSpan> {
        Box::new(ServerSpan {
            begun,
            start: SystemTime::now(),
            method: known_method(method),
            path: uri.path().to_owned(),
            host: host.map(|host| strip_port(host).to_owned()),
            secure,
            version,
        })
    }

    /// The finished span: answered `status` on route `route` (its template), from
    /// `client`.
    pub fn finish(self, route: Option<&'static str>, status: u16, client: IpAddr) -> SpanRecord {
        let mut attributes = Vec::with_capacity(10);
        attributes.push(("http.request.method", Attribute::Name(self.method)));
        attributes.push(("url.path", Attribute::Text(self.path)));
        attributes.push((
            "url.scheme",
            Attribute::Name(if self.secure { "https" } else { "http" }),
        ));
        if let Some(route) = route {
            attributes.push(("http.route", Attribute::Name(route)));
        }
        attributes.push((
            "http.response.status_code",
            Attribute::Int(i64::from(status)),
        ));
        if let Some(host) = self.host {
            attributes.push(("server.address", Attribute::Text(host)));
        }
        attributes.push(("client.address", Attribute::Text(client.to_string())));
        attributes.push((
            "network.protocol.version",
            Attribute::Name(protocol_version(self.version)),
        ));
        // Server spans are errors on 5xx only: a 4xx is the client's (semantic
        // conventions, "Status").
        let error = (status >= 500).then(|| status.to_string());
        if let Some(code) = &error {
            attributes.push(("error.type", Attribute::Text(code.clone())));
        }
        SpanRecord {
            context: self.begun.span,
            parent: self.begun.parent,
            kind: SpanKind::Server,
            name: match route {
                Some(route) => format!("{} {route}", self.method),
                None => self.method.to_owned(),
            },
            start: self.start,
            end: SystemTime::now(),
            attributes,
            error,
        }
    }
}

/// A client span: one request of the gateway's to `upstream` at `authority`, `method`
/// on `path` (its query is left out: it may carry what should not leave the gateway).
#[derive(Debug)]
pub struct ClientSpan<'a> {
    pub context: SpanContext,
    pub parent: SpanContext,
    pub upstream: &'static str,
    pub method: &'a http::Method,
    pub scheme: &'static str,
    pub authority: &'a http::uri::Authority,
    pub path: &'a str,
    pub start: SystemTime,
}

impl ClientSpan<'_> {
    /// The span as it begins; `end` completes it.
    pub fn begin(self) -> SpanRecord {
        let method = known_method(self.method);
        let path = self.path.split('?').next().unwrap_or("/");
        let mut attributes = Vec::with_capacity(8);
        attributes.push(("http.request.method", Attribute::Name(method)));
        attributes.push((
            "url.full",
            Attribute::Text(format!("{}://{}{path}", self.scheme, self.authority)),
        ));
        attributes.push((
            "server.address",
            Attribute::Text(self.authority.host().to_owned()),
        ));
        let port = self
            .authority
            .port_u16()
            .unwrap_or(if self.scheme == "https" { 443 } else { 80 });
        attributes.push(("server.port", Attribute::Int(i64::from(port))));
        attributes.push(("gateway.upstream", Attribute::Name(self.upstream)));
        SpanRecord {
            context: self.context,
            parent: Some(self.parent.span_id),
            kind: SpanKind::Client,
            name: method.to_owned(),
            start: self.start,
            end: self.start,
            attributes,
            error: None,
        }
    }

    /// Ends `span` now, with what came back: a status, or the name of the fault.
    /// Client spans are errors from 4xx on, and when no answer came.
    pub fn end(span: &mut SpanRecord, outcome: Result<u16, &'static str>) {
        span.end = SystemTime::now();
        span.error = match outcome {
            Ok(status) => {
                span.attributes.push((
                    "http.response.status_code",
                    Attribute::Int(i64::from(status)),
                ));
                (status >= 400).then(|| status.to_string())
            }
            Err(fault) => Some(fault.to_owned()),
        };
        if let Some(kind) = &span.error {
            span.attributes
                .push(("error.type", Attribute::Text(kind.clone())));
        }
    }
}

/// The method as the conventions name it: one of the registered methods, or `_OTHER`,
/// which keeps an attacker's made-up methods out of span names.
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

fn protocol_version(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_10 => "1.0",
        _ => "1.1",
    }
}

/// `host` without its port: `server.address` is the name alone.
fn strip_port(host: &str) -> &str {
    match host.rfind(':') {
        // `[::1]:8080` or `example.com:8080`; not the colons inside `[::1]`.
        Some(colon) if !host[colon..].contains(']') => &host[..colon],
        _ => host,
    }
}
