"""The raw HTTP/1.1 client against a real asyncio server that splits bytes awkwardly."""

from __future__ import annotations

import asyncio

import pytest

from slogate.loadgen.http import StreamingConnection, Target, build_request, open_connection


async def serve(handler) -> tuple[asyncio.AbstractServer, Target]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, Target("127.0.0.1", port, False, "")


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":")[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
    )
    return await reader.readexactly(length)


def chunked(parts: list[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


@pytest.mark.parametrize("split", [1, 3, 7, 1000])
def test_chunked_response_split_anywhere(split: int) -> None:
    parts = [b"data: one\n\n", b"data: two\n\n", b"data: [DONE]\n\n"]

    async def handler(reader, writer):
        for _ in range(2):  # keep-alive: two requests on one connection
            await read_request(reader)
            raw = (
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n" + chunked(parts)
            )
            for i in range(0, len(raw), split):
                writer.write(raw[i : i + split])
                await writer.drain()
                await asyncio.sleep(0)
        writer.close()

    async def main():
        server, target = await serve(handler)
        async with server:
            conn = await open_connection(target)
            bodies = []
            for _ in range(2):
                sent, fut = conn.start(build_request(target, "/v1/completions", b"{}"))
                resp = await asyncio.wait_for(fut, 5)
                assert resp.status == 200 and not resp.error
                assert all(t >= sent for t, _ in resp.pieces)
                bodies.append(resp.body)
            conn.transport.close()
            return bodies

    assert asyncio.run(main()) == [b"".join(parts)] * 2


def test_content_length_and_error_status() -> None:
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 4\r\n\r\nslow")
        await writer.drain()
        writer.close()

    async def main():
        server, target = await serve(handler)
        async with server:
            conn = await open_connection(target)
            _, fut = conn.start(build_request(target, "/x", b"{}"))
            return await asyncio.wait_for(fut, 5)

    resp = asyncio.run(main())
    assert (resp.status, resp.body, resp.error) == (429, b"slow", "")


def test_connection_dropped_mid_stream_is_an_error() -> None:
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
        await writer.drain()
        writer.close()

    async def main():
        server, target = await serve(handler)
        async with server:
            conn = await open_connection(target)
            _, fut = conn.start(build_request(target, "/x", b"{}"))
            return await asyncio.wait_for(fut, 5), conn

    resp, conn = asyncio.run(main())
    assert "closed by the server" in resp.error and conn.closed


def test_garbage_instead_of_http() -> None:
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await writer.drain()

    async def main():
        server, target = await serve(handler)
        async with server:
            conn: StreamingConnection = await open_connection(target)
            _, fut = conn.start(build_request(target, "/x", b"{}"))
            return await asyncio.wait_for(fut, 5)

    assert "invalid HTTP response" in asyncio.run(main()).error


def test_target_from_url() -> None:
    t = Target.from_url("https://example.test/prefix/")
    assert (t.host, t.port, t.tls, t.prefix) == ("example.test", 443, True, "/prefix")
    with pytest.raises(ValueError):
        Target.from_url("ftp://x")
