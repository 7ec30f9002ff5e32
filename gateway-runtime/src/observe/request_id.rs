//! `X-Request-Id`: one id per request, set on the request the upstream receives, on the
//! response the client receives, and in the access log line, so that one request can
//! be followed through every log. Off unless `[gateway] request_id` is set.
//!
//! A generated id is 32 lower-case hex digits: a random half drawn once per worker
//! thread and a count the worker increments, so ids are unique without a random draw
//! (a system call) or shared state per request.

use std::cell::Cell;

use crate::message::fields::Fields;
use crate::observe::random::system_u64;
use crate::observe::text::hex;

const HEADER: &[u8] = b"x-request-id";
/// The longest client id kept in `trust` mode; a longer one is replaced.
const MAX_GIVEN: usize = 128;

/// Whose id a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestIdMode {
    /// Every request gets a new id; a client's is replaced (the edge of a system).
    Generate,
    /// A client's id is kept when it is 1 to 128 visible ASCII characters (a gateway
    /// behind another proxy that sets one); otherwise a new one is made.
    Trust,
}

/// A request's id.
#[derive(Debug)]
pub enum RequestId {
    Generated([u8; 32]),
    Given(Box<str>),
}

impl RequestId {
    pub fn as_str(&self) -> &str {
        match self {
            // Hex digits only.
            RequestId::Generated(hex) => std::str::from_utf8(hex).unwrap_or("?"),
            RequestId::Given(id) => id,
        }
    }

    /// The id of the request whose fields are `fields`, which are left carrying it
    /// alone.
    pub fn assign(mode: RequestIdMode, fields: &mut Fields) -> RequestId {
        let given = match mode {
            RequestIdMode::Trust => fields
                .get(HEADER)
                .filter(|id| (1..=MAX_GIVEN).contains(&id.len()))
                .filter(|id| id.iter().all(|b| (0x21..=0x7e).contains(b)))
                .and_then(|id| std::str::from_utf8(id).ok())
                .map(|id| RequestId::Given(id.into())),
            RequestIdMode::Generate => None,
        };
        let id = given.unwrap_or_else(generate);
        // Several fields of the name would leave the upstream to pick one.
        fields.remove(HEADER);
        fields.append(HEADER, id.as_str().as_bytes());
        id
    }

    /// Sets the id on a response, replacing one the upstream sent.
    pub fn answer(&self, fields: &mut Fields) {
        fields.remove(HEADER);
        fields.append(HEADER, self.as_str().as_bytes());
    }
}

thread_local! {
    /// This thread's random half (drawn on first use) and its count.
    static NEXT: Cell<Option<(u64, u64)>> = const { Cell::new(None) };
}

fn generate() -> RequestId {
    let (random, count) = NEXT.with(|next| {
        let (random, count) = next.get().unwrap_or_else(|| (system_u64(), 0));
        next.set(Some((random, count.wrapping_add(1))));
        (random, count)
    });
    let value = (u128::from(random) << 64) | u128::from(count);
    let mut digits = [0u8; 32];
    digits.copy_from_slice(hex(&value.to_be_bytes()).as_flattened());
    RequestId::Generated(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(id: Option<&str>) -> Fields {
        let mut fields = Fields::with_capacity(2, 64);
        fields.append(b"host", b"a");
        if let Some(id) = id {
            fields.append(HEADER, id.as_bytes());
        }
        fields
    }

    #[test]
    fn generated_ids_are_hex_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let mut request = fields(None);
            let id = RequestId::assign(RequestIdMode::Generate, &mut request);
            assert_eq!(id.as_str().len(), 32);
            assert!(id.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
            assert_eq!(request.get(HEADER), Some(id.as_str().as_bytes()));
            assert!(seen.insert(id.as_str().to_owned()));
        }
    }

    #[test]
    fn a_client_id_is_kept_only_when_trusted_and_sane() {
        let mut request = fields(Some("abc-123"));
        assert_eq!(
            RequestId::assign(RequestIdMode::Trust, &mut request).as_str(),
            "abc-123"
        );
        let mut request = fields(Some("abc-123"));
        let id = RequestId::assign(RequestIdMode::Generate, &mut request);
        assert_ne!(id.as_str(), "abc-123");
        assert_eq!(request.get_all(HEADER).count(), 1, "the client's is gone");
        for bad in ["with space", "", &"x".repeat(129)] {
            let mut request = fields(Some(bad));
            let id = RequestId::assign(RequestIdMode::Trust, &mut request);
            assert_eq!(id.as_str().len(), 32, "{bad:?} replaced");
        }
    }
}
