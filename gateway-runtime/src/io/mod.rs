//! Byte streams: the one stream type both sides speak HTTP over, and a stream with
//! bytes already read put back in front of it.

pub(crate) mod prefixed;
pub mod stream;

pub use stream::Stream;
