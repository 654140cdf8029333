"""MCP servers on three parser stacks, for the parser-differential test.

Each oracle is a real process on a free loopback port that writes two JSON-lines logs:
the headers of every HTTP request it received (demo/mcp_server.py's HeaderLog format)
and every request it dispatched (`{"method": ..., "name": ...}`, name for tools/call
only, recorded after its own parser accepted the request and before the tool runs).

- python: the demo server on the official Python SDK (pydantic; keys match exactly).
- typescript: the official TypeScript SDK v2 (`@modelcontextprotocol/server`, from
  npm; JSON.parse and zod; keys match exactly), installed in tests/oracles by
  scripts/setup.sh (`npm ci`).
- go: a standard-library Go endpoint decoding with encoding/json (keys match
  case-insensitively, with Unicode simple folding), built with Debian's golang-go.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .observe import json_lines
from .procs import ROOT, Process, free_port, python, wait_for_http

ORACLE_DIR = ROOT / "tests" / "oracles"
ORACLES = ("python", "typescript", "go")


@dataclass(frozen=True)
class Dispatch:
    """One request an oracle dispatched, as its own parser read the body."""

    method: str
    name: str | None = None
    # The revision the Go oracle read from params._meta (the others do not log it).
    protocol_version: str | None = None

    def __str__(self) -> str:
        return self.method if self.name is None else f"{self.method} {self.name}"


@dataclass
class Oracle:
    name: str
    process: Process
    port: int
    header_log: Path
    dispatch_log: Path

    def posts(self) -> list[dict[str, str]]:
        """Headers of each POST received, as a dict (last copy of a name wins)."""
        return [dict(r["headers"]) for r in json_lines(self.header_log) if r["method"] == "POST"]

    def dispatches(self) -> list[Dispatch]:
        return [
            Dispatch(r["method"], r.get("name"), r.get("protocolVersion") or None)
            for r in json_lines(self.dispatch_log)
        ]

    def stop(self) -> None:
        self.process.stop()


def build_go_oracle(out_dir: Path) -> Path:
    """`go build` of tests/oracles/go into out_dir (Go's build cache makes a rebuild
    with unchanged sources take well under a second)."""
    go = shutil.which("go")
    if go is None:
        raise FileNotFoundError("go is not installed (Debian golang-go); run scripts/setup.sh")
    binary = Path(out_dir) / "go-oracle"
    cache = ROOT / ".cache"  # git-ignored, kept between runs
    env = {
        "GOCACHE": str(cache / "go-build"),
        "GOPATH": str(cache / "go"),
        **os.environ,
        # Standard library only: nothing may be downloaded.
        "GOPROXY": "off",
    }
    # -buildvcs=false: no git stamping (the checkout may belong to another user).
    built = subprocess.run(
        [go, "build", "-buildvcs=false", "-o", str(binary), "."],
        cwd=ORACLE_DIR / "go",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if built.returncode != 0:
        raise RuntimeError(f"go build of the Go oracle failed:\n{built.stderr}")
    return binary


def _argv(name: str, port: int, headers: Path, dispatches: Path, go_binary: Path | None) -> list[str]:
    logs = ["--header-log", str(headers), "--dispatch-log", str(dispatches)]
    if name == "python":
        return [python(), str(ORACLE_DIR / "python_server.py"), "--port", str(port), *logs]
    if name == "typescript":
        if not (ORACLE_DIR / "node_modules" / "@modelcontextprotocol" / "server").is_dir():
            raise FileNotFoundError(f"{ORACLE_DIR}/node_modules missing; run scripts/setup.sh (npm ci)")
        return ["node", str(ORACLE_DIR / "ts_server.mjs"), "--port", str(port), *logs]
    if name == "go":
        if go_binary is None:
            raise ValueError("the Go oracle needs the binary from build_go_oracle()")
        return [str(go_binary), "-port", str(port), "-header-log", str(headers), "-dispatch-log", str(dispatches)]
    raise ValueError(f"unknown oracle {name!r}; known: {ORACLES}")


def start_oracle(name: str, log_dir: Path, go_binary: Path | None = None) -> Oracle:
    """Starts one oracle on a free loopback port, ready to serve."""
    port = free_port()
    headers = Path(log_dir) / f"{name}-headers.jsonl"
    dispatches = Path(log_dir) / f"{name}-dispatch.jsonl"
    process = Process(f"oracle-{name}-{port}", _argv(name, port, headers, dispatches, go_binary), log_dir)
    try:
        # Any HTTP answer means it is listening (a GET is a 4xx on each of them); the
        # readiness probe is a GET, so it never shows up among the POSTs.
        wait_for_http(port, "/mcp", process=process)
    except Exception:
        process.stop()
        raise RuntimeError(f"oracle {name} did not start:\n{process.log()[-4000:]}")
    return Oracle(name, process, port, headers, dispatches)


def start_oracles(log_dir: Path, go_binary: Path, names=ORACLES) -> dict[str, Oracle]:
    """All oracles, each with logs of its own under log_dir; stops the started ones if
    one fails to start."""
    started: dict[str, Oracle] = {}
    try:
        for name in names:
            started[name] = start_oracle(name, log_dir, go_binary)
    except Exception:
        for oracle in started.values():
            oracle.stop()
        raise
    return started
