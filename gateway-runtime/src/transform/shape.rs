//! Field rules on a JSON answer, in this order: `target` picks the part of the
//! answer the rest applies to, `flatten` joins an array of arrays into one, `fields`
//! keeps only the paths it lists, `deny` removes paths, `rename` renames members, and
//! `group` puts the result under a name.
//!
//! A path is object keys, `[]` (every element of an array) and, in a `target`, `[N]`
//! (one element): `user.address.city`, `items[].id`, `data.items[0]`. A path that
//! does not fit the answer (a key of a string, `[]` of an object) matches nothing.

use serde_json::{Map, Value};

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

    /// The answer shaped by every rule, in order.
    pub fn apply(&self, value: Value) -> Value {
        let mut value = if self.target.is_empty() {
            value
        } else {
            pick(value, self.target)
        };
        if self.flatten {
            value = flatten(value);
        }
        let mut value = apply(value, self.fields, self.deny);
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
/// in every element. Where the path leads nowhere: `null`.
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

/// The answer with only the `fields` paths (all of it when there are none), less
/// the `deny` paths.
fn apply(value: Value, fields: &[&[Step]], deny: &[&[Step]]) -> Value {
    let mut value = if fields.is_empty() {
        value
    } else {
        keep(value, fields)
    };
    for path in deny {
        remove(&mut value, path);
    }
    value
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
            rules.apply(answer.clone()),
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
        assert_eq!(first.apply(answer.clone()), json!({"order_id": 1}));
        const NINTH: &[Step] = &[Step::Key("data"), Step::Key("orders"), Step::Index(9)];
        let missing = Rules {
            target: NINTH,
            ..first
        };
        assert_eq!(missing.apply(answer), Value::Null);
    }

    #[test]
    fn paths_that_do_not_fit_match_nothing() {
        let wrong: &[Step] = &[Step::Key("name"), Step::Key("first")];
        assert_eq!(apply(answer(), &[wrong], &[]), json!({"name": null}));
        assert_eq!(apply(json!([1, 2]), &[NAME], &[]), json!([]));
        assert_eq!(apply(json!("text"), &[], &[NAME]), json!("text"));
    }
}
