//! Field rules on a JSON answer, in this order: `target` picks the part of the
//! answer the rest applies to, `flatten` joins an array of arrays into one, `fields`
//! keeps only the paths it lists, `deny` removes paths, `rename` renames members, and
//! `group` puts the result under a name.
//!
//! A path is object keys, `[]` (every element of an array) and, in a `target`, `[N]`
//! (one element): `user.address.city`, `items[].id`, `data.items[0]`. A path that
//! does not fit the answer (a key of a string, `[]` of an object) matches nothing.

use serde::de::DeserializeSeed;
use serde_json::{Map, Value};

use super::parse::Seed;
use super::text;

/// One step of a compiled path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Key(&'static str),
    /// Every element of an array.
    Each,
    /// One element of an array (`target` only).
    Index(usize),
}

/// The rules of one answer, as the compiler lays them out.
#[derive(Debug)]
pub struct Rules {
    /// The part of the answer the other rules apply to (all of it when empty).
    pub target: &'static [Step],
    /// Paths kept (all when empty), then paths removed.
    pub fields: &'static [&'static [Step]],
    pub deny: &'static [&'static [Step]],
    /// Members renamed: the path of each, and its new name.
    pub rename: &'static [(&'static [Step], &'static str)],
    /// Whether an array of arrays becomes one array.
    pub flatten: bool,
    /// The name the result is put under.
    pub group: Option<&'static str>,
}

impl Rules {
    /// Whether no rule changes the answer.
    pub fn is_empty(&self) -> bool {
        self.target.is_empty()
            && self.fields.is_empty()
            && self.deny.is_empty()
            && self.rename.is_empty()
            && !self.flatten
            && self.group.is_none()
    }

    /// The JSON text shaped by every rule, in order; `None` if it is not JSON. Without
    /// `rename` or `flatten`, the rules are applied to the text (`text`), with no tree.
    pub fn shape(&self, json: &[u8]) -> Option<Vec<u8>> {
        if text::applies(self) {
            text::shape(self, json)
        } else {
            serde_json::to_vec(&self.shape_tree(json).ok()?).ok()
        }
    }

    /// The JSON text shaped by every rule, as a tree; an error if it is not JSON (or
    /// holds what `Value` cannot, such as a number past `f64`). A `target`, and a
    /// `fields` list (or, without one, a `deny` list) that no `flatten` nor `[]` in the
    /// target comes before, are applied as the text is parsed (`parse`): what they
    /// leave out is never built.
    /// `shape` uses it for `rename` and `flatten`; the `shape` fuzz target holds the
    /// text path to it.
    pub fn shape_tree(&self, json: &[u8]) -> serde_json::Result<Value> {
        // Through a `[]`, a target makes a new array: the rules see it whole, so they
        // cannot go into the pick of each element.
        let whole = self.flatten || self.target.contains(&Step::Each);
        let deny_done = self.fields.is_empty() && !whole;
        let keep = if !self.fields.is_empty() {
            Seed::Keep(self.fields)
        } else if deny_done {
            Seed::Deny(self.deny)
        } else {
            Seed::All
        };
        let (seed, fields_done) = match (self.target, whole) {
            ([], false) => (keep, true),
            ([], true) => (Seed::All, false),
            (target, false) => (Seed::Pick(target, &keep), true),
            (target, true) => (Seed::Pick(target, &Seed::All), false),
        };
        let mut parser = serde_json::Deserializer::from_slice(json);
        let value = seed.deserialize(&mut parser)?;
        parser.end()?;
        let mut value = if self.flatten { flatten(value) } else { value };
        if !fields_done {
            value = keep_all(value, self.fields);
        }
        Ok(self.finish(value, deny_done))
    }

    /// The answer shaped by every rule, in order, on a tree: the model `shape` is
    /// tested against.
    #[cfg(test)]
    pub fn apply(&self, value: Value) -> Value {
        let mut value = if self.target.is_empty() {
            value
        } else {
            pick(value, self.target)
        };
        if self.flatten {
            value = flatten(value);
        }
        self.finish(keep_all(value, self.fields), false)
    }

    /// `deny` (unless parsing applied it), `rename` and `group`, which follow
    /// `fields`.
    fn finish(&self, mut value: Value, deny_done: bool) -> Value {
        if !deny_done {
            for path in self.deny {
                remove(&mut value, path);
            }
        }
        for (path, to) in self.rename {
            rename(&mut value, path, to);
        }
        match self.group {
            Some(name) => {
                let mut group = Map::new();
                group.insert(name.to_owned(), value);
                Value::Object(group)
            }
            None => value,
        }
    }
}

/// The part of `value` at `path`; `[]` collects what the rest of the path reaches
/// in every element. Where the path leads nowhere: `null`. The tree model of what
/// `Seed::Pick` does while parsing, which the tests hold it to.
#[cfg(test)]
fn pick(value: Value, path: &[Step]) -> Value {
    match (path, value) {
        ([], value) => value,
        ([Step::Key(key), rest @ ..], Value::Object(mut members)) => {
            pick(members.remove(*key).unwrap_or(Value::Null), rest)
        }
        ([Step::Index(i), rest @ ..], Value::Array(mut items)) if *i < items.len() => {
            pick(items.swap_remove(*i), rest)
        }
        ([Step::Each, rest @ ..], Value::Array(items)) => {
            Value::Array(items.into_iter().map(|item| pick(item, rest)).collect())
        }
        _ => Value::Null,
    }
}

/// Renames the member at `path` (its last step a key) to `to`, wherever `[]` reaches.
fn rename(value: &mut Value, path: &[Step], to: &str) {
    match (path, value) {
        ([Step::Key(key)], Value::Object(members)) => {
            if let Some(member) = members.remove(*key) {
                members.insert(to.to_owned(), member);
            }
        }
        ([Step::Key(key), rest @ ..], Value::Object(members)) => {
            if let Some(member) = members.get_mut(*key) {
                rename(member, rest, to);
            }
        }
        ([Step::Each, rest @ ..], Value::Array(items)) => {
            for item in items {
                rename(item, rest, to);
            }
        }
        _ => {}
    }
}

/// An array whose elements are arrays becomes one array of their elements; other
/// elements are kept as they are, in order.
fn flatten(value: Value) -> Value {
    match value {
        Value::Array(items) => {
            let mut flat = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::Array(inner) => flat.extend(inner),
                    other => flat.push(other),
                }
            }
            Value::Array(flat)
        }
        other => other,
    }
}

/// The answer with only the `fields` paths (all of it when there are none).
fn keep_all(value: Value, fields: &[&[Step]]) -> Value {
    if fields.is_empty() {
        value
    } else {
        keep(value, fields)
    }
}

/// What `paths` reach of `value`; a path that ends at a value keeps all of it.
fn keep(value: Value, paths: &[&[Step]]) -> Value {
    if paths.iter().any(|p| p.is_empty()) {
        return value;
    }
    match value {
        Value::Object(mut members) => {
            let mut kept = Map::new();
            for (i, path) in paths.iter().enumerate() {
                let Step::Key(key) = path[0] else {
                    continue;
                };
                if kept.contains_key(key) || paths[..i].iter().any(|p| p[0] == path[0]) {
                    continue;
                }
                let Some(member) = members.remove(key) else {
                    continue;
                };
                let tails: Vec<&[Step]> = paths[i..]
                    .iter()
                    .filter(|p| p[0] == path[0])
                    .map(|p| &p[1..])
                    .collect();
                kept.insert(key.to_owned(), keep(member, &tails));
            }
            Value::Object(kept)
        }
        Value::Array(items) => {
            let tails: Vec<&[Step]> = paths
                .iter()
                .filter(|p| p[0] == Step::Each)
                .map(|p| &p[1..])
                .collect();
            if tails.is_empty() {
                return Value::Array(Vec::new());
            }
            Value::Array(items.into_iter().map(|item| keep(item, &tails)).collect())
        }
        // Keys asked of a scalar: there is nothing under it to keep.
        _ => Value::Null,
    }
}

fn remove(value: &mut Value, path: &[Step]) {
    match (path, value) {
        ([Step::Key(key)], Value::Object(members)) => {
            members.remove(*key);
        }
        ([Step::Key(key), rest @ ..], Value::Object(members)) => {
            if let Some(member) = members.get_mut(*key) {
                remove(member, rest);
            }
        }
        ([Step::Each], Value::Array(items)) => items.clear(),
        ([Step::Each, rest @ ..], Value::Array(items)) => {
            for item in items {
                remove(item, rest);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NAME: &[Step] = &[Step::Key("name")];
    const CITY: &[Step] = &[Step::Key("address"), Step::Key("city")];
    const ITEM_IDS: &[Step] = &[Step::Key("items"), Step::Each, Step::Key("id")];
    const SECRET: &[Step] = &[Step::Key("items"), Step::Each, Step::Key("secret")];

    /// Fields and deny rules alone, applied to a tree and to its text alike.
    fn apply(
        value: Value,
        fields: &'static [&'static [Step]],
        deny: &'static [&'static [Step]],
    ) -> Value {
        let rules = Rules {
            target: &[],
            fields,
            deny,
            rename: &[],
            flatten: false,
            group: None,
        };
        checked(&rules, value)
    }

    /// `rules` applied to the tree, and to its text (compact and pretty) both while
    /// parsing and, where they can be, as text: the same result.
    fn checked(rules: &Rules, value: Value) -> Value {
        let texts = [
            serde_json::to_vec(&value).expect("text"),
            serde_json::to_vec_pretty(&value).expect("text"),
        ];
        let shaped = rules.apply(value);
        for text in texts {
            let parsed = rules.shape_tree(&text).expect("JSON");
            assert_eq!(parsed, shaped, "parsed and built differ");
            assert_eq!(
                read(rules, &text),
                Some(shaped.clone()),
                "text and tree differ"
            );
        }
        shaped
    }

    /// What `shape` makes of `text`, read back.
    fn read(rules: &Rules, text: &[u8]) -> Option<Value> {
        let shaped = rules.shape(text)?;
        Some(serde_json::from_slice(&shaped).expect("shaped text is JSON"))
    }

    fn answer() -> Value {
        json!({
            "name": "Ada",
            "email": "ada@example.test",
            "address": {"city": "London", "street": "1 Lane"},
            "items": [{"id": 1, "secret": "x", "n": 2}, {"id": 2, "secret": "y"}]
        })
    }

    #[test]
    fn fields_keep_nested_paths_and_array_elements() {
        assert_eq!(
            apply(answer(), &[NAME, CITY, ITEM_IDS], &[]),
            json!({"name": "Ada", "address": {"city": "London"}, "items": [{"id": 1}, {"id": 2}]})
        );
    }

    #[test]
    fn deny_removes_paths_everywhere_they_reach() {
        let shaped = apply(answer(), &[], &[SECRET, CITY, &[Step::Key("email")]]);
        assert_eq!(
            shaped,
            json!({
                "name": "Ada",
                "address": {"street": "1 Lane"},
                "items": [{"id": 1, "n": 2}, {"id": 2}]
            })
        );
    }

    /// A deny applied while parsing (no `fields`, no `flatten`) leaves what a deny on
    /// the tree leaves: scalars and paths that do not fit kept, `[]` emptied, a
    /// repeated name's last value, and under a `target`.
    #[test]
    fn deny_while_parsing_matches_the_tree() {
        const ITEMS: &[Step] = &[Step::Key("items")];
        const ALL_ITEMS: &[Step] = &[Step::Key("items"), Step::Each];
        const DEEP: &[Step] = &[Step::Key("m"), Step::Each, Step::Each, Step::Key("x")];
        let doc = json!({
            "items": [{"id": 1, "secret": "x"}, 7, "s", null, {"secret": {"a": [1]}}],
            "m": [[{"x": 1, "y": 2}, 3], {"x": 4}],
            "name": {"first": "Ada"},
            "n": 1.5,
        });
        assert_eq!(
            apply(doc.clone(), &[], &[SECRET, DEEP, NAME]),
            json!({
                "items": [{"id": 1}, 7, "s", null, {}],
                "m": [[{"y": 2}, 3], {"x": 4}],
                "n": 1.5,
            })
        );
        assert_eq!(
            apply(
                doc.clone(),
                &[],
                &[ALL_ITEMS, CITY, &[Step::Key("n"), Step::Key("k")]]
            ),
            json!({"items": [], "m": [[{"x": 1, "y": 2}, 3], {"x": 4}], "name": {"first": "Ada"}, "n": 1.5})
        );
        let targeted = Rules {
            target: ITEMS,
            fields: &[],
            deny: &[&[Step::Each, Step::Key("secret")]],
            rename: &[],
            flatten: false,
            group: None,
        };
        assert_eq!(
            checked(&targeted, doc),
            json!([{"id": 1}, 7, "s", null, {}])
        );
        let repeated = Rules {
            target: &[],
            fields: &[],
            deny: &[SECRET],
            rename: &[],
            flatten: false,
            group: None,
        };
        let text = br#"{"items": [{"secret": 1}], "items": [{"secret": 2, "id": 3}]}"#;
        assert_eq!(
            repeated.shape_tree(text).expect("JSON"),
            json!({"items": [{"id": 3}]})
        );
        assert_eq!(read(&repeated, text), Some(json!({"items": [{"id": 3}]})));
        let text = br#"{"items": [{"secret": tru}]}"#;
        assert!(
            repeated.shape_tree(text).is_err() && repeated.shape(text).is_none(),
            "a denied part is still checked"
        );
    }

    #[test]
    fn target_rename_flatten_group() {
        let answer = json!({"data": {"orders": [
            {"id": 1, "lines": [{"sku": "a"}, {"sku": "b"}]},
            {"id": 2, "lines": [{"sku": "c"}]}
        ]}});
        const LINES: &[Step] = &[
            Step::Key("data"),
            Step::Key("orders"),
            Step::Each,
            Step::Key("lines"),
        ];
        const SKU: &[Step] = &[Step::Each, Step::Key("sku")];
        let rules = Rules {
            target: LINES,
            fields: &[],
            deny: &[],
            rename: &[(SKU, "product")],
            flatten: true,
            group: Some("lines"),
        };
        // `[]` in the target gives one array per order, flattening joins them, and
        // renaming reaches into each line.
        assert_eq!(
            checked(&rules, answer.clone()),
            json!({"lines": [{"product": "a"}, {"product": "b"}, {"product": "c"}]})
        );
        const FIRST: &[Step] = &[Step::Key("data"), Step::Key("orders"), Step::Index(0)];
        let first = Rules {
            target: FIRST,
            fields: &[&[Step::Key("id")]],
            deny: &[],
            rename: &[(&[Step::Key("id")], "order_id")],
            flatten: false,
            group: None,
        };
        assert_eq!(checked(&first, answer.clone()), json!({"order_id": 1}));
        const NINTH: &[Step] = &[Step::Key("data"), Step::Key("orders"), Step::Index(9)];
        let missing = Rules {
            target: NINTH,
            ..first
        };
        assert_eq!(checked(&missing, answer), Value::Null);
    }

    /// A `[]` in the target makes an array that the rules see as one level: `[]` in
    /// a `fields` or `deny` path is that array's elements.
    #[test]
    fn rules_under_a_target_through_every_element() {
        let rules = Rules {
            target: &[Step::Each, Step::Key("b")],
            fields: &[&[Step::Each], &[Step::Key("a")]],
            deny: &[&[Step::Each, Step::Each]],
            rename: &[],
            flatten: false,
            group: None,
        };
        assert_eq!(
            checked(&rules, json!([{"b": {"a": 1}}, {"b": [[1], [2, 3]]}, 7])),
            json!([{"a": 1}, [], null])
        );
        let keys = Rules {
            target: &[Step::Key("a"), Step::Each],
            fields: &[&[Step::Key("b")]],
            deny: &[],
            group: Some("g"),
            ..rules
        };
        assert_eq!(
            checked(&keys, json!({"a": [{"b": 1, "c": 2}, {"b": "x"}]})),
            json!({"g": []})
        );
    }

    #[test]
    fn paths_that_do_not_fit_match_nothing() {
        const WRONG: &[Step] = &[Step::Key("name"), Step::Key("first")];
        assert_eq!(apply(answer(), &[WRONG], &[]), json!({"name": null}));
        assert_eq!(apply(json!([1, 2]), &[NAME], &[]), json!([]));
        assert_eq!(apply(json!("text"), &[], &[NAME]), json!("text"));
    }

    /// Parsing with the rules builds what the rules keep of the tree, and refuses
    /// what is not JSON as a parse of the whole would.
    #[test]
    fn shaping_while_parsing_matches_the_tree() {
        const ITEMS: &[Step] = &[Step::Key("items")];
        const IDS: &[Step] = &[Step::Each, Step::Key("id")];
        const NESTED: &[Step] = &[Step::Key("m"), Step::Each, Step::Each];
        let rules = Rules {
            target: ITEMS,
            fields: &[IDS],
            deny: &[],
            rename: &[],
            flatten: false,
            group: Some("ids"),
        };
        assert_eq!(
            checked(&rules, answer()),
            json!({"ids": [{"id": 1}, {"id": 2}]})
        );
        let doc = json!({"m": [[1, 2], [3]], "m2": {"a": 1}, "x": [true, null, "s"]});
        assert_eq!(
            apply(doc.clone(), &[NESTED], &[]),
            json!({"m": [[1, 2], [3]]})
        );
        assert_eq!(
            apply(doc, &[ITEMS, &[Step::Key("x"), Step::Each]], &[]),
            json!({"x": [true, null, "s"]})
        );
        // A repeated name: the last, as a parsed object keeps it.
        let text = br#"{"items": [{"id": 1}], "items": [{"id": 9}]}"#;
        assert_eq!(
            rules.shape_tree(text).expect("JSON"),
            json!({"ids": [{"id": 9}]})
        );
        assert_eq!(read(&rules, text), Some(json!({"ids": [{"id": 9}]})));
        for bad in [
            &b"{\"items\": [1, }"[..],
            b"{\"items\": []} x",
            b"{\"other\": tru}",
            b"",
        ] {
            assert!(
                rules.shape_tree(bad).is_err() && rules.shape(bad).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
