//! Who is calling: the agent, and the human it acts for (if any), from verified claims.

use serde::Deserialize;
use std::collections::BTreeSet;

/// The claims the gateway reads from a verified token.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Claims {
    pub sub: Option<String>,
    pub azp: Option<String>,
    pub client_id: Option<String>,
    /// RFC 8693 section 4.1: the party acting on behalf of `sub`.
    pub act: Option<Actor>,
    /// RFC 8693 section 4.2 / RFC 9068: space-separated scopes.
    pub scope: Option<String>,
    /// Scopes as some issuers send them (a list or a space-separated string).
    pub scp: Option<Scp>,
    pub exp: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Actor {
    pub sub: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Scp {
    List(Vec<String>),
    Text(String),
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub agent: String,
    pub user: Option<String>,
    pub scopes: BTreeSet<String>,
}

/// Identity rules (seed: "the agent identity versus user identity distinction"):
/// a token with an `act` claim is a delegation (RFC 8693): the agent is the actor and
/// the user is `sub`. Otherwise the token is the agent's own: the agent is the OAuth
/// client (`azp`, else `client_id`, else `sub`) and there is no user.
pub fn identify(claims: &Claims) -> Option<Identity> {
    let non_empty = |value: &Option<String>| value.clone().filter(|v| !v.is_empty());
    let (agent, user) = match &claims.act {
        Some(actor) => (non_empty(&actor.sub)?, Some(non_empty(&claims.sub)?)),
        None => (
            non_empty(&claims.azp)
                .or_else(|| non_empty(&claims.client_id))
                .or_else(|| non_empty(&claims.sub))?,
            None,
        ),
    };
    let mut scopes: BTreeSet<String> = BTreeSet::new();
    if let Some(text) = &claims.scope {
        scopes.extend(text.split_whitespace().map(str::to_owned));
    }
    match &claims.scp {
        Some(Scp::List(list)) => scopes.extend(list.iter().cloned()),
        Some(Scp::Text(text)) => scopes.extend(text.split_whitespace().map(str::to_owned)),
        None => {}
    }
    Some(Identity {
        agent,
        user,
        scopes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn who(claims: serde_json::Value) -> Option<(String, Option<String>, Vec<String>)> {
        let claims: Claims = serde_json::from_value(claims).unwrap();
        identify(&claims).map(|i| (i.agent, i.user, i.scopes.into_iter().collect()))
    }

    #[test]
    fn identity_rules() {
        let table = [
            (
                json!({"sub": "alice", "act": {"sub": "agent-prod-001"}, "azp": "portal", "scope": "a b"}),
                Some((
                    "agent-prod-001".into(),
                    Some("alice".into()),
                    vec!["a".into(), "b".into()],
                )),
            ),
            (
                json!({"sub": "svc-account", "azp": "agent-7", "scp": ["x", "y"]}),
                Some(("agent-7".into(), None, vec!["x".into(), "y".into()])),
            ),
            (
                json!({"sub": "svc-account", "client_id": "agent-8", "scp": "x"}),
                Some(("agent-8".into(), None, vec!["x".into()])),
            ),
            (
                json!({"sub": "agent-9"}),
                Some(("agent-9".into(), None, vec![])),
            ),
            (
                json!({"azp": "", "sub": "agent-10"}),
                Some(("agent-10".into(), None, vec![])),
            ),
            // Delegation without an actor subject, or without a user: no identity.
            (json!({"sub": "alice", "act": {}}), None),
            (json!({"act": {"sub": "agent"}}), None),
            (json!({"scope": "a"}), None),
        ];
        for (claims, expected) in table {
            assert_eq!(who(claims.clone()), expected, "{claims}");
        }
    }
}
