"""An MCP server as lenient about paths as many real ones are, recording every request.

Express (case-insensitive, trailing slash optional by default), Go and Java routers
that clean paths, servers behind path-decoding frameworks: they answer an MCP POST on
`/MCP`, `/mcp/`, `//mcp`, `/mcp%2F`, `/mcp;x` or `/./mcp` as if it were `/mcp`. A
gateway that labels only the exact path must therefore never let those variants through
unlabelled. This upstream executes `tools/call` on any path that such a server would
take for `/mcp`, and writes one JSON line per request it received (request line, path,
headers, body, whether it executed a tool), so a test can tell what got through.

Like the MCP SDKs' transports it executes POST only; GET and DELETE get 200 without
executing anything; other methods 405.

    python tests/harness/lenient_upstream.py --port 9000 --log received.jsonl
"""

from __future__ import annotations

import argparse
import json
import posixpath
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

if __package__:
    from .request_body import read_body
else:  # run as a script, as the harness starts it
    from request_body import read_body
from urllib.parse import unquote

MCP_PATH = "/mcp"


def lenient_path(target: str) -> str:
    """What a lenient router makes of a request target: absolute-form reduced to its
    path, query and fragment dropped, percent-escapes decoded (also %2F), backslashes
    as slashes, `;` parameters dropped per segment, slashes merged, dot segments
    resolved, trailing slashes and dots dropped (as Windows-minded servers do),
    lower-cased."""
    if target.lower().startswith(("http://", "https://")):
        target = "/" + target.split("://", 1)[1].partition("/")[2]
    path = target.split("?", 1)[0].split("#", 1)[0]
    path = unquote(path).replace("\\", "/")
    segments = [segment.split(";", 1)[0] for segment in path.split("/")]
    path = posixpath.normpath("/" + "/".join(s for s in segments if s))
    return path.rstrip("/.").lower() or "/"


def make_handler(log_path: str):
    lock = threading.Lock()

    class Lenient(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            body = read_body(self)
            # http.server already turns a leading "//" into "/"; the request line keeps
            # what Envoy actually sent.
            target = self.requestline.split(" ")[1] if " " in self.requestline else self.path
            is_mcp = lenient_path(target) == MCP_PATH
            executed, status, answer = None, 404, {"error": "not found"}
            if is_mcp and self.command == "POST":
                try:
                    message = json.loads(body)
                except ValueError:
                    message = None
                if isinstance(message, dict) and message.get("method") == "tools/call":
                    executed = (message.get("params") or {}).get("name")
                    status = 200
                    answer = {
                        "jsonrpc": "2.0",
                        "id": message.get("id"),
                        "result": {"content": [{"type": "text", "text": f"executed {executed}"}], "isError": False},
                    }
                else:
                    status, answer = 202, {}
            elif is_mcp and self.command in ("GET", "DELETE"):
                status, answer = 200, {}
            elif is_mcp:
                status, answer = 405, {"error": "method not allowed"}
            record = {
                "request_line": self.requestline,
                "method": self.command,
                "target": target,
                "headers": [[k.lower(), v] for k, v in self.headers.items()],
                "body": body.decode("utf-8", "replace"),
                "executed": executed,
            }
            with lock, open(log_path, "a") as log:
                log.write(json.dumps(record) + "\n")
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = do_OPTIONS = _answer

        def do_HEAD(self) -> None:
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    return Lenient


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.log)).serve_forever()


if __name__ == "__main__":
    main()
