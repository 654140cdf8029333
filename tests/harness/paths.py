"""Path-variant probes: the lenient MCP upstream, and HTTP/1.1 and HTTP/2 requests whose
request target, Host and :authority are sent exactly as given (absolute-form, raw
escapes, no client-side cleaning)."""

from __future__ import annotations

import socket
from pathlib import Path

from .client import Response
from .h2client import request_h2
from .observe import json_lines
from .procs import ROOT, Process, free_port, python, wait_for_http


class Received:
    """What the lenient upstream recorded, one dict per request it received."""

    def __init__(self, path: Path):
        self.path = path

    def records(self) -> list[dict]:
        return json_lines(self.path)

    def with_header(self, name: str, value: str) -> list[dict]:
        return [r for r in self.records() if [name, value] in r["headers"]]


def start_lenient(log_dir: Path) -> tuple[Process, int, Received]:
    """The lenient MCP upstream (tests/harness/lenient_upstream.py) on a free port."""
    port = free_port()
    received = Received(Path(log_dir) / f"lenient-{port}.jsonl")
    proc = Process(
        f"lenient-{port}",
        [python(), str(ROOT / "tests" / "harness" / "lenient_upstream.py"), "--port", str(port), "--log", str(received.path)],
        log_dir,
    )
    try:
        wait_for_http(port, "/ready", process=proc)
    except Exception:
        proc.stop()
        raise
    return proc, port, received


def raw_request(
    port: int,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes = b"",
    host: str = "127.0.0.1",
    timeout: float = 15,
) -> Response:
    """One HTTP/1.1 request on a new connection, the request line exactly `target`.
    A status of 0 means the connection closed without an answer."""
    lines = [f"{method} {target} HTTP/1.1", f"host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers]
    lines += [f"content-length: {len(body)}", "connection: close"]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head + body)
        # Read until the response is complete rather than until the server closes:
        # Envoy waits up to its delayed_close_timeout (1 s) for the client to close.
        data = b""
        while True:
            chunk = sock.recv(65536)
            data += chunk
            response = _complete(data, method)
            if response is not None:
                return response
            if not chunk:
                return Response(0, [], b"") if not data else _parse(data)


def _parse(data: bytes) -> Response:
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = [tuple(part.strip() for part in line.split(":", 1)) for line in header_lines if ":" in line]
    return Response(int(status_line.split(" ")[1]), parsed, rest)


def _complete(data: bytes, method: str) -> Response | None:
    """The response once `data` holds all of it (by content-length or the chunked
    terminator), else None."""
    if b"\r\n\r\n" not in data:
        return None
    response = _parse(data)
    if method == "HEAD" or response.status in (204, 304):
        response.body = b""
        return response
    if (response.header("transfer-encoding") or "").lower() == "chunked":
        if not response.body.endswith(b"0\r\n\r\n"):
            return None
        response.body = dechunk(response.body)
        return response
    length = response.header("content-length")
    if length is not None and len(response.body) >= int(length):
        response.body = response.body[: int(length)]
        return response
    return None


def dechunk(data: bytes) -> bytes:
    body = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        body, data = body + data[:size], data[size + 2 :]
    return body


def h2_request(
    port: int,
    method: str,
    path: str,
    headers: list[tuple[str, str]],
    body: bytes = b"",
    authority: str | None = None,
    timeout: float = 15,
) -> Response:
    """One HTTP/2 (prior knowledge) request with `:path` exactly `path`."""
    return request_h2(port, method, path, headers, [body] if body else [], timeout=timeout, authority=authority)

