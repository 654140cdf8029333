"""Starting and stopping real processes."""

from __future__ import annotations

import http.client
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def python() -> str:
    """The interpreter running us (the project's virtualenv)."""
    return sys.executable


# Ports handed out in this test run, so two picks never collide with each other.
_GIVEN: set[int] = set()
# Below Linux's default ephemeral range (32768-60999): the kernel never gives these
# to outgoing connections, so a port we checked stays free until its server binds it
# (a port from the ephemeral range can be taken by any client socket meanwhile).
_PORT_RANGE = (20000, 32000)


def free_port() -> int:
    """A free TCP port on loopback, distinct from every other one this run handed out."""
    for _ in range(1000):
        port = random.randrange(*_PORT_RANGE)
        if port in _GIVEN:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {_PORT_RANGE}")


def wait_for_http(port: int, path: str, timeout: float = 20.0, expect=None, process=None) -> None:
    """Polls GET http://127.0.0.1:port/path until it answers (and `expect(body)`).
    With `process`, gives up at once if that process has exited."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if process is not None:
            process.check_alive()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read().decode("utf-8", "replace")
            conn.close()
            if expect is None or expect(body):
                return
            last = f"{response.status} {body[:200]}"
        except OSError as error:
            last = str(error)
        time.sleep(0.1)
    raise TimeoutError(f"127.0.0.1:{port}{path} not ready after {timeout}s: {last}")


class Process:
    """A child process with its output in a log file; stopped by its PID."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, cwd: Path | None = None):
        self.name = name
        self.argv = argv
        self.log_path = Path(log_dir) / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd or ROOT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text("utf-8", "replace")

    def check_alive(self) -> None:
        code = self.proc.poll()
        if code is not None:
            raise RuntimeError(f"{self.name} exited with {code}:\n{self.log()[-4000:]}")

    def stop(self) -> None:
        """SIGTERM to our PID, then SIGKILL if it lingers. Never by name."""
        if self.proc.poll() is None:
            self.proc.terminate()
            # A frozen process (see `freeze`) only acts on SIGTERM once continued.
            self.thaw()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()

    def freeze(self) -> None:
        """SIGSTOP: the process keeps its sockets (connections are accepted by the
        kernel) but answers nothing, like a service stuck or overloaded."""
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)

    def __enter__(self) -> "Process":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def dispatch_log(header_log: Path) -> Path:
    """Where the demo server started with `header_log` records the tools it dispatches."""
    return header_log.with_name(header_log.stem + "-dispatch.jsonl")


def start_mcp_server(log_dir: Path, header_log: Path, port: int | None = None) -> tuple[Process, int]:
    """The demo MCP server (official Python SDK) on a free port."""
    port = port or free_port()
    server = Process(
        f"mcp-server-{port}",
        [
            python(), str(ROOT / "demo" / "mcp_server.py"), "--port", str(port),
            "--header-log", str(header_log), "--dispatch-log", str(dispatch_log(header_log)),
        ],
        log_dir,
    )
    try:
        # Any HTTP answer means it is listening (GET without a session is a 4xx).
        wait_for_http(port, "/mcp", process=server)
    except Exception:
        server.stop()
        raise RuntimeError(f"MCP server did not start:\n{server.log()[-4000:]}")
    return server, port



def start_echo(log_dir: Path, name: str = "echo") -> tuple[Process, int]:
    """The header-echo upstream on a free port."""
    port = free_port()
    echo = Process(
        f"echo-{name}-{port}",
        [python(), str(ROOT / "tests" / "harness" / "echo_upstream.py"), "--port", str(port), "--name", name],
        log_dir,
    )
    try:
        wait_for_http(port, "/", process=echo)
    except Exception:
        echo.stop()
        raise
    return echo, port
