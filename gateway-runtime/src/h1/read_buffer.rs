//! Bytes read from a connection and not yet consumed, with the read-size strategy and
//! the per-worker spare list that idle connections lend their buffers to. Used on
//! both sides: client connections (`http1`) and upstream connections (`pool`).

use std::cell::RefCell;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::AsyncRead;
use tokio_util::io::poll_read_buf;

/// First read size; doubled while reads fill the buffer (large bodies), as hyper's
/// adaptive read strategy does, up to `MAX_READ`.
const INITIAL_READ: usize = 8 * 1024;
const MAX_READ: usize = 64 * 1024;
/// Largest read size an idle pooled connection keeps.
const KEPT_READ: usize = 32 * 1024;

/// Read buffers kept per worker thread for idle connections to lend out: 2 MiB at
/// most, whatever the number of idle connections.
const MAX_SPARE_BUFFERS: usize = 256;

thread_local! {
    static SPARE_BUFFERS: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// Bytes read from a connection and not yet consumed. Body data is split off without
/// copying.
#[derive(Debug)]
pub struct ReadBuffer {
    pub bytes: BytesMut,
    next_read: usize,
}

impl Default for ReadBuffer {
    fn default() -> Self {
        Self {
            bytes: BytesMut::new(),
            next_read: INITIAL_READ,
        }
    }
}

impl ReadBuffer {
    /// Lets go of the buffer while nothing is buffered, for an idle connection: it
    /// goes to this thread's spare list, where the next connection to read takes it.
    /// Allocating a buffer anew for every request measured 900 instructions a request.
    pub fn release(&mut self) {
        if self.bytes.is_empty() && self.bytes.capacity() > 0 {
            let buffer = std::mem::take(&mut self.bytes);
            self.next_read = INITIAL_READ;
            // Buffers a large body grew are freed, so the list stays small.
            if buffer.capacity() <= INITIAL_READ {
                SPARE_BUFFERS.with_borrow_mut(|spare| {
                    if spare.len() < MAX_SPARE_BUFFERS {
                        spare.push(buffer);
                    }
                });
            }
        }
    }

    /// Reads once from `reader`, making room first; `Ok(0)` is end of stream.
    pub fn poll_fill<R: AsyncRead>(
        &mut self,
        reader: Pin<&mut R>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<usize>> {
        // Reserving reclaims the buffer in place once the body data split off it has
        // been written and dropped, so this allocates only while the buffer grows.
        if self.bytes.capacity() == 0
            && let Some(spare) = SPARE_BUFFERS.with_borrow_mut(Vec::pop)
        {
            self.bytes = spare;
        }
        if self.bytes.capacity() - self.bytes.len() < self.next_read / 2 {
            self.bytes.reserve(self.next_read);
        }
        self.poll_read(reader, cx)
    }

    /// Reads once into the room the buffer has, neither growing it nor taking a spare
    /// one: for watching a connection while its request is served, when a read
    /// usually finds nothing and the buffer is still shared with the request's head.
    /// `None` when there is no room.
    pub fn poll_fill_spare<R: AsyncRead>(
        &mut self,
        reader: Pin<&mut R>,
        cx: &mut Context<'_>,
    ) -> Option<Poll<std::io::Result<usize>>> {
        (self.bytes.capacity() > self.bytes.len()).then(|| self.poll_read(reader, cx))
    }

    /// Reads once from `reader` into one buffer with room for `total` bytes in all,
    /// so that the reads up to `total` are never moved to a larger one.
    pub fn poll_fill_to<R: AsyncRead>(
        &mut self,
        total: usize,
        reader: Pin<&mut R>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<usize>> {
        self.bytes.reserve(total.saturating_sub(self.bytes.len()));
        self.poll_read(reader, cx)
    }

    fn poll_read<R: AsyncRead>(
        &mut self,
        reader: Pin<&mut R>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<usize>> {
        let spare = self.bytes.capacity() - self.bytes.len();
        let n = std::task::ready!(poll_read_buf(reader, cx, &mut self.bytes))?;
        if n == spare && self.next_read < MAX_READ {
            self.next_read *= 2;
        }
        Poll::Ready(Ok(n))
    }

    /// Makes an idle pooled connection's buffer small again if a large body grew it.
    pub fn shrink(&mut self) {
        if self.next_read > KEPT_READ {
            *self = ReadBuffer::default();
        }
    }
}
