//! Typed values: durations, addresses, targets and counts, each checked with the parser
//! the runtime uses at start-up. Values holding `${…}` references can only be checked
//! for their reference syntax here; the rest waits for start-up.

use toml::Spanned;

use gateway_runtime::settings::{self, has_references, parse_template};

use crate::diagnostic::Diagnostic;
use crate::syntax::Config;

pub(super) fn check(config: &Config, found: &mut Vec<Diagnostic>) {
    if let Some(gateway) = &config.gateway {
        let gateway = gateway.get_ref();
        if gateway.name.get_ref().trim().is_empty() {
            found.push(Diagnostic::error(
                gateway.name.span(),
                "`name` must not be empty",
            ));
        }
        if let Some(workers) = &gateway.workers
            && !(1..=1024).contains(workers.get_ref())
        {
            found.push(
                Diagnostic::error(
                    workers.span(),
                    format!("`workers = {}` is out of range", workers.get_ref()),
                )
                .with_help("use 1 to 1024, or leave it out for one worker per core"),
            );
        }
        setting(&gateway.shutdown_timeout, settings::parse_duration, found);
    }
    if let Some(admin) = &config.admin {
        setting(
            &Some(admin.get_ref().bind.clone()),
            settings::parse_bind,
            found,
        );
    }
    for (_, listener) in &config.listeners {
        let listener = listener.get_ref();
        setting(&Some(listener.bind.clone()), settings::parse_bind, found);
        setting(
            &listener.timeouts.header_read,
            settings::parse_duration,
            found,
        );
    }
    for (_, upstream) in &config.upstreams {
        let upstream = upstream.get_ref();
        for target in upstream.targets.get_ref() {
            setting(&Some(target.clone()), settings::parse_target, found);
        }
        let timeouts = &upstream.timeouts;
        for value in [&timeouts.connect, &timeouts.response, &timeouts.idle] {
            setting(value, settings::parse_duration, found);
        }
    }
}

/// Checks a string that may hold references: their syntax always, the typed value when
/// it is fully literal.
fn setting<T>(
    value: &Option<Spanned<String>>,
    parse: fn(&str) -> Result<T, String>,
    found: &mut Vec<Diagnostic>,
) {
    let Some(value) = value else { return };
    let text = value.get_ref();
    // The span covers the quotes; the string's content starts one byte later.
    let content_start = value.span().start + 1;
    match parse_template(text) {
        Err(e) => found.push(Diagnostic::error(
            content_start + e.range.start..content_start + e.range.end,
            e.message,
        )),
        Ok(parts) if !has_references(&parts) => {
            if let Err(message) = parse(text) {
                found.push(Diagnostic::error(value.span(), message));
            }
        }
        Ok(_) => {}
    }
}
