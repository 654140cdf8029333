"""The authz-service for tests and the demo, and the tokens it accepts.

One signing key and one session key per process: every authz-service started here
trusts the one and binds sessions with the other, so a token minted once works against
any of them, and so does a session reference (like replicas sharing a Secret).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from functools import lru_cache
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from .envoy import connection_manager, filter_settings, routes, wasm_plugin_configs
from .observe import service_metrics
from . import single
from .procs import ROOT, Process, free_port, wait_for_http

ISSUER = "https://issuer.demo.test"
RESOURCE = "https://gateway.demo.test/mcp"
METADATA_URL = "https://gateway.demo.test/.well-known/oauth-protected-resource/mcp"
KID = "demo-2026"
# AUTHZ_BIN: another build to run the same tests against (as examples/check_load.rs).
BINARY = Path(os.environ.get("AUTHZ_BIN", ROOT / "target" / "release" / "mcp-authz-service"))
READ_SCOPES = " ".join(
    f"mcp.server.financial-data:{area}.read" for area in ("tools", "resources", "prompts")
)


@lru_cache(maxsize=1)
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@lru_cache(maxsize=1)
def session_key() -> str:
    """The session binding master key of this run (64 hex characters, 256 bits)."""
    return secrets.token_hex(32)


def jwks() -> dict:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signing_key().public_key()))
    jwk.update(kid=KID, alg="RS256", use="sig")
    return {"keys": [jwk]}


def token(agent: str, scopes: str = READ_SCOPES, user: str | None = None, **claims) -> str:
    """An access token for the gateway. With `user`, a delegation (RFC 8693 `act`):
    the user is `sub`, the agent the actor; otherwise the agent's own token."""
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": RESOURCE, "iat": now, "exp": now + 600, "scope": scopes}
    if user:
        payload.update(sub=user, act={"sub": agent}, azp="agent-portal")
    else:
        payload.update(sub=agent, azp=agent)
    payload.update(claims)
    return jwt.encode(payload, signing_key(), algorithm="RS256", headers={"kid": KID})


def bearer(agent: str = "agent-under-test", scopes: str = READ_SCOPES, **kwargs) -> tuple[str, str]:
    return ("authorization", f"Bearer {token(agent, scopes, **kwargs)}")


class Authz(Process):
    """The release build of mcp-authz-service on free ports, with the one-server policy
    and tool schemas.

    `schemas`: the `schemas.json` it validates `tools/call` arguments with (default: the
    one-server gateway's, harness/single.py); `self.schemas` is the file, which a test
    may rewrite (hot reload) unless `in_place`.
    `session_keys`: the text of its session key file (default: this run's one key);
    `self.session_keys` is the file, which a test may rewrite (hot reload)."""

    def __init__(
        self,
        log_dir: Path,
        policy: Path | None = None,
        jwks_url: str | None = None,
        extra_args=(),
        session_keys: str | None = None,
        in_place: bool = False,
        schemas: Path | None = None,
    ):
        log_dir = Path(log_dir)
        # Default: the rendered policy of the tests' one-server gateway (harness/single.py).
        policy = policy if policy is not None else single.policy()
        schemas = schemas if schemas is not None else single.schemas()
        self.grpc_port, self.http_port = free_port(), free_port()
        if in_place:
            # The policy as written (a rendered fleet's, which render rewrites and the
            # service reloads; relative credential paths resolve next to it).
            self.policy = Path(policy)
            self.schemas = Path(schemas)
        else:
            # A private copy, so a test may rewrite it (hot reload) without touching ours.
            self.policy = log_dir / f"authz-{self.grpc_port}-policy.yaml"
            shutil.copy(policy, self.policy)
            self.schemas = log_dir / f"authz-{self.grpc_port}-schemas.json"
            shutil.copy(schemas, self.schemas)
        jwks_path = log_dir / f"authz-{self.grpc_port}-jwks.json"
        jwks_path.write_text(json.dumps(jwks()))
        self.session_keys = log_dir / f"authz-{self.grpc_port}-session-keys"
        self.session_keys.write_text(session_keys if session_keys is not None else f"{session_key()}\n")
        super().__init__(
            f"authz-{self.grpc_port}",
            [
                str(BINARY),
                "--policy", str(self.policy),
                "--schemas", str(self.schemas),
                "--session-key-file", str(self.session_keys),
                "--grpc-addr", f"127.0.0.1:{self.grpc_port}",
                "--http-addr", f"127.0.0.1:{self.http_port}",
                "--resource", RESOURCE,
                "--issuer", ISSUER,
                *(["--jwks-url", jwks_url] if jwks_url else ["--jwks-file", str(jwks_path)]),
                *extra_args,
            ],
            log_dir,
        )
        try:
            wait_for_http(self.http_port, "/ready", expect=lambda body: body.startswith("ready"), process=self)
        except Exception:
            self.stop()
            raise RuntimeError(f"authz-service did not become ready:\n{self.log()[-3000:]}")

    def upstreams(self) -> dict[str, int]:
        """Envoy cluster name -> port, for render_config."""
        return {"authz_service": self.grpc_port, "authz_http": self.http_port}

    def metrics(self) -> dict[tuple[str, frozenset], float]:
        """Its /metrics, parsed (read values with harness.metric)."""
        return service_metrics(self.http_port)


def without_ext_authz(config: dict) -> None:
    """Envoy config mutation: the filter alone (for deployments that verify identity
    with Envoy's jwt_authn or mTLS instead of the authz-service)."""
    for index in range(len(config["static_resources"]["listeners"])):
        hcm = connection_manager(config, index)
        hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] != "envoy.filters.http.ext_authz"]
    for route in routes(config):
        route.pop("typed_per_filter_config", None)
    # No authz decision to learn per-caller lists from: such deployments switch list
    # filtering off (with it on, every list would come back empty).
    for plugin in wasm_plugin_configs(config):
        settings = filter_settings(plugin)
        settings["list_filtering"] = "off"
        plugin["configuration"]["value"] = json.dumps(settings)
