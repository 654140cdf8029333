"""HTTP/2 over cleartext with prior knowledge (h2), for requests that carry no
content-length: the body goes as DATA frames, the stream ends with the last one."""

from __future__ import annotations

import socket

import h2.config
import h2.connection
import h2.events

from .client import Response


def request_h2(
    port: int,
    method: str,
    path: str,
    headers: list[tuple[str, str]],
    chunks: list[bytes],
    timeout: float = 15,
    authority: str | None = None,
) -> Response:
    """Sends one request on a new HTTP/2 connection to 127.0.0.1:port, headers and
    `:path` exactly as given (no validation or normalisation: tests send what a hostile
    client would). A reset stream or a closed connection is raised as ConnectionError."""
    conn = h2.connection.H2Connection(
        config=h2.config.H2Configuration(client_side=True, validate_outbound_headers=False, normalize_outbound_headers=False)
    )
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        conn.initiate_connection()
        stream = conn.get_next_available_stream_id()
        pseudo = [(":method", method), (":path", path), (":scheme", "http"), (":authority", authority or f"127.0.0.1:{port}")]
        conn.send_headers(stream, pseudo + [(k.lower(), v) for k, v in headers], end_stream=not chunks)
        pending = [bytes(chunk) for chunk in chunks if chunk]
        status, response_headers, body = 0, [], b""
        while True:
            # DATA frames as flow control allows; the rest waits for WINDOW_UPDATE
            # (or the response: Envoy may refuse before the body ends).
            while pending and status == 0:
                window = min(conn.local_flow_control_window(stream), conn.max_outbound_frame_size)
                if window <= 0:
                    break
                piece, pending[0] = pending[0][:window], pending[0][window:]
                if not pending[0]:
                    pending.pop(0)
                conn.send_data(stream, piece, end_stream=not pending)
            sock.sendall(conn.data_to_send())
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("connection closed before the response ended")
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    for name, value in event.headers:
                        name, value = name.decode(), value.decode("latin-1")
                        if name == ":status":
                            status = int(value)
                        else:
                            response_headers.append((name, value))
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, stream)
                elif isinstance(event, h2.events.StreamEnded):
                    return Response(status, response_headers, body)
                elif isinstance(event, h2.events.StreamReset):
                    raise ConnectionError(f"stream reset: {event.error_code}")
                elif isinstance(event, h2.events.ConnectionTerminated):
                    raise ConnectionError(f"connection terminated: {event.error_code}")
    finally:
        sock.close()
