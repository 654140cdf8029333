//! The master keys that bind handshake-era sessions to agents (`--session-key-file`).
//!
//! The gateway never hands a server's `Mcp-Session-Id` to a client: the filter wraps it
//! into a reference bound to the verified agent and server
//! ([`mcp_filter_core::session_ref`]). The binding is an HMAC under a key derived from
//! a master key held here, so every replica that reads the same file gives the same
//! answer and no session state lives anywhere.
//!
//! File format: one key per line, at least [`MIN_KEY_BYTES`] bytes each (the line's
//! bytes as written, surrounding whitespace trimmed; e.g. `openssl rand -hex 32`);
//! blank lines and lines starting with `#` are ignored. The first key binds new
//! sessions; every key is tried when a reference is checked, so a new key can be put
//! first while references issued under the old one stay valid until it is removed.

use mcp_filter_core::session_ref::{self, ReferenceError};
use std::fmt;
use std::path::{Path, PathBuf};

/// Shortest master key accepted: 256 bits if every byte were random.
pub const MIN_KEY_BYTES: usize = 32;

/// The loaded master keys, never empty. `Debug` does not print them.
pub struct SessionKeys {
    keys: Vec<Box<[u8]>>,
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionKeys({} keys, redacted)", self.keys.len())
    }
}

/// A key file error: every problem found, each naming the file (and line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionKeyError {
    pub file: PathBuf,
    pub problems: Vec<String>,
}

impl fmt::Display for SessionKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problems.join("\n"))
    }
}

impl std::error::Error for SessionKeyError {}

impl SessionKeys {
    /// Keys from `path`; an unreadable file, a short key or no key at all is an error.
    pub fn load(path: &Path) -> Result<SessionKeys, SessionKeyError> {
        let bytes = std::fs::read(path).map_err(|e| SessionKeyError {
            file: path.to_owned(),
            problems: vec![format!("{}: cannot read: {e}", path.display())],
        })?;
        SessionKeys::parse(&bytes, path)
    }

    /// Parses key file contents; `path` names the file in errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<SessionKeys, SessionKeyError> {
        let file = path.display();
        let mut keys = Vec::new();
        let mut problems = Vec::new();
        for (index, line) in bytes.split(|b| *b == b'\n').enumerate() {
            let key = line.trim_ascii();
            if key.is_empty() || key.starts_with(b"#") {
                continue;
            }
            if key.len() < MIN_KEY_BYTES {
                problems.push(format!(
                    "{file}:{}: key is {} bytes; a session key needs at least {MIN_KEY_BYTES} (e.g. the output of `openssl rand -hex 32`)",
                    index + 1,
                    key.len()
                ));
                continue;
            }
            keys.push(Box::from(key));
        }
        if keys.is_empty() && problems.is_empty() {
            problems.push(format!(
                "{file}: holds no session key (one key per line, at least {MIN_KEY_BYTES} bytes; blank lines and # comments are ignored)"
            ));
        }
        if !problems.is_empty() {
            return Err(SessionKeyError {
                file: path.to_owned(),
                problems,
            });
        }
        Ok(SessionKeys { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The binding key for new sessions of `agent` on `server` (the first master key).
    pub fn binding_key(&self, server: &str, agent: &str) -> [u8; 32] {
        // `parse` never returns an empty set; the empty slice only keeps this total.
        let master = self.keys.first().map(|k| &k[..]).unwrap_or_default();
        session_ref::binding_key(master, server, agent)
    }

    /// The server's session id in `reference`, if one of the master keys bound it to
    /// `agent` on `server`.
    pub fn open(
        &self,
        server: &str,
        agent: &str,
        reference: &str,
    ) -> Result<String, ReferenceError> {
        let mut result = Err(ReferenceError::WrongBinding);
        for master in &self.keys {
            let key = session_ref::binding_key(master, server, agent);
            result = session_ref::unwrap(&key, reference);
            match result {
                // Malformed under one key is malformed under all.
                Ok(_) | Err(ReferenceError::Malformed) => break,
                Err(ReferenceError::WrongBinding) => {}
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "old-key-0123456789abcdef0123456789abcdef";
    const NEW: &str = "new-key-0123456789abcdef0123456789abcdef";

    fn keys(text: &str) -> Result<SessionKeys, String> {
        SessionKeys::parse(text.as_bytes(), Path::new("keys.txt")).map_err(|e| e.to_string())
    }

    #[test]
    fn comments_blank_lines_and_whitespace_are_ignored() {
        let k = keys(&format!(
            "# rotated 2026-01\n\n  {NEW}\r\n# old one\n{OLD}\n"
        ))
        .unwrap();
        assert_eq!(k.len(), 2);
        assert_eq!(
            k.binding_key("s", "a"),
            session_ref::binding_key(NEW.as_bytes(), "s", "a")
        );
        assert!(!format!("{k:?}").contains("key-"), "{k:?}");
    }

    /// One case per error, with the exact message (file, line, reason).
    #[test]
    fn errors_name_file_line_and_reason() {
        let table = [
            ("", "keys.txt: holds no session key (one key per line, at least 32 bytes; blank lines and # comments are ignored)"),
            ("# only a comment\n\n", "keys.txt: holds no session key (one key per line, at least 32 bytes; blank lines and # comments are ignored)"),
            (
                "# c\nshort\n0123456789abcdef0123456789abcde\n",
                "keys.txt:2: key is 5 bytes; a session key needs at least 32 (e.g. the output of `openssl rand -hex 32`)\n\
                 keys.txt:3: key is 31 bytes; a session key needs at least 32 (e.g. the output of `openssl rand -hex 32`)",
            ),
        ];
        for (text, message) in table {
            assert_eq!(keys(text).unwrap_err(), message, "{text:?}");
        }
        let missing = SessionKeys::load(Path::new("/nonexistent/keys.txt")).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "/nonexistent/keys.txt: cannot read: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn every_key_opens_references_and_the_first_binds_new_ones() {
        let old = keys(OLD).unwrap();
        let issued_before = session_ref::wrap(&old.binding_key("fd", "agent-a"), "sid-1").unwrap();
        // Rotation: the new key first, the old one kept for references already out.
        let rotated = keys(&format!("{NEW}\n{OLD}\n")).unwrap();
        assert_eq!(
            rotated.open("fd", "agent-a", &issued_before).unwrap(),
            "sid-1"
        );
        let issued_after =
            session_ref::wrap(&rotated.binding_key("fd", "agent-a"), "sid-2").unwrap();
        assert_eq!(
            rotated.open("fd", "agent-a", &issued_after).unwrap(),
            "sid-2"
        );
        assert_eq!(
            old.open("fd", "agent-a", &issued_after),
            Err(ReferenceError::WrongBinding)
        );
        // The old key removed: its references stop working.
        let new_only = keys(NEW).unwrap();
        assert_eq!(
            new_only.open("fd", "agent-a", &issued_before),
            Err(ReferenceError::WrongBinding)
        );
        // Another agent or server, or a malformed value, never opens one.
        assert_eq!(
            rotated.open("fd", "agent-b", &issued_before),
            Err(ReferenceError::WrongBinding)
        );
        assert_eq!(
            rotated.open("kb", "agent-a", &issued_before),
            Err(ReferenceError::WrongBinding)
        );
        assert_eq!(
            rotated.open("fd", "agent-a", "sid-1"),
            Err(ReferenceError::Malformed)
        );
    }
}
