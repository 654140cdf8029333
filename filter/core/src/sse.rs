//! An incremental `text/event-stream` reader (WHATWG HTML, "Server-sent events",
//! section 9.2.6 "Interpreting an event stream") that hands each event's `data` to a
//! [`ReplyScanner`] as it arrives.
//!
//! MCP servers answer a POST with an SSE stream when they send progress or other
//! messages before the response; such a stream can run for minutes. Nothing here
//! buffers an event or a line: field names are at most a few bytes, and data bytes go
//! straight to the scanner, so memory is constant however long the stream runs.

use crate::reply_scan::{ReplyScanner, Summary};

/// Longest field name kept ("data" is the only one read).
const FIELD_CAP: usize = 8;
const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// At the start of a line.
    Start,
    /// Reading the field name.
    Field,
    /// Just after the colon: one space is dropped.
    AfterColon {
        data: bool,
    },
    Value {
        data: bool,
    },
    /// A comment (`:` first) or a line whose value is not read.
    Ignore,
}

/// The reader for one response stream.
#[derive(Debug)]
pub struct SseReader {
    line: Line,
    field: [u8; FIELD_CAP],
    field_len: usize,
    /// The previous byte was CR: a following LF belongs to the same line end.
    after_cr: bool,
    /// Bytes of a leading BOM matched so far; `None` once past the stream start.
    bom: Option<usize>,
    event_has_data: bool,
    scanner: ReplyScanner,
}

impl Default for SseReader {
    fn default() -> Self {
        SseReader {
            line: Line::Start,
            field: [0; FIELD_CAP],
            field_len: 0,
            after_cr: false,
            bom: Some(0),
            event_has_data: false,
            scanner: ReplyScanner::default(),
        }
    }
}

impl SseReader {
    /// Reads a chunk; `on_message` gets the summary of every event that carried data.
    pub fn feed(&mut self, mut bytes: &[u8], on_message: &mut impl FnMut(Summary)) {
        while let Some((&byte, rest)) = bytes.split_first() {
            bytes = rest;
            if let Some(matched) = self.bom {
                // "One leading U+FEFF BYTE ORDER MARK character must be ignored."
                if BOM.get(matched) == Some(&byte) {
                    self.bom = (matched + 1 < BOM.len()).then_some(matched + 1);
                    continue;
                }
                self.bom = None;
                // A partial BOM was not one: its bytes are ordinary input.
                for &earlier in BOM.iter().take(matched) {
                    self.byte(earlier, on_message);
                }
            }
            self.byte(byte, on_message);
            // The rest of a line's value up to its end goes on in one piece: to the
            // scanner for data, nowhere for other fields and comments.
            if let Line::Value { .. } | Line::Ignore = self.line {
                let end = memchr::memchr2(b'\r', b'\n', bytes).unwrap_or(bytes.len());
                let (value, rest) = bytes.split_at_checked(end).unwrap_or((bytes, &[]));
                if self.line == (Line::Value { data: true }) {
                    self.scanner.feed(value);
                }
                bytes = rest;
            }
        }
    }

    fn byte(&mut self, byte: u8, on_message: &mut impl FnMut(Summary)) {
        if std::mem::take(&mut self.after_cr) && byte == b'\n' {
            return;
        }
        if byte == b'\r' || byte == b'\n' {
            self.after_cr = byte == b'\r';
            self.end_line(on_message);
            return;
        }
        match self.line {
            Line::Start if byte == b':' => self.line = Line::Ignore,
            Line::Start => {
                self.field_len = 0;
                self.push_field(byte);
                self.line = Line::Field;
            }
            Line::Field if byte == b':' => {
                let data = self.is_data_field();
                if data {
                    self.begin_data_line();
                }
                self.line = Line::AfterColon { data };
            }
            Line::Field => self.push_field(byte),
            Line::AfterColon { data } => {
                self.line = Line::Value { data };
                if byte != b' ' && data {
                    self.scanner.feed(&[byte]);
                }
            }
            Line::Value { data: true } => self.scanner.feed(&[byte]),
            Line::Value { data: false } | Line::Ignore => {}
        }
    }

    fn push_field(&mut self, byte: u8) {
        if let Some(slot) = self.field.get_mut(self.field_len) {
            *slot = byte;
        }
        self.field_len = self.field_len.saturating_add(1);
    }

    fn is_data_field(&self) -> bool {
        self.field.get(..self.field_len) == Some(b"data".as_slice())
    }

    /// Data lines of one event are joined with LF.
    fn begin_data_line(&mut self) {
        if self.event_has_data {
            self.scanner.feed(b"\n");
        }
        self.event_has_data = true;
    }

    fn end_line(&mut self, on_message: &mut impl FnMut(Summary)) {
        match self.line {
            // A blank line dispatches the event.
            Line::Start if self.event_has_data => {
                self.event_has_data = false;
                let summary = self.scanner.finish();
                self.scanner = ReplyScanner::default();
                on_message(summary);
            }
            // A line without a colon is a field name with an empty value.
            Line::Field if self.is_data_field() => self.begin_data_line(),
            _ => {}
        }
        self.line = Line::Start;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply_scan::Reply;

    fn read_all(chunks: &[&[u8]]) -> Vec<Summary> {
        let mut reader = SseReader::default();
        let mut out = Vec::new();
        for chunk in chunks {
            reader.feed(chunk, &mut |s| out.push(s));
        }
        out
    }

    const STREAM: &[u8] = b"\xEF\xBB\xBF: keep-alive\r\n\r\n\
event: message\r\nid: 1\r\n\
data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\r\n\
data: \"params\":{\"progress\":1}}\r\n\r\n\
retry: 100\n\
data:{\"jsonrpc\":\"2.0\",\"id\":3,\r\
data:\"result\":{\"isError\":true,\"content\":[{\"type\":\"text\",\"text\":\"data: x\\n\\n\"}]}}\r\r\
data\n\n";

    fn expected() -> Vec<(bool, Option<Reply>)> {
        vec![
            (true, None),
            (false, Some(Reply::Result { is_error: true })),
            (false, None),
        ]
    }

    fn shape(summaries: &[Summary]) -> Vec<(bool, Option<Reply>)> {
        summaries.iter().map(|s| (s.has_method, s.reply)).collect()
    }

    #[test]
    fn events_with_every_line_ending_comments_and_multi_line_data() {
        let events = read_all(&[STREAM]);
        assert_eq!(shape(&events), expected());
        assert_eq!(events[1].id.as_deref(), Some("3"));
        assert_eq!(
            events[1].reply_to(Some("3")),
            Some(Reply::Result { is_error: true })
        );
    }

    #[test]
    fn split_at_every_byte_boundary() {
        for split in 0..=STREAM.len() {
            let events = read_all(&[&STREAM[..split], &STREAM[split..]]);
            assert_eq!(shape(&events), expected(), "split at {split}");
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        let chunks: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(shape(&read_all(&chunks)), expected());
    }

    #[test]
    fn an_event_without_its_blank_line_is_not_dispatched() {
        let events = read_all(&[b"data: {\"id\":1,\"result\":{}}\n"]);
        assert!(events.is_empty(), "the stream ended before the event did");
    }

    #[test]
    fn a_partial_bom_is_data() {
        let events = read_all(&[b"\xEF\xBBdata: {\"id\":1,\"result\":{}}\n\n"]);
        assert!(events.is_empty(), "the field name is not `data`");
        let events = read_all(&[b"\xEF\xBB\xBFdata: {\"id\":1,\"result\":{}}\n\n"]);
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn long_streams_use_constant_memory() {
        let mut reader = SseReader::default();
        let mut count = 0;
        let event = b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1,\"note\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}}\n\n";
        for _ in 0..50_000 {
            reader.feed(event, &mut |_| count += 1);
        }
        let mut long_name = vec![b'x'; 100_000];
        long_name.extend_from_slice(b": y\n\n");
        reader.feed(&long_name, &mut |_| count += 1);
        assert_eq!(count, 50_000);
        assert_eq!(reader.field_len, 100_000, "counted, not stored");
    }
}
