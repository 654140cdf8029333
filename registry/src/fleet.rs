//! A directory of manifests (`*.yaml`, one server each) loaded as one fleet: every
//! file checked, then the rules across files (ids and exposure paths unique), and
//! every problem reported in one pass.

use crate::check::{self, kube_name, Rules};
use crate::model::Server;
use crate::problems::{Problem, Problems};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The validated servers of a directory, sorted by server id.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub dir: PathBuf,
    pub servers: Vec<Server>,
}

impl Fleet {
    /// Loads and checks every `*.yaml` file directly in `dir` (sub-directories hold
    /// schemas and the like, not manifests), with the default [`Rules`].
    pub fn load(dir: &Path) -> Result<Fleet, Problems> {
        Fleet::load_with(dir, &Rules::default())
    }

    /// [`Fleet::load`] with other rules (loopback endpoints for local development).
    pub fn load_with(dir: &Path, rules: &Rules) -> Result<Fleet, Problems> {
        let problem = |file: &Path, reason: String| Problem {
            file: file.to_owned(),
            field: String::new(),
            reason,
        };
        let entries = std::fs::read_dir(dir).map_err(|e| {
            Problems(vec![problem(
                dir,
                format!("cannot read the directory: {e}"),
            )])
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        // File names, not read_dir's order: the same problems in the same order on
        // every machine.
        files.sort();
        if files.is_empty() {
            return Err(Problems(vec![problem(
                dir,
                "no *.yaml manifest in this directory".into(),
            )]));
        }
        let mut problems = Vec::new();
        let mut servers = Vec::new();
        for file in &files {
            match std::fs::read_to_string(file) {
                Err(e) => problems.push(problem(file, format!("cannot read: {e}"))),
                Ok(text) => match check::manifest(file, &text, rules) {
                    Ok(server) => servers.push(server),
                    Err(mut found) => problems.append(&mut found),
                },
            }
        }
        problems.extend(duplicates(&servers));
        problems.extend(shared_sidecars(&servers));
        if !problems.is_empty() {
            return Err(Problems(problems));
        }
        servers.sort_by(|a, b| a.id().cmp(b.id()));
        Ok(Fleet {
            dir: dir.to_owned(),
            servers,
        })
    }

    pub fn server(&self, id: &str) -> Option<&Server> {
        self.servers.iter().find(|s| s.id() == id)
    }
}

/// Two manifests with one id, or one exposure path: the later file (in name order)
/// is named with the field, the earlier in the reason.
fn duplicates(servers: &[Server]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut ids: BTreeMap<&str, &Path> = BTreeMap::new();
    let mut kube_names: BTreeMap<String, &Server> = BTreeMap::new();
    let mut schemes: BTreeMap<(&str, u16), &Server> = BTreeMap::new();
    let mut paths: BTreeMap<&str, &Server> = BTreeMap::new();
    for server in servers {
        if let Some(first) = ids.get(server.id()) {
            problems.push(Problem {
                file: server.manifest_file.clone(),
                field: "server_id".into(),
                reason: format!(
                    "{:?} is already registered by {}",
                    server.id(),
                    first.display()
                ),
            });
        } else {
            ids.insert(server.id(), &server.manifest_file);
        }
        // Kubernetes names (Secrets, DestinationRules) derive from the id: two ids
        // with one name would share them.
        match kube_names.get(&kube_name(server.id())) {
            Some(first) if first.id() != server.id() => problems.push(Problem {
                file: server.manifest_file.clone(),
                field: "server_id".into(),
                reason: format!(
                    "{:?} and {:?} ({}) name the same Kubernetes objects ({:?}); rename one",
                    server.id(),
                    first.id(),
                    first.manifest_file.display(),
                    kube_name(server.id())
                ),
            }),
            Some(_) => {}
            None => {
                kube_names.insert(kube_name(server.id()), server);
            }
        }
        // One upstream host and port, one way of speaking to it: the Istio target
        // sets TLS per host (a DestinationRule), so a second manifest naming another
        // team's upstream with the other scheme would change how that team's server
        // is reached.
        let upstream = (server.endpoint.host.as_str(), server.endpoint.port);
        match schemes.get(&upstream) {
            Some(first) if first.endpoint.scheme != server.endpoint.scheme => {
                problems.push(Problem {
                    file: server.manifest_file.clone(),
                    field: "endpoint".into(),
                    reason: format!(
                        "{}:{} is {}'s upstream over {} ({}); one upstream, one scheme",
                        upstream.0,
                        upstream.1,
                        first.id(),
                        first.endpoint.scheme,
                        first.manifest_file.display()
                    ),
                })
            }
            Some(_) => {}
            None => {
                schemes.insert(upstream, server);
            }
        }
        if let Some(canary) = &server.canary {
            let upstream = (canary.endpoint.host.as_str(), canary.endpoint.port);
            let shared = servers.iter().find(|other| {
                other.id() != server.id()
                    && ((other.endpoint.host.as_str(), other.endpoint.port) == upstream
                        || other.canary.as_ref().is_some_and(|c| {
                            (c.endpoint.host.as_str(), c.endpoint.port) == upstream
                        }))
            });
            // A release is told by the cluster that served it (its metadata labels the
            // audit record and metrics); on Istio one host:port is one cluster, so a
            // canary sharing another server's upstream would be labelled as that one.
            if let Some(other) = shared {
                problems.push(Problem {
                    file: server.manifest_file.clone(),
                    field: "gateway.canary.endpoint".into(),
                    reason: format!(
                        "{}:{} is also an upstream of {:?} ({}); a canary runs on an upstream of its own",
                        upstream.0,
                        upstream.1,
                        other.id(),
                        other.manifest_file.display()
                    ),
                });
            }
        }
        if let Some(first) = paths.get(server.path.as_str()) {
            problems.push(Problem {
                file: server.manifest_file.clone(),
                field: "gateway.path".into(),
                reason: format!(
                    "{:?} is already the path of {:?} ({})",
                    server.path,
                    first.id(),
                    first.manifest_file.display()
                ),
            });
        } else {
            paths.insert(&server.path, server);
        }
    }
    problems
}

/// Two servers whose sidecar selectors can pick the same pod on the same port: both
/// EnvoyFilters would apply to that sidecar and put the gateway's filters (each with
/// its own server id) into it twice. One label set including the other is sure to;
/// disjoint keys could too, but only pods labelled for both, which is the teams' call.
fn shared_sidecars(servers: &[Server]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut seen: BTreeMap<(&str, u16), Vec<&Server>> = BTreeMap::new();
    for server in servers {
        let Some(sidecar) = &server.istio_sidecar else {
            continue;
        };
        let key = (sidecar.namespace.as_str(), sidecar.port);
        let earlier = seen.entry(key).or_default();
        let includes = |a: &BTreeMap<String, String>, b: &BTreeMap<String, String>| {
            a.iter().all(|(k, v)| b.get(k) == Some(v))
        };
        let clash = earlier.iter().find(|first| {
            first.istio_sidecar.as_ref().is_some_and(|theirs| {
                let (theirs, ours) = (&theirs.workload_labels, &sidecar.workload_labels);
                includes(theirs, ours) || includes(ours, theirs)
            })
        });
        match clash {
            Some(first) => problems.push(Problem {
                file: server.manifest_file.clone(),
                field: "gateway.istio_sidecar".into(),
                reason: format!(
                    "selects the pods of {:?} ({}) in {} on port {} (one label set includes the other): two EnvoyFilters would put the gateway's filters twice into one sidecar",
                    first.id(),
                    first.manifest_file.display(),
                    sidecar.namespace,
                    sidecar.port
                ),
            }),
            None => earlier.push(server),
        }
    }
    problems
}
