//! Authentication and authorization policies: keys that fit their algorithms, secrets
//! kept out of the file, token and key places that can be read, consumers' keys, and
//! every `authorize` step preceded by an authentication step in each chain it runs in.

use toml::Spanned;

use gateway_runtime::auth::{KeyFamily, algorithm_family, parse_digest, parse_leeway};
use gateway_runtime::settings::{
    has_references, parse_duration, parse_size, parse_template, parse_url,
};

use crate::chain;
use crate::check::lints::is_loopback;
use crate::check::listeners::listeners_in;
use crate::check::policies::{RULE, check_header_name};
use crate::check::routes::listener_mask;
use crate::codes;
use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::syntax::{
    ApiKeyPolicy, AuthorizePolicy, Config, ExtAuthzPolicy, IntrospectionPolicy, JwksPolicy,
    JwtPolicy,
};

const ALGORITHMS: [&str; 12] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];
const TOKEN_SIZES: std::ops::RangeInclusive<u64> = 256..=65536;
const MAX_CACHE_SIZE: i64 = 1_000_000;

pub(super) fn check(config: &Config, found: &mut Vec<Diagnostic>) {
    for (_, policy) in &config.policies {
        let policy = policy.get_ref();
        if let Some(jwt) = &policy.jwt {
            check_jwt(jwt, found);
        }
        if let Some(api_key) = &policy.api_key {
            check_api_key(api_key, config, found);
        }
        if let Some(rule) = &policy.authorize {
            check_authorize(rule, found);
        }
        if let Some(members) = &policy.any {
            check_any(members, config, found);
        }
        if let Some(authz) = &policy.ext_authz {
            check_ext_authz(authz.get_ref(), found);
        }
        if let Some(introspection) = &policy.introspection {
            check_introspection(introspection, found);
        }
    }
    for (_, consumer) in &config.consumers {
        for key in consumer.get_ref().keys.get_ref() {
            match key.get_ref().strip_prefix("sha256:") {
                Some(hex) => {
                    if let Err(message) = parse_digest(hex) {
                        found.push(Diagnostic::new(
                            &codes::INVALID_KEY_DIGEST,
                            key.span(),
                            message,
                        ));
                    }
                }
                None => literal_secret(key, "an API key", found),
            }
        }
    }
    chains(config, found);
}

fn literal_secret(value: &Spanned<String>, what: &str, found: &mut Vec<Diagnostic>) {
    if parse_template(value.get_ref()).is_ok_and(|parts| !has_references(&parts)) {
        found.push(
            Diagnostic::new(
                &codes::SECRET_IN_CONFIG,
                value.span(),
                format!("{what} written here would be compiled into the binary"),
            )
            .with_help("write `\"${env:NAME}\"` or `\"${file:PATH}\"`, read at start-up"),
        );
    }
}

fn setting_error(span: std::ops::Range<usize>, message: impl Into<String>) -> Diagnostic {
    Diagnostic::new(&codes::INVALID_AUTH_SETTING, span, message)
}

fn check_jwt(jwt: &Spanned<JwtPolicy>, found: &mut Vec<Diagnostic>) {
    let span = jwt.span();
    let jwt = jwt.get_ref();
    let mut families = Vec::new();
    for algorithm in jwt.algorithms.iter().flat_map(|a| a.get_ref()) {
        match algorithm_family(algorithm.get_ref()) {
            Some(family) => families.push((algorithm, family)),
            None if algorithm.get_ref().eq_ignore_ascii_case("none") => {
                found.push(Diagnostic::new(
                    &codes::UNKNOWN_ALGORITHM,
                    algorithm.span(),
                    "`none` is an unsigned token, which anyone can write: never accepted",
                ))
            }
            None => found.push(Diagnostic::new(
                &codes::UNKNOWN_ALGORITHM,
                algorithm.span(),
                format!(
                    "`{}` is not an algorithm the gateway verifies{}",
                    algorithm.get_ref(),
                    did_you_mean(algorithm.get_ref(), ALGORITHMS)
                ),
            )),
        }
    }
    if let Some(list) = &jwt.algorithms
        && list.get_ref().is_empty()
    {
        found.push(setting_error(
            list.span(),
            "`algorithms` is empty: name at least one",
        ));
    }
    let family = families.first().map(|(_, f)| *f);
    let given: Vec<&str> = [
        ("secret", jwt.secret.is_some()),
        ("key", jwt.key.is_some()),
        ("jwks", jwt.jwks.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, present)| present.then_some(name))
    .collect();
    if given.len() > 1 {
        found.push(setting_error(
            span.clone(),
            format!(
                "give one of `secret`, `key` and `jwks`, not {}",
                given.join(" and ")
            ),
        ));
    }
    if given.is_empty() {
        found.push(
            Diagnostic::new(&codes::MISSING_KEY, span.clone(), "the `jwt` policy has no key")
                .with_help("add `secret = \"${env:JWT_SECRET}\"` (HS*), `key = \"${file:PATH}\"` (a PEM public key) or `jwks = { url = \"https://…\" }`"),
        );
    }
    // Mixed key kinds are fine for a published set, whose keys each have their own.
    if jwt.jwks.is_none()
        && let Some(((first, family), rest)) = families.split_first()
        && let Some((other, _)) = rest.iter().find(|(_, f)| f != family)
    {
        found.push(
            Diagnostic::new(
                &codes::KEY_ALGORITHM_MISMATCH,
                other.span(),
                format!(
                    "`{}` needs another kind of key than `{}`",
                    other.get_ref(),
                    first.get_ref()
                ),
            )
            .with_help(codes::KEY_ALGORITHM_MISMATCH.fix),
        );
    }
    if let Some(secret) = &jwt.secret {
        literal_secret(secret, "an HMAC secret", found);
        if family.is_some_and(|f| f != KeyFamily::Hmac) {
            found.push(mismatch(secret, "a `secret` verifies only HS256/384/512"));
        }
    }
    if let Some(key) = &jwt.key {
        let text = key.get_ref();
        let literal = parse_template(text).is_ok_and(|parts| !has_references(&parts));
        if literal && text.contains("PRIVATE KEY") {
            found.push(
                Diagnostic::new(
                    &codes::SECRET_IN_CONFIG,
                    key.span(),
                    "a private key written here would be compiled into the binary; the gateway needs the public key only",
                )
                .with_help("give the public key (`-----BEGIN PUBLIC KEY-----`)"),
            );
        } else if literal && !text.contains("-----BEGIN ") {
            found.push(setting_error(
                key.span(),
                "`key` is a PEM public key (`-----BEGIN PUBLIC KEY-----`), or `${file:PATH}` to one",
            ));
        }
    }
    let public = jwt
        .key
        .as_ref()
        .or(jwt.jwks.as_ref().map(|j| &j.get_ref().url));
    if let Some(at) = public {
        match families.iter().find(|(_, f)| *f == KeyFamily::Hmac) {
            Some((hs, _)) => found.push(mismatch(
                hs,
                "HS256/384/512 verify with a `secret`, never with a public or published key",
            )),
            None if jwt.algorithms.is_none() => found.push(
                setting_error(at.span(), "name the `algorithms` this key verifies")
                    .with_help("`algorithms = [\"RS256\"]`: a token never chooses its own"),
            ),
            None => {}
        }
    }
    if let Some(jwks) = &jwt.jwks {
        check_jwks(jwks.get_ref(), found);
    }
    if let (Some(header), Some(cookie)) = (&jwt.header, &jwt.cookie) {
        found.push(
            setting_error(
                cookie.span(),
                "read the token from a `header` or a `cookie`, not both",
            )
            .with_related(header.span(), "the header is named here"),
        );
    }
    if let Some(header) = &jwt.header {
        check_header_name(header, RULE, found);
    }
    if let Some(cookie) = &jwt.cookie
        && !gateway_runtime::policy::headers::is_token(cookie.get_ref())
    {
        found.push(setting_error(cookie.span(), "not a cookie name"));
    }
    if let Some(leeway) = &jwt.leeway
        && let Err(message) = parse_leeway(leeway.get_ref())
    {
        let code = match parse_duration(leeway.get_ref()) {
            Ok(_) => &codes::OUT_OF_RANGE,
            Err(_) => &codes::INVALID_DURATION,
        };
        found.push(Diagnostic::new(code, leeway.span(), message));
    }
    if let Some(size) = &jwt.max_token_size {
        match parse_size(size.get_ref()) {
            Ok(n) if TOKEN_SIZES.contains(&n) => {}
            Ok(_) => found.push(Diagnostic::new(
                &codes::OUT_OF_RANGE,
                size.span(),
                "`max_token_size` must be 256B to 64KiB",
            )),
            Err(message) => found.push(Diagnostic::new(&codes::INVALID_SIZE, size.span(), message)),
        }
    }
    if let Some(size) = &jwt.cache_size
        && !(0..=MAX_CACHE_SIZE).contains(size.get_ref())
    {
        found.push(Diagnostic::new(
            &codes::OUT_OF_RANGE,
            size.span(),
            format!("`cache_size` must be 0 to {MAX_CACHE_SIZE}"),
        ));
    }
    for claim in jwt.required_claims.iter().flat_map(|c| c.get_ref()) {
        if claim.get_ref().is_empty() {
            found.push(setting_error(claim.span(), "an empty claim name"));
        }
    }
    check_forward_claims(&jwt.forward_claims, found);
}

/// The most a key set may live: over a week keeps a revoked key in use.
const JWKS_MAX_REFRESH: u64 = 7 * 24 * 3600;

fn check_jwks(jwks: &JwksPolicy, found: &mut Vec<Diagnostic>) {
    let url = &jwks.url;
    if parse_template(url.get_ref()).is_ok_and(|parts| !has_references(&parts))
        && let Ok((target, _)) = parse_url(url.get_ref())
        && target.scheme == http::uri::Scheme::HTTP
    {
        let host = target.authority.host();
        if is_loopback(host) {
            found.push(Diagnostic::new(
                &codes::PLAIN_HTTP_JWKS,
                url.span(),
                "the key set is fetched over plain HTTP",
            ));
        } else {
            found.push(
                setting_error(
                    url.span(),
                    format!(
                        "keys fetched over plain HTTP from `{host}` could be replaced on the way"
                    ),
                )
                .with_help("use `https://`; plain `http://` is allowed to a loopback address only"),
            );
        }
    }
    let mut lifetime = |value| {
        bounded_duration(
            value,
            JWKS_MAX_REFRESH,
            "a key set's lifetime may be at most 7 days",
            found,
        )
    };
    lifetime(&jwks.refresh);
    let (min, max) = (lifetime(&jwks.min_refresh), lifetime(&jwks.max_refresh));
    if let (Some(low), Some(high), Some(at)) = (min, max, &jwks.min_refresh)
        && low > high
    {
        found.push(setting_error(
            at.span(),
            "`min_refresh` is above `max_refresh`",
        ));
    }
    let why = "refetches for unknown keys may be at most 7 days apart";
    bounded_duration(&jwks.unknown_kid_refetch, JWKS_MAX_REFRESH, why, found);
    bounded_duration(
        &jwks.timeout,
        60,
        "a key-set fetch may take at most 60s",
        found,
    );
}

/// A duration the compiler lays out itself, so written as it is (no `${…}`), and at
/// most `max_seconds`: its seconds, or `None` after reporting why not.
pub(crate) fn bounded_duration(
    value: &Option<Spanned<String>>,
    max_seconds: u64,
    too_long: &str,
    found: &mut Vec<Diagnostic>,
) -> Option<u64> {
    let value = value.as_ref()?;
    let text = value.get_ref();
    let parsed = if parse_template(text).is_ok_and(|parts| has_references(&parts)) {
        Err(format!(
            "`{text}` is read at build time: write the duration itself, not a reference"
        ))
    } else {
        parse_duration(text).map(|d| d.as_secs())
    };
    match parsed {
        Ok(seconds) if seconds <= max_seconds => return Some(seconds),
        Ok(_) => found.push(Diagnostic::new(
            &codes::OUT_OF_RANGE,
            value.span(),
            too_long,
        )),
        Err(message) => found.push(Diagnostic::new(
            &codes::INVALID_DURATION,
            value.span(),
            message,
        )),
    }
    None
}

/// Claim paths and the fields they are forwarded as: valid, distinct, and never a
/// credential field (every client's would be removed).
fn check_forward_claims(
    claims: &Option<Spanned<std::collections::BTreeMap<Spanned<String>, Spanned<String>>>>,
    found: &mut Vec<Diagnostic>,
) {
    let mut headers: Vec<String> = Vec::new();
    for (claim, header) in claims.iter().flat_map(|f| f.get_ref()) {
        if claim.get_ref().is_empty() {
            found.push(setting_error(claim.span(), "an empty claim name"));
        }
        check_header_name(header, RULE, found);
        let lower = header.get_ref().to_ascii_lowercase();
        if matches!(lower.as_str(), "authorization" | "cookie") {
            found.push(setting_error(
                header.span(),
                format!("a claim cannot be forwarded as `{lower}`"),
            ));
        }
        if headers.contains(&lower) {
            found.push(setting_error(
                header.span(),
                format!("two claims forwarded as `{lower}`"),
            ));
        }
        headers.push(lower);
    }
}

fn mismatch(at: &Spanned<String>, message: &str) -> Diagnostic {
    Diagnostic::new(&codes::KEY_ALGORITHM_MISMATCH, at.span(), message)
        .with_help(codes::KEY_ALGORITHM_MISMATCH.fix)
}

fn check_api_key(api_key: &Spanned<ApiKeyPolicy>, config: &Config, found: &mut Vec<Diagnostic>) {
    let span = api_key.span();
    let api_key = api_key.get_ref();
    if let (Some(header), Some(query)) = (&api_key.header, &api_key.query) {
        found.push(
            setting_error(
                query.span(),
                "read the key from a `header` or a `query` parameter, not both",
            )
            .with_related(header.span(), "the header is named here"),
        );
    }
    if let Some(header) = &api_key.header {
        check_header_name(header, RULE, found);
    }
    if let Some(query) = &api_key.query {
        let name = query.get_ref();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
        {
            found.push(setting_error(
                query.span(),
                "a query parameter name: letters, digits, `-`, `_`, `.`, `~`",
            ));
        }
    }
    if config.consumers.is_empty() {
        found.push(
            setting_error(
                span,
                "an `api_key` policy, but no `[consumers.NAME]` holds a key",
            )
            .with_help("declare `[consumers.NAME]` with `keys = [\"${env:NAME_KEY}\"]`"),
        );
    }
}

fn check_authorize(rule: &Spanned<AuthorizePolicy>, found: &mut Vec<Diagnostic>) {
    let span = rule.span();
    let r = rule.get_ref();
    let lists = [&r.scopes, &r.roles, &r.groups];
    let empty = lists
        .iter()
        .all(|l| l.as_ref().is_none_or(|l| l.get_ref().is_empty()))
        && r.claims.as_ref().is_none_or(|c| c.get_ref().is_empty());
    if empty {
        found.push(setting_error(
            span,
            "`authorize` requires nothing: name `scopes`, `roles`, `claims` or `groups`",
        ));
    }
    if let Some(claim) = &r.roles_claim
        && r.roles.is_none()
    {
        found.push(setting_error(claim.span(), "`roles_claim` without `roles`"));
    }
}

/// The longest an authorization service may take: it holds every request it checks.
const MAX_EXT_AUTHZ_TIMEOUT_SECONDS: u64 = 60;

fn check_ext_authz(authz: &ExtAuthzPolicy, found: &mut Vec<Diagnostic>) {
    let path = authz.path.get_ref();
    if !path.starts_with('/') || http::uri::PathAndQuery::try_from(path.as_str()).is_err() {
        found.push(setting_error(
            authz.path.span(),
            "`path` is the path (and query) asked on the service, starting with `/`",
        ));
    }
    for name in [&authz.request_headers, &authz.response_headers]
        .into_iter()
        .flatten()
        .flat_map(|l| l.get_ref())
    {
        check_header_name(name, RULE, found);
    }
    // Fields the service sets are removed from every client request: never credentials.
    for name in authz.response_headers.iter().flat_map(|l| l.get_ref()) {
        let lower = name.get_ref().to_ascii_lowercase();
        if matches!(lower.as_str(), "authorization" | "cookie" | "x-api-key") {
            found.push(setting_error(
                name.span(),
                format!("`{lower}` cannot be set from the service's answer: every client's would be removed"),
            ));
        }
    }
    bounded_duration(
        &authz.timeout,
        MAX_EXT_AUTHZ_TIMEOUT_SECONDS,
        "an authorization service may take at most 60s",
        found,
    );
}

fn check_introspection(introspection: &Spanned<IntrospectionPolicy>, found: &mut Vec<Diagnostic>) {
    let span = introspection.span();
    let i = introspection.get_ref();
    let path = i.path.get_ref();
    if !path.starts_with('/') || http::uri::PathAndQuery::try_from(path.as_str()).is_err() {
        found.push(setting_error(
            i.path.span(),
            "`path` is the endpoint's path on its upstream, starting with `/`",
        ));
    }
    match (&i.client_id, &i.client_secret) {
        (Some(_), Some(secret)) => literal_secret(secret, "a client secret", found),
        _ => found.push(
            setting_error(span, "an introspection endpoint takes the gateway's client credentials (RFC 7662 §2.1)")
                .with_help("add `client_id = \"gateway\"` and `client_secret = \"${env:INTROSPECTION_SECRET}\"`"),
        ),
    }
    for value in [&i.timeout, &i.cache_ttl, &i.negative_ttl] {
        let why = "at most `1h`: a revoked token must not stay cached longer";
        bounded_duration(value, 3600, why, found);
    }
    if let Some(size) = &i.cache_size
        && !(0..=MAX_CACHE_SIZE).contains(size.get_ref())
    {
        found.push(Diagnostic::new(
            &codes::OUT_OF_RANGE,
            size.span(),
            format!("`cache_size` must be 0 to {MAX_CACHE_SIZE}"),
        ));
    }
    check_forward_claims(&i.forward_claims, found);
}

/// `any = [...]`: two or more authentication policies, each named once.
fn check_any(
    members: &Spanned<Vec<Spanned<String>>>,
    config: &Config,
    found: &mut Vec<Diagnostic>,
) {
    if members.get_ref().len() < 2 {
        found.push(setting_error(
            members.span(),
            "`any` chooses between two or more authentication policies",
        ));
    }
    let mut seen: Vec<&str> = Vec::new();
    for member in members.get_ref() {
        let name = member.get_ref().as_str();
        if seen.contains(&name) {
            found.push(setting_error(
                member.span(),
                format!("`{name}` is named twice"),
            ));
        }
        seen.push(name);
        match config.policy(name) {
            None if config.broken_names.iter().any(|b| b == name) => {}
            None => found.push(Diagnostic::new(
                &codes::UNKNOWN_POLICY,
                member.span(),
                format!(
                    "unknown policy `{name}`{}",
                    did_you_mean(
                        name,
                        config.policies.iter().map(|(n, _)| n.get_ref().as_str())
                    )
                ),
            )),
            Some((_, policy))
                if policy.jwt.is_none()
                    && policy.api_key.is_none()
                    && policy.introspection.is_none() =>
            {
                found.push(setting_error(
                    member.span(),
                    format!("`{name}` is not a `jwt`, `introspection` or `api_key` policy"),
                ));
            }
            Some(_) => {}
        }
    }
}

/// Each `authorize` step needs an authentication step before it on every chain it
/// runs in; every route authenticates or says it is public (a lint, allowed by default).
fn chains(config: &Config, found: &mut Vec<Diagnostic>) {
    for route in &config.routes {
        let route = route.get_ref();
        let mut authenticated_everywhere = true;
        for listener in listeners_in(listener_mask(config, route), config.listeners.len()) {
            let mut authenticated = false;
            // An authorization service vouches for a request too, though it leaves
            // no identity for `authorize` to read.
            let mut vouched = false;
            for attached in chain::resolve(config, route, listener) {
                let Some((_, policy)) = config.policy(attached.name.get_ref()) else {
                    continue;
                };
                authenticated |= policy.jwt.is_some()
                    || policy.api_key.is_some()
                    || policy.any.is_some()
                    || policy.introspection.is_some();
                vouched |= policy.ext_authz.is_some();
                if policy.authorize.is_some() && !authenticated {
                    found.push(
                        Diagnostic::new(
                            &codes::AUTHORIZATION_WITHOUT_AUTHENTICATION,
                            attached.name.span(),
                            format!(
                                "policy `{}` authorizes, but nothing before it in this route's chain authenticates",
                                attached.name.get_ref()
                            ),
                        )
                        .with_help(codes::AUTHORIZATION_WITHOUT_AUTHENTICATION.fix),
                    );
                }
            }
            authenticated_everywhere &= authenticated || vouched;
        }
        let public = route.public.as_ref().is_some_and(|p| *p.get_ref());
        if !authenticated_everywhere && !public {
            found.push(
                Diagnostic::new(
                    &codes::UNAUTHENTICATED_ROUTE,
                    route.path.span(),
                    format!("route `{}` authenticates no one", route.path.get_ref()),
                )
                .with_help(codes::UNAUTHENTICATED_ROUTE.fix),
            );
        }
    }
}
