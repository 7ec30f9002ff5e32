//! Field rules applied while a body is parsed: what a `target`, a `fields` list or a
//! `deny` list leaves out is skipped as it is read (checked to be JSON, never built),
//! so a rule that keeps ten members of a 100 KB answer builds ten values, not the
//! answer's whole tree. The results equal `shape`'s `pick`, `keep` and `remove` on the
//! whole tree (a test holds them to it). Only rules that need a tree (`rename`,
//! `flatten`) come here; `text` applies the others with none.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::shape::Step;

/// What a seed builds of the value it reads.
#[derive(Clone, Copy)]
pub enum Seed<'p> {
    /// All of it.
    All,
    /// The part at a `target` path, then `then` of that part.
    Pick(&'p [Step], &'p Seed<'p>),
    /// What the `fields` paths reach.
    Keep(&'p [&'p [Step]]),
    /// All of it but what the `deny` paths reach.
    Deny(&'p [&'p [Step]]),
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        match self {
            Seed::All | Seed::Deny([]) => Value::deserialize(deserializer),
            Seed::Pick([], then) => then.deserialize(deserializer),
            Seed::Keep(paths) if paths.iter().any(|p| p.is_empty()) => {
                Value::deserialize(deserializer)
            }
            seed => deserializer.deserialize_any(seed),
        }
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }

    // A path that goes on into a scalar reaches nothing: a pick or a keep finds
    // nothing there, and a deny leaves the scalar as it is.
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(self.scalar(|| Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(self.scalar(|| Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(self.scalar(|| Value::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(self.scalar(|| Value::from(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(self.scalar(|| Value::String(v.to_owned())))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        match self {
            Seed::Pick([Step::Key(key), rest @ ..], then) => {
                let mut found = Value::Null;
                while let Some(name) = map.next_key::<Key<'_>>()? {
                    if name.0 == *key {
                        // The last of a repeated name, as a parsed object keeps it.
                        found = map.next_value_seed(Seed::Pick(rest, then))?;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(found)
            }
            Seed::Keep(paths) => {
                let mut kept = Map::new();
                let mut tails: Vec<&[Step]> = Vec::new();
                while let Some(name) = map.next_key::<Key<'_>>()? {
                    tails.clear();
                    tails.extend(paths.iter().filter_map(|p| match p.split_first() {
                        Some((Step::Key(k), rest)) if *k == name.0 => Some(rest),
                        _ => None,
                    }));
                    if tails.is_empty() {
                        map.next_value::<IgnoredAny>()?;
                    } else {
                        let value = map.next_value_seed(Seed::Keep(&tails))?;
                        kept.insert(name.0.into_owned(), value);
                    }
                }
                Ok(Value::Object(kept))
            }
            Seed::Deny(paths) => {
                let mut kept = Map::new();
                let mut tails: Vec<&[Step]> = Vec::new();
                while let Some(name) = map.next_key::<Key<'_>>()? {
                    tails.clear();
                    let mut denied = false;
                    for path in paths {
                        if let Some((Step::Key(key), rest)) = path.split_first()
                            && *key == name.0
                        {
                            denied |= rest.is_empty();
                            tails.push(rest);
                        }
                    }
                    if denied {
                        map.next_value::<IgnoredAny>()?;
                    } else {
                        let value = map.next_value_seed(Seed::Deny(&tails))?;
                        kept.insert(name.0.into_owned(), value);
                    }
                }
                Ok(Value::Object(kept))
            }
            _ => {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Value::Null)
            }
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        match self {
            Seed::Pick([Step::Index(i), rest @ ..], then) => {
                let mut found = Value::Null;
                let mut at = 0;
                loop {
                    if at == *i {
                        match seq.next_element_seed(Seed::Pick(rest, then))? {
                            Some(value) => found = value,
                            None => break,
                        }
                    } else if seq.next_element::<IgnoredAny>()?.is_none() {
                        break;
                    }
                    at += 1;
                }
                Ok(found)
            }
            Seed::Pick([Step::Each, rest @ ..], then) => {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(item) = seq.next_element_seed(Seed::Pick(rest, then))? {
                    items.push(item);
                }
                Ok(Value::Array(items))
            }
            Seed::Keep(paths) => {
                let tails = element_tails(paths);
                let mut items = Vec::new();
                if tails.is_empty() {
                    while seq.next_element::<IgnoredAny>()?.is_some() {}
                } else {
                    while let Some(item) = seq.next_element_seed(Seed::Keep(&tails))? {
                        items.push(item);
                    }
                }
                Ok(Value::Array(items))
            }
            Seed::Deny(paths) => {
                let tails = element_tails(paths);
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                // `[]` itself denied: every element goes.
                if tails.iter().any(|t| t.is_empty()) {
                    while seq.next_element::<IgnoredAny>()?.is_some() {}
                } else {
                    while let Some(item) = seq.next_element_seed(Seed::Deny(&tails))? {
                        items.push(item);
                    }
                }
                Ok(Value::Array(items))
            }
            _ => {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Value::Null)
            }
        }
    }
}

/// What of `paths` goes on into each element of an array: the rest of those that
/// begin with `[]`.
fn element_tails<'p>(paths: &[&'p [Step]]) -> Vec<&'p [Step]> {
    paths
        .iter()
        .filter_map(|p| match p.split_first() {
            Some((Step::Each, rest)) => Some(rest),
            _ => None,
        })
        .collect()
}

impl Seed<'_> {
    /// What this seed makes of a scalar: the scalar for a deny, else nothing.
    fn scalar(&self, value: impl FnOnce() -> Value) -> Value {
        match self {
            Seed::Deny(_) => value(),
            _ => Value::Null,
        }
    }
}

/// An object member's name, borrowed from the text unless it has escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, name: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(name)))
            }
            fn visit_str<E>(self, name: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(name.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}
