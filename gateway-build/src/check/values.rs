//! Typed values: durations, addresses, targets and counts, each checked with the parser
//! the runtime uses at start-up. Values holding `${…}` references can only be checked
//! for their reference syntax here; the rest waits for start-up.

use toml::Spanned;

use gateway_runtime::settings::{self, has_references, parse_template};

use crate::codes::{self, Code};
use crate::diagnostic::Diagnostic;
use crate::syntax::Config;

pub(super) fn check(config: &Config, found: &mut Vec<Diagnostic>) {
    if let Some(gateway) = &config.gateway {
        let gateway = gateway.get_ref();
        if gateway.name.get_ref().trim().is_empty() {
            found.push(Diagnostic::new(
                &codes::EMPTY_NAME,
                gateway.name.span(),
                "`name` must not be empty",
            ));
        }
        if let Some(workers) = &gateway.workers {
            let raw = Spanned::new(workers.span(), workers.get_ref().raw());
            setting(
                &Some(raw),
                settings::parse_workers,
                &codes::OUT_OF_RANGE,
                found,
            );
        }
        setting(
            &gateway.shutdown_timeout,
            settings::parse_duration,
            &codes::INVALID_DURATION,
            found,
        );
    }
    if let Some(admin) = &config.admin {
        setting(
            &Some(admin.get_ref().bind.clone()),
            settings::parse_bind,
            &codes::INVALID_ADDRESS,
            found,
        );
    }
    for (_, listener) in &config.listeners {
        let listener = listener.get_ref();
        setting(
            &Some(listener.bind.clone()),
            settings::parse_bind,
            &codes::INVALID_ADDRESS,
            found,
        );
        setting(
            &listener.timeouts.header_read,
            settings::parse_duration,
            &codes::INVALID_DURATION,
            found,
        );
        let limits = &listener.limits;
        setting(
            &limits.max_body,
            settings::parse_size,
            &codes::INVALID_SIZE,
            found,
        );
        setting(
            &limits.max_header_size,
            settings::parse_header_size,
            &codes::INVALID_SIZE,
            found,
        );
        if let Some(count) = &limits.max_headers
            && !usize::try_from(*count.get_ref())
                .is_ok_and(|count| (1..=settings::MAX_HEADERS).contains(&count))
        {
            found.push(Diagnostic::new(
                &codes::OUT_OF_RANGE,
                count.span(),
                format!(
                    "`max_headers = {}` is out of range: use 1 to {}",
                    count.get_ref(),
                    settings::MAX_HEADERS
                ),
            ));
        }
    }
    for (_, upstream) in &config.upstreams {
        let upstream = upstream.get_ref();
        for target in upstream.targets.get_ref() {
            setting(
                &Some(target.clone()),
                settings::parse_target,
                &codes::INVALID_URL,
                found,
            );
        }
        let timeouts = &upstream.timeouts;
        for value in [&timeouts.connect, &timeouts.response, &timeouts.idle] {
            setting(
                value,
                settings::parse_duration,
                &codes::INVALID_DURATION,
                found,
            );
        }
    }
}

/// Checks a string that may hold references: their syntax always, the typed value when
/// it is fully literal.
fn setting<T>(
    value: &Option<Spanned<String>>,
    parse: fn(&str) -> Result<T, String>,
    code: &'static Code,
    found: &mut Vec<Diagnostic>,
) {
    let Some(value) = value else { return };
    let text = value.get_ref();
    // The span covers the quotes; the string's content starts one byte later.
    let content_start = value.span().start + 1;
    match parse_template(text) {
        Err(e) => found.push(Diagnostic::new(
            &codes::INVALID_REFERENCE,
            content_start + e.range.start..content_start + e.range.end,
            e.message,
        )),
        Ok(parts) if !has_references(&parts) => {
            if let Err(message) = parse(text) {
                found.push(Diagnostic::new(code, value.span(), message));
            }
        }
        Ok(_) => {}
    }
}
