//! The lowered gateway: names resolved to indices, patterns canonical, defaults filled
//! in. Built only from a configuration that passed `check`, so nothing here can fail
//! and nothing carries a span; `origin` strings keep the location for start-up errors.

use gateway_runtime::methods::MethodSet;

use crate::check::routes::listener_mask;
use crate::diagnostic::Diagnostics;
use crate::pattern::{self, RewritePart};
use crate::syntax::Config;

/// Defaults where gateway.toml is silent, chosen to match common practice: Envoy's 5 s
/// connect timeout, nginx-like minute-scale read timeouts, hyper's 90 s pool idle time.
const DEFAULT_SHUTDOWN_TIMEOUT: &str = "30s";
const DEFAULT_HEADER_READ_TIMEOUT: &str = "30s";
const DEFAULT_CONNECT_TIMEOUT: &str = "5s";
const DEFAULT_RESPONSE_TIMEOUT: &str = "30s";
const DEFAULT_POOL_IDLE_TIMEOUT: &str = "90s";
/// Envoy's 60 KiB, rounded up; nginx allows 4 × 8 KiB by default.
const DEFAULT_MAX_HEADER_SIZE: &str = "64KiB";
/// Envoy's and hyper's default.
const DEFAULT_MAX_HEADERS: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub name: String,
    /// The configuration file as named in messages.
    pub file: String,
    /// SHA-256 of the configuration source, hex: which config a binary enforces.
    pub config_sha256: String,
    /// `None`: one per core.
    pub workers: Option<SettingPlan>,
    pub shutdown_timeout: SettingPlan,
    pub admin: Option<SettingPlan>,
    pub listeners: Vec<ListenerPlan>,
    pub upstreams: Vec<UpstreamPlan>,
    pub routes: Vec<RoutePlan>,
}

/// A value resolved at start-up, as written, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingPlan {
    /// `gateway.toml:12:5 (upstreams.users.targets)` or `default (…)`.
    pub origin: String,
    pub raw: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerPlan {
    pub name: String,
    pub bind: SettingPlan,
    pub header_read_timeout: SettingPlan,
    /// `None`: no limit.
    pub max_body: Option<SettingPlan>,
    pub max_header_size: SettingPlan,
    pub max_headers: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamPlan {
    pub name: String,
    pub line: usize,
    pub targets: Vec<SettingPlan>,
    pub connect_timeout: SettingPlan,
    pub response_timeout: SettingPlan,
    pub idle_timeout: SettingPlan,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePlan {
    /// Shown in logs.
    pub name: String,
    pub line: usize,
    /// Lower-case; `None` matches every host.
    pub host: Option<String>,
    /// The path as written.
    pub path: String,
    /// The path with parameters renamed by position, as the router stores it.
    pub canonical_path: String,
    pub methods: MethodSet,
    /// Bit `i` set when the route is served on listener `i`.
    pub listeners: u64,
    pub target: Target,
}

/// What a route does with a matched request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Upstream { upstream: usize, path: PathChange },
}

/// How the path sent upstream derives from the request's; the query is always kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathChange {
    Keep,
    StripPrefix(String),
    Rewrite(Vec<RewriteSegment>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RewriteSegment {
    Literal(String),
    /// The route's parameter at this position.
    Param(usize),
    /// The same, after the template's `?`.
    QueryParam(usize),
}

/// Lowers a checked configuration.
pub fn lower(config: &Config, source: &str, diagnostics: &Diagnostics) -> Plan {
    let at = |offset: usize, key: &str| {
        let (line, col) = diagnostics.line_col(offset);
        format!("{}:{line}:{col} ({key})", diagnostics.file)
    };
    let setting = |value: Option<&toml::Spanned<String>>, key: &str, default: &str| match value {
        Some(v) => SettingPlan {
            origin: at(v.span().start, key),
            raw: v.get_ref().clone(),
        },
        None => SettingPlan {
            origin: format!("default ({key})"),
            raw: default.to_owned(),
        },
    };
    let gateway = config.gateway.as_ref().map(|g| g.get_ref());
    let listeners =
        config
            .listeners
            .iter()
            .map(|(name, l)| {
                let name = name.get_ref();
                let l = l.get_ref();
                ListenerPlan {
                    name: name.clone(),
                    bind: setting(Some(&l.bind), &format!("listeners.{name}.bind"), ""),
                    header_read_timeout: setting(
                        l.timeouts.header_read.as_ref(),
                        &format!("listeners.{name}.timeouts.header_read"),
                        DEFAULT_HEADER_READ_TIMEOUT,
                    ),
                    max_body: l.limits.max_body.as_ref().map(|v| {
                        setting(Some(v), &format!("listeners.{name}.limits.max_body"), "")
                    }),
                    max_header_size: setting(
                        l.limits.max_header_size.as_ref(),
                        &format!("listeners.{name}.limits.max_header_size"),
                        DEFAULT_MAX_HEADER_SIZE,
                    ),
                    max_headers: l
                        .limits
                        .max_headers
                        .as_ref()
                        .map_or(DEFAULT_MAX_HEADERS, |n| *n.get_ref() as usize),
                }
            })
            .collect();
    let upstreams = config
        .upstreams
        .iter()
        .map(|(name, u)| {
            let key = format!("upstreams.{}", name.get_ref());
            let u = u.get_ref();
            let timeout = |value, which: &str, default| {
                setting(value, &format!("{key}.timeouts.{which}"), default)
            };
            UpstreamPlan {
                name: name.get_ref().clone(),
                line: diagnostics.line_col(name.span().start).0,
                targets: u
                    .targets
                    .get_ref()
                    .iter()
                    .map(|t| setting(Some(t), &format!("{key}.targets"), ""))
                    .collect(),
                connect_timeout: timeout(
                    u.timeouts.connect.as_ref(),
                    "connect",
                    DEFAULT_CONNECT_TIMEOUT,
                ),
                response_timeout: timeout(
                    u.timeouts.response.as_ref(),
                    "response",
                    DEFAULT_RESPONSE_TIMEOUT,
                ),
                idle_timeout: timeout(u.timeouts.idle.as_ref(), "idle", DEFAULT_POOL_IDLE_TIMEOUT),
            }
        })
        .collect();
    let routes = config
        .routes
        .iter()
        .map(|route| {
            let route = route.get_ref();
            // `check` guarantees a valid pattern, valid methods and a known upstream.
            let pattern = pattern::parse(route.path.get_ref())
                .unwrap_or_else(|e| unreachable!("checked: {e}"));
            let methods =
                crate::check::routes::methods(route, &mut Vec::new()).unwrap_or(MethodSet::ANY);
            let upstream_name = route
                .upstream
                .as_ref()
                .map(|u| u.get_ref().as_str())
                .unwrap_or_default();
            let upstream = config
                .upstreams
                .iter()
                .position(|(n, _)| n.get_ref() == upstream_name)
                .unwrap_or_else(|| unreachable!("checked: upstream `{upstream_name}` exists"));
            let path = if let Some(prefix) = &route.strip_prefix {
                PathChange::StripPrefix(prefix.get_ref().clone())
            } else if let Some(rewrite) = &route.rewrite {
                let parts = pattern::parse_rewrite(rewrite.get_ref()).unwrap_or_default();
                let mut in_query = false;
                PathChange::Rewrite(
                    parts
                        .into_iter()
                        .map(|p| match p {
                            RewritePart::Literal(text) => {
                                in_query |= text.contains('?');
                                RewriteSegment::Literal(text)
                            }
                            RewritePart::Param { name, .. } => {
                                let index = pattern.param_index(&name).unwrap_or(0);
                                if in_query {
                                    RewriteSegment::QueryParam(index)
                                } else {
                                    RewriteSegment::Param(index)
                                }
                            }
                        })
                        .collect(),
                )
            } else {
                PathChange::Keep
            };
            let name = match &route.name {
                Some(name) => name.get_ref().clone(),
                None if methods.is_any() => route.path.get_ref().clone(),
                None => format!(
                    "{} {}",
                    methods.names().collect::<Vec<_>>().join(","),
                    route.path.get_ref()
                ),
            };
            RoutePlan {
                name,
                line: diagnostics.line_col(route.path.span().start).0,
                host: route
                    .host
                    .as_ref()
                    .map(|h| h.get_ref().to_ascii_lowercase()),
                path: route.path.get_ref().clone(),
                canonical_path: pattern.canonical,
                methods,
                listeners: listener_mask(config, route),
                target: Target::Upstream { upstream, path },
            }
        })
        .collect();
    Plan {
        name: gateway.map_or_else(|| "gateway".to_owned(), |g| g.name.get_ref().clone()),
        file: diagnostics.file.clone(),
        config_sha256: sha256_hex(source.as_bytes()),
        workers: gateway
            .and_then(|g| g.workers.as_ref())
            .map(|w| SettingPlan {
                origin: at(w.span().start, "gateway.workers"),
                raw: w.get_ref().raw(),
            }),
        shutdown_timeout: setting(
            gateway.and_then(|g| g.shutdown_timeout.as_ref()),
            "gateway.shutdown_timeout",
            DEFAULT_SHUTDOWN_TIMEOUT,
        ),
        admin: config
            .admin
            .as_ref()
            .map(|a| setting(Some(&a.get_ref().bind), "admin.bind", "")),
        listeners,
        upstreams,
        routes,
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
