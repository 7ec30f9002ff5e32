//! Rate limits: rates that mean something, key sources that exist and can be read on
//! every route that runs the limit, and scopes that say which routes share buckets.

use toml::Spanned;

use gateway_runtime::limit::{MAX_BATCH, MAX_REFILL_SECONDS, parse_rate};
use gateway_runtime::policy::headers;

use crate::chain;
use crate::check::auth::bounded_duration;
use crate::check::listeners::listeners_in;
use crate::check::policies::cidrs;
use crate::check::routes::listener_mask;
use crate::codes;
use crate::diagnostic::Diagnostic;
use crate::pattern;
use crate::syntax::{ConcurrencyPolicy, Config, LimitStore, QuotaPolicy, RateLimitPolicy};

/// Buckets a limit's in-process store may hold: at least one set, at most 256 MiB.
pub const MAX_KEYS: std::ops::RangeInclusive<i64> = 4..=16_777_216;

/// What a limit counts requests by (`key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    ClientIp,
    Route,
    Consumer,
    /// A claim path of a verified token (`jwt.sub`).
    Claim(String),
    /// A lower-case field name (`header.x-tenant`).
    Header(String),
    /// A route parameter (`param.id`).
    Param(String),
}

impl KeySource {
    pub fn parse(text: &str) -> Result<Self, String> {
        Ok(match text.split_once('.') {
            None if text == "client_ip" => KeySource::ClientIp,
            None if text == "route" => KeySource::Route,
            None if text == "consumer" => KeySource::Consumer,
            Some(("jwt", claim)) if !claim.is_empty() => KeySource::Claim(claim.to_owned()),
            Some(("header", name)) if !name.is_empty() => {
                KeySource::Header(name.to_ascii_lowercase())
            }
            Some(("param", name)) if !name.is_empty() => KeySource::Param(name.to_owned()),
            _ => {
                return Err(format!(
                    "`{text}` is not a key: use `client_ip`, `route`, `consumer`, `jwt.CLAIM`, `header.NAME` or `param.NAME`"
                ));
            }
        })
    }

    /// Whether the key reads what an authentication step establishes.
    pub fn needs_identity(&self) -> bool {
        matches!(self, KeySource::Consumer | KeySource::Claim(_))
    }
}

/// Which routes share a limit's buckets (`scope`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Each route its own (the default).
    Route,
    /// Every route that runs the policy.
    Global,
    /// Every route that runs a policy of this group.
    Group(String),
}

impl Scope {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "route" => Ok(Scope::Route),
            "global" => Ok(Scope::Global),
            _ => match text.strip_prefix("group:") {
                Some(name)
                    if !name.is_empty()
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
                {
                    Ok(Scope::Group(name.to_owned()))
                }
                _ => Err(format!(
                    "`{text}` is not a scope: use `route`, `global` or `group:NAME`"
                )),
            },
        }
    }
}

pub(super) fn check(config: &Config, found: &mut Vec<Diagnostic>) {
    let mut groups: Vec<(String, &Spanned<String>, &RateLimitPolicy)> = Vec::new();
    for (_, policy) in &config.policies {
        if let Some(concurrency) = &policy.get_ref().concurrency {
            check_concurrency(concurrency.get_ref(), found);
        }
        if let Some(quota) = &policy.get_ref().quota {
            check_quota(quota, found);
        }
        let Some(limit) = &policy.get_ref().rate_limit else {
            continue;
        };
        let limit = limit.get_ref();
        check_limit(limit, found);
        if let Some(scope) = &limit.scope
            && let Ok(Scope::Group(group)) = Scope::parse(scope.get_ref())
        {
            match groups.iter().find(|(name, _, _)| *name == group) {
                Some((_, first_scope, first)) if !same_limit(first, limit) => found.push(
                    Diagnostic::new(
                        &codes::INVALID_RATE_LIMIT,
                        scope.span(),
                        format!("the limits of `group:{group}` share buckets, so they must have one rate, burst and key"),
                    )
                    .with_related(first_scope.span(), "the group's first limit"),
                ),
                Some(_) => {}
                None => groups.push((group, scope, limit)),
            }
        }
    }
    for (_, upstream) in &config.upstreams {
        let Some(limit) = &upstream.get_ref().concurrency else {
            continue;
        };
        check_concurrency(limit.get_ref(), found);
        if let Some(scope) = &limit.get_ref().scope {
            found.push(Diagnostic::new(
                &codes::INVALID_CONCURRENCY_LIMIT,
                scope.span(),
                "an upstream's limit counts every route's requests to it: it has no `scope`",
            ));
        }
    }
    chains(config, found);
}

fn same_limit(a: &RateLimitPolicy, b: &RateLimitPolicy) -> bool {
    let key = |l: &RateLimitPolicy| l.key.as_ref().map(|k| k.get_ref().clone());
    let burst = |l: &RateLimitPolicy| l.burst.as_ref().map(|b| *b.get_ref());
    parse_rate(a.rate.get_ref()) == parse_rate(b.rate.get_ref())
        && burst(a) == burst(b)
        && key(a) == key(b)
}

fn check_limit(limit: &RateLimitPolicy, found: &mut Vec<Diagnostic>) {
    let invalid = |span, message: String| {
        Diagnostic::new(&codes::INVALID_RATE_LIMIT, span, message)
            .with_help(codes::INVALID_RATE_LIMIT.fix)
    };
    let rate = parse_rate(limit.rate.get_ref());
    if let Err(message) = &rate {
        found.push(invalid(limit.rate.span(), message.clone()));
    }
    if let Some(burst) = &limit.burst {
        if !(1..=1_000_000_000).contains(burst.get_ref()) {
            found.push(invalid(
                burst.span(),
                format!(
                    "a burst of {} admits nothing or is not a number of requests: it is at least 1",
                    burst.get_ref()
                ),
            ));
        } else if let Ok((count, period)) = rate {
            let refill = (*burst.get_ref() as u64).saturating_mul(period) / count;
            if refill > MAX_REFILL_SECONDS {
                found.push(invalid(
                    burst.span(),
                    format!("this burst takes {refill} s to refill at {}: more than a day is a quota, not a rate limit", limit.rate.get_ref()),
                ));
            }
        }
    }
    if let Some(max) = &limit.max_keys
        && !MAX_KEYS.contains(max.get_ref())
    {
        found.push(invalid(
            max.span(),
            format!(
                "`max_keys` is {}; it is from {} to {}",
                max.get_ref(),
                MAX_KEYS.start(),
                MAX_KEYS.end()
            ),
        ));
    }
    if let Some(key) = &limit.key {
        check_key(key, found);
    }
    if let Some(scope) = &limit.scope
        && let Err(message) = Scope::parse(scope.get_ref())
    {
        found.push(invalid(scope.span(), message));
    }
    cidrs(&limit.trusted_proxies, found);
    if let Some(store) = &limit.store {
        check_store(store, &invalid, found);
        if let Some(batch) = &store.get_ref().batch {
            let burst = limit.burst.as_ref().map_or_else(
                || rate.as_ref().map_or(1, |(count, _)| *count as i64),
                |b| *b.get_ref(),
            );
            let most = burst.clamp(1, MAX_BATCH as i64);
            if !(1..=most).contains(batch.get_ref()) {
                found.push(invalid(
                    batch.span(),
                    format!(
                        "`batch` is {}; it is from 1 to the burst ({most}): a gateway leases at most a whole bucket",
                        batch.get_ref()
                    ),
                ));
            }
        }
    }
}

/// A limit's or quota's `key`: a source the gateway can read.
fn check_key(key: &Spanned<String>, found: &mut Vec<Diagnostic>) {
    match KeySource::parse(key.get_ref()) {
        Ok(KeySource::Header(name)) if !headers::is_token(&name) => found.push(Diagnostic::new(
            &codes::INVALID_HEADER_NAME,
            key.span(),
            format!("`{name}` is not a header name"),
        )),
        Ok(_) => {}
        Err(message) => found.push(Diagnostic::new(
            &codes::UNKNOWN_LIMIT_KEY,
            key.span(),
            message,
        )),
    }
}

/// A Redis store: its URL, a bounded timeout, a failure mode.
fn check_store(
    store: &Spanned<LimitStore>,
    invalid: &impl Fn(std::ops::Range<usize>, String) -> Diagnostic,
    found: &mut Vec<Diagnostic>,
) {
    let s = store.get_ref();
    if s.redis.is_none() {
        found.push(invalid(
            store.span(),
            "a `store` names where the counts live: `redis = \"${env:REDIS_URL}\"`".to_owned(),
        ));
    }
    bounded_duration(&s.timeout, 5, "a check waits for Redis at most 5s", found);
    if let Some(mode) = &s.on_error
        && !matches!(mode.get_ref().as_str(), "fail_open" | "fail_closed")
    {
        found.push(invalid(
            mode.span(),
            format!(
                "`{}` is not a failure mode: use `fail_open` or `fail_closed`",
                mode.get_ref()
            ),
        ));
    }
}

/// Largest quota: more requests than this a day or month is no quota.
pub const MAX_QUOTA: i64 = 1_000_000_000_000;

fn check_quota(quota: &Spanned<QuotaPolicy>, found: &mut Vec<Diagnostic>) {
    let invalid = |span, message: String| {
        Diagnostic::new(&codes::INVALID_QUOTA, span, message).with_help(codes::INVALID_QUOTA.fix)
    };
    let q = quota.get_ref();
    if !(1..=MAX_QUOTA).contains(q.limit.get_ref()) {
        found.push(invalid(
            q.limit.span(),
            format!(
                "`limit` is {}; it is from 1 to {MAX_QUOTA}",
                q.limit.get_ref()
            ),
        ));
    }
    if !matches!(q.per.get_ref().as_str(), "day" | "month") {
        found.push(invalid(
            q.per.span(),
            format!(
                "`{}` is not a quota period: use `day` or `month` (shorter periods are rate limits)",
                q.per.get_ref()
            ),
        ));
    }
    let rolling = match &q.window {
        Some(window) => match window.get_ref().as_str() {
            "calendar" => false,
            "rolling" => true,
            other => {
                found.push(invalid(
                    window.span(),
                    format!("`{other}` is not a window: use `calendar` or `rolling`"),
                ));
                false
            }
        },
        None => false,
    };
    if let Some(zone) = &q.time_zone {
        if rolling {
            found.push(invalid(
                zone.span(),
                "a rolling window is the last 24 hours or 30 days in any time zone: remove `time_zone`, or use `window = \"calendar\"`".to_owned(),
            ));
        } else if let Err(e) = jiff::tz::TimeZone::get(zone.get_ref()) {
            found.push(invalid(zone.span(), format!("not a time zone: {e}")));
        }
    }
    if let Some(key) = &q.key {
        check_key(key, found);
    }
    if let Some(scope) = &q.scope
        && !matches!(scope.get_ref().as_str(), "route" | "global")
    {
        found.push(invalid(
            scope.span(),
            format!(
                "`{}` is not a quota scope: use `route` or `global`",
                scope.get_ref()
            ),
        ));
    }
    cidrs(&q.trusted_proxies, found);
    match &q.store {
        None => found.push(invalid(
            quota.span(),
            "a quota outlives the process: name its Redis, `store = { redis = \"${env:REDIS_URL}\" }`".to_owned(),
        )),
        Some(store) => {
            check_store(store, &invalid, found);
            if let Some(batch) = &store.get_ref().batch {
                found.push(invalid(
                    batch.span(),
                    "a quota counts every request in Redis: it has no `batch`".to_owned(),
                ));
            }
        }
    }
}

/// Most requests a concurrency limit may hold in flight, or queue.
pub const MAX_IN_FLIGHT: i64 = 1_000_000;
/// Longest a request may wait in a concurrency limit's queue, in seconds.
pub const MAX_QUEUE_SECONDS: u64 = 60;

fn check_concurrency(limit: &ConcurrencyPolicy, found: &mut Vec<Diagnostic>) {
    let invalid = |span, message: String| {
        Diagnostic::new(&codes::INVALID_CONCURRENCY_LIMIT, span, message)
            .with_help(codes::INVALID_CONCURRENCY_LIMIT.fix)
    };
    if !(1..=MAX_IN_FLIGHT).contains(limit.max.get_ref()) {
        found.push(invalid(
            limit.max.span(),
            format!(
                "`max` is {}; it is from 1 to {MAX_IN_FLIGHT}",
                limit.max.get_ref()
            ),
        ));
    }
    if let Some(queue) = &limit.queue
        && !(0..=MAX_IN_FLIGHT).contains(queue.get_ref())
    {
        found.push(invalid(
            queue.span(),
            format!(
                "`queue` is {}; it is from 0 to {MAX_IN_FLIGHT}",
                queue.get_ref()
            ),
        ));
    }
    bounded_duration(
        &limit.queue_timeout,
        MAX_QUEUE_SECONDS,
        "a request waits in the queue at most 60s",
        found,
    );
    if let Some(scope) = &limit.scope {
        match Scope::parse(scope.get_ref()) {
            Ok(Scope::Route | Scope::Global) => {}
            _ => found.push(invalid(
                scope.span(),
                format!(
                    "`{}` is not a concurrency scope: use `route` or `global`",
                    scope.get_ref()
                ),
            )),
        }
    }
}

/// A per-route limit on the same key as an earlier one of the chain, and no tighter
/// in rate or burst (or the reverse), never refuses first: one of the two is dead
/// weight, often a typo in one of them.
fn redundant(
    earlier: &[(&Spanned<String>, &RateLimitPolicy)],
    (name, limit): (&Spanned<String>, &RateLimitPolicy),
    found: &mut Vec<Diagnostic>,
) {
    let per_route = |l: &RateLimitPolicy| l.scope.as_ref().is_none_or(|s| s.get_ref() == "route");
    fn key(l: &RateLimitPolicy) -> &str {
        l.key.as_ref().map_or("client_ip", |k| k.get_ref().as_str())
    }
    let shape = |l: &RateLimitPolicy| {
        let (count, period) = parse_rate(l.rate.get_ref()).ok()?;
        let burst = l.burst.as_ref().map_or(count, |b| *b.get_ref() as u64);
        Some((u128::from(count), u128::from(period), burst))
    };
    if !per_route(limit) {
        return;
    }
    let Some((count, period, burst)) = shape(limit) else {
        return;
    };
    // Buckets in this process and in a Redis count different traffic.
    fn store(l: &RateLimitPolicy) -> Option<&str> {
        let store = l.store.as_ref()?.get_ref();
        store.redis.as_ref().map(|url| url.get_ref().as_str())
    }
    for (other_name, other) in earlier {
        if !per_route(other) || key(other) != key(limit) || store(other) != store(limit) {
            continue;
        }
        let Some((other_count, other_period, other_burst)) = shape(other) else {
            continue;
        };
        // Rates compared as count / period, crosswise.
        let looser =
            |c: u128, p: u128, b: u64, oc: u128, op: u128, ob: u64| c * op >= oc * p && b >= ob;
        let (dead, tight) = if looser(count, period, burst, other_count, other_period, other_burst)
        {
            (name, *other_name)
        } else if looser(other_count, other_period, other_burst, count, period, burst) {
            (*other_name, name)
        } else {
            continue;
        };
        found.push(
            Diagnostic::new(
                &codes::REDUNDANT_LIMIT,
                dead.span(),
                format!(
                    "policy `{}` never refuses first: `{}` limits the same key on this route, and is no looser in rate or burst",
                    dead.get_ref(),
                    tight.get_ref()
                ),
            )
            .with_related(tight.span(), "the tighter limit")
            .with_help(codes::REDUNDANT_LIMIT.fix),
        );
    }
}

/// A key that reads an identity needs an authentication step before the limit in
/// every chain it runs in, of the kind it reads; a parameter key needs the route to
/// capture the parameter.
fn chains(config: &Config, found: &mut Vec<Diagnostic>) {
    for route in &config.routes {
        let route = route.get_ref();
        let params = pattern::parse(route.path.get_ref())
            .map(|p| p.params)
            .unwrap_or_default();
        for listener in listeners_in(listener_mask(config, route), config.listeners.len()) {
            let (mut tokens, mut consumers) = (false, false);
            let mut limits: Vec<(&Spanned<String>, &RateLimitPolicy)> = Vec::new();
            for attached in chain::resolve(config, route, listener) {
                let Some((_, policy)) = config.policy(attached.name.get_ref()) else {
                    continue;
                };
                if let Some(limit) = &policy.rate_limit {
                    redundant(&limits, (attached.name, limit.get_ref()), found);
                    limits.push((attached.name, limit.get_ref()));
                }
                let members = policy
                    .any
                    .iter()
                    .flat_map(|m| m.get_ref())
                    .filter_map(|m| config.policy(m.get_ref()).map(|(_, p)| p));
                for p in members.chain([policy]) {
                    tokens |= p.jwt.is_some() || p.introspection.is_some();
                    consumers |= p.api_key.is_some();
                }
                // A quota is per consumer unless it says otherwise.
                let key = match (&policy.rate_limit, &policy.quota) {
                    (Some(limit), _) => limit
                        .get_ref()
                        .key
                        .as_ref()
                        .map(|k| (k.get_ref().as_str(), k.span())),
                    (None, Some(quota)) => Some(
                        quota
                            .get_ref()
                            .key
                            .as_ref()
                            .map_or(("consumer", quota.span()), |k| {
                                (k.get_ref().as_str(), k.span())
                            }),
                    ),
                    (None, None) => None,
                };
                let Some((key, span)) = key else {
                    continue;
                };
                let missing = match KeySource::parse(key) {
                    Ok(KeySource::Claim(_)) if !tokens => {
                        "reads a token's claim, but nothing before it in this route's chain verifies a token (`jwt`, `introspection`)"
                    }
                    Ok(KeySource::Consumer) if !consumers => {
                        "reads the API key's consumer, but nothing before it in this route's chain checks API keys (`api_key`)"
                    }
                    Ok(KeySource::Param(name)) if !params.iter().any(|p| p.name == name) => {
                        found.push(
                            Diagnostic::new(
                                &codes::LIMIT_KEY_UNAVAILABLE,
                                span.clone(),
                                format!(
                                    "route `{}` captures no parameter `{name}`",
                                    route.path.get_ref()
                                ),
                            )
                            .with_related(attached.name.span(), "the route runs the limit here"),
                        );
                        continue;
                    }
                    _ => continue,
                };
                found.push(
                    Diagnostic::new(
                        &codes::LIMIT_KEY_UNAVAILABLE,
                        attached.name.span(),
                        format!("policy `{}` {missing}", attached.name.get_ref()),
                    )
                    .with_help(codes::LIMIT_KEY_UNAVAILABLE.fix),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_scopes() {
        assert_eq!(KeySource::parse("client_ip"), Ok(KeySource::ClientIp));
        assert_eq!(
            KeySource::parse("jwt.realm.team"),
            Ok(KeySource::Claim("realm.team".into()))
        );
        assert_eq!(
            KeySource::parse("header.X-Tenant"),
            Ok(KeySource::Header("x-tenant".into()))
        );
        for bad in ["ip", "jwt.", "header", "cookie.x", ""] {
            assert!(KeySource::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Scope::parse("group:orders"),
            Ok(Scope::Group("orders".into()))
        );
        for bad in ["group:", "group:a b", "routes", "GLOBAL"] {
            assert!(Scope::parse(bad).is_err(), "{bad}");
        }
    }
}
