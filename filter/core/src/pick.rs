//! Reads the handful of fields the gateway acts on from a JSON object, keeping their raw
//! text and skipping everything else, without building a full `serde_json::Value` tree.
//!
//! Duplicate keys matter here: JSON parsers disagree on which copy wins (serde_json and
//! Python keep the last, others the first), so a body with two `method` keys could be
//! labelled as one call and executed as another. Duplicates of a picked key are
//! therefore recorded and the request is refused by the caller.

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::fmt;

/// What kind of JSON value was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Object,
    Array,
    Other,
}

/// The raw values of the wanted keys, in the order the keys were given.
#[derive(Debug)]
pub struct Picked<'a, const N: usize> {
    pub shape: Shape,
    pub values: [Option<&'a RawValue>; N],
    /// The first wanted key that appeared more than once.
    pub duplicate: Option<&'static str>,
}

/// Parses `input` as one JSON value (trailing data is an error) and picks `keys`.
pub fn pick<'a, const N: usize>(
    input: &'a [u8],
    keys: &'static [&'static str; N],
) -> Result<Picked<'a, N>, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(input);
    let picked = PickSeed { keys }.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(picked)
}

struct PickSeed<const N: usize> {
    keys: &'static [&'static str; N],
}

impl<'de, const N: usize> DeserializeSeed<'de> for PickSeed<N> {
    type Value = Picked<'de, N>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, const N: usize> Visitor<'de> for PickSeed<N> {
    type Value = Picked<'de, N>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut values = [None; N];
        let mut duplicate = None;
        while let Some(slot) = map.next_key_seed(KeySeed { keys: self.keys })? {
            match slot {
                Some(index) => {
                    let value: &'de RawValue = map.next_value()?;
                    match values.get_mut(index) {
                        Some(Some(_)) => duplicate = duplicate.or(self.keys.get(index).copied()),
                        Some(slot) => *slot = Some(value),
                        None => {}
                    }
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Picked {
            shape: Shape::Object,
            values,
            duplicate,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(self.other(Shape::Array))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(self.other(Shape::Other))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(self.other(Shape::Other))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(self.other(Shape::Other))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(self.other(Shape::Other))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(self.other(Shape::Other))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(self.other(Shape::Other))
    }
}

impl<const N: usize> PickSeed<N> {
    fn other<'a>(&self, shape: Shape) -> Picked<'a, N> {
        Picked {
            shape,
            values: [None; N],
            duplicate: None,
        }
    }
}

/// Maps an object key to its index among the wanted keys. serde_json hands us the key
/// with escapes already decoded, so `"meth\u006fd"` counts as `method`, exactly as the
/// MCP server's parser will see it.
struct KeySeed<const N: usize> {
    keys: &'static [&'static str; N],
}

impl<'de, const N: usize> DeserializeSeed<'de> for KeySeed<N> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, const N: usize> Visitor<'de> for KeySeed<N> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.keys.iter().position(|wanted| *wanted == key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: [&str; 2] = ["method", "id"];

    #[test]
    fn picks_raw_values_and_skips_the_rest() {
        let picked = pick(br#"{"id": 7, "x": {"method": 1}, "method": "a\/b"}"#, &KEYS).unwrap();
        assert_eq!(picked.shape, Shape::Object);
        assert_eq!(picked.values[0].unwrap().get(), r#""a\/b""#);
        assert_eq!(picked.values[1].unwrap().get(), "7");
        assert_eq!(picked.duplicate, None);
    }

    #[test]
    fn duplicates_are_reported_even_when_escaped() {
        let picked = pick(br#"{"method":"a","meth\u006fd":"b"}"#, &KEYS).unwrap();
        assert_eq!(picked.duplicate, Some("method"));
        assert_eq!(picked.values[0].unwrap().get(), r#""a""#);
    }

    #[test]
    fn shapes_of_non_objects() {
        assert_eq!(pick(b"[1,{}]", &KEYS).unwrap().shape, Shape::Array);
        for input in [&b"1"[..], b"\"s\"", b"null", b"true", b"-1.5"] {
            assert_eq!(pick(input, &KEYS).unwrap().shape, Shape::Other);
        }
    }

    #[test]
    fn syntax_errors_and_trailing_data_fail() {
        for input in [&b""[..], b"{", b"{} {}", b"{\"a\":}", b"\xef\xbb\xbf{}"] {
            assert!(pick(input, &KEYS).is_err(), "{input:?}");
        }
    }
}
