//! Field rules applied to the text (`Rules::shape`, which copies what the rules keep
//! as written) against the same rules applied while parsing into a tree
//! (`Rules::shape_tree`), for a set of rules that covers `target` (keys, `[N]`, `[]`),
//! `fields`, `deny`, both together, and `group`. Where the tree takes the text, the
//! shaped text must read as the tree; where the text is not JSON, both must refuse it;
//! JSON that `Value` cannot hold (numbers past `f64`, lone surrogates, depth past 128)
//! must still shape into JSON. `text::find`, which finds the value another call uses,
//! is held to `Value::get` along the same path, and `text::members_of`, which lists an
//! answer's members for a flat merge, to the tree's map (a repeated name's last).

#![no_main]

use gateway_runtime::transform::shape::{Rules, Step};
use gateway_runtime::transform::text::{find, members_of};
use gateway_runtime::transform::validate::is_json;
use libfuzzer_sys::fuzz_target;
use serde::de::IgnoredAny;
use serde_json::Value;

const A: Step = Step::Key("a");
const B: Step = Step::Key("b");
const C: Step = Step::Key("c");

const fn rules(
    target: &'static [Step],
    fields: &'static [&'static [Step]],
    deny: &'static [&'static [Step]],
    group: Option<&'static str>,
) -> Rules {
    Rules {
        target,
        fields,
        deny,
        rename: &[],
        flatten: false,
        group,
    }
}

const RULES: &[Rules] = &[
    rules(&[], &[&[A], &[B, C], &[C, Step::Each, A]], &[], None),
    rules(
        &[],
        &[],
        &[&[A], &[B, Step::Each, C], &[C, Step::Each]],
        None,
    ),
    rules(&[A, Step::Each], &[&[B], &[C, A]], &[], Some("g")),
    rules(&[A, Step::Index(1)], &[], &[&[B, C]], None),
    rules(
        &[],
        &[&[A, Step::Each, B], &[A, Step::Each, C]],
        &[&[A, Step::Each, C, A], &[A, Step::Each, B]],
        None,
    ),
    rules(
        &[Step::Each, B],
        &[&[Step::Each], &[A]],
        &[&[Step::Each, Step::Each]],
        None,
    ),
    rules(&[Step::Index(0)], &[&[]], &[], Some("h")),
];

/// Paths another call may use.
const FOUND: &[&[Step]] = &[&[A], &[A, Step::Index(1)], &[B, C], &[Step::Index(0), A]];

/// What `path` reaches in a tree.
fn at<'v>(value: &'v Value, path: &[Step]) -> Option<&'v Value> {
    path.iter().try_fold(value, |value, step| match step {
        Step::Key(key) => value.get(*key),
        Step::Index(i) => value.get(*i),
        Step::Each => None,
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(tree) = serde_json::from_slice::<Value>(data) {
        for path in FOUND {
            let found = find(data, path).map(|span| {
                serde_json::from_slice::<Value>(&data[span]).expect("a found part reads")
            });
            assert_eq!(
                found.as_ref(),
                at(&tree, path),
                "{:?} at {path:?}",
                String::from_utf8_lossy(data)
            );
        }
        let listed = members_of(data).map(|members| {
            let map: serde_json::Map<String, Value> = members
                .into_iter()
                .map(|(name, span)| {
                    let value = serde_json::from_slice(&data[span]).expect("a member reads");
                    (name.into_owned(), value)
                })
                .collect();
            Value::Object(map)
        });
        let object = tree.is_object().then_some(&tree);
        assert_eq!(
            listed.as_ref(),
            object,
            "{:?}",
            String::from_utf8_lossy(data)
        );
    }
    let json =
        serde_json::from_slice::<IgnoredAny>(data).is_ok() && std::str::from_utf8(data).is_ok();
    for rules in RULES {
        let text = rules.shape(data);
        let shown = String::from_utf8_lossy(data);
        if !json {
            assert!(text.is_none(), "{shown:?} is not JSON but was shaped");
            continue;
        }
        let text = text.unwrap_or_else(|| panic!("{shown:?} is JSON but was refused"));
        assert!(
            is_json(&text),
            "{shown:?} shaped into {:?}",
            String::from_utf8_lossy(&text)
        );
        if let Ok(tree) = rules.shape_tree(data) {
            // Shaped text holds only what the text it came from held, so `Value` takes
            // it, but for a `group` one level past the depth the tree could take.
            match serde_json::from_slice::<Value>(&text) {
                Ok(read) => assert_eq!(read, tree, "{shown:?} with {rules:?}"),
                Err(e) => assert!(
                    rules.group.is_some() && e.to_string().contains("recursion limit"),
                    "{shown:?} shaped into {:?}: {e}",
                    String::from_utf8_lossy(&text)
                ),
            }
        }
    }
});
