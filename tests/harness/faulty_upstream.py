"""An MCP server that fails on purpose, for failure-injection tests:

    python faulty_upstream.py PORT MODE

MODE `hang`: reads the request and never answers. `reset`: reads the request and
resets the connection (TCP RST) before answering. `reset-mid-stream`: starts an SSE
answer (200, one progress event) and then resets the connection.
"""

from __future__ import annotations

import socket
import struct
import sys
import threading
import time

PROGRESS = b'data: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}\n\n'


def read_request(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return
        body += chunk


def reset(conn: socket.socket) -> None:
    # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def serve(conn: socket.socket, mode: str) -> None:
    read_request(conn)
    if mode == "hang":
        time.sleep(3600)
    elif mode == "reset":
        reset(conn)
    elif mode == "reset-mid-stream":
        chunk = b"%x\r\n%s\r\n" % (len(PROGRESS), PROGRESS)
        conn.sendall(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n" + chunk
        )
        time.sleep(0.3)
        reset(conn)


def main() -> None:
    port, mode = int(sys.argv[1]), sys.argv[2]
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn, mode), daemon=True).start()


if __name__ == "__main__":
    main()
