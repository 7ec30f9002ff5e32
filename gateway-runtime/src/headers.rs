//! Header rules of a proxy: hop-by-hop headers stop here (RFC 9110 §7.6.1), and the
//! upstream learns who the client was through `X-Forwarded-*`.

use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Headers that concern one connection only (RFC 9110 §7.6.1, plus the proxy
/// credentials of RFC 9110 §11.7). Transfer-Encoding is among them: hyper frames the
/// forwarded message itself from the body it is given.
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
];

/// The index of `name` in `HOP_BY_HOP`, in any case. Runs for every header of every
/// request and response, so it compares lengths before bytes: most names fail on the
/// length alone.
fn hop_by_hop_index(name: &str) -> Option<usize> {
    let index = match name.len() {
        10 if name.eq_ignore_ascii_case("connection") => 0,
        10 if name.eq_ignore_ascii_case("keep-alive") => 1,
        16 if name.eq_ignore_ascii_case("proxy-connection") => 2,
        2 if name.eq_ignore_ascii_case("te") => 3,
        17 if name.eq_ignore_ascii_case("transfer-encoding") => 4,
        7 if name.eq_ignore_ascii_case("upgrade") => 5,
        19 if name.eq_ignore_ascii_case("proxy-authorization") => 6,
        18 if name.eq_ignore_ascii_case("proxy-authenticate") => 7,
        _ => return None,
    };
    Some(index)
}

/// Removes hop-by-hop headers and every header that `Connection` names.
///
/// One scan finds which are present; only those are removed, so the common
/// `Connection: keep-alive` costs one removal and no allocation.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let present = headers.keys().fold(0u16, |bits, name| {
        bits | hop_by_hop_index(name.as_str()).map_or(0, |i| 1 << i)
    });
    if present == 0 {
        return;
    }
    if present & 1 != 0 {
        // Names listed in Connection that are not removed anyway; usually none.
        let mut listed: Vec<HeaderName> = Vec::new();
        for value in headers.get_all(header::CONNECTION) {
            let Ok(value) = value.to_str() else { continue };
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") || hop_by_hop_index(token).is_some() {
                    continue;
                }
                if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                    listed.push(name);
                }
            }
        }
        for name in listed {
            headers.remove(name);
        }
    }
    for (index, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << index) != 0 {
            headers.remove(name);
        }
    }
}

/// `Via` (RFC 9110 §7.6.3), which a proxy must add to every message it forwards: the
/// protocol version it received the message in, and a pseudonym for itself.
pub fn append_via(headers: &mut HeaderMap, received: http::Version) {
    let value = match received {
        http::Version::HTTP_2 => "2 gateway",
        http::Version::HTTP_10 => "1.0 gateway",
        http::Version::HTTP_3 => "3 gateway",
        _ => "1.1 gateway",
    };
    // A separate field line is a list element of its own: earlier proxies stay listed.
    headers.append(header::VIA, HeaderValue::from_static(value));
}

/// Appends the client address to `X-Forwarded-For`, as nginx's
/// `$proxy_add_x_forwarded_for` does, so the chain of proxies stays visible. Several
/// field lines are one list (RFC 9110 §5.3) and are joined into one line.
pub fn append_forwarded_for(headers: &mut HeaderMap, client_ip: &HeaderValue) {
    let mut combined: Vec<u8> = Vec::new();
    for existing in headers.get_all(&X_FORWARDED_FOR) {
        combined.extend_from_slice(existing.as_bytes());
        combined.extend_from_slice(b", ");
    }
    let value = if combined.is_empty() {
        client_ip.clone()
    } else {
        combined.extend_from_slice(client_ip.as_bytes());
        // Joined from valid values with ", ": valid again; the fallback never runs.
        HeaderValue::from_bytes(&combined).unwrap_or_else(|_| client_ip.clone())
    };
    headers.insert(X_FORWARDED_FOR.clone(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hop-by-hop headers and those named in Connection go; the rest stays.
    #[test]
    fn hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
        // `Connection: close` names no header; the common response needs no allocation.
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        h.insert(
            "close",
            HeaderValue::from_static("a header that happens to be named close"),
        );
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
    }

    /// The client address is appended to an existing chain.
    #[test]
    fn forwarded_for() {
        let mut h = HeaderMap::new();
        let ip = HeaderValue::from_static("127.0.0.1");
        append_forwarded_for(&mut h, &ip);
        assert_eq!(h[&X_FORWARDED_FOR], "127.0.0.1");
        append_forwarded_for(&mut h, &ip);
        assert_eq!(h[&X_FORWARDED_FOR], "127.0.0.1, 127.0.0.1");
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.1"));
        append_forwarded_for(&mut h, &ip);
        assert_eq!(h.get_all(&X_FORWARDED_FOR).iter().count(), 1);
        assert_eq!(
            h[&X_FORWARDED_FOR],
            "127.0.0.1, 127.0.0.1, 10.0.0.1, 127.0.0.1"
        );
    }
}
