"""A local HTTP proxy in front of the S3 endpoint that cuts chosen responses short.

moto cannot send a half answer; a network can. The proxy forwards each request to the
real endpoint (so the request is carried out) and then, for requests a rule picks, hands
the client only the status line, or the status line and part of the headers, a 503, or
nothing at all instead of the answer. It speaks just enough HTTP/1.1 for botocore: Content-Length
bodies and ``Expect: 100-continue``.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# What to hand the client instead of the answer.
CUT_AFTER_STATUS = "status"
CUT_MID_HEADERS = "headers"
SLOW_DOWN = "503"
DROP = "drop"  # no answer at all: the connection closes once the request is carried out

_ERROR = b"<Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>"
_SLOW_DOWN = (
    b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
    + f"Content-Length: {len(_ERROR)}\r\nConnection: close\r\n\r\n".encode()
    + _ERROR
)


@dataclass
class Rule:
    """Cut the answers to requests whose method and path match, ``times`` times."""

    method: str
    path: str  # the request path must contain this
    mode: str
    times: int = 1
    seen: int = 0  # requests that matched (cut or not)


@dataclass
class CutProxy:
    upstream: str
    rules: list[Rule] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # "METHOD path" of each request

    def __post_init__(self) -> None:
        self._up = urlsplit(self.upstream)
        self._server = socket.create_server(("127.0.0.1", 0))
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.getsockname()[1]}"

    def cut(self, method: str, path: str, mode: str, times: int = 1) -> Rule:
        rule = Rule(method, path, mode, times)
        self.rules.append(rule)
        return rule

    def close(self) -> None:
        self._server.close()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _pick(self, method: str, path: str) -> str | None:
        with self._lock:
            self.requests.append(f"{method} {path}")
            for rule in self.rules:
                if rule.method == method and rule.path in path:
                    rule.seen += 1
                    if rule.seen <= rule.times:
                        return rule.mode
        return None

    def _handle(self, client: socket.socket) -> None:
        with client:
            head, body = _read_request(client)
            if head is None:
                return
            request_line, *headers = head.split(b"\r\n")
            method, path, _ = request_line.decode().split(" ", 2)
            mode = self._pick(method, path)
            kept = [
                h
                for h in headers
                if h.split(b":", 1)[0].strip().lower() not in (b"expect", b"connection")
            ]
            out = b"\r\n".join([request_line, *kept, b"Connection: close"]) + b"\r\n\r\n"
            with socket.create_connection((self._up.hostname, self._up.port)) as up:
                up.sendall(out + body)
                answer = _read_all(up)
            if mode == CUT_AFTER_STATUS:
                answer = answer.split(b"\r\n", 1)[0] + b"\r\n"
            elif mode == CUT_MID_HEADERS:
                end = answer.index(b"\r\n\r\n")
                answer = answer[: answer.index(b"\r\n") + (end - answer.index(b"\r\n")) // 2]
            elif mode == SLOW_DOWN:
                answer = _SLOW_DOWN
            elif mode == DROP:
                answer = b""
            client.sendall(answer)


def _read_request(client: socket.socket) -> tuple[bytes | None, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(65536)
        if not chunk:
            return None, b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length, expect = 0, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
        if name.strip().lower() == b"expect":
            expect = True
    if expect and len(body) < length:
        client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    while len(body) < length:
        chunk = client.recv(65536)
        if not chunk:
            break
        body += chunk
    return head, body


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    answer = b"".join(chunks)
    while answer.startswith(b"HTTP/1.1 100"):  # the endpoint's own 100 Continue
        answer = answer.split(b"\r\n\r\n", 1)[1]
    return answer
