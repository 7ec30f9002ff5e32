//! The request filter phase: what every request must satisfy before routing, per
//! RFC 9110/9112, and the normal form of its path. A request that fails here never
//! reaches an upstream.

use http::uri::{PathAndQuery, Uri};
use http::{Method, StatusCode, Version};

use crate::message::fields::Fields;

/// Why a request was refused: always 400, with a fixed message.
///
/// Message framing is hyper's: a request with both Transfer-Encoding and
/// Content-Length is read by Transfer-Encoding alone, Content-Length is dropped, and
/// the connection closes after the response (RFC 9112 §6.1, §6.3).
#[derive(Debug, PartialEq, Eq)]
pub struct Rejection {
    pub status: StatusCode,
    pub message: &'static str,
}

const fn bad_request(message: &'static str) -> Rejection {
    Rejection {
        status: StatusCode::BAD_REQUEST,
        message,
    }
}

/// Checks Host and returns the host (without port) to route on.
///
/// RFC 9112 §3.2: an HTTP/1.1 request has exactly one valid Host, even when its target
/// is in absolute form; the target's authority then decides (§3.2.2), as HTTP/2's
/// `:authority` does.
pub fn host<'r>(
    uri: &'r Uri,
    version: Version,
    fields: &'r Fields,
) -> Result<Option<&'r str>, Rejection> {
    let mut hosts = fields.get_all(b"host");
    let header = match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Err(bad_request("more than one Host header")),
        (Some(value), None) => Some(without_final_dot(
            host_of(value).ok_or(bad_request("invalid Host header"))?,
        )),
        (None, _) if version == Version::HTTP_11 => {
            return Err(bad_request("missing Host header"));
        }
        (None, _) => None,
    };
    match uri.authority() {
        // The authority goes upstream as `X-Forwarded-Host`: it is held to the same
        // rules as `Host`, so userinfo (`evil@host`, an error to a recipient by RFC
        // 9110 §4.2.4) or a comma (which upstreams read as a list) never gets there.
        Some(authority) => match host_of(authority.as_str().as_bytes()) {
            Some(_) => Ok(Some(without_final_dot(authority.host()))),
            None => Err(bad_request("invalid authority in the request target")),
        },
        None => Ok(header),
    }
}

/// A host name in DNS's absolute form (`api.example.com.`) is the same host as without
/// its final dot, and is routed as that: a route for `api.example.com` that missed it
/// would let a client reach the routes for any host instead, while upstreams that strip
/// the dot (as nginx does) read the name the route was meant for.
fn without_final_dot(host: &str) -> &str {
    match host.strip_suffix('.') {
        Some(name) if !name.is_empty() && !name.ends_with('.') => name,
        _ => host,
    }
}

/// The rules HTTP/2 sets for a request's fields that HTTP/1.1's parser enforces by
/// its grammar, checked before anything reads them (RFC 9113 §8.1.1: a malformed
/// request is never forwarded).
///
/// - A value must not begin or end with a space or tab (§8.2.1). An HTTP/1.1
///   upstream reads it trimmed, so a rule matching ` admin` and the upstream reading
///   `admin` would not agree on what was sent.
/// - A `Host` beside `:authority` must name the same authority (§8.3.1). The gateway
///   routes on `:authority`; a different `Host` is a request that means two things.
pub fn http2_fields(uri: &Uri, fields: &Fields) -> Result<(), Rejection> {
    let edge_space = |b: Option<&u8>| matches!(b, Some(b' ' | b'\t'));
    for (_, value) in fields.iter() {
        if edge_space(value.first()) || edge_space(value.last()) {
            return Err(bad_request("a header value begins or ends with whitespace"));
        }
    }
    if let (Some(authority), Some(host)) = (uri.authority(), fields.get(b"host"))
        && !authority.as_str().as_bytes().eq_ignore_ascii_case(host)
    {
        return Err(bad_request("Host and :authority differ"));
    }
    Ok(())
}

/// What a listener does with request fields whose names hold `_`
/// (`headers_with_underscores`). CGI and WSGI backends read `X_User_Id` as
/// `X-User-Id`, so such a name can carry a field past every rule that looks for the
/// dashed one, an identity header most of all. The names are Envoy's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Underscores {
    /// Removed before routing, as nginx's `underscores_in_headers off` does.
    #[default]
    Drop,
    /// The request is refused with 400.
    Reject,
    /// Passed on like any other field.
    Allow,
}

/// Applies a listener's choice about names with underscores to a request's fields.
/// `allow` still removes the spellings of the fields the gateway writes about the
/// client and the request (`X_Forwarded_For`), which a CGI backend would read as the
/// gateway's own.
pub fn underscores(fields: &mut Fields, choice: Underscores) -> Result<(), Rejection> {
    if !fields.iter().any(|(name, _)| name.contains(&b'_')) {
        return Ok(());
    }
    match choice {
        Underscores::Reject => Err(bad_request("header names with underscores are refused")),
        Underscores::Drop => {
            fields.remove_where(|name| name.contains(&b'_'));
            Ok(())
        }
        Underscores::Allow => {
            fields.remove_where(|name| {
                name.contains(&b'_') && FORWARDING.iter().any(|known| read_alike(name, known))
            });
            Ok(())
        }
    }
}

/// The fields the gateway writes about the client and the original request, or
/// refuses to pass on, in lower case (see `forwarding::write_request_head`).
const FORWARDING: [&[u8]; 7] = [
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-forwarded-port",
    b"x-real-ip",
    b"x-original-url",
    b"x-rewrite-url",
];

/// Whether a CGI or WSGI backend reads two field names as one: it turns `-` into
/// `_` and ignores case, so `X-User-Id` and `x_user_id` are both `HTTP_X_USER_ID`.
/// `known` is in lower case.
pub fn read_alike(received: &[u8], known: &[u8]) -> bool {
    let dash_or_underscore = |b: u8| b == b'-' || b == b'_';
    received.len() == known.len()
        && received.iter().zip(known).all(|(&r, &k)| {
            r.to_ascii_lowercase() == k || (dash_or_underscore(r) && dash_or_underscore(k))
        })
}

/// What `Max-Forwards` says about an OPTIONS or TRACE request (RFC 9110 §7.6.2).
#[derive(Debug, PartialEq, Eq)]
pub enum MaxForwards {
    /// Forward it; the header, if any, has been decremented.
    Forward,
    /// The count is zero: answer as the final recipient instead of forwarding.
    Answer,
}

/// Checks and decrements `Max-Forwards`, which every intermediary must do for OPTIONS
/// and TRACE. Other methods pass untouched.
pub fn max_forwards(method: &Method, fields: &mut Fields) -> Result<MaxForwards, Rejection> {
    if method != Method::OPTIONS && method != Method::TRACE {
        return Ok(MaxForwards::Forward);
    }
    let Some(value) = fields.get(b"max-forwards") else {
        return Ok(MaxForwards::Forward);
    };
    let count: u64 = std::str::from_utf8(value)
        .ok()
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse().ok())
        .ok_or(bad_request("invalid Max-Forwards header"))?;
    if count == 0 {
        return Ok(MaxForwards::Answer);
    }
    fields.set(b"max-forwards", (count - 1).to_string().as_bytes());
    Ok(MaxForwards::Forward)
}

/// The bytes of a reg-name (RFC 3986 §3.2.2): unreserved, sub-delims and the `%` of
/// percent-encoded octets. A table, because every request's `Host` is checked with it.
static REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b';'
                    | b'='
                    | b'%'
            );
        b += 1;
    }
    table
};

/// The host part of a `Host` value (RFC 9110 §7.2: `uri-host [ ":" port ]`), checked
/// byte by byte without allocating; `None` when the value is not a valid host.
///
/// Read as bytes, not text: every byte it accepts is ASCII, so the value needs no
/// UTF-8 check first, which cost about 150 instructions per request (callgrind).
fn host_of(value: &[u8]) -> Option<&str> {
    let (host, port) = if value.first() == Some(&b'[') {
        let close = value.iter().position(|&b| b == b']')?;
        let (host, rest) = value.split_at(close + 1);
        let literal = &host[1..host.len() - 1];
        let ip_literal = !literal.is_empty()
            && literal
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        if !ip_literal {
            return None;
        }
        let port = if rest.is_empty() {
            None
        } else {
            Some(rest.strip_prefix(b":")?)
        };
        (host, port)
    } else {
        // A reg-name holds no `:`, so it ends at the first byte outside the set: one
        // pass over the value, and what follows must be a port.
        let end = value
            .iter()
            .position(|&b| !REG_NAME[usize::from(b)])
            .unwrap_or(value.len());
        let (host, rest) = value.split_at(end);
        if host.is_empty() {
            return None;
        }
        match rest.strip_prefix(b":") {
            Some(port) => (host, Some(port)),
            None if rest.is_empty() => (host, None),
            None => return None,
        }
    };
    if port.is_some_and(|p| p.len() > 5 || !p.iter().all(u8::is_ascii_digit)) {
        return None;
    }
    debug_assert!(host.is_ascii());
    // SAFETY: every byte of `host` passed `REG_NAME` (ASCII entries only) or is `[`,
    // `]`, `:`, `.` or a hex digit: it is ASCII, and so UTF-8.
    Some(unsafe { std::str::from_utf8_unchecked(host) })
}

/// The path in normal form when it is not already: dot segments resolved (also when
/// written `%2e`), repeated slashes merged. Encoded slashes, backslashes and NUL are
/// refused outright, because upstreams disagree on what they mean and that
/// disagreement is how path-based access rules get bypassed.
pub fn normalize_path(path: &str, parameters: PathParameters) -> Result<Option<String>, Rejection> {
    if !path.starts_with('/') {
        return Err(bad_request(
            "the request target must be a path starting with `/`",
        ));
    }
    let bytes = path.as_bytes();
    let mut suspicious = false;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\\' => return Err(bad_request("backslash in path")),
            b';' if parameters == PathParameters::Reject => {
                return Err(bad_request("path parameters (`;`) are refused"));
            }
            b'%' => {
                let code = bytes.get(i + 1..i + 3).unwrap_or_default();
                let Some(decoded) = percent_decoded(code) else {
                    return Err(bad_request("malformed percent-encoding in path"));
                };
                if matches!(decoded, b'/' | b'\\' | 0) {
                    return Err(bad_request("encoded slash, backslash or NUL in path"));
                }
                if overlong(decoded, bytes.get(i + 3..i + 6)) {
                    return Err(bad_request("overlong UTF-8 in path"));
                }
                // RFC 3986 §6.2.2: unreserved characters are decoded and the other
                // encodings written in upper case, so that `/api/%75sers` is routed
                // as the `/api/users` the upstream will read.
                if is_unreserved(decoded) || code.iter().any(u8::is_ascii_lowercase) {
                    suspicious = true;
                }
            }
            b'/' if matches!(bytes.get(i + 1), Some(b'/' | b'.')) => suspicious = true,
            _ => {}
        }
    }
    if !suspicious {
        return Ok(None);
    }
    let decoded = decode_unreserved(path);
    let mut segments: Vec<&str> = Vec::new();
    let parts: Vec<&str> = decoded[1..].split('/').collect();
    let last = parts.len() - 1;
    let mut trailing_slash = false;
    for (i, segment) in parts.into_iter().enumerate() {
        // `..;x` is `..` to servlet containers, which drop `;` parameters: it would
        // climb at the upstream after passing our router as a plain name.
        if let Some((name, _)) = segment.split_once(';')
            && dots(name).is_some()
        {
            return Err(bad_request("path parameters on a dot segment"));
        }
        match dots(segment) {
            Some(1) => trailing_slash = i == last,
            Some(2) => {
                if segments.pop().is_none() {
                    return Err(bad_request("path climbs above the root"));
                }
                trailing_slash = i == last;
            }
            _ if segment.is_empty() => trailing_slash = i == last,
            _ => {
                segments.push(segment);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || segments.is_empty() {
        out.push('/');
    }
    Ok(Some(out))
}

/// What a listener does with `;` parameters on path segments (`path_parameters`).
/// Servlet containers and others drop them (`/admin;x/secret` is `/admin/secret` to
/// Tomcat), so a path that carries them is read differently by the router and the
/// upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathParameters {
    /// Refused with 400.
    #[default]
    Reject,
    /// Routed and forwarded as they are; still refused on `.` and `..` segments.
    Keep,
}

/// Whether the escaped byte `lead`, and the escape `next` after it, begin an overlong
/// UTF-8 sequence: `%C0%AE` is `.` to decoders that do not check (old IIS and Tomcat
/// read `/%C0%AE%C0%AE/` as `/../`), and no valid UTF-8 holds one.
fn overlong(lead: u8, next: Option<&[u8]>) -> bool {
    let Some([b'%', code @ ..]) = next else {
        return false;
    };
    let Some(next) = percent_decoded(code) else {
        return false;
    };
    match lead {
        0xC0 | 0xC1 => (0x80..=0xBF).contains(&next),
        0xE0 => (0x80..=0x9F).contains(&next),
        0xF0 => (0x80..=0x8F).contains(&next),
        _ => false,
    }
}

/// The byte a `%XX` escape stands for, from its two hex digits.
fn percent_decoded(code: &[u8]) -> Option<u8> {
    let digit = |b: u8| (b as char).to_digit(16);
    match code {
        [high, low] => Some((digit(*high)? * 16 + digit(*low)?) as u8),
        _ => None,
    }
}

/// RFC 3986 §2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// `path` with its unreserved characters decoded and its other escapes in upper
/// case; the escapes were checked by the caller.
fn decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let code = &bytes[i + 1..i + 3];
                match percent_decoded(code) {
                    Some(decoded) if is_unreserved(decoded) => out.push(char::from(decoded)),
                    _ => {
                        out.push('%');
                        out.push(char::from(code[0].to_ascii_uppercase()));
                        out.push(char::from(code[1].to_ascii_uppercase()));
                    }
                }
                i += 3;
            }
            _ => {
                // A run of other characters, whole (UTF-8 stays intact).
                let end = bytes[i..]
                    .iter()
                    .position(|&b| b == b'%')
                    .map_or(bytes.len(), |p| i + p);
                out.push_str(&path[i..end]);
                i = end;
            }
        }
    }
    out
}

/// `Some(1)` for a `.` segment, `Some(2)` for `..`, counting `%2e` as a dot.
fn dots(segment: &str) -> Option<usize> {
    let mut count = 0;
    let mut rest = segment.as_bytes();
    while !rest.is_empty() {
        if rest[0] == b'.' {
            rest = &rest[1..];
        } else if rest.len() >= 3 && rest[0] == b'%' && rest[1..3].eq_ignore_ascii_case(b"2e") {
            rest = &rest[3..];
        } else {
            return None;
        }
        count += 1;
    }
    (1..=2).contains(&count).then_some(count)
}

/// `uri` with its path replaced by `path`, query kept.
pub fn with_path(uri: &Uri, path: &str) -> Option<Uri> {
    let pq = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(pq).ok()?);
    Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal(path: &str) -> Result<Option<String>, &'static str> {
        normalize_path(path, PathParameters::Keep).map_err(|r| r.message)
    }

    /// Already normal paths cost no allocation.
    #[test]
    fn normal_paths_pass_untouched() {
        assert_eq!(normal("/api/users/42"), Ok(None));
        assert_eq!(normal("/a.b/c..d/%20"), Ok(None));
    }

    /// Dot segments resolve, encoded or not; slashes merge; trailing slashes stay.
    #[test]
    fn dot_segments() {
        assert_eq!(normal("/a/./b/../c"), Ok(Some("/a/c".into())));
        assert_eq!(normal("/a/%2e%2E/b"), Ok(Some("/b".into())));
        assert_eq!(normal("/a//b/"), Ok(Some("/a/b/".into())));
        assert_eq!(normal("/a/b/.."), Ok(Some("/a/".into())));
        assert_eq!(normal("/."), Ok(Some("/".into())));
        assert_eq!(normal("/a/.%2e/.%2E/x"), Err("path climbs above the root"));
        assert_eq!(normal("/.."), Err("path climbs above the root"));
    }

    /// Encodings that upstreams read differently are refused.
    #[test]
    fn ambiguous_encodings() {
        for path in [
            "/a%2fb",
            "/a%2F..%2Fb",
            "/a%5cb",
            "/a%00",
            "/a\\b",
            "/api/..;/admin",
            "/a/.;x/b",
            "/a/%2e%2e;/b",
        ] {
            assert!(normal(path).is_err(), "{path}");
        }
        assert!(normal("*").is_err());
        assert_eq!(normal("/a%zz"), Err("malformed percent-encoding in path"));
        assert_eq!(normal("/a%4"), Err("malformed percent-encoding in path"));
        assert_eq!(
            normal("/a%u002e"),
            Err("malformed percent-encoding in path")
        );
        // Overlong UTF-8: `.` and `/` as two-, three- and four-byte sequences, which
        // lax decoders read as the characters.
        for path in [
            "/%c0%ae%c0%ae/x",
            "/a/%C0%AF",
            "/%c1%9c",
            "/%e0%80%ae",
            "/%f0%80%80%ae",
        ] {
            assert_eq!(normal(path), Err("overlong UTF-8 in path"), "{path}");
        }
        // Valid UTF-8 and lone bytes that begin no overlong sequence still pass.
        for path in [
            "/caf%C3%A9",
            "/%E2%82%AC",
            "/%F0%9F%98%80",
            "/%C0x",
            "/%E0%A0%80",
        ] {
            assert!(normal(path).is_ok(), "{path}");
        }
    }

    /// RFC 3986 §6.2.2: unreserved characters are decoded, other escapes upper-cased,
    /// so the router reads the path the upstream will.
    #[test]
    fn percent_encodings_in_normal_form() {
        assert_eq!(normal("/api/%75sers/1"), Ok(Some("/api/users/1".into())));
        assert_eq!(normal("/a%7Eb%2D"), Ok(Some("/a~b-".into())));
        assert_eq!(normal("/a%3ab%20c"), Ok(Some("/a%3Ab%20c".into())));
        assert_eq!(normal("/a%3A%20"), Ok(None));
        assert_eq!(normal("/caf%C3%A9/%2e%2e/x"), Ok(Some("/x".into())));
        assert_eq!(normal("/ü/%61"), Ok(Some("/ü/a".into())));
    }

    /// `;` parameters are refused unless the listener keeps them.
    #[test]
    fn path_parameters() {
        let reject = |path| normalize_path(path, PathParameters::Reject).map_err(|r| r.message);
        assert_eq!(
            reject("/a;jsessionid=1/b"),
            Err("path parameters (`;`) are refused")
        );
        assert_eq!(reject("/a/b"), Ok(None));
        assert_eq!(normal("/a;v=1/b"), Ok(None));
    }

    /// Max-Forwards counts down on OPTIONS and TRACE only, and stops them at zero.
    #[test]
    fn max_forwards_counts_down() {
        let mut f = Fields::of(&[("Max-Forwards", "3")]);
        assert_eq!(
            max_forwards(&Method::OPTIONS, &mut f),
            Ok(MaxForwards::Forward)
        );
        assert_eq!(f.get(b"max-forwards"), Some(&b"2"[..]));
        let mut f = Fields::of(&[("max-forwards", "0")]);
        assert_eq!(
            max_forwards(&Method::OPTIONS, &mut f),
            Ok(MaxForwards::Answer)
        );
        assert_eq!(max_forwards(&Method::GET, &mut f), Ok(MaxForwards::Forward));
        let mut f = Fields::of(&[("max-forwards", "-1")]);
        assert!(max_forwards(&Method::TRACE, &mut f).is_err());
    }

    /// Names with underscores are dropped, refused or kept, as the listener says; the
    /// dashed names next to them are untouched.
    #[test]
    fn names_with_underscores() {
        let list = [
            ("X_User_Id", "forged"),
            ("X-User-Id", "1"),
            ("x_trace", "a"),
        ];
        let mut fields = Fields::of(&list);
        assert_eq!(underscores(&mut fields, Underscores::Drop), Ok(()));
        let names: Vec<_> = fields.iter().map(|(n, _)| n.to_vec()).collect();
        assert_eq!(names, [b"X-User-Id".to_vec()]);
        let mut fields = Fields::of(&list);
        assert!(underscores(&mut fields, Underscores::Reject).is_err());
        assert_eq!(underscores(&mut fields, Underscores::Allow), Ok(()));
        assert_eq!(fields.iter().count(), 3);
        let mut clean = Fields::of(&[("X-User-Id", "1")]);
        assert_eq!(underscores(&mut clean, Underscores::Reject), Ok(()));
        // Allowed, but for the spellings of what the gateway writes about the client.
        let mut fields = Fields::of(&[
            ("X_Forwarded_For", "10.0.0.1"),
            ("x-forwarded_host", "evil"),
            ("X_REAL_IP", "10.0.0.1"),
            ("x_original_url", "/admin"),
            ("x_trace", "a"),
            ("X-Forwarded-For", "10.0.0.2"),
        ]);
        assert_eq!(underscores(&mut fields, Underscores::Allow), Ok(()));
        let names: Vec<_> = fields.iter().map(|(n, _)| n.to_vec()).collect();
        assert_eq!(names, [b"x_trace".to_vec(), b"X-Forwarded-For".to_vec()]);
    }

    /// Names a CGI backend reads as one: `-` and `_` alike, in any case.
    #[test]
    fn names_read_alike() {
        for (received, known) in [
            ("X_User_Id", "x-user-id"),
            ("x-user-id", "x-user-id"),
            ("X-USER_ID", "x-user-id"),
            ("x-user", "x_user"),
        ] {
            assert!(
                read_alike(received.as_bytes(), known.as_bytes()),
                "{received}"
            );
        }
        for (received, known) in [
            ("x-user-ids", "x-user-id"),
            ("x.user.id", "x-user-id"),
            ("xuser-id", "x-user-id"),
        ] {
            assert!(
                !read_alike(received.as_bytes(), known.as_bytes()),
                "{received}"
            );
        }
    }

    /// The reg-name table holds RFC 3986's unreserved and sub-delims characters and `%`,
    /// but the comma, which would make `X-Forwarded-Host` a list.
    #[test]
    fn reg_name_table() {
        for b in 0..=255u8 {
            let expected = b.is_ascii_alphanumeric() || b"-._~!$&'()*+;=%".contains(&b);
            assert_eq!(REG_NAME[usize::from(b)], expected, "byte {b}");
        }
    }

    /// Host comes from the single Host header, or from an absolute-form target.
    #[test]
    fn hosts() {
        let origin = Uri::from_static("/");
        let absolute = Uri::from_static("http://a.example/x");
        let h11 = Version::HTTP_11;
        let check = |uri, version, list: &[(&str, &str)]| {
            host(uri, version, &Fields::of(list))
                .map(|h| h.map(str::to_owned))
                .map_err(|r| r.message)
        };
        assert_eq!(
            check(&origin, h11, &[("Host", "Api.Example.com:8080")]),
            Ok(Some("Api.Example.com".into()))
        );
        assert_eq!(
            check(&absolute, h11, &[("host", "b.example")]),
            Ok(Some("a.example".into()))
        );
        for (dotted, expected) in [
            ("api.example.com.", "api.example.com"),
            ("Api.Example.com.:8080", "Api.Example.com"),
            ("127.0.0.1.", "127.0.0.1"),
            (".", "."),
            ("a..", "a.."),
        ] {
            assert_eq!(
                check(&origin, h11, &[("host", dotted)]),
                Ok(Some(expected.into())),
                "{dotted}"
            );
        }
        let dotted_authority = Uri::from_static("http://a.example./x");
        assert_eq!(
            check(&dotted_authority, h11, &[("host", "b")]),
            Ok(Some("a.example".into()))
        );
        assert_eq!(check(&origin, h11, &[]), Err("missing Host header"));
        assert_eq!(check(&absolute, h11, &[]), Err("missing Host header"));
        assert_eq!(
            check(&absolute, h11, &[("host", "b c")]),
            Err("invalid Host header")
        );
        assert_eq!(
            check(&absolute, Version::HTTP_2, &[]),
            Ok(Some("a.example".into())),
            ":authority without Host"
        );
        assert_eq!(
            check(&origin, h11, &[("host", "a"), ("HOST", "b")]),
            Err("more than one Host header")
        );
        for bad in [
            "a b",
            "u@a",
            "a:80:80",
            "a:x",
            "[zz]",
            "[::1",
            ":80",
            "",
            "a,b",
            "é.example",
            "[::1]é",
            "a:8é",
        ] {
            assert!(check(&origin, h11, &[("host", bad)]).is_err(), "{bad:?}");
        }
        // Bytes that are not UTF-8 at all: no host is made of them.
        for bad in [&b"a\xff.example"[..], b"\xc3", b"[::1]:\xff"] {
            let mut fields = Fields::with_capacity(1, 16);
            fields.append(b"host", bad);
            assert!(host(&origin, h11, &fields).is_err(), "{bad:?}");
        }
        // Absolute-form targets: userinfo or a comma in the authority is refused.
        for bad in ["http://evil@a.example/x", "http://a.example,b.example/x"] {
            let uri = Uri::from_static(bad);
            let fields = Fields::of(&[("host", "a.example")]);
            assert_eq!(
                host(&uri, h11, &fields).map_err(|r| r.message),
                Err("invalid authority in the request target"),
                "{bad}"
            );
        }
        for (good, expected) in [
            ("[::1]:8080", "[::1]"),
            ("127.0.0.1", "127.0.0.1"),
            ("a.b:", "a.b"),
        ] {
            assert_eq!(
                check(&origin, h11, &[("host", good)]),
                Ok(Some(expected.into()))
            );
        }
    }

    /// HTTP/2 fields: no value with whitespace at an edge, no Host naming another
    /// authority than `:authority` (which may differ in case only).
    #[test]
    fn http2_requests() {
        let with_authority = Uri::from_static("http://a.example:8080/x");
        let origin = Uri::from_static("/x");
        let check = |uri, list: &[(&str, &str)]| {
            http2_fields(uri, &Fields::of(list)).map_err(|r| r.message)
        };
        assert_eq!(check(&with_authority, &[("x-a", "b c")]), Ok(()));
        assert_eq!(check(&with_authority, &[("x-a", "")]), Ok(()));
        for bad in [" b", "b ", "\tb", "b\t", " "] {
            assert_eq!(
                check(&with_authority, &[("x-a", bad)]),
                Err("a header value begins or ends with whitespace"),
                "{bad:?}"
            );
        }
        assert_eq!(
            check(&with_authority, &[("host", "A.Example:8080")]),
            Ok(())
        );
        assert_eq!(check(&origin, &[("host", "b.example")]), Ok(()));
        for other in ["b.example:8080", "a.example", "a.example:80"] {
            assert_eq!(
                check(&with_authority, &[("host", other)]),
                Err("Host and :authority differ"),
                "{other}"
            );
        }
    }
}
