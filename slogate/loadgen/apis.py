"""Request formats: how to ask an engine for a completion and how to read its answer.

``completions`` and ``chat`` are the OpenAI-compatible routes every engine serves.
Native routes (SGLang's ``/generate``, Ollama's ``/api/generate``) register here too, each
as one small class: the path, the request body, and the parser of the response.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from slogate.loadgen.sse import StreamResult, parse_json_body, parse_stream


@dataclass(frozen=True)
class Request:
    """What one request asks for, independent of the wire format."""

    model: str
    prompt: str
    max_tokens: int
    ignore_eos: bool = True
    stream: bool = True


class Api(Protocol):
    name: ClassVar[str]
    path: ClassVar[str]

    def body(self, req: Request) -> dict[str, Any]: ...

    def parse(self, pieces: Iterable[tuple[int, bytes]], content_type: str) -> StreamResult:
        """Raises ``SSEError`` (or a subclass) on a malformed response."""
        ...


class OpenAICompletions:
    name: ClassVar[str] = "completions"
    path: ClassVar[str] = "/v1/completions"

    def body(self, req: Request) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": req.model,
            "prompt": req.prompt,
            "max_tokens": req.max_tokens,
            "temperature": 0.0,
            "stream": req.stream,
        }
        if req.stream:
            body["stream_options"] = {"include_usage": True}
        if req.ignore_eos:
            body["ignore_eos"] = True
        return body

    def parse(self, pieces: Iterable[tuple[int, bytes]], content_type: str) -> StreamResult:
        if "text/event-stream" in content_type:
            return parse_stream(pieces)
        pieces = list(pieces)
        result = parse_json_body(b"".join(p for _, p in pieces))
        result.text_chunk_ns = [pieces[-1][0]] if result.text and pieces else []
        return result


class OpenAIChat(OpenAICompletions):
    name: ClassVar[str] = "chat"
    path: ClassVar[str] = "/v1/chat/completions"

    def body(self, req: Request) -> dict[str, Any]:
        body = super().body(req)
        del body["prompt"]
        body["messages"] = [{"role": "user", "content": req.prompt}]
        return body


APIS: dict[str, Api] = {api.name: api for api in (OpenAICompletions(), OpenAIChat())}


def register(api: Api) -> None:
    APIS[api.name] = api


def encode_body(api: Api, req: Request, extra: dict[str, Any] | None = None) -> bytes:
    body = api.body(req)
    if extra:
        body.update(extra)
    return json.dumps(body).encode()


import slogate.loadgen.native  # noqa: E402, F401  (registers native request formats)
