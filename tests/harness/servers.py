"""The example fleet's other MCP servers (registry/examples): hr-directory (official
Python SDK, demo/servers/hr_directory.py) and weather (official TypeScript SDK v1,
demo/servers/weather/server.mjs), each on a free loopback port, stopped by PID."""

from __future__ import annotations

from pathlib import Path

from .procs import ROOT, Process, dispatch_log, free_port, python, wait_for_http

WEATHER_DIR = ROOT / "demo" / "servers" / "weather"


def _start(name: str, argv: list[str], log_dir: Path, port: int, header_log: Path | None) -> Process:
    if header_log is not None:
        # Same file naming as start_mcp_server, so SeenLog.dispatches() reads it.
        argv += ["--header-log", str(header_log), "--dispatch-log", str(dispatch_log(Path(header_log)))]
    server = Process(f"{name}-{port}", argv, log_dir)
    try:
        # Any HTTP answer on /mcp means it is listening (a GET is a 4xx for both SDKs).
        wait_for_http(port, "/mcp", process=server)
    except Exception:
        server.stop()
        raise RuntimeError(f"{name} did not start:\n{server.log()[-4000:]}")
    return server


def start_hr_directory(log_dir: Path, port: int | None = None, header_log: Path | None = None) -> tuple[Process, int]:
    """The hr-directory server (official Python SDK) on `port` or a free one."""
    port = port or free_port()
    argv = [python(), str(ROOT / "demo" / "servers" / "hr_directory.py"), "--port", str(port)]
    return _start("hr-directory", argv, log_dir, port, header_log), port


def start_weather(log_dir: Path, port: int | None = None, header_log: Path | None = None) -> tuple[Process, int]:
    """The weather server (official TypeScript SDK, run by the system `node`) on `port`
    or a free one."""
    if not (WEATHER_DIR / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir():
        raise FileNotFoundError(f"{WEATHER_DIR}/node_modules missing; run scripts/setup.sh (npm ci)")
    port = port or free_port()
    argv = ["node", str(WEATHER_DIR / "server.mjs"), "--port", str(port)]
    return _start("weather", argv, log_dir, port, header_log), port


def start_knowledge_base(log_dir: Path, port: int | None = None, header_log: Path | None = None) -> tuple[Process, int]:
    """The knowledge-base server (official Python SDK, demo/servers/knowledge_base.py),
    the one the demo registers live (demo/fleet-addition), on `port` or a free one."""
    port = port or free_port()
    argv = [python(), str(ROOT / "demo" / "servers" / "knowledge_base.py"), "--port", str(port)]
    return _start("knowledge-base", argv, log_dir, port, header_log), port
