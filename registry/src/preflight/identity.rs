//! The test identities' tokens: from a command, a file, or minted with the platform's
//! pre-production key (`preflight.yaml`). Token values are never printed or reported;
//! reports name the identity and where its token came from.

use super::config::{Config, Mint, NextToken, Publish, Role, TokenSource};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A private key and the one algorithm it signs with: pinned by the key type, never
/// chosen per token.
#[derive(Clone)]
pub struct SigningKey {
    key: EncodingKey,
    pub algorithm: Algorithm,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({:?})", self.algorithm)
    }
}

impl SigningKey {
    /// An RSA (RS256), P-256 (ES256) or Ed25519 (EdDSA) private key in PEM.
    pub fn from_pem(pem: &[u8]) -> Result<SigningKey, String> {
        let candidates = [
            (EncodingKey::from_rsa_pem(pem), Algorithm::RS256),
            (EncodingKey::from_ec_pem(pem), Algorithm::ES256),
            (EncodingKey::from_ed_pem(pem), Algorithm::EdDSA),
        ];
        for (key, algorithm) in candidates {
            let Ok(key) = key else { continue };
            // A key of another type can parse as PEM; signing tells for sure.
            if jsonwebtoken::encode(&Header::new(algorithm), &json!({}), &key).is_ok() {
                return Ok(SigningKey { key, algorithm });
            }
        }
        Err("not an RSA, P-256 or Ed25519 private key in PEM".into())
    }

    /// The public JWK (with `kid`, `alg`, `use: sig`) a JWKS publishes for this key.
    pub fn public_jwk(&self, kid: &str) -> Result<Value, String> {
        let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&self.key, self.algorithm)
            .map_err(|e| format!("cannot derive the public key: {e}"))?;
        let mut value = serde_json::to_value(jwk).map_err(|e| e.to_string())?;
        value["kid"] = json!(kid);
        value["use"] = json!("sig");
        Ok(value)
    }

    /// A JWT of `claims` with `kid` in its header, signed with this key's algorithm.
    pub fn sign(&self, kid: &str, claims: &Value) -> Result<String, String> {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &self.key).map_err(|e| format!("cannot sign: {e}"))
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The claims of a minted token: the agent is `sub` and `azp` (the authz-service reads
/// `azp`, then `client_id`, then `sub`).
pub fn claims(mint: &Mint, agent: &str, scopes: &[String], issued: i64, expires: i64) -> Value {
    json!({
        "iss": mint.issuer,
        "aud": mint.audience,
        "sub": agent,
        "azp": agent,
        "iat": issued,
        "exp": expires,
        "scope": scopes.join(" "),
    })
}

/// A token and where it came from (for reports).
pub struct Token {
    pub value: String,
    pub source: String,
    /// The agent id it names, when known (minted tokens; others are decoded).
    pub agent: Option<String>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token(from {})", self.source)
    }
}

/// The token of `role`, with `scopes` when it is minted (the role's explicit source
/// wins over minting). `None`: no source configured.
pub async fn token(
    config: &Config,
    role: Role,
    scopes: &[String],
) -> Option<Result<Token, String>> {
    if let Some(source) = config.identities.get(&role) {
        return Some(from_source(source).await.map(|value| {
            let agent = agent_of(&value);
            Token {
                value,
                source: describe(source),
                agent,
            }
        }));
    }
    let mint = config.mint.as_ref()?;
    let agent = mint.agents.get(&role).cloned().unwrap_or_default();
    let issued = now();
    let (iat, exp) = if role == Role::Expired {
        // Past the service's leeway by a minute: expired for it too.
        let past = issued - mint.leeway.as_secs() as i64 - 60;
        (past - mint.ttl.as_secs() as i64, past)
    } else {
        (issued, issued + mint.ttl.as_secs() as i64)
    };
    let claims = claims(mint, &agent, scopes, iat, exp);
    Some(mint.key.sign(&mint.kid, &claims).map(|value| Token {
        value,
        source: format!("minted ({}, kid {})", mint.key_algorithm(), mint.kid),
        agent: Some(agent),
    }))
}

impl Mint {
    fn key_algorithm(&self) -> String {
        format!("{:?}", self.key.algorithm)
    }
}

/// The rotation check's token, signed by the next key.
pub async fn next_token(
    config: &Config,
    next: &NextToken,
    scopes: &[String],
) -> Result<Token, String> {
    match next {
        NextToken::Command(argv) => {
            let value = run_token_command(argv).await?;
            let agent = agent_of(&value);
            Ok(Token {
                value,
                source: format!("token_command {}", argv[0]),
                agent,
            })
        }
        NextToken::Mint { key, kid } => {
            let mint = config
                .mint
                .as_ref()
                .ok_or("rotation.next_key_file needs mint")?;
            let agent = mint.agents.get(&Role::Schema).cloned().unwrap_or_default();
            let issued = now();
            let claims = claims(
                mint,
                &agent,
                scopes,
                issued,
                issued + mint.ttl.as_secs() as i64,
            );
            Ok(Token {
                value: key.sign(kid, &claims)?,
                source: format!("minted with the next key (kid {kid})"),
                agent: Some(agent),
            })
        }
    }
}

fn describe(source: &TokenSource) -> String {
    match source {
        TokenSource::Command(argv) => format!("token_command {}", argv[0]),
        TokenSource::File(path) => format!("token_file {}", path.display()),
    }
}

async fn from_source(source: &TokenSource) -> Result<String, String> {
    match source {
        TokenSource::Command(argv) => run_token_command(argv).await,
        TokenSource::File(path) => {
            let text = tokio::fs::read_to_string(path)
                .await
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            non_empty(text.trim(), &path.display().to_string())
        }
    }
}

fn non_empty(token: &str, from: &str) -> Result<String, String> {
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(format!("{from} gave no token (one line expected)"));
    }
    Ok(token.to_owned())
}

/// Runs argv (no shell), 10 s at most; stdout is the token. Its stderr is not shown:
/// a token program may print secrets there.
pub async fn run_token_command(argv: &[String]) -> Result<String, String> {
    let output = run(argv, Duration::from_secs(10)).await?;
    non_empty(output.trim(), &argv[0])
}

/// Runs argv (no shell) within `limit`; its stdout.
pub async fn run(argv: &[String], limit: Duration) -> Result<String, String> {
    let mut command = tokio::process::Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(limit, command.output())
        .await
        .map_err(|_| format!("{} did not finish within {}s", argv[0], limit.as_secs()))?
        .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
    if !output.status.success() {
        return Err(format!("{} exited with {}", argv[0], output.status));
    }
    String::from_utf8(output.stdout).map_err(|_| format!("{} printed no UTF-8", argv[0]))
}

/// The payload of a JWT, not verified (only to name its agent and scopes in reports).
pub fn payload(token: &str) -> Option<Value> {
    let part = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The agent a token names, as the authz-service picks it (`azp`, `client_id`, `sub`).
pub fn agent_of(token: &str) -> Option<String> {
    let claims = payload(token)?;
    ["azp", "client_id", "sub"]
        .iter()
        .filter_map(|k| claims.get(*k).and_then(Value::as_str))
        .find(|v| !v.is_empty())
        .map(str::to_owned)
}

/// The scopes a token carries (`scope` string or `scp` list/string).
pub fn scopes_of(token: &str) -> Option<Vec<String>> {
    let claims = payload(token)?;
    let value = claims.get("scope").or_else(|| claims.get("scp"))?;
    Some(match value {
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    })
}

/// What undoes the rotation check's publication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undo {
    /// Remove the key preflight added, by its kid, from the JWKS file as it is *then*:
    /// a real rotation made meanwhile (another key added or removed) is kept, which
    /// writing back the text read before publishing would wipe. When the file is still
    /// exactly what preflight wrote, the text from before comes back byte for byte.
    JwksKid {
        path: PathBuf,
        kid: String,
        before: String,
        written: String,
    },
    /// The platform's restore program.
    Command(Vec<String>),
}

/// The publication not yet undone, process-wide: the guard's drop, the panic hook and
/// the signal handler (cli.rs) all reach it, and whichever takes it first undoes it,
/// so it is undone once.
static PENDING: Mutex<Option<Undo>> = Mutex::new(None);

fn pending() -> std::sync::MutexGuard<'static, Option<Undo>> {
    // A panic while holding the lock must not stop the restore that follows it.
    PENDING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Undoes the pending publication, if there is one. `None`: nothing was pending.
/// Blocking (file I/O, the restore program for at most 60 s): for drops, the panic
/// hook and the signal handler, where nothing can be awaited.
pub fn restore_pending() -> Option<Result<(), String>> {
    let undo = pending().take()?;
    Some(undo_now(&undo))
}

/// Armed before the next key is published, so the key never stays trusted: dropped
/// (the check returns early, its future is dropped on a signal, a panic unwinds) it
/// undoes the publication; [`RestoreGuard::restore`] does it on the normal path and
/// reports how it went. With `panic = "abort"` (the release profile) nothing unwinds:
/// the panic hook calls [`restore_pending`] instead (cli.rs).
#[must_use = "dropping the guard undoes the publication at once"]
pub struct RestoreGuard(());

impl RestoreGuard {
    fn arm(undo: Undo) -> RestoreGuard {
        *pending() = Some(undo);
        RestoreGuard(())
    }

    /// Undoes the publication now (off the async workers).
    pub async fn restore(self) -> Result<(), String> {
        tokio::task::spawn_blocking(restore_pending)
            .await
            .map_err(|e| format!("the restore did not finish: {e}"))?
            .unwrap_or(Ok(()))
    }
}

impl Drop for RestoreGuard {
    fn drop(&mut self) {
        if let Some(Err(reason)) = restore_pending() {
            eprintln!("preflight: the rotation check's key was not removed: {reason}");
        }
    }
}

/// A publication that failed; `guard` is armed when something may have changed (a
/// publish program may have done half its work), so it is undone too.
pub struct NotPublished {
    pub reason: String,
    pub guard: Option<RestoreGuard>,
}

impl NotPublished {
    fn before_any_change(reason: String) -> NotPublished {
        NotPublished {
            reason,
            guard: None,
        }
    }
}

/// Makes the next key known to the authz-service's JWKS. The guard is armed before
/// anything changes.
pub async fn publish(publish: &Publish, jwk: &Value) -> Result<RestoreGuard, NotPublished> {
    match publish {
        Publish::JwksFile(path) => {
            let kid = jwk.get("kid").and_then(Value::as_str).unwrap_or_default();
            let before = std::fs::read_to_string(path).map_err(|e| {
                NotPublished::before_any_change(format!("cannot read {}: {e}", path.display()))
            })?;
            let mut jwks = parse_jwks(path, &before).map_err(NotPublished::before_any_change)?;
            let keys = jwks["keys"].as_array_mut().expect("read_jwks checked");
            if keys
                .iter()
                .any(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
            {
                // Not preflight's to remove afterwards.
                return Err(NotPublished::before_any_change(format!(
                    "{} already holds kid {kid:?}: preflight only publishes (and removes) a key it adds",
                    path.display()
                )));
            }
            keys.push(jwk.clone());
            let written = jwks.to_string();
            let guard = RestoreGuard::arm(Undo::JwksKid {
                path: path.clone(),
                kid: kid.to_owned(),
                before,
                written: written.clone(),
            });
            // A failed write leaves the file as it was; removing the kid is then a no-op.
            match write_atomically(path, &written) {
                Ok(()) => Ok(guard),
                Err(reason) => Err(NotPublished {
                    reason,
                    guard: Some(guard),
                }),
            }
        }
        Publish::Commands { publish, restore } => {
            let guard = RestoreGuard::arm(Undo::Command(restore.clone()));
            match run(publish, Duration::from_secs(60)).await {
                Ok(_) => Ok(guard),
                Err(reason) => Err(NotPublished {
                    reason,
                    guard: Some(guard),
                }),
            }
        }
    }
}

fn read_jwks(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_jwks(path, &text)
}

fn parse_jwks(path: &Path, text: &str) -> Result<Value, String> {
    let jwks: Value =
        serde_json::from_str(text).map_err(|e| format!("{} is not a JWKS: {e}", path.display()))?;
    if !jwks.get("keys").is_some_and(Value::is_array) {
        return Err(format!("{} has no \"keys\" list", path.display()));
    }
    Ok(jwks)
}

/// Undoes one publication, blocking.
pub fn undo_now(undo: &Undo) -> Result<(), String> {
    match undo {
        Undo::JwksKid {
            path,
            kid,
            before,
            written,
        } => match std::fs::read_to_string(path) {
            // Untouched since: the platform's own text back, formatting included.
            Ok(now) if now == *written => write_atomically(path, before),
            _ => remove_kid(path, kid),
        },
        Undo::Command(argv) => run_blocking(argv, Duration::from_secs(60)),
    }
}

/// Drops every key with `kid` from the JWKS file as it is now, keeping the rest (and
/// the file untouched when it holds no such key).
pub fn remove_kid(path: &Path, kid: &str) -> Result<(), String> {
    let mut jwks = read_jwks(path)?;
    let keys = jwks["keys"].as_array_mut().expect("read_jwks checked");
    let before = keys.len();
    keys.retain(|k| k.get("kid").and_then(Value::as_str) != Some(kid));
    if keys.len() == before {
        return Ok(());
    }
    write_atomically(path, &jwks.to_string())
}

/// Runs argv (no shell) within `limit`, blocking: the restore program, where nothing
/// can be awaited.
fn run_blocking(argv: &[String], limit: Duration) -> Result<(), String> {
    let mut child = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
    let start = std::time::Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("{} exited with {status}", argv[0])),
            Ok(None) if start.elapsed() >= limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} did not finish within {}s",
                    argv[0],
                    limit.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("cannot wait for {}: {e}", argv[0])),
        }
    }
}

/// A watcher of the file never reads half of it.
fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    let temp = path.with_extension(format!("preflight-{}", std::process::id()));
    let written = std::fs::write(&temp, text)
        .map_err(|e| format!("cannot write {}: {e}", temp.display()))
        .and_then(|()| {
            std::fs::rename(&temp, path)
                .map_err(|e| format!("cannot replace {}: {e}", path.display()))
        });
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_claims_are_read_without_verification() {
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"s","azp":"agent-7","scope":"a b"}"#);
        let token = format!("x.{body}.y");
        assert_eq!(agent_of(&token).as_deref(), Some("agent-7"));
        assert_eq!(scopes_of(&token), Some(vec!["a".into(), "b".into()]));
        assert_eq!(agent_of("not-a-jwt"), None);
    }

    #[test]
    fn a_non_key_is_refused() {
        assert_eq!(
            SigningKey::from_pem(b"-----BEGIN NOTHING-----\n-----END NOTHING-----\n").unwrap_err(),
            "not an RSA, P-256 or Ed25519 private key in PEM"
        );
    }

    fn jwks(kids: &[&str]) -> String {
        let keys: Vec<Value> = kids
            .iter()
            .map(|k| json!({"kid": k, "kty": "oct"}))
            .collect();
        json!({"keys": keys}).to_string()
    }

    fn kids(path: &Path) -> Vec<String> {
        let jwks: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    }

    // One test: the pending publication is process-wide.
    #[tokio::test]
    async fn the_guard_removes_only_the_added_kid_on_every_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, jwks(&["current"])).unwrap();
        let file = Publish::JwksFile(path.clone());
        let next = json!({"kid": "preflight-next", "kty": "oct"});

        // Untouched meanwhile: the text comes back byte for byte.
        let original = "{\n  \"keys\": [{\"kid\": \"current\", \"kty\": \"oct\"}]\n}\n";
        std::fs::write(&path, original).unwrap();
        let guard = publish(&file, &next).await.ok().unwrap();
        assert_eq!(kids(&path), ["current", "preflight-next"]);
        guard.restore().await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), original);

        // Normal path: restore() removes the key, keeping a rotation made meanwhile
        // (the old code wrote back the text it read, wiping "rotated-in").
        let guard = publish(&file, &next).await.ok().unwrap();
        assert_eq!(kids(&path), ["current", "preflight-next"]);
        let mut meanwhile: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        meanwhile["keys"]
            .as_array_mut()
            .unwrap()
            .push(json!({"kid": "rotated-in", "kty": "oct"}));
        std::fs::write(&path, meanwhile.to_string()).unwrap();
        guard.restore().await.unwrap();
        assert_eq!(kids(&path), ["current", "rotated-in"]);

        // Dropped (an early return, a future dropped on a signal, an unwind).
        let guard = publish(&file, &next).await.ok().unwrap();
        drop(guard);
        assert_eq!(kids(&path), ["current", "rotated-in"]);
        assert!(restore_pending().is_none(), "undone once");

        // Without the guard (the signal handler, the panic hook): restore_pending.
        let guard = publish(&file, &next).await.ok().unwrap();
        assert_eq!(restore_pending(), Some(Ok(())));
        assert_eq!(kids(&path), ["current", "rotated-in"]);
        drop(guard); // nothing left to undo
        assert_eq!(kids(&path), ["current", "rotated-in"]);

        // A kid the file already holds is not preflight's to add or remove.
        let held = json!({"kid": "current", "kty": "oct"});
        let refused = publish(&file, &held).await.err().unwrap();
        assert!(refused.guard.is_none());
        assert!(refused.reason.ends_with("already holds kid \"current\": preflight only publishes (and removes) a key it adds"), "{}", refused.reason);

        // A publish program that fails partway is still undone.
        let marker = dir.path().join("restored");
        let commands = Publish::Commands {
            publish: vec!["false".into()],
            restore: vec!["touch".into(), marker.display().to_string()],
        };
        let failed = publish(&commands, &Value::Null).await.err().unwrap();
        assert_eq!(failed.reason, "false exited with exit status: 1");
        failed.guard.unwrap().restore().await.unwrap();
        assert!(marker.exists(), "the restore program ran");
    }
}
