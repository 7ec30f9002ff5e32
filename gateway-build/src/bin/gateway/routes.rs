//! `gateway routes` and `gateway expand`: what the compiler made of a file.

use gateway_build::plan::{
    CallPiece, CallValue, Chain, ListenerPlan, PathChange, Plan, PolicyKind, RewriteSegment,
    RoutePlan, Step, Target,
};

use crate::EXIT_ERRORS;

pub fn routes(args: &[String]) -> Result<u8, String> {
    let file = crate::single_file(args)?;
    let (name, source) = crate::read(file)?;
    match gateway_build::analyze_with(&name, &source, &crate::includes(file)) {
        Ok(analysis) => {
            print!("{}", table(&analysis.plan));
            print!("{}", limit_buckets(&analysis.plan));
            Ok(0)
        }
        Err(diagnostics) => {
            eprint!("{}", diagnostics.render(false));
            Ok(EXIT_ERRORS)
        }
    }
}

pub fn expand(args: &[String]) -> Result<u8, String> {
    let file = crate::single_file(args)?;
    let (name, source) = crate::read(file)?;
    match gateway_build::generate_with(&name, &source, &crate::includes(file)) {
        Ok(output) => {
            print!("{}", output.source);
            Ok(0)
        }
        Err(diagnostics) => {
            eprint!("{}", diagnostics.render(false));
            Ok(EXIT_ERRORS)
        }
    }
}

/// The resolved route table, one row per route in the order the router tries them.
fn table(plan: &Plan) -> String {
    let mut rows = vec![[
        "ROUTE".to_owned(),
        "LISTENERS".to_owned(),
        "HOST".to_owned(),
        "METHODS".to_owned(),
        "PATH".to_owned(),
        "TARGET".to_owned(),
        "POLICIES".to_owned(),
    ]];
    for route in &plan.routes {
        let listeners: Vec<&str> = plan
            .listeners
            .iter()
            .enumerate()
            .filter(|(i, _)| route.listeners & (1 << i) != 0)
            .map(|(_, l)| l.name.as_str())
            .collect();
        let methods = if route.methods.is_any() {
            "*".to_owned()
        } else {
            route.methods.names().collect::<Vec<_>>().join(",")
        };
        let name = route.target.name(plan);
        let target = match (&route.target, route.target.path_change()) {
            (Target::Aggregate(spec), _) => {
                let stages: Vec<String> = spec
                    .stages
                    .iter()
                    .map(|stage| {
                        let calls: Vec<String> = stage
                            .iter()
                            .map(|&i| {
                                let call = &spec.calls[i];
                                let upstream = &plan.upstreams[call.upstream].name;
                                let target = call_template(route, &call.path);
                                format!("{} <- {upstream} {} {target}", call.key, call.method)
                            })
                            .collect();
                        calls.join(", ")
                    })
                    .collect();
                let merge = if spec.flat { "flat" } else { "nested" };
                format!("aggregate ({merge}): {}", stages.join("; then "))
            }
            (_, None | Some(PathChange::Keep)) => format!("upstream {name}"),
            (_, Some(PathChange::StripPrefix(prefix))) => {
                format!("upstream {name} (strip {prefix})")
            }
            (_, Some(PathChange::Rewrite(segments))) => {
                format!("upstream {name} (rewrite {})", rewrite(route, segments))
            }
        };
        rows.push([
            format!("{} ({})", route.name, route.place),
            listeners.join(","),
            route.host.clone().unwrap_or_else(|| "*".to_owned()),
            methods,
            route.path.clone(),
            target,
            policies(plan, route),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Which routes share which rate-limit buckets, one line per bucket set.
fn limit_buckets(plan: &Plan) -> String {
    let mut out = String::new();
    if !plan.limit_buckets.is_empty() {
        out.push_str("\nLIMITS (which routes share each limit's state)\n");
    }
    for bucket in &plan.limit_buckets {
        let policy = &plan.policies[bucket.policy];
        let what = match &policy.kind {
            PolicyKind::RateLimit(limit) => format!(
                "{} per {} s, burst {}",
                limit.count, limit.period_seconds, limit.burst
            ),
            PolicyKind::Quota(quota) => format!(
                "quota {} per {} ({})",
                quota.limit,
                if quota.month { "month" } else { "day" },
                quota.time_zone.as_deref().unwrap_or("rolling")
            ),
            PolicyKind::Concurrency(limit) => {
                format!("{} in flight, {} queued", limit.max, limit.queue)
            }
            _ => continue,
        };
        out.push_str(&format!(
            "{}: {what}, {}\n",
            policy.name,
            bucket.describe(plan)
        ));
    }
    out
}

/// Each route's policies in phase order (`connection: a; request: b, c; response: c`),
/// prefixed with the listeners where they differ between listeners.
fn policies(plan: &Plan, route: &RoutePlan) -> String {
    let mut described: Vec<(Vec<&str>, String)> = Vec::new();
    for (i, listener) in plan.listeners.iter().enumerate() {
        let Some(chain) = route.chains.iter().find(|c| c.listeners & (1 << i) != 0) else {
            continue;
        };
        let phases = phases(plan, listener, chain);
        match described.iter_mut().find(|(_, d)| *d == phases) {
            Some((listeners, _)) => listeners.push(&listener.name),
            None => described.push((vec![&listener.name], phases)),
        }
    }
    match described.as_slice() {
        [] => "-".to_owned(),
        [(_, only)] => only.clone(),
        several => several
            .iter()
            .map(|(listeners, phases)| format!("[{}] {phases}", listeners.join(",")))
            .collect::<Vec<_>>()
            .join(" | "),
    }
}

fn phases(plan: &Plan, listener: &ListenerPlan, chain: &Chain) -> String {
    let name = |step: &Step| plan.policies[step.policy()].name.as_str();
    // Rules that refuse a whole connection run for every route of the listener.
    let mut connection: Vec<&str> = listener
        .connection_policies
        .iter()
        .filter(|c| c.refuses_connection)
        .map(|c| plan.policies[c.policy].name.as_str())
        .collect();
    connection.extend(
        chain
            .steps
            .iter()
            .filter(|s| matches!(s, Step::Admission { .. }))
            .map(name),
    );
    let request: Vec<&str> = chain
        .steps
        .iter()
        .filter(|s| !matches!(s, Step::Admission { .. }))
        .filter(|s| match &plan.policies[s.policy()].kind {
            PolicyKind::Headers(h) => !h.request.is_empty(),
            _ => true,
        })
        .map(name)
        .collect();
    let response: Vec<&str> = chain
        .steps
        .iter()
        .rev()
        .filter(|s| match &plan.policies[s.policy()].kind {
            PolicyKind::Headers(h) => !h.response.is_empty(),
            _ => false,
        })
        .map(name)
        .collect();
    let phases: Vec<String> = [
        ("connection", connection),
        ("request", request),
        ("response", response),
    ]
    .into_iter()
    .filter(|(_, names)| !names.is_empty())
    .map(|(phase, names)| format!("{phase}: {}", names.join(", ")))
    .collect();
    if phases.is_empty() {
        "-".to_owned()
    } else {
        phases.join("; ")
    }
}

/// The rewrite template as written, with parameters named as in the route's path.
fn rewrite(route: &gateway_build::plan::RoutePlan, segments: &[RewriteSegment]) -> String {
    let pattern = gateway_build::pattern::parse(&route.path).ok();
    segments
        .iter()
        .map(|s| match s {
            RewriteSegment::Literal(text) => text.clone(),
            RewriteSegment::Param(i) | RewriteSegment::QueryParam(i) => {
                let name = pattern
                    .as_ref()
                    .and_then(|p| p.params.get(*i))
                    .map_or("?", |p| p.name.as_str());
                format!("{{{name}}}")
            }
        })
        .collect()
}

/// A call's target template as written.
fn call_template(route: &gateway_build::plan::RoutePlan, pieces: &[CallPiece]) -> String {
    let pattern = gateway_build::pattern::parse(&route.path).ok();
    pieces
        .iter()
        .map(|piece| match piece {
            CallPiece::Text(text) => text.clone(),
            CallPiece::Value(value) | CallPiece::Json(value) => match value {
                CallValue::Param(i) => {
                    let name = pattern
                        .as_ref()
                        .and_then(|p| p.params.get(*i))
                        .map_or("?", |p| p.name.as_str());
                    format!("{{{name}}}")
                }
                CallValue::Query(name) => format!("{{query.{name}}}"),
                CallValue::Answer { text, .. } => format!("{{{text}}}"),
            },
        })
        .collect()
}
