//! The request pipeline: the named phases every request runs through, what each may do,
//! and the one place where a stopped request becomes a response.
//!
//! | phase | runs | may | today |
//! |---|---|---|---|
//! | connection | once per accepted connection (`Gateway::connection`) | refuse the connection | IP rules of a listener |
//! | request | after routing, in the order the route's chain lists its policies | read and change the request; stop it with a `Stop` | IP rules with trusted proxies, IP rules of a route, request header rules |
//! | target | once (`Upstream::forward`) | produce the response, or an `UpstreamError` | the upstream call |
//! | response | in **reverse** order of the request phase, on the target's response | change the response | response header rules |
//! | logging | on every exit, early ones too (`driver`) | observe only | the access log |
//!
//! The generated code owns one function per route that runs its chain as straight-line
//! code: `policy.check(..)?` for each request step, the target's `await`, then each
//! response step. A request step that needs its response half to know something (a
//! value computed from the request, which has moved into the target by then) returns a
//! small token that the response step consumes. Policy order comes from the phase,
//! never from the order of keys in gateway.toml; within a phase, from the chain.
//!
//! A `Stop` (a refusal, a wrong method, an upstream failure) travels up with `?` to
//! `rescue`, which alone turns it into a response and names the reason for the log.
//!
//! **State.** Per-worker state (upstream pools, round-robin counters) lives in the
//! `Gateway` value each worker thread builds, in plain `Cell`s and `Rc`s. Process-wide
//! state is `Gateway::Shared`, built once before the workers start and handed to each
//! worker's `new` in an `Arc`: policy instances resolved at start-up and the route
//! tables. It is immutable, so the request path reads it with one pointer indirection
//! and no atomic operation (the `Arc` is cloned once per worker, not per request).
//! State that must change while the gateway runs (key sets fetched from an identity
//! provider, certificates reloaded) will be a snapshot behind `arc_swap::ArcSwap`: a
//! reader pays one atomic load, and a writer swaps in a whole new snapshot; counters
//! shared by all workers (metrics) are per-worker shards merged when read.

mod driver;
pub mod gateway;
mod stop;

pub(crate) use driver::{Connection, Epilogue};
pub use stop::{Refusal, Stop, StopReason, changed_path, rescue};

use std::net::SocketAddr;

use http::HeaderValue;

/// What the connection phase decided about a connection, for the request phase of the
/// routes that read it: bit `i` is set when the listener's connection-phase policy `i`
/// refused the peer. A route that opts out of that policy ignores its bit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Admission {
    pub refused: u64,
}

impl Admission {
    /// The request phase's view of a connection-phase verdict: `Err` when the policy
    /// at `bit` refused this connection.
    pub fn check(&self, bit: u32, policy: &'static str) -> Result<(), Stop> {
        if self.refused & (1 << bit) == 0 {
            Ok(())
        } else {
            Err(Stop::forbidden(policy))
        }
    }
}

/// What the gateway knows about the connection a request came on; computed once per
/// connection, not per request.
#[derive(Debug)]
pub struct RequestContext {
    pub listener: &'static str,
    /// The listener's index in `Gateway::LISTENERS`.
    pub listener_id: usize,
    /// The listener's request body limit; `u64::MAX` when it has none.
    pub max_body: u64,
    /// What the listener does with field names holding `_`.
    pub underscores: crate::message::request::Underscores,
    /// What the listener does with `;` parameters on path segments.
    pub path_parameters: crate::message::request::PathParameters,
    pub client: SocketAddr,
    /// The client IP, ready to append to `X-Forwarded-For`.
    pub client_ip: HeaderValue,
    /// The connection phase's verdict.
    pub admission: Admission,
    /// Limits the wait for upstream responses; one per connection.
    pub response_timer: crate::timer::ConnectionTimer,
    /// `None` on a plaintext connection.
    pub tls: Option<ConnectionTls>,
    /// A plaintext listener that redirects every request to `https://` on this port.
    pub https_redirect: Option<u16>,
}

/// What one request carries beside itself through its route: the span its upstream
/// requests name as their parent, and what the logging phase reports of it. The driver
/// owns it and lends it to the route's function; kept out of `Request` and `Response`,
/// which every level of the request's future moves.
#[derive(Debug, Default)]
pub struct Trail {
    /// The gateway's span of this request; `None` with tracing off.
    pub trace: Option<crate::observe::trace::SpanContext>,
    /// Who the request comes from, once an authentication step established it: kept
    /// even when a later step stops the request (a 403, a 429), as that is when the
    /// log most needs it.
    pub identity: Option<crate::auth::Identity>,
    /// The upstream target that answered the route's request, and how long it took.
    pub served: Option<crate::message::response::Served>,
    /// The route the request matched (for a 405 too), once routing found it.
    pub route: Option<usize>,
}

/// What a TLS connection's requests need to know of it.
#[derive(Debug)]
pub struct ConnectionTls {
    pub spec: &'static crate::tls::ListenerTlsSpec,
    /// The client certificate's verified identity, when it presented one.
    pub identity: Option<Box<crate::tls::identity::ClientIdentity>>,
    /// The protocol version agreed, as the access log names it.
    pub version: &'static str,
}
