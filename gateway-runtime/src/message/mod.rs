//! What HTTP messages are made of, as the gateway holds them: header fields as the
//! bytes they came in, the gateway's own request and response types, bodies, the
//! checks every request passes before routing, the headers a proxy adds, and the JSON
//! errors the gateway writes itself.

pub mod fields;
pub mod json;
pub mod methods;
pub mod request;

#[cfg(feature = "server")]
pub mod body;
#[cfg(feature = "server")]
pub(crate) mod date;
#[cfg(feature = "server")]
pub mod error;
#[cfg(feature = "server")]
pub mod forwarding;
#[cfg(feature = "server")]
pub mod response;
