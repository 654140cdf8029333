"""`mcp-registry` as users run it: manifests in a directory, rendered into another.
A leaf module (the services' and Envoy's harness use what it renders)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from .procs import ROOT

REGISTRY = ROOT / "target" / "release" / "mcp-registry"
EXAMPLES = ROOT / "registry" / "examples"


def manifest_text(server_id: str, port: int, source: Path = EXAMPLES, path: str | None = None) -> str:
    """An example manifest with its endpoint on a loopback port (and, with `path`, exposed
    there instead of where the example says)."""
    text = (source / f"{server_id}.yaml").read_text()
    text, count = re.subn(r"^endpoint: .*$", f"endpoint: http://127.0.0.1:{port}/mcp", text, flags=re.M)
    assert count == 1, f"{server_id}.yaml has no endpoint line"
    if path is not None:
        manifest = yaml.safe_load(text)
        manifest.setdefault("gateway", {})["path"] = path
        text = yaml.safe_dump(manifest, sort_keys=False)
    return text


def render(manifests: Path, out: Path, credentials_dir: Path, loopback: bool = True) -> str:
    """`mcp-registry render`; its stdout (one line per written file). The test servers
    listen on loopback, which render accepts only when told (`loopback`)."""
    flags = ["--allow-loopback-endpoints"] if loopback else []
    done = subprocess.run(
        [str(REGISTRY), "render", str(manifests), "--out", str(out), "--credentials-dir", str(credentials_dir), *flags],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"mcp-registry render failed:\n{done.stderr}")
    return done.stdout
