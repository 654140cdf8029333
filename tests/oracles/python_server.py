"""Differential oracle: the demo MCP server (official Python SDK, demo/mcp_server.py),
with its dispatch log widened from tools/call to every request method.

demo/mcp_server.py --dispatch-log records the tool name of each tools/call the SDK
dispatches (after the SDK validated the params, before the tool runs). The
differential test also needs the other methods (a tools/list the gateway labelled
must be dispatched as tools/list), so this wrapper registers, through the SDK's
public `get_request_handler`/`add_request_handler`, a logging shim in front of every
other request handler the demo server has: the SDK calls a handler only with params
it validated against the method's model, so a line still means "dispatched", and a
body the SDK refused leaves no line. tools/call keeps the demo server's own record.

    python tests/oracles/python_server.py --port 8000 --header-log h.jsonl --dispatch-log d.jsonl
"""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
from pathlib import Path

DEMO = Path(__file__).resolve().parents[2] / "demo" / "mcp_server.py"

# Request methods of the 2026-07-28 and handshake-era revisions whose handler the
# lowlevel server looks up by name; tools/call is the demo server's own record, and
# initialize is run by the SDK itself (it cannot be wrapped).
METHODS = (
    "ping",
    "server/discover",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "subscriptions/listen",
    "tools/list",
    "logging/setLevel",
    "completion/complete",
)


def load_demo():
    # The demo server imports its neighbour demo/server_logs.py, as a script would.
    sys.path.insert(0, str(DEMO.parent))
    spec = importlib.util.spec_from_file_location("demo_mcp_server", DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def log_other_methods(server, path: str) -> None:
    lowlevel = server._lowlevel_server  # the MCPServer's lowlevel Server (no public accessor)
    lock = threading.Lock()
    for method in METHODS:
        entry = lowlevel.get_request_handler(method)
        if entry is None:
            continue

        def logged(ctx, params, _method=method, _handler=entry.handler):
            with lock, open(path, "a", encoding="utf-8") as log:
                log.write(json.dumps({"method": _method}) + "\n")
            return _handler(ctx, params)

        lowlevel.add_request_handler(method, entry.params_type, logged)


def main() -> None:
    demo = load_demo()
    if "--dispatch-log" in sys.argv:
        log_other_methods(demo.server, sys.argv[sys.argv.index("--dispatch-log") + 1])
    demo.main()


if __name__ == "__main__":
    main()
