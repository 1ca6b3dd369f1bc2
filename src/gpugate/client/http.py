"""Just enough HTTP/1.1 over a Unix socket for the client.

The standard library's http.client imports the email package and ssl: a third of a cold
CLI call. The daemon is ours and speaks plain HTTP/1.1 (uvicorn), so a request is one
``Connection: close`` exchange: send, read the head, then the body by Content-Length,
chunks, or to the end.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator


class DaemonNotRunning(ConnectionError):
    """No daemon answers on the socket."""


class Response:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        # a bytearray: appends are amortized O(1) and deleting from the front is cheap, so
        # a 40 MB answer (100k jobs) reads in linear time
        self._buffer = bytearray()
        head = self._read_until(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in header_lines)
        }

    def chunks(self) -> Iterator[bytes]:
        """The body as it arrives."""
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            yield from self._chunked()
        elif "content-length" in self.headers:
            yield self._read_exactly(int(self.headers["content-length"]))
        else:
            yield from self._to_end()

    def read(self) -> bytes:
        return b"".join(self.chunks())  # one join: never re-copy what was already read

    def _chunked(self) -> Iterator[bytes]:
        while True:
            size = int(self._read_until(b"\r\n").split(b";")[0], 16)
            if size == 0:
                return
            yield self._read_exactly(size)
            self._read_exactly(2)  # the CRLF after each chunk

    def _to_end(self) -> Iterator[bytes]:
        if self._buffer:
            yield self._take(len(self._buffer))
        while data := self._sock.recv(65536):
            yield data

    def _fill(self) -> None:
        data = self._sock.recv(65536)
        if not data:
            raise ConnectionError("the daemon closed the connection mid-answer")
        self._buffer += data

    def _read_until(self, marker: bytes) -> bytes:
        while (end := self._buffer.find(marker)) < 0:
            self._fill()
        return self._take(end + len(marker))[: -len(marker)]

    def _read_exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._fill()
        return self._take(size)

    def _take(self, size: int) -> bytes:
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data


def connect(path: str, timeout_s: float | None) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        sock.connect(path)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        sock.close()
        raise DaemonNotRunning(
            f"no gpugate daemon is running on {path} ({exc.strerror}).\n"
            "Start one with:  gpugate serve   (or `gpugate serve --detach`)"
        ) from None
    return sock


def send(sock: socket.socket, method: str, target: str, body: bytes | None) -> Response:
    """Send one request on a fresh connection and read the answer's head."""
    head = [f"{method} {target} HTTP/1.1", "Host: localhost", "Connection: close"]
    if body is not None:
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    sock.sendall("\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + (body or b""))
    return Response(sock)
