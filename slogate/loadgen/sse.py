"""Server-sent events from OpenAI-compatible engines, parsed after the fact.

The client keeps the body pieces with their arrival times; this module turns them into
events, each stamped with the arrival time of the read that completed it, and extracts
the generated text (``text`` for completions, ``delta.content`` / ``delta.reasoning_content``
/ ``delta.reasoning`` for chat) and the ``usage`` block.

``parse_stream`` raises only ``SSEError`` on malformed input.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any


class SSEError(ValueError):
    """The stream is not valid SSE carrying OpenAI-style JSON chunks."""


@dataclass
class StreamResult:
    text_chunk_ns: list[int] = field(default_factory=list)  # arrival of text-bearing events
    text: str = ""
    completion_tokens: int | None = None
    prompt_tokens: int | None = None
    done: bool = False  # saw ``data: [DONE]``
    finish_reason: str | None = None
    error: str = ""  # an error object sent inside the stream


def iter_events(pieces: Iterable[tuple[int, bytes]]) -> Iterator[tuple[int, bytes]]:
    """Yield (arrival ns, event bytes) for every complete event (blank-line terminated)."""
    buf = b""
    for t, piece in pieces:
        buf = buf + piece if buf else piece
        if b"\r" in buf:
            # SSE allows CRLF line ends; normalise (a CR at the end may pair with the next LF)
            keep_cr = buf.endswith(b"\r")
            buf = buf.replace(b"\r\n", b"\n")
            if keep_cr:
                buf = buf[:-1].replace(b"\r", b"\n") + b"\r"
            else:
                buf = buf.replace(b"\r", b"\n")
        start = 0
        while True:
            i = buf.find(b"\n\n", start)
            if i < 0:
                break
            if i > start:
                yield t, buf[start:i]
            start = i + 2
        buf = buf[start:]
    rest = buf.strip()
    if rest:
        # The stream ended without the blank line that closes an event; engines always
        # send it, so this is a truncated stream rather than one more event.
        raise SSEError(f"stream ended inside an event: {rest[:80]!r}")


def json_object(data: bytes, what: str = "event") -> dict[str, Any]:
    """``data`` parsed as a JSON object; ``SSEError`` naming ``what`` otherwise."""
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting too deep
        raise SSEError(f"{what} is not JSON ({exc}): {data[:80]!r}") from None
    if not isinstance(obj, dict):
        raise SSEError(f"{what} is not a JSON object: {data[:80]!r}")
    return obj


def event_data(event: bytes) -> bytes | None:
    """The ``data:`` payload of one SSE event (None for comments and empty events)."""
    data_lines = []
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            data_lines.append(line[5:].lstrip(b" ") if line[5:6] == b" " else line[5:])
        elif line.startswith(b":") or not line:
            continue  # comment / keep-alive
        elif line.split(b":", 1)[0] in (b"event", b"id", b"retry"):
            continue
        else:
            raise SSEError(f"not an SSE field line: {line[:80]!r}")
    if not data_lines:
        return None
    return b"\n".join(data_lines)


def _text_of(choice: dict[str, Any]) -> str:
    text = choice.get("text")
    if isinstance(text, str) and text:
        return text
    delta = choice.get("delta")
    if isinstance(delta, dict):
        parts = [delta.get(k) for k in ("reasoning_content", "reasoning", "content")]
        return "".join(p for p in parts if isinstance(p, str))
    return ""


def parse_stream(pieces: Iterable[tuple[int, bytes]]) -> StreamResult:
    """Parse a whole streamed body. Raises ``SSEError`` if it is malformed."""
    result = StreamResult()
    texts: list[str] = []
    for t, event in iter_events(pieces):
        data = event_data(event)
        if data is None:
            continue
        if data.strip() == b"[DONE]":
            result.done = True
            continue
        obj = json_object(data)
        if "error" in obj or obj.get("object") == "error":
            err = obj.get("error", obj)
            msg = err.get("message") if isinstance(err, dict) else err
            result.error = str(msg or obj)[:500]
            continue
        choices = obj.get("choices") or []
        if not isinstance(choices, list):
            raise SSEError(f"'choices' is not a list: {data[:80]!r}")
        chunk_text = ""
        for choice in choices:
            if not isinstance(choice, dict):
                raise SSEError(f"a choice is not an object: {data[:80]!r}")
            chunk_text += _text_of(choice)
            if choice.get("finish_reason"):
                result.finish_reason = str(choice["finish_reason"])
        if chunk_text:
            result.text_chunk_ns.append(t)
            texts.append(chunk_text)
        usage = obj.get("usage")
        if isinstance(usage, dict):
            ct, pt = usage.get("completion_tokens"), usage.get("prompt_tokens")
            if isinstance(ct, int) and not isinstance(ct, bool):
                result.completion_tokens = ct
            if isinstance(pt, int) and not isinstance(pt, bool):
                result.prompt_tokens = pt
    result.text = "".join(texts)
    return result


def parse_json_body(body: bytes) -> StreamResult:
    """A non-streamed response: the whole completion in one JSON object."""
    obj = json_object(body, "response")
    result = StreamResult(done=True)
    texts = []
    choices = obj.get("choices") or []
    if not isinstance(choices, list):
        raise SSEError(f"'choices' is not a list: {body[:80]!r}")
    for choice in choices:
        if isinstance(choice, dict):
            texts.append(_text_of(choice))
            message = choice.get("message")
            if isinstance(message, dict):
                texts.append(_text_of({"delta": message}))
    result.text = "".join(texts)
    usage = obj.get("usage")
    if isinstance(usage, dict):
        result.completion_tokens = _count(usage.get("completion_tokens"))
        result.prompt_tokens = _count(usage.get("prompt_tokens"))
    return result


def _count(value: Any) -> int | None:
    """A token count from ``usage``, or None when it is not an integer."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None
