//! The aggregate response: the calls' answers in one JSON object, in the order the
//! configuration lists the calls, with what was degraded said in the open.

use std::borrow::Cow;
use std::collections::HashSet;

use http::StatusCode;
use serde_json::Value;

use super::answer::{Answer, Member};
use super::caching::Caching;
use super::{AggregateSpec, Answered, CallError, Merge};
use crate::message::body::Pieces;
use crate::message::error::json_error;
use crate::message::response::Response;
use crate::pipeline::Stop;

/// The field that names the calls an aggregate response is missing.
pub const PARTIAL: &[u8] = b"x-gateway-partial";

/// One response from the answers of `spec`'s calls (`answers[i]` is `spec.calls[i]`'s):
/// 502 if a required call failed; otherwise 200 with the merged JSON.
pub fn respond<const N: usize>(
    spec: &'static AggregateSpec,
    answers: [Result<Answered, CallError>; N],
) -> Result<Response, Stop> {
    let mut values: Vec<Answer> = Vec::with_capacity(N);
    let mut failed: Vec<(&'static str, CallError)> = Vec::new();
    let mut caching = match spec.private {
        true => Caching::PRIVATE,
        false => Caching::default(),
    };
    for (call, answer) in spec.calls.iter().zip(answers) {
        match answer {
            Ok(answered) => {
                caching = caching.and(answered.caching);
                values.push(answered.answer);
            }
            Err(error) if call.required => {
                tracing::warn!(route = spec.route, call = call.key, upstream = call.upstream, %error, "a required call failed");
                let message = format!("backend `{}` {error}", call.key);
                return Err(Stop::Answer {
                    by: spec.route,
                    what: "a required backend call failed",
                    response: Box::new(json_error(StatusCode::BAD_GATEWAY, &message)),
                });
            }
            Err(error) => {
                failed.push((call.key, error));
                values.push(Answer::Value(
                    serde_json::from_str(call.fallback).unwrap_or(Value::Null),
                ));
            }
        }
    }
    let mut body = Pieces::with_text_capacity(256);
    body.text().push(b'{');
    // The names written so far: a set, since a flat answer may have thousands.
    let mut written: HashSet<Cow<'_, str>> = HashSet::new();
    for (call, answer) in spec.calls.iter().zip(&values) {
        let members = match spec.merge {
            Merge::Flat => answer.members(),
            Merge::Nested => None,
        };
        match members {
            // `_errors` is the gateway's: a backend's member of that name is dropped.
            Some(members) => {
                for (name, member) in members {
                    if name != "_errors" && !written.contains(&name) {
                        name_into(&mut body, !written.is_empty(), &name);
                        member.write(&mut body);
                        written.insert(name);
                    }
                }
            }
            None => {
                if !written.contains(call.key) {
                    name_into(&mut body, !written.is_empty(), call.key);
                    answer.write(&mut body);
                    written.insert(Cow::Borrowed(call.key));
                }
            }
        }
    }
    if !failed.is_empty() {
        let errors: serde_json::Map<String, Value> = failed
            .iter()
            .map(|(key, error)| ((*key).to_owned(), Value::String(error.to_string())))
            .collect();
        name_into(&mut body, !written.is_empty(), "_errors");
        Member::Value(&Value::Object(errors)).write(&mut body);
    }
    body.text().push(b'}');
    let mut response = Response::written(StatusCode::OK, b"application/json", body.finish());
    let fields = response.fields_mut();
    if !failed.is_empty() {
        let keys: Vec<&str> = failed.iter().map(|(key, _)| *key).collect();
        fields.append(PARTIAL, keys.join(", ").as_bytes());
        // No cache may serve a fallback once the backend answers again.
        caching = Caching::NO_STORE;
    }
    if let Some(value) = caching.value() {
        fields.append(b"cache-control", value.as_bytes());
    }
    if let Some(vary) = spec.vary {
        fields.append(b"vary", vary.as_bytes());
    }
    Ok(response)
}

/// Writes `"name":`, after a comma unless it is the first.
fn name_into(body: &mut Pieces, after_another: bool, name: &str) {
    let text = body.text();
    if after_another {
        text.push(b',');
    }
    // A string always serializes.
    let _ = serde_json::to_writer(&mut *text, name);
    text.push(b':');
}
