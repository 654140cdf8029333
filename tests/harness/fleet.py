"""A fleet of MCP servers behind one gateway, as users run it: manifests in a directory,
`mcp-registry render` into another, and Envoy, the authz-service and the
ratelimit-service on the rendered files (Envoy's routes and clusters, the policy, the
tool schemas and the limits are all reloaded live when render writes again)."""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path

import yaml

from .authz import Authz
from .envoy import Envoy, audit_log_path, host_fallback_routes, host_path_map, render_config
from .procs import free_port
from .ratelimit import Ratelimit
from .registry import EXAMPLES, manifest_text, render

def render_examples(work: Path, edit=None) -> tuple[Path, Path]:
    """registry/examples as they are (or as `edit(manifests_dir)` changes them),
    rendered into `work/out`, with the one Kubernetes Secret they reference
    (hr-directory's) where render is told it is mounted (`work/credentials`): returns
    (out, credentials)."""
    manifests, out, credentials = work / "manifests", work / "out", work / "credentials"
    shutil.copytree(EXAMPLES, manifests)
    if edit:
        edit(manifests)
    secret = credentials / "hr-directory" / "authorization"
    secret.parent.mkdir(parents=True)
    secret.write_text("Bearer upstream-credential-of-hr-directory\n")
    render(manifests, out, credentials)
    return out, credentials


def route_list(routes_file: Path) -> list[dict]:
    """The routes of a rendered envoy/routes.yaml, in the order Envoy tries them: the
    virtual host's path matcher falls back to this list (its map of exact paths is only
    a shortcut to the same routes)."""
    (config,) = yaml.safe_load(Path(routes_file).read_text())["resources"]
    (host,) = config["virtual_hosts"]
    return host_fallback_routes(host)


def route_map(routes_file: Path) -> dict[str, dict]:
    """The virtual host's map of exact paths to routes."""
    (config,) = yaml.safe_load(Path(routes_file).read_text())["resources"]
    (host,) = config["virtual_hosts"]
    return {path: {k: v for k, v in route.items() if k != "@type"} for path, route in host_path_map(host).items()}


class Rendered:
    """The example fleet's manifests (the servers in `endpoints`, each pointed at its
    loopback port; `paths` moves servers to other exposure paths) in `log_dir/manifests`,
    rendered into `log_dir/rendered`; `{secret:}` credentials where the Kubernetes
    deployment would mount them, under `log_dir/credentials`."""

    def __init__(self, log_dir: Path, endpoints: dict[str, int], paths: dict[str, str] | None = None, source: Path = EXAMPLES):
        self.log_dir = Path(log_dir)
        self.source = source
        self.paths = paths or {}
        self.manifests = self.log_dir / "manifests"
        self.out = self.log_dir / "rendered"
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
            self.write(server_id, port)
        self.written = self.render()

    def write(self, server_id: str, port: int) -> None:
        text = manifest_text(server_id, port, self.source, self.paths.get(server_id))
        (self.manifests / f"{server_id}.yaml").write_text(text)

    def render(self) -> str:
        # A fleet with a canary renders with the canary watcher's state file, as a
        # deployment does (`canary watch` creates it, `{}`, when it starts): render
        # refuses such a fleet when the default file is missing.
        state = self.out / "rollout" / "state.json"
        if not state.exists() and any(
            "canary" in ((yaml.safe_load(m.read_text()) or {}).get("gateway") or {}) for m in self.manifests.glob("*.yaml")
        ):
            state.parent.mkdir(parents=True, exist_ok=True)
            state.write_text("{}\n")
        return render(self.manifests, self.out, self.credentials)


def fleet_authz(log_dir: Path, out: Path) -> Authz:
    """The authz-service on a rendered directory's policy and tool schemas (render writes
    `schemas.json` beside `policy.yaml`; both are reloaded when render writes again)."""
    schemas = out / "schemas.json"
    # Until harness/authz.py has `schemas` (the service's --schemas flag, issue 16), the
    # service runs on the policy alone.
    if "schemas" in inspect.signature(Authz.__init__).parameters:
        return Authz(log_dir, policy=out / "policy.yaml", schemas=schemas, in_place=True)
    return Authz(log_dir, policy=out / "policy.yaml", in_place=True)


class Fleet:
    """A rendered fleet (see Rendered) and the gateway running on what was rendered:
    the authz-service and ratelimit-service on the rendered policy and limits, Envoy on
    the rendered bootstrap, all reloading what a later render writes."""

    def __init__(self, log_dir: Path, endpoints: dict[str, int], source: Path = EXAMPLES, paths: dict[str, str] | None = None):
        self.log_dir = Path(log_dir)
        self.rendered = Rendered(self.log_dir, endpoints, paths, source)
        self.manifests, self.out = self.rendered.manifests, self.rendered.out
        self.authz = self.ratelimit = self.envoy = None
        try:
            self.authz = fleet_authz(self.log_dir, self.out)
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
        return self.rendered.render()

    def register(self, server_id: str, port: int) -> str:
        """Adds a server's manifest and renders: live, no restart."""
        self.rendered.write(server_id, port)
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
