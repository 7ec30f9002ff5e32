//! Sets of HTTP methods as bit sets: routes carry one, built at compile time, and the
//! router tests membership with one AND instead of comparing strings.

use http::Method;

/// The methods of RFC 9110 §9 and PATCH (RFC 5789), in bit order.
const NAMES: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// A set of request methods; the empty set stands for "every method".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MethodSet(u16);

impl MethodSet {
    pub const ANY: MethodSet = MethodSet(0);

    pub const fn from_bits(bits: u16) -> Self {
        Self(bits)
    }

    pub const fn bits(self) -> u16 {
        self.0
    }

    /// The set holding one method named as in gateway.toml; `None` for names outside
    /// the standard set (method names are case-sensitive, RFC 9110 §9.1).
    ///
    /// `GET` brings `HEAD` with it: RFC 9110 §9.3.2 asks servers to answer HEAD
    /// wherever they answer GET, and nginx's `limit_except GET` does the same.
    pub fn from_name(name: &str) -> Option<Self> {
        let bit = NAMES.iter().position(|n| *n == name)?;
        let set = Self(1 << bit);
        Some(if name == "GET" {
            set.union(Self(1 << 1))
        } else {
            set
        })
    }

    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    pub fn is_any(self) -> bool {
        self.0 == 0
    }

    /// True when some request could be matched by both sets.
    pub fn overlaps(self, other: Self) -> bool {
        self.is_any() || other.is_any() || self.0 & other.0 != 0
    }

    pub fn contains(self, method: &Method) -> bool {
        self.is_any() || Self::bit_of(method).is_some_and(|bit| self.0 & bit != 0)
    }

    fn bit_of(method: &Method) -> Option<u16> {
        let bit = match *method {
            Method::GET => 0,
            Method::HEAD => 1,
            Method::POST => 2,
            Method::PUT => 3,
            Method::DELETE => 4,
            Method::CONNECT => 5,
            Method::OPTIONS => 6,
            Method::TRACE => 7,
            Method::PATCH => 8,
            _ => return None,
        };
        Some(1 << bit)
    }

    /// The set less `method`; the set of every method becomes the standard ones less it.
    pub fn without(self, method: &Method) -> Self {
        let all = if self.is_any() {
            (1 << NAMES.len()) - 1
        } else {
            self.0
        };
        Self(all & !Self::bit_of(method).unwrap_or(0))
    }

    /// The `Allow` header value: the names in the set, or every standard method for
    /// the set of every method.
    pub fn allow_header(self) -> String {
        let set = if self.is_any() {
            Self((1 << NAMES.len()) - 1)
        } else {
            self
        };
        set.names().collect::<Vec<_>>().join(", ")
    }

    /// The names in the set.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        NAMES
            .iter()
            .enumerate()
            .filter(move |(bit, _)| self.0 & (1 << bit) != 0)
            .map(|(_, name)| *name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GET brings HEAD; names are case-sensitive; the empty set means any.
    #[test]
    fn sets() {
        let get = MethodSet::from_name("GET").unwrap();
        assert!(get.contains(&Method::HEAD));
        assert!(!get.contains(&Method::POST));
        assert_eq!(MethodSet::from_name("get"), None);
        assert!(MethodSet::ANY.contains(&Method::from_bytes(b"PURGE").unwrap()));
        let post = MethodSet::from_name("POST").unwrap();
        assert!(!get.overlaps(post));
        assert!(get.overlaps(MethodSet::ANY));
        assert_eq!(
            get.union(post).names().collect::<Vec<_>>(),
            ["GET", "HEAD", "POST"]
        );
        assert_eq!(
            MethodSet::ANY.without(&Method::TRACE).allow_header(),
            "GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, PATCH"
        );
    }
}
