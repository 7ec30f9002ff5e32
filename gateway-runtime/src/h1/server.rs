//! The server half of HTTP/1.1 (RFC 9112): request heads parsed straight into `http`
//! types that point into the read buffer, bodies framed as §6.3 decides, responses
//! written with their head and first body bytes in one system call, keep-alive,
//! pipelining, header-read timeout and graceful shutdown.
//!
//! hyper's server did this job for 8k of the 21k instructions per request the gateway
//! spent (callgrind, bench/gateway.toml); a gateway knows it forwards every message,
//! so it needs neither hyper's service machinery nor a copy of each field.
//!
//! Where the RFC lets a recipient choose, this side refuses: a request with both
//! `Transfer-Encoding` and `Content-Length`, codings other than `chunked`, obsolete
//! line folding, bare LF in chunked framing and whitespace before a colon all get a
//! 400 and a closed connection, because the upstream might read them differently.

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::io;
use std::mem::MaybeUninit;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use http::{Method, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::h1::framing::{self, BodyLength, FramingField, FramingFields};
use crate::h1::request_body::{Http1Body, Inbound, RequestBody};
use crate::io::Stream;
use crate::io::stream::WriteHalf;
use crate::message::error::json_error;
use crate::message::fields::{self, Fields};
use crate::observe::Transferred;
use crate::pipeline::gateway::{Request, Response};

/// The client preface of HTTP/2 with prior knowledge (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Room for as many field lines as any listener may allow; uninitialised, so its size
/// costs nothing per request.
const MAX_FIELDS: usize = crate::settings::MAX_HEADERS;
/// Bytes of an unread request body discarded before closing, so that the client reads
/// the response before the connection resets (RFC 9112 §9.6).
const LINGER_BYTES: usize = 1 << 20;
const LINGER_TIME: Duration = Duration::from_secs(1);

/// A listener's limits on what its clients send, shared by its connections (one copy
/// per worker, not one per connection: idle connections are counted in thousands).
#[derive(Debug, Clone, Copy)]
pub struct ClientLimits {
    pub header_read_timeout: Duration,
    /// Longest wait for the next bytes of a request body.
    pub body_timeout: Duration,
    /// How long one write may wait for the client to make room, as nginx's
    /// `send_timeout`: a client that stops reading does not hold its connection, and
    /// the upstream connection whose body it is being sent, for ever.
    pub send_timeout: Duration,
    pub max_header_size: usize,
    pub max_headers: usize,
    /// HTTP/2 streams open at once on one connection.
    pub max_concurrent_streams: u32,
}

/// How a connection ended, for the caller to continue with HTTP/2 if need be.
pub enum Ended {
    Closed,
    /// The client opened with the HTTP/2 preface: here is the connection and what was
    /// read of it.
    Http2(Stream, BytesMut),
}

/// One request head, parsed.
pub(crate) struct Head {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) version: Version,
    pub(crate) fields: Fields,
    /// `Empty`, `Length(n)` or `Chunked`: a request is never framed by closing.
    pub(crate) body: BodyLength,
    /// The client asked to keep the connection (HTTP/1.1 without `close`, or HTTP/1.0
    /// with `keep-alive`).
    pub(crate) keep_alive: bool,
    pub(crate) expect_continue: bool,
}

/// What waiting for the next head produced.
#[allow(
    clippy::large_enum_variant,
    reason = "made once per request and moved once; boxing the head would allocate"
)]
enum Next {
    Head(Head),
    /// Nothing more to do: closed by the client, idle past the timeout, shutting down.
    Close,
    Reject(StatusCode, &'static str),
    Http2,
}

/// Serves HTTP/1.1 requests on `stream` with `service` until the client, an error or
/// `shutdown` turning true ends the connection. A request in flight then is finished
/// and answered with `Connection: close`.
pub async fn serve<S, F, E, D>(
    stream: Stream,
    limits: &ClientLimits,
    shutdown: watch::Receiver<bool>,
    service: S,
    finish: D,
) -> Ended
where
    S: Fn(Request) -> F,
    F: Future<Output = (Response, E)>,
    D: Fn(E, Transferred),
{
    let (reader, mut writer) = stream.into_split();
    let inbound = Rc::new(RefCell::new(Inbound::new(reader, limits.body_timeout)));
    let mut out = Vec::new();
    // Polled once, so that the shutdown signal wakes this task; after that a version
    // check tells whether it has come, without registering again on every wait.
    let mut watcher = shutdown.clone();
    let mut stop = pin!(async move {
        let _ = watcher.wait_for(|stop| *stop).await;
    });
    let mut stopping = poll_once(stop.as_mut()).await;
    let stopped = || shutdown.has_changed().unwrap_or(true);
    // One timer for the connection, moved on only when it has fallen `slack` behind:
    // a head gets between `timeout` and `timeout + slack` to arrive, and most requests
    // cost no timer-wheel update.
    let timeout = limits.header_read_timeout;
    let slack = (timeout / 8).min(Duration::from_secs(1));
    let mut deadline = pin!(tokio::time::sleep(timeout + slack));
    let mut deadline_set = Instant::now();
    let mut deadline_armed = false;
    let mut first = true;
    loop {
        let now = Instant::now();
        if deadline.is_elapsed() || now - deadline_set > slack {
            deadline.as_mut().reset(now + timeout + slack);
            deadline_set = now;
            deadline_armed = false;
        }
        // Bytes of an incomplete head already looked at: a head dripped in small reads
        // is parsed again only once its empty line has arrived, so its cost stays
        // linear in its length (parsing from the start on every read was quadratic).
        let mut scanned: usize = 0;
        let next = poll_fn(|cx| {
            let mut inbound = inbound.borrow_mut();
            let inbound = &mut *inbound;
            loop {
                let bytes = &mut inbound.read.bytes;
                if !bytes.is_empty() {
                    if first && H2_PREFACE.starts_with(&bytes[..bytes.len().min(H2_PREFACE.len())])
                    {
                        if bytes.len() >= H2_PREFACE.len() {
                            return Poll::Ready(Next::Http2);
                        }
                    } else if scanned == 0 || ends_head(&bytes[scanned.saturating_sub(3)..]) {
                        match parse_head(bytes, limits) {
                            Ok(Some(head)) => return Poll::Ready(Next::Head(head)),
                            Ok(None) if bytes.len() > limits.max_header_size => {
                                let (status, message) = oversized(bytes, limits.max_header_size);
                                return Poll::Ready(Next::Reject(status, message));
                            }
                            Ok(None) => scanned = bytes.len(),
                            Err((status, message)) => {
                                return Poll::Ready(Next::Reject(status, message));
                            }
                        }
                    } else if bytes.len() > limits.max_header_size {
                        let (status, message) = oversized(bytes, limits.max_header_size);
                        return Poll::Ready(Next::Reject(status, message));
                    } else {
                        scanned = bytes.len();
                    }
                }
                if stopping && bytes.is_empty() {
                    return Poll::Ready(Next::Close);
                }
                match inbound.read.poll_fill(Pin::new(&mut inbound.reader), cx) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Next::Close),
                    Poll::Ready(Ok(_)) => {}
                    Poll::Pending => break,
                }
            }
            let idle = inbound.read.bytes.is_empty();
            if !stopping && stopped() {
                stopping = true;
                if idle {
                    return Poll::Ready(Next::Close);
                }
            }
            // Polled once per reset to register this task; then its state says enough.
            let expired = if deadline_armed {
                deadline.is_elapsed()
            } else {
                deadline_armed = true;
                deadline.as_mut().poll(cx).is_ready()
            };
            if expired {
                // Idle keep-alive connections just close; a head that is taking too
                // long (slowloris) is told so.
                return Poll::Ready(if idle {
                    Next::Close
                } else {
                    Next::Reject(
                        StatusCode::REQUEST_TIMEOUT,
                        "request head not received in time",
                    )
                });
            }
            if idle {
                // Idle connections hold no read buffer: 10,000 of them would otherwise
                // keep 80 MB of empty buffers.
                inbound.read.release();
            }
            Poll::Pending
        })
        .await;
        first = false;
        let head = match next {
            Next::Head(head) => head,
            Next::Close => return Ended::Closed,
            Next::Http2 => {
                let Ok(inbound) = Rc::try_unwrap(inbound) else {
                    return Ended::Closed;
                };
                let Inbound { reader, read, .. } = inbound.into_inner();
                return match reader.reunite(writer) {
                    Some(stream) => Ended::Http2(stream, read.bytes),
                    None => Ended::Closed,
                };
            }
            Next::Reject(status, message) => {
                // The head was not understood: answer as to HTTP/1.1, and close.
                let response = json_error(status, message);
                let _ = write_response(
                    &mut writer,
                    &mut out,
                    response,
                    limits.send_timeout,
                    (false, false, true),
                    &mut 0,
                )
                .await;
                Box::pin(linger(inbound, writer)).await;
                return Ended::Closed;
            }
        };
        let has_body = head.body != BodyLength::Empty;
        if head.expect_continue && has_body && inbound.borrow().read.bytes.is_empty() {
            // The gateway takes the body for the upstream; waiting for the upstream's
            // own 100 would cost a round trip for nothing (nginx answers it too).
            if send(
                &mut writer,
                limits.send_timeout,
                b"HTTP/1.1 100 Continue\r\n\r\n",
                &[],
            )
            .await
            .is_err()
            {
                return Ended::Closed;
            }
        }
        let head_request = head.method == Method::HEAD;
        let http10 = head.version == Version::HTTP_10;
        {
            let mut inbound = inbound.borrow_mut();
            inbound.body_done = !has_body;
            inbound.received = 0;
        }
        let body = Http1Body::new(inbound.clone(), head.body);
        let request = Request {
            method: head.method,
            uri: head.uri,
            version: head.version,
            fields: head.fields,
            body: RequestBody::Http1(body),
        };
        // Pinned where it is made, as moving the request's future into another would
        // copy it, and in a block of its own: its room in this task's future is then
        // shared with the response's write, not added to it (every idle connection
        // carries that room).
        let Some((response, epilogue)) = ({
            let mut serving = pin!(service(request));
            let mut watching = true;
            poll_fn(|cx| {
                let limit = limits.max_header_size;
                serve_unless_abandoned(serving.as_mut(), &inbound, limit, &mut watching, cx)
            })
            .await
        }) else {
            return Ended::Closed;
        };
        stopping |= stopped();
        let body_done = inbound.borrow().body_done;
        let close = !head.keep_alive || stopping || !body_done;
        let mut sent = 0;
        let written = write_response(
            &mut writer,
            &mut out,
            response,
            limits.send_timeout,
            (head_request, http10, close),
            &mut sent,
        )
        .await;
        let received = inbound.borrow().received;
        finish(epilogue, Transferred { received, sent });
        match written {
            Ok(true) if !close => {}
            Ok(_) if !body_done => {
                Box::pin(linger(inbound, writer)).await;
                return Ended::Closed;
            }
            _ => return Ended::Closed,
        }
    }
}

/// An HTTP-version other than the two httparse takes.
#[derive(Debug, PartialEq, Eq)]
enum OtherVersion {
    /// `HTTP/1.2` and later minors are read as HTTP/1.1 (RFC 9110 §2.5: a recipient
    /// processes them as the highest minor it implements, as nginx does); the minor's
    /// digit is at this offset.
    LaterMinor(usize),
    /// `HTTP/2.0`, `HTTP/3.0`: 505 (RFC 9110 §15.6.6).
    OtherMajor,
    /// Not `HTTP/DIGIT.DIGIT` (RFC 9112 §2.3: the name is case-sensitive).
    Malformed,
    /// The version is not all here yet.
    Incomplete,
}

/// Reads the version httparse refused: the token after the request line's second
/// space (the method and target, which it parsed, hold none), up to the line's end.
fn other_version(bytes: &[u8]) -> OtherVersion {
    let line_start = bytes
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(bytes.len());
    let mut spaces = bytes[line_start..]
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b' ')
        .map(|(i, _)| line_start + i);
    let Some(start) = spaces.nth(1).map(|space| space + 1) else {
        return OtherVersion::Malformed;
    };
    let rest = &bytes[start..];
    let token = &rest[..rest
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(rest.len())];
    const PATTERN: &[u8; 8] = b"HTTP/0.0";
    let fits = |(&b, &p): (&u8, &u8)| {
        if p == b'0' {
            b.is_ascii_digit()
        } else {
            b == p
        }
    };
    if token.len() > PATTERN.len() || !token.iter().zip(PATTERN).all(fits) {
        return OtherVersion::Malformed;
    }
    if token.len() < PATTERN.len() {
        // Cut short by the end of the bytes read so far, or by the end of the line.
        return if token.len() == rest.len() {
            OtherVersion::Incomplete
        } else {
            OtherVersion::Malformed
        };
    }
    match token[5] {
        b'1' => OtherVersion::LaterMinor(start + 7),
        _ => OtherVersion::OtherMajor,
    }
}

/// Whether the line in `head` whose content ends at `at` ends in CRLF, after any
/// spaces and tabs.
fn crlf_at(head: &[u8], at: usize) -> bool {
    let rest = head.get(at..).unwrap_or_default();
    let whitespace = rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    rest[whitespace..].starts_with(b"\r\n")
}

/// Whether `bytes` hold the empty line that ends a head (CRLF CRLF, or bare LFs,
/// which the parser then refuses).
fn ends_head(bytes: &[u8]) -> bool {
    bytes.windows(2).any(|w| w == b"\n\n") || bytes.windows(3).any(|w| w == b"\n\r\n")
}

/// The refusal of a head over the size limit: 414 when the request line alone is
/// over it (RFC 9110 §15.5.15), 431 otherwise.
fn oversized(head: &[u8], limit: usize) -> (StatusCode, &'static str) {
    match head.iter().position(|&b| b == b'\n') {
        Some(line_end) if line_end < limit => (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request head too large",
        ),
        _ => (StatusCode::URI_TOO_LONG, "request target too long"),
    }
}

/// Polls `serving` to its end, unless the client closes the connection while it waits
/// with its request all read: then `Ready(None)`, and the caller drops `serving`, and
/// with it the upstream exchange (its connection closed, not pooled) and any calls
/// still out. The driver logs such a request as 499. nginx (`proxy_ignore_client_abort off`) and
/// Envoy also stop the upstream request when the client goes.
///
/// Bytes that arrive meanwhile (a pipelined request) are kept for the next head, in
/// the room the read buffer has: past `limit` of them, or with no room, the connection
/// is no longer watched (`watching`). A function polled in place rather than an `async
/// fn`: every idle connection's task has room for what the request's wait holds.
fn serve_unless_abandoned<T>(
    serving: Pin<&mut impl Future<Output = T>>,
    inbound: &RefCell<Inbound>,
    limit: usize,
    watching: &mut bool,
    cx: &mut Context<'_>,
) -> Poll<Option<T>> {
    if let Poll::Ready(done) = serving.poll(cx) {
        return Poll::Ready(Some(done));
    }
    let mut inbound = inbound.borrow_mut();
    let inbound = &mut *inbound;
    // While the body is still being read, reading it is `serving`'s own business.
    while *watching && inbound.body_done {
        if inbound.read.bytes.len() > limit {
            *watching = false;
            break;
        }
        // Read only once the socket has something: a bare readiness check is a third
        // of a read's cost, and a client that stays sends nothing.
        if inbound.reader.poll_read_ready(cx).is_pending() {
            break;
        }
        match inbound
            .read
            .poll_fill_spare(Pin::new(&mut inbound.reader), cx)
        {
            Some(Poll::Ready(Ok(0) | Err(_))) => return Poll::Ready(None),
            Some(Poll::Ready(Ok(_))) => {}
            Some(Poll::Pending) => break,
            None => *watching = false,
        }
    }
    Poll::Pending
}

/// Whether `future` is ready when polled once.
async fn poll_once(mut future: Pin<&mut impl Future<Output = ()>>) -> bool {
    poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx).is_ready())).await
}

/// Parses the request head at the start of `bytes`, consuming it when complete.
pub(crate) fn parse_head(
    bytes: &mut BytesMut,
    limits: &ClientLimits,
) -> Result<Option<Head>, (StatusCode, &'static str)> {
    #[cfg(test)]
    tests::PARSES.with(|n| n.set(n.get() + 1));
    const BAD: StatusCode = StatusCode::BAD_REQUEST;
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let slots = &mut slots[..limits.max_headers.min(MAX_FIELDS)];
    let mut request = httparse::Request::new(&mut []);
    let len = match request.parse_with_uninit_headers(bytes, slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err((
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "too many header fields",
            ));
        }
        Err(httparse::Error::Version) => match other_version(bytes) {
            OtherVersion::LaterMinor(digit) => {
                bytes[digit] = b'1';
                return parse_head(bytes, limits);
            }
            OtherVersion::Incomplete => return Ok(None),
            OtherVersion::OtherMajor => {
                return Err((
                    StatusCode::HTTP_VERSION_NOT_SUPPORTED,
                    "HTTP version not supported",
                ));
            }
            OtherVersion::Malformed => return Err((BAD, "malformed request head")),
        },
        // Obsolete line folding, whitespace before a colon, bare CR, control bytes:
        // RFC 9112 §5 lets a server only refuse or repair them, and repairing is a guess.
        Err(_) => return Err((BAD, "malformed request head")),
    };
    if len > limits.max_header_size {
        return Err(oversized(&bytes[..len], limits.max_header_size));
    }
    // Where a part of the head lies in it: offset and length.
    let at = |part: &[u8]| Fields::offset_in(bytes, part);
    let method = request
        .method
        .map(str::as_bytes)
        .map(at)
        .ok_or((BAD, "no method"))?;
    let target = request
        .path
        .map(str::as_bytes)
        .map(at)
        .ok_or((BAD, "no target"))?;
    // httparse takes bare LF as a line end too, which RFC 9112 §2.2 lets a recipient
    // do, and servers disagree about: the gateway takes CRLF only. The request line
    // ends after the target and ` HTTP/1.x`, each field line after its value and any
    // trailing whitespace, and the head with an empty line.
    // Empty lines before the request line, which httparse skips (RFC 9112 §2.2), too.
    let head = &bytes[..len];
    let leading = &head[..method.0];
    let bare_leading_lf = leading
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || leading[i - 1] != b'\r'));
    if bare_leading_lf
        || !crlf_at(head, target.0 + target.1 + b" HTTP/1.1".len())
        || !head.ends_with(b"\r\n\r\n")
    {
        return Err((BAD, "bare LF in the request head"));
    }
    let version = match request.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut fields = Fields::from_head(&bytes[..len], request.headers.len());
    let mut framing = FramingFields::default();
    let mut expect_continue = false;
    for field in request.headers.iter() {
        let name = field.name.as_bytes();
        let value = field.value;
        let kind = framing
            .observe(name, value)
            .map_err(|framing::FramingError(why)| (BAD, why))?;
        // RFC 9110 §10.1.1: an HTTP/1.0 request's expectation is ignored, not met.
        let http11 = version == Version::HTTP_11;
        if kind == FramingField::Other && http11 && name.eq_ignore_ascii_case(b"expect") {
            if !value.eq_ignore_ascii_case(b"100-continue") {
                return Err((StatusCode::EXPECTATION_FAILED, "unsupported expectation"));
            }
            expect_continue = true;
        }
        let (name_at, value_at) = (at(name), at(value));
        let line_end = if value.is_empty() {
            name_at.0 + name_at.1 + 1
        } else {
            value_at.0 + value_at.1
        };
        if !crlf_at(head, line_end) {
            return Err((BAD, "bare LF in the request head"));
        }
        fields.push_at(name_at, value_at);
    }
    if framing.connection_options > framing::MAX_CONNECTION_OPTIONS {
        return Err((BAD, "too many Connection options"));
    }
    // RFC 9112 §6.1 and §6.3: a transfer coding in HTTP/1.0, a final coding other than
    // chunked, or a coding next to a length make the body's end uncertain.
    let body = match (framing.transfer_codings, framing.content_length) {
        (Some(_), _) if version == Version::HTTP_10 => {
            return Err((BAD, "Transfer-Encoding in an HTTP/1.0 request"));
        }
        (Some(_), Some(_)) => {
            return Err((BAD, "both Transfer-Encoding and Content-Length"));
        }
        (Some(codings), None) => match codings.check() {
            Ok(()) => BodyLength::Chunked,
            Err(framing::CodingError::Unframed) => {
                return Err((BAD, "the body's length cannot be determined"));
            }
            Err(framing::CodingError::Unsupported) => {
                return Err((StatusCode::NOT_IMPLEMENTED, "unsupported transfer coding"));
            }
        },
        (None, Some(0) | None) => BodyLength::Empty,
        (None, Some(n)) => BodyLength::Length(n),
    };
    let keep_alive = framing.persistent(version == Version::HTTP_10);

    let head = bytes.split_to(len).freeze();
    let span = |(start, len): (usize, usize)| start..start + len;
    let method = Method::from_bytes(&head[span(method)]).map_err(|_| (BAD, "invalid method"))?;
    let uri = Uri::from_maybe_shared(head.slice(span(target)))
        .map_err(|_| (BAD, "invalid request target"))?;
    Ok(Some(Head {
        method,
        uri,
        version,
        fields,
        body,
        keep_alive,
        expect_continue,
    }))
}

/// Writes `response`, its head and first body bytes in one system call when the body
/// has them ready, counting body bytes in `sent` as they go out. `(head_request,
/// http10, close)` describe the request it answers. Returns whether the connection can
/// carry another request.
async fn write_response(
    writer: &mut WriteHalf,
    out: &mut Vec<u8>,
    response: Response,
    send_timeout: Duration,
    (head_request, http10, close): (bool, bool, bool),
    sent: &mut u64,
) -> io::Result<bool> {
    let (status, fields, mut body) = response.into_parts();
    let bodiless = head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let exact = body.size_hint().exact();
    let framing = match exact {
        _ if bodiless => Framing::None,
        Some(n) => Framing::Length(n),
        None if http10 => Framing::UntilClose,
        None => Framing::Chunked,
    };
    let close = close || framing == Framing::UntilClose;
    out.clear();
    // RFC 9110 §15.2: no 1xx to an HTTP/1.0 client.
    if !http10 {
        out.extend_from_slice(body.interim());
    }
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut has_length = false;
    let mut has_date = false;
    for (name, line) in fields.lines() {
        match name.len() {
            14 if fields::is(name, b"content-length") => {
                // The body's own length frames the message; a bodiless response keeps
                // the length it describes, except a 1xx or 204, which must not carry
                // one (RFC 9110 §8.6).
                if !bodiless || status == StatusCode::NO_CONTENT || status.is_informational() {
                    continue;
                }
                has_length = true;
            }
            17 if fields::is(name, b"transfer-encoding") => continue,
            10 if fields::is(name, b"connection") => continue,
            4 if fields::is(name, b"date") => has_date = true,
            _ => {}
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    drop(fields);
    if !has_date {
        crate::message::date::write_date_field(out);
    }
    let mut digits = itoa::Buffer::new();
    match framing {
        Framing::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(digits.format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        // What a GET would have carried, for a HEAD answered by the gateway itself.
        Framing::None if head_request && !has_length => {
            if let Some(n) = exact.filter(|&n| n > 0) {
                out.extend_from_slice(b"content-length: ");
                out.extend_from_slice(digits.format(n).as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        Framing::None | Framing::UntilClose => {}
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    } else if http10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if framing == Framing::None {
        // Dropped unread: an upstream body that is empty gives its connection back.
        drop(body);
        send(writer, send_timeout, out, &[]).await?;
        return Ok(!close);
    }

    let mut expected = match framing {
        Framing::Length(n) => Some(n),
        _ => None,
    };
    loop {
        // What is written waits for more data only if that data is already there: the
        // head for the first, and a piece for the next (an aggregate's pieces go out
        // together, a streamed body's as they come).
        let polled = poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await;
        let frame = match polled {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                if !out.is_empty() {
                    send(writer, send_timeout, out, &[]).await?;
                    out.clear();
                }
                body.frame().await
            }
        };
        let data = match frame {
            None => break,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
            Some(Err(e)) => {
                tracing::debug!(error = %e, "response body broke off; closing the connection");
                return Err(io::Error::other("response body broke off"));
            }
        };
        if let Some(left) = expected.as_mut() {
            *left = left
                .checked_sub(data.len() as u64)
                .ok_or_else(|| io::Error::other("response body longer than its length"))?;
        }
        if data.is_empty() {
            continue;
        }
        // Counted as handed to the connection: a write that fails next counts it too.
        *sent += data.len() as u64;
        if framing == Framing::Chunked {
            let mut size = [0u8; 18];
            out.extend_from_slice(framing::chunk_size_line(data.len(), &mut size));
        }
        if out.len() + data.len() <= 64 * 1024 {
            out.extend_from_slice(&data);
        } else {
            send(writer, send_timeout, out, &data).await?;
            out.clear();
        }
        if framing == Framing::Chunked {
            out.extend_from_slice(b"\r\n");
        }
    }
    if expected.is_some_and(|left| left > 0) {
        return Err(io::Error::other("response body shorter than its length"));
    }
    if framing == Framing::Chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    if !out.is_empty() {
        send(writer, send_timeout, out, &[]).await?;
    }
    Ok(!close)
}

/// Writes all of `bytes`, then all of `more`, in vectored writes: one system call for
/// what two would take. Most writes complete at once and need no timer; one that has
/// to wait for the client gets `timeout`.
async fn send(
    writer: &mut WriteHalf,
    timeout: Duration,
    bytes: &[u8],
    more: &[u8],
) -> io::Result<()> {
    if more.is_empty() {
        timed(writer.write_all(bytes), timeout).await?;
    } else {
        timed(write_both(writer, bytes, more), timeout).await?;
    }
    // A TLS session holds records back when the socket is full, and the connection may
    // next wait for a request: they are pushed out now.
    if writer.holds_back_writes() {
        timed(writer.flush(), timeout).await?;
    }
    Ok(())
}

async fn write_both(writer: &mut WriteHalf, mut first: &[u8], mut second: &[u8]) -> io::Result<()> {
    while !first.is_empty() || !second.is_empty() {
        let n = writer
            .write_vectored(&[io::IoSlice::new(first), io::IoSlice::new(second)])
            .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let from_first = n.min(first.len());
        first = &first[from_first..];
        second = &second[n - from_first..];
    }
    Ok(())
}

/// Runs one write, bounded by `timeout`; a write that completes at once costs no
/// timer.
async fn timed(write: impl Future<Output = io::Result<()>>, timeout: Duration) -> io::Result<()> {
    let mut write = pin!(write);
    let first = poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await;
    if let Poll::Ready(result) = first {
        return result;
    }
    match tokio::time::timeout(timeout, write).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client did not read in time",
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// Boxed where it is awaited: its discard buffer would otherwise be part of every
/// connection's task, idle ones included.
///
/// Closes after an answer that left request bytes unread: the write side first, then
/// what the client still sends is read and dropped for a moment, so that the kernel
/// does not reset the connection under the response (RFC 9112 §9.6).
async fn linger(inbound: Rc<RefCell<Inbound>>, mut writer: WriteHalf) {
    if writer.shutdown().await.is_err() {
        return;
    }
    // A request body still held elsewhere keeps the reader; then just close.
    let Ok(inbound) = Rc::try_unwrap(inbound) else {
        return;
    };
    let mut inbound = inbound.into_inner();
    let mut discard = [0u8; 8192];
    let mut left = LINGER_BYTES;
    let _ = tokio::time::timeout(LINGER_TIME, async {
        while left > 0 {
            match inbound.reader.read(&mut discard).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(head: &[u8]) -> Result<Option<Head>, (StatusCode, &'static str)> {
        let limits = ClientLimits {
            header_read_timeout: Duration::from_secs(1),
            body_timeout: Duration::from_secs(1),
            send_timeout: Duration::from_secs(1),
            max_header_size: 8192,
            max_headers: 20,
            max_concurrent_streams: 100,
        };
        parse_head(&mut BytesMut::from(head), &limits)
    }

    fn status(head: &[u8]) -> StatusCode {
        match parse(head) {
            Err((status, _)) => status,
            Ok(Some(_)) => StatusCode::OK,
            Ok(None) => StatusCode::CONTINUE,
        }
    }

    /// A later HTTP/1 minor is read as HTTP/1.1; a version cut short is waited for
    /// only while it can still become one.
    #[test]
    fn later_minor_versions() {
        for head in [
            &b"GET / HTTP/1.2\r\nHost: x\r\n\r\n"[..],
            b"\r\nGET / HTTP/1.9\r\nHost: x\r\n\r\n",
        ] {
            let parsed = parse(head).expect("valid").expect("complete");
            assert_eq!(parsed.version, Version::HTTP_11);
        }
        for partial in [&b"GET / HTTP/2"[..], b"GET / HTTP/1.2", b"GET / HTTP/1.2\r"] {
            assert_eq!(status(partial), StatusCode::CONTINUE, "{partial:?}");
        }
        assert_eq!(
            other_version(b"GET / HTTP/1.2\r\n"),
            OtherVersion::LaterMinor(13)
        );
        assert_eq!(status(b"GET / HTTP/x"), StatusCode::BAD_REQUEST);
        assert_eq!(status(b"GET / HTTP/22"), StatusCode::BAD_REQUEST);
    }

    /// Empty values, with or without whitespace around them, keep their place.
    #[test]
    fn empty_field_values() {
        let head =
            parse(b"GET / HTTP/1.1\r\nHost: x\r\nX-Empty:\r\nX-Blank:   \r\nX-Tab:\t\r\n\r\n")
                .expect("valid")
                .expect("complete");
        assert_eq!(head.fields.get(b"x-empty"), Some(&b""[..]));
        assert_eq!(head.fields.get(b"x-blank"), Some(&b""[..]));
        let lines: Vec<_> = head.fields.lines().map(|(_, line)| line).collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[1..], [&b"X-Empty:"[..], b"X-Blank:", b"X-Tab:"]);
    }

    /// A plain head parses into method, target, version and fields, all of them kept.
    #[test]
    fn parses_a_head() {
        let head = parse(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\n\r\n")
            .expect("valid")
            .expect("complete");
        assert_eq!(head.method, Method::GET);
        assert_eq!(head.uri, "/a?b=1");
        assert_eq!(head.fields.get_all(b"x-a").count(), 2);
        let lines: Vec<_> = head.fields.lines().map(|(_, line)| line).collect();
        assert_eq!(lines, [&b"Host: x"[..], b"X-A: 1", b"x-a: 2"]);
        assert!(head.keep_alive);
        assert_eq!(head.body, BodyLength::Empty);
        assert!(
            parse(b"GET / HTTP/1.1\r\nHost: x\r\n")
                .expect("partial")
                .is_none()
        );
    }

    /// Framing that two servers could read differently is refused (RFC 9112 §6), and
    /// so is a `Connection` list long enough to make forwarding quadratic.
    #[test]
    fn refuses_ambiguous_framing() {
        let bad = StatusCode::BAD_REQUEST;
        let options: Vec<String> = (0..=framing::MAX_CONNECTION_OPTIONS)
            .map(|i| format!("x-{i}"))
            .collect();
        let too_many_options = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: {}\r\n\r\n",
            options.join(", ")
        );
        for (head, expected) in [
            (&b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..], bad),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", bad),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", bad),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x10\r\n\r\n", bad),
            (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", bad),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", bad),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n", bad),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", StatusCode::NOT_IMPLEMENTED),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n", bad),
            (b"GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n", bad),
            (b"GET / HTTP/1.1\r\nHost: x\r\nX-Bad: a\rb\r\n\r\n", bad),
            (b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", bad),
            (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", StatusCode::HTTP_VERSION_NOT_SUPPORTED),
            (b"GET / HTTP/3.0\r\n\r\n", StatusCode::HTTP_VERSION_NOT_SUPPORTED),
            (b"GET / http/1.1\r\nHost: x\r\n\r\n", bad),
            (b"GET / HTTP/1.10\r\nHost: x\r\n\r\n", bad),
            (b"GET / HTTP/1\r\nHost: x\r\n\r\n", bad),
            (b"GET / HTTP/1.1.\r\nHost: x\r\n\r\n", bad),
            (b"GET / HTTP/1.1\r\nHost: x\r\nExpect: magic\r\n\r\n", StatusCode::EXPECTATION_FAILED),
            (too_many_options.as_bytes(), bad),
            (b"GET / HTTP/1.1\nHost: x\r\n\r\n", bad),
            (b"GET / HTTP/1.1\r\nHost: x\n\r\n", bad),
            (b"GET / HTTP/1.1\r\nHost: x\r\nX-Empty:\n\r\n", bad),
            (b"GET / HTTP/1.1\r\nHost: x\r\nX-Blank: a  \n\r\n", bad),
            (b"GET / HTTP/1.1\r\nHost: x\r\n\n", bad),
            // Found by the differential fuzz target: a bare LF among the empty lines
            // httparse skips before the request line.
            (b"\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", bad),
            (b"\r\n\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", bad),
        ] {
            assert_eq!(status(head), expected, "{}", String::from_utf8_lossy(head));
        }
        let chunked = parse(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n")
            .expect("valid")
            .expect("complete");
        assert_eq!(chunked.body, BodyLength::Chunked);
        let sized = parse(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n")
            .expect("valid")
            .expect("complete");
        assert_eq!(sized.body, BodyLength::Length(5));
    }

    /// Limits on field count and head size are 431s.
    #[test]
    fn head_limits() {
        let many: Vec<u8> = [&b"GET / HTTP/1.1\r\n"[..], &b"x: 1\r\n".repeat(21), b"\r\n"].concat();
        assert_eq!(status(&many), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        let long: Vec<u8> = [&b"GET / HTTP/1.1\r\nx: "[..], &[b'a'; 9000], b"\r\n\r\n"].concat();
        assert_eq!(status(&long), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        let target: Vec<u8> = [&b"GET /"[..], &[b'a'; 9000], b" HTTP/1.1\r\n\r\n"].concat();
        assert_eq!(status(&target), StatusCode::URI_TOO_LONG);
    }

    /// A client that stops reading gets its writes cut off after the send timeout.
    #[tokio::test(start_paused = true)]
    async fn writes_to_a_client_that_does_not_read_time_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let _client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let (_reader, mut writer) = Stream::Tcp(server).into_split();
        let started = Instant::now();
        let big = vec![0u8; 64 << 20];
        let timeout = Duration::from_secs(60);
        let error = send(&mut writer, timeout, b"head", &big)
            .await
            .expect_err("the client never reads");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= timeout);
        let small = send(&mut writer, timeout, b"x", &[]).await;
        assert!(small.is_err(), "the buffer is still full: {small:?}");
    }

    thread_local! {
        /// How many times `parse_head` ran on this thread.
        pub(super) static PARSES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    // === the session over scripted I/O ===

    /// A client that sends `sends` (one read each) and expects exactly `expects` back.
    fn scripted(sends: &[&[u8]], expects: &[&[u8]]) -> Stream {
        let mut reads = tokio_test::io::Builder::new();
        for bytes in sends {
            reads.read(bytes);
        }
        let mut writes = tokio_test::io::Builder::new();
        for bytes in expects {
            writes.write(bytes);
        }
        Stream::Scripted(Box::new(crate::io::stream::Scripted {
            sends: reads.build(),
            expects: writes.build(),
        }))
    }

    /// Serves `stream` with a service that reads each request's body and answers with
    /// its method, target and body length; the `Date` is fixed so that the bytes on
    /// the wire are known. Returns each exchange's body bytes, as `finish` saw them.
    async fn serve_scripted(stream: Stream) -> Vec<Transferred> {
        let finished = RefCell::new(Vec::new());
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        let limits = ClientLimits {
            header_read_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(5),
            send_timeout: Duration::from_secs(5),
            max_header_size: 8192,
            max_headers: 20,
            max_concurrent_streams: 100,
        };
        let service = |req: Request| async move {
            let answer = format!("{} {}", req.method, req.uri);
            let body = req.body.collect().await.map(|b| b.to_bytes().len());
            let text = match body {
                Ok(len) => format!("{answer} {len}"),
                Err(_) => format!("{answer} broken"),
            };
            let mut fields = crate::message::fields::Fields::with_capacity(1, 64);
            fields.append(b"date", b"Tue, 01 Dec 2026 20:00:00 GMT");
            let response = Response::new(
                StatusCode::OK,
                fields,
                crate::message::body::Body::local(text),
            );
            (response, ())
        };
        let finish = |(), transferred| finished.borrow_mut().push(transferred);
        let ended = serve(stream, &limits, shutdown, service, finish).await;
        assert!(matches!(ended, Ended::Closed));
        finished.into_inner()
    }

    fn ok(body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 200 OK\r\ndate: Tue, 01 Dec 2026 20:00:00 GMT\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    /// `ok`'s answer as the last on its connection.
    fn closing(answer: Vec<u8>) -> Vec<u8> {
        let answer = String::from_utf8(answer).expect("ASCII");
        answer
            .replacen("\r\n\r\n", "\r\nconnection: close\r\n\r\n", 1)
            .into_bytes()
    }

    /// Pipelined requests arriving in one read are answered in order, each with its
    /// body read, and the connection ends when the client closes it.
    #[tokio::test]
    async fn session_answers_pipelined_requests_in_order() {
        let first = ok("GET /a 0");
        let second = ok("POST /b 5");
        let stream = scripted(
            &[b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"],
            &[&first, &second],
        );
        let finished = serve_scripted(stream).await;
        let sent = |answer: &str| answer.len() as u64;
        assert_eq!(
            finished,
            [
                Transferred {
                    received: 0,
                    sent: sent("GET /a 0")
                },
                Transferred {
                    received: 5,
                    sent: sent("POST /b 5")
                },
            ]
        );
    }

    /// A chunked body split across reads is decoded for the service.
    #[tokio::test]
    async fn session_decodes_chunked_bodies_across_reads() {
        let answer = ok("PUT /c 11");
        let stream = scripted(
            &[
                b"PUT /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
                b"lo\r\n6\r\n world\r\n0\r\n\r\n",
            ],
            &[&answer],
        );
        let finished = serve_scripted(stream).await;
        // The decoded body, not its chunk framing.
        assert_eq!(finished[0].received, 11);
    }

    /// A head dripped one byte per read is parsed a bounded number of times, not once
    /// per byte (which made slow clients cost quadratic CPU).
    #[tokio::test]
    async fn session_parses_a_dripped_head_once_complete() {
        let head = format!(
            "GET /drip HTTP/1.1\r\nHost: x\r\nX-Long: {}\r\n\r\n",
            "a".repeat(2000)
        );
        let bytes: Vec<[u8; 1]> = head.bytes().map(|b| [b]).collect();
        let reads: Vec<&[u8]> = bytes.iter().map(|b| &b[..]).collect();
        let answer = ok("GET /drip 0");
        PARSES.with(|n| n.set(0));
        serve_scripted(scripted(&reads, &[&answer])).await;
        let parses = PARSES.with(std::cell::Cell::get);
        assert!(parses <= 3, "parsed {parses} times");
    }

    /// `Expect: 100-continue` with no body bytes in hand is answered before the body
    /// is read.
    #[tokio::test]
    async fn session_answers_expect_continue() {
        let answer = ok("POST /u 3");
        let stream = scripted(
            &[
                b"POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
                b"abc",
            ],
            &[b"HTTP/1.1 100 Continue\r\n\r\n", &answer],
        );
        serve_scripted(stream).await;
    }

    /// An HTTP/1.0 request's `Expect: 100-continue` is ignored (RFC 9110 §10.1.1):
    /// no interim response, and an expectation the gateway does not know is no 417.
    #[tokio::test]
    async fn session_ignores_expectations_of_http10_requests() {
        let answer = closing(ok("POST /u 3"));
        let stream = scripted(
            &[
                b"POST /u HTTP/1.0\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
                b"abc",
            ],
            &[&answer],
        );
        serve_scripted(stream).await;
        let head = parse(b"GET / HTTP/1.0\r\nExpect: magic\r\n\r\n")
            .expect("valid")
            .expect("complete");
        assert!(!head.expect_continue);
    }

    /// An HTTP/1.0 request without keep-alive gets its answer and `Connection: close`.
    #[tokio::test]
    async fn session_closes_http10_connections() {
        let answer = closing(ok("GET /old 0"));
        let stream = scripted(&[b"GET /old HTTP/1.0\r\n\r\n"], &[&answer]);
        serve_scripted(stream).await;
    }

    /// HTTP/1.0 keeps the connection only when asked; HTTP/1.1 unless told to close.
    #[test]
    fn persistence() {
        let keep = |head: &[u8]| parse(head).expect("valid").expect("complete").keep_alive;
        assert!(!keep(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(keep(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
        assert!(!keep(
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ));
        assert!(keep(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    }
}
