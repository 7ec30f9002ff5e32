//! HTTP/1.1 message framing (RFC 9112 §6–7): how long a body is, and the chunked
//! transfer coding. Strict on purpose: wherever two readings of a message are
//! possible, the message is refused, because a proxy and the server behind it that
//! disagree about where a message ends are how requests get smuggled.

use bytes::{Bytes, BytesMut};

use crate::message::fields;

/// How the body of a received message is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    /// No body at all (HEAD responses, 1xx, 204, 304).
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// The chunked coding.
    Chunked,
    /// Until the sender closes the connection (a response with neither field).
    UntilClose,
}

/// A message whose framing cannot be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramingError(pub &'static str);

impl std::fmt::Display for FramingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for FramingError {}

/// Folds one `Content-Length` field line into the value seen so far. A list of
/// identical values counts as that value (RFC 9112 §6.3, item 5); anything else that
/// is not one run of digits, or values that differ, is an error.
pub fn content_length(value: &[u8], seen: Option<u64>) -> Result<u64, FramingError> {
    const INVALID: FramingError = FramingError("invalid Content-Length");
    let mut result = seen;
    for element in value.split(|&b| b == b',') {
        let digits = element.trim_ascii();
        if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
            return Err(INVALID);
        }
        let n = digits
            .iter()
            .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
        match result {
            Some(previous) if previous != n => {
                return Err(FramingError("conflicting Content-Length values"));
            }
            _ => result = Some(n),
        }
    }
    result.ok_or(INVALID)
}

/// What a message head's framing and persistence fields say, gathered field line by
/// field line as the head is read; the same rules for requests and responses.
#[derive(Debug, Default)]
pub struct FramingFields {
    pub content_length: Option<u64>,
    pub transfer_codings: Option<TransferCodings>,
    /// `Connection` lists `close`.
    pub close: bool,
    /// `Connection` lists `keep-alive` (what keeps an HTTP/1.0 connection open).
    pub keep_alive: bool,
    /// How many options the `Connection` fields list in all; see `MAX_CONNECTION_OPTIONS`.
    pub connection_options: usize,
}

/// Most `Connection` options a message may list. Each names a field to drop when
/// forwarding, so the work is fields × options: unbounded, 30,000 options cost 12.7 ms
/// of CPU in one request. Real clients list one or two.
pub const MAX_CONNECTION_OPTIONS: usize = 32;

/// Which framing field a field line was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingField {
    ContentLength,
    TransferEncoding,
    Connection,
    Other,
}

impl FramingFields {
    /// Takes note of one field line. A `Content-Length` that is not a number, or that
    /// disagrees with an earlier one, is an error.
    pub fn observe(&mut self, name: &[u8], value: &[u8]) -> Result<FramingField, FramingError> {
        Ok(match name.len() {
            14 if fields::is(name, b"content-length") => {
                self.content_length = Some(content_length(value, self.content_length)?);
                FramingField::ContentLength
            }
            17 if fields::is(name, b"transfer-encoding") => {
                self.transfer_codings
                    .get_or_insert_with(TransferCodings::default)
                    .add(value);
                FramingField::TransferEncoding
            }
            10 if fields::is(name, b"connection") => {
                for option in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                    self.close |= fields::is(option, b"close");
                    self.keep_alive |= fields::is(option, b"keep-alive");
                    self.connection_options += usize::from(!option.is_empty());
                }
                FramingField::Connection
            }
            _ => FramingField::Other,
        })
    }

    /// Whether the connection may carry another message, by RFC 9112 §9.3: HTTP/1.1
    /// unless `close`, HTTP/1.0 only with `keep-alive`.
    pub fn persistent(&self, http10: bool) -> bool {
        !self.close && (!http10 || self.keep_alive)
    }
}

/// The transfer codings of a message, all its `Transfer-Encoding` lines taken as one
/// list (RFC 9112 §6.1).
#[derive(Debug, Default, Clone, Copy)]
pub struct TransferCodings {
    chunked: bool,
    last_is_chunked: bool,
    other: bool,
    repeated_chunked: bool,
}

impl TransferCodings {
    pub fn add(&mut self, value: &[u8]) {
        for coding in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            if coding.is_empty() {
                continue;
            }
            let chunked = fields::is(coding, b"chunked");
            self.repeated_chunked |= chunked && self.chunked;
            self.chunked |= chunked;
            self.other |= !chunked;
            self.last_is_chunked = chunked;
        }
    }

    /// `Ok` for exactly `chunked`. A final coding other than chunked, or chunked twice,
    /// leaves the body's end unknown (400, RFC 9112 §6.3 item 4); other codings the
    /// gateway would have to undo are not implemented (501, §6.1).
    pub fn check(&self) -> Result<(), CodingError> {
        if !self.last_is_chunked || self.repeated_chunked {
            Err(CodingError::Unframed)
        } else if self.other {
            Err(CodingError::Unsupported)
        } else {
            Ok(())
        }
    }
}

/// Why a request's transfer codings cannot be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodingError {
    Unframed,
    Unsupported,
}

/// Where a received body stands: what is left of it, and how its end is known.
#[derive(Debug)]
pub enum BodyDecoder {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
}

impl From<BodyLength> for BodyDecoder {
    fn from(length: BodyLength) -> Self {
        match length {
            BodyLength::Empty => BodyDecoder::Length(0),
            BodyLength::Length(n) => BodyDecoder::Length(n),
            BodyLength::Chunked => BodyDecoder::Chunked(ChunkedDecoder::default()),
            BodyLength::UntilClose => BodyDecoder::UntilClose,
        }
    }
}

impl BodyDecoder {
    /// The next piece of the body from `buf`, without copying; bytes after the body
    /// stay in `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, FramingError> {
        Ok(match self {
            BodyDecoder::Length(0) => Decoded::Done,
            BodyDecoder::Length(_) | BodyDecoder::UntilClose if buf.is_empty() => Decoded::NeedMore,
            BodyDecoder::Length(n) => {
                let take = usize::try_from(*n).unwrap_or(usize::MAX).min(buf.len());
                *n -= take as u64;
                Decoded::Data(buf.split_to(take).freeze())
            }
            BodyDecoder::Chunked(decoder) => return decoder.decode(buf),
            BodyDecoder::UntilClose => Decoded::Data(buf.split().freeze()),
        })
    }

    /// Whether the whole body has been decoded. A body that ends at the close never
    /// is, until the caller sees the close.
    pub fn is_done(&self) -> bool {
        match self {
            BodyDecoder::Length(n) => *n == 0,
            BodyDecoder::Chunked(decoder) => decoder.is_done(),
            BodyDecoder::UntilClose => false,
        }
    }

    /// Whether the connection closing ends the body, rather than cutting it short.
    pub fn ends_at_close(&self) -> bool {
        matches!(self, BodyDecoder::UntilClose)
    }

    /// The bytes still to come, when known.
    pub fn remaining(&self) -> Option<u64> {
        match self {
            BodyDecoder::Length(n) => Some(*n),
            _ => None,
        }
    }
}

/// Longest chunk-size line (size, extensions and CRLF) accepted; extensions carry
/// nothing a proxy needs and must not make it buffer without bound.
const MAX_CHUNK_LINE: usize = 4096;
/// Longest trailer section accepted; trailers are read and dropped.
const MAX_TRAILERS: usize = 16 * 1024;

/// Decodes the chunked coding (RFC 9112 §7.1) from a connection's read buffer.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: ChunkState,
    /// Data bytes left in the current chunk.
    remaining: u64,
    /// Bytes of the current size line or of the trailer section so far.
    consumed: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Hex digits of the chunk size; at least one seen once `consumed > 0`.
    Size,
    /// Whitespace after the size, before `;` or CR.
    SizeSpace,
    /// Chunk extensions, skipped up to CR.
    Extension,
    /// LF after the size line.
    SizeLf,
    Data,
    /// CR, then LF, after a chunk's data.
    DataCr,
    DataLf,
    /// The start of a trailer line, or the CR of the final empty line.
    TrailerStart,
    /// Inside a trailer field line.
    Trailer,
    TrailerLf,
    /// LF of the final empty line.
    EndLf,
    Done,
}

/// What one call to `ChunkedDecoder::decode` produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Data(Bytes),
    /// The buffer holds no complete next step: read more.
    NeedMore,
    /// The terminating chunk and trailer section have been read.
    Done,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self {
            state: ChunkState::Size,
            remaining: 0,
            consumed: 0,
        }
    }
}

impl ChunkedDecoder {
    /// Consumes framing bytes from `buf` and returns the next piece of data, without
    /// copying it. Bytes after the end of the body stay in `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, FramingError> {
        use ChunkState::*;
        let mut used = 0;
        while used < buf.len() {
            if self.state == Data {
                // Skip the framing consumed so far, then hand out the data itself.
                let _ = buf.split_to(used);
                let n = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                self.remaining -= n as u64;
                if self.remaining == 0 {
                    self.state = DataCr;
                }
                return Ok(Decoded::Data(buf.split_to(n).freeze()));
            }
            let byte = buf[used];
            used += 1;
            self.state = self.step(byte)?;
            if self.state == Done {
                let _ = buf.split_to(used);
                return Ok(Decoded::Done);
            }
        }
        let _ = buf.split_to(used);
        Ok(Decoded::NeedMore)
    }

    /// Whether the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// The state after `byte`, outside chunk data.
    fn step(&mut self, byte: u8) -> Result<ChunkState, FramingError> {
        use ChunkState::*;
        const BAD_SIZE: FramingError = FramingError("invalid chunk size line");
        match self.state {
            Size | SizeSpace | Extension | SizeLf => {
                self.consumed += 1;
                if self.consumed > MAX_CHUNK_LINE {
                    return Err(FramingError("chunk size line too long"));
                }
            }
            TrailerStart | Trailer | TrailerLf | EndLf => {
                self.consumed += 1;
                if self.consumed > MAX_TRAILERS {
                    return Err(FramingError("trailer section too large"));
                }
            }
            Data | DataCr | DataLf | Done => {}
        }
        let next = match (self.state, byte) {
            (Size, b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                // Sixteen hex digits fill a u64; a seventeenth would overflow.
                if self.remaining >> 60 != 0 {
                    return Err(FramingError("chunk size too large"));
                }
                let digit = (byte as char).to_digit(16).unwrap_or(0);
                self.remaining = self.remaining << 4 | u64::from(digit);
                Size
            }
            // A size needs at least one digit: `consumed` counts this byte too.
            (Size, _) if self.consumed == 1 => return Err(BAD_SIZE),
            // RFC 9112 §7.1.1 allows whitespace only before an extension's `;`: a
            // size followed by spaces alone (`5 \r\n`) is read as 5 by some servers
            // and refused by others, and such disagreements are how bodies get
            // smuggled, so it is refused.
            (Size | SizeSpace, b' ' | b'\t') => SizeSpace,
            (Size | SizeSpace, b';') => Extension,
            (Size | Extension, b'\r') => SizeLf,
            (Extension, b'\t' | b' '..=b'~' | 0x80..=0xff) => Extension,
            (SizeLf, b'\n') => {
                self.consumed = 0;
                if self.remaining == 0 {
                    TrailerStart
                } else {
                    Data
                }
            }
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => Size,
            (TrailerStart, b'\r') => EndLf,
            (TrailerStart | Trailer, b'\t' | b' '..=b'~' | 0x80..=0xff) => Trailer,
            (Trailer, b'\r') => TrailerLf,
            (TrailerLf, b'\n') => TrailerStart,
            (EndLf, b'\n') => Done,
            (DataCr | DataLf, _) => return Err(FramingError("chunk data not followed by CRLF")),
            // Bare LF, bare CR, control bytes: refused rather than guessed at.
            _ => return Err(BAD_SIZE),
        };
        Ok(next)
    }
}

/// `len` in hex followed by CRLF, written into `out`.
pub fn chunk_size_line(len: usize, out: &mut [u8; 18]) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut at = 16;
    let mut n = len;
    loop {
        at -= 1;
        out[at] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out[16] = b'\r';
    out[17] = b'\n';
    &out[at..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], step: usize) -> Result<(Vec<u8>, Vec<u8>), FramingError> {
        let mut decoder = ChunkedDecoder::default();
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut fed = 0;
        loop {
            match decoder.decode(&mut buf)? {
                Decoded::Data(data) => body.extend_from_slice(&data),
                Decoded::Done => return Ok((body, [&buf[..], &input[fed..]].concat())),
                Decoded::NeedMore if fed < input.len() => {
                    let end = (fed + step).min(input.len());
                    buf.extend_from_slice(&input[fed..end]);
                    fed = end;
                }
                Decoded::NeedMore => return Err(FramingError("truncated")),
            }
        }
    }

    /// The chunked coding decodes the same whether bytes arrive all at once or one by one.
    #[test]
    fn chunked_round_trip() {
        let input = b"5;name=\"v\"\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        for step in [1, 2, 7, input.len()] {
            let (body, rest) = decode_all(input, step).expect("valid body");
            assert_eq!(body, b"helloabcdefghijklmnopqrstuvwxyz");
            assert_eq!(rest, b"NEXT", "bytes after the body stay unread");
        }
    }

    /// Framing that two parsers could read differently is refused (smuggling corpus).
    #[test]
    fn chunked_rejects_ambiguous_framing() {
        for bad in [
            &b"5\nhello\r\n0\r\n\r\n"[..],  // bare LF after size
            b"5\r\nhello\n0\r\n\r\n",       // bare LF after data
            b"5\r\nhelloX\r\n0\r\n\r\n",    // data longer than its size
            b"\r\nhello\r\n0\r\n\r\n",      // no size
            b"-5\r\nhello\r\n0\r\n\r\n",    // sign
            b"0x5\r\nhello\r\n0\r\n\r\n",   // prefix
            b"5 5\r\nhello\r\n0\r\n\r\n",   // space inside the size
            b"5 \r\nhello\r\n0\r\n\r\n",    // space after the size, no extension
            b"10000000000000000\r\n",       // 17 hex digits
            b"0\r\nbad\x00trailer\r\n\r\n", // control byte in a trailer
            b"0\r\n\r\r\n",                 // bare CR in the final line
        ] {
            assert!(
                decode_all(bad, 3).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long_extension = [&b"1;"[..], &[b'x'; MAX_CHUNK_LINE], b"\r\n"].concat();
        assert!(decode_all(&long_extension, 512).is_err());
    }

    /// A length-delimited body takes exactly its bytes and leaves the next message's;
    /// a close-delimited one takes all there is and only ends at the close.
    #[test]
    fn length_and_close_delimited() {
        let mut buf = BytesMut::from(&b"helloNEXT"[..]);
        let mut sized = BodyDecoder::from(BodyLength::Length(5));
        assert_eq!(
            sized.decode(&mut buf),
            Ok(Decoded::Data(Bytes::from_static(b"hello")))
        );
        assert!(sized.is_done());
        assert_eq!(sized.decode(&mut buf), Ok(Decoded::Done));
        assert_eq!(&buf[..], b"NEXT");
        let mut rest = BodyDecoder::from(BodyLength::UntilClose);
        assert_eq!(
            rest.decode(&mut buf),
            Ok(Decoded::Data(Bytes::from_static(b"NEXT")))
        );
        assert_eq!(rest.decode(&mut buf), Ok(Decoded::NeedMore));
        assert!(!rest.is_done() && rest.ends_at_close());
        let mut empty = BodyDecoder::from(BodyLength::Empty);
        assert_eq!(empty.decode(&mut BytesMut::new()), Ok(Decoded::Done));
        assert_eq!(empty.remaining(), Some(0));
    }

    /// Chunk size lines are lower-case hex with CRLF.
    #[test]
    fn chunk_size_lines() {
        let mut buf = [0u8; 18];
        assert_eq!(chunk_size_line(0, &mut buf), b"0\r\n");
        assert_eq!(chunk_size_line(255, &mut buf), b"ff\r\n");
        assert_eq!(
            chunk_size_line(usize::MAX, &mut buf),
            b"ffffffffffffffff\r\n"
        );
    }

    /// Framing fields are recognised in any case; `Connection` options are read as a
    /// list; persistence follows the version.
    #[test]
    fn framing_fields() {
        let mut fields = FramingFields::default();
        assert_eq!(
            fields.observe(b"Content-Length", b"5"),
            Ok(FramingField::ContentLength)
        );
        assert!(fields.observe(b"content-length", b"6").is_err());
        assert_eq!(
            fields.observe(b"CONNECTION", b"Keep-Alive , x"),
            Ok(FramingField::Connection)
        );
        assert_eq!(
            fields.observe(b"x-connection", b"close"),
            Ok(FramingField::Other)
        );
        assert!(fields.persistent(true) && fields.persistent(false));
        fields.observe(b"connection", b"close").expect("valid");
        assert!(!fields.persistent(false));
        let mut plain = FramingFields::default();
        assert!(
            !plain.persistent(true),
            "HTTP/1.0 closes unless asked not to"
        );
        plain
            .observe(b"Transfer-Encoding", b"chunked")
            .expect("valid");
        assert_eq!(plain.transfer_codings.map(|c| c.check()), Some(Ok(())));
    }

    /// Content-Length: digits only; a list of equal values is one value.
    #[test]
    fn content_length_rules() {
        assert_eq!(content_length(b"42", None), Ok(42));
        assert_eq!(content_length(b"42, 42", None), Ok(42));
        assert_eq!(content_length(b"42", Some(42)), Ok(42));
        for bad in [
            &b""[..],
            b"+1",
            b"-1",
            b"1 2",
            b"0x10",
            b"42,",
            b"99999999999999999999",
        ] {
            assert!(content_length(bad, None).is_err(), "{bad:?}");
        }
        assert!(content_length(b"42, 43", None).is_err());
        assert!(content_length(b"43", Some(42)).is_err());
        let codings = |lines: &[&[u8]]| {
            let mut codings = TransferCodings::default();
            lines.iter().for_each(|line| codings.add(line));
            codings.check()
        };
        assert_eq!(codings(&[b"Chunked"]), Ok(()));
        assert_eq!(
            codings(&[b"gzip", b"chunked"]),
            Err(CodingError::Unsupported)
        );
        assert_eq!(codings(&[b"chunked, gzip"]), Err(CodingError::Unframed));
        assert_eq!(
            codings(&[b"chunked", b"chunked"]),
            Err(CodingError::Unframed)
        );
        assert_eq!(codings(&[b"identity"]), Err(CodingError::Unframed));
    }
}
