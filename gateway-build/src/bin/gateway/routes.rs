//! `gateway routes` and `gateway expand`: what the compiler made of a file.

use gateway_build::plan::{PathChange, Plan, RewriteSegment, Target};

use crate::EXIT_ERRORS;

pub fn routes(args: &[String]) -> Result<u8, String> {
    let (name, source) = crate::read(crate::single_file(args)?)?;
    match gateway_build::analyze(&name, &source) {
        Ok(analysis) => {
            print!("{}", table(&analysis.plan));
            Ok(0)
        }
        Err(diagnostics) => {
            eprint!("{}", diagnostics.render(false));
            Ok(EXIT_ERRORS)
        }
    }
}

pub fn expand(args: &[String]) -> Result<u8, String> {
    let (name, source) = crate::read(crate::single_file(args)?)?;
    match gateway_build::generate(&name, &source) {
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
        let Target::Upstream { upstream, path } = &route.target;
        let upstream = &plan.upstreams[*upstream].name;
        let target = match path {
            PathChange::Keep => format!("upstream {upstream}"),
            PathChange::StripPrefix(prefix) => format!("upstream {upstream} (strip {prefix})"),
            PathChange::Rewrite(segments) => {
                format!("upstream {upstream} (rewrite {})", rewrite(route, segments))
            }
        };
        rows.push([
            format!("{} (line {})", route.name, route.line),
            listeners.join(","),
            route.host.clone().unwrap_or_else(|| "*".to_owned()),
            methods,
            route.path.clone(),
            target,
            "-".to_owned(),
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
