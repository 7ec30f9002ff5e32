//! `target`, `fields`, `deny` and `group` applied to the JSON text itself: a body is
//! walked once, as `validate` walks it, and what the rules keep is copied as the
//! backend wrote it. No tree is built, so a rule costs about what checking the answer
//! costs, where parsing into `serde_json::Value` allocates for every member kept.
//!
//! The result reads as `shape`'s tree model of the same rules gives (a test and the
//! `shape` fuzz target hold it to that): members keep the backend's order, and a name
//! the backend repeats is passed on repeated, each shaped alike, so that a reader
//! taking the last (as `Value` does) finds what the model finds. Like an unshaped
//! answer, it takes any JSON: numbers past `f64` and lone surrogates in strings pass
//! through as written.

use std::borrow::Cow;
use std::ops::Range;

use super::shape::{Rules, Step};
use super::validate::{any_end, name_end, skip_space};

/// Whether the text can carry out `rules`: `rename` and `flatten` need the tree, and a
/// list's paths are followed as the bits of a word.
pub(super) fn applies(rules: &Rules) -> bool {
    rules.rename.is_empty() && !rules.flatten && rules.fields.len() <= 64 && rules.deny.len() <= 64
}

/// `json` shaped by `rules` (which [`applies`] accepts); `None` if it is not JSON.
pub(super) fn shape(rules: &Rules, json: &[u8]) -> Option<Vec<u8>> {
    std::str::from_utf8(json).ok()?;
    let mut writer = Writer {
        json,
        out: Vec::with_capacity(json.len() + 16),
        fields: rules.fields,
        deny: rules.deny,
    };
    if let Some(name) = rules.group {
        writer.out.push(b'{');
        // A string always serializes.
        let _ = serde_json::to_writer(&mut writer.out, name);
        writer.out.push(b':');
    }
    let keep = (!rules.fields.is_empty()).then(|| all(rules.fields));
    let end = writer.pick(skip_space(json, 0), rules.target, 0, keep, all(rules.deny))?;
    if skip_space(json, end) != json.len() {
        return None;
    }
    if rules.group.is_some() {
        writer.out.push(b'}');
    }
    let mut out = writer.out;
    if out.capacity() > 2 * out.len() {
        out.shrink_to_fit();
    }
    Some(out)
}

/// Where the value at `path` (keys and `[N]`) lies in `json`, a text already checked
/// to be JSON; `None` where the path leads nowhere. Of a repeated name, the last, as a
/// parsed object keeps it. What a call uses of another's answer is found so, without
/// parsing the answer.
pub fn find(json: &[u8], path: &[Step]) -> Option<Range<usize>> {
    let mut at = skip_space(json, 0);
    for step in path {
        let mut found = None;
        match (step, json.get(at)?) {
            (Step::Key(key), b'{') => members(json, at, |name, value| {
                if is_name(json, &name, key) {
                    found = Some(value);
                }
                any_end(json, value)
            })?,
            (Step::Index(index), b'[') => {
                let mut count = 0;
                elements(json, at, |value| {
                    if count == *index {
                        found = Some(value);
                    }
                    count += 1;
                    any_end(json, value)
                })?
            }
            _ => return None,
        };
        at = found?;
    }
    Some(at..any_end(json, at)?)
}

/// The members of the object `json`, a text already checked to be JSON: each name,
/// escapes read, and where its value lies, in the text's order (a repeated name
/// repeated). `None` if it is not an object, or a name is not text (a lone surrogate).
pub fn members_of(json: &[u8]) -> Option<Vec<(Cow<'_, str>, Range<usize>)>> {
    let at = skip_space(json, 0);
    if json.get(at) != Some(&b'{') {
        return None;
    }
    let mut all = Vec::new();
    members(json, at, |name, value| {
        let quoted = &json[name.quoted];
        let name = if name.escaped {
            Cow::Owned(serde_json::from_slice::<String>(quoted).ok()?)
        } else {
            Cow::Borrowed(std::str::from_utf8(&quoted[1..quoted.len() - 1]).ok()?)
        };
        let end = any_end(json, value)?;
        all.push((name, value..end));
        Some(end)
    })?;
    Some(all)
}

/// Which paths of a list are still followed, a bit each; all of them go one step
/// deeper with each level of the answer.
type Paths = u64;

fn all(list: &[&[Step]]) -> Paths {
    match list.len() {
        64 => Paths::MAX,
        n => (1 << n) - 1,
    }
}

struct Writer<'a> {
    json: &'a [u8],
    out: Vec<u8>,
    fields: &'static [&'static [Step]],
    deny: &'static [&'static [Step]],
}

impl Writer<'_> {
    /// Writes what `target` reaches of the value at `at` (`null` where it leads
    /// nowhere), shaped by the `fields` paths in `keep` and the `deny` paths in `deny`,
    /// `depth` levels under what the target picks; where the value ends. A `[]` in the
    /// target makes an array of what the rest reaches in each element, one level for
    /// the rules.
    fn pick(
        &mut self,
        at: usize,
        target: &[Step],
        depth: usize,
        keep: Option<Paths>,
        deny: Paths,
    ) -> Option<usize> {
        let Some((step, rest)) = target.split_first() else {
            return self.value(at, depth, keep, deny);
        };
        let json = self.json;
        match (step, json.get(at)) {
            (Step::Key(key), Some(b'{')) => {
                // A repeated name: the last, as a parsed object keeps it, is written
                // over what an earlier one wrote.
                let from = self.out.len();
                let mut found = false;
                let end = members(json, at, |name, value| {
                    if !is_name(json, &name, key) {
                        return any_end(json, value);
                    }
                    self.out.truncate(from);
                    found = true;
                    self.pick(value, rest, depth, keep, deny)
                })?;
                if !found {
                    self.out.extend_from_slice(b"null");
                }
                Some(end)
            }
            (Step::Index(index), Some(b'[')) => {
                let mut count = 0;
                let end = elements(json, at, |value| {
                    let this = count;
                    count += 1;
                    if this == *index {
                        self.pick(value, rest, depth, keep, deny)
                    } else {
                        any_end(json, value)
                    }
                })?;
                if count <= *index {
                    self.out.extend_from_slice(b"null");
                }
                Some(end)
            }
            (Step::Each, Some(b'[')) => {
                let (keep, deny) = self.here(depth, keep, deny);
                self.array(at, depth, keep, deny, |writer, value, keep, deny| {
                    writer.pick(value, rest, depth + 1, keep, deny)
                })
            }
            _ => {
                let end = any_end(json, at)?;
                self.out.extend_from_slice(b"null");
                Some(end)
            }
        }
    }

    /// The paths that act on a value `depth` levels under the target: a `fields` path
    /// that ends here keeps all of it (`None`); a `deny` path that ends here was the
    /// parent's to act on (at the top, it removes nothing).
    fn here(&self, depth: usize, keep: Option<Paths>, deny: Paths) -> (Option<Paths>, Paths) {
        let keep = keep.filter(|&paths| !ends(self.fields, paths, depth));
        (keep, deny & !ending(self.deny, deny, depth))
    }

    /// Writes the value at `at`, `depth` levels under the target, with what the
    /// `fields` paths in `keep` reach (all of it for `None`) but what the `deny` paths
    /// in `deny` reach; where it ends. A value no path acts on is copied in line; the
    /// walk recurses only while a path goes on, so as deep as the longest path.
    #[inline(always)]
    fn value(
        &mut self,
        at: usize,
        depth: usize,
        keep: Option<Paths>,
        deny: Paths,
    ) -> Option<usize> {
        match self.here(depth, keep, deny) {
            (None, 0) => self.copy(at),
            (keep, deny) => self.cut(at, depth, keep, deny),
        }
    }

    /// [`Writer::value`] for a value some path acts on (`keep` or `deny` as `here`
    /// leaves them).
    fn cut(&mut self, at: usize, depth: usize, keep: Option<Paths>, deny: Paths) -> Option<usize> {
        let json = self.json;
        match json.get(at)? {
            b'{' => {
                self.out.push(b'{');
                let mut first = true;
                let end = members(json, at, |name, value| {
                    let kept = keep.map(|paths| by_name(json, self.fields, paths, depth, &name));
                    let denied = by_name(json, self.deny, deny, depth, &name);
                    if kept == Some(0) || ends(self.deny, denied, depth + 1) {
                        return any_end(json, value);
                    }
                    if !std::mem::take(&mut first) {
                        self.out.push(b',');
                    }
                    self.out.extend_from_slice(&json[name.quoted.clone()]);
                    self.out.push(b':');
                    self.value(value, depth + 1, kept, denied)
                })?;
                self.out.push(b'}');
                Some(end)
            }
            b'[' => self.array(at, depth, keep, deny, |writer, value, keep, deny| {
                writer.value(value, depth + 1, keep, deny)
            }),
            // Keys asked of a scalar reach nothing under it; a deny leaves it be.
            _ => {
                let end = any_end(json, at)?;
                match keep {
                    Some(_) => self.out.extend_from_slice(b"null"),
                    None => self.out.extend_from_slice(&json[at..end]),
                }
                Some(end)
            }
        }
    }

    /// Writes the value at `at` as it is; where it ends.
    #[inline(always)]
    fn copy(&mut self, at: usize) -> Option<usize> {
        let end = any_end(self.json, at)?;
        self.out.extend_from_slice(&self.json[at..end]);
        Some(end)
    }

    /// Writes the array at `at`, `depth` levels under the target, each element by
    /// `element` with the paths that go on into it: `[]` if no `fields` path goes on,
    /// or a `deny` path ends at its elements.
    fn array(
        &mut self,
        at: usize,
        depth: usize,
        keep: Option<Paths>,
        deny: Paths,
        mut element: impl FnMut(&mut Self, usize, Option<Paths>, Paths) -> Option<usize>,
    ) -> Option<usize> {
        let json = self.json;
        let kept = keep.map(|paths| each(self.fields, paths, depth));
        let denied = each(self.deny, deny, depth);
        if kept == Some(0) || ends(self.deny, denied, depth + 1) {
            self.out.extend_from_slice(b"[]");
            return any_end(json, at);
        }
        self.out.push(b'[');
        let mut first = true;
        let end = elements(json, at, |value| {
            if !std::mem::take(&mut first) {
                self.out.push(b',');
            }
            element(self, value, kept, denied)
        })?;
        self.out.push(b']');
        Some(end)
    }
}

/// A member's name in the text.
struct Name {
    /// With its quotes.
    quoted: Range<usize>,
    escaped: bool,
}

/// Calls `member` with each member's name and where its value starts, for the object
/// at `at`; `member` says where the value ends. Where the object ends.
fn members(
    json: &[u8],
    at: usize,
    mut member: impl FnMut(Name, usize) -> Option<usize>,
) -> Option<usize> {
    let mut at = skip_space(json, at + 1);
    if json.get(at) == Some(&b'}') {
        return Some(at + 1);
    }
    loop {
        if json.get(at) != Some(&b'"') {
            return None;
        }
        let (name_end, escaped) = name_end(json, at + 1)?;
        let colon = skip_space(json, name_end);
        if json.get(colon) != Some(&b':') {
            return None;
        }
        let name = Name {
            quoted: at..name_end,
            escaped,
        };
        let end = member(name, skip_space(json, colon + 1))?;
        let next = skip_space(json, end);
        match json.get(next)? {
            b',' => at = skip_space(json, next + 1),
            b'}' => return Some(next + 1),
            _ => return None,
        }
    }
}

/// Calls `element` with where each element of the array at `at` starts; `element`
/// says where it ends. Where the array ends.
fn elements(
    json: &[u8],
    at: usize,
    mut element: impl FnMut(usize) -> Option<usize>,
) -> Option<usize> {
    let mut at = skip_space(json, at + 1);
    if json.get(at) == Some(&b']') {
        return Some(at + 1);
    }
    loop {
        let end = element(at)?;
        let next = skip_space(json, end);
        match json.get(next)? {
            b',' => at = skip_space(json, next + 1),
            b']' => return Some(next + 1),
            _ => return None,
        }
    }
}

/// Whether `name` is `key`, escapes read.
fn is_name(json: &[u8], name: &Name, key: &str) -> bool {
    let quoted = &json[name.quoted.clone()];
    if !name.escaped {
        // Names mostly differ in their first byte, which spares a call to compare them.
        let plain = &quoted[1..quoted.len() - 1];
        let key = key.as_bytes();
        return plain.first() == key.first() && plain == key;
    }
    serde_json::from_slice::<String>(quoted).is_ok_and(|name| name == key)
}

/// The paths of `paths` whose step at `depth` is `name`.
fn by_name(json: &[u8], list: &[&[Step]], paths: Paths, depth: usize, name: &Name) -> Paths {
    select(list, paths, |path| match path.get(depth) {
        Some(Step::Key(key)) => is_name(json, name, key),
        _ => false,
    })
}

/// The paths of `paths` whose step at `depth` is `[]`.
fn each(list: &[&[Step]], paths: Paths, depth: usize) -> Paths {
    select(list, paths, |path| path.get(depth) == Some(&Step::Each))
}

/// The paths of `paths` that end at `depth`.
fn ending(list: &[&[Step]], paths: Paths, depth: usize) -> Paths {
    select(list, paths, |path| path.len() == depth)
}

fn ends(list: &[&[Step]], paths: Paths, depth: usize) -> bool {
    ending(list, paths, depth) != 0
}

/// The paths of `paths` that `fits`.
fn select(list: &[&[Step]], paths: Paths, mut fits: impl FnMut(&[Step]) -> bool) -> Paths {
    let mut kept = 0;
    let mut left = paths;
    while left != 0 {
        let i = left.trailing_zeros() as usize;
        left &= left - 1;
        if fits(list[i]) {
            kept |= 1 << i;
        }
    }
    kept
}
