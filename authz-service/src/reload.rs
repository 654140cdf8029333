//! Hot reload of the policy, the schemas and the session key file (the watching, settling and
//! last-good rule are `mcp_service_kit::reload`'s; this names what each file holds).

use crate::check::Authorizer;
use crate::policy::Policy;
use crate::schemas::Schemas;
use crate::session_keys::SessionKeys;
use mcp_service_kit::reload::{self as kit, Watched as KitWatched};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a watched file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watched {
    Policy,
    SessionKeys,
    Schemas,
}

/// Reloads `path` into `authorizer`; returns whether the new contents took effect.
/// Reads the file synchronously: call it off the async runtime threads.
pub fn reload(authorizer: &Authorizer, what: Watched, path: &Path) -> bool {
    let metrics = &authorizer.metrics;
    match what {
        Watched::Policy => kit::reload(
            "policy",
            path,
            Policy::load,
            |policy| authorizer.set_policy(policy),
            &metrics.policy_reload_failures,
        ),
        Watched::SessionKeys => kit::reload(
            "session keys",
            path,
            SessionKeys::load,
            |keys| {
                tracing::debug!(keys = keys.len(), "session keys loaded");
                authorizer.set_session_keys(keys)
            },
            &metrics.session_key_reload_failures,
        ),
        Watched::Schemas => kit::reload(
            "schemas",
            path,
            Schemas::load,
            |schemas| {
                tracing::debug!(tools = schemas.tool_count(), "schemas loaded");
                authorizer.set_schemas(schemas)
            },
            &metrics.schema_reload_failures,
        ),
    }
}

/// Watches the policy, the schemas and the session key file of `settings`; runs until the
/// returned watcher is dropped (`None`: hot reload is off, logged).
pub fn watch(
    authorizer: Arc<Authorizer>,
    settings: &crate::Settings,
) -> Option<notify::RecommendedWatcher> {
    let files: [(Watched, Option<&PathBuf>); 3] = [
        (Watched::Policy, Some(&settings.policy)),
        (Watched::SessionKeys, Some(&settings.session_keys)),
        (Watched::Schemas, settings.schemas.as_ref()),
    ];
    kit::watch(
        files
            .into_iter()
            .filter_map(|(what, path)| Some((what, path?)))
            .map(|(what, path)| {
                let authorizer = authorizer.clone();
                KitWatched::new(path.clone(), move |path| {
                    reload(&authorizer, what, path);
                })
            })
            .collect(),
    )
}
