//! `[[tests]]`: requests and what the compiled route table must do with them, checked
//! by every build. The table is the runtime's own (`gateway_runtime::router`), fed the
//! same specs the generated code holds, so a test passes here exactly when the gateway
//! would route that way.

use std::collections::HashMap;

use http::{Method, Uri};

use gateway_runtime::message::request::{PathParameters as RtPathParameters, normalize_path};
use gateway_runtime::route::path::{self as rt_path, RewriteSegment as RtSegment};
use gateway_runtime::route::router::{Lookup, RouteSpec, RouteTable};

use crate::codes;
use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::plan::{PathChange, Plan, RewriteSegment};
use crate::syntax::{Config, PathParameters, RouteTest};

/// Statuses the router itself can answer: routed, bad request, no route, wrong method.
const STATUSES: [i64; 4] = [200, 400, 404, 405];

/// A test request, parsed.
struct TestRequest {
    method: Method,
    uri: Uri,
}

fn parse_request(text: &str) -> Result<TestRequest, String> {
    let (method, target) = text
        .split_once(' ')
        .ok_or_else(|| format!("`{text}` is not `METHOD /path`"))?;
    let method =
        Method::from_bytes(method.as_bytes()).map_err(|_| format!("`{method}` is not a method"))?;
    let uri: Uri = target
        .trim()
        .parse()
        .map_err(|_| format!("`{}` is not a request target", target.trim()))?;
    if !uri.path().starts_with('/') || uri.authority().is_some() {
        return Err(format!(
            "`{}` must be a path starting with `/`",
            target.trim()
        ));
    }
    Ok(TestRequest { method, uri })
}

/// Shape rules for `[[tests]]`, run with the other checks.
pub(crate) fn check(config: &Config, found: &mut Vec<Diagnostic>) {
    let route_names: Vec<&str> = config
        .routes
        .iter()
        .filter_map(|r| r.get_ref().name.as_ref().map(|n| n.get_ref().as_str()))
        .collect();
    let listener_names = config.listener_names();
    for test in &config.tests {
        let test = test.get_ref();
        if let Err(message) = parse_request(test.request.get_ref()) {
            found.push(Diagnostic::new(
                &codes::INVALID_TEST_REQUEST,
                test.request.span(),
                message,
            ));
        }
        if let Some(listener) = &test.listener
            && !listener_names.contains(&listener.get_ref().as_str())
        {
            found.push(crate::check::references::unknown_listener(
                listener,
                &listener_names,
            ));
        }
        let expect = test.expect.get_ref();
        if let Some(route) = &expect.route
            && !route_names.contains(&route.get_ref().as_str())
        {
            found.push(
                Diagnostic::new(
                    &codes::UNKNOWN_ROUTE,
                    route.span(),
                    format!(
                        "no route is named `{}`{}",
                        route.get_ref(),
                        did_you_mean(route.get_ref(), route_names.iter().copied())
                    ),
                )
                .with_help("route tests name routes by their `name` key"),
            );
        }
        if let Some(status) = &expect.status
            && !STATUSES.contains(status.get_ref())
        {
            found.push(
                Diagnostic::new(
                    &codes::INVALID_STATUS,
                    status.span(),
                    format!("the router never answers {} by itself", status.get_ref()),
                )
                .with_help(codes::INVALID_STATUS.fix),
            );
        }
        if expect.route.is_none()
            && expect.upstream.is_none()
            && expect.path.is_none()
            && expect.status.is_none()
        {
            found.push(Diagnostic::new(
                &codes::EMPTY_EXPECTATION,
                test.expect.span(),
                "this test expects nothing, so it can never fail",
            ));
        }
    }
}

/// What the route table did with a test request.
struct Outcome {
    status: i64,
    /// Index into the plan's routes.
    route: Option<usize>,
    /// Path and query sent upstream.
    path: Option<String>,
}

/// Runs every test against the plan; returns one error per failed test.
pub(crate) fn run(config: &Config, plan: &Plan) -> Vec<Diagnostic> {
    let specs: Vec<RouteSpec<'_>> = plan
        .routes
        .iter()
        .map(|r| RouteSpec {
            name: &r.name,
            host: r.host.as_deref(),
            path: &r.canonical_path,
            methods: r.methods,
            listeners: r.listeners,
            target: r.target.name(plan),
        })
        .collect();
    let mut tables: HashMap<usize, RouteTable<'_>> = HashMap::new();
    let mut failures = Vec::new();
    for test in &config.tests {
        let test = test.get_ref();
        // `check` has refused malformed requests and unknown listeners.
        let Ok(request) = parse_request(test.request.get_ref()) else {
            continue;
        };
        let listener = test
            .listener
            .as_ref()
            .and_then(|l| plan.listeners.iter().position(|p| &p.name == l.get_ref()))
            .unwrap_or(0);
        let table = tables
            .entry(listener)
            .or_insert_with(|| RouteTable::new(&specs, listener));
        let outcome = evaluate(plan, table, listener, test, &request);
        if let Some(failure) = compare(config, plan, test, &outcome) {
            failures.push(failure);
        }
    }
    failures
}

fn evaluate(
    plan: &Plan,
    table: &RouteTable<'_>,
    listener: usize,
    test: &RouteTest,
    request: &TestRequest,
) -> Outcome {
    let rejected = Outcome {
        status: 400,
        route: None,
        path: None,
    };
    let parameters = match plan.listeners[listener].path_parameters {
        PathParameters::Reject => RtPathParameters::Reject,
        PathParameters::Keep => RtPathParameters::Keep,
    };
    let uri = match normalize_path(request.uri.path(), parameters) {
        Ok(None) => request.uri.clone(),
        Ok(Some(normal)) => {
            match gateway_runtime::message::request::with_path(&request.uri, &normal) {
                Some(uri) => uri,
                None => return rejected,
            }
        }
        Err(_) => return rejected,
    };
    let host = test
        .host
        .as_ref()
        .map(|h| h.get_ref().split(':').next().unwrap_or_default());
    match table.lookup(host, &request.method, uri.path()) {
        Lookup::Found { route, params } => {
            let sent = match plan.routes[route].target.path_change() {
                None | Some(PathChange::Keep) => uri.path_and_query().map(|pq| pq.to_string()),
                Some(PathChange::StripPrefix(prefix)) => {
                    rt_path::strip_prefix(&uri, prefix).map(|pq| pq.to_string())
                }
                Some(PathChange::Rewrite(segments)) => {
                    let segments: Vec<RtSegment<'_>> = segments
                        .iter()
                        .map(|s| match s {
                            RewriteSegment::Literal(text) => RtSegment::Literal(text),
                            RewriteSegment::Param(i) => RtSegment::Param(*i),
                            RewriteSegment::QueryParam(i) => RtSegment::QueryParam(*i),
                        })
                        .collect();
                    rt_path::rewrite(&uri, &segments, &params).map(|pq| pq.to_string())
                }
            };
            Outcome {
                status: 200,
                route: Some(route),
                path: sent,
            }
        }
        Lookup::MethodNotAllowed { .. } => Outcome {
            status: 405,
            route: None,
            path: None,
        },
        Lookup::NotFound => Outcome {
            status: 404,
            route: None,
            path: None,
        },
    }
}

/// The failure diagnostic, or `None` when every expectation holds.
fn compare(
    config: &Config,
    plan: &Plan,
    test: &RouteTest,
    outcome: &Outcome,
) -> Option<Diagnostic> {
    let expect = test.expect.get_ref();
    let routed = outcome.route.map(|r| &plan.routes[r]);
    let upstream = routed
        .and_then(|r| r.target.upstream())
        .map(|u| plan.upstreams[u].name.as_str());
    let mut wrong = Vec::new();
    if let Some(want) = &expect.status
        && *want.get_ref() != outcome.status
    {
        wrong.push(format!(
            "status {} instead of {}",
            outcome.status,
            want.get_ref()
        ));
    }
    if let Some(want) = &expect.route
        && routed.map(|r| r.name.as_str()) != Some(want.get_ref().as_str())
    {
        wrong.push(format!(
            "route `{}` instead of `{}`",
            routed.map_or("none", |r| r.name.as_str()),
            want.get_ref()
        ));
    }
    if let Some(want) = &expect.upstream
        && upstream != Some(want.get_ref().as_str())
    {
        wrong.push(format!(
            "upstream `{}` instead of `{}`",
            upstream.unwrap_or("none"),
            want.get_ref()
        ));
    }
    if let Some(want) = &expect.path
        && outcome.path.as_deref() != Some(want.get_ref().as_str())
    {
        wrong.push(format!(
            "upstream path `{}` instead of `{}`",
            outcome.path.as_deref().unwrap_or("none"),
            want.get_ref()
        ));
    }
    if wrong.is_empty() {
        return None;
    }
    let mut diagnostic = Diagnostic::new(
        &codes::ROUTE_TEST_FAILED,
        test.expect.span(),
        format!(
            "route test failed: `{}` got {}",
            test.request.get_ref(),
            wrong.join(", ")
        ),
    );
    if let Some(route) = outcome.route {
        diagnostic = diagnostic.with_related(
            config.routes[route].get_ref().path.span(),
            "the request matched this route",
        );
    }
    Some(diagnostic.with_related(test.request.span(), "the test request"))
}
