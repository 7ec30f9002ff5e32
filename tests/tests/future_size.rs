//! The request future's size, budgeted: every request's future is moved by copying, and
//! each connection's task keeps room for one, so growth costs every request. An `async
//! fn` that holds the request twice (rust-lang/rust#62958) or a large value held across
//! an `await` shows up here as a failing test.

include!(concat!(env!("OUT_DIR"), "/sizes.rs"));

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use gateway_runtime::__private::{self as rt, Gateway as _};
use gateway_runtime::h1::framing::BodyLength;
use gateway_runtime::h1::request_body::{Http1Body, Inbound, RequestBody};
use gateway_runtime::io::Stream;
use gateway_runtime::message::fields::Fields;
use gateway_runtime::observe::metrics::{Catalog, Registry};
use gateway_runtime::route::router::{Lookup, RouteTable};

/// Bytes of the future of `Gateway::handle` (request phase, target, response phase)
/// for a request to `path`.
async fn handle_future_size(gateway: &gateway::Gateway, path: &str) -> usize {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let client = tokio::net::TcpStream::connect(listener.local_addr().expect("address"))
        .await
        .expect("connect");
    let (reader, _writer) = Stream::Tcp(client).into_split();
    let inbound = Rc::new(RefCell::new(Inbound::new(reader, Duration::from_secs(60))));
    let table = RouteTable::new(<gateway::Gateway as rt::Gateway>::ROUTES, 0);
    let Lookup::Found { route, params } = table.lookup(None, &http::Method::GET, path) else {
        panic!("{path} is routed");
    };
    let req = rt::Request {
        method: http::Method::GET,
        uri: path.parse().expect("path"),
        version: http::Version::HTTP_11,
        fields: Fields::with_capacity(1, 64),
        body: RequestBody::Http1(Http1Body::new(inbound, BodyLength::Empty)),
    };
    let cx = rt::RequestContext {
        listener: "public",
        listener_id: 0,
        max_body: u64::MAX,
        underscores: Default::default(),
        path_parameters: Default::default(),
        client: "127.0.0.1:40000".parse().expect("address"),
        client_ip: http::HeaderValue::from_static("127.0.0.1"),
        admission: rt::Admission::default(),
        response_timer: Default::default(),
        tls: None,
        https_redirect: None,
    };
    let mut trail = rt::Trail::default();
    let future = gateway.handle(route, &params, req, &cx, &mut trail);
    std::mem::size_of_val(&future)
}

/// The future of `handle`, which has room for the largest route's (here a route
/// running every policy kind), stays within budget, whichever route it runs.
#[tokio::test]
async fn request_futures_stay_within_budget() {
    let shared = gateway::Gateway::shared().expect("literal settings");
    let metrics = Registry::leak(Catalog::of::<gateway::Gateway>(), 1, None).shard(0);
    let gateway = gateway::Gateway::new(Arc::new(shared), metrics).expect("literal settings");
    for path in ["/plain/1", "/guarded/1"] {
        let size = handle_future_size(&gateway, path).await;
        println!("handle future for {path}: {size} bytes");
        assert!(size <= BUDGET, "{path}: {size} > {BUDGET} bytes");
    }
}

/// Measured: 1,424 bytes (a plain route alone took 1,528 before the pipeline's
/// phases and pooled connections moving boxed; body timeouts and bodies in hand added
/// 16; the W3C trace context of the upstream request being written, and the trail
/// lent to the route, 16); the slack is for tokens that later policies add.
const BUDGET: usize = 1456;
