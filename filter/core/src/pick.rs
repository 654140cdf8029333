//! Reads the handful of fields the gateway acts on from a JSON object, keeping their raw
//! text and skipping everything else, without building a full `serde_json::Value` tree.
//!
//! Duplicate keys matter here: JSON parsers disagree on which copy wins (serde_json and
//! Python keep the last, others the first), so a body with two `method` keys could be
//! labelled as one call and executed as another. Duplicates of a picked key are
//! therefore recorded and the request is refused by the caller.
//!
//! Key case matters too: Go's `encoding/json` matches object keys to struct fields
//! case-insensitively with Unicode simple case folding (`strings.EqualFold`; the
//! CVE-2026-27896 class in the Go MCP SDK), while the Python and TypeScript SDKs match
//! exactly. A key that is not byte-equal to a wanted key but folds to one (`Name`,
//! `METHOD`, `paramſ` with U+017F) is read by one server and ignored by another, so it
//! is recorded as well and refused by the caller.

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
    /// The first wanted key that also appeared spelled differently but equal under
    /// simple case folding (see [`folds_to`]).
    pub folded: Option<&'static str>,
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
        let mut folded = None;
        while let Some(slot) = map.next_key_seed(KeySeed { keys: self.keys })? {
            match slot {
                Slot::Folded(index) => {
                    folded = folded.or(self.keys.get(index).copied());
                    map.next_value::<IgnoredAny>()?;
                }
                Slot::Wanted(index) => {
                    let value: &'de RawValue = map.next_value()?;
                    match values.get_mut(index) {
                        Some(Some(_)) => duplicate = duplicate.or(self.keys.get(index).copied()),
                        Some(slot) => *slot = Some(value),
                        None => {}
                    }
                }
                Slot::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Picked {
            shape: Shape::Object,
            values,
            duplicate,
            folded,
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
            folded: None,
        }
    }
}

/// What an object key is to the picker.
enum Slot {
    /// Byte-equal to the wanted key at this index.
    Wanted(usize),
    /// Not byte-equal to, but case-folds to, the wanted key at this index.
    Folded(usize),
    Other,
}

/// Maps an object key to its index among the wanted keys. serde_json hands us the key
/// with escapes already decoded, so `"meth\u006fd"` counts as `method`, exactly as the
/// MCP server's parser will see it.
struct KeySeed<const N: usize> {
    keys: &'static [&'static str; N],
}

impl<'de, const N: usize> DeserializeSeed<'de> for KeySeed<N> {
    type Value = Slot;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, const N: usize> Visitor<'de> for KeySeed<N> {
    type Value = Slot;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        if let Some(index) = self.keys.iter().position(|wanted| *wanted == key) {
            return Ok(Slot::Wanted(index));
        }
        Ok(
            match self.keys.iter().position(|wanted| folds_to(key, wanted)) {
                Some(index) => Slot::Folded(index),
                None => Slot::Other,
            },
        )
    }
}

/// True when `key` equals the ASCII key `wanted` under Unicode simple case folding, as
/// Go's `strings.EqualFold` (and so `encoding/json`) compares them.
///
/// Only two non-ASCII characters have an ASCII letter in their simple case folding
/// orbit (Unicode CaseFolding.txt, status C and S): U+017F LATIN SMALL LETTER LONG S
/// (`ſ` ~ `s`) and U+212A KELVIN SIGN (`K` ~ `k`). Every other non-ASCII character
/// folds only to non-ASCII ones, so it can never match a character of an ASCII key.
pub fn folds_to(key: &str, wanted: &str) -> bool {
    let mut wanted = wanted.bytes();
    for c in key.chars() {
        let folded = match c {
            '\u{017f}' => b's',
            '\u{212a}' => b'k',
            c if c.is_ascii() => (c as u8).to_ascii_lowercase(),
            _ => return false,
        };
        match wanted.next() {
            Some(w) if w.to_ascii_lowercase() == folded => {}
            _ => return false,
        }
    }
    wanted.next().is_none()
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
    fn case_fold_variants_are_reported() {
        for input in [
            &br#"{"method":"a","Method":"b"}"#[..],
            br#"{"METHOD":"b"}"#,
            br#"{"id":1,"\u004dethod":"b"}"#,
            br#"{"id":1,"ID":2}"#,
        ] {
            let picked = pick(input, &KEYS).unwrap();
            assert!(
                picked.folded.is_some(),
                "{}",
                String::from_utf8_lossy(input)
            );
            assert_eq!(picked.duplicate, None);
        }
        let picked = pick(br#"{"method":"a","methods":"b","x":1}"#, &KEYS).unwrap();
        assert_eq!(picked.folded, None);
    }

    #[test]
    fn folding_follows_go_equal_fold() {
        let cases = [
            ("params", "params", true),
            ("Params", "params", true),
            ("PARAMS", "params", true),
            ("param\u{017f}", "params", true),
            ("PARAM\u{017f}", "params", true),
            ("\u{212a}ey", "key", true),
            ("\u{212a}EY", "key", true),
            // Turkish dotted/dotless i fold only among themselves in simple folding.
            ("\u{0130}d", "id", false),
            ("\u{0131}d", "id", false),
            // Fullwidth letters are other characters, not case variants.
            ("\u{ff4e}ame", "name", false),
            ("param", "params", false),
            ("paramss", "params", false),
            ("_META", "_meta", true),
            ("-meta", "_meta", false),
            ("", "", true),
        ];
        for (key, wanted, expected) in cases {
            assert_eq!(folds_to(key, wanted), expected, "{key:?} vs {wanted:?}");
        }
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
