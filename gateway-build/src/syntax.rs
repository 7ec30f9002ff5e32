//! gateway.toml as written: every value a user can get wrong keeps its span.
//!
//! Parsing is lenient in one way only: each item (a listener, an upstream, a route)
//! is deserialised on its own, so one bad item does not hide the errors of the next.
//! Meaning is checked in `check`, not here.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use serde::de::IntoDeserializer;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use gateway_runtime::settings::SettingKind;

use crate::codes;
use crate::diagnostic::{Diagnostic, did_you_mean};

/// A parsed gateway.toml.
#[derive(Debug, Default)]
pub struct Config {
    /// `include = ["common.toml"]`: files whose sections join this file's.
    pub include: Vec<Spanned<String>>,
    pub gateway: Option<Spanned<GatewaySection>>,
    pub admin: Option<Spanned<Admin>>,
    pub access_log: Option<Spanned<AccessLog>>,
    pub tracing: Option<Spanned<Tracing>>,
    /// In the order they are written.
    pub listeners: Vec<(Spanned<String>, Spanned<Listener>)>,
    /// In the order they are written.
    pub upstreams: Vec<(Spanned<String>, Spanned<Upstream>)>,
    /// In the order they are written.
    pub routes: Vec<Spanned<Route>>,
    /// `[policies.NAME]`, in the order they are written.
    pub policies: Vec<(Spanned<String>, Spanned<Policy>)>,
    /// `[groups.NAME]`, in the order they are written.
    pub groups: Vec<(Spanned<String>, Spanned<Group>)>,
    /// `[consumers.NAME]`, in the order they are written.
    pub consumers: Vec<(Spanned<String>, Spanned<Consumer>)>,
    /// `[[tests]]`, in the order they are written.
    pub tests: Vec<Spanned<RouteTest>>,
    /// `[lints]`: lint name and level, as written.
    pub lints: Vec<(Spanned<String>, Spanned<String>)>,
    /// Names of listeners, upstreams, policies and groups whose sections had errors of
    /// their own:
    /// references to them are not reported again as unknown.
    pub broken_names: Vec<String>,
    /// Some item had shape errors and is missing here, so conclusions about the
    /// whole file (such as "unused") would be guesses.
    pub incomplete: bool,
}

impl Config {
    /// The declared listener names, in file order.
    pub fn listener_names(&self) -> Vec<&str> {
        self.listeners
            .iter()
            .map(|(n, _)| n.get_ref().as_str())
            .collect()
    }

    /// The declared upstream names, in file order.
    pub fn upstream_names(&self) -> Vec<&str> {
        self.upstreams
            .iter()
            .map(|(n, _)| n.get_ref().as_str())
            .collect()
    }

    /// The declared policy names, in file order.
    pub fn policy_names(&self) -> Vec<&str> {
        self.policies
            .iter()
            .map(|(n, _)| n.get_ref().as_str())
            .collect()
    }

    /// Every setting the file gives a value, with its key and kind, in file order of
    /// sections: the one list that the build-time check, the plan and the start-up
    /// check (`Gateway::SETTINGS`) all read.
    pub fn settings(&self) -> Vec<SettingEntry> {
        use SettingKind::*;
        let mut out = Vec::new();
        let mut push = |key: String, value: Option<&Spanned<String>>, kind| {
            if let Some(value) = value {
                out.push(SettingEntry {
                    key,
                    value: value.clone(),
                    kind,
                });
            }
        };
        if let Some(gateway) = &self.gateway {
            let gateway = gateway.get_ref();
            let workers = gateway
                .workers
                .as_ref()
                .map(|w| Spanned::new(w.span(), w.get_ref().raw()));
            push("gateway.workers".into(), workers.as_ref(), Workers);
            push(
                "gateway.shutdown_timeout".into(),
                gateway.shutdown_timeout.as_ref(),
                Duration,
            );
        }
        if let Some(admin) = &self.admin {
            push("admin.bind".into(), admin.get_ref().bind.as_ref(), Bind);
        }
        if let Some(log) = &self.access_log {
            push("access_log.path".into(), log.get_ref().path.as_ref(), File);
        }
        if let Some(tracing) = &self.tracing {
            let tracing = tracing.get_ref();
            push("tracing.endpoint".into(), Some(&tracing.endpoint), Url);
            let ratio = tracing
                .sample_ratio
                .as_ref()
                .map(|r| Spanned::new(r.span(), r.get_ref().raw()));
            push("tracing.sample_ratio".into(), ratio.as_ref(), Ratio);
        }
        for (name, listener) in &self.listeners {
            let key = format!("listeners.{}", name.get_ref());
            let listener = listener.get_ref();
            push(format!("{key}.bind"), Some(&listener.bind), Bind);
            push(
                format!("{key}.timeouts.header_read"),
                listener.timeouts.header_read.as_ref(),
                Duration,
            );
            push(
                format!("{key}.timeouts.body"),
                listener.timeouts.body.as_ref(),
                Duration,
            );
            push(
                format!("{key}.timeouts.send"),
                listener.timeouts.send.as_ref(),
                Duration,
            );
            let limits = &listener.limits;
            push(
                format!("{key}.limits.max_body"),
                limits.max_body.as_ref(),
                Size,
            );
            push(
                format!("{key}.limits.max_header_size"),
                limits.max_header_size.as_ref(),
                HeaderSize,
            );
            if let Some(tls) = &listener.tls {
                let tls = tls.get_ref();
                push(format!("{key}.tls.cert"), tls.cert.as_ref(), Pem);
                push(format!("{key}.tls.key"), tls.key.as_ref(), Pem);
                for (i, sni) in tls.sni.iter().enumerate() {
                    let sni = sni.get_ref();
                    push(format!("{key}.tls.sni[{i}].cert"), Some(&sni.cert), Pem);
                    push(format!("{key}.tls.sni[{i}].key"), Some(&sni.key), Pem);
                }
                if let Some(auth) = &tls.client_auth {
                    push(
                        format!("{key}.tls.client_auth.ca"),
                        Some(&auth.get_ref().ca),
                        Pem,
                    );
                }
            }
        }
        for (name, upstream) in &self.upstreams {
            let key = format!("upstreams.{}", name.get_ref());
            let upstream = upstream.get_ref();
            for target in upstream.targets.get_ref() {
                push(format!("{key}.targets"), Some(target), Target);
            }
            let timeouts = &upstream.timeouts;
            for (which, value) in [
                ("connect", &timeouts.connect),
                ("response", &timeouts.response),
                ("idle", &timeouts.idle),
                ("body", &timeouts.body),
            ] {
                push(format!("{key}.timeouts.{which}"), value.as_ref(), Duration);
            }
            if let Some(tls) = &upstream.tls {
                let tls = tls.get_ref();
                push(format!("{key}.tls.ca"), tls.ca.as_ref(), Pem);
                push(format!("{key}.tls.cert"), tls.cert.as_ref(), Pem);
                push(format!("{key}.tls.key"), tls.key.as_ref(), Pem);
            }
        }
        for (name, policy) in &self.policies {
            if let Some(jwt) = &policy.get_ref().jwt {
                let key = format!("policies.{}.jwt", name.get_ref());
                let jwt = jwt.get_ref();
                push(format!("{key}.key"), jwt.key.as_ref(), Pem);
                // Its durations are laid out by the compiler, not read at start-up.
                if let Some(jwks) = &jwt.jwks {
                    let jwks = jwks.get_ref();
                    push(format!("{key}.jwks.url"), Some(&jwks.url), Url);
                    push(format!("{key}.jwks.ca"), jwks.ca.as_ref(), Pem);
                }
            }
        }
        out
    }

    /// The policy called `name`, with its index.
    pub fn policy(&self, name: &str) -> Option<(usize, &Policy)> {
        self.policies
            .iter()
            .enumerate()
            .find(|(_, (n, _))| n.get_ref() == name)
            .map(|(i, (_, p))| (i, p.get_ref()))
    }
}

/// One setting as written, with the key that names it in messages and its kind.
#[derive(Debug, Clone)]
pub struct SettingEntry {
    /// `upstreams.users.timeouts.connect`.
    pub key: String,
    pub value: Spanned<String>,
    pub kind: SettingKind,
}

/// `[gateway]`: settings of the whole binary.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    pub name: Spanned<String>,
    /// Worker threads, each with its own runtime and listening socket; default: one per
    /// core. A number, or a string that may hold `${env:…}`.
    pub workers: Option<Spanned<NumberOrText>>,
    /// How long SIGTERM waits for in-flight requests before closing connections.
    pub shutdown_timeout: Option<Spanned<String>>,
    /// `X-Request-Id` on every request; default: none.
    pub request_id: Option<Spanned<RequestIdMode>>,
}

/// `[gateway] request_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestIdMode {
    Generate,
    Trust,
}

/// `[access_log]`: the format and place of the access log.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLog {
    pub format: Option<Spanned<LogFormat>>,
    /// A file, opened again on SIGUSR1; default: stderr.
    pub path: Option<Spanned<String>>,
}

/// `[tracing]`: OpenTelemetry spans, exported over OTLP/HTTP.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tracing {
    /// The collector's OTLP/HTTP traces URL, posted to as written.
    pub endpoint: Spanned<String>,
    /// The share of new traces recorded, 0 to 1, or a string that may hold
    /// `${env:…}`; default 1.
    pub sample_ratio: Option<Spanned<NumberOrText>>,
    /// `service.name`; default: `[gateway] name`.
    pub service_name: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

/// A count written as a number, or as a string so that it can come from the environment.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum NumberOrText {
    Number(i64),
    Fraction(f64),
    Text(String),
}

impl NumberOrText {
    /// The value as a setting string: numbers in decimal, text as written.
    pub fn raw(&self) -> String {
        match self {
            NumberOrText::Number(n) => n.to_string(),
            NumberOrText::Fraction(x) => x.to_string(),
            NumberOrText::Text(text) => text.clone(),
        }
    }
}

/// `[admin]`: health, metrics and the dashboard on a separate address.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Default: loopback, port 9901.
    pub bind: Option<Spanned<String>>,
    /// Allows an address other than loopback.
    pub expose: Option<Spanned<bool>>,
    /// The duration histograms' bucket bounds, in seconds.
    pub buckets: Option<Spanned<Vec<f64>>>,
}

/// `[listeners.NAME]`: where clients connect (HTTP/1.1 and h2c on the same port).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub bind: Spanned<String>,
    #[serde(default)]
    pub timeouts: ListenerTimeouts,
    #[serde(default)]
    pub limits: ListenerLimits,
    /// Policies for every route served on this listener.
    pub policies: Option<Spanned<Vec<Spanned<String>>>>,
    /// What to do with request fields whose names hold `_`; default `drop`.
    pub headers_with_underscores: Option<Spanned<Underscores>>,
    /// What to do with `;` parameters on path segments; default `reject`.
    pub path_parameters: Option<Spanned<PathParameters>>,
    /// TLS termination; without it the listener speaks plaintext HTTP/1.1 and h2c.
    pub tls: Option<Spanned<ListenerTls>>,
    /// Answer every request with a 308 to `https://` on this port instead of routing.
    pub https_redirect: Option<Spanned<i64>>,
}

/// `[listeners.NAME.tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// The default certificate chain, PEM, leaf first: for clients that send no
    /// server name or one no `sni` entry has. Without it those handshakes fail.
    pub cert: Option<Spanned<String>>,
    /// The default certificate's private key, PEM; a `${file:…}` or `${env:…}`.
    pub key: Option<Spanned<String>>,
    /// Certificates chosen by the server name the client sends.
    #[serde(default)]
    pub sni: Vec<Spanned<SniCertificate>>,
    /// `"1.2"` (default) or `"1.3"`.
    pub min_version: Option<Spanned<TlsVersion>>,
    pub client_auth: Option<Spanned<ClientAuth>>,
    /// A `Strict-Transport-Security` value added to every response.
    pub hsts: Option<Spanned<String>>,
    /// Certificates expiring within this many days are logged; default 30.
    pub expiry_warning_days: Option<Spanned<i64>>,
}

/// One `[[listeners.NAME.tls.sni]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SniCertificate {
    /// Exact names, or `*.example.com`.
    pub names: Spanned<Vec<Spanned<String>>>,
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum TlsVersion {
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

/// `client_auth`: client certificates (mutual TLS).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAuth {
    /// PEM bundle of the CAs that issue client certificates.
    pub ca: Spanned<String>,
    /// `required` (default) or `optional`.
    pub mode: Option<Spanned<ClientAuthMode>>,
    /// Request fields that carry the verified identity upstream.
    pub subject_header: Option<Spanned<String>>,
    pub san_header: Option<Spanned<String>>,
    pub fingerprint_header: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMode {
    Required,
    Optional,
}

/// `[upstreams.NAME.tls]`: how `https://` targets are verified and authenticated to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// PEM bundle that verifies the targets; default: the system's trust store.
    pub ca: Option<Spanned<String>>,
    /// A client certificate chain for upstreams that require mutual TLS.
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    /// The name sent as SNI and verified; default: each target's host.
    pub server_name: Option<Spanned<String>>,
}

/// `path_parameters`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathParameters {
    Reject,
    Keep,
}

/// `headers_with_underscores`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Underscores {
    Drop,
    Reject,
    Allow,
}

/// Bounds on what one request may send.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerLimits {
    /// Request body size; larger bodies get 413. Default: no limit.
    pub max_body: Option<Spanned<String>>,
    /// Bytes of the request head; larger heads get 431.
    pub max_header_size: Option<Spanned<String>>,
    /// Number of request header fields (HTTP/1.1); more get 431.
    pub max_headers: Option<Spanned<i64>>,
    /// HTTP/2 streams a client may have open at once on one connection.
    pub max_concurrent_streams: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTimeouts {
    /// From accepting a connection, or from the end of the previous response, to a
    /// complete request head; on HTTP/1.1 this also bounds idle keep-alive time.
    pub header_read: Option<Spanned<String>>,
    /// Longest pause between two reads of a request body (nginx `client_body_timeout`).
    pub body: Option<Spanned<String>>,
    /// Longest wait for a client to take more of a response (nginx `send_timeout`),
    /// on HTTP/1.1 per write, on HTTP/2 per stream whose flow-control window stays
    /// closed.
    pub send: Option<Spanned<String>>,
}

/// `[upstreams.NAME]`: a pool of targets that routes forward to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    pub targets: Spanned<Vec<Spanned<String>>>,
    pub balance: Option<Spanned<Balance>>,
    #[serde(default)]
    pub timeouts: UpstreamTimeouts,
    pub tls: Option<Spanned<UpstreamTls>>,
    /// At most so many requests in flight to this upstream, from every route.
    pub concurrency: Option<Spanned<ConcurrencyPolicy>>,
    /// `false`: its bodies are not JSON, so no JSON rule may read them.
    pub json: Option<Spanned<bool>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    RoundRobin,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTimeouts {
    pub connect: Option<Spanned<String>>,
    /// From sending the request to receiving the response head.
    pub response: Option<Spanned<String>>,
    /// How long a pooled keep-alive connection may sit unused.
    pub idle: Option<Spanned<String>>,
    /// Longest pause between two reads of a response body or two writes of a request
    /// body (nginx `proxy_read_timeout`, `proxy_send_timeout`).
    pub body: Option<Spanned<String>>,
}

/// `[[routes]]`: which requests go where.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Shown in logs; defaults to the method list and path.
    pub name: Option<Spanned<String>>,
    /// A matchit pattern: `/users/{id}`, `/files/{*rest}`.
    pub path: Spanned<String>,
    /// Default: every method.
    pub methods: Option<Spanned<Vec<Spanned<String>>>>,
    /// Default: every host.
    pub host: Option<Spanned<String>>,
    /// Default: every listener.
    pub listeners: Option<Spanned<Vec<Spanned<String>>>>,
    pub upstream: Option<Spanned<String>>,
    pub strip_prefix: Option<Spanned<String>>,
    pub rewrite: Option<Spanned<String>>,
    /// Policies of this route, after those of its listener and group.
    pub policies: Option<Spanned<Vec<Spanned<String>>>>,
    /// A `[groups.NAME]` whose policies the route takes.
    pub group: Option<Spanned<String>>,
    /// Policies of the listener or group that this route does without: the only way
    /// to leave an inherited policy.
    pub skip_policies: Option<Spanned<Vec<Spanned<String>>>>,
    /// Served without authentication on purpose (the `unauthenticated-route` lint).
    pub public: Option<Spanned<bool>>,
    /// Request body size for this route, below the listener's `limits.max_body`.
    pub max_body: Option<Spanned<String>>,
    /// Backend calls whose JSON answers make the response, instead of `upstream`.
    pub aggregate: Option<Spanned<Vec<Spanned<AggregateCall>>>>,
    /// How an aggregate's answers are put together: `nested` (the default) or `flat`.
    pub merge: Option<Spanned<String>>,
    /// Field rules on the client's JSON body, before the upstream gets it.
    pub request_body: Option<Spanned<BodyRules>>,
    /// Field rules on the JSON response, before the client gets it.
    pub response_body: Option<Spanned<BodyRules>>,
}

/// `request_body` and `response_body`: a route's field rules on one direction's body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BodyRules {
    pub fields: Option<Spanned<Vec<Spanned<String>>>>,
    pub deny: Option<Spanned<Vec<Spanned<String>>>>,
    pub target: Option<Spanned<String>>,
    pub rename: Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
    pub flatten: Option<Spanned<bool>>,
    pub group: Option<Spanned<String>>,
    /// The longest body read whole.
    pub max_body: Option<Spanned<String>>,
}

/// The field rules of an aggregate call or a body, as the checks and the plan see
/// them.
#[derive(Debug, Clone, Copy)]
pub struct FieldRules<'a> {
    pub fields: &'a Option<Spanned<Vec<Spanned<String>>>>,
    pub deny: &'a Option<Spanned<Vec<Spanned<String>>>>,
    pub target: &'a Option<Spanned<String>>,
    pub rename: &'a Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
    pub flatten: &'a Option<Spanned<bool>>,
    pub group: &'a Option<Spanned<String>>,
}

impl BodyRules {
    pub fn rules(&self) -> FieldRules<'_> {
        FieldRules {
            fields: &self.fields,
            deny: &self.deny,
            target: &self.target,
            rename: &self.rename,
            flatten: &self.flatten,
            group: &self.group,
        }
    }
}

impl AggregateCall {
    pub fn rules(&self) -> FieldRules<'_> {
        FieldRules {
            fields: &self.fields,
            deny: &self.deny,
            target: &self.target,
            rename: &self.rename,
            flatten: &self.flatten,
            group: &self.group,
        }
    }
}

/// `[[routes.aggregate]]`: one backend call of an aggregate route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateCall {
    /// Where the answer goes in the response.
    pub key: Spanned<String>,
    pub upstream: Spanned<String>,
    /// A target template: `/orders?user={user_id}&page={query.page}`.
    pub path: Spanned<String>,
    /// `GET`, or `POST` with a `body`.
    pub method: Option<Spanned<String>>,
    /// A JSON body whose strings are templates like the path's.
    pub body: Option<Spanned<toml::Value>>,
    /// Request fields passed on, besides the identity fields the gateway sets.
    pub headers: Option<Spanned<Vec<Spanned<String>>>>,
    pub timeout: Option<Spanned<String>>,
    pub max_body: Option<Spanned<String>>,
    /// Whether a failure of this call fails the response (the default).
    pub required: Option<Spanned<bool>>,
    /// What takes an optional call's place when it fails (default `null`).
    pub fallback: Option<Spanned<toml::Value>>,
    /// Paths kept of the answer: `user.name`, `items[].id`.
    pub fields: Option<Spanned<Vec<Spanned<String>>>>,
    /// Paths removed from the answer.
    pub deny: Option<Spanned<Vec<Spanned<String>>>>,
    /// The part of the answer the other rules apply to: `data.items`, `list[0]`.
    pub target: Option<Spanned<String>>,
    /// Members renamed: path = new name.
    pub rename: Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
    /// Whether an array of arrays becomes one array.
    pub flatten: Option<Spanned<bool>>,
    /// The member the shaped answer goes under.
    pub group: Option<Spanned<String>>,
}

/// `[policies.NAME]`: one policy, of exactly one kind.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub ip: Option<Spanned<IpPolicy>>,
    /// Requires a verified client certificate (mutual TLS), with matching names.
    pub client_cert: Option<Spanned<ClientCertPolicy>>,
    pub request_headers: Option<Spanned<HeaderOps>>,
    pub response_headers: Option<Spanned<HeaderOps>>,
    /// Authenticates a bearer JWT.
    pub jwt: Option<Spanned<JwtPolicy>>,
    /// Authenticates an API key of a `[consumers.NAME]`.
    pub api_key: Option<Spanned<ApiKeyPolicy>>,
    /// What the identity an earlier step established must have.
    pub authorize: Option<Spanned<AuthorizePolicy>>,
    /// Authentication policies, the first whose credential the request presents
    /// deciding.
    pub any: Option<Spanned<Vec<Spanned<String>>>>,
    /// Asks an authorization service about each request.
    pub ext_authz: Option<Spanned<ExtAuthzPolicy>>,
    /// Authenticates an opaque bearer token with its authorization server.
    pub introspection: Option<Spanned<IntrospectionPolicy>>,
    /// Admits so many requests per key and period, refusing the rest with 429.
    pub rate_limit: Option<Spanned<RateLimitPolicy>>,
    pub quota: Option<Spanned<QuotaPolicy>>,
    /// At most so many requests in flight, a bounded queue, then 503.
    pub concurrency: Option<Spanned<ConcurrencyPolicy>>,
}

/// `concurrency = { max = 100, … }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencyPolicy {
    pub max: Spanned<i64>,
    pub queue: Option<Spanned<i64>>,
    pub queue_timeout: Option<Spanned<String>>,
    /// `route` or `global`.
    pub scope: Option<Spanned<String>>,
}

/// `rate_limit = { rate = "100/min", … }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitPolicy {
    pub rate: Spanned<String>,
    pub burst: Option<Spanned<i64>>,
    /// `client_ip`, `route`, `consumer`, `jwt.CLAIM`, `header.NAME` or `param.NAME`.
    pub key: Option<Spanned<String>>,
    /// `route`, `global` or `group:NAME`.
    pub scope: Option<Spanned<String>>,
    pub max_keys: Option<Spanned<i64>>,
    pub headers: Option<Spanned<bool>>,
    pub trusted_proxies: Option<Spanned<Vec<Spanned<String>>>>,
    /// Where the buckets live; default: this process.
    pub store: Option<Spanned<LimitStore>>,
}

/// `quota = { limit = 10000, per = "month", … }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaPolicy {
    pub limit: Spanned<i64>,
    /// `day` or `month`.
    pub per: Spanned<String>,
    /// `calendar` (the default) or `rolling`.
    pub window: Option<Spanned<String>>,
    /// An IANA time zone for calendar windows; UTC by default.
    pub time_zone: Option<Spanned<String>>,
    /// As a rate limit's; `consumer` by default.
    pub key: Option<Spanned<String>>,
    /// `route` or `global`.
    pub scope: Option<Spanned<String>>,
    pub trusted_proxies: Option<Spanned<Vec<Spanned<String>>>>,
    /// The Redis that holds the counters (required).
    pub store: Option<Spanned<LimitStore>>,
}

/// `store = { redis = "${env:REDIS_URL}", … }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitStore {
    pub redis: Option<Spanned<String>>,
    /// `redis` holds a Redis Cluster's seed nodes, separated by commas.
    pub cluster: Option<Spanned<bool>>,
    pub timeout: Option<Spanned<String>>,
    /// `fail_open` or `fail_closed`.
    pub on_error: Option<Spanned<String>>,
    /// Tokens a gateway leases at once and spends locally.
    pub batch: Option<Spanned<i64>>,
}

/// `introspection = { upstream = …, path = …, client_id = …, client_secret = … }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionPolicy {
    pub upstream: Spanned<String>,
    pub path: Spanned<String>,
    pub client_id: Option<Spanned<String>>,
    pub client_secret: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub cache_ttl: Option<Spanned<String>>,
    pub negative_ttl: Option<Spanned<String>>,
    pub cache_size: Option<Spanned<i64>>,
    pub forward_token: Option<Spanned<bool>>,
    pub forward_claims: Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
}

/// `ext_authz = { upstream = …, path = … }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtAuthzPolicy {
    pub upstream: Spanned<String>,
    pub path: Spanned<String>,
    pub request_headers: Option<Spanned<Vec<Spanned<String>>>>,
    pub response_headers: Option<Spanned<Vec<Spanned<String>>>>,
    pub timeout: Option<Spanned<String>>,
    pub fail_open: Option<Spanned<bool>>,
}

/// `jwt = { … }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtPolicy {
    /// HMAC secret: a reference only.
    pub secret: Option<Spanned<String>>,
    /// Public key in PEM, or a reference to one.
    pub key: Option<Spanned<String>>,
    /// A provider's published key set.
    pub jwks: Option<Spanned<JwksPolicy>>,
    pub algorithms: Option<Spanned<Vec<Spanned<String>>>>,
    pub issuer: Option<Spanned<String>>,
    pub audiences: Option<Spanned<Vec<Spanned<String>>>>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Option<Spanned<String>>,
    pub required_claims: Option<Spanned<Vec<Spanned<String>>>>,
    /// Read the token from this field instead of `Authorization: Bearer`.
    pub header: Option<Spanned<String>>,
    /// Read the token from this cookie instead.
    pub cookie: Option<Spanned<String>>,
    pub max_token_size: Option<Spanned<String>>,
    pub forward_token: Option<Spanned<bool>>,
    /// Claim path to header name.
    pub forward_claims: Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
    pub cache_size: Option<Spanned<i64>>,
}

/// `jwks = { url = … }` of a JWT policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwksPolicy {
    pub url: Spanned<String>,
    /// PEM bundle that verifies the provider; default: the system's roots.
    pub ca: Option<Spanned<String>>,
    pub refresh: Option<Spanned<String>>,
    pub min_refresh: Option<Spanned<String>>,
    pub max_refresh: Option<Spanned<String>>,
    pub unknown_kid_refetch: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub start_degraded: Option<Spanned<bool>>,
}

/// `api_key = { header = … }` or `{ query = … }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyPolicy {
    pub header: Option<Spanned<String>>,
    pub query: Option<Spanned<String>>,
}

/// `authorize = { … }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizePolicy {
    pub scopes: Option<Spanned<Vec<Spanned<String>>>>,
    pub roles: Option<Spanned<Vec<Spanned<String>>>>,
    /// Where the roles are; default `roles`.
    pub roles_claim: Option<Spanned<String>>,
    /// Claim path to the value, or values, one of which it must equal or hold.
    pub claims: Option<Spanned<BTreeMap<Spanned<String>, Spanned<OneOrMany>>>>,
    pub groups: Option<Spanned<Vec<Spanned<String>>>>,
}

/// A string or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn values(&self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one.clone()],
            OneOrMany::Many(many) => many.clone(),
        }
    }
}

/// `[consumers.NAME]`: a client of the API-key policies.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consumer {
    /// References (`${env:…}`, `${file:…}`) or `sha256:<hex>` digests.
    pub keys: Spanned<Vec<Spanned<String>>>,
    pub groups: Option<Spanned<Vec<Spanned<String>>>>,
}

/// `client_cert = { san = [...] }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCertPolicy {
    /// URI and DNS subject alternative names allowed; default: any certificate.
    pub san: Option<Spanned<Vec<Spanned<String>>>>,
}

/// `ip = { allow = [...], deny = [...], trusted_proxies = [...] }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpPolicy {
    pub allow: Option<Spanned<Vec<Spanned<String>>>>,
    pub deny: Option<Spanned<Vec<Spanned<String>>>>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Option<Spanned<Vec<Spanned<String>>>>,
}

/// What a header rule does to one message's fields.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderOps {
    pub set: Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
    pub add: Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
    pub remove: Option<Spanned<Vec<Spanned<String>>>>,
    /// Old name to new name.
    pub rename: Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
}

/// `[groups.NAME]`: policies shared by the routes that name the group.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub policies: Spanned<Vec<Spanned<String>>>,
}

/// `[[tests]]`: a request and what the compiled route table must do with it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTest {
    /// `METHOD /path?query`.
    pub request: Spanned<String>,
    pub host: Option<Spanned<String>>,
    /// Default: the first listener.
    pub listener: Option<Spanned<String>>,
    pub expect: Spanned<Expectation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// The route's `name`.
    pub route: Option<Spanned<String>>,
    pub upstream: Option<Spanned<String>>,
    /// Path and query sent upstream.
    pub path: Option<Spanned<String>>,
    /// 200 (routed), 400, 404 or 405.
    pub status: Option<Spanned<i64>>,
}

const SECTIONS: [&str; 13] = [
    "include",
    "gateway",
    "admin",
    "access_log",
    "tracing",
    "listeners",
    "upstreams",
    "policies",
    "groups",
    "consumers",
    "routes",
    "tests",
    "lints",
];

/// Parses the source into a `Config` and the shape errors found (unknown keys, wrong
/// types): the items that parsed are kept, so that `check` can still report on them.
/// TOML syntax errors leave nothing to work on: they are the `Err`.
pub fn parse(source: &str) -> Result<(Config, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let (document, syntax_errors) = DeTable::parse_recoverable(source);
    if !syntax_errors.is_empty() {
        return Err(syntax_errors
            .into_iter()
            .map(|e| {
                Diagnostic::new(
                    &codes::TOML_SYNTAX,
                    e.span().unwrap_or(0..0),
                    first_line(e.message()),
                )
            })
            .collect());
    }
    let mut config = Config::default();
    for (key, value) in document.into_inner() {
        let key_span = key.span();
        match key.get_ref().as_ref() {
            "include" => {
                config.include = item::<Vec<Spanned<String>>>(value, &mut errors)
                    .map(Spanned::into_inner)
                    .unwrap_or_default()
            }
            "gateway" => config.gateway = item(value, &mut errors),
            "admin" => config.admin = item(value, &mut errors),
            "access_log" => config.access_log = item(value, &mut errors),
            "tracing" => config.tracing = item(value, &mut errors),
            "listeners" => {
                config.listeners =
                    named_items(value, "listeners", &mut errors, &mut config.broken_names)
            }
            "upstreams" => {
                config.upstreams =
                    named_items(value, "upstreams", &mut errors, &mut config.broken_names)
            }
            "policies" => {
                config.policies =
                    named_items(value, "policies", &mut errors, &mut config.broken_names)
            }
            "groups" => {
                config.groups = named_items(value, "groups", &mut errors, &mut config.broken_names)
            }
            "consumers" => {
                config.consumers =
                    named_items(value, "consumers", &mut errors, &mut config.broken_names)
            }
            "routes" => match array(value, "routes", &mut errors) {
                Some(items) => {
                    let count = items.len();
                    config.routes = items
                        .into_iter()
                        .filter_map(|v| item(v, &mut errors))
                        .collect();
                    config.incomplete |= config.routes.len() < count;
                }
                None => config.incomplete = true,
            },
            "tests" => {
                if let Some(items) = array(value, "tests", &mut errors) {
                    config.tests = items
                        .into_iter()
                        .filter_map(|v| item(v, &mut errors))
                        .collect();
                }
            }
            "lints" => config.lints = lint_levels(value, &mut errors),
            other => errors.push(Diagnostic::new(
                &codes::UNKNOWN_SECTION,
                key_span,
                format!("unknown section `{other}`{}", did_you_mean(other, SECTIONS)),
            )),
        }
    }
    config.incomplete |= !config.broken_names.is_empty();
    Ok((config, errors))
}

fn item<T: for<'de> Deserialize<'de>>(
    value: Spanned<DeValue<'_>>,
    errors: &mut Vec<Diagnostic>,
) -> Option<Spanned<T>> {
    let span = value.span();
    match T::deserialize(value.into_deserializer()) {
        Ok(parsed) => Some(Spanned::new(span, parsed)),
        Err(e) => {
            errors.push(shape_error(e.span().unwrap_or(span), e.message()));
            None
        }
    }
}

fn named_items<T: for<'de> Deserialize<'de>>(
    value: Spanned<DeValue<'_>>,
    section: &str,
    errors: &mut Vec<Diagnostic>,
    broken_names: &mut Vec<String>,
) -> Vec<(Spanned<String>, Spanned<T>)> {
    let span = value.span();
    let DeValue::Table(table) = value.into_inner() else {
        errors.push(Diagnostic::new(
            &codes::SECTION_SHAPE,
            span,
            format!("`{section}` must be a table of named entries, such as `[{section}.NAME]`"),
        ));
        return Vec::new();
    };
    let mut items: Vec<_> = table
        .into_iter()
        .filter_map(|(name, value)| {
            let name = Spanned::new(name.span(), name.into_inner().into_owned());
            let parsed = item(value, errors);
            if parsed.is_none() {
                broken_names.push(name.get_ref().clone());
            }
            parsed.map(|parsed| (name, parsed))
        })
        .collect();
    // The TOML map is ordered by name; the file's order reads better everywhere after.
    items.sort_by_key(|(name, _)| name.span().start);
    items
}

/// `[lints]` is a table of `name = "level"`.
fn lint_levels(
    value: Spanned<DeValue<'_>>,
    errors: &mut Vec<Diagnostic>,
) -> Vec<(Spanned<String>, Spanned<String>)> {
    let span = value.span();
    let DeValue::Table(table) = value.into_inner() else {
        errors.push(Diagnostic::new(
            &codes::SECTION_SHAPE,
            span,
            "`lints` must be a table: write `[lints]`",
        ));
        return Vec::new();
    };
    table
        .into_iter()
        .filter_map(|(name, level)| {
            let name = Spanned::new(name.span(), name.into_inner().into_owned());
            let level_span = level.span();
            match level.into_inner() {
                DeValue::String(text) => Some((name, Spanned::new(level_span, text.into_owned()))),
                _ => {
                    errors.push(Diagnostic::new(
                        &codes::WRONG_TYPE,
                        level_span,
                        "a lint level is a string: `\"allow\"`, `\"warn\"` or `\"deny\"`",
                    ));
                    None
                }
            }
        })
        .collect()
}

fn array<'i>(
    value: Spanned<DeValue<'i>>,
    section: &str,
    errors: &mut Vec<Diagnostic>,
) -> Option<Vec<Spanned<DeValue<'i>>>> {
    let span = value.span();
    match value.into_inner() {
        DeValue::Array(items) => Some(items.into_iter().collect()),
        _ => {
            errors.push(Diagnostic::new(
                &codes::SECTION_SHAPE,
                span,
                format!("`{section}` must be an array of tables: write `[[{section}]]`"),
            ));
            None
        }
    }
}

/// Rewrites serde's messages into ours: `unknown field` gets a suggestion.
fn shape_error(span: Range<usize>, message: &str) -> Diagnostic {
    let message = first_line(message);
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((field, expected)) = rest.split_once('`')
    {
        let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        let help = format!(
            "the keys allowed here are {}",
            candidates
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Diagnostic::new(
            &codes::UNKNOWN_KEY,
            span,
            format!(
                "unknown key `{field}`{}",
                did_you_mean(field, candidates.iter().copied())
            ),
        )
        .with_help(help);
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        return Diagnostic::new(&codes::MISSING_KEY, span, format!("missing key `{field}`"));
    }
    Diagnostic::new(&codes::WRONG_TYPE, span, message)
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every bad item is reported, not only the first one.
    #[test]
    fn errors_in_several_items_are_all_reported() {
        let src = r#"
[upstreams.a]
targetz = ["http://x"]

[upstreams.b]
targets = "http://x"

[[routes]]
path = 5
"#;
        let (_, errors) = parse(src).unwrap();
        let messages: Vec<_> = errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(errors.len(), 3, "{messages:?}");
        assert!(
            messages
                .iter()
                .any(|m| m.starts_with("unknown key `targetz` (did you mean `targets`?)")),
            "{messages:?}"
        );
        assert!(messages.iter().any(|m| m.contains("invalid type")));
    }

    /// Syntax errors carry a span and stop further checks.
    #[test]
    fn syntax_errors() {
        let errors = parse("[upstreams\nx = 1\n").unwrap_err();
        assert!(!errors.is_empty());
        assert_eq!(errors[0].span.start, 10);
    }

    /// Unknown sections get a suggestion.
    #[test]
    fn unknown_section() {
        let (_, errors) = parse("[upstream.x]\ntargets = []\n").unwrap();
        assert_eq!(
            errors[0].message,
            "unknown section `upstream` (did you mean `upstreams`?)"
        );
    }
}
