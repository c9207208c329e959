//! The chunked decoder, fed arbitrary bytes in arbitrary pieces: it must
//! never point outside its input, and one piece or many must agree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway::http::codec::ChunkedDecoder;

/// Decodes `input` cut into pieces of `piece` bytes; the body, or None on
/// a framing error.
fn decode(input: &[u8], piece: usize) -> Option<(Vec<u8>, bool)> {
    let mut decoder = ChunkedDecoder::default();
    let mut body = Vec::new();
    let mut buffered: Vec<u8> = Vec::new();
    for part in input.chunks(piece.max(1)) {
        buffered.extend_from_slice(part);
        loop {
            if decoder.is_done() || buffered.is_empty() {
                break;
            }
            let step = decoder.step(&buffered).ok()?;
            assert!(step.consumed <= buffered.len());
            if let Some((start, len)) = step.data {
                assert!(start + len <= step.consumed);
                body.extend_from_slice(&buffered[start..start + len]);
            }
            if step.consumed == 0 {
                break;
            }
            buffered.drain(..step.consumed);
        }
    }
    Some((body, decoder.is_done()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&piece, input)) = data.split_first() else {
        return;
    };
    let whole = decode(input, input.len());
    let pieces = decode(input, usize::from(piece % 16) + 1);
    if let (Some(a), Some(b)) = (&whole, &pieces) {
        if a.1 && b.1 {
            assert_eq!(a.0, b.0, "the body depends on how the input was cut");
        }
    }
});
