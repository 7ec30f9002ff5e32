//! Values that may come from the environment: `${env:NAME}`, `${env:NAME:-default}`
//! and `${file:PATH}` references inside configuration strings, and the parsers for
//! the typed values they hold (durations, bind addresses, upstream targets).
//!
//! The compiler validates literal values with these same parsers at build time, and
//! the generated gateway resolves references with them at start-up, so a value that
//! passes the build can never be read differently when the binary starts.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use http::uri::{Authority, Scheme, Uri};

/// One piece of a configuration string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part<'a> {
    /// Text used as written.
    Literal(&'a str),
    /// `${env:NAME}` or `${env:NAME:-default}`.
    Env {
        name: &'a str,
        default: Option<&'a str>,
    },
    /// `${file:PATH}`: the file's contents, without a trailing newline.
    File { path: &'a str },
}

/// A malformed reference, with the byte range inside the string it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub range: std::ops::Range<usize>,
    pub message: String,
}

/// Splits a configuration string into literal text and references.
///
/// `$${` writes a literal `${`; a `$` not followed by `{` is literal text.
pub fn parse_template(raw: &str) -> Result<Vec<Part<'_>>, TemplateError> {
    let mut parts = Vec::new();
    let mut rest_start = 0;
    let mut literal_start = 0;
    let bytes = raw.as_bytes();
    while let Some(found) = raw[rest_start..].find('$') {
        let at = rest_start + found;
        if bytes.get(at + 1) == Some(&b'$') && bytes.get(at + 2) == Some(&b'{') {
            // `$${` escapes: keep one `$`, then continue after the brace.
            push_literal(&mut parts, &raw[literal_start..at]);
            literal_start = at + 1;
            rest_start = at + 3;
            continue;
        }
        if bytes.get(at + 1) != Some(&b'{') {
            rest_start = at + 1;
            continue;
        }
        let Some(close) = raw[at..].find('}') else {
            return Err(TemplateError {
                range: at..raw.len(),
                message: "unclosed `${`: write `${env:NAME}` or `${file:PATH}`".into(),
            });
        };
        let end = at + close + 1;
        push_literal(&mut parts, &raw[literal_start..at]);
        parts.push(
            parse_reference(&raw[at + 2..end - 1]).map_err(|message| TemplateError {
                range: at..end,
                message,
            })?,
        );
        literal_start = end;
        rest_start = end;
    }
    push_literal(&mut parts, &raw[literal_start..]);
    Ok(parts)
}

fn push_literal<'a>(parts: &mut Vec<Part<'a>>, text: &'a str) {
    if !text.is_empty() {
        parts.push(Part::Literal(text));
    }
}

fn parse_reference(inner: &str) -> Result<Part<'_>, String> {
    if let Some(spec) = inner.strip_prefix("env:") {
        let (name, default) = match spec.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (spec, None),
        };
        if !is_env_name(name) {
            return Err(format!(
                "`{name}` is not an environment variable name (letters, digits and `_`, not starting with a digit)"
            ));
        }
        Ok(Part::Env { name, default })
    } else if let Some(path) = inner.strip_prefix("file:") {
        if path.is_empty() {
            return Err("`${file:}` needs a path".into());
        }
        Ok(Part::File { path })
    } else {
        Err(format!(
            "unknown reference `${{{inner}}}`: write `${{env:NAME}}`, `${{env:NAME:-default}}` or `${{file:PATH}}`"
        ))
    }
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// True when the string holds at least one reference, so it can only be checked at start-up.
pub fn has_references(parts: &[Part<'_>]) -> bool {
    parts.iter().any(|p| !matches!(p, Part::Literal(_)))
}

// === typed values ===

/// Splits `500ms` into `(500, "ms")`; the unit is checked by the caller.
fn number_and_unit<'t>(text: &'t str, what: &str, hint: &str) -> Result<(u64, &'t str), String> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let number = number
        .parse()
        .map_err(|_| format!("`{text}` is not {what}: {hint}"))?;
    Ok((number, unit))
}

/// The longest duration a setting may hold.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Parses `500ms`, `5s`, `2m` or `1h`; zero is refused because every wait needs a bound.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let hint = "write a whole number with a unit: `500ms`, `5s`, `2m` or `1h`";
    let (number, unit) = number_and_unit(text, "a duration", hint)?;
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number.saturating_mul(60)),
        "h" => Duration::from_secs(number.saturating_mul(3600)),
        _ => return Err(format!("`{text}` is not a duration: {hint}")),
    };
    if duration.is_zero() {
        return Err(format!(
            "`{text}` is zero: every wait needs a bound above zero"
        ));
    }
    // Deadlines are `Instant`s: a duration near the type's limit overflows the
    // addition and panics the worker, so the bound is one an operator can mean.
    if duration > MAX_DURATION {
        return Err(format!(
            "`{text}` is longer than 7 days, the longest wait allowed"
        ));
    }
    Ok(duration)
}

/// Parses a size: a whole number with `B`, `KiB`, `MiB` or `GiB`; zero is refused.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let hint = "write a whole number with a unit: `512B`, `64KiB`, `10MiB` or `1GiB`";
    let (number, unit) = number_and_unit(text, "a size", hint)?;
    let scale: u64 = match unit {
        "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(format!("`{text}` is not a size: {hint}")),
    };
    match number.checked_mul(scale) {
        Some(0) => Err(format!("`{text}` is zero")),
        Some(size) => Ok(size),
        None => Err(format!("`{text}` is too large")),
    }
}

/// Most header fields a listener may allow per request (`limits.max_headers`).
pub const MAX_HEADERS: usize = 1000;

/// A bound on the bytes of a request head: at least 8 KiB (hyper's smallest read
/// buffer), at most 1 MiB.
pub fn parse_header_size(text: &str) -> Result<u64, String> {
    let size = parse_size(text)?;
    if !(8 << 10..=1 << 20).contains(&size) {
        return Err(format!("`{text}` is out of range: use 8KiB to 1MiB"));
    }
    Ok(size)
}

/// Parses a worker thread count: 1 to 1024.
pub fn parse_workers(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=1024).contains(&n) => Ok(n),
        _ => Err(format!(
            "`workers = {text}` is out of range: use 1 to 1024, or leave it out for one worker per core"
        )),
    }
}

/// Parses a share, such as a sampling ratio: a number from 0 to 1.
pub fn parse_ratio(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err(format!(
            "`{text}` is not a share from 0 to 1: write `0.01` for 1%"
        )),
    }
}

/// Parses a listening address: `IP:PORT`, `[IPv6]:PORT` or `localhost:PORT`.
pub fn parse_bind(text: &str) -> Result<SocketAddr, String> {
    if let Some(port) = text.strip_prefix("localhost:") {
        let port = port
            .parse()
            .map_err(|_| format!("`{port}` is not a port number (0 to 65535)"))?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    text.parse().map_err(|_| {
        format!("`{text}` is not a listening address: write `IP:PORT`, such as `0.0.0.0:8080` or `[::]:8080`")
    })
}

/// Where an upstream lives: the scheme and authority that requests are sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub scheme: Scheme,
    pub authority: Authority,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.authority)
    }
}

/// Parses an upstream target URL such as `http://10.0.0.5:8001`.
///
/// A path is refused rather than silently prefixed: paths are the routes' business
/// (`strip_prefix`, `rewrite`), so one place decides what the upstream sees.
pub fn parse_target(text: &str) -> Result<Target, String> {
    let uri: Uri = text
        .parse()
        .map_err(|_| format!("`{text}` is not a URL: write `http://HOST:PORT`"))?;
    let scheme = uri
        .scheme()
        .cloned()
        .ok_or_else(|| format!("`{text}` has no scheme: write `http://{text}`"))?;
    if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
        return Err(format!(
            "scheme `{scheme}` is not supported for upstreams: use `http://` or `https://`"
        ));
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("`{text}` has no host"))?;
    if authority.host().is_empty() {
        return Err(format!("`{text}` has no host"));
    }
    if authority.as_str().contains('@') {
        return Err(format!(
            "`{text}` carries credentials: pass them in a header policy, not in the URL"
        ));
    }
    if uri.path_and_query().is_some_and(|pq| pq.as_str() != "/") {
        return Err(format!(
            "`{text}` has a path or query: targets name a host only; use `strip_prefix` or `rewrite` on the route"
        ));
    }
    Ok(Target { scheme, authority })
}

/// A URL the gateway fetches itself (a JWKS document): `http://` or `https://`, a
/// host, and a path; the target and the path with its query.
pub fn parse_url(text: &str) -> Result<(Target, String), String> {
    let uri: Uri = text
        .parse()
        .map_err(|_| format!("`{text}` is not a URL: write `https://HOST/PATH`"))?;
    let path = uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let root = match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => format!("{scheme}://{authority}"),
        _ => {
            return Err(format!(
                "`{text}` is not an absolute URL: write `https://HOST/PATH`"
            ));
        }
    };
    Ok((parse_target(&root)?, path))
}

/// Checks a name a TLS client may send in SNI (RFC 6066 §3): a DNS name of
/// letters, digits and `-` in labels of at most 63 bytes, or a wildcard `*.` in front
/// of one with at least two labels (`*.example.com`: one label, as certificates match
/// it). IP addresses are never sent as SNI, so naming one would match nothing.
pub fn check_server_name(text: &str) -> Result<(), String> {
    let (wildcard, name) = match text.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if name.parse::<IpAddr>().is_ok() {
        return Err(format!(
            "`{text}` is an IP address, which clients never send as a server name"
        ));
    }
    if name.is_empty() || name.len() > 253 {
        return Err(format!("`{text}` is not a DNS name"));
    }
    for label in name.split('.') {
        let valid = (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !valid {
            return Err(if label.contains('*') {
                format!(
                    "`{text}` has a wildcard in the wrong place: only a whole first label may be `*`, as in `*.example.com`"
                )
            } else {
                format!(
                    "`{text}` is not a DNS name: labels are letters, digits and `-`, 1 to 63 of them"
                )
            });
        }
    }
    if wildcard && !name.contains('.') {
        return Err(format!(
            "`{text}` is too wide: a wildcard needs at least two labels after it"
        ));
    }
    Ok(())
}

/// Whether `text` holds PEM blocks; written inline, a value can be nothing else.
pub fn check_pem(text: &str) -> Result<(), String> {
    if text.contains("-----BEGIN ") {
        Ok(())
    } else {
        Err("not PEM: write `${file:PATH}` naming a PEM file, or `${env:NAME}`".into())
    }
}

/// What a setting holds, and so which parser reads it. The compiler lists every
/// setting of a gateway.toml once, with its kind: it checks the literal ones at build
/// time, and the binary checks the whole list (`Gateway::SETTINGS`) at start-up, both
/// with `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingKind {
    Duration,
    Bind,
    Target,
    Workers,
    Size,
    HeaderSize,
    /// An `http(s)://HOST/PATH` the gateway fetches.
    Url,
    /// PEM text: certificates or a key, checked in full when the TLS configuration is
    /// built.
    Pem,
    /// A file the gateway writes: checked by opening it at start-up.
    File,
    /// A share from 0 to 1.
    Ratio,
}

impl SettingKind {
    /// Whether `text` is a valid value of this kind; the message says why not.
    pub fn check(self, text: &str) -> Result<(), String> {
        match self {
            SettingKind::Duration => parse_duration(text).map(drop),
            SettingKind::Bind => parse_bind(text).map(drop),
            SettingKind::Target => parse_target(text).map(drop),
            SettingKind::Workers => parse_workers(text).map(drop),
            SettingKind::Size => parse_size(text).map(drop),
            SettingKind::HeaderSize => parse_header_size(text).map(drop),
            SettingKind::Url => parse_url(text).map(drop),
            SettingKind::Pem => check_pem(text),
            SettingKind::File if text.is_empty() => Err("an empty file name".into()),
            SettingKind::File => Ok(()),
            SettingKind::Ratio => parse_ratio(text).map(drop),
        }
    }
}

// === start-up resolution ===

/// A configuration string as written in gateway.toml, resolved at start-up.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// `gateway.toml:12:5 (upstreams.users.targets[0])`: named in every error.
    pub origin: &'static str,
    /// The string exactly as written, references included.
    pub raw: &'static str,
}

/// Why the gateway could not start; always names the setting it concerns.
#[derive(Debug)]
pub struct SettingError {
    origin: &'static str,
    message: String,
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.message)
    }
}

impl std::error::Error for SettingError {}

impl SettingError {
    /// A value of the setting at `origin` is not usable.
    pub fn new(origin: &'static str, message: impl Into<String>) -> Self {
        Self {
            origin,
            message: message.into(),
        }
    }
}

impl Setting {
    pub const fn new(origin: &'static str, raw: &'static str) -> Self {
        Self { origin, raw }
    }

    /// Substitutes every reference from the environment or the file system.
    pub fn resolve(&self) -> Result<String, SettingError> {
        let error = |message: String| SettingError {
            origin: self.origin,
            message,
        };
        let parts = parse_template(self.raw).map_err(|e| error(e.message))?;
        let mut out = String::new();
        for part in parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Env { name, default } => match (std::env::var(name), default) {
                    (Ok(value), _) => out.push_str(&value),
                    (Err(std::env::VarError::NotPresent), Some(default)) => out.push_str(default),
                    (Err(std::env::VarError::NotPresent), None) => {
                        return Err(error(format!(
                            "environment variable `{name}` is not set (set it, or write `${{env:{name}:-DEFAULT}}`)"
                        )));
                    }
                    (Err(std::env::VarError::NotUnicode(_)), _) => {
                        return Err(error(format!(
                            "environment variable `{name}` is not valid UTF-8"
                        )));
                    }
                },
                Part::File { path } => {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| error(format!("cannot read `{path}`: {e}")))?;
                    out.push_str(text.strip_suffix('\n').unwrap_or(&text));
                }
            }
        }
        Ok(out)
    }

    fn parse<T>(&self, parse: fn(&str) -> Result<T, String>) -> Result<T, SettingError> {
        let value = self.resolve()?;
        parse(&value).map_err(|message| SettingError {
            origin: self.origin,
            message,
        })
    }

    /// Resolves the setting and checks it as a value of `kind`.
    pub fn check(&self, kind: SettingKind) -> Result<(), SettingError> {
        let value = self.resolve()?;
        kind.check(&value).map_err(|message| SettingError {
            origin: self.origin,
            message,
        })
    }

    pub fn duration(&self) -> Result<Duration, SettingError> {
        self.parse(parse_duration)
    }

    pub fn bind(&self) -> Result<SocketAddr, SettingError> {
        self.parse(parse_bind)
    }

    pub fn target(&self) -> Result<Target, SettingError> {
        self.parse(parse_target)
    }

    pub fn url(&self) -> Result<(Target, String), SettingError> {
        self.parse(parse_url)
    }

    pub fn workers(&self) -> Result<usize, SettingError> {
        self.parse(parse_workers)
    }

    pub fn size(&self) -> Result<u64, SettingError> {
        self.parse(parse_size)
    }

    pub fn header_size(&self) -> Result<u64, SettingError> {
        self.parse(parse_header_size)
    }

    pub fn ratio(&self) -> Result<f64, SettingError> {
        self.parse(parse_ratio)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// References and literal text split apart, with `$${` as the escape.
    #[test]
    fn templates_split_into_parts() {
        assert_eq!(
            parse_template("http://${env:HOST:-localhost}:${env:PORT}/x$${y}").unwrap(),
            vec![
                Part::Literal("http://"),
                Part::Env {
                    name: "HOST",
                    default: Some("localhost")
                },
                Part::Literal(":"),
                Part::Env {
                    name: "PORT",
                    default: None
                },
                Part::Literal("/x"),
                Part::Literal("${y}"),
            ]
        );
        assert_eq!(parse_template("a$b").unwrap(), vec![Part::Literal("a$b")]);
    }

    /// Malformed references point at the reference itself.
    #[test]
    fn malformed_references_are_located() {
        let err = parse_template("x${env:1BAD}").unwrap_err();
        assert_eq!(err.range, 1..12);
        assert!(
            parse_template("${vault:x}")
                .unwrap_err()
                .message
                .contains("unknown reference")
        );
        assert!(
            parse_template("${env:X")
                .unwrap_err()
                .message
                .contains("unclosed")
        );
    }

    /// Durations need a unit and a value above zero.
    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("1.5s").is_err());
        assert_eq!(parse_duration("168h"), Ok(MAX_DURATION));
        assert!(parse_duration("169h").unwrap_err().contains("7 days"));
        assert!(parse_duration("9999999999999h").is_err());
    }

    /// Sizes take binary units; header sizes have a range.
    #[test]
    fn sizes() {
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert!(parse_size("10MB").is_err());
        assert!(parse_size("0KiB").is_err());
        assert!(parse_size("99999999999GiB").is_err());
        assert!(
            parse_header_size("4KiB")
                .unwrap_err()
                .contains("out of range")
        );
        assert_eq!(parse_header_size("8KiB"), Ok(8192));
    }

    /// Targets are scheme and host only.
    #[test]
    fn targets() {
        let t = parse_target("http://10.0.0.5:8001").unwrap();
        assert_eq!(t.to_string(), "http://10.0.0.5:8001");
        assert!(parse_target("10.0.0.5:8001").is_err());
        assert!(parse_target("http://h/base").unwrap_err().contains("path"));
        assert!(parse_target("ftp://h").is_err());
        assert_eq!(
            parse_target("https://h:8443").unwrap().to_string(),
            "https://h:8443"
        );
        assert!(parse_target("http://u:p@h").is_err());
    }

    /// Server names are DNS names, with a wildcard only as a whole first label.
    #[test]
    fn server_names() {
        assert!(check_server_name("api.example.com").is_ok());
        assert!(check_server_name("*.example.com").is_ok());
        assert!(check_server_name("localhost").is_ok());
        assert!(check_server_name("*.com").unwrap_err().contains("too wide"));
        assert!(
            check_server_name("api.*.example.com")
                .unwrap_err()
                .contains("wrong place")
        );
        assert!(check_server_name("*api.example.com").is_err());
        assert!(check_server_name("10.0.0.1").unwrap_err().contains("IP"));
        assert!(check_server_name("a_b.example.com").is_err());
        assert!(check_server_name("").is_err());
    }

    /// Missing variables are named, defaults apply, set values win.
    #[test]
    fn resolution_from_the_environment() {
        let s = Setting::new("gateway.toml:1:1", "${env:GATEWAY_TEST_SURELY_UNSET_VAR}");
        assert!(
            s.resolve()
                .unwrap_err()
                .to_string()
                .contains("GATEWAY_TEST_SURELY_UNSET_VAR")
        );
        let s = Setting::new("o", "${env:GATEWAY_TEST_SURELY_UNSET_VAR:-1s}");
        assert_eq!(s.duration().unwrap(), Duration::from_secs(1));
        let s = Setting::new("o", "${env:PATH}");
        assert_eq!(s.resolve().unwrap(), std::env::var("PATH").unwrap());
    }

    /// File references read the file, without its trailing newline, and name it when missing.
    #[test]
    fn resolution_from_files() {
        let path = std::env::temp_dir().join(format!("gateway-setting-{}", std::process::id()));
        std::fs::write(&path, "http://10.0.0.9:80\n").unwrap();
        let raw: &'static str = Box::leak(format!("${{file:{}}}", path.display()).into_boxed_str());
        let target = Setting::new("o", raw).target().unwrap();
        assert_eq!(target.to_string(), "http://10.0.0.9:80");
        std::fs::remove_file(&path).unwrap();
        let err = Setting::new("o", raw).resolve().unwrap_err().to_string();
        assert!(err.contains("cannot read"), "{err}");
    }
}
