//! `input_hash` of the audit record: the SHA-256 of the RFC 8785 (JSON
//! Canonicalization Scheme) form of `params.arguments`, so that equal inputs hash
//! equal whatever their key order, spacing or escapes, and the raw arguments (user
//! data, credentials) never reach a log.

use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

/// `sha256:` + lower-case hex of the SHA-256 of the canonical JSON of `arguments`.
///
/// `None` when the value cannot be canonicalised (RFC 8785 section 3.2.2.3: numbers
/// must be finite IEEE 754 doubles, so `1e400` has no canonical form); the record then
/// says so rather than hashing a form no other party would compute.
pub fn input_hash(arguments: &RawValue) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(arguments.get()).ok()?;
    let canonical = serde_json_canonicalizer::to_vec(&value).ok()?;
    Some(format!(
        "sha256:{}",
        hex::encode(Sha256::digest(&canonical))
    ))
}

/// The canonical text itself (for tests and for users checking a hash by hand).
pub fn canonical_json(arguments: &RawValue) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(arguments.get()).ok()?;
    serde_json_canonicalizer::to_string(&value).ok()
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
            canonical("[1.0, -0, 1e21, 1e20, 0.1e1, 5E-7, 123456789012345680000]"),
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
    fn numbers_outside_ieee754_have_no_canonical_form() {
        assert_eq!(input_hash(&raw("[1e400]")), None);
    }
}
