//! The proxy-wasm ABI's header map encoding (proxy-wasm spec, "Header maps"):
//! a little-endian `u32` pair count, then a `u32` key length and `u32` value length per
//! pair, then each key and value followed by a NUL byte.
//!
//! The SDK has this code too, but it indexes and `unwrap()`s; a malformed buffer from
//! the host must give an error here, never a panic that kills the worker's VM.

/// Decodes a serialized header map. `None` if the buffer is malformed.
pub fn parse_pairs(bytes: &[u8]) -> Option<Vec<(&str, &[u8])>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let read_u32 = |at: usize| -> Option<usize> {
        let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(raw)).ok()
    };
    let count = read_u32(0)?;
    let mut data = count.checked_mul(8)?.checked_add(4)?;
    let mut pairs = Vec::with_capacity(count.min(bytes.len() / 10));
    for index in 0..count {
        let sizes = 4 + index * 8;
        let (key_len, value_len) = (read_u32(sizes)?, read_u32(sizes + 4)?);
        let (key, next) = terminated(bytes, data, key_len)?;
        let (value, next) = terminated(bytes, next, value_len)?;
        data = next;
        // Header names are HTTP tokens (ASCII); anything else is a host bug.
        pairs.push((std::str::from_utf8(key).ok()?, value));
    }
    Some(pairs)
}

/// `len` bytes at `at` followed by a NUL; returns them and the offset after the NUL.
fn terminated(bytes: &[u8], at: usize, len: usize) -> Option<(&[u8], usize)> {
    let end = at.checked_add(len)?;
    let text = bytes.get(at..end)?;
    (*bytes.get(end)? == 0).then_some((text, end + 1))
}

/// Encodes header pairs for `proxy_send_local_response` (names and values as bytes,
/// so tests can encode values that are not UTF-8).
pub fn serialize_pairs<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Vec<u8> {
    let size = 4 + pairs
        .iter()
        .map(|(k, v)| k.as_ref().len() + v.as_ref().len() + 10)
        .sum::<usize>();
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (key, value) in pairs {
        bytes.extend_from_slice(&(key.as_ref().len() as u32).to_le_bytes());
        bytes.extend_from_slice(&(value.as_ref().len() as u32).to_le_bytes());
    }
    for (key, value) in pairs {
        bytes.extend_from_slice(key.as_ref());
        bytes.push(0);
        bytes.extend_from_slice(value.as_ref());
        bytes.push(0);
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let pairs = [(":path", "/mcp"), ("x-mcp-tool-name", "add"), ("empty", "")];
        let bytes = serialize_pairs(&pairs);
        let parsed = parse_pairs(&bytes).unwrap();
        let expected: Vec<(&str, &[u8])> = pairs.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
        assert_eq!(parsed, expected);
    }

    #[test]
    fn empty_buffer_is_an_empty_map() {
        assert_eq!(parse_pairs(&[]).unwrap(), vec![]);
    }

    #[test]
    fn malformed_buffers_are_errors_not_panics() {
        let good = serialize_pairs(&[("a", "b"), ("cc", "dd")]);
        // Every truncation of a valid buffer is refused.
        for cut in 1..good.len() {
            assert!(parse_pairs(&good[..cut]).is_none(), "cut at {cut}");
        }
        // Absurd counts and lengths do not allocate or overflow.
        assert!(parse_pairs(&u32::MAX.to_le_bytes()).is_none());
        let mut lying = good.clone();
        lying[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse_pairs(&lying).is_none());
        // A key that is not UTF-8.
        let mut bad_key = serialize_pairs(&[("k", "v")]);
        let key_at = 4 + 8;
        bad_key[key_at] = 0xff;
        assert!(parse_pairs(&bad_key).is_none());
    }
}
