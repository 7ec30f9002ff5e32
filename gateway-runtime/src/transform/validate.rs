//! Whether bytes are one JSON text (RFC 8259), found without building anything.
//!
//! An aggregate passes a backend's answer on as it came, but only once it is known to be
//! JSON: a broken body must fail the call, not make a response that looks whole. No
//! parser offers a check that is cheaper than its parse. serde_json's `IgnoredAny` runs
//! at 1.1 GB/s on the bench's answers, sonic-rs builds a whole tree at 1.7 GB/s and
//! skips at 0.8, simd-json and jiter are slower still (bench/RESULTS.md, aggregation
//! "Sixth run"). This check walks the grammar without allocating and looks at strings
//! eight bytes at a time: 57 µs per 100 KB answer, and no copies or page faults beside
//! it. It accepts exactly what serde_json reads as one value in UTF-8, which a fuzz
//! target holds it to (`fuzz/fuzz_targets/json.rs`); like serde_json's `IgnoredAny`
//! it has no depth limit: its stack is one bit per open container.

/// Whether `bytes` is one JSON value in UTF-8, with optional whitespace around it.
pub fn is_json(bytes: &[u8]) -> bool {
    // Outside strings every valid byte is ASCII, so checking UTF-8 once up front leaves
    // the walk to treat bytes above 0x7f in strings as text.
    std::str::from_utf8(bytes).is_ok()
        && value_end(bytes, skip_space(bytes, 0))
            .is_some_and(|end| skip_space(bytes, end) == bytes.len())
}

/// Where the value that starts at `at` ends, if it is one; its UTF-8 is not checked.
/// Containers are walked with an explicit stack of what they close with, so that
/// nesting costs no recursion. `None` at the first error.
pub(super) fn value_end(bytes: &[u8], mut at: usize) -> Option<usize> {
    let mut open = Open::default();
    'value: loop {
        at = skip_space(bytes, at);
        match *bytes.get(at)? {
            b'"' => at = string_end(bytes, at + 1)?,
            b'{' => {
                at = skip_space(bytes, at + 1);
                if bytes.get(at) == Some(&b'}') {
                    at += 1;
                } else {
                    at = key(bytes, at)?;
                    open.push(true);
                    continue 'value;
                }
            }
            b'[' => {
                at = skip_space(bytes, at + 1);
                if bytes.get(at) == Some(&b']') {
                    at += 1;
                } else {
                    open.push(false);
                    continue 'value;
                }
            }
            b'-' | b'0'..=b'9' => at = number(bytes, at)?,
            b't' => at = literal(bytes, at, b"true")?,
            b'f' => at = literal(bytes, at, b"false")?,
            b'n' => at = literal(bytes, at, b"null")?,
            _ => return None,
        }
        // After a value: a separator and the next value, or the ends of containers.
        loop {
            let Some(object) = open.top() else {
                return Some(at);
            };
            at = skip_space(bytes, at);
            let next = *bytes.get(at)?;
            at += 1;
            if next == b',' {
                if object {
                    at = key(bytes, skip_space(bytes, at))?;
                }
                continue 'value;
            }
            if next != if object { b'}' } else { b']' } {
                return None;
            }
            open.pop();
        }
    }
}

/// [`value_end`], with strings and numbers (most values) walked in line.
#[inline(always)]
pub(super) fn any_end(bytes: &[u8], at: usize) -> Option<usize> {
    match bytes.get(at)? {
        b'"' => string_end(bytes, at + 1),
        b'-' | b'0'..=b'9' => number(bytes, at),
        _ => value_end(bytes, at),
    }
}

/// The containers a walk is in, a bit each (set for an object): the innermost 64 in a
/// word, the rest spilled, so that a walk allocates only past 64 levels.
#[derive(Default)]
struct Open {
    depth: usize,
    word: u64,
    spilled: Vec<u64>,
}

impl Open {
    #[inline(always)]
    fn push(&mut self, object: bool) {
        if self.depth > 0 && self.depth.is_multiple_of(64) {
            self.spilled.push(self.word);
            self.word = 0;
        }
        self.word = self.word << 1 | u64::from(object);
        self.depth += 1;
    }

    #[inline(always)]
    fn pop(&mut self) {
        self.word >>= 1;
        self.depth -= 1;
        if self.depth > 0 && self.depth.is_multiple_of(64) {
            self.word = self.spilled.pop().unwrap_or_default();
        }
    }

    /// Whether the innermost container is an object; `None` outside all.
    #[inline(always)]
    fn top(&self) -> Option<bool> {
        (self.depth > 0).then_some(self.word & 1 == 1)
    }
}

/// The first position from `at` that is not whitespace.
#[inline(always)]
pub(super) fn skip_space(bytes: &[u8], mut at: usize) -> usize {
    while let Some(&byte) = bytes.get(at) {
        if byte > b' ' || !matches!(byte, b' ' | b'\n' | b'\r' | b'\t') {
            break;
        }
        at += 1;
    }
    at
}

/// A member's name and its colon, from the name's quote; where its value starts.
#[inline(always)]
fn key(bytes: &[u8], at: usize) -> Option<usize> {
    if bytes.get(at) != Some(&b'"') {
        return None;
    }
    let at = skip_space(bytes, string_end(bytes, at + 1)?);
    (bytes.get(at) == Some(&b':')).then_some(at + 1)
}

/// A string, from just after its opening quote; where it ends.
#[inline(always)]
pub(super) fn string_end(bytes: &[u8], mut at: usize) -> Option<usize> {
    loop {
        at = plain_run(bytes, at);
        match *bytes.get(at)? {
            b'"' => return Some(at + 1),
            b'\\' => match *bytes.get(at + 1)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => at += 2,
                b'u' => {
                    let hex = bytes.get(at + 2..at + 6)?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return None;
                    }
                    at += 6;
                }
                _ => return None,
            },
            // A control character.
            _ => return None,
        }
    }
}

/// A member's name, from just after its opening quote: where it ends, and whether it
/// has escapes (a name without can be compared as it is written).
#[inline(always)]
pub(super) fn name_end(bytes: &[u8], at: usize) -> Option<(usize, bool)> {
    let run = plain_run(bytes, at);
    if bytes.get(run) == Some(&b'"') {
        return Some((run + 1, false));
    }
    Some((string_end(bytes, run)?, true))
}

/// The first position from `at` that holds a quote, a backslash or a control
/// character (or the end). Eight bytes at a time, by the usual bit tricks on a `u64`.
#[inline(always)]
fn plain_run(bytes: &[u8], mut at: usize) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // A byte's high bit is set here if it is zero; borrows only run upwards, so the
    // lowest flagged byte is exact.
    let zero_in = |w: u64| w.wrapping_sub(ONES) & !w & HIGHS;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        // Bytes below 0x20, by the same trick.
        let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
        let stops = zero_in(word ^ (ONES * u64::from(b'"')))
            | zero_in(word ^ (ONES * u64::from(b'\\')))
            | control;
        if stops != 0 {
            return at + (stops.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while let Some(&byte) = bytes.get(at) {
        if byte == b'"' || byte == b'\\' || byte < 0x20 {
            break;
        }
        at += 1;
    }
    at
}

/// A number, `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`; where it ends.
#[inline(always)]
fn number(bytes: &[u8], mut at: usize) -> Option<usize> {
    if bytes.get(at) == Some(&b'-') {
        at += 1;
    }
    match *bytes.get(at)? {
        b'0' => at += 1,
        b'1'..=b'9' => at = digits(bytes, at + 1),
        _ => return None,
    }
    if bytes.get(at) == Some(&b'.') {
        at = some_digits(bytes, at + 1)?;
    }
    if matches!(bytes.get(at), Some(b'e' | b'E')) {
        at += 1;
        if matches!(bytes.get(at), Some(b'+' | b'-')) {
            at += 1;
        }
        at = some_digits(bytes, at)?;
    }
    Some(at)
}

#[inline(always)]
fn some_digits(bytes: &[u8], from: usize) -> Option<usize> {
    let to = digits(bytes, from);
    (to > from).then_some(to)
}

#[inline(always)]
fn digits(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).is_some_and(u8::is_ascii_digit) {
        at += 1;
    }
    at
}

#[inline(always)]
fn literal(bytes: &[u8], at: usize, word: &[u8]) -> Option<usize> {
    bytes[at..].starts_with(word).then_some(at + word.len())
}

#[cfg(test)]
mod tests {
    use super::is_json;

    #[test]
    fn json_texts_are_accepted() {
        let deep: Vec<u8> = [b'['; 1000].iter().chain(&[b']'; 1000]).copied().collect();
        for good in [
            &b"{}"[..],
            b"[]",
            b" \t\r\n{ } \n",
            b"0",
            b"-0",
            b"-0.5e+10",
            b"1E-2",
            b"123456789012345678901234567890",
            b"1e400",
            b"true",
            b"false",
            b"null",
            b"\"\"",
            b"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\uD800\"",
            "\"é 日本 😀 a longer string than eight bytes\"".as_bytes(),
            b"{\"a\":[1,{\"b\":\"c\"}],\"a\":2}",
            b"[1, \"two\", [3], {\"four\": null}, true]",
            &deep,
        ] {
            assert!(is_json(good), "{:?}", String::from_utf8_lossy(good));
        }
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            &b""[..],
            b"  ",
            b"{",
            b"[",
            b"]",
            b"[1,]",
            b"[,1]",
            b"[1 2]",
            b"{\"a\":}",
            b"{\"a\" 1}",
            b"{\"a\":1,}",
            b"{a:1}",
            b"{1:1}",
            b"{\"a\":1]",
            b"[1}",
            b"{}{}",
            b"{} x",
            b"01",
            b"-",
            b"1.",
            b".5",
            b"1e",
            b"1e+",
            b"+1",
            b"tru",
            b"nul",
            b"truex",
            b"\"abc",
            b"\"a\x01b\"",
            b"\"tab\there\"",
            b"\"\\q\"",
            b"\"\\u12\"",
            b"\"\\u12g4\"",
            b"\"\xff\"",
            b"\xef\xbb\xbf{}",
            b"NaN",
            b"'a'",
        ] {
            assert!(!is_json(bad), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    /// Past 64 levels the walk's stack spills a word: what each level closes with is
    /// still known when the walk comes back up through the word boundary.
    #[test]
    fn deep_mixed_nesting_closes_in_order() {
        for depth in [63, 64, 65, 128, 129, 200] {
            let open = "{\"a\":[".repeat(depth);
            let close = "]}".repeat(depth);
            assert!(is_json(format!("{open}1{close}").as_bytes()), "{depth}");
            // One level's closers swapped, at each level in turn near the boundaries.
            for swapped in [0, 1, 62, 63, 64, 65, depth - 1] {
                if swapped >= depth {
                    continue;
                }
                let mut bad = close.clone().into_bytes();
                bad.swap(2 * swapped, 2 * swapped + 1);
                let bad = [open.as_bytes(), b"1", &bad].concat();
                assert!(!is_json(&bad), "{depth} {swapped}");
            }
        }
    }

    #[test]
    fn a_stop_in_each_lane_of_a_word_is_found() {
        for lane in 0..16 {
            // A quote ends the string early and leaves bytes after the value; a
            // backslash before `y` is a bad escape; control characters are refused.
            for stop in [b'"', b'\\', 0x00, 0x01, 0x1f] {
                let mut text = vec![b'"'];
                text.extend(std::iter::repeat_n(b'x', lane));
                text.push(stop);
                text.extend(b"yyyyyyyyyy\"");
                assert!(!is_json(&text), "lane {lane} stop {stop:#x}");
            }
            let mut text = vec![b'"'];
            text.extend(std::iter::repeat_n(b'x', lane));
            text.extend(b"\\n\xc3\xa9\x7f \"");
            assert!(is_json(&text), "lane {lane}");
        }
    }
}
