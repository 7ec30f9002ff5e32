//! A token's compact serialization (RFC 7515 §7.1) and its protected header: the
//! parts of a token read before its signature is checked, so read strictly.
//!
//! - Exactly three parts: a JWE (five) or anything else is malformed.
//! - Base64url without padding, canonical (no stray trailing bits): one token has one
//!   encoding, so a signature cannot be altered into another accepted string.
//! - The header is a JSON object with each member once. `alg` names one of the
//!   algorithms jsonwebtoken knows, spelled exactly (`none`, in any case, is none of
//!   them). `crit` may only list `b64`, and `b64` may only be `true` (RFC 7797): the
//!   gateway understands no other extension, and §4.1.11 says to refuse what is
//!   critical and not understood. Other members are ignored, as §4 asks.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::Deserialize;

/// Why a token cannot be read.
pub const MALFORMED: &str = "malformed token";

/// A token split into its parts, each still encoded.
#[derive(Debug, Clone, Copy)]
pub struct Compact<'t> {
    pub header: &'t [u8],
    pub payload: &'t [u8],
    /// `header.payload`: what the signature signs.
    pub signing_input: &'t [u8],
    pub signature: &'t [u8],
}

impl<'t> Compact<'t> {
    pub fn split(token: &'t [u8]) -> Result<Self, &'static str> {
        let dot = |from: usize| {
            token[from..]
                .iter()
                .position(|&b| b == b'.')
                .map(|i| from + i)
        };
        let first = dot(0).ok_or(MALFORMED)?;
        let second = dot(first + 1).ok_or(MALFORMED)?;
        if dot(second + 1).is_some() {
            return Err(MALFORMED);
        }
        Ok(Self {
            header: &token[..first],
            payload: &token[first + 1..second],
            signing_input: &token[..second],
            signature: &token[second + 1..],
        })
    }
}

/// What the gateway reads of a protected header.
#[derive(Debug)]
pub struct Header<'b> {
    pub alg: Algorithm,
    pub kid: Option<Cow<'b, str>>,
}

#[derive(Deserialize)]
struct RawHeader<'b> {
    #[serde(borrow)]
    alg: Cow<'b, str>,
    #[serde(borrow, default)]
    kid: Option<Cow<'b, str>>,
    #[serde(default)]
    crit: Option<Vec<String>>,
    #[serde(default)]
    b64: Option<bool>,
}

impl<'b> Header<'b> {
    /// The header of JSON text `json` (already decoded).
    pub fn parse(json: &'b [u8]) -> Result<Self, &'static str> {
        // A derived struct would also take a JSON array of the members in order.
        if json.trim_ascii_start().first() != Some(&b'{') {
            return Err(MALFORMED);
        }
        // JSON text is UTF-8 (RFC 8259 §8.1), in members skipped too.
        let json = std::str::from_utf8(json).map_err(|_| MALFORMED)?;
        let raw: RawHeader<'b> = serde_json::from_str(json).map_err(|_| MALFORMED)?;
        if raw.b64 == Some(false) {
            return Err(MALFORMED);
        }
        if let Some(crit) = &raw.crit
            && (crit.len() != 1 || crit[0] != "b64" || raw.b64.is_none())
        {
            return Err(MALFORMED);
        }
        let alg = raw.alg.parse().map_err(|_| "token algorithm not allowed")?;
        Ok(Header { alg, kid: raw.kid })
    }
}

/// Base64url-decodes `encoded` into `stack` when it fits, or else into `heap`: the
/// parts of a usual token decode without an allocation.
pub fn decode<'b>(
    encoded: &[u8],
    stack: &'b mut [u8],
    heap: &'b mut Vec<u8>,
) -> Result<&'b [u8], &'static str> {
    let out: &'b mut [u8] = if base64::decoded_len_estimate(encoded.len()) <= stack.len() {
        stack
    } else {
        heap.resize(base64::decoded_len_estimate(encoded.len()), 0);
        heap
    };
    let n = URL_SAFE_NO_PAD
        .decode_slice(encoded, out)
        .map_err(|_| MALFORMED)?;
    Ok(&out[..n])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(json: &str) -> Result<Header<'_>, &'static str> {
        Header::parse(json.as_bytes())
    }

    #[test]
    fn three_parts_exactly() {
        let c = Compact::split(b"aa.bb.cc").expect("three parts");
        assert_eq!(
            (c.header, c.payload, c.signature),
            (&b"aa"[..], &b"bb"[..], &b"cc"[..])
        );
        assert_eq!(c.signing_input, b"aa.bb");
        for token in [&b"aa.bb"[..], b"a.b.c.d.e", b"abc", b"a.b.c."] {
            assert!(Compact::split(token).is_err(), "{token:?}");
        }
    }

    #[test]
    fn headers() {
        let h = header(r#"{"alg":"RS256","kid":"k1","typ":"JWT","x":[1]}"#).expect("header");
        assert_eq!((h.alg, h.kid.as_deref()), (Algorithm::RS256, Some("k1")));
        for none in ["none", "None", "NONE", "nOnE", "hs256", ""] {
            assert_eq!(
                header(&format!(r#"{{"alg":"{none}"}}"#)).err(),
                Some("token algorithm not allowed")
            );
        }
        for bad in [
            r#"{"alg":"HS256","alg":"none"}"#,
            r#"{"typ":"JWT"}"#,
            r#"{"alg":"HS256","crit":["exp"]}"#,
            r#"{"alg":"HS256","crit":[]}"#,
            r#"{"alg":"HS256","crit":["b64"]}"#,
            r#"{"alg":"HS256","crit":["b64","b64"],"b64":true}"#,
            r#"{"alg":"HS256","b64":false}"#,
            r#"{"alg":"HS256","kid":5}"#,
            r#"["HS256"]"#,
            r#"{"alg":"HS256"} x"#,
        ] {
            assert_eq!(header(bad).err(), Some(MALFORMED), "{bad}");
        }
        let invalid_utf8 = b"{\"alg\":\"HS256\",\"typ\":\"J\xa7T\"}";
        assert_eq!(Header::parse(invalid_utf8).err(), Some(MALFORMED));
        assert!(header(r#"{"alg":"HS256","crit":["b64"],"b64":true}"#).is_ok());
        // An unpaired surrogate is JSON (RFC 8259 §8.2): skipped, it passes; in a
        // member that is read, it is no string and the header is refused.
        assert!(header(r#"{"alg":"HS256","x":"\udfff"}"#).is_ok());
        assert_eq!(
            header(r#"{"alg":"HS256","kid":"\udfff"}"#).err(),
            Some(MALFORMED)
        );
    }

    #[test]
    fn canonical_base64url() {
        let (mut stack, mut heap) = ([0; 4], Vec::new());
        assert_eq!(decode(b"aGk", &mut stack, &mut heap), Ok(&b"hi"[..]));
        // A stray trailing bit, padding and the standard alphabet are all refused.
        for bad in [&b"aGl"[..], b"aGk=", b"a+k", b"a/k"] {
            let (mut stack, mut heap) = ([0; 4], Vec::new());
            assert_eq!(
                decode(bad, &mut stack, &mut heap),
                Err(MALFORMED),
                "{bad:?}"
            );
        }
        let (mut stack, mut heap) = ([0; 2], Vec::new());
        assert_eq!(decode(b"aGVsbG8", &mut stack, &mut heap), Ok(&b"hello"[..]));
    }
}
