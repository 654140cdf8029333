//! Everything `render` writes, from one validated fleet. This is the one place that
//! calls every target: each returns `(relative path, text)` outputs, and the CLI
//! writes them all (atomically, unchanged files left alone). Outputs are
//! deterministic (servers sorted by id), so the golden tests compare bytes.

pub mod credentials;
pub mod envoy;
pub mod istio;
pub mod kubernetes;
pub mod limits;
pub mod monitoring;
pub mod policy;
pub mod schemas;
pub mod sidecar;
mod yaml;

use crate::fleet::Fleet;
use std::path::PathBuf;

/// One rendered file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Relative to the output directory.
    pub path: PathBuf,
    pub text: String,
}

impl Output {
    pub fn new(path: impl Into<PathBuf>, text: String) -> Output {
        Output {
            path: path.into(),
            text,
        }
    }
}

/// Where things are, for paths that end up inside rendered files.
#[derive(Debug, Clone)]
pub struct Options {
    /// The output directory: `policy.yaml`'s relative credential paths are relative
    /// to it (the authz-service resolves them against the policy file's directory).
    pub out_dir: PathBuf,
    /// Where `{secret:}` credentials are mounted for the authz-service:
    /// `<credentials_dir>/<server_id>/<key>`.
    pub credentials_dir: PathBuf,
    /// The directory of `envoy/routes.yaml` and `envoy/clusters.yaml` as Envoy sees it
    /// (written into `envoy/bootstrap.yaml`); `None`: `<out_dir>/envoy`, absolute.
    pub envoy_dir: Option<PathBuf>,
}

/// The mount root of upstream credentials in the gateway's Kubernetes deployment.
pub const KUBERNETES_CREDENTIALS_DIR: &str = "/etc/mcp-gateway/credentials";

impl Options {
    pub fn new(out_dir: impl Into<PathBuf>) -> Options {
        Options {
            out_dir: out_dir.into(),
            credentials_dir: PathBuf::from(KUBERNETES_CREDENTIALS_DIR),
            envoy_dir: None,
        }
    }
}

/// Every output, with the canary weights the rollout state decided (a rollback or
/// promotion recorded for exactly the manifest's canary version overrides the
/// manifest's `weight`): what `mcp-registry render` and the canary watcher write.
pub fn render_with_rollout(
    fleet: &Fleet,
    options: &Options,
    rollout: &crate::rollout::RolloutState,
) -> Vec<Output> {
    render(&rollout.apply(fleet), options)
}

/// Every output of every target, canaries at the manifests' weights (see
/// [`render_with_rollout`]).
pub fn render(fleet: &Fleet, options: &Options) -> Vec<Output> {
    let local = credentials::Placement::Local {
        out_dir: &options.out_dir,
        credentials_dir: &options.credentials_dir,
    };
    let policy_text = policy::render(fleet, &local);
    let schemas_text = schemas::render(fleet);
    let limits_text = limits::render(fleet);
    let configmaps = kubernetes::configmaps(fleet, &schemas_text, &limits_text);
    let envoy_configmap = kubernetes::envoy_configmap(fleet);
    let authz_deployment = kubernetes::authz_deployment(fleet);
    let envoy_dir = options.envoy_dir.clone().unwrap_or_else(|| {
        let out = std::path::absolute(&options.out_dir).unwrap_or(options.out_dir.clone());
        out.join("envoy")
    });
    // The services first, then Envoy's clusters before its routes: a live change never
    // has a route pointing at a cluster Envoy does not have yet, nor a request of a
    // new server meeting a policy that does not know it.
    let mut outputs = vec![
        Output::new("policy.yaml", policy_text),
        // Beside the policy, both read by the authz-service before Envoy's routes send it
        // the bodies of a newly validated server.
        Output::new(schemas::FILE, schemas_text),
        Output::new("limits/limits.yaml", limits_text),
        Output::new("kubernetes/configmaps.yaml", configmaps),
        Output::new("kubernetes/authz-service.yaml", authz_deployment),
        Output::new("kubernetes/envoy-configmap.yaml", envoy_configmap),
    ];
    outputs.extend(envoy::render(fleet, &envoy_dir));
    // On Istio, the EnvoyFilter before the routes it patches (render/istio.rs).
    outputs.extend(istio::render(fleet));
    outputs.extend(sidecar::render(fleet));
    outputs.push(Output::new(
        "monitoring/mcp-servers.rules.yaml",
        monitoring::render(fleet),
    ));
    outputs
}

/// Characters YAML takes as they are in the rendered files: printable (YAML 1.2
/// `c-printable` without the line breaks NEL, LS and PS, which YAML 1.1 readers treat
/// as line breaks). Everything else is escaped in a quoted scalar or replaced in a
/// comment, so no manifest text can end a line (and become configuration) or make a
/// consumer refuse the file.
fn yaml_printable(c: char) -> bool {
    matches!(c as u32, 0x20..=0x7e | 0xa0..=0xd7ff | 0xe000..=0xfffd | 0x10000..)
        && !matches!(c, '\u{2028}' | '\u{2029}')
}

/// A YAML double-quoted scalar that stays a string whatever it holds (`true`, `1.0`,
/// `null`...), with every character outside [`yaml_printable`] escaped.
pub(crate) fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            // YAML's short escapes, for the line breaks and tabs of embedded text
            // (an Envoy access log format, a filter's JSON configuration).
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if yaml_printable(c) => out.push(c),
            c if (c as u32) <= 0xffff => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// Manifest text (an owner, a file name) made safe inside a YAML comment: a line break
/// there would end the comment and let the text become configuration (an owner of
/// `"x\nunknown_tool: allow"`), so every character outside [`yaml_printable`]
/// becomes `?`.
pub(crate) fn comment(text: &str) -> String {
    text.chars()
        .map(|c| if yaml_printable(c) { c } else { '?' })
        .collect()
}

/// A flow sequence of quoted strings.
pub(crate) fn quoted_list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|s| quoted(s)).collect();
    format!("[{}]", items.join(", "))
}

/// The first line of every rendered file.
pub(crate) const HEADER: &str =
    "# Rendered by mcp-registry from the server manifests: do not edit, edit the manifests and run `mcp-registry render` again.\n";

#[cfg(test)]
mod tests {
    use super::comment;

    #[test]
    fn quoted_scalars_escape_what_yaml_would_not_take() {
        use super::quoted;
        assert_eq!(quoted("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(quoted("x\ny\tz\r"), r#""x\ny\tz\r""#);
        assert_eq!(
            quoted("\u{7f}\u{85}\u{9f}\u{fffe}\u{2028}"),
            r#""\u007f\u0085\u009f\ufffe\u2028""#
        );
        assert_eq!(quoted("Zoë"), "\"Zoë\"");
        // What a YAML reader makes of it is the text again.
        for text in ["a\"b", "x\ny\u{7f}", "\u{fffe}\u{1f600}", "tab\there"] {
            let back: String = serde_norway::from_str(&quoted(text)).unwrap();
            assert_eq!(back, text);
        }
    }

    #[test]
    fn comments_cannot_break_out_of_their_line() {
        assert_eq!(
            comment("team@x\nunknown_tool: allow"),
            "team@x?unknown_tool: allow"
        );
        assert_eq!(comment("a\rb\u{85}c\u{2028}d\u{2029}e"), "a?b?c?d?e");
        assert_eq!(comment("Zoë <zoe@x>"), "Zoë <zoe@x>");
    }
}
