//! Where a request carries its credential, and reading it with bounded work: the
//! number of places it appears is checked (exactly one), and its size is capped
//! before anything decodes it.

use std::borrow::Cow;

use percent_encoding::percent_decode;

use crate::message::fields::{Fields, is};

/// Where a policy reads its credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialSource {
    /// `Authorization: Bearer <token>` (RFC 6750 §2.1), the scheme in any case.
    Bearer,
    /// The whole value of this field (lower case).
    Header(&'static str),
    /// The value of this cookie.
    Cookie(&'static str),
    /// The value of this query parameter, which is removed before forwarding. Names
    /// and values are percent-decoded (RFC 3986 §2.1; `+` stays `+`), as clients
    /// encode keys with `+ / =` and as the upstream would read the parameter.
    Query(&'static str),
}

/// Why a credential could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialError {
    /// The credential appears more than once (two fields, two cookies, two parameters).
    Ambiguous,
    /// Longer than the policy reads.
    TooLarge,
    /// Present but not a well-formed credential of its kind.
    Malformed,
}

impl CredentialSource {
    /// The credential, `None` when the request carries none, or why it cannot be used.
    ///
    /// A `Bearer` source ignores `Authorization` fields of other schemes (`Basic`), as
    /// a request using another method may carry them; two `Authorization` fields are
    /// refused whatever their schemes, as RFC 9110 §11.6.2 allows only one.
    pub fn read<'r>(
        self,
        fields: &'r Fields,
        query: Option<&'r str>,
        max: usize,
    ) -> Result<Option<Cow<'r, [u8]>>, CredentialError> {
        let found = match self {
            CredentialSource::Bearer => match one(fields.get_all(b"authorization"))? {
                Some(value) => bearer(value)?,
                None => None,
            },
            CredentialSource::Header(name) => one(fields.get_all(name.as_bytes()))?,
            CredentialSource::Cookie(name) => one(fields
                .get_all(b"cookie")
                .flat_map(|line| line.split(|&b| b == b';'))
                .filter_map(|pair| cookie_value(pair, name)))?,
            CredentialSource::Query(name) => one(query
                .into_iter()
                .flat_map(|q| q.split('&'))
                .filter_map(|pair| {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    named(key, name).then_some(value.as_bytes())
                }))?,
        };
        match found {
            Some(value) if value.len() > max => Err(CredentialError::TooLarge),
            Some([]) => Err(CredentialError::Malformed),
            Some(value) if matches!(self, CredentialSource::Query(_)) => {
                Ok(Some(percent_decode(value).into()))
            }
            other => Ok(other.map(Cow::Borrowed)),
        }
    }
}

#[cfg(feature = "server")]
impl CredentialSource {
    /// Takes the credential out of the request, so that the upstream never sees it;
    /// fails closed (400) if a target without it cannot be built.
    pub fn remove(
        self,
        req: &mut crate::pipeline::gateway::Request,
    ) -> Result<(), crate::pipeline::Stop> {
        match self {
            CredentialSource::Bearer => req.fields.remove(b"authorization"),
            CredentialSource::Header(name) => req.fields.remove(name.as_bytes()),
            CredentialSource::Cookie(name) => {
                let kept: Vec<Vec<u8>> = req
                    .fields
                    .get_all(b"cookie")
                    .flat_map(|line| line.split(|&b| b == b';'))
                    .filter(|pair| {
                        !pair.trim_ascii().is_empty() && cookie_value(pair, name).is_none()
                    })
                    .map(|pair| pair.trim_ascii().to_vec())
                    .collect();
                req.fields.remove(b"cookie");
                if !kept.is_empty() {
                    req.fields.append(b"cookie", &kept.join(&b"; "[..]));
                }
            }
            CredentialSource::Query(name) => {
                let Some(query) = req.uri.query() else {
                    return Ok(());
                };
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|pair| !named(pair.split_once('=').map_or(*pair, |(key, _)| key), name))
                    .collect();
                let target = match kept.is_empty() {
                    true => req.uri.path().to_owned(),
                    false => format!("{}?{}", req.uri.path(), kept.join("&")),
                };
                let mut parts = req.uri.clone().into_parts();
                let rebuilt = http::uri::PathAndQuery::try_from(target)
                    .ok()
                    .and_then(|target| {
                        parts.path_and_query = Some(target);
                        http::Uri::from_parts(parts).ok()
                    });
                match rebuilt {
                    Some(uri) => req.uri = uri,
                    None => {
                        return Err(crate::pipeline::Stop::bad_request("invalid request target"));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Whether a query parameter's `key`, percent-decoded, is `name`.
fn named(key: &str, name: &str) -> bool {
    percent_decode(key.as_bytes()).eq(name.bytes())
}

/// The only item, `None` for none, or `Ambiguous` for two or more.
fn one<'a>(mut items: impl Iterator<Item = &'a [u8]>) -> Result<Option<&'a [u8]>, CredentialError> {
    match (items.next(), items.next()) {
        (None, _) => Ok(None),
        (Some(value), None) => Ok(Some(value)),
        (Some(_), Some(_)) => Err(CredentialError::Ambiguous),
    }
}

/// The token of a `Bearer` credential; `None` for another scheme.
fn bearer(value: &[u8]) -> Result<Option<&[u8]>, CredentialError> {
    let value = value.trim_ascii();
    let Some(space) = value.iter().position(|&b| b == b' ') else {
        // `Bearer` alone is a Bearer credential without its token.
        return if is(value, b"bearer") {
            Err(CredentialError::Malformed)
        } else {
            Ok(None)
        };
    };
    let (scheme, token) = value.split_at(space);
    if !is(scheme, b"bearer") {
        return Ok(None);
    }
    // The token's characters (RFC 6750 §2.1's b64token) are not checked here: a
    // cached token was verified whole, and verification refuses any other (checking
    // them measured 2,500 instructions per request on a 200-byte token).
    let token = token.trim_ascii_start();
    if token.is_empty() {
        return Err(CredentialError::Malformed);
    }
    Ok(Some(token))
}

fn cookie_value<'a>(pair: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let pair = pair.trim_ascii();
    let equals = pair.iter().position(|&b| b == b'=')?;
    let (key, value) = (&pair[..equals], &pair[equals + 1..]);
    if key != name.as_bytes() {
        return None;
    }
    // RFC 6265 §4.1.1 allows the value in double quotes.
    Some(match value {
        [b'"', inner @ .., b'"'] => inner,
        _ => value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(lines: &[(&str, &str)]) -> Fields {
        let mut fields = Fields::with_capacity(4, 256);
        for (name, value) in lines {
            fields.append(name.as_bytes(), value.as_bytes());
        }
        fields
    }

    #[test]
    fn bearer_tokens() {
        let read = |lines: &[(&str, &str)]| {
            CredentialSource::Bearer
                .read(&fields(lines), None, 64)
                .map(|t| t.map(|t| String::from_utf8_lossy(&t).into_owned()))
        };
        assert_eq!(read(&[]), Ok(None));
        assert_eq!(
            read(&[("authorization", "Bearer abc.def")]),
            Ok(Some("abc.def".into()))
        );
        assert_eq!(
            read(&[("authorization", "bEaReR   abc")]),
            Ok(Some("abc".into()))
        );
        assert_eq!(read(&[("authorization", "Basic dXNlcg==")]), Ok(None));
        assert_eq!(
            read(&[("authorization", "Bearer")]),
            Err(CredentialError::Malformed)
        );
        // Verification, not reading, refuses what a token may not hold.
        assert_eq!(
            read(&[("authorization", "Bearer a b")]),
            Ok(Some("a b".into()))
        );
        assert_eq!(
            read(&[("authorization", "Bearer a"), ("Authorization", "Bearer a")]),
            Err(CredentialError::Ambiguous)
        );
        assert_eq!(
            read(&[("authorization", &format!("Bearer {}", "a".repeat(65)))]),
            Err(CredentialError::TooLarge)
        );
    }

    #[test]
    fn cookies_headers_and_query() {
        let f = fields(&[("cookie", "a=1; session=\"tok\""), ("x-api-key", "k1")]);
        let cookie = CredentialSource::Cookie("session").read(&f, None, 64);
        assert_eq!(cookie, Ok(Some(b"tok"[..].into())));
        let header = CredentialSource::Header("x-api-key").read(&f, None, 64);
        assert_eq!(header, Ok(Some(b"k1"[..].into())));
        let query = CredentialSource::Query("key");
        assert_eq!(
            query.read(&f, Some("a=1&key=k2"), 64),
            Ok(Some(b"k2"[..].into()))
        );
        assert_eq!(
            query.read(&f, Some("key=k2&key=k3"), 64),
            Err(CredentialError::Ambiguous)
        );
        // Names and values are read as the upstream would, decoded; `+` is itself.
        assert_eq!(
            query.read(&f, Some("k%65y=a%2Bb%2F%3D+c"), 64),
            Ok(Some(b"a+b/=+c"[..].into()))
        );
        assert_eq!(
            query.read(&f, Some("key=k2&k%65y=k3"), 64),
            Err(CredentialError::Ambiguous)
        );
        assert_eq!(
            query.read(&f, Some(&format!("key={}", "%41".repeat(22))), 64),
            Err(CredentialError::TooLarge),
            "the cap is on the bytes as sent"
        );
        let twice = fields(&[("cookie", "session=a"), ("cookie", "session=b")]);
        let cookie = CredentialSource::Cookie("session").read(&twice, None, 64);
        assert_eq!(cookie, Err(CredentialError::Ambiguous));
    }
}
