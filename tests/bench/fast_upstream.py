"""A small, fast HTTP/1.1 keep-alive MCP upstream for benchmarks: reads each request's
whole body (Content-Length) and answers what an MCP server would, chosen by the body:

- `tools/list`                    -> a JSON result listing 8 tools with input schemas
- `tools/call` of `generate_report` -> an SSE stream (chunked): two progress
  notifications, then the result, each event its own chunk
- any other request               -> a small JSON `tools/call` result

At `/tools-N` (the endpoints of the list benchmark's fleet, tests/bench/list_fleet.py,
N = 10 or 500), `tools/list` is answered with that server's N registered tools and
their registered schemas, as JSON, or as one SSE event when the request carries
`"bench.example/answer":"sse"` (a `_meta` key); every other request as above.

Every answer carries `"id":1`, the id of every benchmark request.

    python tests/bench/fast_upstream.py PORT
"""

import asyncio
import json
import sys

import list_fleet


def _json_response(body: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


CALL_RESULT = b'{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}],"isError":false}}'
TOOLS = [
    {
        "name": f"tool_{i}",
        "description": "Looks up records of the account for the given period and filters.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "account_id": {"type": "string", "description": "The account."},
                "from": {"type": "string", "format": "date"},
                "to": {"type": "string", "format": "date"},
                "limit": {"type": "integer", "minimum": 1, "maximum": 500},
            },
            "required": ["account_id"],
        },
    }
    for i in range(8)
]
LIST_RESULT = json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"tools": TOOLS}}, separators=(",", ":")).encode()

CALL_RESPONSE = _json_response(CALL_RESULT)
LIST_RESPONSE = _json_response(LIST_RESULT)


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
SSE_EVENTS = [
    _chunk(
        b'event: message\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":%d,"total":2}}\n\n'
        % step
    )
    for step in (1, 2)
] + [_chunk(b"event: message\ndata: " + CALL_RESULT + b"\n\n"), b"0\r\n\r\n"]


# The list benchmark's answers: path -> (JSON answer, SSE answer), both whole responses.
SSE_MARKER = b'"bench.example/answer":"sse"'
FLEET_LISTS = {}
for _count in list_fleet.SERVERS.values():
    _result = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "result": {"tools": list_fleet.advertised_tools(_count)}}, separators=(",", ":")
    ).encode()
    FLEET_LISTS[f"/tools-{_count}".encode()] = (
        _json_response(_result),
        SSE_HEAD + _chunk(b"event: message\ndata: " + _result + b"\n\n") + b"0\r\n\r\n",
    )


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:].strip())
            body = await reader.readexactly(length) if length else b""
            path = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b""
            fleet_list = FLEET_LISTS.get(path)
            if fleet_list and b'"tools/list"' in body:
                writer.write(fleet_list[1] if SSE_MARKER in body else fleet_list[0])
                await writer.drain()
                continue
            if b'"generate_report"' in body:
                writer.write(SSE_HEAD)
                for event in SSE_EVENTS:
                    # Separate writes, so the events leave as separate chunks.
                    writer.write(event)
                    await writer.drain()
                continue
            writer.write(LIST_RESPONSE if b'"tools/list"' in body else CALL_RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
