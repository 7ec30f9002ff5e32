//! Typed values: durations, addresses, targets and counts, each checked with the parser
//! the runtime uses at start-up. Values holding `${…}` references can only be checked
//! for their reference syntax here; the rest waits for start-up.

use toml::Spanned;

use gateway_runtime::settings::{self, SettingKind, has_references, parse_template};

use crate::codes::{self, Code};
use crate::diagnostic::Diagnostic;
use crate::syntax::Config;

/// More streams than this per connection only multiply what one client can hold.
const MAX_CONCURRENT_STREAMS: i64 = 1000;

pub(super) fn check(config: &Config, found: &mut Vec<Diagnostic>) {
    if let Some(gateway) = &config.gateway {
        let name = &gateway.get_ref().name;
        if name.get_ref().trim().is_empty() {
            found.push(Diagnostic::new(
                &codes::EMPTY_NAME,
                name.span(),
                "`name` must not be empty",
            ));
        }
    }
    for entry in config.settings() {
        setting(&entry.value, entry.kind, found);
    }
    for (_, listener) in &config.listeners {
        if let Some(count) = &listener.get_ref().limits.max_concurrent_streams
            && !(1..=MAX_CONCURRENT_STREAMS).contains(count.get_ref())
        {
            found.push(Diagnostic::new(
                &codes::OUT_OF_RANGE,
                count.span(),
                format!(
                    "`max_concurrent_streams = {}` is out of range: use 1 to {MAX_CONCURRENT_STREAMS}",
                    count.get_ref(),
                ),
            ));
        }
        if let Some(count) = &listener.get_ref().limits.max_headers
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
}

/// The code for a bad value of each kind.
fn code(kind: SettingKind) -> &'static Code {
    match kind {
        SettingKind::Duration => &codes::INVALID_DURATION,
        SettingKind::Bind => &codes::INVALID_ADDRESS,
        SettingKind::Target | SettingKind::Url => &codes::INVALID_URL,
        SettingKind::Workers => &codes::OUT_OF_RANGE,
        SettingKind::Size | SettingKind::HeaderSize => &codes::INVALID_SIZE,
        SettingKind::Pem => &codes::INVALID_TLS_SETTING,
        SettingKind::File => &codes::EMPTY_NAME,
        SettingKind::Ratio => &codes::INVALID_TRACING,
    }
}

/// Checks a string that may hold references: their syntax always, the typed value when
/// it is fully literal.
fn setting(value: &Spanned<String>, kind: SettingKind, found: &mut Vec<Diagnostic>) {
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
            if let Err(message) = kind.check(text) {
                found.push(Diagnostic::new(code(kind), value.span(), message));
            }
        }
        Ok(_) => {}
    }
}
