//! `Fields` against a plain list of name-value pairs: after any sequence of appends,
//! sets, removals and renames, both hold the same fields in the same order, and
//! lookups (case-insensitive) agree.

#![no_main]

use arbitrary::Arbitrary;
use gateway_runtime::message::fields::Fields;
use libfuzzer_sys::fuzz_target;

/// Few names, in both cases, so that operations meet the same fields.
const NAMES: &[&[u8]] = &[b"host", b"Host", b"x-a", b"X-A", b"cookie", b"via"];

#[derive(Debug, Arbitrary)]
enum Op<'a> {
    Append(u8, &'a [u8]),
    Set(u8, &'a [u8]),
    Remove(u8),
    Rename(u8, u8),
}

fn name(i: u8) -> &'static [u8] {
    NAMES[usize::from(i) % NAMES.len()]
}

/// A field value as `Fields` takes it: no CR, LF or NUL, no whitespace at its ends.
fn value(bytes: &[u8]) -> Vec<u8> {
    bytes
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n' && b != 0 && (b >= 0x20 || b == b'\t') && b != 0x7f)
        .collect::<Vec<u8>>()
        .trim_ascii()
        .to_vec()
}

fuzz_target!(|ops: Vec<Op<'_>>| {
    let mut fields = Fields::with_capacity(4, 64);
    let mut model: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for op in ops.iter().take(64) {
        match *op {
            Op::Append(n, v) => {
                let v = value(v);
                fields.append(name(n), &v);
                model.push((name(n).to_vec(), v));
            }
            Op::Set(n, v) => {
                let v = value(v);
                fields.set(name(n), &v);
                model.retain(|(m, _)| !m.eq_ignore_ascii_case(name(n)));
                model.push((name(n).to_vec(), v));
            }
            Op::Remove(n) => {
                fields.remove(name(n));
                model.retain(|(m, _)| !m.eq_ignore_ascii_case(name(n)));
            }
            Op::Rename(from, to) => {
                fields.rename(name(from), name(to));
                for (m, _) in &mut model {
                    if m.eq_ignore_ascii_case(name(from)) {
                        *m = name(to).to_vec();
                    }
                }
            }
        }
        let held: Vec<(Vec<u8>, Vec<u8>)> = fields
            .iter()
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(held, model);
        for n in NAMES {
            let got: Vec<&[u8]> = fields.get_all(n).collect();
            let want: Vec<&[u8]> = model
                .iter()
                .filter(|(m, _)| m.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.as_slice())
                .collect();
            assert_eq!(got, want);
        }
    }
});
