//! Session references: a handshake-era `Mcp-Session-Id` bound to the agent that opened
//! the session, with no state in any Envoy.
//!
//! MCP 2025-03-26 .. 2025-11-25 (transport, "Session Management"): the server names a
//! session in the `Mcp-Session-Id` header of its `initialize` response and the client
//! sends it back on every later request (POST, the GET stream, DELETE). Anyone holding
//! the id can use the session, so the gateway never hands the server's id to the
//! client. It hands out a *reference* instead:
//!
//! ```text
//! mcp1.<base64url(server session id)>.<base64url(tag)>
//! tag = HMAC-SHA256(binding_key, server session id), first 16 bytes
//! binding_key = HMAC-SHA256(master key, "mcp-session-binding/v1" 0 server_id 0 agent)
//! ```
//!
//! The authz-service holds the master key. For an allowed `initialize` it gives the
//! filter the binding key of the verified agent (ext_authz dynamic metadata); the
//! filter wraps the server's id in its response. On every later request the
//! authz-service recomputes the binding key from the *verified* agent, checks the tag,
//! and sends the server its own id; another agent's reference, a forged one or a
//! bare server id fails the check. Every Envoy worker and replica gives the same
//! answer, because the answer depends only on the key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Prefix (and format version) of every reference.
pub const PREFIX: &str = "mcp1.";
/// Bytes of the HMAC kept in a reference (128 bits).
pub const TAG_BYTES: usize = 16;
/// Longest server session id the gateway wraps. MCP asks for "a globally unique and
/// cryptographically secure" id of visible ASCII; a few hundred bytes is generous.
pub const MAX_SESSION_ID_BYTES: usize = 256;
/// Longest reference accepted (the wrapped id plus prefix, separators and tag).
pub const MAX_REFERENCE_BYTES: usize =
    PREFIX.len() + (MAX_SESSION_ID_BYTES * 4).div_ceil(3) + 1 + 22;
/// Domain separation of the binding key derivation.
const BINDING_LABEL: &[u8] = b"mcp-session-binding/v1";

/// The key that binds sessions of `agent` on `server_id`, derived from a master key.
pub fn binding_key(master: &[u8], server_id: &str, agent: &str) -> [u8; 32] {
    let mut mac = keyed(master);
    mac.update(BINDING_LABEL);
    mac.update(&[0]);
    mac.update(server_id.as_bytes());
    mac.update(&[0]);
    mac.update(agent.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Wraps a server's session id into a reference, or `None` for an id that is not
/// a plain visible-ASCII value of at most [`MAX_SESSION_ID_BYTES`] (MCP: "MUST only
/// contain visible ASCII characters (ranging from 0x21 to 0x7E)").
pub fn wrap(binding_key: &[u8], session_id: &str) -> Option<String> {
    let valid = !session_id.is_empty()
        && session_id.len() <= MAX_SESSION_ID_BYTES
        && session_id.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if !valid {
        return None;
    }
    let tag = tag(binding_key, session_id);
    Some(format!(
        "{PREFIX}{}.{}",
        URL_SAFE_NO_PAD.encode(session_id),
        URL_SAFE_NO_PAD.encode(tag)
    ))
}

/// Why a reference is not accepted. The client is told only that the session is not
/// one of its own; the reason is for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("not a session reference issued by this gateway")]
    Malformed,
    #[error("session reference bound to another agent or server, or forged")]
    WrongBinding,
}

/// The server's session id inside `reference`, if the reference was issued for the
/// binding key's agent and server. The tag is compared in constant time.
pub fn unwrap(binding_key: &[u8], reference: &str) -> Result<String, ReferenceError> {
    if reference.len() > MAX_REFERENCE_BYTES {
        return Err(ReferenceError::Malformed);
    }
    let rest = reference
        .strip_prefix(PREFIX)
        .ok_or(ReferenceError::Malformed)?;
    let (id, tag) = rest.split_once('.').ok_or(ReferenceError::Malformed)?;
    let id = URL_SAFE_NO_PAD
        .decode(id)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or(ReferenceError::Malformed)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| ReferenceError::Malformed)?;
    if tag.len() != TAG_BYTES {
        return Err(ReferenceError::Malformed);
    }
    let mut mac = keyed(binding_key);
    mac.update(id.as_bytes());
    mac.verify_truncated_left(&tag)
        .map_err(|_| ReferenceError::WrongBinding)?;
    Ok(id)
}

/// The server's session id a reference carries, unchecked (the filter compares a
/// server's echo of its id with the reference it was sent; the authz-service has
/// already checked the tag).
pub fn session_id_of(reference: &str) -> Option<String> {
    let (id, _) = reference.strip_prefix(PREFIX)?.split_once('.')?;
    let bytes = URL_SAFE_NO_PAD.decode(id).ok()?;
    String::from_utf8(bytes).ok()
}

/// What the filter does with the `Mcp-Session-Id` a server puts in its response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseSession {
    /// Replace the server's id with this reference.
    Set(String),
    /// Remove the header: the id cannot be bound to the caller (no binding key, or
    /// not a value the gateway wraps), so the client must not get it raw.
    Remove,
}

/// Decides the client's view of a server's `Mcp-Session-Id`:
/// - the server echoes the id of the reference the client sent: the client gets its
///   reference back;
/// - otherwise, with the binding key the authz-service gave for this (`initialize`)
///   request: a new reference;
/// - otherwise the header goes, so that an unbound id never reaches a client.
pub fn response_session(
    server_value: &str,
    binding_key_hex: Option<&str>,
    request_reference: Option<&str>,
) -> ResponseSession {
    if let Some(reference) = request_reference {
        if session_id_of(reference).as_deref() == Some(server_value) {
            return ResponseSession::Set(reference.to_owned());
        }
    }
    let key = binding_key_hex
        .and_then(|text| hex::decode(text).ok())
        .filter(|key| key.len() == 32);
    match key.and_then(|key| wrap(&key, server_value)) {
        Some(reference) => ResponseSession::Set(reference),
        None => ResponseSession::Remove,
    }
}

/// What the audit record and the session metrics name a session by: not reversible to
/// the reference (which is a bearer secret), the same for every request of the session.
pub fn audit_ref(reference: &str) -> String {
    let digest = Sha256::digest(reference.as_bytes());
    format!("sha256:{}", hex::encode(&digest[..16]))
}

fn tag(binding_key: &[u8], session_id: &str) -> [u8; TAG_BYTES] {
    let mut mac = keyed(binding_key);
    mac.update(session_id.as_bytes());
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; TAG_BYTES];
    out.copy_from_slice(&full[..TAG_BYTES]);
    out
}

fn keyed(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length (RFC 2104 section 2): `new_from_slice` fails only
    // for MACs with fixed-size keys, so the fallback (an empty key) is never taken.
    HmacSha256::new_from_slice(key)
        .unwrap_or_else(|_| <HmacSha256 as hmac::digest::KeyInit>::new(&Default::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASTER: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn a_reference_opens_only_for_its_agent_and_server() {
        let alice = binding_key(MASTER, "financial-data", "agent-a");
        let reference = wrap(&alice, "sid-123").unwrap();
        assert!(reference.starts_with(PREFIX));
        assert!(reference.bytes().all(|b| (0x21..=0x7e).contains(&b)));
        assert_eq!(unwrap(&alice, &reference).unwrap(), "sid-123");
        assert_eq!(session_id_of(&reference).as_deref(), Some("sid-123"));

        let bob = binding_key(MASTER, "financial-data", "agent-b");
        assert_eq!(unwrap(&bob, &reference), Err(ReferenceError::WrongBinding));
        let other_server = binding_key(MASTER, "kb", "agent-a");
        assert_eq!(
            unwrap(&other_server, &reference),
            Err(ReferenceError::WrongBinding)
        );
        let other_master = binding_key(
            b"another key of enough length....",
            "financial-data",
            "agent-a",
        );
        assert_eq!(
            unwrap(&other_master, &reference),
            Err(ReferenceError::WrongBinding)
        );
    }

    #[test]
    fn derivation_separates_server_and_agent() {
        // "a\0b" + "c" and "a" + "b\0c" must not collide.
        assert_ne!(
            binding_key(MASTER, "a", "bc"),
            binding_key(MASTER, "ab", "c")
        );
    }

    #[test]
    fn swapped_ids_and_tampered_tags_fail() {
        let key = binding_key(MASTER, "s", "a");
        let one = wrap(&key, "one").unwrap();
        let two = wrap(&key, "two").unwrap();
        let (_, tag_two) = two.rsplit_once('.').unwrap();
        let (prefix_one, _) = one.rsplit_once('.').unwrap();
        let spliced = format!("{prefix_one}.{tag_two}");
        assert_eq!(unwrap(&key, &spliced), Err(ReferenceError::WrongBinding));
        for bad in [
            "",
            "sid-123",
            "mcp1.",
            "mcp1.abc",
            "mcp1.abc.",
            "mcp1.***.AAAAAAAAAAAAAAAAAAAAAA",
            "mcp2.b25l.AAAAAAAAAAAAAAAAAAAAAA",
            "mcp1.b25l.AAAA",
        ] {
            assert_eq!(unwrap(&key, bad), Err(ReferenceError::Malformed), "{bad}");
        }
        let long = format!(
            "{PREFIX}{}.AAAAAAAAAAAAAAAAAAAAAA",
            "A".repeat(MAX_REFERENCE_BYTES)
        );
        assert_eq!(unwrap(&key, &long), Err(ReferenceError::Malformed));
    }

    #[test]
    fn only_visible_ascii_ids_of_bounded_size_are_wrapped() {
        let key = binding_key(MASTER, "s", "a");
        assert!(wrap(&key, "").is_none());
        assert!(wrap(&key, "has space").is_none());
        assert!(wrap(&key, "é").is_none());
        assert!(wrap(&key, &"x".repeat(MAX_SESSION_ID_BYTES + 1)).is_none());
        let longest = wrap(&key, &"~".repeat(MAX_SESSION_ID_BYTES)).unwrap();
        assert!(longest.len() <= MAX_REFERENCE_BYTES);
        assert!(unwrap(&key, &longest).is_ok());
    }

    #[test]
    fn server_ids_reach_clients_only_as_references() {
        let key = binding_key(MASTER, "s", "a");
        let hex_key = hex::encode(key);
        // initialize answered with a session: wrapped with the caller's key.
        let ResponseSession::Set(reference) = response_session("sid-1", Some(&hex_key), None)
        else {
            panic!("not wrapped");
        };
        assert_eq!(unwrap(&key, &reference).unwrap(), "sid-1");
        // A later response echoing the id: the client keeps its reference.
        assert_eq!(
            response_session("sid-1", None, Some(&reference)),
            ResponseSession::Set(reference.clone())
        );
        // A different id with no key, no key at all, a bad key, an unwrappable id.
        assert_eq!(
            response_session("sid-2", None, Some(&reference)),
            ResponseSession::Remove
        );
        assert_eq!(
            response_session("sid-1", None, None),
            ResponseSession::Remove
        );
        assert_eq!(
            response_session("sid-1", Some("zz"), None),
            ResponseSession::Remove
        );
        assert_eq!(
            response_session("sid-1", Some(&hex_key[..62]), None),
            ResponseSession::Remove
        );
        assert_eq!(
            response_session("has space", Some(&hex_key), None),
            ResponseSession::Remove
        );
    }

    #[test]
    fn audit_ref_is_stable_and_hides_the_reference() {
        let key = binding_key(MASTER, "s", "a");
        let reference = wrap(&key, "sid").unwrap();
        let audit = audit_ref(&reference);
        assert_eq!(audit, audit_ref(&reference));
        assert!(audit.starts_with("sha256:") && audit.len() == 7 + 32);
        assert!(!audit.contains(&reference) && !audit.contains("sid"));
    }
}
