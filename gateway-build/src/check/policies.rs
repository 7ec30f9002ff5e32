//! Policies: each `[policies.NAME]` on its own (one kind; valid CIDR blocks; header
//! names, values and templates), the names that attach them (routes, listeners,
//! groups, skips), and every route's resolved chains (no policy twice, every
//! parameter a header value uses captured, some address left to reach the route).

use std::collections::BTreeMap;
use std::ops::Range;

use gateway_runtime::policy::client_cert;
use gateway_runtime::policy::headers::{self, TemplatePart};
use gateway_runtime::policy::ip::Cidr;
use gateway_runtime::settings::{has_references, parse_template};
use toml::Spanned;

use crate::chain::{self, Source};
use crate::check::listeners::listeners_in;
use crate::check::routes::listener_mask;
use crate::codes;
use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::syntax::{Config, HeaderOps, IpPolicy, Policy, Route};

pub(super) fn check(config: &Config, found: &mut Vec<Diagnostic>) {
    for (name, policy) in &config.policies {
        check_policy(name, policy, found);
    }
    check_references(config, found);
    let mut used = vec![false; config.policies.len()];
    for route in &config.routes {
        let route = route.get_ref();
        let listeners = listener_mask(config, route);
        for listener in listeners_in(listeners, config.listeners.len()) {
            let chain = chain::resolve(config, route, listener);
            for attached in &chain {
                if let Some((i, policy)) = config.policy(attached.name.get_ref()) {
                    used[i] = true;
                    // An `any` step runs its members.
                    for member in policy.any.iter().flat_map(|m| m.get_ref()) {
                        if let Some((m, _)) = config.policy(member.get_ref()) {
                            used[m] = true;
                        }
                    }
                }
            }
            check_chain(config, route, listener, &chain, found);
        }
    }
    // A policy nothing runs is dead configuration, often an attachment forgotten.
    for ((name, _), used) in config.policies.iter().zip(used) {
        if !used && !config.incomplete {
            found.push(Diagnostic::new(
                &codes::UNUSED_POLICY,
                name.span(),
                format!("policy `{}` is not run by any route", name.get_ref()),
            ));
        }
    }
}

// === each policy ===

fn check_policy(name: &Spanned<String>, policy: &Spanned<Policy>, found: &mut Vec<Diagnostic>) {
    let p = policy.get_ref();
    let headers = p.request_headers.is_some() || p.response_headers.is_some();
    let kinds: Vec<&str> = [
        ("ip", p.ip.is_some()),
        ("client_cert", p.client_cert.is_some()),
        ("header rules", headers),
        ("jwt", p.jwt.is_some()),
        ("api_key", p.api_key.is_some()),
        ("authorize", p.authorize.is_some()),
        ("any", p.any.is_some()),
        ("ext_authz", p.ext_authz.is_some()),
        ("introspection", p.introspection.is_some()),
        ("rate_limit", p.rate_limit.is_some()),
        ("quota", p.quota.is_some()),
        ("concurrency", p.concurrency.is_some()),
    ]
    .into_iter()
    .filter_map(|(kind, present)| present.then_some(kind))
    .collect();
    match kinds.as_slice() {
        [] => found.push(
            Diagnostic::new(
                &codes::POLICY_KIND,
                name.span(),
                format!("policy `{}` does nothing", name.get_ref()),
            )
            .with_help(codes::POLICY_KIND.fix),
        ),
        [_] => {}
        several => found.push(
            Diagnostic::new(
                &codes::POLICY_KIND,
                name.span(),
                format!(
                    "policy `{}` has several kinds: {}",
                    name.get_ref(),
                    several
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .with_help("declare one policy per kind and attach each"),
        ),
    }
    if let Some(rule) = &p.client_cert {
        for pattern in rule.get_ref().san.iter().flat_map(|s| s.get_ref()) {
            if let Err(message) = client_cert::check_pattern(pattern.get_ref()) {
                found.push(Diagnostic::new(
                    &codes::INVALID_TLS_SETTING,
                    pattern.span(),
                    message,
                ));
            }
        }
    }
    if let Some(ip) = &p.ip {
        check_ip(ip, found);
    }
    for ops in [&p.request_headers, &p.response_headers]
        .into_iter()
        .flatten()
    {
        check_header_ops(ops.get_ref(), found);
    }
}

fn check_ip(ip: &Spanned<IpPolicy>, found: &mut Vec<Diagnostic>) {
    let rule = ip.get_ref();
    let allow = cidrs(&rule.allow, found);
    let deny = cidrs(&rule.deny, found);
    cidrs(&rule.trusted_proxies, found);
    if rule.allow.is_none() && rule.deny.is_none() {
        found.push(
            Diagnostic::new(
                &codes::POLICY_KIND,
                ip.span(),
                "an `ip` rule with neither `allow` nor `deny` refuses nothing",
            )
            .with_help("list the blocks to allow or deny"),
        );
    }
    for (span, allowed) in &allow {
        if let Some((deny_span, denied)) = deny.iter().find(|(_, d)| d.covers(allowed)) {
            found.push(
                Diagnostic::new(
                    &codes::CONTRADICTORY_IP_RULES,
                    span.clone(),
                    format!(
                        "`{allowed}` is allowed, but `{denied}` denies all of it, and deny wins"
                    ),
                )
                .with_related(deny_span.clone(), "denied here"),
            );
        }
    }
}

/// The blocks of a list, each with its span; bad ones are reported and left out.
pub(crate) fn cidrs(
    list: &Option<Spanned<Vec<Spanned<String>>>>,
    found: &mut Vec<Diagnostic>,
) -> Vec<(Range<usize>, Cidr)> {
    let mut out = Vec::new();
    for entry in list.iter().flat_map(|l| l.get_ref()) {
        match Cidr::parse(entry.get_ref()) {
            Ok(cidr) => out.push((entry.span(), cidr)),
            Err(message) => {
                found.push(Diagnostic::new(&codes::INVALID_CIDR, entry.span(), message))
            }
        }
    }
    out
}

fn check_header_ops(ops: &HeaderOps, found: &mut Vec<Diagnostic>) {
    let names = ops
        .remove
        .iter()
        .flat_map(|r| r.get_ref())
        .chain(
            ops.rename
                .iter()
                .flat_map(|r| r.get_ref().iter().flat_map(|(k, v)| [k, v])),
        )
        .chain(entries(&ops.set).map(|(k, _)| k))
        .chain(entries(&ops.add).map(|(k, _)| k));
    for name in names {
        check_header_name(name, RULE, found);
    }
    for (_, value) in entries(&ops.set).chain(entries(&ops.add)) {
        check_header_value(value, found);
    }
}

/// The `name = "value"` entries of a table, in no particular order.
pub(crate) fn entries(
    table: &Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
) -> impl Iterator<Item = (&Spanned<String>, &Spanned<String>)> {
    table.iter().flat_map(|t| t.get_ref().iter())
}

/// How a header rule's refusal of a field reads.
pub(super) const RULE: &str = "a header rule cannot touch";

/// A field name a header rule (or, as `what` says, another setting) sets or passes on:
/// a token, and not one of the fields the gateway writes itself.
pub(super) fn check_header_name(name: &Spanned<String>, what: &str, found: &mut Vec<Diagnostic>) {
    let text = name.get_ref();
    if !headers::is_token(text) {
        found.push(Diagnostic::new(
            &codes::INVALID_HEADER_NAME,
            name.span(),
            format!("`{text}` is not a header name"),
        ));
    } else if let Some(why) = headers::forbidden(text) {
        found.push(Diagnostic::new(
            &codes::FORBIDDEN_HEADER,
            name.span(),
            format!("{what} `{text}`: {why}"),
        ));
    }
}

fn check_header_value(value: &Spanned<String>, found: &mut Vec<Diagnostic>) {
    let parts = match headers::parse_value(value.get_ref()) {
        Ok(parts) => parts,
        Err(message) => {
            found.push(Diagnostic::new(
                &codes::INVALID_HEADER_VALUE,
                value.span(),
                format!("invalid header value: {message}"),
            ));
            return;
        }
    };
    for part in parts {
        let TemplatePart::Text(text) = part else {
            continue;
        };
        match parse_template(&text) {
            Err(e) => found.push(Diagnostic::new(
                &codes::INVALID_REFERENCE,
                value.span(),
                e.message,
            )),
            // References are checked once resolved, at start-up.
            Ok(parts) if has_references(&parts) => {}
            Ok(_) => {
                if !headers::is_field_value(text.trim_matches([' ', '\t']).as_bytes()) {
                    found.push(Diagnostic::new(
                        &codes::INVALID_HEADER_VALUE,
                        value.span(),
                        "a header value cannot hold control characters (CR, LF, NUL…)",
                    ));
                }
            }
        }
    }
}

// === attachments ===

fn check_references(config: &Config, found: &mut Vec<Diagnostic>) {
    let lists = config
        .listeners
        .iter()
        .filter_map(|(_, l)| l.get_ref().policies.as_ref())
        .chain(config.groups.iter().map(|(_, g)| &g.get_ref().policies))
        .chain(
            config
                .routes
                .iter()
                .filter_map(|r| r.get_ref().policies.as_ref()),
        )
        .chain(
            config
                .routes
                .iter()
                .filter_map(|r| r.get_ref().skip_policies.as_ref()),
        );
    for list in lists {
        for name in list.get_ref() {
            if config.policy(name.get_ref()).is_none()
                && !config.broken_names.contains(name.get_ref())
            {
                found.push(unknown_policy(config, name));
            }
        }
    }
    let groups: Vec<&str> = config
        .groups
        .iter()
        .map(|(n, _)| n.get_ref().as_str())
        .collect();
    for route in &config.routes {
        let route = route.get_ref();
        if let Some(group) = &route.group
            && !groups.contains(&group.get_ref().as_str())
            && !config.broken_names.contains(group.get_ref())
        {
            found.push(
                Diagnostic::new(
                    &codes::UNKNOWN_GROUP,
                    group.span(),
                    format!(
                        "unknown group `{}`{}",
                        group.get_ref(),
                        did_you_mean(group.get_ref(), groups.iter().copied())
                    ),
                )
                .with_help(format!("declare it with `[groups.{}]`", group.get_ref())),
            );
        }
        let inherited = chain::inherited(config, route, listener_mask(config, route));
        for skip in route.skip_policies.iter().flat_map(|s| s.get_ref()) {
            let known = config.policy(skip.get_ref()).is_some();
            if known && !inherited.contains(&skip.get_ref().as_str()) {
                found.push(
                    Diagnostic::new(
                        &codes::SKIP_NOT_INHERITED,
                        skip.span(),
                        format!(
                            "the route does not get policy `{}` from a listener or group, so there is nothing to skip",
                            skip.get_ref()
                        ),
                    )
                    .with_help(codes::SKIP_NOT_INHERITED.fix),
                );
            }
        }
    }
}

fn unknown_policy(config: &Config, name: &Spanned<String>) -> Diagnostic {
    Diagnostic::new(
        &codes::UNKNOWN_POLICY,
        name.span(),
        format!(
            "unknown policy `{}`{}",
            name.get_ref(),
            did_you_mean(name.get_ref(), config.policy_names())
        ),
    )
    .with_help(format!("declare it with `[policies.{}]`", name.get_ref()))
}

// === chains ===

fn check_chain(
    config: &Config,
    route: &Route,
    listener: usize,
    chain: &[chain::Attached<'_>],
    found: &mut Vec<Diagnostic>,
) {
    for (i, attached) in chain.iter().enumerate() {
        let name = attached.name.get_ref();
        if let Some(first) = chain[..i].iter().find(|a| a.name.get_ref() == name) {
            // Reported where the second attachment is written, once.
            let already = found
                .iter()
                .any(|d| d.code == &codes::POLICY_ATTACHED_TWICE && d.span == attached.name.span());
            if !already {
                let from = match first.source {
                    Source::Listener(_) => "its listener",
                    Source::Group => "its group",
                    Source::Route => "the route itself",
                };
                found.push(
                    Diagnostic::new(
                        &codes::POLICY_ATTACHED_TWICE,
                        attached.name.span(),
                        format!("policy `{name}` is attached twice: the route gets it from {from} already"),
                    )
                    .with_related(first.name.span(), "attached here first")
                    .with_help("attach it once; leave an inherited policy with `skip_policies`"),
                );
            }
        }
    }
    check_parameters(config, route, chain, found);
    check_reachable(config, route, listener, chain, found);
}

/// Every `{param.NAME}` of a header policy the route runs is a parameter it captures.
fn check_parameters(
    config: &Config,
    route: &Route,
    chain: &[chain::Attached<'_>],
    found: &mut Vec<Diagnostic>,
) {
    let Ok(pattern) = crate::pattern::parse(route.path.get_ref()) else {
        return;
    };
    for attached in chain {
        let Some((_, policy)) = config.policy(attached.name.get_ref()) else {
            continue;
        };
        for (_, value) in header_values(policy) {
            for param in template_params(value.get_ref()) {
                let reported = found
                    .iter()
                    .any(|d| d.code == &codes::HEADER_UNKNOWN_PARAMETER && d.span == value.span());
                if pattern.param_index(&param).is_none() && !reported {
                    found.push(
                        Diagnostic::new(
                            &codes::HEADER_UNKNOWN_PARAMETER,
                            value.span(),
                            format!(
                                "`{{param.{param}}}`: route `{}` runs this policy but captures no `{param}`",
                                route.path.get_ref()
                            ),
                        )
                        .with_related(route.path.span(), "the route's path"),
                    );
                }
            }
        }
    }
}

/// The `set` and `add` values of a header policy, request side first.
pub(crate) fn header_values(
    policy: &Policy,
) -> impl Iterator<Item = (&Spanned<String>, &Spanned<String>)> {
    [&policy.request_headers, &policy.response_headers]
        .into_iter()
        .flatten()
        .flat_map(|ops| {
            let ops = ops.get_ref();
            entries(&ops.set).chain(entries(&ops.add))
        })
}

/// The route parameters a value template reads.
pub(crate) fn template_params(value: &str) -> Vec<String> {
    headers::parse_value(value)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|part| match part {
            TemplatePart::Param(name) => Some(name),
            _ => None,
        })
        .collect()
}

/// Warns when the IP rules a route runs on a listener refuse every address together.
/// Blocks are nested or apart, so the addresses every allow list lets through form
/// the smallest block of one entry per list when those are nested; a candidate that
/// one deny block covers is gone. A union of deny blocks covering a candidate is not
/// seen, so the warning is given only when it is certain.
fn check_reachable(
    config: &Config,
    route: &Route,
    listener: usize,
    chain: &[chain::Attached<'_>],
    found: &mut Vec<Diagnostic>,
) {
    let rules: Vec<&IpPolicy> = chain
        .iter()
        .filter_map(|a| config.policy(a.name.get_ref()))
        .filter_map(|(_, p)| p.ip.as_ref().map(Spanned::get_ref))
        .collect();
    if rules.is_empty() {
        return;
    }
    let parsed = |list: &Option<Spanned<Vec<Spanned<String>>>>| -> Vec<Cidr> {
        list.iter()
            .flat_map(|l| l.get_ref())
            .filter_map(|c| Cidr::parse(c.get_ref()).ok())
            .collect()
    };
    let everything = [
        Cidr::parse("0.0.0.0/0").expect("valid"),
        Cidr::parse("::/0").expect("valid"),
    ];
    let mut candidates: Vec<Cidr> = everything.to_vec();
    for rule in &rules {
        let allow = parsed(&rule.allow);
        if allow.is_empty() {
            continue;
        }
        candidates = candidates
            .iter()
            .flat_map(|c| {
                allow.iter().filter_map(move |a| {
                    if c.covers(a) {
                        Some(*a)
                    } else if a.covers(c) {
                        Some(*c)
                    } else {
                        None
                    }
                })
            })
            .take(10_000)
            .collect();
    }
    let deny: Vec<Cidr> = rules.iter().flat_map(|r| parsed(&r.deny)).collect();
    candidates.retain(|c| !deny.iter().any(|d| d.covers(c)));
    if candidates.is_empty() {
        let listener_name = config.listeners[listener].0.get_ref();
        found.push(
            Diagnostic::new(
                &codes::ROUTE_FULLY_DENIED,
                route.path.span(),
                format!(
                    "route `{}` refuses every client address on listener `{listener_name}`: its IP rules leave no address through",
                    route.path.get_ref()
                ),
            )
            .with_help(codes::ROUTE_FULLY_DENIED.fix),
        );
    }
}
