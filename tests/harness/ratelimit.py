"""The ratelimit-service and Redis for tests and the demo."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

from .observe import service_metrics
from . import single
from .procs import ROOT, Process, free_port, wait_for_http

BINARY = ROOT / "target" / "release" / "mcp-ratelimit-service"


class Ratelimit(Process):
    """The release build of mcp-ratelimit-service on free ports."""

    def __init__(
        self,
        log_dir: Path,
        config: Path | None = None,
        redis_url: str | None = None,
        extra_args=(),
        config_dir: Path | None = None,
    ):
        log_dir = Path(log_dir)
        self.grpc_port, self.http_port = free_port(), free_port()
        if config_dir is not None:
            # A directory used as it is (a rendered fleet's limits/, which render rewrites).
            self.config_dir = Path(config_dir)
        else:
            # A private directory, so a test may rewrite the config (hot reload).
            self.config_dir = log_dir / f"ratelimit-{self.grpc_port}"
            self.config_dir.mkdir()
            # Default: the rendered limits of the tests' one-server gateway (harness/single.py).
            shutil.copy(config if config is not None else single.limits(), self.config_dir / "limits.yaml")
        argv = [
            str(BINARY),
            "--config", str(self.config_dir),
            "--grpc-addr", f"127.0.0.1:{self.grpc_port}",
            "--http-addr", f"127.0.0.1:{self.http_port}",
        ]
        if redis_url:
            argv += ["--redis-url", redis_url]
        argv += list(extra_args)
        super().__init__(f"ratelimit-{self.grpc_port}", argv, log_dir)
        try:
            wait_for_http(self.http_port, "/ready", expect=lambda body: body.startswith("ready"), process=self)
        except Exception:
            self.stop()
            raise RuntimeError(f"ratelimit-service did not become ready:\n{self.log()[-3000:]}")

    def upstreams(self) -> dict[str, int]:
        return {"ratelimit_service": self.grpc_port}

    def metrics(self) -> dict[tuple[str, frozenset], float]:
        """Its /metrics, parsed (read values with harness.metric)."""
        return service_metrics(self.http_port)


class RedisServer(Process):
    """Debian's redis-server on a free loopback port, no persistence."""

    def __init__(self, log_dir: Path, port: int | None = None):
        self.port = port or free_port()
        redis = shutil.which("redis-server")
        if redis is None:
            raise FileNotFoundError("redis-server is not installed; run scripts/setup.sh")
        super().__init__(
            f"redis-{self.port}",
            [redis, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            log_dir,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not start:\n{self.log()}")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/"
