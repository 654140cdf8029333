//! Rate limit configuration in the YAML format of envoyproxy/ratelimit, so users can
//! bring their files: `domain`, nested `descriptors` with `key`, optional `value`,
//! `rate_limit` (`unit`, `requests_per_unit`, `unlimited`, `name`) and `shadow_mode`.
//! A `value` ending in `*` is a wildcard, as there: `value: foo*` matches every value
//! that starts with `foo`; at one level an exact value wins over a wildcard (the first
//! in file order that matches), which wins over a key-only descriptor. Only a trailing
//! `*` is special (`bar*b` is a literal value). A wildcard-matched value is the
//! client's, so it is bounded by `max_distinct_values` like a key-only one.
//!
//! One addition of ours, optional: `max_distinct_values`, at the top of a file (the
//! default for its domain; [`DEFAULT_MAX_DISTINCT_VALUES`] if absent) or on a key-only
//! descriptor or a wildcard one (its own bound; refused next to a listed `value:`). A key-only descriptor matches
//! any value, so its values come from requests (a tool name is whatever the client
//! wrote): each value would get a counter of its own, without bound. At most
//! `max_distinct_values` values per scope and window get their own counter; later
//! ones share the scope's overflow counter, still limited (scope: see [`Level`]; key
//! names: `keys.rs`). `0` makes every value of that key share one counter. Values
//! listed with `value:` always have their own counter. Set it above the number of
//! distinct values you expect in one window (for example the agents that may call one
//! tool in a minute on a key-only `agent_id`); `mcp_ratelimit_overflow_total` counts
//! the hits that went to overflow counters.
//!
//! ```yaml
//! domain: mcp_gateway
//! max_distinct_values: 50          # any tool: 50 names per window with a counter
//! descriptors:
//!   - key: tool_call
//!     descriptors:
//!       - key: agent_id
//!         max_distinct_values: 5000  # per tool name: 5000 agents per window
//!         rate_limit: { unit: minute, requests_per_unit: 60 }
//! ```
//!
//! Every problem is reported with the file, the descriptor path and the reason, all of
//! them in one pass.

use crate::keys;
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Length of a fixed window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    Second,
    Minute,
    Hour,
    Day,
}

impl Unit {
    pub fn seconds(self) -> u64 {
        match self {
            Unit::Second => 1,
            Unit::Minute => 60,
            Unit::Hour => 3600,
            Unit::Day => 86_400,
        }
    }

    /// envoyproxy/ratelimit writes units in upper case (`MINUTE`); lower case is
    /// accepted too.
    fn parse(text: &str) -> Option<Unit> {
        match text.to_ascii_lowercase().as_str() {
            "second" => Some(Unit::Second),
            "minute" => Some(Unit::Minute),
            "hour" => Some(Unit::Hour),
            "day" => Some(Unit::Day),
            _ => None,
        }
    }
}

/// How many distinct values of a key-only descriptor get their own counter, per
/// scope and window, when neither the descriptor nor its file says.
pub const DEFAULT_MAX_DISTINCT_VALUES: u32 = 100;

/// How many requests a window allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub unit: Unit,
    pub requests_per_unit: u32,
}

/// What a matched limit does: count against a rate, or nothing (`unlimited: true`).
/// An enum so an unlimited limit has no unit nor request count to misread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    /// `unlimited: true`: matched, never counted, never refused.
    Unlimited,
    Counted(Rate),
}

/// A limit attached to a descriptor node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub quota: Quota,
    /// Over-limit requests are counted and reported but allowed.
    pub shadow_mode: bool,
    /// The path of keys (`tool_call.agent_id`) for metrics: bounded, unlike values.
    pub metric_key: String,
    /// One per entry of a descriptor that reaches this limit, root first: how that
    /// entry is counted.
    pub levels: Box<[Level]>,
    /// `mcp_rl:{<domain>`: how every counter key of this limit starts (`keys.rs`).
    pub key_head: Box<str>,
}

impl Limit {
    /// The rate this limit counts against; `None` for an unlimited one.
    pub fn rate(&self) -> Option<Rate> {
        match self.quota {
            Quota::Unlimited => None,
            Quota::Counted(rate) => Some(rate),
        }
    }
}

/// One entry of the path to a limit, with the parts of its keys written once, when
/// the configuration is loaded, rather than on every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Level {
    /// `None`: a descriptor with `value:` matched, so the value is the configuration's
    /// and always has its own counter. `Some(n)`: a key-only or wildcard (`value:
    /// foo*`) descriptor matched, so the value is the request's; at most `n` distinct values get their own counter per
    /// scope and window, the others share the overflow counter of that scope.
    ///
    /// The scope of a key-only level is: the limit (which fixes the keys and the listed
    /// values of the whole path) and the values of the entries *before* this one, as
    /// counted (an earlier value that overflowed counts as the overflow value). Later
    /// key-only values are left out on purpose: if the scope of `tool_call` held the
    /// value of a later `agent_id` too, and both were client-chosen, every new pair
    /// would open a new scope and nothing would be bounded. With earlier values only,
    /// a limit has at most `(n1 + 1) * (n2 + 1) * ...` counters per window (one factor
    /// per key-only level), whatever clients send, in memory and in Redis.
    pub max_distinct_values: Option<u32>,
    /// Listed value: `|key=value`. Key-only: `|key`. Wildcard: `|key%*prefix` (see
    /// `keys.rs`). For the last two the value follows per request.
    pub segment: Box<str>,
    /// Key-only levels: the rest of the limit's path as written in the scope key (later
    /// listed values as `|key=value`, later key-only keys as `|key`). Empty otherwise.
    pub scope_rest: Box<str>,
}

/// One node of the descriptor tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    pub limit: Option<Limit>,
    /// Children by `key` + `value` (exact) ...
    exact: HashMap<(String, String), Node>,
    /// ... by `key` + value prefix (`value: foo*`), in file order ...
    wildcard: Vec<Wildcard>,
    /// ... and by `key` alone (any value).
    any: HashMap<String, Node>,
}

/// A descriptor whose value ends in `*`: envoyproxy/ratelimit matches it against every
/// request value that starts with the rest (`foo*` matches `foo` and `foobar`). Only a
/// trailing `*` is a wildcard, as there (`bar*b` is a literal value).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Wildcard {
    key: String,
    prefix: String,
    node: Node,
}

/// The limits of one domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Domain {
    pub root: Node,
}

/// All domains, from all files of the configuration directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub domains: HashMap<String, Domain>,
}

impl Config {
    /// The limit for a request descriptor (its `(key, value)` entries, in order), with
    /// envoyproxy/ratelimit's matching: at each level an exact `key`+`value` entry wins
    /// over a wildcard one (`value: foo*`; the first in file order whose prefix the
    /// value starts with), which wins over a key-only one; the limit applies when the
    /// last entry lands on a node that has one.
    pub fn find(&self, domain: &str, entries: &[(&str, &str)]) -> Option<&Limit> {
        let mut node = &self.domains.get(domain)?.root;
        for (key, value) in entries {
            node = node
                .exact
                .get(&((*key).to_owned(), (*value).to_owned()))
                .or_else(|| {
                    node.wildcard
                        .iter()
                        .find(|w| w.key == *key && value.starts_with(w.prefix.as_str()))
                        .map(|w| &w.node)
                })
                .or_else(|| node.any.get(*key))?;
        }
        if entries.is_empty() {
            return None;
        }
        node.limit.as_ref()
    }
}

/// Configuration errors: every problem, each naming file, key path and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problems.join("\n"))
    }
}

impl std::error::Error for ConfigError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    domain: Option<String>,
    /// Default for every key-only descriptor of this domain
    /// ([`DEFAULT_MAX_DISTINCT_VALUES`] when absent).
    max_distinct_values: Option<u32>,
    #[serde(default)]
    descriptors: Vec<RawDescriptor>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDescriptor {
    key: Option<String>,
    value: Option<String>,
    rate_limit: Option<RawLimit>,
    #[serde(default)]
    descriptors: Vec<RawDescriptor>,
    #[serde(default)]
    shadow_mode: bool,
    /// Key-only descriptors only: values with their own counter, per scope and window.
    max_distinct_values: Option<u32>,
    // Accepted for compatibility with envoyproxy/ratelimit files; metrics here are
    // always per key path, never per value.
    #[serde(default, rename = "detailed_metric")]
    _detailed_metric: bool,
    #[serde(default, rename = "value_to_metric")]
    _value_to_metric: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimit {
    unit: Option<String>,
    requests_per_unit: Option<u32>,
    #[serde(default)]
    unlimited: bool,
    #[serde(default, rename = "name")]
    _name: Option<String>,
}

impl Config {
    /// Loads every `*.yaml` / `*.yml` file of a directory (or one file).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let files: Vec<PathBuf> = if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| ConfigError {
                    problems: vec![format!("{}: cannot read: {e}", path.display())],
                })?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
                .collect();
            files.sort();
            files
        } else {
            vec![path.to_owned()]
        };
        let mut sources = Vec::new();
        let mut problems = Vec::new();
        for file in files {
            match std::fs::read_to_string(&file) {
                Ok(text) => sources.push((file, text)),
                Err(e) => problems.push(format!("{}: cannot read: {e}", file.display())),
            }
        }
        match Config::parse(sources.iter().map(|(f, t)| (f.as_path(), t.as_str()))) {
            Ok(config) if problems.is_empty() => Ok(config),
            Ok(_) => Err(ConfigError { problems }),
            Err(mut error) => {
                problems.append(&mut error.problems);
                Err(ConfigError { problems })
            }
        }
    }

    /// Parses files given as (name, text).
    pub fn parse<'a>(
        files: impl IntoIterator<Item = (&'a Path, &'a str)>,
    ) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        let mut problems = Vec::new();
        let mut seen_domains: HashMap<String, PathBuf> = HashMap::new();
        for (file, text) in files {
            let name = file.display().to_string();
            let raw: RawFile = match serde_norway::from_str(text) {
                Ok(raw) => raw,
                Err(e) => {
                    problems.push(format!("{name}: {e}"));
                    continue;
                }
            };
            let Some(domain) = raw.domain.filter(|d| !d.is_empty()) else {
                problems.push(format!("{name}: domain: missing or empty"));
                continue;
            };
            if let Some(first) = seen_domains.insert(domain.clone(), file.to_owned()) {
                problems.push(format!(
                    "{name}: domain: {domain:?} is already defined in {}",
                    first.display()
                ));
                continue;
            }
            let mut root = Node::default();
            let mut key_head = String::from("mcp_rl:{");
            keys::escape_into(&mut key_head, &domain);
            let mut walk = Walk {
                file: &name,
                key_head: &key_head,
                default_max_distinct: raw
                    .max_distinct_values
                    .unwrap_or(DEFAULT_MAX_DISTINCT_VALUES),
                path: Vec::new(),
                problems: &mut problems,
            };
            walk.add_descriptors("descriptors", "", &raw.descriptors, &mut root);
            config.domains.insert(domain, Domain { root });
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { problems })
        }
    }
}

/// How a descriptor matches a request value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Match {
    /// `value: v`: exactly `v`; the value is the configuration's.
    Listed(String),
    /// `value: v*`: any value starting with `v`; the value is the request's.
    Prefix(String),
    /// No `value`: any value; the value is the request's.
    Any,
}

impl Match {
    /// envoyproxy/ratelimit's rule: a value ending in `*` is a prefix.
    fn of(value: Option<&str>) -> Match {
        match value {
            None => Match::Any,
            Some(value) => match value.strip_suffix('*') {
                Some(prefix) => Match::Prefix(prefix.to_owned()),
                None => Match::Listed(value.to_owned()),
            },
        }
    }
}

/// One entry of the path from the root to the descriptor being read.
struct Step {
    key: String,
    matching: Match,
    max_distinct_values: u32,
}

/// The state of reading one file's descriptor tree.
struct Walk<'a> {
    file: &'a str,
    key_head: &'a str,
    default_max_distinct: u32,
    path: Vec<Step>,
    problems: &'a mut Vec<String>,
}

impl Walk<'_> {
    fn add_descriptors(
        &mut self,
        path: &str,
        metric_prefix: &str,
        descriptors: &[RawDescriptor],
        parent: &mut Node,
    ) {
        let file = self.file;
        for (index, raw) in descriptors.iter().enumerate() {
            let here = format!("{path}[{index}]");
            let Some(key) = raw.key.clone().filter(|k| !k.is_empty()) else {
                self.problems
                    .push(format!("{file}: {here}.key: missing or empty"));
                continue;
            };
            let matching = Match::of(raw.value.as_deref());
            if matches!(matching, Match::Listed(_)) && raw.max_distinct_values.is_some() {
                self.problems.push(format!(
                    "{file}: {here}.max_distinct_values: only for a descriptor without value (a listed value always has its own counter)"
                ));
            }
            let metric_key = if metric_prefix.is_empty() {
                key.clone()
            } else {
                format!("{metric_prefix}.{key}")
            };
            self.path.push(Step {
                key: key.clone(),
                matching: matching.clone(),
                max_distinct_values: raw.max_distinct_values.unwrap_or(self.default_max_distinct),
            });
            let mut node = Node::default();
            if let Some(limit) = &raw.rate_limit {
                node.limit = limit_of(
                    file,
                    &here,
                    limit,
                    raw.shadow_mode,
                    &metric_key,
                    self.problems,
                )
                .map(|limit| Limit {
                    levels: self.levels(),
                    key_head: self.key_head.into(),
                    ..limit
                });
            }
            self.add_descriptors(
                &format!("{here}.descriptors"),
                &metric_key,
                &raw.descriptors,
                &mut node,
            );
            self.path.pop();
            let duplicate = match matching {
                Match::Listed(value) => parent.exact.insert((key.clone(), value), node).is_some(),
                Match::Prefix(prefix) => {
                    let duplicate = parent
                        .wildcard
                        .iter()
                        .any(|w| w.key == key && w.prefix == prefix);
                    if !duplicate {
                        parent.wildcard.push(Wildcard {
                            key: key.clone(),
                            prefix,
                            node,
                        });
                    }
                    duplicate
                }
                Match::Any => parent.any.insert(key.clone(), node).is_some(),
            };
            if duplicate {
                let what = match &raw.value {
                    Some(value) => format!("key {key:?} with value {value:?}"),
                    None => format!("key {key:?} without value"),
                };
                self.problems.push(format!(
                    "{file}: {here}: duplicate descriptor: {what} appears twice at this level"
                ));
            }
        }
    }

    /// The levels of a limit at the end of the current path (see [`Level`]).
    fn levels(&self) -> Box<[Level]> {
        let segment = |step: &Step| {
            let mut text = String::from("|");
            keys::escape_into(&mut text, &step.key);
            match &step.matching {
                Match::Listed(value) => {
                    text.push('=');
                    keys::escape_into(&mut text, value);
                }
                // Its own counters and scope, apart from a key-only sibling's.
                Match::Prefix(prefix) => {
                    text.push_str(keys::WILDCARD);
                    keys::escape_into(&mut text, prefix);
                }
                Match::Any => {}
            }
            text
        };
        self.path
            .iter()
            .enumerate()
            .map(|(index, step)| {
                let listed = matches!(step.matching, Match::Listed(_));
                Level {
                    max_distinct_values: (!listed).then_some(step.max_distinct_values),
                    segment: segment(step).into(),
                    scope_rest: if listed {
                        "".into()
                    } else {
                        self.path[index + 1..].iter().map(segment).collect()
                    },
                }
            })
            .collect()
    }
}

fn limit_of(
    file: &str,
    here: &str,
    raw: &RawLimit,
    shadow_mode: bool,
    metric_key: &str,
    problems: &mut Vec<String>,
) -> Option<Limit> {
    // The caller fills in `levels` and `key_head`.
    if raw.unlimited {
        if raw.unit.is_some() || raw.requests_per_unit.is_some() {
            problems.push(format!(
                "{file}: {here}.rate_limit: unlimited cannot be combined with unit or requests_per_unit"
            ));
            return None;
        }
        return Some(Limit {
            quota: Quota::Unlimited,
            shadow_mode,
            metric_key: metric_key.to_owned(),
            levels: Box::default(),
            key_head: Box::default(),
        });
    }
    let unit = match raw.unit.as_deref() {
        None => {
            problems.push(format!("{file}: {here}.rate_limit.unit: missing"));
            None
        }
        Some(text) => Unit::parse(text).or_else(|| {
            problems.push(format!(
                "{file}: {here}.rate_limit.unit: {text:?} is not one of second, minute, hour, day"
            ));
            None
        }),
    };
    let requests = match raw.requests_per_unit {
        None => {
            problems.push(format!(
                "{file}: {here}.rate_limit.requests_per_unit: missing"
            ));
            None
        }
        Some(n) => Some(n),
    };
    Some(Limit {
        quota: Quota::Counted(Rate {
            unit: unit?,
            requests_per_unit: requests?,
        }),
        shadow_mode,
        metric_key: metric_key.to_owned(),
        levels: Box::default(),
        key_head: Box::default(),
    })
}

#[cfg(test)]
mod tests;
