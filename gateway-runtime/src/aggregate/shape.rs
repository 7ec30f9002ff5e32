//! Field rules on a JSON answer: `fields` keeps only the paths it lists, `deny`
//! removes paths. A path is object keys and `[]` (every element of an array):
//! `user.address.city`, `items[].id`. A path that does not fit the answer (a key of
//! a string, `[]` of an object) matches nothing.

use serde_json::{Map, Value};

/// One step of a compiled path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Key(&'static str),
    /// Every element of an array.
    Each,
}

/// The answer with only the `fields` paths (all of it when there are none), less
/// the `deny` paths.
pub fn apply(value: Value, fields: &[&[Step]], deny: &[&[Step]]) -> Value {
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
    fn paths_that_do_not_fit_match_nothing() {
        let wrong: &[Step] = &[Step::Key("name"), Step::Key("first")];
        assert_eq!(apply(answer(), &[wrong], &[]), json!({"name": null}));
        assert_eq!(apply(json!([1, 2]), &[NAME], &[]), json!([]));
        assert_eq!(apply(json!("text"), &[], &[NAME]), json!("text"));
    }
}
