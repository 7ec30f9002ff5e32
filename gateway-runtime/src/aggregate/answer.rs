//! A call's answer as the merge needs it. An answer no rule shapes is kept as the
//! bytes it came in (checked to be JSON, never built into a tree nor copied): parsing
//! 100 KB into `serde_json::Value` allocates for every member and string, and costs
//! twenty times checking it. Only an answer a rule shapes becomes a `Value`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::transform::shape::Step;
use crate::transform::validate::is_json;

/// A call's answer, or the fallback in its place.
#[derive(Debug)]
pub enum Answer {
    /// One valid JSON value in UTF-8, as the backend wrote it, without the white space
    /// around it. Only [`Answer::checked`] makes one.
    Raw(Bytes),
    Value(Value),
}

impl Answer {
    /// `body` as a raw answer if it is one JSON value in UTF-8 (what
    /// `serde_json::value::RawValue` accepts, checked without building anything);
    /// `None` if not.
    pub fn checked(body: Bytes) -> Option<Answer> {
        if !is_json(&body) {
            return None;
        }
        let start = body.iter().position(|b| !b.is_ascii_whitespace())?;
        let end = body.iter().rposition(|b| !b.is_ascii_whitespace())? + 1;
        Some(Answer::Raw(body.slice(start..end)))
    }

    /// The length of a raw answer's text (what the response will need for it); 0 for
    /// a built one, which is short.
    pub fn raw_len(&self) -> usize {
        match self {
            Answer::Raw(raw) => raw.len(),
            Answer::Value(_) => 0,
        }
    }

    /// Appends the answer's JSON text.
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Answer::Raw(raw) => out.extend_from_slice(raw),
            // A `Value` always serializes.
            Answer::Value(value) => {
                let _ = serde_json::to_writer(&mut *out, value);
            }
        }
    }

    /// The value at `path` (keys and `[N]`), for a call that depends on this one. A
    /// raw answer is parsed for it: only answers that others depend on pay that.
    pub fn at(&self, path: &[Step]) -> Option<Cow<'_, Value>> {
        match self {
            Answer::Raw(raw) => {
                let value: Value = serde_json::from_slice(raw).ok()?;
                at(&value, path).cloned().map(Cow::Owned)
            }
            Answer::Value(value) => at(value, path).map(Cow::Borrowed),
        }
    }

    /// An object's members, each as its JSON text, in name order (as `Value`'s map
    /// keeps them); `None` for an answer that is not an object.
    pub fn members(&self) -> Option<Vec<(String, Member<'_>)>> {
        match self {
            Answer::Raw(raw) => {
                let members: BTreeMap<String, &RawValue> = serde_json::from_slice(raw).ok()?;
                Some(
                    members
                        .into_iter()
                        .map(|(k, v)| (k, Member::Raw(v)))
                        .collect(),
                )
            }
            Answer::Value(Value::Object(members)) => Some(
                members
                    .iter()
                    .map(|(k, v)| (k.clone(), Member::Value(v)))
                    .collect(),
            ),
            Answer::Value(_) => None,
        }
    }
}

fn at<'v>(value: &'v Value, path: &[Step]) -> Option<&'v Value> {
    path.iter().try_fold(value, |value, step| match step {
        Step::Key(key) => value.get(*key),
        Step::Index(i) => value.get(*i),
        Step::Each => None,
    })
}

/// One member of an object answer.
#[derive(Debug, Clone, Copy)]
pub enum Member<'a> {
    Raw(&'a RawValue),
    Value(&'a Value),
}

impl Member<'_> {
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Member::Raw(raw) => out.extend_from_slice(raw.get().as_bytes()),
            Member::Value(value) => {
                let _ = serde_json::to_writer(&mut *out, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_and_built_answers_write_and_list_alike() {
        let text = r#" {"b": [1, 2], "a": {"x": "y\u00e9"}} "#;
        let raw = Answer::checked(Bytes::from_static(text.as_bytes())).expect("raw");
        let value = Answer::Value(serde_json::from_str(text).expect("value"));
        let names = |answer: &Answer| -> Vec<String> {
            answer
                .members()
                .expect("object")
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        assert_eq!(names(&raw), ["a", "b"]);
        assert_eq!(names(&raw), names(&value));
        let mut out = Vec::new();
        raw.write(&mut out);
        let written: Value = serde_json::from_slice(&out).expect("JSON");
        assert_eq!(written, serde_json::from_str::<Value>(text).expect("value"));
        assert!(
            Answer::checked(Bytes::from_static(b"[1]"))
                .expect("raw")
                .members()
                .is_none()
        );
        let mut trimmed = Vec::new();
        raw.write(&mut trimmed);
        assert_eq!(
            trimmed.first(),
            Some(&b'{'),
            "no white space kept around it"
        );
        assert_eq!(trimmed.last(), Some(&b'}'));
    }

    #[test]
    fn a_raw_answer_is_one_json_value_in_utf8() {
        // The grammar is `transform::validate`'s, tested there; this is the gate.
        for bad in [&b""[..], b"{\"a\":1} {}", b"\"\xff\""] {
            assert!(
                Answer::checked(Bytes::copy_from_slice(bad)).is_none(),
                "{:?} is not one JSON value",
                String::from_utf8_lossy(bad)
            );
        }
        for good in [&b"1"[..], b" null\n", b"[1e400]", b"\"\\ud800\""] {
            assert!(Answer::checked(Bytes::copy_from_slice(good)).is_some());
        }
    }
}
