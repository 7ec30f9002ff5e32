//! The gateway's request head parser against a reference built on `httparse` alone
//! and the gateway's documented rules, written out here a second time: any
//! disagreement on accept or refuse, method, target, version, field list or body
//! framing is a failure.
//!
//! The documented rules (README, "What the proxy does to every request") on top of
//! what httparse refuses: CRLF line ends only; heads up to 64 KiB and 100 fields;
//! a method and target the `http` crate takes; `Content-Length` one run of digits
//! (or a list of the same one); never both `Transfer-Encoding` and `Content-Length`;
//! no transfer coding in HTTP/1.0; `chunked` once and last, and no other coding; at
//! most 32 `Connection` options; on HTTP/1.1, no `Expect` but `100-continue`; a later
//! HTTP/1 minor (`HTTP/1.2`) read as HTTP/1.1.

#![no_main]

use gateway_runtime::fuzzing::request_head;
use gateway_runtime::h1::framing::BodyLength;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq)]
enum Verdict {
    Incomplete,
    Refused,
    Accepted {
        len: usize,
        method: String,
        target: String,
        http10: bool,
        fields: Vec<(Vec<u8>, Vec<u8>)>,
        body: BodyLength,
    },
}

fn reference(bytes: &[u8]) -> Verdict {
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Verdict::Incomplete,
        Err(httparse::Error::Version) => return other_version(bytes),
        Err(_) => return Verdict::Refused,
    };
    let head = &bytes[..len];
    let bare_lf = head
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'));
    if len > 64 * 1024 || bare_lf {
        return Verdict::Refused;
    }
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Verdict::Refused;
    };
    if http::Method::from_bytes(method.as_bytes()).is_err() {
        return Verdict::Refused;
    }
    // The target as the `http` crate writes it: an absolute-form target without a
    // path has the path `/` (RFC 9110 §4.2.3), which is the one difference allowed.
    let Ok(target) = target.parse::<http::Uri>().map(|uri| uri.to_string()) else {
        return Verdict::Refused;
    };
    let http10 = version == 0;
    let mut length: Option<u64> = None;
    let mut codings: Vec<String> = Vec::new();
    let mut options = 0;
    for field in request.headers.iter() {
        let name = field.name.to_ascii_lowercase();
        let value = field.value;
        match name.as_str() {
            "content-length" => {
                for element in value.split(|&b| b == b',') {
                    let digits = element.trim_ascii();
                    if digits.is_empty()
                        || digits.len() > 19
                        || !digits.iter().all(u8::is_ascii_digit)
                    {
                        return Verdict::Refused;
                    }
                    let Ok(n) = std::str::from_utf8(digits).unwrap_or("x").parse::<u64>() else {
                        return Verdict::Refused;
                    };
                    if length.is_some_and(|seen| seen != n) {
                        return Verdict::Refused;
                    }
                    length = Some(n);
                }
            }
            "transfer-encoding" => codings.extend(
                String::from_utf8_lossy(value)
                    .split(',')
                    .map(|c| c.trim().to_ascii_lowercase())
                    .filter(|c| !c.is_empty()),
            ),
            "connection" => {
                options += value
                    .split(|&b| b == b',')
                    .filter(|o| !o.trim_ascii().is_empty())
                    .count();
            }
            "expect" if !http10 && !value.eq_ignore_ascii_case(b"100-continue") => {
                return Verdict::Refused;
            }
            _ => {}
        }
    }
    let has_te = request
        .headers
        .iter()
        .any(|f| f.name.eq_ignore_ascii_case("transfer-encoding"));
    if options > 32 {
        return Verdict::Refused;
    }
    let body = if has_te {
        let chunked_once_last = codings.last().is_some_and(|c| c == "chunked")
            && codings.iter().filter(|c| *c == "chunked").count() == 1;
        if http10 || length.is_some() || !chunked_once_last || codings.len() != 1 {
            return Verdict::Refused;
        }
        BodyLength::Chunked
    } else {
        match length {
            None | Some(0) => BodyLength::Empty,
            Some(n) => BodyLength::Length(n),
        }
    };
    Verdict::Accepted {
        len,
        method: method.to_owned(),
        target,
        http10,
        fields: request
            .headers
            .iter()
            .map(|f| (f.name.as_bytes().to_vec(), f.value.to_vec()))
            .collect(),
        body,
    }
}

/// A version httparse refuses: `HTTP/1.N` for a later minor is read as HTTP/1.1;
/// one cut short is waited for while it can still become `HTTP/DIGIT.DIGIT`.
fn other_version(bytes: &[u8]) -> Verdict {
    let skipped = bytes.iter().take_while(|b| matches!(b, b'\r' | b'\n')).count();
    let mut parts = bytes[skipped..].splitn(3, |&b| b == b' ');
    let (Some(_), Some(_), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
        return Verdict::Refused;
    };
    let version_at = bytes.len() - rest.len();
    let version: Vec<u8> = rest
        .iter()
        .copied()
        .take_while(|b| !matches!(b, b'\r' | b'\n'))
        .collect();
    let line_ended = version.len() < rest.len();
    match version.as_slice() {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor] if minor.is_ascii_digit() => {
            let mut rewritten = bytes.to_vec();
            rewritten[version_at + 7] = b'1';
            reference(&rewritten)
        }
        short if short.len() < 8 && !line_ended => {
            let mut completed = short.to_vec();
            completed.extend_from_slice(&b"HTTP/1.1"[short.len()..]);
            let could_be = completed.starts_with(b"HTTP/")
                && completed[5].is_ascii_digit()
                && completed[6] == b'.'
                && completed[7].is_ascii_digit();
            if could_be {
                Verdict::Incomplete
            } else {
                Verdict::Refused
            }
        }
        _ => Verdict::Refused,
    }
}

fn gateway(bytes: &[u8]) -> Verdict {
    match request_head(bytes) {
        Ok(None) => Verdict::Incomplete,
        Err(_) => Verdict::Refused,
        Ok(Some(head)) => Verdict::Accepted {
            len: head.len,
            method: head.method.to_string(),
            target: head.target,
            http10: head.version == http::Version::HTTP_10,
            fields: head.fields,
            body: head.body,
        },
    }
}

fuzz_target!(|bytes: &[u8]| {
    let expected = reference(bytes);
    let got = gateway(bytes);
    assert_eq!(got, expected, "{:?}", String::from_utf8_lossy(bytes));
});
