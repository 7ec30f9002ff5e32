//! Lints: rules that are a team's judgement rather than a defect, each with a default
//! level that `[lints]` can change, as clippy's can.

use gateway_runtime::settings::{has_references, parse_target, parse_template};

use crate::codes;
use crate::diagnostic::{Diagnostic, Severity, did_you_mean};
use crate::syntax::Config;

/// Whether a URL's host is this machine: traffic to it never crosses a network.
pub(super) fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub(super) fn check(config: &Config, found: &mut Vec<Diagnostic>) {
    for (name, level) in &config.lints {
        if codes::lint_by_name(name.get_ref()).is_none() {
            let names: Vec<String> = codes::lint_names().collect();
            found.push(
                Diagnostic::new(
                    &codes::UNKNOWN_LINT,
                    name.span(),
                    format!(
                        "unknown lint `{}`{}",
                        name.get_ref(),
                        did_you_mean(name.get_ref(), names.iter().map(String::as_str))
                    ),
                )
                .with_help(format!("the lints are {}", names.join(", "))),
            );
        }
        if parse_level(level.get_ref()).is_none() {
            found.push(Diagnostic::new(
                &codes::UNKNOWN_LINT,
                level.span(),
                format!(
                    "`{}` is not a lint level: use `allow`, `warn` or `deny`",
                    level.get_ref()
                ),
            ));
        }
    }
    for (name, upstream) in &config.upstreams {
        let upstream = upstream.get_ref();
        for target in upstream.targets.get_ref() {
            // Only literal targets can be judged; references resolve at start-up.
            let literal =
                parse_template(target.get_ref()).is_ok_and(|parts| !has_references(&parts));
            let Ok(parsed) = parse_target(target.get_ref()) else {
                continue;
            };
            let host = parsed.authority.host();
            if literal && parsed.scheme == http::uri::Scheme::HTTP && !is_loopback(host) {
                found.push(Diagnostic::new(
                    &codes::PLAIN_HTTP_UPSTREAM,
                    target.span(),
                    format!(
                        "upstream `{}` is reached over plain HTTP at `{host}`",
                        name.get_ref()
                    ),
                ));
            }
        }
        if upstream.timeouts.response.is_none() {
            found.push(Diagnostic::new(
                &codes::DEFAULT_RESPONSE_TIMEOUT,
                name.span(),
                format!(
                    "upstream `{}` has no `timeouts.response`; the default is 30s",
                    name.get_ref()
                ),
            ));
        }
    }
}

fn parse_level(level: &str) -> Option<Severity> {
    match level {
        "allow" => Some(Severity::Allow),
        "warn" => Some(Severity::Warning),
        "deny" => Some(Severity::Error),
        _ => None,
    }
}

/// Applies `[lints]` levels to lint diagnostics and drops the allowed ones.
pub(crate) fn apply_levels(config: &Config, found: &mut Vec<Diagnostic>) {
    for diagnostic in found.iter_mut().filter(|d| d.code.lint) {
        let configured = config
            .lints
            .iter()
            .filter(|(name, _)| codes::lint_by_name(name.get_ref()) == Some(diagnostic.code))
            .find_map(|(_, level)| parse_level(level.get_ref()));
        if let Some(level) = configured {
            diagnostic.severity = level;
        }
    }
    found.retain(|d| d.severity != Severity::Allow);
}
