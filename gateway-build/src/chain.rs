//! Which policies a route runs: its listener's, then its group's, then its own, less
//! the ones it skips by name. A route served on several listeners may run a different
//! chain on each. The checks (names, duplicates, skips) and the lowering read chains
//! from here, so both agree on what a route runs.

use toml::Spanned;

use crate::check::listeners::listeners_in;
use crate::syntax::{Config, Route};

/// Where a route got a policy from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The listener at this index.
    Listener(usize),
    Group,
    Route,
}

/// One policy in a route's chain, by name as written.
#[derive(Debug, Clone, Copy)]
pub struct Attached<'c> {
    pub name: &'c Spanned<String>,
    pub source: Source,
}

/// The chain of `route` on listener `listener`, in order; names are as written (the
/// checks report unknown ones).
pub fn resolve<'c>(config: &'c Config, route: &'c Route, listener: usize) -> Vec<Attached<'c>> {
    let skipped = |name: &str| {
        route
            .skip_policies
            .iter()
            .flat_map(|s| s.get_ref())
            .any(|s| s.get_ref() == name)
    };
    let mut chain = Vec::new();
    if let Some((_, l)) = config.listeners.get(listener) {
        for name in l.get_ref().policies.iter().flat_map(|p| p.get_ref()) {
            if !skipped(name.get_ref()) {
                chain.push(Attached {
                    name,
                    source: Source::Listener(listener),
                });
            }
        }
    }
    for name in group_policies(config, route) {
        if !skipped(name.get_ref()) {
            chain.push(Attached {
                name,
                source: Source::Group,
            });
        }
    }
    for name in route.policies.iter().flat_map(|p| p.get_ref()) {
        chain.push(Attached {
            name,
            source: Source::Route,
        });
    }
    chain
}

/// The policies a route inherits (from any listener it is served on, or its group),
/// before skips: what `skip_policies` may name.
pub fn inherited<'c>(config: &'c Config, route: &'c Route, listeners: u64) -> Vec<&'c str> {
    let mut names: Vec<&str> = listeners_in(listeners, config.listeners.len())
        .flat_map(|i| config.listeners[i].1.get_ref().policies.iter())
        .flat_map(|p| p.get_ref())
        .map(|n| n.get_ref().as_str())
        .collect();
    names.extend(group_policies(config, route).map(|n| n.get_ref().as_str()));
    names
}

fn group_policies<'c>(
    config: &'c Config,
    route: &Route,
) -> impl Iterator<Item = &'c Spanned<String>> {
    let group = route.group.as_ref().and_then(|g| {
        config
            .groups
            .iter()
            .find(|(n, _)| n.get_ref() == g.get_ref())
    });
    group
        .into_iter()
        .flat_map(|(_, g)| g.get_ref().policies.get_ref())
}
