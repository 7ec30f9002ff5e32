//! The contract between generated code and the runtime: the compiled tables as
//! constants, and one `handle` that the generated code implements as a `match`.

use std::future::Future;
use std::net::SocketAddr;

use http::{HeaderValue, Method, Uri, Version};

use crate::fields::Fields;
use crate::request_body::RequestBody;

use crate::router::RouteSpec;
use crate::settings::{Setting, SettingError};

pub use crate::response::Response;
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
/// its `handle` futures need to be `Send`: per-thread state needs no locks.
pub trait Gateway: Sized + 'static {
    const NAME: &'static str;
    const PROVENANCE: Provenance;
    /// Worker threads; `None`: one per core.
    const WORKERS: Option<Setting>;
    const SHUTDOWN_TIMEOUT: Setting;
    const ADMIN: Option<Setting>;
    const LISTENERS: &'static [ListenerSpec];
    const UPSTREAMS: &'static [UpstreamSpec];
    /// Indexed by route id.
    const ROUTES: &'static [RouteSpec<'static>];

    /// Builds the upstream pools. Start-up has checked every setting beforehand, so
    /// an error here is one that appeared in between (a file that just vanished).
    fn new() -> Result<Self, SettingError>;

    /// Runs route `route` on a request the router matched to it.
    fn handle(
        &self,
        route: usize,
        params: &Params<'_, '_>,
        req: Request,
        cx: &RequestContext,
    ) -> impl Future<Output = Response>;
}

/// A `[listeners.NAME]` section.
#[derive(Debug, Clone, Copy)]
pub struct ListenerSpec {
    pub name: &'static str,
    pub bind: Setting,
    pub header_read_timeout: Setting,
    /// `None`: no limit.
    pub max_body: Option<Setting>,
    pub max_header_size: Setting,
    pub max_headers: usize,
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
}

/// Every setting of a gateway checked at once, so that start-up names all the
/// missing variables and bad values in one go instead of one per attempt.
pub(crate) fn check_settings<G: Gateway>() -> Vec<SettingError> {
    let mut errors = Vec::new();
    let mut check = |result: Result<(), SettingError>| {
        if let Err(e) = result {
            errors.push(e);
        }
    };
    check(G::SHUTDOWN_TIMEOUT.duration().map(drop));
    if let Some(workers) = G::WORKERS {
        check(workers.workers().map(drop));
    }
    if let Some(admin) = G::ADMIN {
        check(admin.bind().map(drop));
    }
    for listener in G::LISTENERS {
        check(listener.bind.bind().map(drop));
        check(listener.header_read_timeout.duration().map(drop));
        check(listener.max_header_size.header_size().map(drop));
        if let Some(max_body) = listener.max_body {
            check(max_body.size().map(drop));
        }
    }
    for upstream in G::UPSTREAMS {
        for target in upstream.targets {
            check(target.target().map(drop));
        }
        for timeout in [
            upstream.connect_timeout,
            upstream.response_timeout,
            upstream.idle_timeout,
        ] {
            check(timeout.duration().map(drop));
        }
    }
    errors
}

/// What the gateway knows about the connection a request came on; computed once per
/// connection, not per request.
#[derive(Debug)]
pub struct RequestContext {
    pub listener: &'static str,
    /// The listener's request body limit; `u64::MAX` when it has none.
    pub max_body: u64,
    pub client: SocketAddr,
    /// The client IP, ready to append to `X-Forwarded-For`.
    pub client_ip: HeaderValue,
    /// Limits the wait for upstream responses; one per connection.
    pub response_timer: crate::timer::ConnectionTimer,
}
