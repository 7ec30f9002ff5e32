//! Routes one by one (path, methods, host, target, path changes), then the route set as
//! a whole: two routes that match the same requests on the same listener and host are
//! an error, named with both locations.

use std::collections::HashMap;
use std::ops::Range;

use gateway_runtime::message::methods::MethodSet;

use crate::check::listeners::MAX_LISTENERS;
use crate::codes;
use crate::diagnostic::Diagnostic;
use crate::pattern::{self, Pattern, RewritePart};
use crate::syntax::{Config, Route};

pub(super) fn check(config: &Config, found: &mut Vec<Diagnostic>) {
    let mut table = Vec::new();
    for route in &config.routes {
        let route = route.get_ref();
        let pattern = check_path(route, found);
        let methods = methods(route, found);
        check_host(route, found);
        check_target(route, found);
        check_max_body(route, found);
        if let Some(pattern) = &pattern {
            check_path_change(route, pattern, found);
        }
        if let (Some(pattern), Some(methods)) = (pattern, methods) {
            table.push((route, pattern, methods));
        }
    }
    check_overlaps(config, &table, found);
}

/// A route's body limit is a size written out: it is laid into the route's code.
fn check_max_body(route: &Route, found: &mut Vec<Diagnostic>) {
    let Some(size) = &route.max_body else {
        return;
    };
    if let Err(message) = gateway_runtime::settings::parse_size(size.get_ref()) {
        let message = if size.get_ref().contains("${") {
            "a route's `max_body` is written out (`1MiB`), not read from the environment".to_owned()
        } else {
            message
        };
        found.push(Diagnostic::new(&codes::INVALID_SIZE, size.span(), message));
    }
}

fn check_path(route: &Route, found: &mut Vec<Diagnostic>) -> Option<Pattern> {
    let path = &route.path;
    if !path.get_ref().starts_with('/') {
        found.push(Diagnostic::new(
            &codes::PATH_NOT_ABSOLUTE,
            path.span(),
            format!("path `{}` must start with `/`", path.get_ref()),
        ));
        return None;
    }
    match pattern::parse(path.get_ref()) {
        Ok(pattern) => Some(pattern),
        Err(message) => {
            found.push(Diagnostic::new(
                &codes::INVALID_PATTERN,
                path.span(),
                format!("invalid path pattern: {message}"),
            ));
            None
        }
    }
}

/// The route's method set, or `None` after reporting a bad name.
pub(crate) fn methods(route: &Route, found: &mut Vec<Diagnostic>) -> Option<MethodSet> {
    let Some(methods) = &route.methods else {
        return Some(MethodSet::ANY);
    };
    if methods.get_ref().is_empty() {
        found.push(
            Diagnostic::new(
                &codes::EMPTY_METHODS,
                methods.span(),
                "`methods` is empty, so the route matches nothing",
            )
            .with_help("list methods, or leave `methods` out to match every method"),
        );
        return None;
    }
    let mut set = MethodSet::ANY;
    let mut ok = true;
    for method in methods.get_ref() {
        match MethodSet::from_name(method.get_ref()) {
            Some(one) => set = set.union(one),
            None => {
                ok = false;
                let upper = method.get_ref().to_ascii_uppercase();
                let help = if MethodSet::from_name(&upper).is_some() {
                    format!("method names are case-sensitive: write `{upper}`")
                } else {
                    "use GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE or PATCH".into()
                };
                found.push(
                    Diagnostic::new(
                        &codes::UNKNOWN_METHOD,
                        method.span(),
                        format!("unknown method `{}`", method.get_ref()),
                    )
                    .with_help(help),
                );
            }
        }
    }
    ok.then_some(set)
}

fn check_host(route: &Route, found: &mut Vec<Diagnostic>) {
    let Some(host) = &route.host else { return };
    let text = host.get_ref();
    let valid = !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if !valid {
        let help = if text.contains(':') {
            "write the host without a port: routes match the host on every listener port"
        } else {
            "write a DNS name such as `api.example.com`"
        };
        found.push(
            Diagnostic::new(
                &codes::INVALID_HOST,
                host.span(),
                format!("`{text}` is not a host name"),
            )
            .with_help(help),
        );
    }
}

fn check_target(route: &Route, found: &mut Vec<Diagnostic>) {
    if route.upstream.is_none() && route.aggregate.is_none() {
        found.push(
            Diagnostic::new(
                &codes::NO_TARGET,
                route.path.span(),
                format!("route `{}` has no target", route.path.get_ref()),
            )
            .with_help("add `upstream = \"NAME\"` naming an `[upstreams.NAME]` section, or `[[routes.aggregate]]` calls"),
        );
    }
}

fn check_path_change(route: &Route, pattern: &Pattern, found: &mut Vec<Diagnostic>) {
    if let (Some(strip), Some(rewrite)) = (&route.strip_prefix, &route.rewrite) {
        found.push(
            Diagnostic::new(
                &codes::REWRITE_WITH_STRIP_PREFIX,
                rewrite.span(),
                "`rewrite` and `strip_prefix` cannot both be set",
            )
            .with_related(strip.span(), "`strip_prefix` is set")
            .with_help(
                "a rewrite already writes the whole path: include only what the upstream needs",
            ),
        );
        return;
    }
    if let Some(strip) = &route.strip_prefix {
        let prefix = strip.get_ref();
        let at_boundary = prefix.ends_with('/')
            || pattern.static_prefix.len() == prefix.len()
            || pattern.static_prefix.as_bytes().get(prefix.len()) == Some(&b'/');
        if !prefix.starts_with('/')
            || !pattern.static_prefix.starts_with(prefix.as_str())
            || !at_boundary
        {
            found.push(
                Diagnostic::new(&codes::STRIP_PREFIX_MISMATCH,
                    strip.span(),
                    format!("`strip_prefix = \"{prefix}\"` is not a whole-segment prefix of the path `{}`", route.path.get_ref()),
                )
                .with_related(route.path.span(), "the route's path")
                .with_help(format!(
                    "every request this route matches starts with `{}`; strip a prefix of that ending at a `/`",
                    pattern.static_prefix
                )),
            );
        }
    }
    if let Some(rewrite) = &route.rewrite {
        check_rewrite(route, rewrite.get_ref(), rewrite.span(), pattern, found);
    }
}

fn check_rewrite(
    route: &Route,
    text: &str,
    span: Range<usize>,
    pattern: &Pattern,
    found: &mut Vec<Diagnostic>,
) {
    if !text.starts_with('/') {
        found.push(Diagnostic::new(
            &codes::REWRITE_NOT_ABSOLUTE,
            span,
            format!("rewrite `{text}` must start with `/`"),
        ));
        return;
    }
    // The string's content starts one byte after its opening quote.
    let content = span.start + 1;
    match pattern::parse_rewrite(text) {
        Err((range, message)) => found.push(Diagnostic::new(
            &codes::REWRITE_SYNTAX,
            content + range.start..content + range.end,
            message,
        )),
        Ok(parts) => {
            for part in parts {
                let RewritePart::Param { name, range } = part else {
                    continue;
                };
                if pattern.param_index(&name).is_none() {
                    let captured: Vec<String> = pattern
                        .params
                        .iter()
                        .map(|p| format!("`{}`", p.name))
                        .collect();
                    let help = if captured.is_empty() {
                        "the path captures no parameters".to_owned()
                    } else {
                        format!("the path captures {}", captured.join(", "))
                    };
                    found.push(
                        Diagnostic::new(
                            &codes::REWRITE_UNKNOWN_PARAMETER,
                            content + range.start..content + range.end,
                            format!(
                                "`{{{name}}}` is not captured by the route's path `{}`",
                                route.path.get_ref()
                            ),
                        )
                        .with_related(route.path.span(), "the route's path")
                        .with_help(help),
                    );
                }
            }
        }
    }
}

/// The listeners a route is served on, as a bit set.
pub(crate) fn listener_mask(config: &Config, route: &Route) -> u64 {
    let names = config.listeners.iter().map(|(n, _)| n.get_ref().as_str());
    match &route.listeners {
        None => names
            .enumerate()
            .take(MAX_LISTENERS)
            .fold(0, |m, (i, _)| m | 1 << i),
        Some(chosen) => names
            .enumerate()
            .take(MAX_LISTENERS)
            .filter(|(_, n)| chosen.get_ref().iter().any(|c| c.get_ref() == n))
            .fold(0, |m, (i, _)| m | 1 << i),
    }
}

/// Every method bit, plus bit 9 for methods outside the standard set, which only a
/// route for every method takes.
const ALL_METHODS: u16 = 0x3ff;

fn method_bits(methods: MethodSet) -> u16 {
    if methods.is_any() {
        ALL_METHODS
    } else {
        methods.bits()
    }
}

fn method_names(bits: u16) -> String {
    if bits == ALL_METHODS {
        return "every method".to_owned();
    }
    MethodSet::from_bits(bits & !(1 << 9))
        .names()
        .collect::<Vec<_>>()
        .join(", ")
}

/// The routes of one listener and host: one matchit tree, as the runtime builds it, and
/// for each distinct pattern the routes sharing it, in declaration order.
#[derive(Default)]
struct Group {
    router: matchit::Router<usize>,
    patterns: HashMap<String, usize>,
    /// Per pattern: (route index, method bits) in declaration order.
    entries: Vec<Vec<(usize, u16)>>,
}

/// The route set as a whole. At run time the router takes, for a host and listener, the
/// matchit entry of the path and then the first route in declaration order whose
/// methods include the request's. So a later route on the same pattern is unreachable
/// for the methods earlier routes take: all of them is an error (duplicate or
/// shadowed), some of them a warning. Patterns matchit cannot hold together are errors
/// here rather than at start-up.
fn check_overlaps(
    config: &Config,
    table: &[(&Route, Pattern, MethodSet)],
    found: &mut Vec<Diagnostic>,
) {
    let mut groups: HashMap<(usize, Option<String>), Group> = HashMap::new();
    for (j, (route, pattern, methods)) in table.iter().enumerate() {
        let bits = method_bits(*methods);
        let host = route
            .host
            .as_ref()
            .map(|h| h.get_ref().to_ascii_lowercase());
        let mask = listener_mask(config, route);
        // Which earlier routes take which of this route's methods, on every listener.
        let mut taken_everywhere = bits;
        let mut takers: Vec<(usize, u16)> = Vec::new();
        let mut conflicts: Vec<usize> = Vec::new();
        for listener in (0..MAX_LISTENERS).filter(|l| mask & (1 << l) != 0) {
            let group = groups.entry((listener, host.clone())).or_default();
            let entry = match group.patterns.get(&pattern.canonical) {
                Some(&entry) => entry,
                None => match group
                    .router
                    .insert(pattern.canonical.as_str(), group.entries.len())
                {
                    Ok(()) => {
                        group
                            .patterns
                            .insert(pattern.canonical.clone(), group.entries.len());
                        group.entries.push(Vec::new());
                        group.entries.len() - 1
                    }
                    Err(matchit::InsertError::Conflict { with }) => {
                        if let Some(&other) = group.patterns.get(&with) {
                            conflicts.push(group.entries[other][0].0);
                        }
                        taken_everywhere = 0;
                        continue;
                    }
                    // `check_path` has reported invalid patterns already.
                    Err(_) => continue,
                },
            };
            let mut taken_here = 0;
            for &(earlier, earlier_bits) in &group.entries[entry] {
                let overlap = earlier_bits & bits & !taken_here;
                if overlap != 0 {
                    taken_here |= overlap;
                    match takers.iter_mut().find(|(r, _)| *r == earlier) {
                        Some((_, b)) => *b |= overlap,
                        None => takers.push((earlier, overlap)),
                    }
                }
            }
            taken_everywhere &= taken_here;
            group.entries[entry].push((j, bits));
        }
        conflicts.sort_unstable();
        conflicts.dedup();
        for earlier in conflicts {
            let earlier = table[earlier].0;
            found.push(
                Diagnostic::new(
                    &codes::CONFLICTING_PATTERNS,
                    route.path.span(),
                    format!(
                        "path `{}` conflicts with `{}`, declared before it",
                        route.path.get_ref(),
                        earlier.path.get_ref()
                    ),
                )
                .with_related(earlier.path.span(), "the conflicting route")
                .with_help(codes::CONFLICTING_PATTERNS.fix),
            );
        }
        if takers.is_empty() {
            continue;
        }
        let first = table[takers[0].0].0;
        let same_methods = |r: usize| method_bits(table[r].2) == bits;
        let diagnostic = if taken_everywhere == bits
            && takers.len() == 1
            && same_methods(takers[0].0)
        {
            let message = if first.path.get_ref() == route.path.get_ref() {
                format!(
                    "duplicate route: `{}` is already routed for these methods",
                    route.path.get_ref()
                )
            } else {
                format!(
                    "duplicate route: `{}` matches the same paths as `{}`, which is already routed for these methods",
                    route.path.get_ref(),
                    first.path.get_ref()
                )
            };
            Diagnostic::new(&codes::DUPLICATE_ROUTE, route.path.span(), message)
                .with_related(first.path.span(), "first routed")
                .with_help("remove one, or give them methods or hosts that do not overlap")
        } else if taken_everywhere == bits {
            let mut d = Diagnostic::new(
                &codes::SHADOWED_ROUTE,
                route.path.span(),
                format!(
                    "route `{}` can never match: routes declared before it take every request it would",
                    route.path.get_ref()
                ),
            );
            for &(earlier, overlap) in &takers {
                d = d.with_related(
                    table[earlier].0.path.span(),
                    format!("takes {}", method_names(overlap)),
                );
            }
            d.with_help(codes::SHADOWED_ROUTE.fix)
        } else {
            let all: u16 = takers.iter().fold(0, |a, (_, b)| a | b);
            let mut d = Diagnostic::new(
                &codes::PARTLY_SHADOWED_ROUTE,
                route.path.span(),
                format!(
                    "route `{}` never gets {}: routes declared before it take them",
                    route.path.get_ref(),
                    method_names(all)
                ),
            );
            for &(earlier, overlap) in &takers {
                d = d.with_related(
                    table[earlier].0.path.span(),
                    format!("takes {}", method_names(overlap)),
                );
            }
            d.with_help(codes::PARTLY_SHADOWED_ROUTE.fix)
        };
        found.push(diagnostic);
    }
}
