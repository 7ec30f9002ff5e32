//! Aggregation: a route whose target is several backend calls, run concurrently,
//! whose JSON answers become one response.
//!
//! The compiler fixes the calls: each is a `CallSpec` (an upstream, a path template
//! filled with the route's parameters and query, the request fields to pass on, a
//! timeout, a body bound, whether the response needs it, and field rules), and the
//! generated target joins that many concrete `call` futures (no boxing, the arity a
//! constant) and hands the answers to `respond`, which merges them in the order the
//! configuration lists the calls (`merge`). Before the first call, `admit` refuses a
//! request that is the client's fault (400), so that no backend sees it.
//!
//! **Dependent calls.** A call may use a value of an earlier call's answer
//! (`/teams/{user.team_id}`). The compiler puts the calls in stages, each stage's
//! calls depending only on earlier stages', and joins each stage's calls in turn; a
//! call whose answer it needs failed fails too, without being made.
//!
//! **Partial failure.** A call that fails (no connection, a timeout, a status that is
//! not 2xx, a body over its bound, a body that is not JSON) fails the whole response
//! with 502 if it is `required`; otherwise its `fallback` takes its place, its key is
//! listed in `X-Gateway-Partial`, and the body's `_errors` object says why. A response
//! without that field and object is complete.
//!
//! **Caching.** The response is the gateway's own, so it says what caches may do with
//! it (`caching`): no more than the strictest answer allows, `private` for a client's
//! own, `no-store` when degraded, and `Vary` with the client fields the calls pass on.

mod answer;
mod caching;
mod call;
mod merge;
pub mod template;

use std::time::Duration;

use http_body::Body as _;

use crate::pipeline::Stop;
use crate::pipeline::gateway::Request;
pub use crate::transform::shape::{Rules, Step};
pub use answer::Answer;
pub use call::{Answered, CallError, call};
pub use merge::respond;
pub use template::{Piece, Source};

/// Refuses, with 400 before any backend is asked anything, a request whose body
/// bytes that came with the head are badly framed, or whose query values cannot fill
/// the paths of `spec`'s calls that use them. The calls never send the client's body,
/// but it is read as a proxied route's is: framing that servers read differently is
/// refused wherever it arrives, and a small body read whole keeps the connection.
pub fn admit(spec: &AggregateSpec, req: &mut Request) -> Result<(), Stop> {
    if !req.body.is_end_stream() && req.body.take_in_hand().is_err() {
        return Err(Stop::bad_request("request body could not be read"));
    }
    if !template::query_values_fit(spec.query_in_paths, &req.uri) {
        return Err(Stop::bad_request(
            "a query value a backend path uses is missing or not one path segment",
        ));
    }
    Ok(())
}

/// How the answers are put together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// Each answer under its call's key.
    Nested,
    /// The members of each answer (an object) at the top level; where two answers
    /// have a member of one name, the call listed first keeps it. An answer that is
    /// not an object goes under its key.
    Flat,
}

/// An aggregate route's calls, as the compiler lays them out.
#[derive(Debug)]
pub struct AggregateSpec {
    /// The route, for logs.
    pub route: &'static str,
    pub merge: Merge,
    pub calls: &'static [CallSpec],
    /// Whether the response is the client's own: the route authenticates it (a
    /// policy, or a listener's client certificates), or a call passes on its
    /// `Authorization` or `Cookie`. Then no shared cache may store it.
    pub private: bool,
    /// The client fields the calls pass on, which the response may vary with: its
    /// `Vary` (lower case, comma-separated); `None` if they pass on none.
    pub vary: Option<&'static str>,
    /// The query parameters a call puts in the path of its target (before the `?`),
    /// which `admit` checks.
    pub query_in_paths: &'static [&'static str],
}

/// One backend call of an aggregate route.
#[derive(Debug)]
pub struct CallSpec {
    /// Where the answer goes in the response, and its name in `_errors`.
    pub key: &'static str,
    /// The upstream's name, for logs.
    pub upstream: &'static str,
    pub method: &'static str,
    /// The target, filled with the route's parameters, the request's query values
    /// and the answers of the calls this one depends on; the request's own query is
    /// not passed on.
    pub path: &'static [Piece],
    /// A JSON body, filled likewise.
    pub body: Option<&'static [Piece]>,
    /// Request fields passed to the backend (lower case), identity fields included.
    pub forward: &'static [&'static str],
    /// From the start of the call to the end of its body.
    pub timeout: Duration,
    /// The longest body read.
    pub max_body: usize,
    /// Whether a failure of this call fails the response.
    pub required: bool,
    /// JSON that takes the place of an optional call's answer when it fails.
    pub fallback: &'static str,
    /// How the answer is shaped (`shape`).
    pub rules: Rules,
}
