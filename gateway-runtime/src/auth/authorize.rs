//! Authorization: what an authenticated identity must have to use a route. Every rule
//! given must hold; a rule reads the claims of a token or the groups of a consumer,
//! and an identity of the other kind does not satisfy it.

use serde_json::Value;

use super::Identity;
use super::claims::{Claims, lookup};
use super::identity::forbidden;
use crate::pipeline::Stop;

/// `authorize = { … }` of a policy.
#[derive(Debug)]
pub struct AuthorizeRule {
    pub name: &'static str,
    /// Every one of these OAuth scopes, read from `scope` (space-separated, RFC 8693
    /// §4.2) or `scp` (an array or a string).
    pub scopes: &'static [&'static str],
    /// Any one of these roles, in the claim `roles_claim`.
    pub roles: &'static [&'static str],
    pub roles_claim: &'static str,
    /// Each claim equal to, or an array holding, any of its values.
    pub claims: &'static [ClaimRule],
    /// The consumer in any one of these groups.
    pub groups: &'static [&'static str],
}

#[derive(Debug)]
pub struct ClaimRule {
    pub claim: &'static str,
    pub any_of: &'static [&'static str],
}

impl AuthorizeRule {
    pub fn check(&self, identity: &Identity) -> Result<(), Stop> {
        match identity {
            Identity::Token(token) => self.check_claims(&token.claims),
            Identity::Introspected(answer) => match &answer.claims {
                Some(claims) => self.check_claims(claims),
                None => Err(forbidden(self.name, "token not active", false)),
            },
            Identity::Consumer(consumer) => {
                let claims_rules =
                    !self.scopes.is_empty() || !self.roles.is_empty() || !self.claims.is_empty();
                if claims_rules {
                    return Err(forbidden(
                        self.name,
                        "credentials without the claims required",
                        false,
                    ));
                }
                if !self.groups.is_empty()
                    && !consumer.groups.iter().any(|g| self.groups.contains(g))
                {
                    return Err(forbidden(
                        self.name,
                        "consumer not in an allowed group",
                        false,
                    ));
                }
                Ok(())
            }
        }
    }

    /// The claims of a token or an introspection answer against the rules.
    pub fn check_claims(&self, claims: &Claims) -> Result<(), Stop> {
        if !self.groups.is_empty() {
            return Err(forbidden(
                self.name,
                "credentials without a consumer group",
                false,
            ));
        }
        if !self.scopes.iter().all(|scope| has_scope(claims, scope)) {
            return Err(forbidden(self.name, "insufficient scope", true));
        }
        if !self.roles.is_empty() {
            let roles = lookup(claims, self.roles_claim);
            if !self
                .roles
                .iter()
                .any(|role| roles.is_some_and(|r| holds(r, role)))
            {
                return Err(forbidden(self.name, "required role missing", false));
            }
        }
        for rule in self.claims {
            let value = lookup(claims, rule.claim);
            if !rule
                .any_of
                .iter()
                .any(|wanted| value.is_some_and(|v| holds(v, wanted)))
            {
                return Err(forbidden(self.name, "required claim value missing", false));
            }
        }
        Ok(())
    }
}

/// Whether the token grants `scope`: in the space-separated `scope` string, or in
/// `scp` as an array or such a string.
fn has_scope(claims: &Claims, scope: &str) -> bool {
    let in_text = |v: &Value| v.as_str().is_some_and(|s| s.split(' ').any(|s| s == scope));
    claims.get("scope").is_some_and(in_text)
        || claims
            .get("scp")
            .is_some_and(|scp| in_text(scp) || holds_in_array(scp, scope))
}

/// Whether `value` is `wanted`, or an array with `wanted` among its elements.
fn holds(value: &Value, wanted: &str) -> bool {
    value.as_str() == Some(wanted) || holds_in_array(value, wanted)
}

fn holds_in_array(value: &Value, wanted: &str) -> bool {
    value
        .as_array()
        .is_some_and(|items| items.iter().any(|item| item.as_str() == Some(wanted)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: AuthorizeRule = AuthorizeRule {
        name: "admins",
        scopes: &["orders:read"],
        roles: &["admin"],
        roles_claim: "realm_access.roles",
        claims: &[ClaimRule {
            claim: "tenant",
            any_of: &["acme", "globex"],
        }],
        groups: &[],
    };

    fn check(json: &str) -> Result<(), u16> {
        let claims: Claims = serde_json::from_str(json).expect("claims");
        RULE.check_claims(&claims).map_err(|stop| match stop {
            Stop::Refused(r) => r.status.as_u16(),
            _ => 0,
        })
    }

    #[test]
    fn every_rule_must_hold() {
        let ok = r#"{"scope":"a orders:read","realm_access":{"roles":["user","admin"]},"tenant":"acme"}"#;
        assert_eq!(check(ok), Ok(()));
        let scp =
            r#"{"scp":["orders:read"],"realm_access":{"roles":"admin"},"tenant":["x","globex"]}"#;
        assert_eq!(check(scp), Ok(()));
        assert_eq!(
            check(r#"{"scope":"orders:readx","realm_access":{"roles":["admin"]},"tenant":"acme"}"#),
            Err(403)
        );
        assert_eq!(
            check(r#"{"scope":"orders:read","realm_access":{"roles":["user"]},"tenant":"acme"}"#),
            Err(403)
        );
        assert_eq!(
            check(
                r#"{"scope":"orders:read","realm_access":{"roles":["admin"]},"tenant":"umbrella"}"#
            ),
            Err(403)
        );
        assert_eq!(
            check(r#"{"scope":"orders:read","realm_access":{"roles":["admin"]}}"#),
            Err(403)
        );
    }
}
