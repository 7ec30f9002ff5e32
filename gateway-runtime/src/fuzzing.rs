//! Entry points for the fuzz targets in `fuzz/`: each parser as the gateway runs it,
//! on plain bytes, with results in plain types a target can compare. Built only with
//! the `fuzzing` feature; nothing here is used by the gateway itself.

use bytes::BytesMut;
use http::{Method, Version};

use crate::h1::client::{self, Parsed};
use crate::h1::framing::{BodyDecoder, BodyLength, Decoded, FramingError};
use crate::h1::read_buffer::ReadBuffer;
use crate::h1::server::{self, ClientLimits};

/// A request head the gateway accepted.
#[derive(Debug)]
pub struct RequestHead {
    pub method: Method,
    pub target: String,
    pub version: Version,
    /// Name and value of each field line, in order.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: BodyLength,
    pub keep_alive: bool,
    /// Bytes the head took.
    pub len: usize,
}

/// Parses the request head at the start of `bytes` as a listener with the default
/// limits does: `Ok(None)` while incomplete, `Err` with the status and reason of the
/// refusal.
pub fn request_head(bytes: &[u8]) -> Result<Option<RequestHead>, (u16, &'static str)> {
    let limits = ClientLimits {
        header_read_timeout: std::time::Duration::from_secs(30),
        body_timeout: std::time::Duration::from_secs(60),
        send_timeout: std::time::Duration::from_secs(60),
        max_header_size: 64 * 1024,
        max_headers: 100,
        max_concurrent_streams: 100,
    };
    let mut buf = BytesMut::from(bytes);
    let head =
        server::parse_head(&mut buf, &limits).map_err(|(status, why)| (status.as_u16(), why))?;
    Ok(head.map(|head| RequestHead {
        target: head.uri.to_string(),
        fields: head
            .fields
            .iter()
            .map(|(name, value)| (name.to_vec(), value.to_vec()))
            .collect(),
        method: head.method,
        version: head.version,
        body: head.body,
        keep_alive: head.keep_alive,
        len: bytes.len() - buf.len(),
    }))
}

/// A final response head the gateway accepted.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: u16,
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: BodyLength,
    pub reusable: bool,
    /// Interim responses as they would go to an HTTP/1.1 client.
    pub interim: Vec<u8>,
}

/// Parses upstream response heads at the start of `bytes`, skipping interim ones, as
/// the client side does: `Ok(None)` while incomplete.
pub fn response_head(bytes: &[u8], head_request: bool) -> Result<Option<ResponseHead>, String> {
    let mut read = ReadBuffer::default();
    read.bytes.extend_from_slice(bytes);
    let mut interim = Vec::new();
    loop {
        match client::parse_head(&mut read, head_request, &mut interim) {
            Ok(Parsed::Partial) => return Ok(None),
            Ok(Parsed::Interim) => {}
            Ok(Parsed::Final(head)) => {
                return Ok(Some(ResponseHead {
                    status: head.status.as_u16(),
                    fields: head
                        .fields
                        .iter()
                        .map(|(name, value)| (name.to_vec(), value.to_vec()))
                        .collect(),
                    body: head.length,
                    reusable: head.reusable,
                    interim,
                }));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Decodes a body framed as `length` from `input`, delivered in pieces that end at
/// `cuts`: the data, and whether its end was reached, or the framing error.
pub fn decode_body(
    length: BodyLength,
    input: &[u8],
    cuts: &[usize],
) -> Result<(Vec<u8>, bool), FramingError> {
    let mut decoder = BodyDecoder::from(length);
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    let mut fed = 0;
    for end in cuts
        .iter()
        .map(|&cut| cut.min(input.len()))
        .chain([input.len()])
    {
        if end < fed {
            continue;
        }
        buf.extend_from_slice(&input[fed..end]);
        fed = end;
        loop {
            match decoder.decode(&mut buf)? {
                Decoded::Data(bytes) => data.extend_from_slice(&bytes),
                Decoded::NeedMore => break,
                Decoded::Done => return Ok((data, true)),
            }
        }
    }
    Ok((data, decoder.is_done()))
}

/// What the JWT reader made of a token's header and claim set: the header's
/// algorithm and `kid`, then the claim set's `exp`, `nbf` and kept claims, or why it
/// was refused. The claim set is checked at `now` against issuer `https://i/`,
/// audiences `a` and `b`, 60 s of leeway, and keeps `sub`, `roles`, `exp` and `aud`.
pub fn jwt(header: &[u8], claims: &[u8], now: u64) -> JwtRead {
    use crate::auth::jwt::claim_set::Checks;
    use crate::auth::jwt::jws::Header;
    let checks = Checks {
        issuer: Some("https://i/"),
        audiences: &["a", "b"],
        leeway: 60,
        kept: &["sub", "roles", "exp", "aud"],
    };
    JwtRead {
        header: Header::parse(header).map(|h| (format!("{:?}", h.alg), h.kid.map(String::from))),
        claims: checks.read(claims, now).map(|set| {
            (
                set.expires,
                set.not_before,
                serde_json::Value::Object(set.claims),
            )
        }),
    }
}

/// See `jwt`.
#[derive(Debug)]
pub struct JwtRead {
    pub header: Result<(String, Option<String>), &'static str>,
    pub claims: Result<(u64, u64, serde_json::Value), &'static str>,
}
