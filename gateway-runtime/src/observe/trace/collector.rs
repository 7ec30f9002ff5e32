//! The collector as the exporter thread talks to it: OTLP/HTTP `POST`s over one kept
//! HTTP/1.1 connection (TLS for an `https://` endpoint), blocking, each step bounded.
//!
//! The connection is kept between exports: at 100% sampling a busy gateway sends a
//! batch every few milliseconds, and a new TCP connection (and TLS handshake) for each
//! was most of the exporter's cost. A kept connection the collector has closed in the
//! meantime fails before any answer; the batch is then sent once more on a new one, as
//! nothing of it was taken.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;

use crate::settings::Target;

/// Bounds on one export.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest an answer's head may be.
const MAX_ANSWER_HEAD: usize = 8 << 10;
/// The longest answer body read (and dropped) to keep the connection; a longer one
/// closes it instead. OTLP's answers are empty or a few bytes of partial-success.
const MAX_ANSWER_BODY: u64 = 64 << 10;

/// Where spans go.
pub(super) struct Collector {
    pub target: Target,
    /// Path and query posted to.
    pub path: String,
    pub tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    /// The connection kept from the last export.
    kept: Option<Link>,
}

/// A connection to the collector.
enum Link {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

/// Why an export failed, and whether the collector can have seen any of it.
struct Failure {
    message: String,
    /// Nothing came back on a kept connection: it was closed before this export.
    stale: bool,
}

impl Collector {
    pub fn new(
        target: Target,
        path: String,
        tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    ) -> Self {
        Self {
            target,
            path,
            tls,
            kept: None,
        }
    }

    /// One export: `Ok` when the collector answered 2xx.
    pub fn post(&mut self, body: &[u8]) -> Result<(), String> {
        // The head and the body go out one after the other: the batch, up to a few
        // hundred KB, is not copied behind the head.
        let head = format!(
            "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\nuser-agent: gateway/{}\r\n\r\n",
            self.path,
            self.target.authority,
            body.len(),
            env!("CARGO_PKG_VERSION"),
        );
        let request = [head.as_bytes(), body];
        let status = match self.kept.take() {
            Some(link) => match self.exchange(link, request, true) {
                Err(Failure { stale: true, .. }) => {
                    let link = self.connect()?;
                    self.exchange(link, request, false)
                }
                done => done,
            },
            None => {
                let link = self.connect()?;
                self.exchange(link, request, false)
            }
        }
        .map_err(|failure| failure.message)?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(format!("the collector answered {status}"))
        }
    }

    fn connect(&self) -> Result<Link, String> {
        let authority = &self.target.authority;
        let https = self.tls.is_some();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let host = authority.host().trim_matches(['[', ']']);
        let addrs: Vec<SocketAddr> = (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {authority}: {e}"))?
            .collect();
        let tcp = connect(&addrs).map_err(|e| format!("cannot connect to {authority}: {e}"))?;
        tcp.set_read_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        tcp.set_write_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        Ok(match &self.tls {
            Some((config, name)) => {
                let connection = rustls::ClientConnection::new(config.clone(), name.clone())
                    .map_err(|e| e.to_string())?;
                Link::Tls(Box::new(rustls::StreamOwned::new(connection, tcp)))
            }
            None => Link::Plain(tcp),
        })
    }

    /// Sends `request` (its head and its body) on `link` and reads the whole answer;
    /// keeps `link` when the answer allows. `kept`: the link served an earlier export.
    fn exchange(
        &mut self,
        mut link: Link,
        [head, body]: [&[u8]; 2],
        kept: bool,
    ) -> Result<u16, Failure> {
        let failed = |message: String, answered: bool| Failure {
            message,
            stale: kept && !answered,
        };
        link.write_all(head)
            .and_then(|()| link.write_all(body))
            .and_then(|()| link.flush())
            .map_err(|e| failed(format!("cannot send: {e}"), false))?;
        let answer =
            read_answer(&mut link).map_err(|(message, answered)| failed(message, answered))?;
        if answer.reusable {
            self.kept = Some(link);
        }
        Ok(answer.status)
    }
}

fn connect(addrs: &[SocketAddr]) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for addr in addrs {
        match TcpStream::connect_timeout(addr, CONNECT_TIMEOUT) {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// An answer, read to its end.
struct Answer {
    status: u16,
    /// The connection may carry the next export.
    reusable: bool,
}

/// Reads an answer's head and its body (by `Content-Length`, bounded); an error says
/// whether any byte of an answer had come.
fn read_answer(stream: &mut impl Read) -> Result<Answer, (String, bool)> {
    let mut buffer = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let (status, reusable, body, head_len) = loop {
        let mut fields = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut fields);
        match response.parse(&buffer) {
            Ok(httparse::Status::Complete(head_len)) => {
                let status = response.code.unwrap_or(0);
                let mut length = Some(0);
                let mut close = response.version != Some(1);
                for field in response.headers.iter() {
                    if field.name.eq_ignore_ascii_case("content-length") {
                        length = std::str::from_utf8(field.value)
                            .ok()
                            .and_then(|v| v.trim().parse::<u64>().ok());
                    } else if field.name.eq_ignore_ascii_case("transfer-encoding") {
                        // Not read here: the connection is dropped instead.
                        length = None;
                    } else if field.name.eq_ignore_ascii_case("connection") {
                        close |= field.value.eq_ignore_ascii_case(b"close");
                    }
                }
                match length {
                    Some(body) if !close && body <= MAX_ANSWER_BODY => {
                        break (status, true, body, head_len);
                    }
                    _ => {
                        return Ok(Answer {
                            status,
                            reusable: false,
                        });
                    }
                }
            }
            Ok(httparse::Status::Partial) if buffer.len() <= MAX_ANSWER_HEAD => {}
            _ => return Err(("the collector's answer is not HTTP".into(), true)),
        }
        let n = stream
            .read(&mut chunk)
            .map_err(|e| (format!("no answer: {e}"), !buffer.is_empty()))?;
        if n == 0 {
            let message = "the collector closed the connection unanswered".into();
            return Err((message, !buffer.is_empty()));
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    // What came with the head, then the rest, dropped.
    let mut left = body.saturating_sub((buffer.len() - head_len) as u64);
    while left > 0 {
        let n = stream
            .read(&mut chunk)
            .map_err(|e| (format!("answer broke off: {e}"), true))?;
        if n == 0 {
            return Ok(Answer {
                status,
                reusable: false,
            });
        }
        left = left.saturating_sub(n as u64);
    }
    Ok(Answer { status, reusable })
}

impl Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Link::Plain(tcp) => tcp.read(buf),
            Link::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Link {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Link::Plain(tcp) => tcp.write(buf),
            Link::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Link::Plain(tcp) => tcp.flush(),
            Link::Tls(tls) => tls.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<Answer, (String, bool)> {
        read_answer(&mut std::io::Cursor::new(bytes.to_vec()))
    }

    /// A complete answer with a length keeps the connection; its body is read.
    #[test]
    fn answers_are_read_to_their_end() {
        let answer = read(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc").expect("answer");
        assert_eq!((answer.status, answer.reusable), (200, true));
        let empty = read(b"HTTP/1.1 204 No Content\r\n\r\n").expect("answer");
        assert_eq!((empty.status, empty.reusable), (204, true));
    }

    /// `close`, chunked answers, HTTP/1.0 and cut bodies end the connection.
    #[test]
    fn some_answers_end_the_connection() {
        for bytes in [
            &b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
            b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc",
        ] {
            let answer = read(bytes).expect("answer");
            assert_eq!(answer.status, 200);
            assert!(!answer.reusable, "{}", String::from_utf8_lossy(bytes));
        }
    }

    /// A kept connection the collector closed after its last answer: the next batch
    /// finds it stale and goes out again on a new one; a live one carries the next.
    #[test]
    fn a_closed_kept_connection_is_replaced() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        // First connection: one answer, then closed. Second: answers two.
        let server = std::thread::spawn(move || {
            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
            let mut posts = Vec::new();
            for answers in [1, 2] {
                let (mut tcp, _) = listener.accept().expect("accept");
                for _ in 0..answers {
                    let mut request = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !request.ends_with(b"batch") {
                        let n = tcp.read(&mut chunk).expect("read");
                        assert!(n > 0, "the request came whole");
                        request.extend_from_slice(&chunk[..n]);
                    }
                    posts.push(String::from_utf8_lossy(&request).into_owned());
                    tcp.write_all(answer).expect("answer");
                }
            }
            posts
        });
        let target = crate::settings::parse_target(&format!("http://{addr}")).expect("target");
        let mut collector = Collector::new(target, "/v1/traces".into(), None);
        for _ in 0..3 {
            collector.post(b"batch").expect("exported");
        }
        let posts = server.join().expect("server");
        assert_eq!(posts.len(), 3, "each batch arrived once");
        assert!(posts[0].starts_with("POST /v1/traces HTTP/1.1\r\n"));
        assert!(!posts[0].contains("connection: close"));
    }

    /// Nothing at all is a stale connection's sign; half a head is not.
    #[test]
    fn failures_say_whether_an_answer_began() {
        assert!(matches!(read(b""), Err((_, false))));
        assert!(matches!(read(b"HTTP/1.1 20"), Err((_, true))));
        assert!(matches!(read(b"garbage\r\n\r\n"), Err((_, true))));
    }
}
