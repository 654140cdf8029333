"""Raw HTTP requests (stdlib http.client): exact bytes, repeated headers, chunking."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def json(self):
        return json.loads(self.body)


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | str | dict | None = None,
    headers: list[tuple[str, str]] | None = None,
    chunks: list[bytes] | None = None,
    timeout: float = 15,
    tls=None,
) -> Response:
    """Sends one request to 127.0.0.1:port. `chunks` sends a chunked body instead;
    `tls` (an ssl.SSLContext) makes it HTTPS."""
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    if tls is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=tls)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        names = set()
        for name, value in headers or []:
            conn.putheader(name, value)
            names.add(name.lower())
        if chunks is not None:
            conn.putheader("transfer-encoding", "chunked")
            conn.endheaders()
            for chunk in chunks:
                conn.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            conn.send(b"0\r\n\r\n")
        else:
            if body is not None and "content-length" not in names:
                conn.putheader("content-length", str(len(body)))
            conn.endheaders(body)
        response = conn.getresponse()
        return Response(response.status, response.getheaders(), response.read())
    finally:
        conn.close()
