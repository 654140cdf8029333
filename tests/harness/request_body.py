"""The request body of a `BaseHTTPRequestHandler` request, with content-length or
chunked (Envoy forwards bodies without a length as chunked over HTTP/1.1). Shared by
the test upstreams, which run as scripts from this folder."""

from __future__ import annotations


def read_body(handler) -> bytes:
    if handler.headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                handler.rfile.readline()
                return body
            body += handler.rfile.read(size)
            handler.rfile.readline()
    return handler.rfile.read(int(handler.headers.get("content-length", 0)))
