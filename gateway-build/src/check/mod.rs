//! Validation: every rule that a parsed gateway.toml must satisfy before lowering.
//!
//! Each submodule holds one family of rules and pushes into one shared list, so the
//! user sees every error of the file at once. Lowering (`plan`) runs only when this
//! returns no errors, and may then rely on every rule here.

pub(crate) mod aggregate;
pub(crate) mod auth;
mod body_rules;
pub(crate) mod limits;
pub(crate) mod lints;
pub(crate) mod listeners;
pub(crate) mod policies;
pub(crate) mod references;
pub(crate) mod routes;
mod tls;
mod values;

use crate::diagnostic::Diagnostic;
use crate::syntax::Config;

/// Runs every rule; returns errors and warnings in no particular order.
pub fn check(config: &Config) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    values::check(config, &mut found);
    listeners::check(config, &mut found);
    references::check(config, &mut found);
    routes::check(config, &mut found);
    aggregate::check(config, &mut found);
    body_rules::check(config, &mut found);
    policies::check(config, &mut found);
    tls::check(config, &mut found);
    auth::check(config, &mut found);
    limits::check(config, &mut found);
    crate::route_tests::check(config, &mut found);
    lints::check(config, &mut found);
    found
}

#[cfg(test)]
mod tests;
