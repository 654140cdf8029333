"""An upstream that answers every request with what it received, as JSON.

Used to prove which headers reach the upstream (and which never do). Reads the whole
body, chunked or not, the way an MCP server would.

    python tests/harness/echo_upstream.py --port 9000 --name a
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

if __package__:
    from .request_body import read_body
else:  # run as a script, as the harness starts it
    from request_body import read_body


def make_handler(name: str):
    class Echo(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            body = read_body(self)
            payload = json.dumps(
                {
                    "upstream": name,
                    "method": self.command,
                    "path": self.path,
                    "headers": [[k.lower(), v] for k, v in self.headers.items()],
                    "body": body.decode("utf-8", "replace"),
                }
            ).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_DELETE = do_PUT = do_OPTIONS = _answer

        def log_message(self, *args) -> None:
            pass

    return Echo


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="echo")
    args = parser.parse_args()
    ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.name)).serve_forever()


if __name__ == "__main__":
    main()
