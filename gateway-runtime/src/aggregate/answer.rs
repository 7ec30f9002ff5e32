//! A call's answer as the merge needs it. An answer no rule shapes is kept as the
//! bytes it came in (checked to be JSON, never built into a tree nor copied): parsing
//! 100 KB into `serde_json::Value` allocates for every member and string, and costs
//! twenty times checking it. An answer its rules shape is kept as the text they give,
//! and only a fallback is a `Value`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;

use bytes::Bytes;
use serde_json::Value;

use crate::message::body::Pieces;
use crate::transform::shape::{Rules, Step};
use crate::transform::text;
use crate::transform::validate::is_json;

/// A call's answer, or the fallback in its place.
#[derive(Debug)]
pub enum Answer {
    /// One valid JSON value in UTF-8, as the backend wrote it (without the white space
    /// around it) or as its rules shaped it. Only [`Answer::checked`] and
    /// [`Answer::shaped`] make one.
    Raw(Bytes),
    Value(Value),
}

impl Answer {
    /// `body` as a raw answer if it is one JSON value in UTF-8 (what serde_json reads
    /// as one, checked without building anything); `None` if not.
    pub fn checked(body: Bytes) -> Option<Answer> {
        if !is_json(&body) {
            return None;
        }
        let start = body.iter().position(|b| !b.is_ascii_whitespace())?;
        let end = body.iter().rposition(|b| !b.is_ascii_whitespace())? + 1;
        Some(Answer::Raw(body.slice(start..end)))
    }

    /// `body` shaped by `rules` as a raw answer; `None` if it is not JSON.
    pub fn shaped(rules: &Rules, body: &[u8]) -> Option<Answer> {
        rules.shape(body).map(|text| Answer::Raw(Bytes::from(text)))
    }

    /// Appends the answer's JSON text; a large raw answer is shared, not copied.
    pub fn write(&self, out: &mut Pieces) {
        match self {
            Answer::Raw(raw) => out.share(raw, raw),
            // A `Value` always serializes.
            Answer::Value(value) => {
                let _ = serde_json::to_writer(out.text(), value);
            }
        }
    }

    /// The value at `path` (keys and `[N]`), for a call that depends on this one. Of a
    /// raw answer, only that value is parsed.
    pub fn at(&self, path: &[Step]) -> Option<Cow<'_, Value>> {
        match self {
            Answer::Raw(raw) => {
                let part = &raw[text::find(raw, path)?];
                serde_json::from_slice(part).ok().map(Cow::Owned)
            }
            Answer::Value(value) => at(value, path).map(Cow::Borrowed),
        }
    }

    /// An object's members, each as its JSON text, in name order (as `Value`'s map
    /// keeps them, a repeated name's last); `None` for an answer that is not an object.
    pub fn members(&self) -> Option<Vec<(Cow<'_, str>, Member<'_>)>> {
        match self {
            Answer::Raw(raw) => {
                let members: BTreeMap<Cow<'_, str>, Range<usize>> =
                    text::members_of(raw)?.into_iter().collect();
                Some(
                    members
                        .into_iter()
                        .map(|(name, span)| {
                            let text = &raw[span];
                            (name, Member::Raw { whole: raw, text })
                        })
                        .collect(),
                )
            }
            Answer::Value(Value::Object(members)) => Some(
                members
                    .iter()
                    .map(|(k, v)| (Cow::Borrowed(k.as_str()), Member::Value(v)))
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
    /// `text`, one JSON value, lies within `whole`, the answer.
    Raw {
        whole: &'a Bytes,
        text: &'a [u8],
    },
    Value(&'a Value),
}

impl Member<'_> {
    /// Appends the member's JSON text; a large raw one is shared, not copied.
    pub fn write(&self, out: &mut Pieces) {
        match self {
            Member::Raw { whole, text } => out.share(whole, text),
            Member::Value(value) => {
                let _ = serde_json::to_writer(out.text(), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer's text as a response body carries it.
    async fn written(answer: &Answer) -> Bytes {
        use http_body_util::BodyExt;
        let mut out = Pieces::default();
        answer.write(&mut out);
        out.finish()
            .collect()
            .await
            .expect("a written body")
            .to_bytes()
    }

    #[tokio::test]
    async fn raw_and_built_answers_write_and_list_alike() {
        let text = r#" {"b": [1, 2], "a": {"x": "y\u00e9"}} "#;
        let raw = Answer::checked(Bytes::from_static(text.as_bytes())).expect("raw");
        let value = Answer::Value(serde_json::from_str(text).expect("value"));
        let names = |answer: &Answer| -> Vec<String> {
            answer
                .members()
                .expect("object")
                .into_iter()
                .map(|(k, _)| k.into_owned())
                .collect()
        };
        assert_eq!(names(&raw), ["a", "b"]);
        assert_eq!(names(&raw), names(&value));
        let out = written(&raw).await;
        let as_written: Value = serde_json::from_slice(&out).expect("JSON");
        assert_eq!(
            as_written,
            serde_json::from_str::<Value>(text).expect("value")
        );
        assert_eq!(
            as_written,
            serde_json::from_slice::<Value>(&written(&value).await).expect("JSON")
        );
        assert!(
            Answer::checked(Bytes::from_static(b"[1]"))
                .expect("raw")
                .members()
                .is_none()
        );
        // A name that is no text (a lone surrogate) makes no members to list, as for
        // serde_json: such an answer is nested under its key, not merged.
        let lone = Answer::checked(Bytes::from_static(br#"{"\udfff": 1}"#)).expect("raw");
        assert!(lone.members().is_none());
        // A repeated name, one escaped: listed once, with its last value.
        let repeated = br#"{"b": 1, "a": 2, "c": {"x": [1]}, "a" : 3 }"#;
        let raw = Answer::checked(Bytes::from_static(repeated)).expect("raw");
        let listed: Vec<(String, String)> = raw
            .members()
            .expect("object")
            .into_iter()
            .map(|(name, member)| match member {
                Member::Raw { text, .. } => (
                    name.into_owned(),
                    String::from_utf8_lossy(text).into_owned(),
                ),
                Member::Value(_) => panic!("a raw answer's member is raw"),
            })
            .collect();
        assert_eq!(
            listed,
            [("a", "3"), ("b", "1"), ("c", r#"{"x": [1]}"#)]
                .map(|(n, t)| (n.to_owned(), t.to_owned()))
        );
        assert_eq!(out.first(), Some(&b'{'), "no white space kept around it");
        assert_eq!(out.last(), Some(&b'}'));
    }

    /// A value another call uses is found in a raw answer's text as in its tree: a
    /// repeated name's last, escaped names, elements, and nothing past the end.
    #[test]
    fn a_raw_answer_finds_what_a_parsed_one_finds() {
        let text = r#" {"team": {"id": 1, "id": 7}, "team2": [ {"n": "a"}, {"n": null} ],
            "deep": {"a": [[0, {"b": "x"}]]}, "team": {"id": 9, "name": "z"}} "#;
        let raw = Answer::checked(Bytes::from_static(text.as_bytes())).expect("raw");
        let value = Answer::Value(serde_json::from_str(text).expect("value"));
        for path in [
            &[Step::Key("team"), Step::Key("id")][..],
            &[Step::Key("team")],
            &[Step::Key("team2"), Step::Index(0), Step::Key("n")],
            &[Step::Key("team2"), Step::Index(1), Step::Key("n")],
            &[Step::Key("team2"), Step::Index(2)],
            &[
                Step::Key("deep"),
                Step::Key("a"),
                Step::Index(0),
                Step::Index(1),
            ],
            &[Step::Key("deep"), Step::Key("b")],
            &[Step::Key("team"), Step::Index(0)],
            &[],
        ] {
            assert_eq!(raw.at(path), value.at(path), "{path:?}");
        }
        let id = [Step::Key("team"), Step::Key("id")];
        assert_eq!(raw.at(&id).as_deref(), Some(&Value::from(9)));
    }

    #[tokio::test]
    async fn a_large_raw_answer_and_its_members_are_shared_not_copied() {
        use http_body::Body as _;
        use http_body_util::BodyExt;
        let text = format!(r#"{{"big":"{}","small":1}}"#, "x".repeat(8192));
        let raw = Answer::checked(Bytes::from(text)).expect("raw");
        let Answer::Raw(whole) = &raw else {
            panic!("a raw answer")
        };
        let within = |piece: &Bytes| whole.as_ptr_range().contains(&piece.as_ptr());
        let mut out = Pieces::default();
        raw.write(&mut out);
        for (_, member) in raw.members().expect("object") {
            member.write(&mut out);
        }
        let mut body = out.finish();
        assert_eq!(
            body.size_hint().exact(),
            Some(whole.len() as u64 + 8194 + 1)
        );
        let mut pieces = Vec::new();
        while let Some(frame) = body.frame().await {
            pieces.push(frame.expect("a piece").into_data().expect("data"));
        }
        assert!(body.is_end_stream());
        // The answer, then `"x…"` shared; `1` copied into a text piece of its own.
        assert_eq!(pieces.len(), 3);
        assert!(within(&pieces[0]) && pieces[0].len() == whole.len());
        assert!(within(&pieces[1]) && pieces[1].len() == 8194);
        assert_eq!(&pieces[2][..], b"1");
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
