//! The contract between generated code and the runtime: the compiled tables as
//! constants, the shared state, and the phases that the generated code implements
//! with one function per route.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use http::{Method, Uri, Version};

use crate::auth::jwks::KeySets;
use crate::h1::request_body::RequestBody;
use crate::message::fields::Fields;
use crate::message::methods::MethodSet;
use crate::message::request::{PathParameters, Underscores};
use crate::observe::access_log::AccessLogSpec;
use crate::observe::metrics::Shard;
use crate::observe::request_id::RequestIdMode;
use crate::observe::trace::TracingSpec;
use crate::pipeline::{Admission, Refusal, RequestContext, Stop, Trail};
use crate::route::router::RouteSpec;
use crate::settings::{Setting, SettingError, SettingKind};
use crate::tls::{ListenerTlsSpec, UpstreamTlsSpec};

pub use crate::message::response::Response;
pub type Params<'k, 'v> = matchit::Params<'k, 'v>;

/// A client's request as the phases see it. Its fields are the bytes the client sent
/// (see `fields`); `uri` is the target, in origin form or, from an absolute-form
/// target or HTTP/2, with the authority.
#[derive(Debug)]
pub struct Request {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub fields: Fields,
    pub body: RequestBody,
}

/// A gateway compiled from a gateway.toml. Implemented only by generated code.
///
/// One instance is built on each worker thread and never leaves it, so neither it nor
/// its futures need to be `Send`: per-thread state needs no locks. What all workers
/// share is `Shared`, built once before they start.
pub trait Gateway: Sized + 'static {
    const NAME: &'static str;
    const PROVENANCE: Provenance;
    /// Worker threads; `None`: one per core.
    const WORKERS: Option<Setting>;
    const SHUTDOWN_TIMEOUT: Setting;
    const ADMIN: Option<AdminSpec>;
    const ACCESS_LOG: AccessLogSpec;
    /// `None`: requests get no id.
    const REQUEST_ID: Option<RequestIdMode>;
    /// `None`: no spans, and `traceparent` passes through untouched.
    const TRACING: Option<TracingSpec>;
    const LISTENERS: &'static [ListenerSpec];
    const UPSTREAMS: &'static [UpstreamSpec];
    /// Indexed by route id.
    const ROUTES: &'static [RouteSpec<'static>];
    /// What the admin listener shows of each route, indexed by route id.
    const ROUTE_INFO: &'static [RouteInfo];
    /// Every setting gateway.toml gives a value, with its kind: what start-up checks
    /// before anything listens. Defaults are not listed; they are valid by construction.
    const SETTINGS: &'static [(Setting, SettingKind)];
    /// Every field an identity step of the gateway sets (forwarded claims,
    /// `X-Consumer`, client-certificate fields), lower case: removed from every client
    /// request before routing, whatever route it takes.
    const IDENTITY_HEADERS: &'static [&'static str];

    /// Process-wide state: policy instances resolved at start-up. Immutable once
    /// built; see the `pipeline` module on how state that changes will be shared.
    type Shared: Send + Sync + 'static;

    /// Builds the shared state, reporting every bad setting at once.
    fn shared() -> Result<Self::Shared, Vec<SettingError>>;

    /// The published key sets the shared state's JWT policies verify with: fetched
    /// before the gateway listens, then kept fresh in the background.
    fn key_sets(shared: &Self::Shared) -> &KeySets;

    /// Builds a worker's gateway (upstream pools) around the shared state. Start-up
    /// has checked every setting beforehand, so an error here is one that appeared in
    /// between (a file that just vanished).
    /// `metrics` is the worker's own shard, which its upstreams count in.
    fn new(shared: Arc<Self::Shared>, metrics: &'static Shard) -> Result<Self, SettingError>;

    /// The connection phase, once per accepted connection on listener `listener`:
    /// `Err` refuses every request on it before routing; `Ok` carries the verdicts
    /// that routes opting out of a listener policy may ignore.
    fn connection(&self, listener: usize, peer: IpAddr) -> Result<Admission, Refusal>;

    /// Runs route `route` (request phase, target, response phase) on a request the
    /// router matched to it, noting in `trail` what the access log reports of it.
    fn handle<'a>(
        &'a self,
        route: usize,
        params: &'a Params<'_, '_>,
        req: Request,
        cx: &'a RequestContext,
        trail: &'a mut Trail,
    ) -> impl Future<Output = Result<Response, Stop>> + 'a;

    /// The answer to a request whose path route `route` matches but whose method no
    /// route takes: the route's admission policies (IP rules) run first, so that a
    /// refused client learns nothing of the route, then 405 with `allowed`.
    fn refuse_method(
        &self,
        route: usize,
        req: &Request,
        cx: &RequestContext,
        allowed: MethodSet,
    ) -> Stop;
}

/// `[admin]`.
#[derive(Debug, Clone, Copy)]
pub struct AdminSpec {
    pub bind: Setting,
    /// An address other than loopback is allowed; without it, start-up refuses one
    /// (which the build could not see when it came from the environment).
    pub expose: bool,
    /// The duration histograms' bounds in nanoseconds; `None`: the default ones.
    pub buckets: Option<&'static [u64]>,
}

impl AdminSpec {
    /// The address to listen on, refused when it leaves this host unasked.
    pub fn addr(&self) -> Result<std::net::SocketAddr, SettingError> {
        let addr = self.bind.bind()?;
        if !self.expose && !addr.ip().is_loopback() {
            return Err(SettingError::new(
                self.bind.origin,
                format!(
                    "the admin listener may bind {addr}, which is not loopback, only with `expose = true` in [admin]"
                ),
            ));
        }
        Ok(addr)
    }
}

/// A route as the admin listener describes it, beside what the router matches on.
#[derive(Debug, Clone, Copy)]
pub struct RouteInfo {
    /// The path as written in gateway.toml, with its parameters' names.
    pub template: &'static str,
    /// The policies the route runs, in order.
    pub policies: &'static [&'static str],
}

/// A `[listeners.NAME]` section.
#[derive(Debug, Clone, Copy)]
pub struct ListenerSpec {
    pub name: &'static str,
    pub bind: Setting,
    pub header_read_timeout: Setting,
    /// Longest pause between two reads of a request body.
    pub body_timeout: Setting,
    /// Longest wait for a client to take more of a response.
    pub send_timeout: Setting,
    /// `None`: no limit.
    pub max_body: Option<Setting>,
    pub max_header_size: Setting,
    pub max_headers: usize,
    /// HTTP/2 streams open at once on one connection.
    pub max_concurrent_streams: u32,
    pub underscores: Underscores,
    pub path_parameters: PathParameters,
    /// `None`: plaintext (HTTP/1.1 and h2c).
    pub tls: Option<ListenerTlsSpec>,
    /// A plaintext listener that answers every request with a 308 to `https://` on
    /// this port.
    pub https_redirect: Option<u16>,
}

/// Which configuration a binary enforces: printed by `--version` and logged at start-up,
/// so an operator can tell exactly what a running gateway was built from.
#[derive(Debug, Clone, Copy)]
pub struct Provenance {
    pub config_file: &'static str,
    /// SHA-256 of the configuration source, hex.
    pub config_sha256: &'static str,
    /// `gateway-build 0.1.0`.
    pub compiler: &'static str,
    /// The policy kinds compiled in; empty for a pure router.
    pub policies: &'static [&'static str],
}

impl std::fmt::Display for Provenance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let policies = if self.policies.is_empty() {
            "none".to_owned()
        } else {
            self.policies.join(", ")
        };
        write!(
            f,
            "config: {} sha256:{}\ncompiler: {}\npolicies: {}",
            self.config_file, self.config_sha256, self.compiler, policies
        )
    }
}

/// An `[upstreams.NAME]` section.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamSpec {
    pub name: &'static str,
    pub targets: &'static [Setting],
    pub connect_timeout: Setting,
    pub response_timeout: Setting,
    pub idle_timeout: Setting,
    /// Longest pause between two reads of a response body or two writes of a request
    /// body.
    pub body_timeout: Setting,
    /// Settings for `https://` targets.
    pub tls: Option<UpstreamTlsSpec>,
}

/// Every setting of a gateway checked at once, so that start-up names all the
/// missing variables and bad values in one go instead of one per attempt.
pub(crate) fn check_settings<G: Gateway>() -> Vec<SettingError> {
    G::SETTINGS
        .iter()
        .filter_map(|(setting, kind)| setting.check(*kind).err())
        .collect()
}
