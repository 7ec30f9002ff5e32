//! Names that point elsewhere in the file: upstreams and listeners named by routes.

use toml::Spanned;

use gateway_runtime::observe::series::UNMATCHED;

use crate::codes;
use crate::diagnostic::{Diagnostic, did_you_mean, suggest};
use crate::syntax::Config;

pub(super) fn check(config: &Config, found: &mut Vec<Diagnostic>) {
    let upstream_names = config.upstream_names();
    let listener_names = config.listener_names();
    let mut used = vec![false; upstream_names.len()];
    for route in &config.routes {
        let route = route.get_ref();
        let calls = route.aggregate.iter().flat_map(|calls| calls.get_ref());
        for upstream in route
            .upstream
            .iter()
            .chain(calls.map(|call| &call.get_ref().upstream))
        {
            refer(upstream, config, &upstream_names, &mut used, found);
        }
        for listener in route.listeners.iter().flat_map(|l| l.get_ref()) {
            if !listener_names.contains(&listener.get_ref().as_str())
                && !config.broken_names.contains(listener.get_ref())
            {
                found.push(unknown_listener(listener, &listener_names));
            }
        }
    }
    // An authorization service is an upstream the policy uses.
    for (_, policy) in &config.policies {
        let policy = policy.get_ref();
        let asked = [
            policy.ext_authz.as_ref().map(|a| &a.get_ref().upstream),
            policy.introspection.as_ref().map(|i| &i.get_ref().upstream),
        ];
        for upstream in asked.into_iter().flatten() {
            refer(upstream, config, &upstream_names, &mut used, found);
        }
    }
    // An unused upstream is dead configuration, often a route that names the wrong one.
    for ((name, _), used) in config.upstreams.iter().zip(used) {
        if !used && !config.incomplete {
            found.push(Diagnostic::new(
                &codes::UNUSED_UPSTREAM,
                name.span(),
                format!("upstream `{}` is not used by any route", name.get_ref()),
            ));
        }
    }
    for (name, upstream) in &config.upstreams {
        let targets = &upstream.get_ref().targets;
        if targets.get_ref().is_empty() {
            found.push(
                Diagnostic::new(
                    &codes::NO_TARGETS,
                    targets.span(),
                    format!("upstream `{}` has no targets", name.get_ref()),
                )
                .with_help("list at least one, such as `targets = [\"http://127.0.0.1:8001\"]`"),
            );
        }
    }
    // Route names identify routes in logs, metrics and route tests.
    let mut named: Vec<&toml::Spanned<String>> = Vec::new();
    for route in &config.routes {
        let Some(name) = &route.get_ref().name else {
            continue;
        };
        if name.get_ref() == UNMATCHED {
            found.push(
                Diagnostic::new(
                    &codes::DUPLICATE_ROUTE_NAME,
                    name.span(),
                    format!(
                        "the route name `{UNMATCHED}` is the metrics' for requests no route matched"
                    ),
                )
                .with_help(codes::DUPLICATE_ROUTE_NAME.fix),
            );
        } else if let Some(first) = named.iter().find(|n| n.get_ref() == name.get_ref()) {
            found.push(
                Diagnostic::new(
                    &codes::DUPLICATE_ROUTE_NAME,
                    name.span(),
                    format!("a route named `{}` exists already", name.get_ref()),
                )
                .with_related(first.span(), "first named here")
                .with_help(codes::DUPLICATE_ROUTE_NAME.fix),
            );
        } else {
            named.push(name);
        }
    }
}

/// A reference to an upstream (a route's, an authorization service's): marks it used,
/// or reports it unknown. The upstream probably meant is not reported as unused as
/// well: one message about the typo is enough.
fn refer(
    upstream: &Spanned<String>,
    config: &Config,
    upstream_names: &[&str],
    used: &mut [bool],
    found: &mut Vec<Diagnostic>,
) {
    let name = upstream.get_ref();
    if let Some(i) = upstream_names.iter().position(|n| n == name) {
        used[i] = true;
        return;
    }
    if config.broken_names.contains(name) {
        return;
    }
    let meant = suggest(name, upstream_names.iter().copied());
    if let Some(i) = meant.and_then(|m| upstream_names.iter().position(|n| *n == m)) {
        used[i] = true;
    }
    found.push(
        Diagnostic::new(
            &codes::UNKNOWN_UPSTREAM,
            upstream.span(),
            format!(
                "unknown upstream `{name}`{}",
                meant.map_or_else(String::new, |m| format!(" (did you mean `{m}`?)"))
            ),
        )
        .with_help(format!("declare it with `[upstreams.{name}]`")),
    );
}

/// A reference to a listener that is not declared, with the nearest name.
pub(crate) fn unknown_listener(listener: &toml::Spanned<String>, declared: &[&str]) -> Diagnostic {
    Diagnostic::new(
        &codes::UNKNOWN_LISTENER,
        listener.span(),
        format!(
            "unknown listener `{}`{}",
            listener.get_ref(),
            did_you_mean(listener.get_ref(), declared.iter().copied())
        ),
    )
}
