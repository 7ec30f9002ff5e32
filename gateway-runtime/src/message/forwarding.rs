//! Header rules of a proxy: hop-by-hop headers stop here (RFC 9110 §7.6.1), and the
//! upstream learns who the client was through `X-Forwarded-*`.

use http::HeaderValue;

use crate::h1::framing::MAX_CONNECTION_OPTIONS;
use crate::message::fields::{Fields, is};
use crate::observe::trace::SpanContext;

/// Whether a field concerns one connection only (RFC 9110 §7.6.1, plus the proxy
/// credentials of RFC 9110 §11.7), in any case. `Transfer-Encoding` is among them:
/// the gateway frames each message it sends itself. Runs for every field of every
/// message, so it compares lengths before bytes: most names fail on the length alone.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    match name.len() {
        2 => is(name, b"te"),
        7 => is(name, b"upgrade"),
        10 => is(name, b"connection") || is(name, b"keep-alive"),
        16 => is(name, b"proxy-connection"),
        17 => is(name, b"transfer-encoding"),
        18 => is(name, b"proxy-authenticate"),
        19 => is(name, b"proxy-authorization"),
        _ => false,
    }
}

/// The options a message's `Connection` fields list (RFC 9110 §7.6.1: the sender marks
/// those fields as meant for this hop only), gathered once so that checking each field
/// against them is linear in the fields. Parsers refuse messages with more than
/// `MAX_CONNECTION_OPTIONS`; past that many, the rest are not gathered.
#[derive(Debug)]
pub struct ConnectionOptions<'f> {
    options: [&'f [u8]; MAX_CONNECTION_OPTIONS],
    len: usize,
}

impl<'f> ConnectionOptions<'f> {
    pub fn of(fields: &'f Fields) -> Self {
        let mut gathered = Self {
            options: [&[]; MAX_CONNECTION_OPTIONS],
            len: 0,
        };
        for option in fields.list_members(b"connection") {
            if gathered.len < MAX_CONNECTION_OPTIONS {
                gathered.options[gathered.len] = option;
                gathered.len += 1;
            }
        }
        gathered
    }

    /// Whether the options list `name`, in any case.
    pub fn lists(&self, name: &[u8]) -> bool {
        self.options[..self.len]
            .iter()
            .any(|option| option.len() == name.len() && option.eq_ignore_ascii_case(name))
    }
}

/// How the body of a forwarded request is framed on the upstream connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body and no framing field.
    None,
    Length(u64),
    Chunked,
}

/// What a forwarded request says about the hop it came from.
#[derive(Debug)]
pub struct Forwarding<'a> {
    /// `Host` sent upstream.
    pub host: &'a HeaderValue,
    pub client_ip: &'a HeaderValue,
    /// The host the client asked for, sent as `X-Forwarded-Host`.
    pub original_host: Option<&'a [u8]>,
    /// The protocol version the client spoke, for `Via`.
    pub received: http::Version,
    /// The client connected over TLS: `X-Forwarded-Proto: https`.
    pub secure: bool,
    /// The gateway's span of this upstream request: sent as `traceparent` in place of
    /// the client's. `None` with tracing off, when the client's passes through.
    pub trace: Option<SpanContext>,
}

/// Writes the HTTP/1.1 head of the request sent upstream, straight from the client's
/// request: hop-by-hop fields and those `Connection` lists are left out; `Host`,
/// `X-Forwarded-Proto` and `X-Forwarded-Host` are replaced; `X-Forwarded-For` gets the
/// client appended as nginx's `$proxy_add_x_forwarded_for` does (several field lines
/// are one list, RFC 9110 §5.3, and are joined); `Via` is added (RFC 9110 §7.6.3); and
/// the body framing is the gateway's own. The client's fields are only read, and go out
/// as the lines they came in.
pub fn write_request_head(
    out: &mut Vec<u8>,
    method: &http::Method,
    target: &str,
    fields: &Fields,
    forwarding: &Forwarding<'_>,
    framing: RequestFraming,
) {
    out.clear();
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(forwarding.host.as_bytes());
    out.extend_from_slice(b"\r\n");
    // Gathered only when there is a `Connection` field: most requests have none.
    let connection = fields
        .get(b"connection")
        .map(|_| ConnectionOptions::of(fields));
    let mut forwarded_for = false;
    for (name, line) in fields.lines() {
        let replaced = match name.len() {
            // Replaced below, or framed by the gateway itself.
            4 => is(name, b"host"),
            14 => is(name, b"content-length") || is(name, b"x-original-url"),
            17 => is(name, b"x-forwarded-proto"),
            16 => is(name, b"x-forwarded-host") || is(name, b"x-forwarded-port"),
            // What a client could claim about itself or the original request, which
            // upstreams and frameworks believe: `Forwarded` (RFC 7239) and `X-Real-IP`
            // name the client, `X-Original-URL` and `X-Rewrite-URL` the path (IIS,
            // Symfony), `X-Forwarded-Port` the port. Not passed on; `X-Forwarded-For`
            // carries the client, with the gateway's peer appended.
            9 => is(name, b"forwarded") || is(name, b"x-real-ip"),
            13 => is(name, b"x-rewrite-url"),
            11 => forwarding.trace.is_some() && is(name, b"traceparent"),
            // The gateway answers `100-continue` itself when it reads the body.
            6 => is(name, b"expect"),
            15 if is(name, b"x-forwarded-for") => {
                forwarded_for = true;
                true
            }
            _ => false,
        };
        if replaced || is_hop_by_hop(name) || connection.as_ref().is_some_and(|c| c.lists(name)) {
            continue;
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    if forwarded_for {
        for existing in fields.get_all(b"x-forwarded-for") {
            out.extend_from_slice(existing);
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(forwarding.client_ip.as_bytes());
    out.extend_from_slice(if forwarding.secure {
        b"\r\nx-forwarded-proto: https\r\n"
    } else {
        b"\r\nx-forwarded-proto: http\r\n"
    });
    if let Some(host) = forwarding.original_host {
        write_field(out, b"x-forwarded-host", host);
    }
    out.extend_from_slice(b"via: ");
    out.extend_from_slice(via(forwarding.received).as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(span) = &forwarding.trace {
        span.write_field(out);
    }
    match framing {
        RequestFraming::None => {}
        RequestFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            let mut digits = itoa::Buffer::new();
            out.extend_from_slice(digits.format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        RequestFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

fn write_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The `Via` element (RFC 9110 §7.6.3) a proxy adds to every message it forwards: the
/// protocol version it received the message in, and a pseudonym for itself.
pub fn via(received: http::Version) -> &'static str {
    match received {
        http::Version::HTTP_2 => "2 gateway",
        http::Version::HTTP_10 => "1.0 gateway",
        http::Version::HTTP_3 => "3 gateway",
        _ => "1.1 gateway",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(list: &[(&str, &str)], framing: RequestFraming) -> String {
        head_over(list, framing, false)
    }

    fn head_over(list: &[(&str, &str)], framing: RequestFraming, secure: bool) -> String {
        let fields = Fields::of(list);
        let host = HeaderValue::from_static("backend:8080");
        let client_ip = HeaderValue::from_static("127.0.0.1");
        let forwarding = Forwarding {
            host: &host,
            client_ip: &client_ip,
            original_host: Some(b"api.example.com"),
            received: http::Version::HTTP_11,
            secure,
            trace: None,
        };
        let mut out = Vec::new();
        write_request_head(
            &mut out,
            &http::Method::GET,
            "/x?y=1",
            &fields,
            &forwarding,
            framing,
        );
        String::from_utf8(out).expect("ASCII head")
    }

    /// Hop-by-hop fields and those named in Connection go; the proxy's own fields are
    /// replaced, not duplicated; what a client could claim about itself or the
    /// original request goes; the rest is forwarded as it came, in its case.
    #[test]
    fn forwarded_head() {
        let list = [
            ("Host", "api.example.com"),
            ("Connection", "keep-alive, X-Secret"),
            ("x-secret", "1"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Length", "99"),
            ("Expect", "100-continue"),
            ("X-Forwarded-Proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("Proxy-Connection", "keep-alive"),
            ("Forwarded", "for=6.6.6.6"),
            ("X-Real-IP", "6.6.6.6"),
            ("X-Forwarded-Port", "443"),
            ("X-Original-URL", "/admin"),
            ("x-rewrite-url", "/admin"),
            ("X-Kept", "1"),
            ("x-kept", "2"),
        ];
        assert_eq!(
            head(&list, RequestFraming::Chunked),
            "GET /x?y=1 HTTP/1.1\r\n\
             host: backend:8080\r\n\
             X-Kept: 1\r\n\
             x-kept: 2\r\n\
             x-forwarded-for: 127.0.0.1\r\n\
             x-forwarded-proto: http\r\n\
             x-forwarded-host: api.example.com\r\n\
             via: 1.1 gateway\r\n\
             transfer-encoding: chunked\r\n\r\n"
        );
    }

    /// A request that came over TLS says so, whatever the client claimed.
    #[test]
    fn forwarded_proto_over_tls() {
        let list = [("X-Forwarded-Proto", "http")];
        let out = head_over(&list, RequestFraming::None, true);
        assert!(out.contains("x-forwarded-proto: https\r\n"), "{out}");
        assert_eq!(out.matches("x-forwarded-proto").count(), 1, "{out}");
    }

    /// The client address is appended to an existing chain, several lines joined.
    #[test]
    fn forwarded_for_chain() {
        let list = [
            ("X-Forwarded-For", "10.0.0.1"),
            ("x-forwarded-for", "10.0.0.2, 10.0.0.3"),
        ];
        let head = head(&list, RequestFraming::Length(5));
        assert!(head.contains("x-forwarded-for: 10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.1\r\n"));
        assert_eq!(
            head.to_ascii_lowercase().matches("x-forwarded-for").count(),
            1
        );
        assert!(head.ends_with("content-length: 5\r\n\r\n"));
    }

    /// Hop-by-hop names match in any case; `Connection` tokens are trimmed.
    #[test]
    fn hop_by_hop_names() {
        for name in [
            "Connection",
            "keep-alive",
            "TE",
            "Transfer-Encoding",
            "upgrade",
            "Proxy-Authorization",
            "proxy-authenticate",
            "proxy-connection",
        ] {
            assert!(is_hop_by_hop(name.as_bytes()), "{name}");
        }
        for name in ["content-length", "tee", "x-upgrade", "via"] {
            assert!(!is_hop_by_hop(name.as_bytes()), "{name}");
        }
        let fields = Fields::of(&[("Connection", "close ,  X-Secret"), ("connection", "te")]);
        let options = ConnectionOptions::of(&fields);
        assert!(options.lists(b"x-secret"));
        assert!(options.lists(b"TE"));
        assert!(!options.lists(b"x-secre"));
        let fields = Fields::of(&[("Connection", "close")]);
        assert!(!ConnectionOptions::of(&fields).lists(b"x-secret"));
    }
}
