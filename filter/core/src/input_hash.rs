//! `input_hash` of the audit record: the SHA-256 of the RFC 8785 (JSON
//! Canonicalization Scheme) form of `params.arguments`, so that equal inputs hash
//! equal whatever their key order, spacing or escapes, and the raw arguments (user
//! data, credentials) never reach a log.
//!
//! Every forwarded call has one, and it differs whenever a server could read the
//! arguments differently. RFC 8785 reads every number as an IEEE 754 double, which
//! Python (arbitrary integers) does not: 2^53 and 2^53 + 1 would hash equal while the
//! server sees two values. So arguments the canonical form cannot represent
//! faithfully are refused ([`HashError`]), as RFC 7493 (I-JSON, which RFC 8785
//! assumes) tells senders to avoid them: integers beyond +-(2^53 - 1), numbers out
//! of the double range (`1e400`), strings with lone surrogates, and nesting deeper
//! than 128 levels (the parser's recursion limit, which keeps the VM's stack safe).
//!
//! The canonical form is written here rather than with a general JCS crate because it
//! runs on every `tools/call` inside Envoy: `serde_json_canonicalizer` builds a
//! `serde_json::Value` and renders every object member into a buffer of its own
//! before sorting, which made a 16 KiB input cost 0.37 ms natively (BENCHMARKS.md).
//! This version writes the canonical text in the same pass that parses the input.
//! Members are written as they come; only an object whose names arrive out of order
//! (or repeated) has its already written members moved into order, so inputs from
//! serialisers that sort (or happen to be in order) cost no more than a copy. It is
//! checked against that crate on generated inputs in the tests. Numbers use `ryu-js`,
//! the ECMAScript `Number.prototype.toString` algorithm RFC 8785 section 3.2.2.3
//! prescribes.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

/// Largest integer magnitude every JSON parser reads exactly (2^53 - 1, RFC 7493
/// section 2.2).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why arguments have no faithful canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error("integer {0} is beyond +-(2^53 - 1); servers disagree on its value (RFC 7493 section 2.2): send it as a string")]
    UnsafeInteger(String),
    #[error("cannot be read for the audit hash: {0}")]
    Unreadable(String),
}

/// `sha256:` + lower-case hex of the SHA-256 of the canonical JSON of `arguments`.
pub fn input_hash(arguments: &RawValue) -> Result<String, HashError> {
    let canonical = canonical_bytes(arguments)?;
    Ok(format!(
        "sha256:{}",
        hex::encode(Sha256::digest(&canonical))
    ))
}

/// The canonical text itself (for tests and for users checking a hash by hand).
pub fn canonical_json(arguments: &RawValue) -> Result<String, HashError> {
    String::from_utf8(canonical_bytes(arguments)?).map_err(|e| HashError::Unreadable(e.to_string()))
}

fn canonical_bytes(arguments: &RawValue) -> Result<Vec<u8>, HashError> {
    let text = arguments.get();
    // About as long as the input: whitespace and escapes go, `1E30` becomes `1e+30`.
    let mut out = Vec::with_capacity(text.len());
    let mut members = Vec::new();
    let mut large_integral = false;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed = Canonical {
        out: &mut out,
        members: &mut members,
        large_integral: &mut large_integral,
    }
    .deserialize(&mut deserializer)
    .and_then(|()| deserializer.end());
    if let Err(error) = parsed {
        let message = error.to_string();
        // The visitor's own refusal comes back wrapped in serde_json's position text.
        return Err(match message.strip_prefix(UNSAFE_PREFIX) {
            Some(rest) => {
                HashError::UnsafeInteger(rest.split(' ').next().unwrap_or_default().to_owned())
            }
            None => HashError::Unreadable(message),
        });
    }
    // serde_json hands an integer literal beyond the 64-bit range to the visitor as a
    // double, indistinguishable from a float literal such as 1e20. Only then is the
    // text itself looked at, to tell the two apart.
    if large_integral {
        if let Some(literal) = long_integer_literal(text) {
            return Err(HashError::UnsafeInteger(literal.to_owned()));
        }
    }
    Ok(out)
}

const UNSAFE_PREFIX: &str = "unsafe integer ";

/// The first integer literal (no fraction, no exponent) of 19 digits or more outside
/// strings in valid JSON text: one that serde_json may have read as a double.
fn long_integer_literal(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'"' => {
                // Skip the string: to the next quote not escaped by a backslash.
                i += 1;
                while let Some(&b) = bytes.get(i) {
                    match b {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while bytes
                    .get(i)
                    .is_some_and(|b| matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                {
                    i += 1;
                }
                let token = text.get(start..i).unwrap_or_default();
                let digits = token.bytes().filter(u8::is_ascii_digit).count();
                if digits >= 19 && !token.contains(['.', 'e', 'E']) {
                    return Some(token);
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// One object member already written: its name, and where its `"name":value` text
/// lies in the output.
struct Member<'a> {
    name: Cow<'a, str>,
    start: usize,
    end: usize,
}

/// Writes the canonical form of one JSON value while it is parsed. `members` is a
/// stack shared by the nested objects, so parsing allocates nothing per object.
struct Canonical<'o, 'a> {
    out: &'o mut Vec<u8>,
    members: &'o mut Vec<Member<'a>>,
    /// Set when a double of integral value at or past 2^63 was read (see
    /// [`long_integer_literal`]).
    large_integral: &'o mut bool,
}

impl<'de> DeserializeSeed<'de> for Canonical<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Canonical<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.out
            .extend_from_slice(if v { b"true".as_slice() } else { b"false" });
        Ok(())
    }

    // RFC 8785 section 3.2.2.3: every number is an IEEE 754 double, integers too, so
    // only integers a double holds exactly are accepted.
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        if v.unsigned_abs() > MAX_SAFE_INTEGER {
            return Err(E::custom(format!("{UNSAFE_PREFIX}{v}")));
        }
        write_number(v as f64, self.out);
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        if v > MAX_SAFE_INTEGER {
            return Err(E::custom(format!("{UNSAFE_PREFIX}{v}")));
        }
        write_number(v as f64, self.out);
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        if v.fract() == 0.0 && v.abs() >= 9_223_372_036_854_775_808.0 {
            *self.large_integral = true;
        }
        write_number(v, self.out);
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        write_string(v, self.out);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.out.push(b'[');
        let mut first = true;
        loop {
            if !first {
                self.out.push(b',');
            }
            let seed = Canonical {
                out: &mut *self.out,
                members: &mut *self.members,
                large_integral: &mut *self.large_integral,
            };
            if seq.next_element_seed(seed)?.is_none() {
                if !first {
                    // The comma written for an element that did not come.
                    self.out.pop();
                }
                break;
            }
            first = false;
        }
        self.out.push(b']');
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let object_start = self.out.len();
        let base = self.members.len();
        let mut in_order = true;
        self.out.push(b'{');
        while let Some(name) = map.next_key::<Name<'de>>()? {
            if self.members.len() > base {
                self.out.push(b',');
            }
            let start = self.out.len();
            write_string(&name.0, self.out);
            self.out.push(b':');
            map.next_value_seed(Canonical {
                out: &mut *self.out,
                members: &mut *self.members,
                large_integral: &mut *self.large_integral,
            })?;
            if let Some(previous) = self.members.get(base..).and_then(<[_]>::last) {
                in_order &= utf16_order(&previous.name, &name.0) == Ordering::Less;
            }
            let end = self.out.len();
            self.members.push(Member {
                name: name.0,
                start,
                end,
            });
        }
        self.out.push(b'}');
        if !in_order {
            if let Some(members) = self.members.get_mut(base..) {
                reorder(self.out, object_start, members);
            }
        }
        self.members.truncate(base);
        Ok(())
    }
}

/// Rewrites an object written in arrival order with its members sorted by name
/// (RFC 8785 section 3.2.3); of repeated names the last one stays, as serde_json's
/// and JavaScript's parsers keep it (RFC 8785 expects I-JSON, which has none).
fn reorder(out: &mut Vec<u8>, object_start: usize, members: &mut [Member<'_>]) {
    let written = out.split_off(object_start);
    // Stable: equal names keep their arrival order, so the last is the one kept.
    members.sort_by(|a, b| utf16_order(&a.name, &b.name));
    out.push(b'{');
    let mut first = true;
    for (i, member) in members.iter().enumerate() {
        let repeated = members
            .get(i + 1)
            .is_some_and(|next| next.name == member.name);
        if repeated {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        let range =
            member.start.saturating_sub(object_start)..member.end.saturating_sub(object_start);
        out.extend_from_slice(written.get(range).unwrap_or_default());
    }
    out.push(b'}');
}

/// An object member name, borrowed when it has no escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl<'de> Visitor<'de> for NameVisitor {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object member name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

fn write_number(n: f64, out: &mut Vec<u8>) {
    // Integers within 2^53 print as their digits in ECMAScript (and -0 as 0); itoa
    // does that far faster than the general double algorithm.
    if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
        let mut buffer = itoa::Buffer::new();
        out.extend_from_slice(buffer.format(n as i64).as_bytes());
    } else {
        let mut buffer = ryu_js::Buffer::new();
        out.extend_from_slice(buffer.format(n).as_bytes());
    }
}

/// RFC 8785 section 3.2.2.2 (ECMAScript `JSON.stringify` string quoting): only `"`,
/// `\\` and the C0 controls are escaped; \b \t \n \f \r in short form, the rest as
/// `\u00xx` in lower-case hex; everything else is written as UTF-8.
fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let needs_escape = |byte: &u8| *byte < 0x20 || *byte == b'"' || *byte == b'\\';
    let Some(first) = bytes.iter().position(needs_escape) else {
        // The common case: nothing to escape.
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    };
    out.extend_from_slice(bytes.get(..first).unwrap_or_default());
    let mut start = first;
    for (i, &byte) in bytes.iter().enumerate().skip(first) {
        let short = match byte {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x09 => b't',
            0x0a => b'n',
            0x0c => b'f',
            0x0d => b'r',
            0x00..=0x1f => 0,
            _ => continue,
        };
        out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
        start = i + 1;
        if short == 0 {
            // Control characters: two hex digits, both below 0x10.
            out.extend_from_slice(b"\\u00");
            out.push(hex_digit(byte >> 4));
            out.push(hex_digit(byte & 0xf));
        } else {
            out.push(b'\\');
            out.push(short);
        }
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
    out.push(b'"');
}

/// The lower-case hex digit of a value below 16 (RFC 8785 section 3.2.2.2 writes
/// `\u00XX` escapes in lower case).
fn hex_digit(nibble: u8) -> u8 {
    match nibble {
        0..=9 => b'0' + nibble,
        _ => b'a' + (nibble & 0xf) - 10,
    }
}

/// RFC 8785 section 3.2.3: member names sort by their UTF-16 code units. UTF-8 byte
/// order is code point order, which agrees with UTF-16 order except between a
/// character from U+E000 up and one above U+FFFF (a surrogate pair sorts lower). So
/// bytes decide, unless the first difference involves such a lead byte (0xEE or up).
fn utf16_order(a: &str, b: &str) -> Ordering {
    let (x, y) = (a.as_bytes(), b.as_bytes());
    match x.iter().zip(y).position(|(p, q)| p != q) {
        None => x.len().cmp(&y.len()),
        Some(i) => match (x.get(i), y.get(i)) {
            (Some(&p), Some(&q)) if p < 0xee && q < 0xee => p.cmp(&q),
            _ => a.encode_utf16().cmp(b.encode_utf16()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    fn canonical(text: &str) -> String {
        canonical_json(&raw(text)).unwrap()
    }

    #[test]
    fn rfc8785_section_3_2_2_example() {
        let input = r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        assert_eq!(
            canonical(input),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }

    #[test]
    fn keys_sort_by_utf16_code_units_rfc8785_section_3_2_3() {
        // The emoji (surrogates D83D DE00) sorts before U+FB33 in UTF-16 order,
        // though it comes after it by code point.
        let input =
            r#"{"\u20ac":1,"\r":2,"\ufb33":3,"1":4,"\ud83d\ude00":5,"\u0080":6,"\u00f6":7}"#;
        assert_eq!(
            canonical(input),
            "{\"\\r\":2,\"1\":4,\"\u{80}\":6,\"ö\":7,\"€\":1,\"😀\":5,\"\u{fb33}\":3}"
        );
    }

    #[test]
    fn numbers_take_the_ecmascript_form() {
        assert_eq!(
            canonical("[1.0, -0, 1e21, 1e20, 0.1e1, 5E-7, 1.2345678901234568e20]"),
            "[1,0,1e+21,100000000000000000000,1,5e-7,123456789012345680000]"
        );
    }

    #[test]
    fn equal_inputs_hash_equal_whatever_order_spacing_and_escapes() {
        let a = input_hash(&raw(
            r#"{"account":"ACC-1","limit":10,"opts":{"b":true,"a":null}}"#,
        ));
        let b = input_hash(&raw(
            "{ \"opts\" : { \"a\" : null , \"b\" : true } ,\n \"limit\" : 1.0e1, \"\\u0061ccount\": \"ACC\\u002d1\" }",
        ));
        assert_eq!(a, b);
        let c = input_hash(&raw(
            r#"{"account":"ACC-2","limit":10,"opts":{"b":true,"a":null}}"#,
        ));
        assert_ne!(a, c);
    }

    #[test]
    fn hash_is_sha256_of_the_canonical_text() {
        // echo -n '{"a":1}' | sha256sum
        assert_eq!(
            input_hash(&raw(r#"{ "a" : 1 }"#)).unwrap(),
            "sha256:015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862"
        );
    }

    #[test]
    fn duplicate_names_keep_the_last_value() {
        assert_eq!(canonical(r#"{"b":1,"a":2,"b":3}"#), r#"{"a":2,"b":3}"#);
    }

    #[test]
    fn escapes_take_the_ecmascript_form() {
        assert_eq!(
            canonical(r#"["\u0000\u001f\b\t\n\f\r\"\\\/\u007f\u00e9"]"#),
            "[\"\\u0000\\u001f\\b\\t\\n\\f\\r\\\"\\\\/\u{7f}é\"]"
        );
    }

    /// The same canonical text as `serde_json_canonicalizer` (a general RFC 8785
    /// implementation) for generated values: nested objects and arrays, names that
    /// sort differently in UTF-16 and UTF-8, escapes, and numbers of every magnitude.
    #[test]
    fn agrees_with_a_general_jcs_implementation_on_generated_inputs() {
        let mut rng = Lcg(0x2545_f491_4f6c_dd1d);
        for case in 0..3000 {
            let value = random_value(&mut rng, 4);
            // Members in a random order, sometimes a name twice (the last one wins in
            // serde_json, which parses the text for the reference).
            let mut text = String::new();
            write_shuffled(&value, &mut rng, &mut text);
            let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
            let expected = serde_json_canonicalizer::to_string(&parsed).unwrap();
            assert_eq!(canonical(&text), expected, "case {case}: {text}");
        }
    }

    fn write_shuffled(value: &serde_json::Value, rng: &mut Lcg, out: &mut String) {
        match value {
            serde_json::Value::Object(map) => {
                let mut members: Vec<_> = map.iter().collect();
                for i in (1..members.len()).rev() {
                    members.swap(i, rng.below(i as u64 + 1) as usize);
                }
                if let Some(&first) = members.first() {
                    if rng.below(4) == 0 {
                        // An earlier copy of a name, with another value.
                        members.insert(0, (first.0, &serde_json::Value::Null));
                    }
                }
                out.push('{');
                for (i, (name, member)) in members.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(name).unwrap());
                    out.push(':');
                    write_shuffled(member, rng, out);
                }
                out.push('}');
            }
            serde_json::Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_shuffled(item, rng, out);
                }
                out.push(']');
            }
            other => out.push_str(&serde_json::to_string(other).unwrap()),
        }
    }

    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn random_string(rng: &mut Lcg) -> String {
        const CHARS: [char; 14] = [
            'a', 'b', 'Z', '0', '\u{1}', '\n', '"', '\\', '\u{7f}', 'é', '€', '\u{e000}',
            '\u{fb33}', '😀',
        ];
        (0..rng.below(5))
            .map(|_| CHARS[rng.below(CHARS.len() as u64) as usize])
            .collect()
    }

    fn random_value(rng: &mut Lcg, depth: u32) -> serde_json::Value {
        use serde_json::Value;
        let kinds = if depth == 0 { 4 } else { 6 };
        match rng.below(kinds) {
            0 => Value::Null,
            1 => Value::Bool(rng.below(2) == 1),
            2 => {
                let mantissa = rng.next() as f64 / 7.0;
                let exponent = rng.below(80) as i32 - 40;
                let number = match rng.below(4) {
                    0 => serde_json::Number::from(rng.next() as i64 - (1 << 30)),
                    1 => serde_json::Number::from(MAX_SAFE_INTEGER - rng.below(1000)),
                    _ => serde_json::Number::from_f64(mantissa * 10f64.powi(exponent))
                        .unwrap_or_else(|| serde_json::Number::from(0)),
                };
                Value::Number(number)
            }
            3 => Value::String(random_string(rng)),
            4 => Value::Array(
                (0..rng.below(4))
                    .map(|_| random_value(rng, depth - 1))
                    .collect(),
            ),
            _ => Value::Object(
                (0..rng.below(5))
                    .map(|_| (random_string(rng), random_value(rng, depth - 1)))
                    .collect(),
            ),
        }
    }

    #[test]
    fn arguments_without_a_faithful_form_are_refused() {
        let unsafe_integer = |text: &str| match input_hash(&raw(text)) {
            Err(HashError::UnsafeInteger(literal)) => literal,
            other => panic!("{text}: {other:?}"),
        };
        // Python reads these as different integers; as doubles they are one value.
        assert_eq!(
            unsafe_integer(r#"{"n":9007199254740993}"#),
            "9007199254740993"
        );
        assert_eq!(unsafe_integer("[-9007199254740992]"), "-9007199254740992");
        assert_eq!(
            unsafe_integer("[18446744073709551615]"),
            "18446744073709551615"
        );
        // Past 64 bits serde_json reads a double; the literal is found in the text.
        assert_eq!(
            unsafe_integer(r#"{"s":"1234567890123456789012","n":[123456789012345678901234]}"#),
            "123456789012345678901234"
        );
        for text in ["[1e400]", "[-1e400]", r#"["\ud800"]"#, r#"{"\udc00":1}"#] {
            assert!(
                matches!(input_hash(&raw(text)), Err(HashError::Unreadable(_))),
                "{text}"
            );
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(matches!(
            input_hash(&raw(&deep)),
            Err(HashError::Unreadable(_))
        ));
    }

    #[test]
    fn safe_numbers_and_large_floats_still_hash() {
        for text in [
            "[9007199254740991]",
            "[-9007199254740991]",
            "[1e20]",
            "[1E300]",
            "[12345678901234567890.5]",
            "[1e-400]",
            r#"["123456789012345678901234"]"#,
        ] {
            assert!(input_hash(&raw(text)).is_ok(), "{text}");
        }
        let depth_128 = format!("{}{}", "[".repeat(127), "]".repeat(127));
        assert!(input_hash(&raw(&depth_128)).is_ok());
    }

    #[test]
    fn long_integer_literals_are_found_outside_strings_only() {
        assert_eq!(
            long_integer_literal(r#"["1234567890123456789\"", 1]"#),
            None
        );
        assert_eq!(
            long_integer_literal(r#"{"a\\":1234567890123456789}"#),
            Some("1234567890123456789")
        );
        assert_eq!(long_integer_literal("[1234567890123456789e0]"), None);
        assert_eq!(
            long_integer_literal("[-1234567890123456789]"),
            Some("-1234567890123456789")
        );
    }
}
