"""A known-timing OpenAI-style server: the ground truth for the client's accuracy.

Every streamed request gets its first chunk ``ttft_ms`` after it arrived and one chunk
every ``interval_ms`` after that, on absolute deadlines (``loop.call_at``), each chunk
carrying ``tokens_per_chunk`` tokens.  The server records when each request arrived and
when each chunk was really written (``perf_counter_ns``, the same monotonic clock as the
client's on Linux), and the peak number of requests in flight.  ``GET /timing/stats``
returns them; ``POST /timing/reset`` clears them.

It is a raw asyncio protocol, run on uvloop when installed, so that it can keep 1024
streams on schedule on one core: the chunk bytes are built once per request and each
write is one ``transport.write``.

    python -m slogate.timingserver --fd FD --ttft-ms 200 --interval-ms 20 --tokens-per-chunk 1
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import re
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any

_perf_ns = time.perf_counter_ns


@dataclass
class Timing:
    ttft_ms: float = 200.0
    interval_ms: float = 20.0
    tokens_per_chunk: int = 1


@dataclass
class Served:
    arrival_ns: int
    tokens: int
    writes_ns: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"arrival_ns": self.arrival_ns, "tokens": self.tokens, "writes_ns": self.writes_ns}


class State:
    def __init__(self, timing: Timing) -> None:
        self.timing = timing
        self.served: list[Served] = []
        self.in_flight = 0
        self.peak_in_flight = 0

    def reset(self) -> None:
        self.served = []
        self.peak_in_flight = self.in_flight


def _chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


_HEAD_SSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)


def _json_response(status: int, obj: Any) -> bytes:
    body = json.dumps(obj).encode()
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "OK")
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body


class TimingProtocol(asyncio.Protocol):
    def __init__(self, state: State) -> None:
        self.state = state
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.handle_: asyncio.TimerHandle | None = None
        self.current: Served | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def connection_lost(self, exc: Exception | None) -> None:
        if self.handle_ is not None:
            self.handle_.cancel()
        if self.current is not None:
            self.state.in_flight -= 1
            self.current = None

    def data_received(self, data: bytes, now: int | None = None) -> None:
        """``now``: the kernel's receive time of these bytes, when the socket gave it."""
        now = now or _perf_ns()
        buf = self.buf + data if self.buf else data
        while True:
            i = buf.find(b"\r\n\r\n")
            if i < 0:
                break
            m = _CONTENT_LENGTH.search(buf, 0, i)
            length = int(m.group(1)) if m else 0
            end = i + 4 + length
            if len(buf) < end:
                break
            line_end = buf.find(b"\r\n")
            request_line = buf[:line_end].decode("latin-1").split(" ", 2)
            body = buf[i + 4 : end]
            buf = buf[end:]
            self.handle(request_line, body, now)
        self.buf = buf

    def handle(self, request_line: list[str], body: bytes, now: int) -> None:
        assert self.transport is not None
        method, path = request_line[0], request_line[1] if len(request_line) > 1 else ""
        state = self.state
        if method == "GET" and path in ("/health", "/v1/models"):
            data = {"object": "list", "data": [{"id": "timing", "object": "model"}]}
            self.transport.write(_json_response(200, data))
            return
        if method == "GET" and path.startswith("/timing/stats"):
            self.transport.write(
                _json_response(
                    200,
                    {
                        "peak_in_flight": state.peak_in_flight,
                        "timing": state.timing.__dict__,
                        "requests": [s.to_json() for s in state.served],
                    },
                )
            )
            return
        if method == "POST" and path == "/timing/reset":
            state.reset()
            self.transport.write(_json_response(200, {"ok": True}))
            return
        if method != "POST" or not path.endswith("/completions"):
            self.transport.write(_json_response(404, {"error": "not found"}))
            return
        # A regex, not json.loads: the server must stamp the next arrival of a burst soon.
        m = _MAX_TOKENS.search(body)
        if m is None or int(m.group(1)) < 1:
            self.transport.write(_json_response(400, {"error": "max_tokens is required"}))
            return
        self.stream(int(m.group(1)), "chat" in path, now)

    def stream(self, max_tokens: int, chat: bool, arrival_ns: int) -> None:
        assert self.transport is not None
        state, timing = self.state, self.state.timing
        served = Served(arrival_ns, max_tokens)
        state.served.append(served)
        state.in_flight += 1
        state.peak_in_flight = max(state.peak_in_flight, state.in_flight)
        self.current = served
        full, last, n_chunks = _chunks(max_tokens, chat, timing.tokens_per_chunk)

        loop = asyncio.get_running_loop()
        # Deadlines are absolute: loop.time() and perf_counter share CLOCK_MONOTONIC's rate,
        # so translate the arrival stamp into loop time once.
        t0 = loop.time() - (_perf_ns() - arrival_ns) / 1e9 + timing.ttft_ms / 1e3
        interval = timing.interval_ms / 1e3
        transport = self.transport
        writes = served.writes_ns

        def send(i: int) -> None:
            if transport.is_closing():
                return
            # The response head goes out with the first chunk, not on arrival: in a burst
            # of arrivals every write saved lets the next arrival be stamped sooner.
            head = _HEAD_SSE if i == 0 else b""
            if i == n_chunks - 1:
                transport.write(head + last)
                writes.append(_perf_ns())
                state.in_flight -= 1
                self.current = None
                return
            transport.write(head + full if head else full)
            writes.append(_perf_ns())
            # Schedule only the next chunk: a burst of arrivals then costs one timer each,
            # not one per chunk, so the server stamps arrivals on time.
            self.handle_ = loop.call_at(t0 + (i + 1) * interval, send, i + 1)

        self.handle_ = loop.call_at(t0, send, 0)


@functools.lru_cache(maxsize=256)
def _chunks(max_tokens: int, chat: bool, per: int) -> tuple[bytes, bytes, int]:
    """The bytes of a response's chunks, built once per shape: arrivals come in bursts,
    and every microsecond spent per arrival delays the stamp of the next one."""
    n_chunks = -(-max_tokens // per)

    def event(tokens: int, finish: str | None) -> dict[str, Any]:
        text = " tok" * tokens
        if chat:
            choice: dict[str, Any] = {"index": 0, "delta": {"content": text}}
            obj = "chat.completion.chunk"
        else:
            choice = {"index": 0, "text": text}
            obj = "text_completion"
        choice["finish_reason"] = finish
        return {"id": "c", "object": obj, "model": "timing", "choices": [choice]}

    def sse(obj: dict[str, Any]) -> bytes:
        return _chunk(b"data: " + json.dumps(obj).encode() + b"\n\n")

    full = sse(event(per, None))
    usage = {"id": "c", "object": "text_completion", "model": "timing", "choices": [],
             "usage": {"prompt_tokens": 1, "completion_tokens": max_tokens,
                       "total_tokens": max_tokens + 1}}  # fmt: skip
    last = sse(event(max_tokens - per * (n_chunks - 1), "length")) + sse(usage)
    last += _chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"
    return full, last, n_chunks


_CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")
_MAX_TOKENS = re.compile(rb'"max(?:_completion)?_tokens"\s*:\s*(\d+)')


_TIMESPEC = struct.Struct("qq")
#: Linux's SO_TIMESTAMPNS (x86-64 and arm64), which the socket module does not name.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size)


def _realtime_minus_monotonic() -> int:
    """CLOCK_REALTIME - perf_counter, to turn the kernel's receive stamps into the
    monotonic clock the clients use (the tightest of a few brackets)."""
    best = None
    for _ in range(50):
        a = _perf_ns()
        r = time.time_ns()
        b = _perf_ns()
        if best is None or b - a < best[0]:
            best = (b - a, r - (a + b) // 2)
    assert best is not None
    return best[1]


class _SockTransport:
    """The little of ``asyncio.Transport`` the protocol uses, over a raw socket."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self.loop, self.sock = loop, sock
        self.pending = b""
        self.closing = False
        self.protocol: TimingProtocol | None = None

    def write(self, data: bytes) -> None:
        if self.closing:
            return
        if self.pending:
            self.pending += data
            return
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.close()
            return
        if sent < len(data):
            self.pending = data[sent:]
            self.loop.add_writer(self.sock.fileno(), self._flush)

    def _flush(self) -> None:
        try:
            sent = self.sock.send(self.pending)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        self.pending = self.pending[sent:]
        if not self.pending:
            self.loop.remove_writer(self.sock.fileno())

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        fd = self.sock.fileno()
        self.loop.remove_reader(fd)
        self.loop.remove_writer(fd)
        self.sock.close()
        if self.protocol is not None:
            self.protocol.connection_lost(None)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.sock if name == "socket" else default


class KernelStampedServer:
    """Accepts connections itself and reads with ``recvmsg`` and ``SO_TIMESTAMPNS``.

    A request is stamped with the time the kernel received it, not the time the event
    loop got round to it: in a burst of 1024 arrivals the last would otherwise be
    stamped milliseconds late, and that server-side delay would be blamed on the client.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, state: State):
        self.loop, self.listener, self.state = loop, sock, state
        self.offset = _realtime_minus_monotonic()
        sock.setblocking(False)
        loop.add_reader(sock.fileno(), self._accept)
        self.transports: set[_SockTransport] = set()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                conn.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            except OSError:
                pass  # no kernel stamps here: reads are stamped on arrival in the loop
            transport = _SockTransport(self.loop, conn)
            protocol = TimingProtocol(self.state)
            transport.protocol = protocol
            protocol.connection_made(transport)  # type: ignore[arg-type]
            self.transports.add(transport)
            self.loop.add_reader(conn.fileno(), self._readable, transport, protocol)

    def _readable(self, transport: _SockTransport, protocol: TimingProtocol) -> None:
        try:
            data, ancdata, _, _ = transport.sock.recvmsg(65536, _ANCILLARY)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            transport.close()
            self.transports.discard(transport)
            return
        if not data:
            transport.close()
            self.transports.discard(transport)
            return
        stamp = None
        for level, kind, cdata in ancdata:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = _TIMESPEC.unpack(cdata[: _TIMESPEC.size])
                stamp = sec * 1_000_000_000 + nsec - self.offset
        protocol.data_received(data, stamp)

    def close(self) -> None:
        self.loop.remove_reader(self.listener.fileno())
        for transport in list(self.transports):
            transport.close()


async def serve(sock: socket.socket, timing: Timing) -> None:
    loop = asyncio.get_running_loop()
    state = State(timing)
    server = KernelStampedServer(loop, sock, state)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"timing server ready on {sock.getsockname()}", flush=True)
    try:
        await stop.wait()
    finally:
        server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m slogate.timingserver")
    parser.add_argument("--fd", type=int, help="serve on this inherited listening socket")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ttft-ms", type=float, default=200.0)
    parser.add_argument("--interval-ms", type=float, default=20.0)
    parser.add_argument("--tokens-per-chunk", type=int, default=1)
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args(argv)
    if args.fd is not None:
        sock = socket.socket(fileno=args.fd)
    else:
        sock = socket.create_server(("127.0.0.1", args.port), backlog=4096)
    timing = Timing(args.ttft_ms, args.interval_ms, args.tokens_per_chunk)
    run: Any = asyncio.run
    if not args.no_uvloop:
        try:
            import uvloop

            run = uvloop.run
        except ImportError:
            pass
    try:
        run(serve(sock, timing))
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
