//! Path normalization and routing: normalizing is idempotent (a normal path is left
//! as it is, and never refused), and routing any path never panics.

#![no_main]

use gateway_runtime::message::methods::MethodSet;
use gateway_runtime::message::request::{PathParameters, normalize_path};
use gateway_runtime::route::router::{RouteSpec, RouteTable};
use libfuzzer_sys::fuzz_target;

const ROUTES: &[RouteSpec<'static>] = &[
    RouteSpec {
        name: "user",
        host: None,
        path: "/api/users/{p0}",
        methods: MethodSet::from_bits(3),
        listeners: 1,
        target: "users",
    },
    RouteSpec {
        name: "files",
        host: None,
        path: "/files/{*p0}",
        methods: MethodSet::ANY,
        listeners: 1,
        target: "files",
    },
    RouteSpec {
        name: "hosted",
        host: Some("example.com"),
        path: "/{p0}/x",
        methods: MethodSet::ANY,
        listeners: 1,
        target: "hosted",
    },
];

fuzz_target!(|input: (bool, bool, &str)| {
    let (keep, hosted, path) = input;
    let parameters = if keep {
        PathParameters::Keep
    } else {
        PathParameters::Reject
    };
    let normal = match normalize_path(path, parameters) {
        Ok(Some(normal)) => normal,
        Ok(None) => path.to_owned(),
        Err(_) => return,
    };
    // `Ok(None)` says "normal" without a second look; `Some` of the same path is the
    // slow path's answer for a path that only looked as if it might not be.
    let again = normalize_path(&normal, parameters);
    assert!(
        matches!(&again, Ok(None)) || matches!(&again, Ok(Some(p)) if *p == normal),
        "{path:?} normalized to {normal:?}, which normalizes to {again:?}"
    );
    let table = RouteTable::new(ROUTES, 0);
    let host = hosted.then_some("example.com");
    let _ = table.lookup(host, &http::Method::GET, &normal);
});
