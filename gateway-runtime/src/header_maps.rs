//! Header maps recycled within a worker thread. Every HTTP/1.1 request gets a
//! `HeaderMap`, and allocating and freeing its two tables each time measured about 500
//! instructions per request (when responses had maps too); a map that has been written upstream is cleared (which
//! keeps its tables) and handed to the next request instead.

use std::cell::RefCell;

use http::HeaderMap;

/// Spare maps kept per thread: enough for the requests in flight on one worker.
const MAX_SPARE: usize = 64;
/// Maps grown past this many fields (a client's unusual request) are not kept.
const MAX_KEPT_CAPACITY: usize = 64;

thread_local! {
    static SPARE: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
}

/// An empty map with room for `fields` fields.
pub fn take(fields: usize) -> HeaderMap {
    let mut map = SPARE.with_borrow_mut(Vec::pop).unwrap_or_default();
    map.reserve(fields);
    map
}

/// Takes back a map whose fields are no longer needed.
pub fn give_back(mut map: HeaderMap) {
    if map.capacity() > MAX_KEPT_CAPACITY {
        return;
    }
    map.clear();
    SPARE.with_borrow_mut(|spare| {
        if spare.len() < MAX_SPARE {
            spare.push(map);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A map given back comes out empty, with its capacity.
    #[test]
    fn recycled_maps_are_empty() {
        let mut map = take(4);
        map.insert("x-a", http::HeaderValue::from_static("1"));
        let capacity = map.capacity();
        give_back(map);
        let again = take(1);
        assert!(again.is_empty());
        assert!(again.capacity() >= capacity.min(4));
    }
}
