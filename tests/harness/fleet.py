"""A fleet of MCP servers behind one gateway, as users run it: manifests in a directory,
`mcp-registry render` into another, and Envoy, the authz-service and the
ratelimit-service on the rendered files (Envoy's routes and clusters, the policy and
the limits are all reloaded live when render writes again)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from .authz import Authz
from .envoy import Envoy, audit_log_path, render_config
from .procs import ROOT, free_port
from .ratelimit import Ratelimit

REGISTRY = ROOT / "target" / "release" / "mcp-registry"
EXAMPLES = ROOT / "registry" / "examples"


def manifest_text(server_id: str, port: int, source: Path = EXAMPLES) -> str:
    """An example manifest with its endpoint on a loopback port."""
    text = (source / f"{server_id}.yaml").read_text()
    text, count = re.subn(r"^endpoint: .*$", f"endpoint: http://127.0.0.1:{port}/mcp", text, flags=re.M)
    assert count == 1, f"{server_id}.yaml has no endpoint line"
    return text


def render(manifests: Path, out: Path, credentials_dir: Path) -> str:
    """`mcp-registry render`; its stdout (one line per written file)."""
    done = subprocess.run(
        [str(REGISTRY), "render", str(manifests), "--out", str(out), "--credentials-dir", str(credentials_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"mcp-registry render failed:\n{done.stderr}")
    return done.stdout


class Fleet:
    """The example fleet's manifests (the servers in `endpoints`, each pointed at its
    port), rendered, and the gateway running on what was rendered."""

    def __init__(self, log_dir: Path, endpoints: dict[str, int], source: Path = EXAMPLES):
        self.log_dir = Path(log_dir)
        self.source = source
        self.manifests = self.log_dir / "manifests"
        self.out = self.log_dir / "rendered"
        # Where the Kubernetes deployment would mount the {secret:} credentials.
        self.credentials = self.log_dir / "credentials"
        self.manifests.mkdir(parents=True)
        for folder in ("schemas", "credentials"):
            if (source / folder).is_dir():
                shutil.copytree(source / folder, self.manifests / folder)
        for server_id in ("hr-directory",):
            secret = self.credentials / server_id / "authorization"
            secret.parent.mkdir(parents=True)
            secret.write_text(f"Bearer upstream-credential-of-{server_id}\n")
        for server_id, port in endpoints.items():
            (self.manifests / f"{server_id}.yaml").write_text(manifest_text(server_id, port, source))
        self.render()
        self.authz = self.ratelimit = self.envoy = None
        try:
            self.authz = Authz(self.log_dir, policy=self.out / "policy.yaml", in_place=True)
            self.ratelimit = Ratelimit(self.log_dir, config_dir=self.out / "limits")
            self.port, admin = free_port(), free_port()
            config = render_config(
                self.out / "envoy" / "bootstrap.yaml",
                self.log_dir,
                self.port,
                admin,
                {**self.authz.upstreams(), **self.ratelimit.upstreams()},
            )
            self.envoy = Envoy(config, admin, self.log_dir)
            self.audit_path = audit_log_path(self.log_dir, self.port)
        except Exception:
            self.stop()
            raise

    def render(self) -> str:
        return render(self.manifests, self.out, self.credentials)

    def register(self, server_id: str, port: int) -> str:
        """Adds a server's manifest and renders: live, no restart."""
        (self.manifests / f"{server_id}.yaml").write_text(manifest_text(server_id, port, self.source))
        return self.render()

    def unregister(self, server_id: str) -> str:
        (self.manifests / f"{server_id}.yaml").unlink()
        return self.render()

    def url(self, server_id: str) -> str:
        return f"http://127.0.0.1:{self.port}/{server_id}/mcp"

    def stop(self) -> None:
        for process in (self.envoy, self.ratelimit, self.authz):
            if process is not None:
                process.stop()
