//! Durations as manifests write them: a whole number and a unit (`500ms`, `15s`,
//! `5m`, `1h`; `0s` for none). One unit per value keeps them unambiguous and easy to
//! render for Envoy, which takes seconds with a fraction (`"0.500s"`).

use std::time::Duration;

/// Parses `<digits><ms|s|m|h>`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let unit_at = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(unit_at);
    let bad = || {
        format!("{text:?} is not a duration (a whole number and ms, s, m or h: 500ms, 15s, 5m, 0s)")
    };
    if digits.is_empty() {
        return Err(bad());
    }
    let number: u64 = digits.parse().map_err(|_| bad())?;
    let millis_per = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(bad()),
    };
    number
        .checked_mul(millis_per)
        .map(Duration::from_millis)
        .ok_or_else(bad)
}

/// Envoy's JSON/YAML form of a `google.protobuf.Duration`: seconds with up to 3
/// decimals (`"15s"`, `"0.500s"`).
pub fn envoy(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{}.{:03}s", millis / 1000, millis % 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn refuses_what_is_not_one_number_and_one_unit() {
        for text in [
            "",
            "15",
            "s",
            "1.5s",
            "15 s",
            "-1s",
            "1m30s",
            "15sec",
            "99999999999999999999s",
        ] {
            assert!(parse(text).is_err(), "{text:?} was accepted");
        }
        assert_eq!(
            parse("15").unwrap_err(),
            "\"15\" is not a duration (a whole number and ms, s, m or h: 500ms, 15s, 5m, 0s)"
        );
    }

    #[test]
    fn renders_for_envoy() {
        assert_eq!(envoy(Duration::from_secs(15)), "15s");
        assert_eq!(envoy(Duration::from_millis(500)), "0.500s");
        assert_eq!(envoy(Duration::from_millis(1250)), "1.250s");
        assert_eq!(envoy(Duration::ZERO), "0s");
    }
}
