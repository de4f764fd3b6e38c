"""A small raw-socket HTTP/1.1 load generator: keep-alive connections, pipelined requests, count responses."""

from __future__ import annotations

import selectors
import socket
import time
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    sent: int = 0
    ok: int = 0
    other: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


def build_request(host: str, path: str, body: bytes, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def run(address: str, port: int, request: bytes, total: int, *, connections: int = 8, depth: int = 32,
        timeout: float = 600.0) -> LoadResult:
    """Send ``total`` copies of ``request`` over ``connections`` sockets, ``depth`` in flight on each.

    Responses are counted by their status line; bodies are assumed small and Content-Length framed.
    """
    sel = selectors.DefaultSelector()
    res = LoadResult()
    state: dict[socket.socket, dict[str, object]] = {}
    remaining = total
    started = time.perf_counter()
    for _ in range(connections):
        s = socket.create_connection((address, port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        n = min(depth, remaining)
        remaining -= n
        s.sendall(request * n)
        res.sent += n
        state[s] = {"inflight": n, "buf": b""}
        sel.register(s, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while state:
        if time.monotonic() > deadline:
            raise TimeoutError(f"load did not finish: {res.ok} ok of {total}")
        for key, _ in sel.select(1.0):
            s = key.fileobj
            assert isinstance(s, socket.socket)
            st = state[s]
            data = s.recv(1 << 20)
            if not data:
                raise ConnectionError("server closed a keep-alive connection")
            buf = st["buf"] + data  # type: ignore[operator]
            done = 0
            while True:
                head_end = buf.find(b"\r\n\r\n")
                if head_end < 0:
                    break
                head = buf[:head_end]
                i = head.lower().find(b"content-length:")
                length = int(head[i + 15: head.find(b"\r\n", i) if head.find(b"\r\n", i) > 0 else None])
                end = head_end + 4 + length
                if len(buf) < end:
                    break
                status = head[9:12].decode()
                if status == "200":
                    res.ok += 1
                else:
                    res.other[status] = res.other.get(status, 0) + 1
                buf = buf[end:]
                done += 1
            st["buf"] = buf
            st["inflight"] = int(st["inflight"]) - done  # type: ignore[call-overload]
            if done and remaining > 0:
                n = min(done, remaining)
                remaining -= n
                s.sendall(request * n)
                res.sent += n
                st["inflight"] = int(st["inflight"]) + n  # type: ignore[call-overload]
            if st["inflight"] == 0 and remaining == 0:
                sel.unregister(s)
                s.close()
                del state[s]
    res.seconds = time.perf_counter() - started
    return res
