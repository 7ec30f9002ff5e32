//! The HTTP/1.1 client half of the proxy: the request head (written by `headers`) and
//! body go out on a pooled connection, the response head comes back parsed into `http`
//! types, and the response body streams back as `UpstreamBody`.
//!
//! It runs inside the client connection's own task. hyper's client runs a task per
//! upstream connection and talks to it through channels, so every request cost two
//! task switches; that task was 40% of the gateway's instructions per request.

use std::future::{Future, poll_fn};
use std::io;
use std::mem::MaybeUninit;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::StatusCode;
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::Sleep;

use crate::h1::framing::{
    self, BodyDecoder, BodyLength, Decoded, FramingError, FramingField, FramingFields,
};
use crate::h1::read_buffer::ReadBuffer;
use crate::h1::request_body::ClientBodyError;
use crate::message::fields::{self, Fields};
use crate::message::forwarding::is_hop_by_hop;
use crate::timer::IdleTimer;
use crate::upstream::pool::{Connection, Pool};

/// What the gateway sends upstream: the client's body, cut off at the listener's limit.
pub type RequestBody = Limited<crate::h1::request_body::RequestBody>;

/// Longest upstream response head accepted; nginx refuses heads over its 4–8 KiB
/// `proxy_buffer_size`, hyper's client over about 400 KiB.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Most field lines in an upstream response head.
const MAX_RESPONSE_FIELDS: usize = 128;
/// Most interim (1xx) responses before the final one.
const MAX_INTERIM: usize = 16;
/// Most `Connection` field lines in one response.
const MAX_CONNECTION_FIELDS: usize = 8;

/// Why an exchange with the upstream failed.
#[derive(Debug)]
pub enum ExchangeError {
    /// The client's body crossed the listener's limit.
    BodyTooLarge,
    /// The client's body could not be read: the client left, or framed it badly.
    ClientBody,
    /// The client sent no more of its body for the listener's `timeouts.body`.
    ClientBodyTimeout,
    /// The upstream took no more of the request body for its `timeouts.body`.
    SendTimeout,
    /// No response head within `timeouts.response` of the end of the request.
    ResponseTimeout,
    /// The connection ended before any byte of a response arrived. On a reused
    /// connection this is the keep-alive race: the upstream closed it as it was taken.
    NoResponse(Option<io::Error>),
    Io(io::Error),
    /// The upstream's response cannot be forwarded faithfully.
    Invalid(&'static str),
}

impl std::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExchangeError::BodyTooLarge => f.write_str("request body too large"),
            ExchangeError::ClientBody => f.write_str("request body could not be read"),
            ExchangeError::ClientBodyTimeout => f.write_str("client stopped sending its body"),
            ExchangeError::SendTimeout => f.write_str("upstream stopped reading the body"),
            ExchangeError::ResponseTimeout => f.write_str("no response in time"),
            ExchangeError::NoResponse(None) => f.write_str("connection closed before a response"),
            ExchangeError::NoResponse(Some(e)) => {
                write!(f, "connection failed before a response: {e}")
            }
            ExchangeError::Io(e) => write!(f, "connection failed: {e}"),
            ExchangeError::Invalid(why) => write!(f, "invalid response: {why}"),
        }
    }
}

/// Added to every forwarded response (RFC 9110 §7.6.3).
const VIA: &[u8] = b"1.1 gateway";

/// A parsed final response head.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    /// Without hop-by-hop fields, with the gateway's `Via` appended.
    pub fields: Fields,
    pub length: BodyLength,
    /// Whether the connection can carry another request after this response's body.
    pub reusable: bool,
    /// Interim (1xx) responses that came first, written for an HTTP/1.1 client; empty
    /// (and not allocated) almost always.
    pub interim: Vec<u8>,
}

/// The time limits of an exchange that streams a request body; without one, the
/// caller limits the whole exchange to the response timeout.
#[derive(Debug, Clone, Copy)]
pub struct ExchangeTimeouts {
    /// From the end of the request to the response head; an upload does not count.
    pub response: Duration,
    /// Longest wait for the upstream to take more of a streamed request body.
    pub send: Duration,
}

/// Sends the request in `conn.write_buf` (its head, and its body when that was all in
/// hand) and reads the response head.
pub async fn exchange(
    conn: &mut Connection,
    head_request: bool,
) -> Result<ResponseHead, ExchangeError> {
    if let Err(e) = conn.stream.write_all(&conn.write_buf).await {
        return Err(ExchangeError::NoResponse(Some(e)));
    }
    // A TLS session holds records back when the socket is full.
    if conn.stream.holds_back_writes()
        && let Err(e) = conn.stream.flush().await
    {
        return Err(ExchangeError::NoResponse(Some(e)));
    }
    read_head(&mut conn.stream, &mut conn.read, head_request).await
}

/// Sends the request head in `conn.write_buf`, then streams `body`, and reads the
/// response head. A response that arrives while the body is still being sent is
/// taken as it is (an upstream may refuse a body early); the connection is then not
/// reused.
///
/// Boxed: sending a body while watching for an early answer takes two futures side by
/// side; inline, every request's future would carry them.
pub fn exchange_streaming<'a>(
    conn: &'a mut Connection,
    body: RequestBody,
    chunked: bool,
    head_request: bool,
    timeouts: &'a ExchangeTimeouts,
) -> Pin<Box<impl Future<Output = Result<ResponseHead, ExchangeError>> + 'a>> {
    Box::pin(send_and_read_head(
        conn,
        body,
        chunked,
        head_request,
        timeouts,
    ))
}

/// Streams the request upstream while reading the response head. The response
/// timeout starts when the request has been sent; until then each write to the
/// upstream and each read from the client is bounded on its own.
async fn send_and_read_head(
    conn: &mut Connection,
    body: RequestBody,
    chunked: bool,
    head_request: bool,
    timeouts: &ExchangeTimeouts,
) -> Result<ResponseHead, ExchangeError> {
    let (mut reader, writer) = conn.stream.split();
    let mut writer = TimedWriter {
        inner: writer,
        idle: IdleTimer::new(timeouts.send),
    };
    let head_bytes = &conn.write_buf;
    let mut send = pin!(async {
        if let Err(e) = writer.write_all(head_bytes).await {
            return Err(SendError::Upstream(e));
        }
        send_body(&mut writer, body, chunked).await
    });
    let mut head = pin!(read_head(&mut reader, &mut conn.read, head_request));
    let mut sent: Option<io::Result<()>> = None;
    let mut response_deadline: Option<Pin<Box<Sleep>>> = None;
    poll_fn(|cx| {
        if sent.is_none() {
            match send.as_mut().poll(cx) {
                Poll::Ready(Ok(())) => sent = Some(Ok(())),
                Poll::Ready(Err(SendError::Client(e))) => return Poll::Ready(Err(e)),
                // The upstream may have answered before it stopped reading: look.
                Poll::Ready(Err(SendError::Upstream(e))) => sent = Some(Err(e)),
                Poll::Pending => {}
            }
            if sent.is_some() {
                response_deadline = Some(Box::pin(tokio::time::sleep(timeouts.response)));
            }
        }
        if let Poll::Ready(head) = head.as_mut().poll(cx) {
            return Poll::Ready(match head {
                Ok(mut head) => {
                    head.reusable &= matches!(sent, Some(Ok(())));
                    Ok(head)
                }
                Err(e) => Err(match sent.take() {
                    Some(Err(write)) if write.kind() == io::ErrorKind::TimedOut => {
                        ExchangeError::SendTimeout
                    }
                    Some(Err(write)) => ExchangeError::Io(write),
                    _ => e,
                }),
            });
        }
        let expired = response_deadline
            .as_mut()
            .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
        if !expired {
            return Poll::Pending;
        }
        Poll::Ready(Err(match sent.take() {
            Some(Err(write)) if write.kind() == io::ErrorKind::TimedOut => {
                ExchangeError::SendTimeout
            }
            _ => ExchangeError::ResponseTimeout,
        }))
    })
    .await
}

/// A writer whose writes fail with `TimedOut` once one has waited for its timeout.
struct TimedWriter<W> {
    inner: W,
    idle: IdleTimer,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for TimedWriter<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(written) => {
                this.idle.progress();
                Poll::Ready(written)
            }
            Poll::Pending if this.idle.poll_expired(cx) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the upstream did not read in time",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

enum SendError {
    Client(ExchangeError),
    Upstream(io::Error),
}

/// Streams the client's body upstream, in the chunked coding when its length is not
/// known. Trailers are not forwarded.
async fn send_body<W: AsyncWrite + Unpin>(
    writer: &mut W,
    mut body: RequestBody,
    chunked: bool,
) -> Result<(), SendError> {
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            SendError::Client(if e.is::<LengthLimitError>() {
                ExchangeError::BodyTooLarge
            } else if matches!(
                e.downcast_ref::<ClientBodyError>(),
                Some(ClientBodyError::TimedOut)
            ) {
                ExchangeError::ClientBodyTimeout
            } else {
                ExchangeError::ClientBody
            })
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        let written = if chunked {
            let mut size = [0u8; 18];
            let size = framing::chunk_size_line(data.len(), &mut size);
            let mut chunk = size.chain(data).chain(&b"\r\n"[..]);
            writer.write_all_buf(&mut chunk).await
        } else {
            writer.write_all(&data).await
        };
        written.map_err(SendError::Upstream)?;
    }
    if chunked {
        writer
            .write_all(b"0\r\n\r\n")
            .await
            .map_err(SendError::Upstream)?;
    }
    writer.flush().await.map_err(SendError::Upstream)
}

/// Reads until a final response head is complete, skipping interim (1xx) responses.
async fn read_head<R: AsyncRead + Unpin>(
    reader: &mut R,
    read: &mut ReadBuffer,
    head_request: bool,
) -> Result<ResponseHead, ExchangeError> {
    let mut received = !read.bytes.is_empty();
    let mut interim = Vec::new();
    let mut interim_count = 0;
    loop {
        if !read.bytes.is_empty() {
            match parse_head(read, head_request, &mut interim)? {
                Parsed::Final(mut head) => {
                    head.interim = interim;
                    return Ok(head);
                }
                // Bounded, so that an upstream cannot keep an exchange busy with
                // interim responses until the response timeout.
                Parsed::Interim if interim_count == MAX_INTERIM => {
                    return Err(ExchangeError::Invalid("too many interim responses"));
                }
                Parsed::Interim => {
                    interim_count += 1;
                    continue;
                }
                Parsed::Partial if read.bytes.len() >= MAX_RESPONSE_HEAD => {
                    return Err(ExchangeError::Invalid("response head too large"));
                }
                Parsed::Partial => {}
            }
        }
        match poll_fn(|cx| read.poll_fill(Pin::new(&mut *reader), cx)).await {
            Ok(0) if received => {
                return Err(ExchangeError::Invalid("connection closed inside the head"));
            }
            Ok(0) => return Err(ExchangeError::NoResponse(None)),
            Ok(_) => received = true,
            Err(e) if received => return Err(ExchangeError::Io(e)),
            Err(e) => return Err(ExchangeError::NoResponse(Some(e))),
        }
    }
}

pub(crate) enum Parsed {
    Partial,
    /// A 1xx response, consumed.
    Interim,
    Final(ResponseHead),
}

/// Parses the response head at the start of `read`, consuming it when complete. The
/// header map's values point into the head's bytes, so no field is copied.
pub(crate) fn parse_head(
    read: &mut ReadBuffer,
    head_request: bool,
    interim: &mut Vec<u8>,
) -> Result<Parsed, ExchangeError> {
    use ExchangeError::Invalid;
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_RESPONSE_FIELDS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        &read.bytes,
        &mut slots,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(Invalid("too many header fields")),
        // Obsolete line folding, bare CR or LF, spaces before colons, bad bytes: a
        // proxy that guessed would let a response split (RFC 9112 §5.2, §11.1).
        Err(_) => return Err(Invalid("malformed head")),
    };
    let code = response.code.unwrap_or(0);
    if (100..200).contains(&code) {
        // The gateway never asks to switch protocols.
        if code == 101 {
            return Err(Invalid("unexpected 101 Switching Protocols"));
        }
        // RFC 9110 §15.2: a proxy forwards 1xx responses it did not ask for itself. It
        // asked for 100 (Continue) by sending a body, having answered the client's
        // `Expect` on its own; 103 (Early Hints) and the rest go on to the client, up to
        // 64 KiB of them in all.
        if code != 100 && interim.len() + len <= MAX_RESPONSE_HEAD {
            write_interim(
                interim,
                code,
                response.reason.unwrap_or(""),
                response.headers,
            )?;
        }
        read.bytes.advance(len);
        return Ok(Parsed::Interim);
    }
    if len > MAX_RESPONSE_HEAD {
        return Err(Invalid("response head too large"));
    }
    // RFC 9110 §15: codes outside 100–599 are not HTTP's (libraries use 6xx–9xx for
    // errors of their own), and a client reads one as a server error: here, a 502.
    if !(200..600).contains(&code) {
        return Err(Invalid("status code outside 100-599"));
    }
    let status = StatusCode::from_u16(code).map_err(|_| Invalid("invalid status code"))?;
    let head = &read.bytes[..len];
    let at = |part: &[u8]| Fields::offset_in(head, part);
    let mut fields = Fields::from_head(head, response.headers.len() + 1);
    let mut connection = [(0, 0); MAX_CONNECTION_FIELDS];
    let mut connection_len = 0;
    let mut framing = FramingFields::default();
    for field in response.headers.iter() {
        let name = field.name.as_bytes();
        let value = field.value;
        let kind = framing
            .observe(name, value)
            .map_err(|FramingError(why)| Invalid(why))?;
        match kind {
            FramingField::Connection => {
                // Remembered: the fields it names are removed below.
                if connection_len == MAX_CONNECTION_FIELDS {
                    return Err(Invalid("too many Connection fields"));
                }
                connection[connection_len] = at(value);
                connection_len += 1;
                continue;
            }
            FramingField::TransferEncoding => continue,
            FramingField::Other if is_hop_by_hop(name) => continue,
            FramingField::ContentLength | FramingField::Other => {}
        }
        fields.push_at(at(name), at(value));
    }
    let persistent = framing.persistent(response.version != Some(1));
    let length = if head_request || code == 204 || code == 304 {
        BodyLength::Empty
    } else {
        match (&framing.transfer_codings, framing.content_length) {
            // Codings other than chunked would have to be undone before the body could
            // be framed again: refused rather than passed on mislabelled.
            (Some(codings), _) if codings.check().is_err() => {
                return Err(Invalid("unsupported transfer coding"));
            }
            (Some(_), _) => BodyLength::Chunked,
            (None, Some(n)) => BodyLength::Length(n),
            (None, None) => BodyLength::UntilClose,
        }
    };
    if framing.connection_options > crate::h1::framing::MAX_CONNECTION_OPTIONS {
        return Err(Invalid("too many Connection options"));
    }
    // Both fields: Transfer-Encoding wins, Content-Length goes, and the connection is
    // not trusted again (RFC 9112 §6.3, item 3).
    let both = framing.transfer_codings.is_some() && framing.content_length.is_some();
    if both {
        fields.remove(b"content-length");
    }
    // Fields the upstream marked as meant for the hop to the gateway only.
    for &(start, len) in &connection[..connection_len] {
        for token in head[start..start + len].split(|&b| b == b',') {
            let token = token.trim_ascii();
            let hop_option = fields::is(token, b"close") || fields::is(token, b"keep-alive");
            if !hop_option {
                fields.remove(token);
            }
        }
    }
    read.bytes.advance(len);
    fields.append(b"via", VIA);
    Ok(Parsed::Final(ResponseHead {
        status,
        fields,
        length,
        reusable: persistent && !both && length != BodyLength::UntilClose,
        interim: Vec::new(),
    }))
}

/// Appends an interim response as it goes to an HTTP/1.1 client, without the fields
/// that concern the upstream hop only: the hop-by-hop ones and those its own
/// `Connection` lists.
fn write_interim(
    out: &mut Vec<u8>,
    code: u16,
    reason: &str,
    fields: &[httparse::Header<'_>],
) -> Result<(), ExchangeError> {
    let mut options: Vec<&[u8]> = Vec::new();
    for field in fields
        .iter()
        .filter(|f| fields::is(f.name.as_bytes(), b"connection"))
    {
        options.extend(
            field
                .value
                .split(|&b| b == b',')
                .map(<[u8]>::trim_ascii)
                .filter(|option| !option.is_empty()),
        );
    }
    if options.len() > crate::h1::framing::MAX_CONNECTION_OPTIONS {
        return Err(ExchangeError::Invalid("too many Connection options"));
    }
    let listed = |name: &[u8]| options.iter().any(|o| o.eq_ignore_ascii_case(name));
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(digits.format(code).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for field in fields {
        let name = field.name.as_bytes();
        if !is_hop_by_hop(name) && !listed(name) {
            out.extend_from_slice(field.name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(field.value);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// An upstream response body, read from its connection as the client takes it. The
/// connection goes back to the pool when the body has been read to its end (or, for
/// bodies that are empty from the start, when it is dropped).
#[derive(Debug)]
pub struct UpstreamBody {
    /// `None` once given back or broken.
    conn: Option<Box<Connection>>,
    pool: Rc<Pool>,
    decoder: BodyDecoder,
    reusable: bool,
    /// Interim responses to send before this response's head.
    interim: Vec<u8>,
    idle: IdleTimer,
    /// Concurrency-limit places the response holds until it has been read (or
    /// dropped): a long body keeps its request in flight.
    held: Vec<crate::limit::concurrency::Place>,
    /// Whether the rest of a body of known length is read whole (`read_whole`).
    whole: bool,
}

/// The longest body read whole: its buffer is reserved before the data comes, so a
/// length an upstream declares, and then trickles or never sends, holds at most this
/// much per exchange ahead of its bytes. A call's default answer bound.
const WHOLE_UP_TO: u64 = 1 << 20;

/// Why an upstream response body broke off; the client's connection is closed.
#[derive(Debug)]
pub enum BodyError {
    Io(io::Error),
    Framing(FramingError),
    /// The upstream closed the connection before the declared end.
    Truncated,
    /// The upstream sent nothing more for its `timeouts.body`.
    TimedOut,
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Io(e) => write!(f, "upstream body: {e}"),
            BodyError::Framing(e) => write!(f, "upstream body: {e}"),
            BodyError::Truncated => f.write_str("upstream body: connection closed early"),
            BodyError::TimedOut => f.write_str("upstream body: upstream stopped sending"),
        }
    }
}

impl std::error::Error for BodyError {}

impl UpstreamBody {
    /// The body that follows `head`; a read that waits `timeout` fails.
    pub fn new(
        conn: Box<Connection>,
        pool: Rc<Pool>,
        head: &mut ResponseHead,
        timeout: Duration,
    ) -> Self {
        Self {
            conn: Some(conn),
            pool,
            decoder: BodyDecoder::from(head.length),
            reusable: head.reusable,
            interim: std::mem::take(&mut head.interim),
            idle: IdleTimer::new(timeout),
            held: Vec::new(),
            whole: false,
        }
    }

    /// Has the rest of a body of known length up to `limit` read into one buffer and
    /// handed out as one piece, for a caller that needs the body whole (an aggregate's
    /// answer): pieces would be copied together, into memory the kernel faults in
    /// anew. `false` for a body longer than `limit`. One of unknown length, or longer
    /// than `WHOLE_UP_TO`, still comes in pieces.
    pub fn read_whole(&mut self, limit: u64) -> bool {
        match self.decoder.remaining() {
            Some(n) if n > limit => false,
            Some(n) => {
                self.whole = n <= WHOLE_UP_TO;
                true
            }
            None => true,
        }
    }

    /// Keeps `place` until the body has been read to its end or dropped.
    pub fn hold(&mut self, place: crate::limit::concurrency::Place) {
        self.held.push(place);
    }

    /// Interim responses the upstream sent before this one, for an HTTP/1.1 client.
    pub fn interim(&self) -> &[u8] {
        &self.interim
    }

    /// Ends the body: the connection goes back to the pool if nothing is left on it.
    fn release(&mut self) {
        if let Some(conn) = self.conn.take()
            && self.reusable
            && conn.read.bytes.is_empty()
        {
            Pool::give_back(&self.pool, conn);
        }
    }

    /// The next piece of data from the buffer, `None` at the end of the body, or
    /// `Pending` after a read was started.
    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, BodyError>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(Ok(None));
        };
        loop {
            // Read whole, the body is decoded once all of it is in the buffer.
            let whole = match self.decoder.remaining() {
                Some(n) if self.whole => usize::try_from(n)
                    .ok()
                    .filter(|&n| conn.read.bytes.len() < n),
                _ => None,
            };
            if whole.is_none() {
                match self.decoder.decode(&mut conn.read.bytes) {
                    Ok(Decoded::Data(data)) => return Poll::Ready(Ok(Some(data))),
                    Ok(Decoded::Done) => return Poll::Ready(Ok(None)),
                    Ok(Decoded::NeedMore) => {}
                    Err(e) => return Poll::Ready(Err(BodyError::Framing(e))),
                }
            }
            let stream = Pin::new(&mut conn.stream);
            let read = match whole {
                Some(total) => conn.read.poll_fill_to(total, stream, cx),
                None => conn.read.poll_fill(stream, cx),
            };
            let n = match read {
                Poll::Ready(read) => read.map_err(BodyError::Io)?,
                Poll::Pending if self.idle.poll_expired(cx) => {
                    return Poll::Ready(Err(BodyError::TimedOut));
                }
                Poll::Pending => return Poll::Pending,
            };
            self.idle.progress();
            if n == 0 {
                return Poll::Ready(if self.decoder.ends_at_close() {
                    Ok(None)
                } else {
                    Err(BodyError::Truncated)
                });
            }
        }
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        match ready!(this.poll_data(cx)) {
            Ok(Some(data)) => {
                // Given back at once, so the client's next request can reuse it.
                if this.decoder.is_done() {
                    this.release();
                }
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Ok(None) => {
                this.release();
                this.held.clear();
                Poll::Ready(None)
            }
            Err(e) => {
                // A broken body means a broken connection: let it go.
                this.conn = None;
                Poll::Ready(Some(Err(e)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || self.decoder.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder.remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // HEAD, 204 and 304 bodies are never polled; their connection is still good.
        // A body dropped half-read is not: its connection closes here.
        if self.decoder.is_done() {
            self.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::metrics::PoolGauges;
    use tokio::io::AsyncReadExt;

    /// A body of known length read whole comes as one piece, however the upstream
    /// writes it out; one longer than the limit is refused before it is read, one
    /// the upstream cuts short is an error, not a short piece, and one over
    /// `WHOLE_UP_TO` still comes in pieces.
    #[tokio::test]
    async fn a_body_read_whole_comes_in_one_piece() {
        const LENGTH: usize = 100_000;
        const LARGE: usize = 2 << 20;
        // The length the upstream declares and what it writes of the body, in turn:
        // all of it in three writes, (refused unread), half of it before it closes,
        // and a large body.
        let cases: [(usize, &[usize]); 4] = [
            (LENGTH, &[1_000, 30_000, LENGTH - 31_000]),
            (LENGTH, &[]),
            (LENGTH, &[50_000]),
            (LARGE, &[LARGE]),
        ];
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let (listener, authority) = crate::upstream::pool::loopback_listener().await;
                tokio::spawn(async move {
                    for (length, parts) in cases {
                        let (mut upstream, _) = listener.accept().await.expect("accept");
                        let mut request = [0u8; 1024];
                        let _ = upstream.read(&mut request).await.expect("request");
                        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {length}\r\n\r\n");
                        upstream.write_all(head.as_bytes()).await.expect("head");
                        for &part in parts {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            let _ = upstream.write_all(&vec![b'x'; part]).await;
                        }
                    }
                });
                let pool = Rc::new(Pool::new(
                    Duration::from_secs(60),
                    PoolGauges {
                        open: Box::leak(Box::default()),
                        idle: Box::leak(Box::default()),
                    },
                ));
                let body_of = async |limit: u64| {
                    let mut conn = pool
                        .connect(&authority, None, Duration::from_secs(5))
                        .await
                        .expect("connect");
                    conn.write_buf
                        .extend_from_slice(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n");
                    let mut head = exchange(&mut conn, false).await.expect("a head");
                    let mut body =
                        UpstreamBody::new(conn, pool.clone(), &mut head, Duration::from_secs(5));
                    body.read_whole(limit).then_some(body)
                };

                let mut body = body_of(LENGTH as u64).await.expect("within the limit");
                let piece = body.frame().await.expect("a frame").expect("data");
                let piece = piece.into_data().expect("data");
                assert_eq!(piece.len(), LENGTH, "one piece");
                assert!(piece.iter().all(|&b| b == b'x'));
                assert!(body.frame().await.is_none(), "the end");

                assert!(body_of(LENGTH as u64 - 1).await.is_none(), "over the limit");

                let mut body = body_of(LENGTH as u64).await.expect("within the limit");
                let cut = body.frame().await.expect("a frame");
                assert!(
                    matches!(cut, Err(BodyError::Truncated)),
                    "cut short: {cut:?}"
                );

                let mut body = body_of(LARGE as u64).await.expect("within the limit");
                let mut pieces = Vec::new();
                while let Some(frame) = body.frame().await {
                    pieces.push(frame.expect("data").into_data().expect("data").len());
                }
                assert_eq!(pieces.iter().sum::<usize>(), LARGE);
                assert!(pieces.len() > 1, "in pieces: {pieces:?}");
            })
            .await;
    }
}
