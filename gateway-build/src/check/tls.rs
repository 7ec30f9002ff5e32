//! TLS settings of listeners and upstreams: what can be known before start-up. The
//! certificates themselves are read at start-up, where each problem is reported with
//! the setting that names the file.

use toml::Spanned;

use gateway_runtime::settings::{check_server_name, has_references, parse_template};

use crate::chain;
use crate::check::listeners::listeners_in;
use crate::check::routes::listener_mask;
use crate::codes;
use crate::diagnostic::Diagnostic;
use crate::syntax::{Config, ListenerTls};

/// Fields a listener may not use for client identities: the gateway writes or drops
/// them itself.
const RESERVED_FIELDS: [&str; 8] = [
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "via",
];

/// The longest expiry warning: a year ahead is already every certificate.
const MAX_EXPIRY_WARNING_DAYS: i64 = 365;

pub(super) fn check(config: &Config, found: &mut Vec<Diagnostic>) {
    client_cert_routes(config, found);
    for (_, listener) in &config.listeners {
        let listener = listener.get_ref();
        if let Some(port) = &listener.https_redirect {
            if !(1..=65535).contains(port.get_ref()) {
                found.push(Diagnostic::new(
                    &codes::OUT_OF_RANGE,
                    port.span(),
                    format!(
                        "`https_redirect = {}` is not a port: use 1 to 65535",
                        port.get_ref()
                    ),
                ));
            }
            if let Some(tls) = &listener.tls {
                found.push(
                    Diagnostic::new(
                        &codes::INVALID_TLS_SETTING,
                        port.span(),
                        "a TLS listener cannot redirect to https: it is https",
                    )
                    .with_related(tls.span(), "this listener terminates TLS")
                    .with_help("put `https_redirect` on a plaintext listener of its own"),
                );
            }
        }
        if let Some(tls) = &listener.tls {
            listener_tls(tls, found);
        }
    }
    for (_, upstream) in &config.upstreams {
        let upstream = upstream.get_ref();
        let Some(tls) = &upstream.tls else { continue };
        let spanned = tls;
        let tls = tls.get_ref();
        key_pair(&tls.cert, &tls.key, found);
        if let Some(name) = &tls.server_name {
            let text = name.get_ref();
            if let Err(message) = check_server_name(text) {
                found.push(Diagnostic::new(
                    &codes::INVALID_SERVER_NAME,
                    name.span(),
                    message,
                ));
            } else if text.starts_with("*.") {
                found.push(Diagnostic::new(
                    &codes::INVALID_SERVER_NAME,
                    name.span(),
                    format!("`{text}` is a wildcard: a client sends one name"),
                ));
            }
        }
        if !upstream
            .targets
            .get_ref()
            .iter()
            .any(|t| t.get_ref().starts_with("https://") || t.get_ref().contains("${"))
        {
            found.push(Diagnostic::new(
                &codes::TLS_WITHOUT_HTTPS,
                spanned.span(),
                "this `tls` table is unused: no target is `https://`",
            ));
        }
    }
}

fn listener_tls(spanned: &Spanned<ListenerTls>, found: &mut Vec<Diagnostic>) {
    let tls = spanned.get_ref();
    if tls.cert.is_none() && tls.key.is_none() && tls.sni.is_empty() {
        found.push(
            Diagnostic::new(
                &codes::NO_CERTIFICATE,
                spanned.span(),
                "no certificate: add `cert` and `key`, or `sni` entries",
            )
            .with_help("`tls = { cert = \"${file:cert.pem}\", key = \"${file:key.pem}\" }`"),
        );
    }
    key_pair(&tls.cert, &tls.key, found);
    let mut seen: Vec<(String, std::ops::Range<usize>)> = Vec::new();
    for entry in &tls.sni {
        let entry = entry.get_ref();
        secret(&entry.key, found);
        if entry.names.get_ref().is_empty() {
            found.push(Diagnostic::new(
                &codes::INVALID_TLS_SETTING,
                entry.names.span(),
                "`names = []`: this certificate would never be chosen",
            ));
        }
        for name in entry.names.get_ref() {
            if let Err(message) = check_server_name(name.get_ref()) {
                found.push(Diagnostic::new(
                    &codes::INVALID_SERVER_NAME,
                    name.span(),
                    message,
                ));
                continue;
            }
            let lower = name.get_ref().to_ascii_lowercase();
            if let Some((_, first)) = seen.iter().find(|(n, _)| *n == lower) {
                found.push(
                    Diagnostic::new(
                        &codes::DUPLICATE_SERVER_NAME,
                        name.span(),
                        format!("`{lower}` is named by an earlier certificate already"),
                    )
                    .with_related(first.clone(), "first named here"),
                );
            } else {
                seen.push((lower, name.span()));
            }
        }
    }
    if let Some(hsts) = &tls.hsts {
        let text = hsts.get_ref();
        let valid = text
            .split(';')
            .next()
            .and_then(|first| {
                first
                    .trim()
                    .to_ascii_lowercase()
                    .strip_prefix("max-age=")
                    .map(str::to_owned)
            })
            .is_some_and(|age| !age.is_empty() && age.bytes().all(|b| b.is_ascii_digit()))
            && text.bytes().all(|b| b == b' ' || b.is_ascii_graphic());
        if !valid {
            found.push(Diagnostic::new(
                &codes::INVALID_TLS_SETTING,
                hsts.span(),
                format!("`{text}` is not a Strict-Transport-Security value: it starts with `max-age=SECONDS` (RFC 6797 §6.1)"),
            ).with_help("`hsts = \"max-age=31536000; includeSubDomains\"`"));
        }
    }
    if let Some(days) = &tls.expiry_warning_days
        && !(1..=MAX_EXPIRY_WARNING_DAYS).contains(days.get_ref())
    {
        found.push(Diagnostic::new(
            &codes::OUT_OF_RANGE,
            days.span(),
            format!(
                "`expiry_warning_days = {}` is out of range: use 1 to {MAX_EXPIRY_WARNING_DAYS}",
                days.get_ref()
            ),
        ));
    }
    if let Some(auth) = &tls.client_auth {
        let auth = auth.get_ref();
        let headers = [
            &auth.subject_header,
            &auth.san_header,
            &auth.fingerprint_header,
        ];
        let mut names: Vec<String> = Vec::new();
        for header in headers.into_iter().flatten() {
            let lower = header.get_ref().to_ascii_lowercase();
            let message = if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
                Some(format!("`{}` is not a header field name", header.get_ref()))
            } else if RESERVED_FIELDS.contains(&lower.as_str()) {
                Some(format!(
                    "`{}` is written by the gateway itself and cannot carry an identity",
                    header.get_ref()
                ))
            } else if names.contains(&lower) {
                Some(format!(
                    "`{}` carries another identity field already",
                    header.get_ref()
                ))
            } else {
                None
            };
            if let Some(message) = message {
                found.push(Diagnostic::new(
                    &codes::INVALID_TLS_SETTING,
                    header.span(),
                    message,
                ));
            }
            names.push(lower);
        }
    }
}

/// A route that runs a `client_cert` policy on a listener without `client_auth`
/// would refuse every request there: no client is ever asked for a certificate.
fn client_cert_routes(config: &Config, found: &mut Vec<Diagnostic>) {
    for route in &config.routes {
        let route = route.get_ref();
        let mask = listener_mask(config, route);
        for listener in listeners_in(mask, config.listeners.len()) {
            let (listener_name, l) = &config.listeners[listener];
            let l = l.get_ref();
            let asks = l
                .tls
                .as_ref()
                .is_some_and(|tls| tls.get_ref().client_auth.is_some());
            // A redirecting listener routes nothing.
            if asks || l.https_redirect.is_some() {
                continue;
            }
            for attached in chain::resolve(config, route, listener) {
                let needs_cert = config
                    .policy(attached.name.get_ref())
                    .is_some_and(|(_, p)| p.client_cert.is_some());
                if needs_cert {
                    found.push(
                        Diagnostic::new(
                            &codes::CLIENT_CERT_WITHOUT_CLIENT_AUTH,
                            attached.name.span(),
                            format!(
                                "policy `{}` requires a client certificate, but listener `{}` asks for none",
                                attached.name.get_ref(),
                                listener_name.get_ref()
                            ),
                        )
                        .with_related(listener_name.span(), "this listener has no `tls.client_auth`"),
                    );
                }
            }
        }
    }
}

/// A certificate needs its key and a key its certificate; the key is a secret.
fn key_pair(
    cert: &Option<Spanned<String>>,
    key: &Option<Spanned<String>>,
    found: &mut Vec<Diagnostic>,
) {
    match (cert, key) {
        (Some(cert), None) => found.push(Diagnostic::new(
            &codes::MISSING_KEY,
            cert.span(),
            "missing key `key`: a certificate needs its private key",
        )),
        (None, Some(key)) => found.push(Diagnostic::new(
            &codes::MISSING_KEY,
            key.span(),
            "missing key `cert`: a private key needs its certificate",
        )),
        _ => {}
    }
    if let Some(key) = key {
        secret(key, found);
    }
}

/// A private key must come from a file or the environment at start-up.
pub(super) fn secret(key: &Spanned<String>, found: &mut Vec<Diagnostic>) {
    let literal = parse_template(key.get_ref()).is_ok_and(|parts| !has_references(&parts));
    if literal {
        found.push(
            Diagnostic::new(
                &codes::SECRET_IN_CONFIG,
                key.span(),
                "a private key written here would be compiled into the binary",
            )
            .with_help("write `key = \"${file:/etc/gateway/key.pem}\"` or `\"${env:TLS_KEY}\"`"),
        );
    }
}
