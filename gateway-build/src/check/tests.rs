//! Rules of `check`, one test each, on small configurations.

use crate::Severity;

const BASE: &str = r#"
[listeners.public]
bind = "127.0.0.1:8080"

[listeners.internal]
bind = "127.0.0.1:8081"

[upstreams.users]
targets = ["http://127.0.0.1:8001"]
"#;

/// Messages of all errors for `BASE` plus `routes`.
fn errors(routes: &str) -> Vec<String> {
    let source = format!("{BASE}{routes}");
    match crate::generate("gateway.toml", &source) {
        Ok(_) => Vec::new(),
        Err(d) => d
            .items
            .iter()
            .filter(|i| i.severity == Severity::Error)
            .map(|i| i.message.clone())
            .collect(),
    }
}

fn route(fields: &str) -> String {
    format!("\n[[routes]]\nupstream = \"users\"\n{fields}\n")
}

/// A route for every method after a GET route takes the other methods: no error. The
/// other way round, the GET route could never match.
#[test]
fn declaration_order_decides_shadowing() {
    let specific_first = route("path = \"/u\"\nmethods = [\"GET\"]") + &route("path = \"/u\"");
    let found =
        crate::generate("gateway.toml", &format!("{BASE}{specific_first}")).expect("no error");
    let warnings = found.warnings.short_lines(Severity::Warning);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0]
            .contains("route `/u` never gets GET, HEAD: routes declared before it take them"),
        "{warnings:?}"
    );
    let general_first = route("path = \"/u\"") + &route("path = \"/u\"\nmethods = [\"GET\"]");
    assert_eq!(
        errors(&general_first),
        ["route `/u` can never match: routes declared before it take every request it would"]
    );
}

/// Several earlier routes together can shadow a later one.
#[test]
fn shadowing_by_several_routes() {
    let routes = route("path = \"/u/{a}\"\nmethods = [\"GET\"]")
        + &route("path = \"/u/{b}\"\nmethods = [\"POST\"]")
        + &route("path = \"/u/{c}\"\nmethods = [\"POST\", \"GET\"]");
    assert_eq!(
        errors(&routes),
        ["route `/u/{c}` can never match: routes declared before it take every request it would"]
    );
}

/// Same pattern, disjoint methods: two routes, no error.
#[test]
fn disjoint_methods_are_not_duplicates() {
    let routes = route("path = \"/u/{id}\"\nmethods = [\"GET\"]")
        + &route("path = \"/u/{uid}\"\nmethods = [\"POST\"]");
    assert_eq!(errors(&routes), Vec::<String>::new());
}

/// GET brings HEAD, so GET and HEAD on one pattern overlap.
#[test]
fn get_and_head_overlap() {
    let routes =
        route("path = \"/u\"\nmethods = [\"GET\"]") + &route("path = \"/u\"\nmethods = [\"HEAD\"]");
    assert_eq!(errors(&routes).len(), 1);
}

/// A host-specific route does not duplicate a route for any host.
#[test]
fn hosts_separate_routes() {
    let routes = route("path = \"/u\"")
        + &route("path = \"/u\"\nhost = \"Api.Example.com\"")
        + &route("path = \"/u\"\nhost = \"api.example.com\"");
    let found = errors(&routes);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("duplicate route"));
}

/// Routes on different listeners do not collide.
#[test]
fn listeners_separate_routes() {
    let routes = route("path = \"/u\"\nlisteners = [\"public\"]")
        + &route("path = \"/u\"\nlisteners = [\"internal\"]");
    assert_eq!(errors(&routes), Vec::<String>::new());
    let routes = route("path = \"/u\"\nlisteners = [\"publik\"]");
    assert_eq!(
        errors(&routes),
        ["unknown listener `publik` (did you mean `public`?)"]
    );
}

/// Patterns the router cannot hold side by side are refused at build time.
#[test]
fn conflicting_patterns() {
    let routes = route("path = \"/files/{*rest}\"") + &route("path = \"/files/{name}/{*rest}\"");
    let found = errors(&routes);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        found[0],
        "path `/files/{name}/{*rest}` conflicts with `/files/{*rest}`, declared before it"
    );
}

/// Host names: no ports, no spaces, no empty labels.
#[test]
fn host_names() {
    for bad in [
        "api.example.com:8080",
        "api example.com",
        "api..example.com",
        "-api.example.com",
    ] {
        let found = errors(&route(&format!("path = \"/u\"\nhost = \"{bad}\"")));
        assert_eq!(found, [format!("`{bad}` is not a host name")]);
    }
}

/// A route must forward somewhere, and `rewrite` excludes `strip_prefix`.
#[test]
fn targets_and_path_changes() {
    let found = errors("\n[[routes]]\npath = \"/u\"\n");
    assert_eq!(found, ["route `/u` has no target"]);
    let found = errors(&route(
        "path = \"/api/u\"\nstrip_prefix = \"/api\"\nrewrite = \"/u\"",
    ));
    assert_eq!(found, ["`rewrite` and `strip_prefix` cannot both be set"]);
}

/// Unknown sections, empty method lists, out-of-range workers and empty targets.
#[test]
fn shapes_and_ranges() {
    let found = errors("[gateway]\nname = \"x\"\nworkers = 0\n[upstreams.empty]\ntargets = []\n");
    assert!(
        found
            .iter()
            .any(|m| m.starts_with("`workers = 0` is out of range")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|m| m == "upstream `empty` has no targets"),
        "{found:?}"
    );
    let found = errors(&route("path = \"/u\"\nmethods = []"));
    assert_eq!(found, ["`methods` is empty, so the route matches nothing"]);
}

/// Unused upstreams are warnings, not errors.
#[test]
fn unused_upstream_is_a_warning() {
    let source = format!(
        "{BASE}[upstreams.spare]\ntargets = [\"http://127.0.0.1:9\"]\n{}",
        route("path = \"/u\"")
    );
    let output = crate::generate("gateway.toml", &source).expect("warnings do not fail the build");
    assert_eq!(
        output.warnings.short_lines(Severity::Warning),
        ["gateway.toml:10:12: warning[G0103]: upstream `spare` is not used by any route"]
    );
}

/// With no listener the gateway would serve nothing.
#[test]
fn a_listener_is_required() {
    let source = "[upstreams.users]\ntargets = [\"http://127.0.0.1:8001\"]\n[[routes]]\npath = \"/\"\nupstream = \"users\"\n";
    let d = crate::generate("gateway.toml", source).expect_err("no listener");
    assert_eq!(
        d.items[0].message,
        "no listener: the gateway would accept no traffic"
    );
}
