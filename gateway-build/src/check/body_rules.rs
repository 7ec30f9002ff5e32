//! A route's `request_body` and `response_body`: field rules that are rules, bounds
//! in range, and JSON to read: no rule on an upstream declared `json = false`, whose
//! bodies a rule could only refuse.

use toml::Spanned;

use gateway_runtime::settings::parse_size;

use crate::check::aggregate::{MAX_ANSWER, check_rules};
use crate::codes;
use crate::diagnostic::Diagnostic;
use crate::syntax::{BodyRules, Config};

pub(super) fn check(config: &Config, found: &mut Vec<Diagnostic>) {
    let not_json = |name: &Spanned<String>| {
        config.upstreams.iter().find_map(|(n, upstream)| {
            (n.get_ref() == name.get_ref()
                && upstream
                    .get_ref()
                    .json
                    .as_ref()
                    .is_some_and(|j| !*j.get_ref()))
            .then(|| upstream.get_ref().json.as_ref().map(|j| j.span()))
            .flatten()
        })
    };
    for route in &config.routes {
        let route = route.get_ref();
        for (rules, direction) in [
            (&route.request_body, "request_body"),
            (&route.response_body, "response_body"),
        ] {
            let Some(rules) = rules else {
                continue;
            };
            check_body(rules.get_ref(), found);
            if direction == "request_body" && route.aggregate.is_some() {
                found.push(invalid(
                    rules.span(),
                    "an aggregate route sends no client body to its calls: remove `request_body`"
                        .to_owned(),
                ));
            }
            if let Some(upstream) = &route.upstream
                && let Some(declared) = not_json(upstream)
            {
                found.push(
                    Diagnostic::new(
                        &codes::JSON_RULE_ON_NON_JSON,
                        rules.span(),
                        format!(
                            "`{direction}` reads JSON, but `{}` is declared `json = false`",
                            upstream.get_ref()
                        ),
                    )
                    .with_related(declared, "declared here")
                    .with_help(codes::JSON_RULE_ON_NON_JSON.fix),
                );
            }
        }
        for call in route.aggregate.iter().flat_map(|calls| calls.get_ref()) {
            let upstream = &call.get_ref().upstream;
            if let Some(declared) = not_json(upstream) {
                found.push(
                    Diagnostic::new(
                        &codes::JSON_RULE_ON_NON_JSON,
                        upstream.span(),
                        format!(
                            "an aggregate call reads JSON, but `{}` is declared `json = false`",
                            upstream.get_ref()
                        ),
                    )
                    .with_related(declared, "declared here")
                    .with_help(codes::JSON_RULE_ON_NON_JSON.fix),
                );
            }
        }
    }
}

fn invalid(span: std::ops::Range<usize>, message: String) -> Diagnostic {
    Diagnostic::new(&codes::INVALID_BODY_RULE, span, message)
        .with_help(codes::INVALID_BODY_RULE.fix)
}

fn check_body(rules: &BodyRules, found: &mut Vec<Diagnostic>) {
    check_rules(rules.rules(), &codes::INVALID_BODY_RULE, found);
    if let Some(size) = &rules.max_body {
        match parse_size(size.get_ref()) {
            Ok(bytes) if bytes <= MAX_ANSWER => {}
            Ok(_) => found.push(invalid(
                size.span(),
                "a body rule reads at most 64MiB".to_owned(),
            )),
            Err(message) => found.push(Diagnostic::new(&codes::INVALID_SIZE, size.span(), message)),
        }
    }
}
