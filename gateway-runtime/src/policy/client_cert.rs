//! Client-certificate rules: a route that needs a verified client certificate, and
//! optionally one whose subject alternative names match a list. On a listener whose
//! `client_auth` is `optional`, this is what makes some routes mutual-TLS only; on any
//! listener, the names are authorization by workload identity (SPIFFE IDs, DNS names).
//!
//! A pattern is a name matched whole, a URI prefix ending in `*`
//! (`spiffe://example.org/ns/ops/*`), or a DNS wildcard for one label
//! (`*.clients.example.com`). DNS names match case-insensitively, URIs exactly.

/// Checks a `san` pattern as the compiler accepts it.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    let stars = pattern.matches('*').count();
    let valid = match stars {
        0 => !pattern.is_empty(),
        1 => {
            (pattern.starts_with("*.") && pattern.len() > 2)
                || (pattern.ends_with('*') && pattern.len() > 1)
        }
        _ => false,
    };
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{pattern}` is not a name pattern: write a whole name, a prefix ending in `*`, or `*.` and a DNS name"
        ))
    }
}

/// Whether the certificate name `name` matches `pattern`.
pub fn matches(pattern: &str, name: &str) -> bool {
    if let Some(parent) = pattern.strip_prefix("*.") {
        return name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(parent));
    }
    if let Some(prefix) = pattern.strip_suffix('*') {
        return name.starts_with(prefix);
    }
    if pattern.contains("://") {
        pattern == name
    } else {
        pattern.eq_ignore_ascii_case(name)
    }
}

#[cfg(feature = "server")]
pub use rule::ClientCertRule;

#[cfg(feature = "server")]
mod rule {
    use http::StatusCode;

    use crate::pipeline::{Refusal, RequestContext, Stop};

    /// A compiled `client_cert` policy.
    #[derive(Debug, Clone, Copy)]
    pub struct ClientCertRule {
        pub name: &'static str,
        /// Empty: any verified certificate.
        pub san: &'static [&'static str],
    }

    impl ClientCertRule {
        /// The request phase: 403 without a verified certificate, or with one none
        /// of whose names matches.
        pub fn check(&self, cx: &RequestContext) -> Result<(), Stop> {
            let identity = cx.tls.as_ref().and_then(|tls| tls.identity.as_deref());
            let Some(identity) = identity else {
                return Err(self.refuse("client certificate required"));
            };
            let allowed = self.san.is_empty()
                || identity
                    .names
                    .iter()
                    .any(|name| self.san.iter().any(|p| super::matches(p, name)));
            if allowed {
                Ok(())
            } else {
                Err(self.refuse("client certificate not allowed"))
            }
        }

        fn refuse(&self, message: &'static str) -> Stop {
            Stop::Refused(Refusal {
                status: StatusCode::FORBIDDEN,
                message,
                by: self.name,
                challenge: None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact names, URI prefixes and one-label DNS wildcards.
    #[test]
    fn patterns() {
        assert!(matches("spiffe://test/alice", "spiffe://test/alice"));
        assert!(!matches("spiffe://test/alice", "spiffe://test/alice2"));
        assert!(!matches("spiffe://test/alice", "SPIFFE://test/alice"));
        assert!(matches(
            "spiffe://test/ns/ops/*",
            "spiffe://test/ns/ops/bob"
        ));
        assert!(!matches(
            "spiffe://test/ns/ops/*",
            "spiffe://test/ns/dev/bob"
        ));
        assert!(matches("*.clients.test", "Alice.Clients.test"));
        assert!(!matches("*.clients.test", "a.b.clients.test"));
        assert!(!matches("*.clients.test", "clients.test"));
        assert!(matches("api.test", "API.test"));
        assert!(check_pattern("a*b").is_err());
        assert!(check_pattern("*").is_err());
        assert!(check_pattern("").is_err());
        assert!(check_pattern("spiffe://x/*").is_ok());
    }
}
