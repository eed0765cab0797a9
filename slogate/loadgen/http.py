"""A minimal HTTP/1.1 client on a raw asyncio protocol, built for timing streamed responses.

Why not aiohttp or httpx here: every byte that arrives is stamped with
``perf_counter_ns()`` first thing in ``data_received``, before any parsing, and the
work per read is one small de-chunking step.  There is no connection pool that could
cap concurrency behind the caller's back: each in-flight request owns one connection,
opened before the measured window and kept alive between requests.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

_perf_ns = time.perf_counter_ns


@dataclass(frozen=True)
class Target:
    """Where requests go: scheme, host, port and the path prefix of the base URL."""

    host: str
    port: int
    tls: bool
    prefix: str

    @classmethod
    def from_url(cls, base_url: str) -> Target:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{base_url!r} is not an http(s) URL such as http://127.0.0.1:8000")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        return cls(parts.hostname, port, tls, parts.path.rstrip("/"))

    @property
    def host_header(self) -> str:
        return f"{self.host}:{self.port}"


def build_request(
    target: Target, path: str, body: bytes, headers: dict[str, str] | None = None
) -> bytes:
    """The bytes of one POST request with a JSON body."""
    lines = [
        f"POST {target.prefix}{path} HTTP/1.1",
        f"Host: {target.host_header}",
        "Content-Type: application/json",
        "Accept: text/event-stream",
        f"Content-Length: {len(body)}",
    ]
    for key, value in (headers or {}).items():
        lines.append(f"{key}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class Response:
    """A response as received: status, headers and body pieces stamped at arrival."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    pieces: list[tuple[int, bytes]] = field(default_factory=list)  # (arrival ns, body bytes)
    headers_ns: int = 0
    done_ns: int = 0
    error: str = ""  # set when the connection broke before the response was complete

    @property
    def body(self) -> bytes:
        return b"".join(piece for _, piece in self.pieces)


class ProtocolError(Exception):
    """The server sent something that is not valid HTTP/1.1."""


_HEAD, _SIZE, _DATA, _CRLF, _TRAILER, _LENGTH, _UNTIL_CLOSE, _DONE = range(8)


class StreamingConnection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = True
        self.last_activity_ns = 0
        self._waiter: asyncio.Future[Response] | None = None
        self._resp = Response()
        self._state = _DONE
        self._buf = b""
        self._remaining = 0
        self._keep_alive = True

    # -- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.closed = False

    def data_received(self, data: bytes) -> None:
        now = _perf_ns()
        self.last_activity_ns = now
        if self._waiter is None or self._state == _DONE:
            return  # bytes outside a request: ignore (a server closing an idle connection)
        try:
            self._feed(data, now)
        except (ProtocolError, ValueError) as exc:
            self.abort(f"invalid HTTP response: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            if self._state == _UNTIL_CLOSE:
                self._finish(_perf_ns())
            else:
                reason = f": {exc}" if exc else ""
                self._fail(f"connection closed by the server before the response ended{reason}")

    # -- request --------------------------------------------------------------------------
    def start(self, raw_request: bytes) -> tuple[int, asyncio.Future[Response]]:
        """Send a request; returns the send time and a future for the whole response."""
        assert self.transport is not None and not self.closed
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        self._resp = Response()
        self._state = _HEAD
        self._buf = b""
        sent = _perf_ns()
        self.last_activity_ns = sent
        self.transport.write(raw_request)
        return sent, self._waiter

    def abort(self, reason: str) -> None:
        """End the current request with an error (used by timeouts) and drop the connection."""
        # Closed from now on: connection_lost comes a loop iteration later, after the
        # worker woken by _fail has looked whether it may send its next request here.
        self.closed = True
        self._fail(reason)
        if self.transport is not None:
            self.transport.abort()

    @property
    def busy(self) -> bool:
        return self._waiter is not None and not self._waiter.done()

    # -- parsing --------------------------------------------------------------------------
    def _fail(self, reason: str) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._resp.error = reason
            self._resp.done_ns = _perf_ns()
            self._state = _DONE
            self._waiter.set_result(self._resp)

    def _finish(self, now: int) -> None:
        self._state = _DONE
        self._resp.done_ns = now
        if not self._keep_alive and self.transport is not None:
            self.closed = True  # as in abort: never reuse a connection that is closing
            self.transport.close()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(self._resp)

    def _feed(self, data: bytes, now: int) -> None:
        buf = self._buf + data if self._buf else data
        pos = 0
        end = len(buf)
        resp = self._resp
        pieces = resp.pieces
        while pos < end:
            state = self._state
            if state == _DATA or state == _LENGTH:
                take = min(self._remaining, end - pos)
                pieces.append((now, buf[pos : pos + take]))
                self._remaining -= take
                pos += take
                if self._remaining == 0:
                    if state == _LENGTH:
                        self._finish(now)
                        break
                    self._state = _CRLF
            elif state == _UNTIL_CLOSE:
                pieces.append((now, buf[pos:]))
                pos = end
            elif state == _CRLF:
                if end - pos < 2:
                    break
                pos += 2
                self._state = _SIZE
            elif state == _SIZE:
                i = buf.find(b"\r\n", pos)
                if i < 0:
                    if end - pos > 1024:
                        raise ProtocolError("chunk size line too long")
                    break
                size = int(buf[pos:i].split(b";", 1)[0], 16)
                pos = i + 2
                if size == 0:
                    self._state = _TRAILER
                else:
                    self._remaining = size
                    self._state = _DATA
            elif state == _TRAILER:
                i = buf.find(b"\r\n", pos)
                if i < 0:
                    break
                if i == pos:
                    pos += 2
                    self._finish(now)
                    break
                pos = i + 2
            elif state == _HEAD:
                i = buf.find(b"\r\n\r\n", pos)
                if i < 0:
                    if end - pos > 65536:
                        raise ProtocolError("response headers larger than 64 KiB")
                    break
                self._parse_head(buf[pos:i], now)
                pos = i + 4
            else:  # _DONE: trailing bytes after a complete response are ignored
                pos = end
        self._buf = buf[pos:] if pos < end and self._state != _DONE else b""

    def _parse_head(self, head: bytes, now: int) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise ProtocolError(f"bad status line {lines[0][:80]!r}")
        resp = self._resp
        resp.status = int(parts[1])
        resp.headers_ns = now
        headers = resp.headers
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        conn = headers.get("connection", "").lower()
        self._keep_alive = conn != "close" and parts[0] != "HTTP/1.0"
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._state = _SIZE
        elif "content-length" in headers:
            self._remaining = int(headers["content-length"])
            self._state = _LENGTH
            if self._remaining == 0:
                self._finish(now)
        else:
            self._keep_alive = False
            self._state = _UNTIL_CLOSE


def auth_headers(api_key: str | None) -> dict[str, str]:
    """The bearer header for ``api_key`` (none without a key).

    Call it where the headers are used, not into a local variable: pytest's --showlocals
    prints the locals of every frame of a failure, into the terminal and Allure.
    """
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


async def open_connection(target: Target, timeout_s: float = 30.0) -> StreamingConnection:
    """Connect (TCP_NODELAY is asyncio's default for TCP transports)."""
    loop = asyncio.get_running_loop()
    ssl_ctx = ssl.create_default_context() if target.tls else None
    _, protocol = await asyncio.wait_for(
        loop.create_connection(StreamingConnection, target.host, target.port, ssl=ssl_ctx),
        timeout_s,
    )
    return protocol
