//! Header rules of a proxy: hop-by-hop headers stop here (RFC 9110 §7.6.1), and the
//! upstream learns who the client was through `X-Forwarded-*`.

use http::HeaderMap;
use http::header::{
    CONNECTION, HeaderName, HeaderValue, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE,
    TRANSFER_ENCODING, UPGRADE,
};

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that concern one connection only. Transfer-Encoding is among them: hyper
/// frames the forwarded message itself from the body it is given.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == CONNECTION
        || name == TRANSFER_ENCODING
        || name == TE
        || name == UPGRADE
        || name == PROXY_AUTHORIZATION
        || name == PROXY_AUTHENTICATE
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
}

/// Removes hop-by-hop headers and every header that `Connection` names.
///
/// One scan over the names in the common case where there is nothing to remove.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        &CONNECTION,
        &TRANSFER_ENCODING,
        &TE,
        &UPGRADE,
        &PROXY_AUTHORIZATION,
        &PROXY_AUTHENTICATE,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
    ] {
        headers.remove(name);
    }
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
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, X-Secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(TE, HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
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
