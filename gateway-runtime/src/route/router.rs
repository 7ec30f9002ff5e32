//! Finds the route for a request: host first (exact, case-insensitive), then the
//! routes for any host; within each, matchit on the path and a bit test on the method.
//! Built once per listener at start-up from the compiled route table.

use http::Method;

use crate::message::methods::MethodSet;

/// One matchit tree; each distinct pattern leads to the routes it serves, told apart by method.
#[derive(Debug, Default)]
struct PathRouter<'a> {
    paths: matchit::Router<usize>,
    /// The pattern of each entry, to find it again when a second route shares it.
    patterns: Vec<&'a str>,
    entries: Vec<Vec<(MethodSet, usize)>>,
}

/// One `[[routes]]` entry, as the router needs it.
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec<'a> {
    /// For logs.
    pub name: &'a str,
    /// Lower-case; `None` for every host.
    pub host: Option<&'a str>,
    /// Canonical matchit pattern (parameters named by position).
    pub path: &'a str,
    pub methods: MethodSet,
    /// Bit `i`: served on listener `i`.
    pub listeners: u64,
    /// What the route forwards to, for logs.
    pub target: &'a str,
}

/// The routes served on one listener.
#[derive(Debug, Default)]
pub struct RouteTable<'a> {
    /// Lower-case host name and its routes; few enough that a scan beats hashing.
    hosts: Vec<(&'a str, PathRouter<'a>)>,
    any_host: PathRouter<'a>,
}

/// The result of a lookup.
pub enum Lookup<'r, 'p> {
    Found {
        route: usize,
        params: matchit::Params<'r, 'p>,
    },
    /// The path is routed, but not for this method: the methods it is routed for, and
    /// the first route of the path, whose admission policies run before the 405.
    MethodNotAllowed {
        route: usize,
        methods: MethodSet,
    },
    NotFound,
}

impl<'a> RouteTable<'a> {
    /// The table for listener `listener` (its index in the compiled listener list).
    /// Routes sharing a pattern are tried in the order given.
    ///
    /// The compiler has already refused conflicts, so inserts succeed.
    pub fn new(routes: &[RouteSpec<'a>], listener: usize) -> Self {
        let mut table = RouteTable::default();
        for (id, spec) in routes.iter().enumerate() {
            if spec.listeners & (1 << listener) == 0 {
                continue;
            }
            let router = match spec.host {
                None => &mut table.any_host,
                Some(host) => match table.hosts.iter().position(|(h, _)| *h == host) {
                    Some(i) => &mut table.hosts[i].1,
                    None => {
                        table.hosts.push((host, PathRouter::default()));
                        &mut table.hosts.last_mut().expect("just pushed").1
                    }
                },
            };
            router.insert(spec.path, spec.methods, id);
        }
        table
    }

    /// Looks up a request. `host` is the request's host without port, any case.
    pub fn lookup<'r, 'p>(
        &'r self,
        host: Option<&str>,
        method: &Method,
        path: &'p str,
    ) -> Lookup<'r, 'p> {
        let mut allowed: Option<(usize, MethodSet)> = None;
        for router in self.routers(host) {
            let Ok(matched) = router.paths.at(path) else {
                continue;
            };
            let routes = &router.entries[*matched.value];
            match routes.iter().find(|(methods, _)| methods.contains(method)) {
                Some(&(_, route)) => {
                    return Lookup::Found {
                        route,
                        params: matched.params,
                    };
                }
                None => {
                    let methods = routes
                        .iter()
                        .fold(MethodSet::ANY, |set, (m, _)| set.union(*m));
                    allowed = Some(match allowed {
                        None => (routes[0].1, methods),
                        Some((first, a)) => (first, a.union(methods)),
                    });
                }
            }
        }
        match allowed {
            Some((route, methods)) => Lookup::MethodNotAllowed { route, methods },
            None => Lookup::NotFound,
        }
    }
}

impl RouteTable<'_> {
    /// Every method routed for this path and host, for `Allow`.
    pub fn allowed(&self, host: Option<&str>, path: &str) -> MethodSet {
        let mut allowed = 0;
        for router in self.routers(host) {
            if let Ok(matched) = router.paths.at(path) {
                for (methods, _) in &router.entries[*matched.value] {
                    if methods.is_any() {
                        return MethodSet::ANY;
                    }
                    allowed |= methods.bits();
                }
            }
        }
        MethodSet::from_bits(allowed)
    }

    /// The routers a request with this host tries, in order: its host's, then any host's.
    fn routers(&self, host: Option<&str>) -> impl Iterator<Item = &PathRouter<'_>> {
        let host_router = host.and_then(|h| {
            self.hosts
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(h))
                .map(|(_, r)| r)
        });
        host_router.into_iter().chain([&self.any_host])
    }
}

impl<'a> PathRouter<'a> {
    fn insert(&mut self, path: &'a str, methods: MethodSet, id: usize) {
        if let Some(entry) = self.patterns.iter().position(|p| *p == path) {
            self.entries[entry].push((methods, id));
            return;
        }
        // Fails only for patterns the compiler refuses as conflicting.
        if self.paths.insert(path, self.entries.len()).is_ok() {
            self.patterns.push(path);
            self.entries.push(vec![(methods, id)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &[RouteSpec<'static>] = &[
        RouteSpec {
            name: "a",
            host: None,
            path: "/users/{p0}",
            methods: MethodSet::from_bits(0b11),
            listeners: 1,
            target: "u",
        },
        RouteSpec {
            name: "b",
            host: None,
            path: "/users/{p0}",
            methods: MethodSet::from_bits(0b100),
            listeners: 1,
            target: "u",
        },
        RouteSpec {
            name: "c",
            host: Some("api.example.com"),
            path: "/users/{p0}",
            methods: MethodSet::ANY,
            listeners: 1,
            target: "u",
        },
        RouteSpec {
            name: "d",
            host: None,
            path: "/only-b",
            methods: MethodSet::ANY,
            listeners: 2,
            target: "u",
        },
    ];

    fn found(lookup: Lookup<'_, '_>) -> Option<usize> {
        match lookup {
            Lookup::Found { route, .. } => Some(route),
            _ => None,
        }
    }

    /// Method, host and listener all take part in the match.
    #[test]
    fn lookups() {
        let table = RouteTable::new(ROUTES, 0);
        assert_eq!(found(table.lookup(None, &Method::GET, "/users/1")), Some(0));
        assert_eq!(
            found(table.lookup(None, &Method::POST, "/users/1")),
            Some(1)
        );
        assert_eq!(
            found(table.lookup(Some("API.example.com"), &Method::PUT, "/users/1")),
            Some(2)
        );
        match table.lookup(None, &Method::PUT, "/users/1") {
            Lookup::MethodNotAllowed { route, methods } => {
                assert_eq!(route, 0);
                assert_eq!(methods.names().collect::<Vec<_>>(), ["GET", "HEAD", "POST"])
            }
            _ => panic!("expected 405"),
        }
        assert!(matches!(
            table.lookup(None, &Method::GET, "/only-b"),
            Lookup::NotFound
        ));
        let other = RouteTable::new(ROUTES, 1);
        assert_eq!(found(other.lookup(None, &Method::GET, "/only-b")), Some(3));
    }
}
