//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the `traceparent` a
//! request arrives with, continued or replaced, and the one each upstream request
//! carries.
//!
//! A client's `traceparent` is continued only when it is valid (§3.2.2: version `00`,
//! 55 characters, lower-case hex, neither id all zeros; a later version may add fields
//! after a `-`). Anything else starts a new trace, and the client's `tracestate` goes
//! with the bad `traceparent` (§3.3: it cannot be read without its parent). A
//! `tracestate` beside a valid parent is passed on as it came: the gateway adds no
//! entry of its own, as OpenTelemetry's SDKs add none.

use crate::message::fields::Fields;
use crate::observe::random::{next_u64, next_u128};
use crate::observe::text::hex;

pub const TRACEPARENT: &[u8] = b"traceparent";
pub const TRACESTATE: &[u8] = b"tracestate";

pub type TraceId = [u8; 16];
pub type SpanId = [u8; 8];

/// A span as the next hop sees it: its trace, its id, and whether it is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub sampled: bool,
}

/// How the gateway's server span of a request came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Begun {
    pub span: SpanContext,
    /// The client's span, when its `traceparent` was continued.
    pub parent: Option<SpanId>,
}

impl SpanContext {
    /// The `traceparent` value `value`, when it is valid.
    pub fn parse(value: &[u8]) -> Option<SpanContext> {
        if value.len() < 55 || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let version = hex_byte(&value[0..2])?;
        // `ff` is forbidden; version 00 is exactly 55 characters; a later version may
        // carry more, after a dash.
        let fits = match version {
            0xff => false,
            0 => value.len() == 55,
            _ => value.len() == 55 || value[55] == b'-',
        };
        if !fits {
            return None;
        }
        let mut trace_id = [0u8; 16];
        for (i, byte) in trace_id.iter_mut().enumerate() {
            *byte = hex_byte(&value[3 + 2 * i..5 + 2 * i])?;
        }
        let mut span_id = [0u8; 8];
        for (i, byte) in span_id.iter_mut().enumerate() {
            *byte = hex_byte(&value[36 + 2 * i..38 + 2 * i])?;
        }
        let flags = hex_byte(&value[53..55])?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(SpanContext {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// Begins the server span of a request with `fields`: continues the client's trace
    /// when its `traceparent` is valid (and keeps its sampling decision), or starts a
    /// new one sampled when its id falls under `threshold` (see `Sampler`). A bad
    /// `traceparent` and its `tracestate` are removed from `fields`.
    ///
    /// A span that is not sampled gets no id of its own: no one sees it, as each
    /// upstream request is named by a client span of its own (`child`).
    pub fn begin(fields: &mut Fields, threshold: u64) -> Begun {
        let [(parents, given), (states, _)] = fields.tally([TRACEPARENT, TRACESTATE]);
        // Two is as bad as a malformed one: which would be the parent?
        let parent = given.filter(|_| parents == 1).and_then(SpanContext::parse);
        let (trace_id, sampled, parent_id) = match parent {
            Some(parent) => (parent.trace_id, parent.sampled, Some(parent.span_id)),
            None => {
                if parents > 0 || states > 0 {
                    fields.remove(TRACEPARENT);
                    fields.remove(TRACESTATE);
                }
                let trace_id = new_trace_id();
                (trace_id, sampled(&trace_id, threshold), None)
            }
        };
        Begun {
            span: SpanContext {
                trace_id,
                span_id: if sampled { new_span_id() } else { [0; 8] },
                sampled,
            },
            parent: parent_id,
        }
    }

    /// A span of the same trace with a new id: the gateway's client span for one
    /// upstream request.
    pub fn child(&self) -> SpanContext {
        SpanContext {
            span_id: new_span_id(),
            ..*self
        }
    }

    /// Writes the `traceparent` field line (name, value and CRLF) that names this span
    /// as the parent.
    pub fn write_field(&self, out: &mut Vec<u8>) {
        // Assembled on the stack and copied once: a push per digit checks the
        // vector's capacity 48 times.
        let mut line = *b"traceparent: 00-................................-................-00\r\n";
        line[16..48].copy_from_slice(hex(&self.trace_id).as_flattened());
        line[49..65].copy_from_slice(hex(&self.span_id).as_flattened());
        if self.sampled {
            line[67] = b'1';
        }
        out.extend_from_slice(&line);
    }
}

/// Copies the client's `tracestate` to `to`, the fields of a request of the gateway's
/// own made for it (an aggregate's call, an authorization check): that request carries
/// the client's trace on, with its vendors' state. `begin` has removed a state whose
/// parent was not valid.
pub fn copy_state(from: &Fields, to: &mut Fields) {
    for value in from.get_all(TRACESTATE) {
        to.append(TRACESTATE, value);
    }
}

/// The threshold a trace id is sampled under at `ratio` (0 to 1), compared with the
/// id's last 8 bytes as OpenTelemetry's `TraceIdRatioBased` sampler does, so that every
/// hop using the same ratio makes the same decision about a trace.
pub fn threshold(ratio: f64) -> u64 {
    if ratio >= 1.0 {
        u64::MAX
    } else if ratio <= 0.0 {
        0
    } else {
        (ratio * (1u64 << 63) as f64) as u64
    }
}

fn sampled(trace_id: &TraceId, threshold: u64) -> bool {
    let mut low = [0u8; 8];
    low.copy_from_slice(&trace_id[8..]);
    threshold == u64::MAX || (u64::from_be_bytes(low) >> 1) < threshold
}

fn new_trace_id() -> TraceId {
    // Zero is invalid; one draw in 2^128 would give it.
    next_u128().max(1).to_be_bytes()
}

fn new_span_id() -> SpanId {
    // Zero is invalid; one draw in 2^64 would give it.
    next_u64().max(1).to_be_bytes()
}

/// Two lower-case hex digits; upper case is invalid in `traceparent`.
fn hex_byte(digits: &[u8]) -> Option<u8> {
    fn digit(d: u8) -> Option<u8> {
        match d {
            b'0'..=b'9' => Some(d - b'0'),
            b'a'..=b'f' => Some(d - b'a' + 10),
            _ => None,
        }
    }
    Some(digit(digits[0])? << 4 | digit(digits[1])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn fields(list: &[(&str, &str)]) -> Fields {
        let mut fields = Fields::with_capacity(list.len() + 1, 128);
        fields.append(b"host", b"a");
        for (name, value) in list {
            fields.append(name.as_bytes(), value.as_bytes());
        }
        fields
    }

    #[test]
    fn a_valid_parent_is_read() {
        let parent = SpanContext::parse(VALID.as_bytes()).expect("valid");
        assert_eq!(parent.trace_id[0], 0x4b);
        assert_eq!(parent.span_id[7], 0xb7);
        assert!(parent.sampled);
        let mut line = Vec::new();
        parent.write_field(&mut line);
        assert_eq!(line, format!("traceparent: {VALID}\r\n").into_bytes());
        // A later version may carry more fields.
        assert!(
            SpanContext::parse(format!("cc{}-what-the-future-holds", &VALID[2..]).as_bytes())
                .is_some()
        );
    }

    #[test]
    fn malformed_parents_are_refused() {
        let bad = [
            "",
            &VALID[..54],
            &format!("{VALID}-"),
            &VALID.replace("4bf9", "4BF9"),
            &format!("ff{}", &VALID[2..]),
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            &format!("cc{}x", &VALID[2..]),
        ];
        for value in bad {
            assert_eq!(SpanContext::parse(value.as_bytes()), None, "{value:?}");
        }
    }

    #[test]
    fn a_valid_parent_is_continued_with_its_state() {
        let mut request = fields(&[("traceparent", VALID), ("tracestate", "k=v")]);
        let begun = SpanContext::begin(&mut request, 0);
        let parent = SpanContext::parse(VALID.as_bytes()).expect("valid");
        assert_eq!(begun.span.trace_id, parent.trace_id);
        assert_eq!(begun.parent, Some(parent.span_id));
        assert_ne!(begun.span.span_id, parent.span_id);
        assert!(
            begun.span.sampled,
            "the parent's decision, whatever the ratio"
        );
        assert_ne!(begun.span.span_id, [0; 8]);
        assert_eq!(request.get(TRACESTATE), Some(&b"k=v"[..]));
    }

    #[test]
    fn a_bad_parent_is_replaced_and_its_state_dropped() {
        for list in [
            &[("traceparent", "garbage"), ("tracestate", "k=v")][..],
            &[("traceparent", VALID), ("traceparent", VALID)][..],
            &[("tracestate", "k=v")][..],
        ] {
            let mut request = fields(list);
            let begun = SpanContext::begin(&mut request, u64::MAX);
            assert_eq!(begun.parent, None);
            assert!(begun.span.sampled);
            assert_eq!(request.get(TRACEPARENT), None);
            assert_eq!(request.get(TRACESTATE), None);
        }
    }

    #[test]
    fn the_ratio_samples_that_share_of_new_traces() {
        let threshold = threshold(0.25);
        let sampled = (0..40_000)
            .filter(|_| SpanContext::begin(&mut fields(&[]), threshold).span.sampled)
            .count();
        assert!((9_000..11_000).contains(&sampled), "{sampled} of 40000");
        assert!(
            !SpanContext::begin(&mut fields(&[]), super::threshold(0.0))
                .span
                .sampled
        );
    }
}
