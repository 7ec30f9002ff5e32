//! Routes one by one (path, methods, host, target, path changes), then the route set as
//! a whole: two routes that match the same requests on the same listener and host are
//! an error, named with both locations.

use std::ops::Range;

use gateway_runtime::methods::MethodSet;

use crate::check::listeners::MAX_LISTENERS;
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
        if let Some(pattern) = &pattern {
            check_path_change(route, pattern, found);
        }
        if let (Some(pattern), Some(methods)) = (pattern, methods) {
            table.push((route, pattern, methods));
        }
    }
    check_overlaps(config, &table, found);
}

fn check_path(route: &Route, found: &mut Vec<Diagnostic>) -> Option<Pattern> {
    let path = &route.path;
    if !path.get_ref().starts_with('/') {
        found.push(Diagnostic::error(
            path.span(),
            format!("path `{}` must start with `/`", path.get_ref()),
        ));
        return None;
    }
    match pattern::parse(path.get_ref()) {
        Ok(pattern) => Some(pattern),
        Err(message) => {
            found.push(Diagnostic::error(
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
            Diagnostic::error(
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
                    Diagnostic::error(
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
            Diagnostic::error(host.span(), format!("`{text}` is not a host name")).with_help(help),
        );
    }
}

fn check_target(route: &Route, found: &mut Vec<Diagnostic>) {
    if route.upstream.is_none() {
        found.push(
            Diagnostic::error(
                route.path.span(),
                format!("route `{}` has no target", route.path.get_ref()),
            )
            .with_help("add `upstream = \"NAME\"` naming an `[upstreams.NAME]` section"),
        );
    }
}

fn check_path_change(route: &Route, pattern: &Pattern, found: &mut Vec<Diagnostic>) {
    if let (Some(strip), Some(rewrite)) = (&route.strip_prefix, &route.rewrite) {
        found.push(
            Diagnostic::error(
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
                Diagnostic::error(
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
        found.push(Diagnostic::error(
            span,
            format!("rewrite `{text}` must start with `/`"),
        ));
        return;
    }
    // The string's content starts one byte after its opening quote.
    let content = span.start + 1;
    match pattern::parse_rewrite(text) {
        Err((range, message)) => found.push(Diagnostic::error(
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
                        Diagnostic::error(
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

/// Two routes on a common listener and the same host (or both on any host) whose paths
/// are the same pattern and whose methods overlap: the second can never be reached.
/// Patterns that matchit cannot hold side by side are refused too, as the router would
/// refuse them at start-up.
fn check_overlaps(
    config: &Config,
    table: &[(&Route, Pattern, MethodSet)],
    found: &mut Vec<Diagnostic>,
) {
    for (j, (later, later_pattern, later_methods)) in table.iter().enumerate() {
        let later_mask = listener_mask(config, later);
        let later_host = later
            .host
            .as_ref()
            .map(|h| h.get_ref().to_ascii_lowercase());
        let mut router = matchit::Router::new();
        let mut entries: Vec<(&str, Range<usize>)> = Vec::new();
        for (earlier, earlier_pattern, earlier_methods) in &table[..j] {
            let same_host = earlier
                .host
                .as_ref()
                .map(|h| h.get_ref().to_ascii_lowercase())
                == later_host;
            if !same_host || listener_mask(config, earlier) & later_mask == 0 {
                continue;
            }
            if earlier_pattern.canonical == later_pattern.canonical {
                if earlier_methods.overlaps(*later_methods) {
                    let same_text = earlier.path.get_ref() == later.path.get_ref();
                    let message = if same_text {
                        format!(
                            "duplicate route: `{}` is already routed for these methods",
                            later.path.get_ref()
                        )
                    } else {
                        format!(
                            "duplicate route: `{}` matches the same paths as `{}`, which is already routed for these methods",
                            later.path.get_ref(),
                            earlier.path.get_ref()
                        )
                    };
                    found.push(
                        Diagnostic::error(later.path.span(), message)
                            .with_related(earlier.path.span(), "first routed")
                            .with_help(
                                "remove one, or give them methods or hosts that do not overlap",
                            ),
                    );
                    break;
                }
                continue;
            }
            // matchit holds one entry per canonical pattern; conflicts are between entries.
            if router
                .insert(earlier_pattern.canonical.as_str(), ())
                .is_ok()
            {
                entries.push((earlier_pattern.canonical.as_str(), earlier.path.span()));
            }
        }
        if let Err(matchit::InsertError::Conflict { with }) =
            router.insert(later_pattern.canonical.as_str(), ())
        {
            let Some((_, earlier_span)) = entries.iter().find(|(c, _)| *c == with).cloned() else {
                continue;
            };
            found.push(
                Diagnostic::error(
                    later.path.span(),
                    format!("path `{}` conflicts with a route declared before it", later.path.get_ref()),
                )
                .with_related(earlier_span, "the conflicting route")
                .with_help("the router cannot tell these patterns apart: use the same parameter position or a distinct static segment"),
            );
        }
    }
}
