//! The lowered gateway: names resolved to indices, patterns canonical, defaults filled
//! in. Built only from a configuration that passed `check`, so nothing here can fail
//! and nothing carries a span; `origin` strings keep the location for start-up errors.

use gateway_runtime::message::methods::MethodSet;
use gateway_runtime::policy::headers::{self, TemplatePart};
use gateway_runtime::policy::ip::Cidr;
use gateway_runtime::settings::{
    SettingKind, has_references, parse_duration, parse_size, parse_template,
};
use toml::Spanned;

use crate::chain::{self, Source};
use crate::check::aggregate::{self, PathStep, TemplateValue, parse_field_path};
use crate::check::limits::{KeySource, Scope};
use crate::check::listeners::listeners_in;
use crate::check::policies::{entries, template_params};
use crate::check::routes::listener_mask;
use crate::diagnostic::Diagnostics;
use crate::pattern::{self, RewritePart};
use gateway_runtime::observe::series::{DEFAULT_BUCKETS, Shape};

use crate::syntax::{
    AggregateCall, BodyRules, ClientAuthMode, Config, FieldRules, HeaderOps, JwtPolicy, LogFormat,
    PathParameters, Policy, RequestIdMode, TlsVersion, Underscores,
};

/// Defaults where gateway.toml is silent, chosen to match common practice: Envoy's 5 s
/// connect timeout, nginx-like minute-scale read timeouts, hyper's 90 s pool idle time.
const DEFAULT_SHUTDOWN_TIMEOUT: &str = "30s";
const DEFAULT_HEADER_READ_TIMEOUT: &str = "30s";
const DEFAULT_CONNECT_TIMEOUT: &str = "5s";
const DEFAULT_RESPONSE_TIMEOUT: &str = "30s";
const DEFAULT_POOL_IDLE_TIMEOUT: &str = "90s";
/// nginx's `client_body_timeout`, `send_timeout`, `proxy_read_timeout` and
/// `proxy_send_timeout`.
const DEFAULT_BODY_TIMEOUT: &str = "60s";
/// nginx's `http2_max_concurrent_streams` is 128, Envoy's 100 for new listeners.
const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 100;
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
    pub admin: Option<AdminPlan>,
    pub access_log: AccessLogPlan,
    pub tracing: Option<TracingPlan>,
    pub request_id: Option<RequestIdMode>,
    pub listeners: Vec<ListenerPlan>,
    pub upstreams: Vec<UpstreamPlan>,
    pub policies: Vec<PolicyPlan>,
    pub consumers: Vec<ConsumerPlan>,
    pub routes: Vec<RoutePlan>,
    /// The rate and concurrency limits' state: one set per limit and scope.
    pub limit_buckets: Vec<LimitBucket>,
    /// Every setting the file gives a value, with its kind, for the start-up check.
    pub settings: Vec<(SettingPlan, SettingKind)>,
}

impl Plan {
    /// What bounds the number of metric series.
    pub fn metrics_shape(&self) -> Shape {
        Shape {
            routes: self.routes.len(),
            upstreams: self.upstreams.len(),
            targets: self.upstreams.iter().map(|u| u.targets.len()).sum(),
            listeners: self.listeners.len(),
            tls_listeners: self.listeners.iter().filter(|l| l.tls.is_some()).count(),
            certificates: self
                .listeners
                .iter()
                .filter_map(|l| l.tls.as_ref())
                .map(|tls| usize::from(tls.default_certificate.is_some()) + tls.sni.len())
                .sum(),
            tracing: self.tracing.is_some(),
            bounds: self
                .admin
                .as_ref()
                .and_then(|admin| admin.buckets.as_ref())
                .map_or(DEFAULT_BUCKETS.len(), Vec::len),
        }
    }
}

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminPlan {
    pub bind: SettingPlan,
    /// An address other than loopback is allowed.
    pub expose: bool,
    /// In nanoseconds; `None`: the runtime's default bounds.
    pub buckets: Option<Vec<u64>>,
}

/// Where the admin listener binds unless told: this host only.
pub const DEFAULT_ADMIN_BIND: &str = "127.0.0.1:9901";

/// `[access_log]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogPlan {
    pub format: LogFormat,
    /// `None`: stderr.
    pub path: Option<SettingPlan>,
}

/// `[tracing]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracingPlan {
    pub endpoint: SettingPlan,
    /// The share of new traces sampled, 0 to 1.
    pub sample_ratio: SettingPlan,
    /// `None`: the gateway's name.
    pub service_name: Option<String>,
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
    pub body_timeout: SettingPlan,
    pub send_timeout: SettingPlan,
    /// `None`: no limit.
    pub max_body: Option<SettingPlan>,
    pub max_header_size: SettingPlan,
    pub max_headers: usize,
    pub max_concurrent_streams: u32,
    pub underscores: Underscores,
    pub path_parameters: PathParameters,
    /// The listener's IP rules decided from the peer address, once per connection;
    /// a rule's position is its bit in the connection's `Admission`.
    pub connection_policies: Vec<ConnectionPolicy>,
    pub tls: Option<ListenerTlsPlan>,
    pub https_redirect: Option<u16>,
}

/// Certificates are warned of this many days before they expire, by default: Let's
/// Encrypt renews at 30 days left.
const DEFAULT_EXPIRY_WARNING_DAYS: u32 = 30;

/// A listener's TLS termination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTlsPlan {
    pub default_certificate: Option<CertificatePlan>,
    /// Lower-case names, and their certificate.
    pub sni: Vec<(Vec<String>, CertificatePlan)>,
    pub min_version: TlsVersion,
    pub client_auth: Option<ClientAuthPlan>,
    pub hsts: Option<String>,
    pub expiry_warning_days: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificatePlan {
    pub cert: SettingPlan,
    pub key: SettingPlan,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuthPlan {
    pub ca: SettingPlan,
    pub required: bool,
    /// Lower-case field names.
    pub subject_header: Option<String>,
    pub san_header: Option<String>,
    pub fingerprint_header: Option<String>,
}

/// An upstream's TLS origination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTlsPlan {
    pub ca: Option<SettingPlan>,
    pub client_certificate: Option<CertificatePlan>,
    pub server_name: Option<String>,
}

/// An IP rule of the connection phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionPolicy {
    pub policy: usize,
    /// Every route on the listener runs it, so a refused connection gets its refusal
    /// for every request, before routing.
    pub refuses_connection: bool,
}

/// A `[policies.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyPlan {
    pub name: String,
    /// Where it is written, `FILE:LINE` (an included file's own name and line).
    pub place: String,
    pub kind: PolicyKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyKind {
    /// Names a verified client certificate must have one of; empty: any.
    ClientCert {
        san: Vec<String>,
    },
    Ip {
        allow: Vec<Cidr>,
        deny: Vec<Cidr>,
        trusted_proxies: Vec<Cidr>,
    },
    Headers(HeadersPlan),
    Jwt(Box<JwtPlan>),
    ApiKey {
        source: SourcePlan,
    },
    Authorize(AuthorizePlan),
    /// Authentication policies by index, tried in order.
    AnyOf(Vec<usize>),
    ExtAuthz(ExtAuthzPlan),
    Introspection(Box<IntrospectionPlan>),
    RateLimit(Box<RateLimitPlan>),
    Quota(Box<QuotaPlan>),
    Concurrency(ConcurrencyPlan),
}

/// A quota: `limit` requests per key per day or month, counted in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaPlan {
    pub limit: u64,
    pub month: bool,
    /// A calendar window's time zone; `None`: rolling.
    pub time_zone: Option<String>,
    pub key: KeySource,
    pub scope: Scope,
    pub trusted_proxies: Vec<Cidr>,
    pub store: RedisStorePlan,
}

/// A concurrency limit; the queue's timeout in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConcurrencyPlan {
    pub max: usize,
    pub queue: usize,
    pub queue_timeout: u64,
    pub scope: Scope,
}

impl LimitBucket {
    /// The scope's name in a store that outlives the process (a Redis key's
    /// prefix): the same in every gateway built from one configuration.
    pub fn key(&self, plan: &Plan) -> String {
        let policy = &plan.policies[self.policy].name;
        match &self.scope {
            Scope::Route => format!("{policy}:route:{}", plan.routes[self.routes[0]].path),
            Scope::Global => format!("{policy}:global"),
            Scope::Group(group) => format!("group:{group}"),
        }
    }

    /// Which routes count in these buckets, in words: for `gateway routes` and the
    /// generated code's docs.
    pub fn describe(&self, plan: &Plan) -> String {
        let routes: Vec<&str> = self
            .routes
            .iter()
            .map(|&r| plan.routes[r].path.as_str())
            .collect();
        let routes = routes.join("`, `");
        match &self.scope {
            Scope::Route => format!("for route `{routes}` alone"),
            Scope::Global => format!("shared by routes `{routes}`"),
            Scope::Group(group) => format!("group `{group}`, shared by routes `{routes}`"),
        }
    }
}

/// A rate limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitPlan {
    pub count: u64,
    pub period_seconds: u64,
    pub burst: u64,
    pub key: KeySource,
    pub scope: Scope,
    pub max_keys: usize,
    pub headers: bool,
    pub trusted_proxies: Vec<Cidr>,
    /// `None`: the buckets live in the process.
    pub store: Option<RedisStorePlan>,
}

/// A Redis that every gateway of a fleet shares; the timeout in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisStorePlan {
    pub url: SettingPlan,
    pub cluster: bool,
    pub timeout: u64,
    pub fail_open: bool,
    /// Tokens leased at once; 1: every check goes to Redis.
    pub batch: u64,
}

/// One set of rate-limit buckets: a limit in one scope, and the routes that share it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitBucket {
    /// The limit whose settings the buckets use (a group's first).
    pub policy: usize,
    pub scope: Scope,
    /// Indexes of the routes that count in these buckets.
    pub routes: Vec<usize>,
}

/// Token introspection; durations in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntrospectionPlan {
    pub upstream: usize,
    pub path: String,
    pub client_id: SettingPlan,
    pub client_secret: SettingPlan,
    pub timeout: u64,
    pub cache_ttl: u64,
    pub negative_ttl: u64,
    pub cache_size: usize,
    pub forward_token: bool,
    pub forward_claims: Vec<(String, String)>,
}

/// An authorization service asked about each request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtAuthzPlan {
    pub upstream: usize,
    pub path: String,
    /// Lower-case field names.
    pub request_headers: Vec<String>,
    pub response_headers: Vec<String>,
    pub timeout_ms: u64,
    pub fail_open: bool,
}

impl PolicyKind {
    /// The name gateway.toml gives the kind.
    pub fn name(&self) -> &'static str {
        match self {
            PolicyKind::Ip { .. } => "ip",
            PolicyKind::ClientCert { .. } => "client_cert",
            PolicyKind::Headers(_) => "headers",
            PolicyKind::Jwt(_) => "jwt",
            PolicyKind::ApiKey { .. } => "api_key",
            PolicyKind::Authorize(_) => "authorize",
            PolicyKind::AnyOf(_) => "any",
            PolicyKind::ExtAuthz(_) => "ext_authz",
            PolicyKind::RateLimit(_) => "rate_limit",
            PolicyKind::Quota(_) => "quota",
            PolicyKind::Concurrency(_) => "concurrency",
            PolicyKind::Introspection(_) => "introspection",
        }
    }
}

/// A JWT policy, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtPlan {
    pub key: JwtKeyPlan,
    pub algorithms: Vec<String>,
    pub issuer: Option<String>,
    pub audiences: Vec<String>,
    pub leeway_seconds: u64,
    pub required_claims: Vec<String>,
    pub source: SourcePlan,
    pub max_token_size: u64,
    pub forward_token: bool,
    /// Claim path and lower-case field name, in the order written.
    pub forward_claims: Vec<(String, String)>,
    /// Top-level claim names the configuration reads from this policy's tokens:
    /// the only claims a verified token keeps.
    pub claims_read: Vec<String>,
    pub cache_size: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtKeyPlan {
    Secret(SettingPlan),
    PublicKey(SettingPlan),
    Jwks(JwksPlan),
}

/// A provider's key set; durations in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksPlan {
    pub url: SettingPlan,
    pub ca: Option<SettingPlan>,
    pub refresh: u64,
    pub min_refresh: u64,
    pub max_refresh: u64,
    pub unknown_kid_refetch: u64,
    pub timeout: u64,
    pub start_degraded: bool,
}

/// Where a credential is read; names lower case where they are field names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourcePlan {
    Bearer,
    Header(String),
    Cookie(String),
    Query(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizePlan {
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    pub roles_claim: String,
    /// Claim path and the values one of which it must equal or hold.
    pub claims: Vec<(String, Vec<String>)>,
    pub groups: Vec<String>,
}

/// A `[consumers.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerPlan {
    pub name: String,
    pub keys: Vec<SettingPlan>,
    pub groups: Vec<String>,
}

/// Header rules, each side's operations in the order they apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadersPlan {
    pub request: Vec<HeaderOpPlan>,
    pub response: Vec<HeaderOpPlan>,
    /// The route parameters the values read, by name; a value's `Param(i)` is the
    /// `i`-th, and each route passes where it captures them.
    pub params: Vec<String>,
}

impl HeadersPlan {
    /// Whether every value is known at build time (no request values, no `${…}`
    /// references): the rules then compile to direct operations on the fields.
    pub fn is_static(&self) -> bool {
        self.request
            .iter()
            .chain(&self.response)
            .all(|op| match op {
                HeaderOpPlan::Remove(_) | HeaderOpPlan::Rename { .. } => true,
                HeaderOpPlan::Set { value, .. } | HeaderOpPlan::Add { value, .. } => {
                    value.iter().all(|part| match part {
                        ValuePlan::Text(text) => {
                            parse_template(&text.raw).is_ok_and(|parts| !has_references(&parts))
                        }
                        _ => false,
                    })
                }
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderOpPlan {
    Remove(String),
    Rename { from: String, to: String },
    Set { name: String, value: Vec<ValuePlan> },
    Add { name: String, value: Vec<ValuePlan> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValuePlan {
    Text(SettingPlan),
    /// Index into `HeadersPlan::params`.
    Param(usize),
    ClientIp,
    Header(String),
}

/// A route's policies on some of its listeners, in phase order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// The listeners (bit `i`: listener `i`) where the route runs this chain.
    pub listeners: u64,
    pub steps: Vec<Step>,
}

/// One step of the request phase; header policies also have a response step, run
/// in reverse order after the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The connection phase's verdict of the listener's IP rule at `bit`.
    Admission {
        policy: usize,
        bit: u32,
    },
    Ip {
        policy: usize,
    },
    ClientCert {
        policy: usize,
    },
    /// `params[i]` is the route's index of the policy's `i`-th parameter.
    Headers {
        policy: usize,
        params: Vec<usize>,
    },
    /// Authentication: a JWT or an API key.
    Authenticate {
        policy: usize,
    },
    Authorize {
        policy: usize,
    },
    ExtAuthz {
        policy: usize,
    },
    /// A rate limit or a quota. `bucket` indexes `Plan::limit_buckets`; `param` is
    /// the route's index of a `param.NAME` key's parameter.
    RateLimit {
        policy: usize,
        bucket: usize,
        param: Option<usize>,
    },
    /// `bucket` indexes `Plan::limit_buckets`.
    Concurrency {
        policy: usize,
        bucket: usize,
    },
}

impl Step {
    pub fn policy(&self) -> usize {
        match self {
            Step::Admission { policy, .. }
            | Step::Ip { policy }
            | Step::ClientCert { policy }
            | Step::Headers { policy, .. }
            | Step::Authenticate { policy }
            | Step::Authorize { policy }
            | Step::ExtAuthz { policy }
            | Step::RateLimit { policy, .. }
            | Step::Concurrency { policy, .. } => *policy,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamPlan {
    pub name: String,
    /// Where it is written, `FILE:LINE`.
    pub place: String,
    pub targets: Vec<SettingPlan>,
    pub connect_timeout: SettingPlan,
    pub response_timeout: SettingPlan,
    pub idle_timeout: SettingPlan,
    pub body_timeout: SettingPlan,
    pub tls: Option<UpstreamTlsPlan>,
    /// Requests in flight to the upstream from every route, when limited.
    pub concurrency: Option<ConcurrencyPlan>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePlan {
    /// Shown in logs.
    pub name: String,
    /// Where it is written, `FILE:LINE`.
    pub place: String,
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
    /// One chain per distinct set of policies among the route's listeners.
    pub chains: Vec<Chain>,
    /// The route's request body limit, when it sets one below the listener's.
    pub max_body: Option<u64>,
    /// Field rules on the client's JSON body.
    pub request_body: Option<BodyPlan>,
    /// Field rules on the JSON response.
    pub response_body: Option<BodyPlan>,
}

/// What a route does with a matched request: the target phase. Code that needs to
/// know what a target does asks it through these methods; only the code generator's
/// target phase matches on the kinds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Upstream {
        upstream: usize,
        path: PathChange,
    },
    /// Several backend calls, one merged JSON response.
    Aggregate(Box<AggregatePlan>),
}

impl Target {
    /// The upstream the route forwards to.
    pub fn upstream(&self) -> Option<usize> {
        match self {
            Target::Upstream { upstream, .. } => Some(*upstream),
            Target::Aggregate(_) => None,
        }
    }

    /// How the path sent upstream derives from the request's.
    pub fn path_change(&self) -> Option<&PathChange> {
        match self {
            Target::Upstream { path, .. } => Some(path),
            Target::Aggregate(_) => None,
        }
    }

    /// What the access log and `gateway routes` call the target.
    pub fn name<'p>(&self, plan: &'p Plan) -> &'p str {
        match self {
            Target::Upstream { upstream, .. } => &plan.upstreams[*upstream].name,
            Target::Aggregate(_) => "aggregate",
        }
    }
}

/// An aggregate route's calls, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregatePlan {
    /// `merge = "flat"`.
    pub flat: bool,
    pub calls: Vec<CallPlan>,
    /// The calls (indexes) each stage makes at once; a stage's calls depend only on
    /// earlier stages'.
    pub stages: Vec<Vec<usize>>,
}

/// One backend call; the timeout in milliseconds, the body bound in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallPlan {
    pub key: String,
    pub upstream: usize,
    pub method: String,
    pub path: Vec<CallPiece>,
    /// A JSON body.
    pub body: Option<Vec<CallPiece>>,
    /// The calls whose answers this one uses, in the order of its slots.
    pub needs: Vec<usize>,
    /// Request fields passed on (lower case), besides the identity fields.
    pub headers: Vec<String>,
    pub timeout: u64,
    pub max_body: u64,
    pub required: bool,
    /// The fallback as JSON text.
    pub fallback: String,
    pub rules: RulesPlan,
}

/// Field rules, paths parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RulesPlan {
    pub fields: Vec<Vec<PathStep>>,
    pub deny: Vec<Vec<PathStep>>,
    pub target: Vec<PathStep>,
    /// In the order written.
    pub rename: Vec<(Vec<PathStep>, String)>,
    pub flatten: bool,
    pub group: Option<String>,
}

/// A route's rules on one direction's body; the bound in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyPlan {
    pub rules: RulesPlan,
    pub max_body: u64,
}

/// Checked field rules, lowered.
fn rules_plan(rules: FieldRules<'_>) -> RulesPlan {
    let paths = |list: &Option<toml::Spanned<Vec<toml::Spanned<String>>>>| -> Vec<Vec<PathStep>> {
        list.iter()
            .flat_map(|l| l.get_ref())
            .filter_map(|p| parse_field_path(p.get_ref()).ok())
            .collect()
    };
    RulesPlan {
        fields: paths(rules.fields),
        deny: paths(rules.deny),
        target: rules
            .target
            .as_ref()
            .and_then(|t| parse_field_path(t.get_ref()).ok())
            .unwrap_or_default(),
        rename: {
            let mut renames: Vec<_> = rules.rename.iter().flat_map(|r| r.get_ref()).collect();
            renames.sort_by_key(|(from, _)| from.span().start);
            renames
                .into_iter()
                .filter_map(|(from, to)| {
                    Some((parse_field_path(from.get_ref()).ok()?, to.get_ref().clone()))
                })
                .collect()
        },
        flatten: rules.flatten.as_ref().is_some_and(|f| *f.get_ref()),
        group: rules.group.as_ref().map(|g| g.get_ref().clone()),
    }
}

/// The longest body a body rule reads by default.
const DEFAULT_BODY_RULE_MAX_BODY: u64 = 1 << 20;

fn body_plan(rules: &Option<toml::Spanned<BodyRules>>) -> Option<BodyPlan> {
    let rules = rules.as_ref()?.get_ref();
    Some(BodyPlan {
        rules: rules_plan(rules.rules()),
        max_body: rules
            .max_body
            .as_ref()
            .and_then(|size| parse_size(size.get_ref()).ok())
            .unwrap_or(DEFAULT_BODY_RULE_MAX_BODY),
    })
}

/// How long a call waits for its whole answer by default.
const DEFAULT_CALL_TIMEOUT: &str = "3s";
/// The longest answer a call reads by default.
const DEFAULT_CALL_MAX_BODY: u64 = 1 << 20;

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

/// A checked rewrite template as segments: literal text and the route's parameters
/// (in the path or after `?`).
fn template(text: &str, pattern: &pattern::Pattern) -> Vec<RewriteSegment> {
    let mut in_query = false;
    pattern::parse_rewrite(text)
        .unwrap_or_default()
        .into_iter()
        .map(|part| match part {
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
        .collect()
}

/// One piece of a call's template (see the runtime's `aggregate::template`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallPiece {
    Text(String),
    /// A value as text.
    Value(CallValue),
    /// An answer's value as JSON.
    Json(CallValue),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallValue {
    /// The route's parameter at this position.
    Param(usize),
    Query(String),
    /// The value at `path` of call `call`'s answer; `text` as written.
    Answer {
        call: usize,
        path: Vec<PathStep>,
        text: String,
    },
}

/// A checked template's pieces.
fn call_template(
    text: &str,
    pattern: &pattern::Pattern,
    calls: &[&AggregateCall],
) -> Vec<CallPiece> {
    pattern::parse_rewrite(text)
        .unwrap_or_default()
        .into_iter()
        .map(|part| match part {
            RewritePart::Literal(text) => CallPiece::Text(text),
            RewritePart::Param { name, .. } => CallPiece::Value(call_value(&name, pattern, calls)),
        })
        .collect()
}

fn call_value(name: &str, pattern: &pattern::Pattern, calls: &[&AggregateCall]) -> CallValue {
    match aggregate::template_value(name, &pattern.params, calls) {
        Some(TemplateValue::Query(query)) => CallValue::Query(query),
        Some(TemplateValue::Answer { call, path }) => CallValue::Answer {
            call,
            path,
            text: name.to_owned(),
        },
        Some(TemplateValue::Param(param)) => {
            CallValue::Param(pattern.param_index(&param).unwrap_or(0))
        }
        None => unreachable!("checked: `{{{name}}}` is a value of the route"),
    }
}

/// A body as JSON text with holes: a string that is one answer reference is that
/// value as JSON; other strings are templates whose values are escaped into them.
fn call_body(
    value: &toml::Value,
    pattern: &pattern::Pattern,
    calls: &[&AggregateCall],
) -> Vec<CallPiece> {
    fn text(out: &mut Vec<CallPiece>, more: &str) {
        match out.last_mut() {
            Some(CallPiece::Text(text)) => text.push_str(more),
            _ => out.push(CallPiece::Text(more.to_owned())),
        }
    }
    fn walk(
        value: &toml::Value,
        pattern: &pattern::Pattern,
        calls: &[&AggregateCall],
        out: &mut Vec<CallPiece>,
    ) {
        match value {
            toml::Value::String(template) => {
                let parts = pattern::parse_rewrite(template).unwrap_or_default();
                if let [RewritePart::Param { name, .. }] = parts.as_slice()
                    && let value @ CallValue::Answer { .. } = call_value(name, pattern, calls)
                {
                    return out.push(CallPiece::Json(value));
                }
                text(out, "\"");
                for part in parts {
                    match part {
                        RewritePart::Literal(literal) => {
                            let quoted = serde_json::Value::String(literal).to_string();
                            text(out, &quoted[1..quoted.len() - 1]);
                        }
                        RewritePart::Param { name, .. } => {
                            out.push(CallPiece::Value(call_value(&name, pattern, calls)))
                        }
                    }
                }
                text(out, "\"");
            }
            toml::Value::Array(items) => {
                text(out, "[");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        text(out, ",");
                    }
                    walk(item, pattern, calls, out);
                }
                text(out, "]");
            }
            toml::Value::Table(table) => {
                text(out, "{");
                for (i, (key, item)) in table.iter().enumerate() {
                    if i > 0 {
                        text(out, ",");
                    }
                    text(out, &format!("{}:", serde_json::Value::String(key.clone())));
                    walk(item, pattern, calls, out);
                }
                text(out, "}");
            }
            other => text(out, &json_of(other).to_string()),
        }
    }
    let mut out = Vec::new();
    walk(value, pattern, calls, &mut out);
    out
}

fn call_plan(
    call: &AggregateCall,
    pattern: &pattern::Pattern,
    calls: &[&AggregateCall],
    config: &Config,
) -> CallPlan {
    let path = call_template(call.path.get_ref(), pattern, calls);
    let body = call
        .body
        .as_ref()
        .map(|b| call_body(b.get_ref(), pattern, calls));
    let mut needs: Vec<usize> = path
        .iter()
        .chain(body.iter().flatten())
        .filter_map(|piece| match piece {
            CallPiece::Value(CallValue::Answer { call, .. })
            | CallPiece::Json(CallValue::Answer { call, .. }) => Some(*call),
            _ => None,
        })
        .collect();
    needs.sort_unstable();
    needs.dedup();
    CallPlan {
        key: call.key.get_ref().clone(),
        upstream: config
            .upstreams
            .iter()
            .position(|(n, _)| n.get_ref() == call.upstream.get_ref())
            .unwrap_or_else(|| unreachable!("checked: the upstream exists")),
        method: call.method.as_ref().map_or_else(
            || if call.body.is_some() { "POST" } else { "GET" }.to_owned(),
            |m| m.get_ref().clone(),
        ),
        path,
        body,
        needs,
        headers: call
            .headers
            .iter()
            .flat_map(|h| h.get_ref())
            .map(|h| h.get_ref().to_ascii_lowercase())
            .collect(),
        timeout: millis(&call.timeout, DEFAULT_CALL_TIMEOUT),
        max_body: call
            .max_body
            .as_ref()
            .and_then(|size| parse_size(size.get_ref()).ok())
            .unwrap_or(DEFAULT_CALL_MAX_BODY),
        required: call.required.as_ref().is_none_or(|r| *r.get_ref()),
        fallback: call
            .fallback
            .as_ref()
            .map_or("null".to_owned(), |f| json_of(f.get_ref()).to_string()),
        rules: rules_plan(call.rules()),
    }
}

/// A TOML value as JSON: a date or time becomes its text.
fn json_of(value: &toml::Value) -> serde_json::Value {
    use serde_json::Value as Json;
    match value {
        toml::Value::String(s) => Json::String(s.clone()),
        toml::Value::Integer(i) => Json::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        toml::Value::Boolean(b) => Json::Bool(*b),
        toml::Value::Datetime(d) => Json::String(d.to_string()),
        toml::Value::Array(items) => Json::Array(items.iter().map(json_of).collect()),
        toml::Value::Table(table) => {
            Json::Object(table.iter().map(|(k, v)| (k.clone(), json_of(v))).collect())
        }
    }
}

/// Lowers a checked configuration.
pub fn lower(config: &Config, source: &str, diagnostics: &Diagnostics) -> Plan {
    let at = |offset: usize, key: &str| {
        let (file, line, col) = diagnostics.locate(offset);
        format!("{file}:{line}:{col} ({key})")
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
    let listeners = config
        .listeners
        .iter()
        .enumerate()
        .map(|(index, (name, l))| {
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
                body_timeout: setting(
                    l.timeouts.body.as_ref(),
                    &format!("listeners.{name}.timeouts.body"),
                    DEFAULT_BODY_TIMEOUT,
                ),
                send_timeout: setting(
                    l.timeouts.send.as_ref(),
                    &format!("listeners.{name}.timeouts.send"),
                    DEFAULT_BODY_TIMEOUT,
                ),
                max_body: l
                    .limits
                    .max_body
                    .as_ref()
                    .map(|v| setting(Some(v), &format!("listeners.{name}.limits.max_body"), "")),
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
                max_concurrent_streams: l
                    .limits
                    .max_concurrent_streams
                    .as_ref()
                    .map_or(DEFAULT_MAX_CONCURRENT_STREAMS, |n| *n.get_ref() as u32),
                underscores: l
                    .headers_with_underscores
                    .as_ref()
                    .map_or(Underscores::Drop, |u| *u.get_ref()),
                path_parameters: l
                    .path_parameters
                    .as_ref()
                    .map_or(PathParameters::Reject, |p| *p.get_ref()),
                connection_policies: connection_policies(config, index),
                tls: l.tls.as_ref().map(|tls| {
                    let tls = tls.get_ref();
                    let key = format!("listeners.{name}.tls");
                    let certificate = |cert, key_setting, at: &str| CertificatePlan {
                        cert: setting(Some(cert), &format!("{key}{at}.cert"), ""),
                        key: setting(Some(key_setting), &format!("{key}{at}.key"), ""),
                    };
                    ListenerTlsPlan {
                        default_certificate: match (&tls.cert, &tls.key) {
                            (Some(cert), Some(k)) => Some(certificate(cert, k, "")),
                            _ => None,
                        },
                        sni: tls
                            .sni
                            .iter()
                            .enumerate()
                            .map(|(i, entry)| {
                                let entry = entry.get_ref();
                                let names = entry
                                    .names
                                    .get_ref()
                                    .iter()
                                    .map(|n| n.get_ref().to_ascii_lowercase())
                                    .collect();
                                (
                                    names,
                                    certificate(&entry.cert, &entry.key, &format!(".sni[{i}]")),
                                )
                            })
                            .collect(),
                        min_version: tls
                            .min_version
                            .as_ref()
                            .map_or(TlsVersion::Tls12, |v| *v.get_ref()),
                        client_auth: tls.client_auth.as_ref().map(|auth| {
                            let auth = auth.get_ref();
                            let header = |h: &Option<toml::Spanned<String>>| {
                                h.as_ref().map(|h| h.get_ref().to_ascii_lowercase())
                            };
                            ClientAuthPlan {
                                ca: setting(Some(&auth.ca), &format!("{key}.client_auth.ca"), ""),
                                required: auth
                                    .mode
                                    .as_ref()
                                    .is_none_or(|m| *m.get_ref() == ClientAuthMode::Required),
                                subject_header: header(&auth.subject_header),
                                san_header: header(&auth.san_header),
                                fingerprint_header: header(&auth.fingerprint_header),
                            }
                        }),
                        hsts: tls.hsts.as_ref().map(|h| h.get_ref().clone()),
                        expiry_warning_days: tls
                            .expiry_warning_days
                            .as_ref()
                            .map_or(DEFAULT_EXPIRY_WARNING_DAYS, |d| *d.get_ref() as u32),
                    }
                }),
                https_redirect: l.https_redirect.as_ref().map(|p| *p.get_ref() as u16),
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
                place: diagnostics.place(name.span().start),
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
                body_timeout: timeout(u.timeouts.body.as_ref(), "body", DEFAULT_BODY_TIMEOUT),
                concurrency: u
                    .concurrency
                    .as_ref()
                    .map(|limit| concurrency_plan(limit.get_ref())),
                tls: u.tls.as_ref().map(|tls| {
                    let tls = tls.get_ref();
                    UpstreamTlsPlan {
                        ca: tls
                            .ca
                            .as_ref()
                            .map(|ca| setting(Some(ca), &format!("{key}.tls.ca"), "")),
                        client_certificate: match (&tls.cert, &tls.key) {
                            (Some(cert), Some(k)) => Some(CertificatePlan {
                                cert: setting(Some(cert), &format!("{key}.tls.cert"), ""),
                                key: setting(Some(k), &format!("{key}.tls.key"), ""),
                            }),
                            _ => None,
                        },
                        server_name: tls
                            .server_name
                            .as_ref()
                            .map(|n| n.get_ref().to_ascii_lowercase()),
                    }
                }),
            }
        })
        .collect();
    let mut routes: Vec<RoutePlan> = config
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
            let upstream = || {
                config
                    .upstreams
                    .iter()
                    .position(|(n, _)| n.get_ref() == upstream_name)
                    .unwrap_or_else(|| unreachable!("checked: upstream `{upstream_name}` exists"))
            };
            let target_path = if let Some(prefix) = &route.strip_prefix {
                PathChange::StripPrefix(prefix.get_ref().clone())
            } else if let Some(rewrite) = &route.rewrite {
                PathChange::Rewrite(template(rewrite.get_ref(), &pattern))
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
                place: diagnostics.place(route.path.span().start),
                host: route
                    .host
                    .as_ref()
                    .map(|h| h.get_ref().to_ascii_lowercase()),
                path: route.path.get_ref().clone(),
                canonical_path: pattern.canonical.clone(),
                methods,
                listeners: listener_mask(config, route),
                target: match &route.aggregate {
                    Some(calls) => {
                        let all: Vec<&AggregateCall> =
                            calls.get_ref().iter().map(|c| c.get_ref()).collect();
                        let calls: Vec<CallPlan> = all
                            .iter()
                            .map(|call| call_plan(call, &pattern, &all, config))
                            .collect();
                        let needs: Vec<Vec<usize>> =
                            calls.iter().map(|c| c.needs.clone()).collect();
                        Target::Aggregate(Box::new(AggregatePlan {
                            flat: route.merge.as_ref().is_some_and(|m| m.get_ref() == "flat"),
                            stages: aggregate::stages(&needs),
                            calls,
                        }))
                    }
                    None => Target::Upstream {
                        upstream: upstream(),
                        path: target_path,
                    },
                },
                chains: chains(config, route, &pattern.params),
                max_body: route
                    .max_body
                    .as_ref()
                    .and_then(|size| parse_size(size.get_ref()).ok()),
                request_body: body_plan(&route.request_body),
                response_body: body_plan(&route.response_body),
            }
        })
        .collect();
    let mut policies: Vec<PolicyPlan> = config
        .policies
        .iter()
        .map(|(name, policy)| PolicyPlan {
            name: name.get_ref().clone(),
            place: diagnostics.place(name.span().start),
            kind: match &policy.get_ref().any {
                Some(members) => PolicyKind::AnyOf(
                    members
                        .get_ref()
                        .iter()
                        .filter_map(|m| config.policy(m.get_ref()).map(|(i, _)| i))
                        .collect(),
                ),
                None => policy_kind(
                    name.get_ref(),
                    policy.get_ref(),
                    &at,
                    &config.upstream_names(),
                ),
            },
        })
        .collect();
    keep_authorized_claims(&mut policies);
    let limit_buckets = assign_limit_buckets(&mut routes, &policies);
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
        admin: config.admin.as_ref().map(|a| AdminPlan {
            bind: setting(a.get_ref().bind.as_ref(), "admin.bind", DEFAULT_ADMIN_BIND),
            expose: a.get_ref().expose.as_ref().is_some_and(|e| *e.get_ref()),
            buckets: a.get_ref().buckets.as_ref().map(|b| {
                // Checked: positive seconds up to an hour.
                b.get_ref()
                    .iter()
                    .map(|s| (s * 1e9).round() as u64)
                    .collect()
            }),
        }),
        access_log: AccessLogPlan {
            format: config
                .access_log
                .as_ref()
                .and_then(|log| log.get_ref().format.as_ref())
                .map_or(LogFormat::Text, |format| *format.get_ref()),
            path: config
                .access_log
                .as_ref()
                .and_then(|log| log.get_ref().path.as_ref())
                .map(|path| setting(Some(path), "access_log.path", "")),
        },
        tracing: config.tracing.as_ref().map(|t| {
            let t = t.get_ref();
            TracingPlan {
                endpoint: setting(Some(&t.endpoint), "tracing.endpoint", ""),
                sample_ratio: match &t.sample_ratio {
                    Some(ratio) => SettingPlan {
                        origin: at(ratio.span().start, "tracing.sample_ratio"),
                        raw: ratio.get_ref().raw(),
                    },
                    None => setting(None, "tracing.sample_ratio", "1"),
                },
                service_name: t.service_name.as_ref().map(|n| n.get_ref().clone()),
            }
        }),
        request_id: gateway
            .and_then(|g| g.request_id.as_ref())
            .map(|mode| *mode.get_ref()),
        listeners,
        upstreams,
        policies,
        consumers: config
            .consumers
            .iter()
            .map(|(name, consumer)| {
                let consumer = consumer.get_ref();
                let key = format!("consumers.{}.keys", name.get_ref());
                ConsumerPlan {
                    name: name.get_ref().clone(),
                    keys: consumer
                        .keys
                        .get_ref()
                        .iter()
                        .map(|k| setting(Some(k), &key, ""))
                        .collect(),
                    groups: strings(&consumer.groups),
                }
            })
            .collect(),
        routes,
        limit_buckets,
        settings: config
            .settings()
            .into_iter()
            .map(|entry| {
                let origin = at(entry.value.span().start, &entry.key);
                let raw = entry.value.into_inner();
                (SettingPlan { origin, raw }, entry.kind)
            })
            .collect(),
    }
}

// === policies ===

/// How long a rate-limit check waits for Redis before its `on_error` mode decides.
const DEFAULT_REDIS_TIMEOUT: &str = "100ms";

/// How long a request waits for a place in a full concurrency limit's queue.
const DEFAULT_QUEUE_TIMEOUT: &str = "1s";

fn concurrency_plan(limit: &crate::syntax::ConcurrencyPolicy) -> ConcurrencyPlan {
    ConcurrencyPlan {
        max: *limit.max.get_ref() as usize,
        queue: limit.queue.as_ref().map_or(0, |q| *q.get_ref() as usize),
        queue_timeout: millis(&limit.queue_timeout, DEFAULT_QUEUE_TIMEOUT),
        scope: limit
            .scope
            .as_ref()
            .and_then(|s| Scope::parse(s.get_ref()).ok())
            .unwrap_or(Scope::Route),
    }
}

/// Buckets each rate limit's in-process store keeps by default: 16 bytes each, so
/// 256 KiB per limit and scope.
const DEFAULT_MAX_KEYS: usize = 16_384;

/// Gives every rate- and concurrency-limit step its bucket set: the route's own
/// (`scope = "route"`), the policy's (`global`), or the group's (`group:NAME`, shared
/// across rate limits).
fn assign_limit_buckets(routes: &mut [RoutePlan], policies: &[PolicyPlan]) -> Vec<LimitBucket> {
    let mut buckets: Vec<LimitBucket> = Vec::new();
    for (index, route) in routes.iter_mut().enumerate() {
        for step in route.chains.iter_mut().flat_map(|c| c.steps.iter_mut()) {
            let (Step::RateLimit { policy, bucket, .. } | Step::Concurrency { policy, bucket }) =
                step
            else {
                continue;
            };
            let scope = match &policies[*policy].kind {
                PolicyKind::RateLimit(limit) => &limit.scope,
                PolicyKind::Quota(quota) => &quota.scope,
                PolicyKind::Concurrency(limit) => &limit.scope,
                _ => continue,
            };
            let shares = |b: &LimitBucket| match scope {
                Scope::Route => b.policy == *policy && b.routes.first() == Some(&index),
                Scope::Global => b.policy == *policy && b.scope == Scope::Global,
                Scope::Group(_) => b.scope == *scope,
            };
            *bucket = match buckets.iter().position(shares) {
                Some(found) => found,
                None => {
                    buckets.push(LimitBucket {
                        policy: *policy,
                        scope: scope.clone(),
                        routes: Vec::new(),
                    });
                    buckets.len() - 1
                }
            };
            if buckets[*bucket].routes.last() != Some(&index) {
                buckets[*bucket].routes.push(index);
            }
        }
    }
    buckets
}

/// Fills each JWT policy's `claims_read`: `sub` (the access log's subject), the claims
/// it forwards and requires, and those any authorization rule or rate-limit key reads
/// (either may follow any authentication policy, so every JWT policy keeps them). A
/// path (`realm_access.roles`) is read as a claim of that exact name or through its
/// first part, so both are kept.
fn keep_authorized_claims(policies: &mut [PolicyPlan]) {
    let mut authorized: Vec<&str> = Vec::new();
    for policy in policies.iter() {
        if let PolicyKind::Authorize(rule) = &policy.kind {
            if !rule.scopes.is_empty() {
                authorized.extend(["scope", "scp"]);
            }
            if !rule.roles.is_empty() {
                authorized.push(&rule.roles_claim);
            }
            authorized.extend(rule.claims.iter().map(|(claim, _)| claim.as_str()));
        }
        if let PolicyKind::RateLimit(limit) = &policy.kind
            && let KeySource::Claim(claim) = &limit.key
        {
            authorized.push(claim);
        }
        if let PolicyKind::Quota(quota) = &policy.kind
            && let KeySource::Claim(claim) = &quota.key
        {
            authorized.push(claim);
        }
    }
    let authorized: Vec<String> = authorized.into_iter().map(str::to_owned).collect();
    for policy in policies.iter_mut() {
        if let PolicyKind::Jwt(jwt) = &mut policy.kind {
            let own = jwt
                .required_claims
                .iter()
                .chain(jwt.forward_claims.iter().map(|(claim, _)| claim));
            let mut read: Vec<String> = vec!["sub".to_owned()];
            for path in own.chain(&authorized) {
                let first = path.split('.').next().unwrap_or(path);
                read.extend([path.clone(), first.to_owned()]);
            }
            read.sort_unstable();
            read.dedup();
            jwt.claims_read = read;
        }
    }
}

/// Whether the IP rule of `policy` is decided from the peer alone.
fn peer_rule(policy: &Policy) -> bool {
    policy.ip.as_ref().is_some_and(|ip| {
        ip.get_ref()
            .trusted_proxies
            .as_ref()
            .is_none_or(|t| t.get_ref().is_empty())
    })
}

/// A listener's connection-phase rules: its own IP rules that read only the peer.
fn connection_policies(config: &Config, listener: usize) -> Vec<ConnectionPolicy> {
    let Some((_, l)) = config.listeners.get(listener) else {
        return Vec::new();
    };
    l.get_ref()
        .policies
        .iter()
        .flat_map(|p| p.get_ref())
        .filter_map(|name| config.policy(name.get_ref()))
        .filter(|(_, p)| peer_rule(p))
        .take(64)
        .map(|(policy, _)| {
            let name = &config.policies[policy].0;
            let refuses_connection = config
                .routes
                .iter()
                .filter(|r| listener_mask(config, r.get_ref()) & (1 << listener) != 0)
                .all(|r| {
                    chain::resolve(config, r.get_ref(), listener)
                        .iter()
                        .any(|a| a.name.get_ref() == name.get_ref())
                });
            ConnectionPolicy {
                policy,
                refuses_connection,
            }
        })
        .collect()
}

/// The route's chains: one per distinct chain among its listeners.
fn chains(
    config: &Config,
    route: &crate::syntax::Route,
    route_params: &[pattern::Param],
) -> Vec<Chain> {
    let mut chains: Vec<Chain> = Vec::new();
    let mask = listener_mask(config, route);
    for listener in listeners_in(mask, config.listeners.len()) {
        let connection = connection_policies(config, listener);
        let steps = chain::resolve(config, route, listener)
            .into_iter()
            .filter_map(|attached| {
                let (policy, p) = config.policy(attached.name.get_ref())?;
                if p.client_cert.is_some() {
                    return Some(Step::ClientCert { policy });
                }
                if p.jwt.is_some()
                    || p.api_key.is_some()
                    || p.any.is_some()
                    || p.introspection.is_some()
                {
                    return Some(Step::Authenticate { policy });
                }
                if p.authorize.is_some() {
                    return Some(Step::Authorize { policy });
                }
                if p.ext_authz.is_some() {
                    return Some(Step::ExtAuthz { policy });
                }
                let limit_key = match (&p.rate_limit, &p.quota) {
                    (Some(limit), _) => Some(&limit.get_ref().key),
                    (None, Some(quota)) => Some(&quota.get_ref().key),
                    (None, None) => None,
                };
                if let Some(key) = limit_key {
                    let param = match key.as_ref().map(|k| KeySource::parse(k.get_ref())) {
                        Some(Ok(KeySource::Param(name))) => {
                            route_params.iter().position(|p| p.name == name)
                        }
                        _ => None,
                    };
                    // The bucket set is assigned once every route is lowered.
                    return Some(Step::RateLimit {
                        policy,
                        bucket: usize::MAX,
                        param,
                    });
                }
                if p.concurrency.is_some() {
                    return Some(Step::Concurrency {
                        policy,
                        bucket: usize::MAX,
                    });
                }
                if p.ip.is_some() {
                    let from_listener = attached.source == Source::Listener(listener);
                    let bit = connection.iter().position(|c| c.policy == policy);
                    return match (from_listener, bit) {
                        (true, Some(bit)) if connection[bit].refuses_connection => None,
                        (true, Some(bit)) => Some(Step::Admission {
                            policy,
                            bit: bit as u32,
                        }),
                        _ => Some(Step::Ip { policy }),
                    };
                }
                let params = policy_params(p)
                    .iter()
                    .map(|name| {
                        route_params
                            .iter()
                            .position(|param| &param.name == name)
                            .unwrap_or_else(|| unreachable!("checked: `{name}` is captured"))
                    })
                    .collect();
                Some(Step::Headers { policy, params })
            })
            .collect::<Vec<_>>();
        match chains.iter_mut().find(|c| c.steps == steps) {
            Some(chain) => chain.listeners |= 1 << listener,
            None => chains.push(Chain {
                listeners: 1 << listener,
                steps,
            }),
        }
    }
    chains
}

/// The distinct route parameters a header policy's values read, in order.
fn policy_params(policy: &Policy) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (_, value) in crate::check::policies::header_values(policy) {
        for name in template_params(value.get_ref()) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

fn policy_kind(
    name: &str,
    policy: &Policy,
    at: &dyn Fn(usize, &str) -> String,
    upstreams: &[&str],
) -> PolicyKind {
    let cidrs = |list: &Option<Spanned<Vec<Spanned<String>>>>| -> Vec<Cidr> {
        list.iter()
            .flat_map(|l| l.get_ref())
            .map(|c| Cidr::parse(c.get_ref()).unwrap_or_else(|e| unreachable!("checked: {e}")))
            .collect()
    };
    if let Some(rule) = &policy.client_cert {
        return PolicyKind::ClientCert {
            san: rule
                .get_ref()
                .san
                .iter()
                .flat_map(|s| s.get_ref())
                .map(|s| s.get_ref().clone())
                .collect(),
        };
    }
    if let Some(jwt) = &policy.jwt {
        return PolicyKind::Jwt(Box::new(jwt_plan(name, jwt.get_ref(), at)));
    }
    if let Some(limit) = &policy.concurrency {
        return PolicyKind::Concurrency(concurrency_plan(limit.get_ref()));
    }
    let parsed = |text: &Option<Spanned<String>>, default: &str| {
        text.as_ref()
            .map_or(default.to_owned(), |t| t.get_ref().clone())
    };
    let store_plan = |store: &Spanned<crate::syntax::LimitStore>, kind: &str| {
        let store = store.get_ref();
        let url = store.redis.as_ref()?;
        Some(RedisStorePlan {
            url: SettingPlan {
                origin: at(
                    url.span().start,
                    &format!("policies.{name}.{kind}.store.redis"),
                ),
                raw: url.get_ref().clone(),
            },
            cluster: store.cluster.as_ref().is_some_and(|c| *c.get_ref()),
            timeout: millis(&store.timeout, DEFAULT_REDIS_TIMEOUT),
            fail_open: store
                .on_error
                .as_ref()
                .is_none_or(|mode| mode.get_ref() == "fail_open"),
            batch: store.batch.as_ref().map_or(1, |b| *b.get_ref() as u64),
        })
    };
    if let Some(limit) = &policy.rate_limit {
        let limit = limit.get_ref();
        let (count, period_seconds) = gateway_runtime::limit::parse_rate(limit.rate.get_ref())
            .unwrap_or_else(|e| unreachable!("checked: {e}"));
        return PolicyKind::RateLimit(Box::new(RateLimitPlan {
            count,
            period_seconds,
            // As governor's quotas: the whole count at once, by default.
            burst: limit.burst.as_ref().map_or(count, |b| *b.get_ref() as u64),
            key: KeySource::parse(&parsed(&limit.key, "client_ip"))
                .unwrap_or_else(|e| unreachable!("checked: {e}")),
            scope: Scope::parse(&parsed(&limit.scope, "route"))
                .unwrap_or_else(|e| unreachable!("checked: {e}")),
            max_keys: limit
                .max_keys
                .as_ref()
                .map_or(DEFAULT_MAX_KEYS, |m| *m.get_ref() as usize),
            headers: limit.headers.as_ref().is_some_and(|h| *h.get_ref()),
            trusted_proxies: cidrs(&limit.trusted_proxies),
            store: limit
                .store
                .as_ref()
                .and_then(|store| store_plan(store, "rate_limit")),
        }));
    }
    if let Some(quota) = &policy.quota {
        let quota = quota.get_ref();
        let rolling = quota
            .window
            .as_ref()
            .is_some_and(|w| w.get_ref() == "rolling");
        return PolicyKind::Quota(Box::new(QuotaPlan {
            limit: *quota.limit.get_ref() as u64,
            month: quota.per.get_ref() == "month",
            time_zone: (!rolling).then(|| {
                quota
                    .time_zone
                    .as_ref()
                    .map_or("UTC".to_owned(), |z| z.get_ref().clone())
            }),
            key: KeySource::parse(&parsed(&quota.key, "consumer"))
                .unwrap_or_else(|e| unreachable!("checked: {e}")),
            scope: Scope::parse(&parsed(&quota.scope, "route"))
                .unwrap_or_else(|e| unreachable!("checked: {e}")),
            trusted_proxies: cidrs(&quota.trusted_proxies),
            store: quota
                .store
                .as_ref()
                .and_then(|store| store_plan(store, "quota"))
                .unwrap_or_else(|| unreachable!("checked: a quota names its Redis")),
        }));
    }
    if let Some(api_key) = &policy.api_key {
        let api_key = api_key.get_ref();
        let source = match (&api_key.header, &api_key.query) {
            (_, Some(query)) => SourcePlan::Query(query.get_ref().clone()),
            (Some(header), None) => SourcePlan::Header(header.get_ref().to_ascii_lowercase()),
            (None, None) => SourcePlan::Header(DEFAULT_API_KEY_HEADER.to_owned()),
        };
        return PolicyKind::ApiKey { source };
    }
    if let Some(introspection) = &policy.introspection {
        let i = introspection.get_ref();
        let key = format!("policies.{name}.introspection");
        let setting_at = |value: &Spanned<String>, which: &str| SettingPlan {
            origin: at(value.span().start, &format!("{key}.{which}")),
            raw: value.get_ref().clone(),
        };
        let mut forward_claims: Vec<(&Spanned<String>, &Spanned<String>)> =
            i.forward_claims.iter().flat_map(|f| f.get_ref()).collect();
        forward_claims.sort_by_key(|(claim, _)| claim.span().start);
        let (Some(id), Some(secret)) = (&i.client_id, &i.client_secret) else {
            unreachable!("checked: introspection has client credentials")
        };
        return PolicyKind::Introspection(Box::new(IntrospectionPlan {
            upstream: upstreams
                .iter()
                .position(|u| u == i.upstream.get_ref())
                .unwrap_or_else(|| unreachable!("checked: the upstream exists")),
            path: i.path.get_ref().clone(),
            client_id: setting_at(id, "client_id"),
            client_secret: setting_at(secret, "client_secret"),
            timeout: millis(&i.timeout, DEFAULT_INTROSPECTION_TIMEOUT),
            cache_ttl: millis(&i.cache_ttl, DEFAULT_INTROSPECTION_TTL),
            negative_ttl: millis(&i.negative_ttl, DEFAULT_INTROSPECTION_NEGATIVE_TTL),
            cache_size: i
                .cache_size
                .as_ref()
                .map_or(DEFAULT_TOKEN_CACHE_SIZE, |n| *n.get_ref() as usize),
            forward_token: i.forward_token.as_ref().is_some_and(|f| *f.get_ref()),
            forward_claims: forward_claims
                .into_iter()
                .map(|(c, h)| (c.get_ref().clone(), h.get_ref().to_ascii_lowercase()))
                .collect(),
        }));
    }
    if let Some(authz) = &policy.ext_authz {
        let authz = authz.get_ref();
        let lower = |list: &Option<Spanned<Vec<Spanned<String>>>>| {
            strings(list)
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .collect()
        };

        return PolicyKind::ExtAuthz(ExtAuthzPlan {
            upstream: upstreams
                .iter()
                .position(|u| u == authz.upstream.get_ref())
                .unwrap_or_else(|| unreachable!("checked: the upstream exists")),
            path: authz.path.get_ref().clone(),
            request_headers: lower(&authz.request_headers),
            response_headers: lower(&authz.response_headers),
            timeout_ms: millis(&authz.timeout, DEFAULT_EXT_AUTHZ_TIMEOUT),
            fail_open: authz.fail_open.as_ref().is_some_and(|f| *f.get_ref()),
        });
    }
    if let Some(rule) = &policy.authorize {
        let rule = rule.get_ref();
        return PolicyKind::Authorize(AuthorizePlan {
            scopes: strings(&rule.scopes),
            roles: strings(&rule.roles),
            roles_claim: rule
                .roles_claim
                .as_ref()
                .map_or_else(|| "roles".to_owned(), |c| c.get_ref().clone()),
            claims: rule
                .claims
                .iter()
                .flat_map(|c| c.get_ref())
                .map(|(claim, values)| (claim.get_ref().clone(), values.get_ref().values()))
                .collect(),
            groups: strings(&rule.groups),
        });
    }
    if let Some(ip) = &policy.ip {
        let ip = ip.get_ref();
        return PolicyKind::Ip {
            allow: cidrs(&ip.allow),
            deny: cidrs(&ip.deny),
            trusted_proxies: cidrs(&ip.trusted_proxies),
        };
    }
    let params = policy_params(policy);
    let ops = |side: &str, ops: &Option<Spanned<HeaderOps>>| -> Vec<HeaderOpPlan> {
        let Some(ops) = ops else { return Vec::new() };
        let ops = ops.get_ref();
        let key = format!("policies.{name}.{side}");
        fn by_position<'s>(
            mut list: Vec<(&'s Spanned<String>, &'s Spanned<String>)>,
        ) -> Vec<(&'s Spanned<String>, &'s Spanned<String>)> {
            list.sort_by_key(|(k, _)| k.span().start);
            list
        }
        let value = |which: &str, header: &Spanned<String>, value: &Spanned<String>| {
            let origin = at(
                value.span().start,
                &format!("{key}.{which}.{}", header.get_ref()),
            );
            headers::parse_value(value.get_ref())
                .unwrap_or_else(|e| unreachable!("checked: {e}"))
                .into_iter()
                .map(|part| match part {
                    TemplatePart::Text(raw) => ValuePlan::Text(SettingPlan {
                        origin: origin.clone(),
                        raw,
                    }),
                    TemplatePart::Param(p) => {
                        ValuePlan::Param(params.iter().position(|n| *n == p).unwrap_or(0))
                    }
                    TemplatePart::ClientIp => ValuePlan::ClientIp,
                    TemplatePart::Header(h) => ValuePlan::Header(h),
                })
                .collect::<Vec<_>>()
        };
        let mut out = Vec::new();
        let mut removes: Vec<&Spanned<String>> =
            ops.remove.iter().flat_map(|r| r.get_ref()).collect();
        removes.sort_by_key(|r| r.span().start);
        out.extend(
            removes
                .into_iter()
                .map(|r| HeaderOpPlan::Remove(r.get_ref().clone())),
        );
        let renames = ops.rename.iter().flat_map(|r| r.get_ref().iter()).collect();
        out.extend(
            by_position(renames)
                .into_iter()
                .map(|(from, to)| HeaderOpPlan::Rename {
                    from: from.get_ref().clone(),
                    to: to.get_ref().clone(),
                }),
        );
        out.extend(
            by_position(entries(&ops.set).collect())
                .into_iter()
                .map(|(n, v)| HeaderOpPlan::Set {
                    name: n.get_ref().clone(),
                    value: value("set", n, v),
                }),
        );
        out.extend(
            by_position(entries(&ops.add).collect())
                .into_iter()
                .map(|(n, v)| HeaderOpPlan::Add {
                    name: n.get_ref().clone(),
                    value: value("add", n, v),
                }),
        );
        out
    };
    PolicyKind::Headers(HeadersPlan {
        request: ops("request_headers", &policy.request_headers),
        response: ops("response_headers", &policy.response_headers),
        params,
    })
}

/// Kong's `key-auth` reads `apikey`; `X-API-Key` is the more common field today.
const DEFAULT_API_KEY_HEADER: &str = "x-api-key";
/// Clock skew allowed by default: Envoy's `clock_skew_seconds` is 60.
const DEFAULT_JWT_LEEWAY: &str = "60s";
/// Larger tokens are refused before decoding; 8 KiB holds any token seen in practice.
const DEFAULT_MAX_TOKEN_SIZE: &str = "8KiB";
/// Verified tokens each worker keeps per policy.
const DEFAULT_TOKEN_CACHE_SIZE: usize = 4096;
/// A key set's lifetime when its answer names none: Envoy's `cache_duration` is 10 min.
const DEFAULT_JWKS_REFRESH: &str = "10m";
/// Bounds on a key set's lifetime, whatever `Cache-Control` says.
const DEFAULT_JWKS_MIN_REFRESH: &str = "30s";
const DEFAULT_JWKS_MAX_REFRESH: &str = "24h";
/// Least time between two fetches woken by tokens naming unknown keys.
const DEFAULT_JWKS_REFETCH: &str = "30s";
const DEFAULT_JWKS_TIMEOUT: &str = "5s";
/// Introspection answers are kept at most this long (Kong's `introspection` plugin
/// caches for its `ttl`, 30 s by default; tokens are seldom revoked faster than this).
const DEFAULT_INTROSPECTION_TTL: &str = "60s";
/// An inactive answer is kept briefly: a retried bad token does not reach the server
/// each time, and a token activated just after is soon seen.
const DEFAULT_INTROSPECTION_NEGATIVE_TTL: &str = "10s";
const DEFAULT_INTROSPECTION_TIMEOUT: &str = "2s";
/// Envoy's `ext_authz` waits 200 ms by default; a service across a network, a second.
const DEFAULT_EXT_AUTHZ_TIMEOUT: &str = "1s";

fn jwt_plan(name: &str, jwt: &JwtPolicy, at: &dyn Fn(usize, &str) -> String) -> JwtPlan {
    let key = format!("policies.{name}.jwt");
    let setting_at = |value: &Spanned<String>, which: &str| SettingPlan {
        origin: at(value.span().start, &format!("{key}.{which}")),
        raw: value.get_ref().clone(),
    };
    let (key_plan, default_algorithm) = match (&jwt.secret, &jwt.key, &jwt.jwks) {
        (Some(secret), _, _) => (JwtKeyPlan::Secret(setting_at(secret, "secret")), "HS256"),
        (None, Some(public), _) => (JwtKeyPlan::PublicKey(setting_at(public, "key")), "RS256"),
        (None, None, Some(jwks)) => {
            let jwks = jwks.get_ref();
            let plan = JwksPlan {
                url: setting_at(&jwks.url, "jwks.url"),
                ca: jwks.ca.as_ref().map(|ca| setting_at(ca, "jwks.ca")),
                refresh: millis(&jwks.refresh, DEFAULT_JWKS_REFRESH),
                min_refresh: millis(&jwks.min_refresh, DEFAULT_JWKS_MIN_REFRESH),
                max_refresh: millis(&jwks.max_refresh, DEFAULT_JWKS_MAX_REFRESH),
                unknown_kid_refetch: millis(&jwks.unknown_kid_refetch, DEFAULT_JWKS_REFETCH),
                timeout: millis(&jwks.timeout, DEFAULT_JWKS_TIMEOUT),
                start_degraded: jwks.start_degraded.as_ref().is_some_and(|d| *d.get_ref()),
            };
            (JwtKeyPlan::Jwks(plan), "RS256")
        }
        (None, None, None) => unreachable!("checked: a key is given"),
    };
    let mut algorithms = strings(&jwt.algorithms);
    if algorithms.is_empty() {
        algorithms.push(default_algorithm.to_owned());
    }
    let source = match (&jwt.header, &jwt.cookie) {
        (Some(header), _) => SourcePlan::Header(header.get_ref().to_ascii_lowercase()),
        (None, Some(cookie)) => SourcePlan::Cookie(cookie.get_ref().clone()),
        (None, None) => SourcePlan::Bearer,
    };
    let leeway = jwt
        .leeway
        .as_ref()
        .map_or(DEFAULT_JWT_LEEWAY, |l| l.get_ref());
    let max_token_size = jwt
        .max_token_size
        .as_ref()
        .map_or(DEFAULT_MAX_TOKEN_SIZE, |s| s.get_ref());
    let mut forward_claims: Vec<(&Spanned<String>, &Spanned<String>)> = jwt
        .forward_claims
        .iter()
        .flat_map(|f| f.get_ref())
        .collect();
    forward_claims.sort_by_key(|(claim, _)| claim.span().start);
    JwtPlan {
        key: key_plan,
        algorithms,
        issuer: jwt.issuer.as_ref().map(|i| i.get_ref().clone()),
        audiences: strings(&jwt.audiences),
        leeway_seconds: gateway_runtime::auth::parse_leeway(leeway).unwrap_or(60),
        required_claims: strings(&jwt.required_claims),
        source,
        max_token_size: parse_size(max_token_size).unwrap_or(8192),
        forward_token: jwt.forward_token.as_ref().is_some_and(|f| *f.get_ref()),
        forward_claims: forward_claims
            .into_iter()
            .map(|(claim, header)| {
                (
                    claim.get_ref().clone(),
                    header.get_ref().to_ascii_lowercase(),
                )
            })
            .collect(),
        claims_read: Vec::new(),
        cache_size: jwt
            .cache_size
            .as_ref()
            .map_or(DEFAULT_TOKEN_CACHE_SIZE, |n| *n.get_ref() as usize),
    }
}

/// A duration the compiler lays out, in milliseconds (`check` has parsed it).
fn millis(value: &Option<Spanned<String>>, default: &str) -> u64 {
    let text = value.as_ref().map_or(default, |v| v.get_ref().as_str());
    parse_duration(text).map_or(0, |d| d.as_millis() as u64)
}

fn strings(list: &Option<Spanned<Vec<Spanned<String>>>>) -> Vec<String> {
    list.iter()
        .flat_map(|l| l.get_ref())
        .map(|s| s.get_ref().clone())
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Defaults are left out of the start-up check, so each must be valid as written.
    #[test]
    fn defaults_are_valid() {
        for (default, kind) in [
            (DEFAULT_SHUTDOWN_TIMEOUT, SettingKind::Duration),
            (DEFAULT_HEADER_READ_TIMEOUT, SettingKind::Duration),
            (DEFAULT_CONNECT_TIMEOUT, SettingKind::Duration),
            (DEFAULT_RESPONSE_TIMEOUT, SettingKind::Duration),
            (DEFAULT_POOL_IDLE_TIMEOUT, SettingKind::Duration),
            (DEFAULT_BODY_TIMEOUT, SettingKind::Duration),
            (DEFAULT_MAX_HEADER_SIZE, SettingKind::HeaderSize),
            (DEFAULT_JWT_LEEWAY, SettingKind::Duration),
            (DEFAULT_MAX_TOKEN_SIZE, SettingKind::Size),
            (DEFAULT_JWKS_REFRESH, SettingKind::Duration),
            (DEFAULT_JWKS_MIN_REFRESH, SettingKind::Duration),
            (DEFAULT_JWKS_MAX_REFRESH, SettingKind::Duration),
            (DEFAULT_JWKS_REFETCH, SettingKind::Duration),
            (DEFAULT_JWKS_TIMEOUT, SettingKind::Duration),
            (DEFAULT_EXT_AUTHZ_TIMEOUT, SettingKind::Duration),
            (DEFAULT_INTROSPECTION_TTL, SettingKind::Duration),
            (DEFAULT_INTROSPECTION_NEGATIVE_TTL, SettingKind::Duration),
            (DEFAULT_INTROSPECTION_TIMEOUT, SettingKind::Duration),
        ] {
            assert_eq!(kind.check(default), Ok(()), "{default}");
        }
    }

    /// A JWT policy keeps what it forwards and requires, and what any `authorize`
    /// rule reads, each path also by its first part.
    #[test]
    fn jwt_policies_keep_the_claims_read() {
        let source = r#"
[listeners.public]
bind = "127.0.0.1:8080"

[upstreams.api]
targets = ["http://127.0.0.1:9000"]

[policies.users]
jwt = { secret = "${env:S}", forward_claims = { sub = "X-User-Id" }, required_claims = ["tenant.id"] }

[policies.admins]
authorize = { scopes = ["admin"], roles = ["ops"], roles_claim = "realm_access.roles", claims = { "https://x.io/team" = ["a"] } }

[[routes]]
path = "/a"
upstream = "api"
policies = ["users", "admins"]
"#;
        let plan = crate::analyze("gateway.toml", source)
            .unwrap_or_else(|d| panic!("{}", d.render(false)))
            .plan;
        let jwt = plan
            .policies
            .iter()
            .find_map(|p| match &p.kind {
                PolicyKind::Jwt(jwt) => Some(jwt),
                _ => None,
            })
            .expect("the jwt policy");
        assert_eq!(
            jwt.claims_read,
            [
                "https://x",
                "https://x.io/team",
                "realm_access",
                "realm_access.roles",
                "scope",
                "scp",
                "sub",
                "tenant",
                "tenant.id"
            ]
        );
    }
}
