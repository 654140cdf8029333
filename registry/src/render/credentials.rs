//! Where the authz-service finds each server's upstream credential.
//!
//! - On one host (`policy.yaml` next to the services): a `{file:}` reference becomes a
//!   path relative to the output directory (the policy file's directory, against which
//!   the authz-service resolves relative paths), so the rendered tree can move as a
//!   whole; a `{secret:}` reference becomes `<credentials_dir>/<server_id>/<key>`.
//! - In Kubernetes (the ConfigMap): both become paths under
//!   `/etc/mcp-gateway/credentials/<server_id>/`, where the deployment mounts them
//!   ([`mounts`] lists what to mount).

use super::KUBERNETES_CREDENTIALS_DIR;
use crate::check::credential_secret;
use crate::fleet::Fleet;
use crate::model::{Credential, Server};
use std::path::{Component, Path, PathBuf};

/// Which deployment the policy is rendered for.
#[derive(Debug, Clone, Copy)]
pub enum Placement<'a> {
    Local {
        out_dir: &'a Path,
        credentials_dir: &'a Path,
    },
    Kubernetes,
}

/// The path the policy names for a server's credential.
pub fn path_for(server: &Server, placement: &Placement<'_>) -> Option<String> {
    let credential = server.upstream_credential.as_ref()?;
    let path = match (placement, credential) {
        (Placement::Local { out_dir, .. }, Credential::File { resolved, .. }) => {
            relative_to(resolved, out_dir)
        }
        (
            Placement::Local {
                credentials_dir, ..
            },
            Credential::Secret { key, .. },
        ) => credentials_dir.join(server.id()).join(key),
        (Placement::Kubernetes, _) => kubernetes_path(server, credential),
    };
    Some(path.to_string_lossy().into_owned())
}

fn kubernetes_path(server: &Server, credential: &Credential) -> PathBuf {
    let name = match credential {
        Credential::Secret { key, .. } => key.clone(),
        Credential::File { resolved, .. } => resolved
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "credential".into()),
    };
    Path::new(KUBERNETES_CREDENTIALS_DIR)
        .join(server.id())
        .join(name)
}

/// One credential the gateway's Kubernetes deployment must mount into the
/// authz-service (read-only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub server_id: String,
    /// The Secret and key to mount; for a `{file:}` reference, a Secret must first be
    /// made from the file (its name and key as given here).
    pub secret: String,
    pub key: String,
    /// Where the policy expects it.
    pub mount_path: String,
    /// The `{file:}` reference, if that is where the credential comes from.
    pub from_file: Option<PathBuf>,
}

/// Every credential mount, by server id.
pub fn mounts(fleet: &Fleet) -> Vec<Mount> {
    fleet
        .servers
        .iter()
        .filter_map(|server| {
            let credential = server.upstream_credential.as_ref()?;
            let mount_path = kubernetes_path(server, credential)
                .to_string_lossy()
                .into_owned();
            Some(match credential {
                Credential::Secret { name, key } => Mount {
                    server_id: server.id().to_owned(),
                    secret: name.clone(),
                    key: key.clone(),
                    mount_path,
                    from_file: None,
                },
                Credential::File { path, .. } => Mount {
                    server_id: server.id().to_owned(),
                    secret: credential_secret(server.id()),
                    key: mount_path.rsplit('/').next().unwrap_or_default().to_owned(),
                    mount_path,
                    from_file: Some(PathBuf::from(path)),
                },
            })
        })
        .collect()
}

/// `target` relative to `base`, both made absolute against the current directory and
/// normalised lexically (no file needs to exist yet).
pub fn relative_to(target: &Path, base: &Path) -> PathBuf {
    let target = normalise(target);
    let base = normalise(base);
    let t: Vec<Component> = target.components().collect();
    let b: Vec<Component> = base.components().collect();
    let common = t.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for part in &t[common..] {
        out.push(part);
    }
    out
}

fn normalise(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut out = PathBuf::new();
    for part in absolute.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_walk_up_from_the_base() {
        assert_eq!(
            relative_to(Path::new("/a/b/creds/x"), Path::new("/a/out/gen")),
            PathBuf::from("../../b/creds/x")
        );
        assert_eq!(
            relative_to(Path::new("/a/./b/../c/x"), Path::new("/a")),
            PathBuf::from("c/x")
        );
    }
}
