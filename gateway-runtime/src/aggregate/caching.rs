//! What caches may do with an aggregate response. The gateway makes that response, so
//! it states its own `Cache-Control`, and never lets it be kept longer or shared more
//! widely than any answer it is made of (RFC 9111 §5.2.2): an answer's `no-store`,
//! `private`, `no-cache` and `must-revalidate` hold for the whole, and so do its
//! shortest `max-age` and `s-maxage`. A route that authenticates its client makes a
//! `private` response, and a degraded one is `no-store`, so that no cache serves a
//! fallback in place of an answer once the backend is back. Without such directives,
//! shared caches (CDNs) apply a default lifetime to a 200 and would serve one user's
//! aggregate to the next.

use std::fmt::Write;

use crate::message::fields::{Fields, is};

/// What a response allows caches, as far as the aggregate needs to know.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caching {
    no_store: bool,
    private: bool,
    no_cache: bool,
    must_revalidate: bool,
    /// Seconds, for every cache.
    max_age: Option<u32>,
    /// Seconds, for shared caches: `s-maxage`, or else `max-age`.
    shared_max_age: Option<u32>,
}

impl Caching {
    /// Nothing restricted.
    const ANY: Caching = Caching {
        no_store: false,
        private: false,
        no_cache: false,
        must_revalidate: false,
        max_age: None,
        shared_max_age: None,
    };

    /// Stored by no cache.
    pub const NO_STORE: Caching = Caching {
        no_store: true,
        ..Caching::ANY
    };

    /// Stored by no shared cache.
    pub const PRIVATE: Caching = Caching {
        private: true,
        ..Caching::ANY
    };

    /// What a response's `Cache-Control` lines allow. Unknown directives are ignored;
    /// a qualified `private="…"` or `no-cache="…"` counts as the whole directive, and
    /// an age that is not a number as 0 (RFC 9111 §4.2.1: the most restrictive
    /// reading). A comma in a quoted value can only add a directive, never drop one.
    pub fn of(fields: &Fields) -> Caching {
        let mut caching = Caching::default();
        let mut s_maxage = None;
        for directive in fields.list_members(b"cache-control") {
            let (name, value) = match directive.iter().position(|&b| b == b'=') {
                Some(at) => (&directive[..at], Some(&directive[at + 1..])),
                None => (directive, None),
            };
            let name = name.trim_ascii_end();
            let age = || Some(value.map_or(0, seconds));
            if is(name, b"no-store") {
                caching.no_store = true;
            } else if is(name, b"private") {
                caching.private = true;
            } else if is(name, b"no-cache") {
                caching.no_cache = true;
            } else if is(name, b"must-revalidate") || is(name, b"proxy-revalidate") {
                caching.must_revalidate = true;
            } else if is(name, b"max-age") {
                caching.max_age = shorter(caching.max_age, age());
            } else if is(name, b"s-maxage") {
                s_maxage = shorter(s_maxage, age());
            }
        }
        caching.shared_max_age = s_maxage.or(caching.max_age);
        caching
    }

    /// What both allow: the stricter of each directive.
    pub fn and(self, other: Caching) -> Caching {
        Caching {
            no_store: self.no_store || other.no_store,
            private: self.private || other.private,
            no_cache: self.no_cache || other.no_cache,
            must_revalidate: self.must_revalidate || other.must_revalidate,
            max_age: shorter(self.max_age, other.max_age),
            shared_max_age: shorter(self.shared_max_age, other.shared_max_age),
        }
    }

    /// The `Cache-Control` value that says it; `None` when nothing is restricted.
    pub fn value(&self) -> Option<String> {
        if self.no_store {
            return Some("no-store".to_owned());
        }
        let mut value = String::new();
        let mut add = |directive: std::fmt::Arguments<'_>| {
            if !value.is_empty() {
                value.push_str(", ");
            }
            let _ = value.write_fmt(directive);
        };
        if self.private {
            add(format_args!("private"));
        }
        if self.no_cache {
            add(format_args!("no-cache"));
        }
        if self.must_revalidate {
            add(format_args!("must-revalidate"));
        }
        if let Some(age) = self.max_age {
            add(format_args!("max-age={age}"));
        }
        // Shared caches do not store a private response.
        if !self.private
            && let Some(age) = self.shared_max_age
            && Some(age) != self.max_age
        {
            add(format_args!("s-maxage={age}"));
        }
        (!value.is_empty()).then_some(value)
    }
}

/// The shorter of two stated ages; one that is not stated restricts nothing.
fn shorter(a: Option<u32>, b: Option<u32>) -> Option<u32> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Delta-seconds (RFC 9111 §1.2.2), quoted or not; past `u32` it is the largest, and
/// anything but digits is 0.
fn seconds(value: &[u8]) -> u32 {
    let value = value.trim_ascii();
    let value = value
        .strip_prefix(b"\"")
        .and_then(|v| v.strip_suffix(b"\""))
        .unwrap_or(value);
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return 0;
    }
    value.iter().fold(0u32, |n, &d| {
        n.saturating_mul(10).saturating_add(u32::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(lines: &[&str]) -> Caching {
        let mut fields = Fields::with_capacity(lines.len(), 64);
        for line in lines {
            fields.append(b"cache-control", line.as_bytes());
        }
        Caching::of(&fields)
    }

    fn said(lines: &[&[&str]]) -> Option<String> {
        lines
            .iter()
            .map(|answer| of(answer))
            .fold(Caching::default(), Caching::and)
            .value()
    }

    #[test]
    fn directives_are_read_in_any_case_and_spelling() {
        assert_eq!(of(&[]), Caching::default());
        assert_eq!(of(&[]).value(), None);
        assert_eq!(of(&["public"]).value(), None);
        assert_eq!(
            of(&["Public, MAX-AGE=60"]).value().as_deref(),
            Some("max-age=60")
        );
        assert_eq!(
            of(&["max-age=\"60\"", "max-age=30 , s-maxage=10"])
                .value()
                .as_deref(),
            Some("max-age=30, s-maxage=10")
        );
        assert_eq!(
            of(&["private=\"set-cookie, x\", max-age=5"])
                .value()
                .as_deref(),
            Some("private, max-age=5")
        );
        assert_eq!(of(&["max-age=soon"]).value().as_deref(), Some("max-age=0"));
        assert_eq!(
            of(&["max-age=99999999999"]).value().as_deref(),
            Some("max-age=4294967295")
        );
        assert_eq!(
            of(&["no-cache, proxy-revalidate"]).value().as_deref(),
            Some("no-cache, must-revalidate")
        );
        assert_eq!(
            of(&["max-age=5, no-store"]).value().as_deref(),
            Some("no-store")
        );
    }

    #[test]
    fn the_whole_is_as_strict_as_its_strictest_answer() {
        assert_eq!(said(&[&[], &[]]), None);
        assert_eq!(
            said(&[&["public, max-age=600"], &["max-age=60"], &[]]).as_deref(),
            Some("max-age=60")
        );
        assert_eq!(
            said(&[&["s-maxage=10, max-age=600"], &["max-age=60"]]).as_deref(),
            Some("max-age=60, s-maxage=10")
        );
        assert_eq!(
            said(&[&["max-age=600"], &["private"]]).as_deref(),
            Some("private, max-age=600")
        );
        assert_eq!(
            said(&[&["max-age=600"], &["no-store"]]).as_deref(),
            Some("no-store")
        );
        assert_eq!(
            Caching::default().and(Caching::PRIVATE).value().as_deref(),
            Some("private")
        );
        assert_eq!(
            of(&["max-age=60"])
                .and(Caching::NO_STORE)
                .value()
                .as_deref(),
            Some("no-store")
        );
    }
}
