//! The body decoders: whatever pieces the bytes arrive in, the outcome (data, end
//! reached, or a framing error) is the same as for the bytes in one piece.

#![no_main]

use arbitrary::Arbitrary;
use gateway_runtime::fuzzing::decode_body;
use gateway_runtime::h1::framing::BodyLength;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    length: Option<u16>,
    cuts: Vec<u16>,
    bytes: &'a [u8],
}

fuzz_target!(|input: Input<'_>| {
    let length = match input.length {
        None => BodyLength::Chunked,
        Some(n) => BodyLength::Length(u64::from(n)),
    };
    let mut cuts: Vec<usize> = input.cuts.iter().map(|&c| usize::from(c)).collect();
    cuts.sort_unstable();
    let whole = decode_body(length, input.bytes, &[]);
    let pieces = decode_body(length, input.bytes, &cuts);
    match (&whole, &pieces) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(_), Err(_)) => {}
        _ => panic!("whole: {whole:?}, in pieces: {pieces:?}"),
    }
    if let (Ok((data, _)), BodyLength::Length(n)) = (&whole, length) {
        assert!(data.len() as u64 <= n);
    }
});
