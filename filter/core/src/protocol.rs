//! MCP protocol revisions and the two transport eras the gateway understands.

/// The first stateless revision: no `initialize`, no session, and the client mirrors
/// the method, name and version into `Mcp-Method`, `Mcp-Name` and
/// `MCP-Protocol-Version` on every request.
pub const STATELESS_SINCE: &str = "2026-07-28";

/// The revision a server assumes when a request names none (MCP 2025-06-18 transport,
/// "Protocol Version Header": "the server SHOULD assume protocol version 2025-03-26").
pub const ASSUMED_WHEN_ABSENT: &str = "2025-03-26";

/// `params._meta` key that carries the revision in 2026-07-28 requests.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// How a request's transport works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// 2024-11-05 .. 2025-11-25: `initialize`, `Mcp-Session-Id`, labels from the body only.
    Handshake,
    /// 2026-07-28 and later: every request self-describing, mirrored headers required.
    Stateless,
}

/// A protocol revision string shaped `YYYY-MM-DD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolVersion(String);

impl ProtocolVersion {
    /// Accepts only the `YYYY-MM-DD` shape MCP revisions have. Unknown but well-formed
    /// revisions are accepted: the server, not the gateway, decides what it supports.
    pub fn parse(value: &str) -> Option<ProtocolVersion> {
        let bytes = value.as_bytes();
        let shaped = bytes.len() == 10
            && bytes.iter().enumerate().all(|(i, b)| match i {
                4 | 7 => *b == b'-',
                _ => b.is_ascii_digit(),
            });
        shaped.then(|| ProtocolVersion(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// [`ASSUMED_WHEN_ABSENT`], for requests that name no revision.
    pub fn assumed() -> ProtocolVersion {
        ProtocolVersion(ASSUMED_WHEN_ABSENT.to_owned())
    }

    /// Revisions are dates, so ISO order is time order. A future revision is treated
    /// as stateless: it can only add to what 2026-07-28 requires, and trusting its
    /// headers unchecked would be the unsafe guess.
    pub fn era(&self) -> Era {
        if self.0.as_str() >= STATELESS_SINCE {
            Era::Stateless
        } else {
            Era::Handshake
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eras_by_revision() {
        let table = [
            ("2024-11-05", Era::Handshake),
            ("2025-03-26", Era::Handshake),
            ("2025-06-18", Era::Handshake),
            ("2025-11-25", Era::Handshake),
            ("2026-07-28", Era::Stateless),
            ("2027-01-01", Era::Stateless),
        ];
        for (version, era) in table {
            assert_eq!(
                ProtocolVersion::parse(version).unwrap().era(),
                era,
                "{version}"
            );
        }
    }

    #[test]
    fn malformed_revisions_are_refused() {
        for value in [
            "",
            "2026-7-28",
            "2026/07/28",
            "latest",
            "2026-07-28 ",
            "２０２６-07-28",
        ] {
            assert!(ProtocolVersion::parse(value).is_none(), "{value:?}");
        }
    }
}
