//! The response readers: a JSON body and a `text/event-stream`, fed in chunks.
//!
//! Input: the first byte picks the reader (even: JSON, odd: SSE), the next two pick
//! where the body is split; the rest is the body. Whatever the split, and byte by
//! byte, a reader must report exactly what it reports for the whole body at once.

use mcp_filter_core::reply_scan::{ReplyScanner, Summary};
use mcp_filter_core::sse::SseReader;

pub fn run(data: &[u8]) {
    let [kind, a, b, body @ ..] = data else {
        return;
    };
    let split = (usize::from(*a) << 8 | usize::from(*b)) % (body.len() + 1);
    let (left, right) = body.split_at(split);
    if kind % 2 == 0 {
        let whole = json(&[body]);
        assert_eq!(whole, json(&[left, right]), "split at {split}");
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(whole, json(&bytes), "byte by byte");
    } else {
        let whole = sse(&[body]);
        assert_eq!(whole, sse(&[left, right]), "split at {split}");
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(whole, sse(&bytes), "byte by byte");
    }
}

fn json(chunks: &[&[u8]]) -> Summary {
    let mut scanner = ReplyScanner::default();
    for chunk in chunks {
        scanner.feed(chunk);
    }
    scanner.finish()
}

fn sse(chunks: &[&[u8]]) -> Vec<Summary> {
    let mut reader = SseReader::default();
    let mut events = Vec::new();
    for chunk in chunks {
        reader.feed(chunk, &mut |summary| events.push(summary));
    }
    events
}
