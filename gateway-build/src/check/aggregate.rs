//! Aggregate routes: calls that can be made (a method, a target template whose values
//! the route has, bounded waits and bodies), answers that can be merged (each call
//! its own member of the response), and field paths that are paths.

use std::ops::Range;

use toml::Spanned;

use gateway_runtime::policy::headers;
use gateway_runtime::settings::parse_size;

use crate::check::auth::bounded_duration;
use crate::check::policies::check_header_name;
use crate::codes::{self, Code};
use crate::diagnostic::Diagnostic;
use crate::pattern::{self, RewritePart};
use crate::syntax::{AggregateCall, Config, FieldRules, Route};

/// Most calls one aggregate route makes.
pub const MAX_CALLS: usize = 16;
/// Longest a call may take, in seconds.
pub const MAX_CALL_SECONDS: u64 = 60;
/// Largest answer a call may read.
pub const MAX_ANSWER: u64 = 64 << 20;

/// A field path: object keys, `[]` (each element of an array) and `[N]` (one
/// element, in a `target` only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathStep {
    Key(String),
    Each,
    Index(usize),
}

/// `user.address.city`, `items[].id`, `[].id`, `data.items[0]`.
pub fn parse_field_path(text: &str) -> Result<Vec<PathStep>, String> {
    let not_a_path = || format!("`{text}` is not a field path: write `a.b`, `items[].id`");
    let mut steps = Vec::new();
    for (i, part) in text.split('.').enumerate() {
        let (key, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if key.contains(']') {
            return Err(not_a_path());
        }
        if key.is_empty() && (rest.is_empty() || i > 0) {
            return Err(format!("`{text}` has an empty step"));
        }
        if !key.is_empty() {
            steps.push(PathStep::Key(key.to_owned()));
        }
        while !rest.is_empty() {
            let close = rest.find(']').ok_or_else(not_a_path)?;
            steps.push(match &rest[1..close] {
                "" => PathStep::Each,
                index => PathStep::Index(index.parse().map_err(|_| not_a_path())?),
            });
            rest = &rest[close + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                return Err(not_a_path());
            }
        }
    }
    Ok(steps)
}

pub(super) fn check(config: &Config, found: &mut Vec<Diagnostic>) {
    for route in &config.routes {
        let route = route.get_ref();
        if let Some(calls) = &route.aggregate {
            check_route(route, calls, found);
        } else if let Some(merge) = &route.merge {
            found.push(invalid(
                merge.span(),
                "`merge` says how an aggregate's answers are put together: this route has no `[[routes.aggregate]]` calls".to_owned(),
            ));
        }
    }
}

fn invalid(span: Range<usize>, message: String) -> Diagnostic {
    Diagnostic::new(&codes::INVALID_AGGREGATE, span, message)
        .with_help(codes::INVALID_AGGREGATE.fix)
}

fn check_route(
    route: &Route,
    calls: &Spanned<Vec<Spanned<AggregateCall>>>,
    found: &mut Vec<Diagnostic>,
) {
    for (other, what) in [
        (route.upstream.as_ref().map(|u| u.span()), "upstream"),
        (
            route.strip_prefix.as_ref().map(|s| s.span()),
            "strip_prefix",
        ),
        (route.rewrite.as_ref().map(|r| r.span()), "rewrite"),
    ] {
        if let Some(span) = other {
            found.push(
                invalid(
                    span,
                    format!("an aggregate route makes its own calls: remove `{what}`"),
                )
                .with_related(calls.span(), "its calls"),
            );
        }
    }
    if calls.get_ref().is_empty() || calls.get_ref().len() > MAX_CALLS {
        found.push(invalid(
            calls.span(),
            format!(
                "an aggregate makes 1 to {MAX_CALLS} calls, not {}",
                calls.get_ref().len()
            ),
        ));
    }
    let flat = match &route.merge {
        Some(merge) => match merge.get_ref().as_str() {
            "nested" => false,
            "flat" => true,
            other => {
                found.push(invalid(
                    merge.span(),
                    format!("`{other}` is not a merge: use `nested` or `flat`"),
                ));
                false
            }
        },
        None => false,
    };
    let params = pattern::parse(route.path.get_ref())
        .map(|p| p.params)
        .unwrap_or_default();
    let all: Vec<&AggregateCall> = calls.get_ref().iter().map(|c| c.get_ref()).collect();
    let mut keys: Vec<&Spanned<String>> = Vec::new();
    // With a flat merge, the top-level names each call's `fields` keep.
    let mut members: Vec<(String, &Spanned<String>)> = Vec::new();
    // Which calls each call depends on.
    let mut needs: Vec<Vec<usize>> = Vec::new();
    for call in calls.get_ref() {
        let call = call.get_ref();
        let key = &call.key;
        let text = key.get_ref();
        if text == "_errors" {
            found.push(duplicate(
                key,
                "`_errors` is where the gateway says what failed: pick another key".to_owned(),
            ));
        } else if text.is_empty()
            || text.trim() != text
            || text.contains(|c: char| c == ',' || c.is_control())
        {
            // A key is also an item of the `X-Gateway-Partial` list.
            found.push(invalid(
                key.span(),
                format!(
                    "{text:?} is not a key: a key is also listed in `X-Gateway-Partial`, so it is \
                     not empty and has no commas, control characters or spaces at its ends"
                ),
            ));
        } else if let Some(first) = keys.iter().find(|k| k.get_ref() == key.get_ref()) {
            found.push(
                duplicate(key, format!("two calls write `{}`", key.get_ref()))
                    .with_related(first.span(), "the first"),
            );
        } else {
            keys.push(key);
        }
        needs.push(check_templates(call, &params, &all, found));
        if let (Some(body), Some(method)) = (&call.body, &call.method)
            && matches!(method.get_ref().as_str(), "GET" | "HEAD")
        {
            found.push(
                invalid(
                    method.span(),
                    format!(
                        "a {} call sends no body: remove `body`, or use `POST`",
                        method.get_ref()
                    ),
                )
                .with_related(body.span(), "the body"),
            );
        }
        if let Some(method) = &call.method
            && (!headers::is_token(method.get_ref())
                || method.get_ref().bytes().any(|b| b.is_ascii_lowercase()))
        {
            found.push(invalid(
                method.span(),
                format!(
                    "`{}` is not a method: write it in capitals, `GET`",
                    method.get_ref()
                ),
            ));
        }
        // The gateway writes some fields of a call itself: passing the client's on
        // would be dropped without a word.
        for name in call.headers.iter().flat_map(|h| h.get_ref()) {
            check_header_name(name, "a call cannot pass on", found);
            if name.get_ref().eq_ignore_ascii_case("accept-encoding") {
                found.push(Diagnostic::new(
                    &codes::FORBIDDEN_HEADER,
                    name.span(),
                    format!(
                        "a call cannot pass on `{}`: the gateway reads every answer, and \
                         asks for it without a content coding",
                        name.get_ref()
                    ),
                ));
            }
        }
        bounded_duration(
            &call.timeout,
            MAX_CALL_SECONDS,
            "a call waits at most 60s",
            found,
        );
        if let Some(size) = &call.max_body {
            match parse_size(size.get_ref()) {
                Ok(bytes) if bytes <= MAX_ANSWER => {}
                Ok(_) => found.push(invalid(
                    size.span(),
                    "a call reads at most 64MiB of answer".to_owned(),
                )),
                Err(message) => {
                    found.push(Diagnostic::new(&codes::INVALID_SIZE, size.span(), message))
                }
            }
        }
        let required = call.required.as_ref().is_none_or(|r| *r.get_ref());
        if let Some(fallback) = &call.fallback
            && required
        {
            found.push(invalid(
                fallback.span(),
                "a required call's failure fails the response, so its `fallback` is never used: write `required = false`".to_owned(),
            ));
        }
        check_rules(call.rules(), &codes::INVALID_AGGREGATE, found);
        if flat {
            let own = top_level_names(call);
            for (name, path) in &own {
                if let Some((_, owner)) = members.iter().find(|(n, _)| n == name) {
                    found.push(
                        duplicate(
                            path,
                            format!(
                                "with `merge = \"flat\"`, `{name}` comes from `{}` and `{}`: only the first would be kept",
                                owner.get_ref(),
                                key.get_ref()
                            ),
                        )
                        .with_related(owner.span(), "the call listed first"),
                    );
                }
            }
            members.extend(own.into_iter().map(|(name, _)| (name, key)));
        }
    }
    if let Some(cycle) = first_cycle(&needs) {
        let names: Vec<String> = cycle
            .iter()
            .map(|&i| format!("`{}`", all[i].key.get_ref()))
            .collect();
        found.push(
            Diagnostic::new(
                &codes::CALL_CYCLE,
                all[cycle[0]].path.span(),
                format!(
                    "calls {} depend on each other's answers: none can be made first",
                    names.join(" -> ")
                ),
            )
            .with_help(codes::CALL_CYCLE.fix),
        );
    }
}

/// The calls of a dependency cycle, the first repeated at the end; `None` if the
/// calls can be put in stages.
pub fn first_cycle(needs: &[Vec<usize>]) -> Option<Vec<usize>> {
    // 0: not seen, 1: on the current path, 2: done.
    fn visit(
        at: usize,
        needs: &[Vec<usize>],
        state: &mut [u8],
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        match state[at] {
            2 => return None,
            1 => {
                let from = path.iter().position(|&c| c == at).unwrap_or(0);
                let mut cycle = path[from..].to_vec();
                cycle.push(at);
                return Some(cycle);
            }
            _ => {}
        }
        state[at] = 1;
        path.push(at);
        for &next in &needs[at] {
            if let Some(cycle) = visit(next, needs, state, path) {
                return Some(cycle);
            }
        }
        path.pop();
        state[at] = 2;
        None
    }
    let mut state = vec![0u8; needs.len()];
    (0..needs.len()).find_map(|start| visit(start, needs, &mut state, &mut Vec::new()))
}

/// The calls' stages: each call in the stage after the last of those it depends on.
pub fn stages(needs: &[Vec<usize>]) -> Vec<Vec<usize>> {
    fn stage(at: usize, needs: &[Vec<usize>], memo: &mut [Option<usize>]) -> usize {
        if let Some(s) = memo[at] {
            return s;
        }
        memo[at] = Some(0);
        let s = needs[at]
            .iter()
            .map(|&d| stage(d, needs, memo) + 1)
            .max()
            .unwrap_or(0);
        memo[at] = Some(s);
        s
    }
    let mut memo = vec![None; needs.len()];
    let mut stages: Vec<Vec<usize>> = Vec::new();
    for call in 0..needs.len() {
        let s = stage(call, needs, &mut memo);
        if stages.len() <= s {
            stages.resize(s + 1, Vec::new());
        }
        stages[s].push(call);
    }
    stages
}

/// The top-level names a call's rules make visible: its `group`, or what its
/// `fields` keep at the top, renamed where a `rename` says so. A `target` hides
/// them: what it picks is known only at run time.
fn top_level_names(call: &AggregateCall) -> Vec<(String, &Spanned<String>)> {
    if let Some(group) = &call.group {
        return vec![(group.get_ref().clone(), group)];
    }
    if call.target.is_some() {
        return Vec::new();
    }
    let renamed = |name: &str| {
        call.rename
            .iter()
            .flat_map(|r| r.get_ref())
            .find(|(from, _)| from.get_ref() == name)
            .map_or(name.to_owned(), |(_, to)| to.get_ref().clone())
    };
    let mut own: Vec<(String, &Spanned<String>)> = Vec::new();
    for path in call.fields.iter().flat_map(|p| p.get_ref()) {
        if let Ok(steps) = parse_field_path(path.get_ref())
            && let Some(PathStep::Key(name)) = steps.first()
        {
            let name = renamed(name);
            if !own.iter().any(|(n, _)| *n == name) {
                own.push((name, path));
            }
        }
    }
    own
}

/// Field rules (of a call or a body): paths that are paths, `[N]` only in a `target`, renames
/// of a member to a name.
pub fn check_rules(rules: FieldRules<'_>, code: &'static Code, found: &mut Vec<Diagnostic>) {
    let invalid = |span: Range<usize>, message: String| {
        Diagnostic::new(code, span, message).with_help(code.fix)
    };
    let parsed = |text: &Spanned<String>, found: &mut Vec<Diagnostic>| {
        parse_field_path(text.get_ref())
            .map_err(|message| found.push(invalid(text.span(), message)))
            .ok()
    };
    if let Some(target) = rules.target {
        parsed(target, found);
    }
    let renames = rules
        .rename
        .iter()
        .flat_map(|r| r.get_ref())
        .map(|(from, _)| from);
    let listed = [rules.fields, rules.deny]
        .into_iter()
        .flatten()
        .flat_map(|p| p.get_ref());
    for text in listed.chain(renames) {
        let Some(steps) = parsed(text, found) else {
            continue;
        };
        if steps.iter().any(|s| matches!(s, PathStep::Index(_))) {
            found.push(invalid(
                text.span(),
                format!(
                    "`{}`: `[N]` picks one element, which only a `target` does; use `[]`",
                    text.get_ref()
                ),
            ));
        }
    }
    for (from, to) in rules.rename.iter().flat_map(|r| r.get_ref()) {
        if let Ok(steps) = parse_field_path(from.get_ref())
            && !matches!(steps.last(), Some(PathStep::Key(_)))
        {
            found.push(invalid(
                from.span(),
                format!("`{}` names no member to rename", from.get_ref()),
            ));
        }
        if to.get_ref().is_empty() {
            found.push(invalid(
                to.span(),
                "a member is renamed to a name, not to nothing".to_owned(),
            ));
        }
    }
    if let Some(group) = &rules.group
        && group.get_ref().is_empty()
    {
        found.push(invalid(
            group.span(),
            "`group` names the member the answer goes under".to_owned(),
        ));
    }
}

fn duplicate(key: &Spanned<String>, message: String) -> Diagnostic {
    Diagnostic::new(&codes::DUPLICATE_OUTPUT_KEY, key.span(), message)
        .with_help(codes::DUPLICATE_OUTPUT_KEY.fix)
}

/// A value a template names, as the compiler resolves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateValue {
    /// The route's parameter of this name.
    Param(String),
    /// `{query.NAME}`.
    Query(String),
    /// `{KEY.PATH}`: the value at `PATH` of call `KEY`'s shaped answer.
    Answer { call: usize, path: Vec<PathStep> },
}

/// What `{name}` in a call's template names, among the route's `params` and `calls`.
pub fn template_value(
    name: &str,
    params: &[pattern::Param],
    calls: &[&AggregateCall],
) -> Option<TemplateValue> {
    match name.split_once('.') {
        Some(("query", query)) if !query.is_empty() => Some(TemplateValue::Query(query.to_owned())),
        Some((key, path)) => {
            let call = calls.iter().position(|c| c.key.get_ref() == key)?;
            Some(TemplateValue::Answer {
                call,
                path: parse_field_path(path).ok()?,
            })
        }
        None => params
            .iter()
            .any(|p| p.name == name)
            .then(|| TemplateValue::Param(name.to_owned())),
    }
}

/// The strings of a body, wherever they are in it.
pub fn body_strings<'v>(value: &'v toml::Value, out: &mut Vec<&'v str>) {
    match value {
        toml::Value::String(text) => out.push(text),
        toml::Value::Array(items) => items.iter().for_each(|v| body_strings(v, out)),
        toml::Value::Table(table) => table.values().for_each(|v| body_strings(v, out)),
        _ => {}
    }
}

/// The target and body templates: an absolute path whose values the route has or
/// an earlier call provides. Returns the calls this call depends on.
fn check_templates(
    call: &AggregateCall,
    params: &[pattern::Param],
    calls: &[&AggregateCall],
    found: &mut Vec<Diagnostic>,
) -> Vec<usize> {
    let path = &call.path;
    if !path.get_ref().starts_with('/') {
        found.push(invalid(
            path.span(),
            format!("`{}` is not a path: it starts with `/`", path.get_ref()),
        ));
    }
    let mut needs = Vec::new();
    let start = path.span().start + 1;
    check_template(
        path.get_ref(),
        Some(start),
        call,
        params,
        calls,
        &mut needs,
        found,
    );
    if let Some(body) = &call.body {
        let mut strings = Vec::new();
        body_strings(body.get_ref(), &mut strings);
        for text in strings {
            // Inside a table the string's own offset is not kept: point at the body.
            let before = found.len();
            check_template(text, None, call, params, calls, &mut needs, found);
            for diagnostic in &mut found[before..] {
                diagnostic.span = body.span();
            }
        }
    }
    needs.sort_unstable();
    needs.dedup();
    needs
}

/// One template; `start` is where its text is in the file, if known.
fn check_template(
    text: &str,
    start: Option<usize>,
    call: &AggregateCall,
    params: &[pattern::Param],
    calls: &[&AggregateCall],
    needs: &mut Vec<usize>,
    found: &mut Vec<Diagnostic>,
) {
    let at = |range: Range<usize>| match start {
        Some(start) => start + range.start..start + range.end,
        None => 0..0,
    };
    let parts = match pattern::parse_rewrite(text) {
        Ok(parts) => parts,
        Err((range, message)) => return found.push(invalid(at(range), message)),
    };
    for part in parts {
        let RewritePart::Param { name, range } = part else {
            continue;
        };
        match template_value(&name, params, calls) {
            Some(TemplateValue::Answer { call: source, path }) => {
                let source_call = calls[source];
                if source_call.key.get_ref() == call.key.get_ref() {
                    found.push(
                        Diagnostic::new(&codes::CALL_CYCLE, at(range), format!("`{{{name}}}`: a call cannot use its own answer"))
                            .with_help(codes::CALL_CYCLE.fix),
                    );
                    continue;
                }
                if path.iter().any(|s| matches!(s, PathStep::Each)) {
                    found.push(invalid(at(range), format!("`{{{name}}}` names many values: use `[N]` for one element")));
                    continue;
                }
                if let Err(message) = provided(source_call, &path) {
                    found.push(
                        Diagnostic::new(&codes::UNPROVIDED_FIELD, at(range), format!("`{{{name}}}`: {message}"))
                            .with_help(codes::UNPROVIDED_FIELD.fix),
                    );
                }
                needs.push(source);
            }
            Some(_) => {}
            None => found.push(
                Diagnostic::new(
                    &codes::UNKNOWN_TEMPLATE_VALUE,
                    at(range),
                    match name.split_once('.') {
                        Some((key, _)) if key != "query" => format!("`{{{name}}}` is no value of this route: `{key}` is not one of its calls, and a call's template uses the route's parameters, `{{query.NAME}}` and `{{KEY.FIELD}}` of another call's answer"),
                        Some(_) => format!("`{{{name}}}` names no query parameter"),
                        None => format!("the route does not capture `{name}`"),
                    },
                )
                .with_help(codes::UNKNOWN_TEMPLATE_VALUE.fix),
            ),
        }
    }
}

/// Whether `path` survives `source`'s rules, which shape the answer it is read from.
fn provided(source: &AggregateCall, path: &[PathStep]) -> Result<(), String> {
    let key = source.key.get_ref();
    let mut path = path.to_vec();
    if let Some(group) = &source.group {
        match path.first() {
            Some(PathStep::Key(first)) if first == group.get_ref() => {
                path.remove(0);
            }
            _ => {
                return Err(format!(
                    "`{key}`'s answer is under `{}`: write `{{{key}.{}.…}}`",
                    group.get_ref(),
                    group.get_ref()
                ));
            }
        }
    }
    let covers = |rule: &[PathStep], path: &[PathStep]| {
        rule.len() <= path.len()
            && rule.iter().zip(path).all(|(r, p)| match (r, p) {
                (PathStep::Each, PathStep::Index(_)) => true,
                (r, p) => r == p,
            })
    };
    for (from, to) in source.rename.iter().flat_map(|r| r.get_ref()) {
        let Ok(from_steps) = parse_field_path(from.get_ref()) else {
            continue;
        };
        let mut renamed = from_steps.clone();
        if let Some(last) = renamed.last_mut() {
            *last = PathStep::Key(to.get_ref().clone());
        }
        if covers(&renamed, &path) {
            path.splice(..renamed.len(), from_steps);
        } else if covers(&from_steps, &path) {
            return Err(format!(
                "`{key}` renames `{}` to `{}`",
                from.get_ref(),
                to.get_ref()
            ));
        }
    }
    for denied in source.deny.iter().flat_map(|d| d.get_ref()) {
        if parse_field_path(denied.get_ref()).is_ok_and(|rule| covers(&rule, &path)) {
            return Err(format!("`{key}` removes `{}` (`deny`)", denied.get_ref()));
        }
    }
    if let Some(fields) = &source.fields
        && !fields.get_ref().iter().any(|f| {
            // A kept path at or inside the value keeps (part of) it.
            parse_field_path(f.get_ref())
                .is_ok_and(|rule| covers(&rule, &path) || covers(&path, &rule))
        })
    {
        return Err(format!("`{key}`'s `fields` do not keep it"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths() {
        use PathStep::{Each, Key};
        let key = |k: &str| Key(k.to_owned());
        assert_eq!(parse_field_path("a.b"), Ok(vec![key("a"), key("b")]));
        assert_eq!(
            parse_field_path("items[].id"),
            Ok(vec![key("items"), Each, key("id")])
        );
        assert_eq!(parse_field_path("[].id"), Ok(vec![Each, key("id")]));
        assert_eq!(parse_field_path("m[][]"), Ok(vec![key("m"), Each, Each]));
        assert_eq!(
            parse_field_path("data.items[0]"),
            Ok(vec![key("data"), key("items"), PathStep::Index(0)])
        );
        for bad in ["", "a..b", "a.", "a[", "a[x]", "a.[].b", "a[]b", "a]"] {
            assert!(parse_field_path(bad).is_err(), "{bad}");
        }
    }
}
