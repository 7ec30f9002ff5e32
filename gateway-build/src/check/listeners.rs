//! Listeners: there must be one, and no two may claim the same address; and the
//! admin listener and the trace exporter beside them.

use crate::codes;
use crate::diagnostic::Diagnostic;
use crate::syntax::Config;
use gateway_runtime::settings::parse_bind;

/// Routes name listeners in a 64-bit set.
pub(crate) const MAX_LISTENERS: usize = 64;

/// The indices of the first `count` listeners that are in `mask`.
pub(crate) fn listeners_in(mask: u64, count: usize) -> impl Iterator<Item = usize> {
    (0..count.min(MAX_LISTENERS)).filter(move |i| mask & (1 << i) != 0)
}

/// The admin listener: its histogram bounds, and its address. It shows the route
/// table, the configuration's digest and every metric, so it stays on this host
/// unless `expose = true` says otherwise, which is then a lint to acknowledge.
/// `[tracing]`: a service name (its ratio is a setting, checked with the others).
fn tracing(config: &Config, found: &mut Vec<Diagnostic>) {
    let Some(tracing) = &config.tracing else {
        return;
    };
    let tracing = tracing.get_ref();
    if let Some(name) = tracing
        .service_name
        .as_ref()
        .filter(|n| n.get_ref().trim().is_empty())
    {
        found.push(
            Diagnostic::new(
                &codes::INVALID_TRACING,
                name.span(),
                "an empty `service_name`",
            )
            .with_help(codes::INVALID_TRACING.fix),
        );
    }
}

fn admin(config: &Config, found: &mut Vec<Diagnostic>) {
    let Some(admin) = &config.admin else {
        return;
    };
    let admin = admin.get_ref();
    if let Some(buckets) = &admin.buckets {
        let bounds = buckets.get_ref();
        let problem = if bounds.is_empty() || bounds.len() > 30 {
            Some(format!(
                "{} bucket bounds; 1 to 30 are allowed",
                bounds.len()
            ))
        } else if let Some(bad) = bounds.iter().find(|b| !(**b > 0.0 && **b <= 3600.0)) {
            Some(format!(
                "the bound {bad} is not a number of seconds in (0, 3600]"
            ))
        } else {
            bounds
                .windows(2)
                .find(|pair| pair[0] >= pair[1])
                .map(|pair| {
                    format!(
                        "the bound {} follows {}: bounds must grow",
                        pair[1], pair[0]
                    )
                })
        };
        if let Some(problem) = problem {
            found.push(
                Diagnostic::new(&codes::INVALID_BUCKETS, buckets.span(), problem)
                    .with_help(codes::INVALID_BUCKETS.fix),
            );
        }
    }
    let expose = admin.expose.as_ref().filter(|e| *e.get_ref());
    if let Some(expose) = expose {
        found.push(
            Diagnostic::new(
                &codes::EXPOSED_ADMIN,
                expose.span(),
                "the admin listener (metrics, route table, configuration digest) may listen beyond this host",
            )
            .with_help(codes::EXPOSED_ADMIN.fix),
        );
    }
    let Some(bind) = &admin.bind else {
        return;
    };
    // Literal addresses here; one from the environment is checked at start-up.
    if bind.get_ref().contains("${") || expose.is_some() {
        return;
    }
    if let Ok(addr) = parse_bind(bind.get_ref())
        && !addr.ip().is_loopback()
    {
        found.push(
            Diagnostic::new(
                &codes::ADMIN_NOT_LOOPBACK,
                bind.span(),
                format!(
                    "the admin listener binds `{}`, which is not loopback",
                    bind.get_ref()
                ),
            )
            .with_help(codes::ADMIN_NOT_LOOPBACK.fix),
        );
    }
}

pub(super) fn check(config: &Config, found: &mut Vec<Diagnostic>) {
    admin(config, found);
    tracing(config, found);
    // A listener whose section did not parse is still a listener.
    if config.listeners.is_empty() && !config.incomplete {
        found.push(
            Diagnostic::new(
                &codes::NO_LISTENER,
                0..0,
                "no listener: the gateway would accept no traffic",
            )
            .with_help("add `[listeners.public]` with `bind = \"0.0.0.0:8080\"`"),
        );
    }
    if config.listeners.len() > MAX_LISTENERS {
        found.push(Diagnostic::new(
            &codes::TOO_MANY_LISTENERS,
            config.listeners[MAX_LISTENERS].0.span(),
            format!("more than {MAX_LISTENERS} listeners"),
        ));
    }
    // Literal addresses only: two references may well resolve to different ports.
    let mut binds: Vec<(&str, std::ops::Range<usize>, String)> = config
        .listeners
        .iter()
        .map(|(name, l)| {
            let bind = &l.get_ref().bind;
            (
                bind.get_ref().as_str(),
                bind.span(),
                format!("listener `{}`", name.get_ref()),
            )
        })
        .collect();
    if let Some(bind) = config
        .admin
        .as_ref()
        .and_then(|a| a.get_ref().bind.as_ref())
    {
        binds.push((
            bind.get_ref().as_str(),
            bind.span(),
            "the admin listener".into(),
        ));
    }
    for (i, (bind, span, owner)) in binds.iter().enumerate() {
        if bind.contains("${") || bind.ends_with(":0") {
            continue;
        }
        if let Some((_, first_span, first_owner)) = binds[..i].iter().find(|(b, ..)| b == bind) {
            found.push(
                Diagnostic::new(
                    &codes::ADDRESS_IN_USE_TWICE,
                    span.clone(),
                    format!("{owner} binds `{bind}`, which {first_owner} binds already"),
                )
                .with_related(first_span.clone(), format!("{first_owner} binds it"))
                .with_help("give each listener its own address or port"),
            );
        }
    }
}
