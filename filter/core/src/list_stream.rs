//! Holds back a list answer until each message in it is whole, so that
//! [`crate::list_filter`] can rewrite it, and hands on everything else.
//!
//! A JSON answer is one message: it is held whole (up to a bound) and sent at its end.
//! An SSE answer (`text/event-stream`) is sent event by event (WHATWG HTML, "Server-sent
//! events", 9.2.6): only the event being received is held, so notifications before the
//! answer reach the client as they come and memory is bounded by the largest event.
//!
//! Every chunk Envoy hands the filter is replaced by what the client gets for it (often
//! nothing yet), so the bytes are held in the VM, not in Envoy's buffer, and Envoy's
//! buffer limits never turn a large list into Envoy's own 500.

const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// How the answer is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Json,
    Sse,
}

/// What to do with each whole message.
pub trait Answer {
    /// The message to send instead of `data`, or `None` to send it as it is.
    fn message(&mut self, data: &[u8]) -> Option<Vec<u8>>;
    /// A message for the client when the answer is larger than the bound: the rest of
    /// the answer is dropped (it cannot be checked).
    fn too_large(&mut self) -> Vec<u8>;
}

#[derive(Debug)]
pub struct ListStream {
    framing: Framing,
    max_bytes: usize,
    pending: Vec<u8>,
    /// SSE: where in `pending` the search for the end of the event resumes (the start
    /// of the line it is still in).
    scan_from: usize,
    /// Still at the start of the stream (a BOM may come).
    at_start: bool,
    /// Over the bound: everything else is dropped.
    dropping: bool,
}

impl ListStream {
    pub fn new(framing: Framing, max_bytes: usize) -> ListStream {
        ListStream {
            framing,
            max_bytes,
            pending: Vec::new(),
            scan_from: 0,
            at_start: true,
            dropping: false,
        }
    }

    /// Takes the next chunk; returns the bytes the client gets in its place.
    pub fn feed(&mut self, chunk: &[u8], end: bool, answer: &mut impl Answer) -> Vec<u8> {
        if self.dropping {
            return Vec::new();
        }
        let mut out = Vec::new();
        self.pending.extend_from_slice(chunk);
        if self.framing == Framing::Sse && self.at_start {
            if self.pending.len() < BOM.len() && BOM.starts_with(&self.pending) && !end {
                return out;
            }
            if self.pending.starts_with(&BOM) {
                out.extend_from_slice(&BOM);
                self.pending.drain(..BOM.len());
            }
            self.at_start = false;
        }
        match self.framing {
            Framing::Json => {
                if self.pending.len() > self.max_bytes {
                    return self.give_up(answer, out);
                }
                if end {
                    let body = std::mem::take(&mut self.pending);
                    match answer.message(&body) {
                        Some(new) => out.extend_from_slice(&new),
                        None => out.extend_from_slice(&body),
                    }
                }
            }
            Framing::Sse => {
                let mut start = 0;
                let mut from = std::mem::take(&mut self.scan_from);
                loop {
                    let len = match event_len(&self.pending[start..], from, end) {
                        Ok(len) => len,
                        Err(line) => {
                            self.scan_from = line;
                            break;
                        }
                    };
                    from = 0;
                    // The bound is per event, so the outcome does not depend on how
                    // the stream was cut into chunks.
                    if len > self.max_bytes {
                        return self.give_up(answer, out);
                    }
                    let event = &self.pending[start..start + len];
                    write_event(&mut out, event, answer);
                    start += len;
                }
                self.pending.drain(..start);
                if self.pending.len() > self.max_bytes {
                    return self.give_up(answer, out);
                }
                if end && !self.pending.is_empty() {
                    // An event cut off by the end of the stream: strict clients drop
                    // it, lenient ones may not, so it is checked like any other.
                    let event = std::mem::take(&mut self.pending);
                    self.scan_from = 0;
                    write_event(&mut out, &event, answer);
                }
            }
        }
        out
    }

    fn give_up(&mut self, answer: &mut impl Answer, mut out: Vec<u8>) -> Vec<u8> {
        self.dropping = true;
        self.pending = Vec::new();
        let message = answer.too_large();
        match self.framing {
            Framing::Json => out.extend_from_slice(&message),
            Framing::Sse => push_data_event(&mut out, &[], &message),
        }
        out
    }
}

/// The length of the first whole event in `buf` (up to and including the empty line
/// that ends it): `Ok(len)`; else `Err(line)`, the start of the line the event is still
/// in, where the next search may resume (`from`, a line start with no empty line
/// before it), so a large event arriving in many chunks is scanned once, not once per
/// chunk. A CR at the very end may be the first half of a CRLF, so it ends a line only
/// at the end of the stream.
fn event_len(buf: &[u8], from: usize, at_end: bool) -> Result<usize, usize> {
    let mut line_start = from;
    let mut i = from;
    loop {
        let Some(offset) = buf
            .get(i..)
            .and_then(|rest| memchr::memchr2(b'\r', b'\n', rest))
        else {
            return Err(line_start);
        };
        let p = i + offset;
        let terminator = match (buf.get(p), buf.get(p + 1)) {
            (Some(b'\r'), Some(b'\n')) => 2,
            (Some(b'\r'), None) if !at_end => return Err(line_start),
            _ => 1,
        };
        if p == line_start {
            return Ok(p + terminator);
        }
        i = p + terminator;
        line_start = i;
    }
}

/// The lines of an event, without their terminators.
fn lines(event: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut rest = event;
    while !rest.is_empty() {
        match rest.iter().position(|b| *b == b'\r' || *b == b'\n') {
            Some(p) => {
                lines.push(&rest[..p]);
                let skip = if rest[p] == b'\r' && rest.get(p + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                rest = &rest[p + skip..];
            }
            None => {
                lines.push(rest);
                rest = &[];
            }
        }
    }
    lines
}

/// The value of a `data` line (one space after the colon is dropped), if it is one.
fn data_value(line: &[u8]) -> Option<&[u8]> {
    if line == b"data" {
        return Some(&[]);
    }
    let value = line.strip_prefix(b"data:")?;
    Some(value.strip_prefix(b" ").unwrap_or(value))
}

fn write_event(out: &mut Vec<u8>, event: &[u8], answer: &mut impl Answer) {
    let lines = lines(event);
    let data: Vec<&[u8]> = lines.iter().filter_map(|l| data_value(l)).collect();
    if data.is_empty() {
        out.extend_from_slice(event);
        return;
    }
    let joined = data.join(&b'\n');
    match answer.message(&joined) {
        None => out.extend_from_slice(event),
        Some(new) => {
            let others: Vec<&[u8]> = lines
                .into_iter()
                .filter(|l| !l.is_empty() && data_value(l).is_none())
                .collect();
            push_data_event(out, &others, &new);
        }
    }
}

/// An event with the given other fields (`event:`, `id:`, comments) and one `data`
/// line. A line break inside the message can only be JSON whitespace (JSON strings
/// hold none raw), so it becomes a space.
fn push_data_event(out: &mut Vec<u8>, others: &[&[u8]], message: &[u8]) {
    for line in others {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    out.extend(
        message
            .iter()
            .map(|b| if *b == b'\r' || *b == b'\n' { b' ' } else { *b }),
    );
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upper-cases messages that contain "answer", and counts what it saw.
    #[derive(Default)]
    struct Upper {
        seen: Vec<Vec<u8>>,
    }

    impl Answer for Upper {
        fn message(&mut self, data: &[u8]) -> Option<Vec<u8>> {
            self.seen.push(data.to_vec());
            let text = String::from_utf8_lossy(data);
            text.contains("answer")
                .then(|| text.to_uppercase().into_bytes())
        }
        fn too_large(&mut self) -> Vec<u8> {
            b"TOO LARGE".to_vec()
        }
    }

    fn run(framing: Framing, chunks: &[&[u8]], max: usize) -> (Vec<u8>, Upper) {
        let mut stream = ListStream::new(framing, max);
        let mut answer = Upper::default();
        let mut out = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            out.extend(stream.feed(chunk, i + 1 == chunks.len(), &mut answer));
        }
        (out, answer)
    }

    #[test]
    fn json_is_held_to_its_end() {
        let mut stream = ListStream::new(Framing::Json, 100);
        let mut answer = Upper::default();
        assert!(stream.feed(b"{\"answer\":", false, &mut answer).is_empty());
        assert_eq!(stream.feed(b"1}", true, &mut answer), b"{\"ANSWER\":1}");
        let (out, _) = run(Framing::Json, &[b"{\"other\":", b"1}"], 100);
        assert_eq!(out, b"{\"other\":1}");
    }

    #[test]
    fn sse_events_pass_as_they_complete_and_the_answer_is_rewritten() {
        let (out, answer) = run(
            Framing::Sse,
            &[
                b"event: message\ndata: {\"note\":1}\n\n: comment\n\nid: 7\nda",
                b"ta: {\"answer\":\r\ndata: 2}\r\n\r\n",
                b"",
            ],
            1000,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "event: message\ndata: {\"note\":1}\n\n: comment\n\nid: 7\ndata: {\"ANSWER\": 2}\n\n"
        );
        assert_eq!(
            answer.seen,
            [b"{\"note\":1}".to_vec(), b"{\"answer\":\n2}".to_vec()]
        );
    }

    #[test]
    fn a_cr_at_the_end_of_a_chunk_waits_for_the_next() {
        let (out, answer) = run(
            Framing::Sse,
            &[b"data: answer\r", b"\n\r", b"\ndata: x\n\n"],
            1000,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "data: ANSWER\n\ndata: x\n\n"
        );
        assert_eq!(answer.seen.len(), 2);
    }

    #[test]
    fn an_event_cut_off_at_the_end_is_still_checked() {
        let (out, _) = run(Framing::Sse, &[b"data: answer"], 1000);
        assert_eq!(out, b"data: ANSWER\n\n");
        let (out, _) = run(Framing::Sse, &[b"\xEF\xBB\xBFdata: answer\n\n"], 1000);
        assert_eq!(out, b"\xEF\xBB\xBFdata: ANSWER\n\n");
    }

    #[test]
    fn too_large_gives_up_and_drops_the_rest() {
        let (out, _) = run(Framing::Json, &[b"{\"answer\":\"0123456789\"", b"}"], 10);
        assert_eq!(out, b"TOO LARGE");
        let (out, _) = run(
            Framing::Sse,
            &[
                b"data: {\"n\":1}\n\ndata: 0123456789",
                b"0123456789\n\n",
                b"data: answer\n\n",
            ],
            16,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "data: {\"n\":1}\n\ndata: TOO LARGE\n\n"
        );
    }
}
