//! A token's claim set (RFC 7519 §4), read in one pass once its signature holds:
//! the registered claims a policy checks, and only the claims the configuration reads
//! (the compiler lists them), kept as JSON values. The other claims are skipped
//! without being built, and the registered ones are checked as they are parsed, so a
//! token's size costs parsing, not allocation.
//!
//! - `exp` is required and `nbf` optional, each a NumericDate: a JSON number, not
//!   negative (a fraction is taken to the strict side: `exp` down, `nbf` up).
//! - `iss`, when the policy names an issuer, must be present and that string.
//! - `aud`, when the policy names audiences, must be present, and be one of them or an
//!   array holding one (Envoy's rule; RFC 7519 leaves a missing `aud` to the
//!   application, and a policy that names audiences means to require one).
//! - A claim that is read (registered or kept) may appear once: §4 lets a parser
//!   refuse duplicates, which is safer than picking one.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::jws::MALFORMED;
use crate::auth::claims::Claims;

/// What a policy requires of a claim set.
#[derive(Debug, Clone, Copy)]
pub struct Checks<'s> {
    pub issuer: Option<&'s str>,
    pub audiences: &'s [&'s str],
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway: u64,
    /// Top-level claim names the configuration reads; the others are not kept.
    pub kept: &'s [&'s str],
}

/// A claim set that passed the checks.
#[derive(Debug)]
pub struct ClaimSet {
    /// The kept claims.
    pub claims: Claims,
    pub not_before: u64,
    pub expires: u64,
}

impl Checks<'_> {
    /// Reads `json`, a decoded payload, and checks it at `now` (seconds since the epoch).
    pub fn read(&self, json: &[u8], now: u64) -> Result<ClaimSet, &'static str> {
        // JSON text is UTF-8 (RFC 8259 §8.1), in claims skipped too.
        let json = std::str::from_utf8(json).map_err(|_| MALFORMED)?;
        let mut de = serde_json::Deserializer::from_str(json);
        let found = de
            .deserialize_map(ClaimsVisitor(self))
            .map_err(|_| MALFORMED)?;
        de.end().map_err(|_| MALFORMED)?;
        // Below 2^53 (checked as parsed): exact as integers.
        let expires = found.exp.ok_or("token lacks a required claim")? as u64;
        let not_before = found.nbf.map_or(0, |nbf| nbf as u64);
        if expires.saturating_add(self.leeway) < now {
            return Err("token expired");
        }
        if not_before > now.saturating_add(self.leeway) {
            return Err("token not yet valid");
        }
        if found.issuer_matches != Some(true) && self.issuer.is_some() {
            return Err("wrong token issuer");
        }
        if found.audience_matches != Some(true) && !self.audiences.is_empty() {
            return Err("wrong token audience");
        }
        Ok(ClaimSet {
            claims: found.claims,
            not_before,
            expires,
        })
    }

    fn matches(&self, claim: Registered, text: &str) -> bool {
        match claim {
            Registered::Issuer => self.issuer == Some(text),
            Registered::Audience => self.audiences.contains(&text),
        }
    }
}

/// What one pass over the claim set found.
#[derive(Default)]
struct Found {
    /// Whole seconds, rounded to the strict side.
    exp: Option<f64>,
    nbf: Option<f64>,
    /// Whether `iss` names the policy's issuer; `None` when absent or not checked.
    issuer_matches: Option<bool>,
    audience_matches: Option<bool>,
    claims: Claims,
}

struct ClaimsVisitor<'c, 's>(&'c Checks<'s>);

impl<'de> Visitor<'de> for ClaimsVisitor<'_, '_> {
    type Value = Found;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JWT claim set")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Found, A::Error> {
        let checks = self.0;
        let mut found = Found::default();
        while let Some(Text(name)) = map.next_key::<Text<'de>>()? {
            let name: &str = &name;
            let duplicate = if checks.kept.contains(&name) {
                let value: Value = map.next_value()?;
                let duplicate = found.record_value(checks, name, &value)?;
                duplicate || found.claims.insert(name.to_owned(), value).is_some()
            } else {
                // Registered claims nothing else reads: checked as they are parsed,
                // nothing built.
                match name {
                    "exp" => {
                        let Date(seconds) = map.next_value()?;
                        found.exp.replace(seconds.floor()).is_some()
                    }
                    "nbf" => {
                        let Date(seconds) = map.next_value()?;
                        found.nbf.replace(seconds.ceil()).is_some()
                    }
                    "iss" if checks.issuer.is_some() => {
                        let matches =
                            map.next_value_seed(Names::top(checks, Registered::Issuer))?;
                        found.issuer_matches.replace(matches).is_some()
                    }
                    "aud" if !checks.audiences.is_empty() => {
                        let matches =
                            map.next_value_seed(Names::top(checks, Registered::Audience))?;
                        found.audience_matches.replace(matches).is_some()
                    }
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                        false
                    }
                }
            };
            if duplicate {
                return Err(de::Error::custom("duplicate claim"));
            }
        }
        Ok(found)
    }
}

impl Found {
    /// Records a registered claim that is also kept, from its parsed value; whether
    /// it was there already.
    fn record_value<E: de::Error>(
        &mut self,
        checks: &Checks,
        name: &str,
        value: &Value,
    ) -> Result<bool, E> {
        let date = |value: &Value| match value {
            Value::Number(n) => n.as_f64().map_or_else(|| Err(E::custom("date")), in_range),
            _ => Err(E::custom("a NumericDate is a number")),
        };
        let names = |claim: Registered| match value {
            Value::String(text) => checks.matches(claim, text),
            Value::Array(items) if matches!(claim, Registered::Audience) => {
                items.iter().any(|item| {
                    item.as_str()
                        .is_some_and(|text| checks.matches(claim, text))
                })
            }
            _ => false,
        };
        Ok(match name {
            "exp" => self.exp.replace(date(value)?.floor()).is_some(),
            "nbf" => self.nbf.replace(date(value)?.ceil()).is_some(),
            "iss" if checks.issuer.is_some() => self
                .issuer_matches
                .replace(names(Registered::Issuer))
                .is_some(),
            "aud" if !checks.audiences.is_empty() => self
                .audience_matches
                .replace(names(Registered::Audience))
                .is_some(),
            _ => false,
        })
    }
}

/// A NumericDate (RFC 7519 §2), seconds since the epoch: not negative, and below
/// 2^53, where every whole second is still a distinct `f64` (year 285 million).
fn in_range<E: de::Error>(seconds: f64) -> Result<f64, E> {
    if (0.0..9_007_199_254_740_992.0).contains(&seconds) {
        Ok(seconds)
    } else {
        Err(E::custom("a NumericDate out of range"))
    }
}

/// A string, borrowed from the payload unless it holds escapes.
struct Text<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(text)))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// A NumericDate's value, range-checked.
struct Date(f64);

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DateVisitor;
        impl Visitor<'_> for DateVisitor {
            type Value = Date;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a NumericDate")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Date, E> {
                in_range(n as f64).map(Date)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Date, E> {
                in_range(n as f64).map(Date)
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Date, E> {
                in_range(n).map(Date)
            }
        }
        deserializer.deserialize_f64(DateVisitor)
    }
}

/// The registered claims whose values name something the policy accepts.
#[derive(Clone, Copy)]
enum Registered {
    Issuer,
    Audience,
}

/// `iss` or `aud` read into whether it names what the policy accepts: `iss` must be
/// a string, `aud` a string or an array holding one; any other value (an `iss`
/// array, a nested array, a number) names nothing, and is skipped without being built.
struct Names<'c, 's> {
    checks: &'c Checks<'s>,
    claim: Registered,
    /// Whether this is the claim's value itself, not an element of its array.
    top: bool,
}

impl<'c, 's> Names<'c, 's> {
    fn top(checks: &'c Checks<'s>, claim: Registered) -> Self {
        Names {
            checks,
            claim,
            top: true,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Names<'_, '_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Names<'_, '_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<bool, E> {
        Ok(self.checks.matches(self.claim, text))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<bool, A::Error> {
        let elements = self.top && matches!(self.claim, Registered::Audience);
        let mut matches = false;
        while let Some(item) = items.next_element_seed(Names { top: false, ..self })? {
            matches |= elements && item;
        }
        Ok(matches)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(false)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_000_000;

    fn checks() -> Checks<'static> {
        Checks {
            issuer: Some("https://id.example/"),
            audiences: &["api", "web"],
            leeway: 30,
            kept: &["sub", "roles", "realm_access", "aud"],
        }
    }

    fn read(json: &str) -> Result<ClaimSet, &'static str> {
        checks().read(json.as_bytes(), NOW)
    }

    const BASE: &str = r#""iss":"https://id.example/","aud":"api","exp":1000100"#;

    #[test]
    fn keeps_only_what_is_read() {
        let set = read(&format!(
            r#"{{"sub":"u1","email":"a@b","big":[1,2,{{"x":"y"}}],"realm_access":{{"roles":["r"]}},{BASE}}}"#
        ))
        .expect("valid");
        let mut names: Vec<&str> = set.claims.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["aud", "realm_access", "sub"]);
        assert_eq!(set.expires, 1_000_100);
        assert_eq!(set.not_before, 0);
    }

    #[test]
    fn time_checks_with_leeway() {
        let at = |claims: &str| {
            read(&format!(
                r#"{{"iss":"https://id.example/","aud":"api",{claims}}}"#
            ))
        };
        assert!(at(r#""exp":999980"#).is_ok(), "expired within the leeway");
        assert_eq!(at(r#""exp":999969"#).err(), Some("token expired"));
        assert_eq!(at(r#""exp":999969.9"#).err(), Some("token expired"));
        assert_eq!(
            at(r#""exp":1000100,"nbf":1000031"#).err(),
            Some("token not yet valid")
        );
        assert_eq!(
            at(r#""exp":1000100,"nbf":1000030.5"#).err(),
            Some("token not yet valid")
        );
        assert!(at(r#""exp":1000100,"nbf":1000030"#).is_ok());
        assert_eq!(at(r#""nbf":1"#).err(), Some("token lacks a required claim"));
        for bad in [
            r#""exp":"1000100""#,
            r#""exp":-1"#,
            r#""exp":null"#,
            r#""exp":1e300"#,
        ] {
            assert_eq!(at(bad).err(), Some(MALFORMED), "{bad}");
        }
    }

    #[test]
    fn issuer_and_audience() {
        let with = |claims: &str| read(&format!(r#"{{"exp":1000100,{claims}}}"#));
        assert_eq!(
            with(r#""aud":"api""#).err(),
            Some("wrong token issuer"),
            "iss missing"
        );
        let iss = r#""iss":"https://id.example/""#;
        assert_eq!(
            with(r#""iss":"https://evil/","aud":"api""#).err(),
            Some("wrong token issuer")
        );
        assert_eq!(
            with(r#""iss":["https://id.example/"],"aud":"api""#).err(),
            Some("wrong token issuer")
        );
        assert_eq!(with(iss).err(), Some("wrong token audience"), "aud missing");
        assert_eq!(
            with(&format!(r#"{iss},"aud":"other""#)).err(),
            Some("wrong token audience")
        );
        assert_eq!(
            with(&format!(r#"{iss},"aud":["x",1]"#)).err(),
            Some("wrong token audience")
        );
        assert!(with(&format!(r#"{iss},"aud":["x","web"]"#)).is_ok());
        assert!(
            with(&format!(r#"{iss},"aud":"ap\u0069""#)).is_ok(),
            "escaped"
        );
        assert_eq!(
            with(&format!(r#"{iss},"aud":[["api"]]"#)).err(),
            Some("wrong token audience")
        );
        assert_eq!(
            with(&format!(r#"{iss},"aud":{{"api":1}}"#)).err(),
            Some("wrong token audience")
        );
        let open = Checks {
            issuer: None,
            audiences: &[],
            leeway: 0,
            kept: &[],
        };
        assert!(
            open.read(br#"{"exp":1000100,"iss":7,"aud":{}}"#, NOW)
                .is_ok()
        );
    }

    #[test]
    fn registered_claims_kept_are_checked_the_same() {
        let kept = Checks {
            kept: &["exp", "nbf", "iss", "aud"],
            ..checks()
        };
        let read = |json: &str| kept.read(json.as_bytes(), NOW);
        let set = read(&format!(r#"{{"nbf":999999.5,{BASE}}}"#)).expect("valid");
        assert_eq!((set.expires, set.not_before), (1_000_100, 1_000_000));
        assert_eq!(set.claims.len(), 4);
        let iss = r#""iss":"https://id.example/""#;
        assert_eq!(
            read(r#"{"exp":999969.9,"aud":"api","iss":"https://id.example/"}"#).err(),
            Some("token expired")
        );
        assert_eq!(
            read(&format!(r#"{{"exp":1000100,{iss},"aud":[["api"]]}}"#)).err(),
            Some("wrong token audience")
        );
        assert_eq!(
            read(r#"{"exp":1000100,"iss":["x"],"aud":"api"}"#).err(),
            Some("wrong token issuer")
        );
        assert_eq!(
            read(&format!(r#"{{"exp":"1",{iss},"aud":"api"}}"#)).err(),
            Some(MALFORMED)
        );
        assert_eq!(
            read(&format!(r#"{{"exp":1,"exp":1,{iss},"aud":"api"}}"#)).err(),
            Some(MALFORMED)
        );
    }

    #[test]
    fn duplicates_of_what_is_read_are_refused() {
        for dup in [
            r#"{"exp":1000100,"exp":1000200}"#,
            r#"{"exp":1000100,"sub":"a","sub":"b"}"#,
            r#"{"exp":1000100,"iss":"https://id.example/","iss":"https://id.example/"}"#,
        ] {
            assert_eq!(read(dup).err(), Some(MALFORMED), "{dup}");
        }
        // A claim nothing reads may repeat: no reading of it can differ.
        assert!(read(&format!(r#"{{"x":1,"x":2,{BASE}}}"#)).is_ok());
    }

    #[test]
    fn not_an_object() {
        for bad in ["[]", "\"x\"", "", "{", &format!("{{{BASE}}} trailing")] {
            assert_eq!(read(bad).err(), Some(MALFORMED), "{bad}");
        }
        // Invalid UTF-8 in a claim nothing reads.
        let mut bytes = format!(r#"{{"x":"J?T",{BASE}}}"#).into_bytes();
        let at = bytes.iter().position(|&b| b == b'?').expect("marker");
        bytes[at] = 0xa7;
        assert_eq!(checks().read(&bytes, NOW).err(), Some(MALFORMED));
    }
}
