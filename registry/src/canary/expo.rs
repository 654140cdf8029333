//! The Prometheus text exposition format (0.0.4), as Envoy's `/stats/prometheus`
//! writes it: just enough to read counters. `# HELP`/`# TYPE` lines and timestamps are
//! ignored (Envoy writes none; the watcher timestamps each scrape itself).

use thiserror::Error;

/// One sample line: `name{label="value",...} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    /// In the order written.
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

#[derive(Debug, Error, PartialEq)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

/// Every sample of `text`. A malformed line fails the whole scrape: a half-read scrape
/// would look like counters going down (a restart) and then up again.
pub fn parse(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut samples = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fail = |reason: &str| ParseError {
            line: index + 1,
            reason: reason.to_owned(),
        };
        samples.push(parse_line(line).map_err(fail)?);
    }
    Ok(samples)
}

fn parse_line(line: &str) -> Result<Sample, &'static str> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_ascii_whitespace())
        .ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty() || !name.chars().all(is_name_char) {
        return Err("bad metric name");
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inside) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inside)?;
        labels = parsed;
        rest = after;
    }
    let value = rest.split_ascii_whitespace().next().ok_or("no value")?;
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value: parse_value(value)?,
    })
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

type Labels = Vec<(String, String)>;

/// The labels after `{`, and what follows the closing `}`.
fn parse_labels(mut text: &str) -> Result<(Labels, &str), &'static str> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start();
        if let Some(after) = text.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = text.find('=').ok_or("label without =")?;
        let key = text[..eq].trim();
        if key.is_empty() || !key.chars().all(is_name_char) {
            return Err("bad label name");
        }
        let after_eq = text[eq + 1..].trim_start();
        let quoted = after_eq.strip_prefix('"').ok_or("label value not quoted")?;
        let (value, after_value) = unescape(quoted)?;
        labels.push((key.to_owned(), value));
        text = after_value.trim_start();
        if let Some(after_comma) = text.strip_prefix(',') {
            text = after_comma;
        } else if !text.starts_with('}') {
            return Err("expected , or } after a label value");
        }
    }
}

/// A label value up to its closing quote (`\\`, `\"` and `\n` escaped, as the format
/// defines), and the text after the quote.
fn unescape(text: &str) -> Result<(String, &str), &'static str> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &text[at + 1..])),
            '\\' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, escaped @ ('\\' | '"'))) => value.push(escaped),
                _ => return Err("bad escape in label value"),
            },
            c => value.push(c),
        }
    }
    Err("unterminated label value")
}

fn parse_value(text: &str) -> Result<f64, &'static str> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text.parse().map_err(|_| "bad value"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // As Envoy 1.40 writes the filter's stats once the stats_tags rules made labels of
    // the `;key=value` segments of the stat name.
    const ENVOY: &str = r#"# TYPE envoy_cluster_upstream_rq_total counter
envoy_cluster_upstream_rq_total{envoy_cluster_name="mcp-server/fin"} 12
# TYPE mcp_tool_calls_total counter
mcp_tool_calls_total{mcp_server="fin",mcp_tool="get_balance",mcp_outcome="success",mcp_server_version="1.3.2"} 40
mcp_tool_calls_total{mcp_server="fin",mcp_tool="get_balance",mcp_outcome="error",mcp_server_version="1.4.0+build.7"} 3
# TYPE envoy_server_uptime gauge
envoy_server_uptime{} 17
mcp_tool_call_duration_ms_bucket{mcp_server="fin",le="+Inf"} 43
"#;

    #[test]
    fn reads_envoy_stats_with_labels() {
        let samples = parse(ENVOY).unwrap();
        assert_eq!(samples.len(), 5);
        let error = &samples[2];
        assert_eq!(error.name, "mcp_tool_calls_total");
        assert_eq!(error.label("mcp_outcome"), Some("error"));
        assert_eq!(error.label("mcp_server_version"), Some("1.4.0+build.7"));
        assert_eq!(error.value, 3.0);
        assert_eq!(samples[3].labels, vec![]);
        assert_eq!(samples[4].label("le"), Some("+Inf"));
    }

    #[test]
    fn reads_escapes_timestamps_and_special_values() {
        let samples =
            parse("a{x=\"q\\\"uo\\\\te\\n\", y = \"2\",} 1.5e3 1700000000000\nb +Inf\nc NaN\n")
                .unwrap();
        assert_eq!(samples[0].label("x"), Some("q\"uo\\te\n"));
        assert_eq!(samples[0].label("y"), Some("2"));
        assert_eq!(samples[0].value, 1500.0);
        assert_eq!(samples[1].value, f64::INFINITY);
        assert!(samples[2].value.is_nan());
    }

    #[test]
    fn refuses_malformed_lines_with_their_number() {
        for (text, reason) in [
            (
                "ok 1\nbroken{a=\"1\" 2",
                "expected , or } after a label value",
            ),
            ("ok 1\nbroken{a=\"1} 2", "unterminated label value"),
            ("ok 1\nx{a=1} 2", "label value not quoted"),
            ("ok 1\nx{a=\"1\"} two", "bad value"),
            ("ok 1\nx", "no value"),
            ("ok 1\nx{a=\"\\t\"} 1", "bad escape in label value"),
        ] {
            assert_eq!(
                parse(text),
                Err(ParseError {
                    line: 2,
                    reason: reason.into()
                }),
                "{text:?}"
            );
        }
    }
}
