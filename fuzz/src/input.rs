//! The text form of a fuzzed HTTP request, so that seeds can be written by hand:
//!
//! ```text
//! mcp-method: tools/call        <- header lines `name: value` (optional)
//!                               <- an empty line ends the head
//! {"jsonrpc":"2.0",...}         <- the body (the whole input when there is no head)
//! ```
//!
//! `:method` and `:path` default to `POST` and `/mcp`. Names are lower-cased, as
//! Envoy hands them to filters; values stay raw bytes.

/// A parsed fuzz request.
pub struct FuzzRequest<'a> {
    pub headers: Vec<(String, &'a [u8])>,
    pub body: &'a [u8],
}

impl<'a> FuzzRequest<'a> {
    pub fn parse(data: &'a [u8]) -> FuzzRequest<'a> {
        let (head, body) = match find(data, b"\n\n") {
            Some(at) => (&data[..at], &data[at + 2..]),
            None => (&data[..0], data),
        };
        let mut headers: Vec<(String, &[u8])> = Vec::new();
        for line in head.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            // Pseudo-headers start with ':', so the separator is the first ": ".
            let (name, value) = match find(line, b": ") {
                Some(at) => (&line[..at], &line[at + 2..]),
                None => (line, &line[..0]),
            };
            headers.push((String::from_utf8_lossy(name).to_ascii_lowercase(), value));
        }
        for (name, default) in [(":method", "POST"), (":path", "/mcp")] {
            if !headers.iter().any(|(n, _)| n == name) {
                headers.insert(0, (name.to_owned(), default.as_bytes()));
            }
        }
        FuzzRequest { headers, body }
    }

    /// The headers as the core's `RequestHead::from_headers` takes them.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers.iter().map(|(n, v)| (n.as_str(), *v))
    }
}

/// Where `needle` first occurs in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_and_body() {
        let request = FuzzRequest::parse(b"Mcp-Name: a: b\n:method: PUT\n\n{}");
        assert_eq!(request.body, b"{}");
        let pairs: Vec<_> = request.pairs().collect();
        assert_eq!(
            pairs,
            [
                (":path", &b"/mcp"[..]),
                ("mcp-name", b"a: b"),
                (":method", b"PUT")
            ]
        );
    }

    #[test]
    fn whole_input_is_the_body_without_a_head() {
        let request = FuzzRequest::parse(b"{\"a\":1}");
        assert_eq!(request.body, b"{\"a\":1}");
        assert_eq!(request.headers.len(), 2);
    }
}
