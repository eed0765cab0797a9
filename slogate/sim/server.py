"""The simulator's OpenAI-compatible HTTP front end (aiohttp.web), in vLLM's wire format.

Routes: ``POST /v1/completions`` and ``/v1/chat/completions`` (streaming or not),
``GET /health``, ``/v1/models``, ``/version``, ``/metrics`` (vLLM metric names), and the
simulator's own ``GET /sim/stats`` and ``POST /sim/reset_stats``.

Tokenization is by whitespace: a prompt has as many tokens as words, and each generated
token is the word ``" tok"``, so re-counting the output by whitespace gives exactly
``usage.completion_tokens``.

Injected faults (``faults.py``) are decided when a request arrives; a faulted stream
gets its own sink (``_FaultySink``) so the common path pays nothing for them.

Streaming is built for thousands of concurrent streams on a small machine: each request's
SSE events are serialized once when it arrives (the token never changes), and the engine
writes them straight to the connection's transport at the end of each step, framed as
HTTP/1.1 chunks, instead of waking one task per token.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http import HttpVersion11

from slogate.sim.engine import Engine, SimRequest, State
from slogate.sim.faults import Faults, stop_point
from slogate.sim.profiles import Profile

TOKEN_TEXT = " tok"
#: When set, ``/v1/*`` requires ``Authorization: Bearer <value>``, as vLLM's VLLM_API_KEY.
API_KEY_ENV = "SLOGATE_SIM_API_KEY"
# A client that has not read this much of its stream is treated as gone.
MAX_UNSENT_BYTES = 4 * 1024 * 1024

try:
    from slogate import __version__ as _SLOGATE_VERSION
except ImportError:  # the simulator also runs from a bare checkout of slogate/sim
    _SLOGATE_VERSION = "0.1.0"


def _dumps(obj: Any) -> str:
    # Compact, as pydantic's model_dump_json writes it.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _sse(obj: Any) -> bytes:
    return f"data: {_dumps(obj)}\n\n".encode()


_SSE_DONE = b"data: [DONE]\n\n"


class ApiError(Exception):
    """An error answered in OpenAI/vLLM form."""

    def __init__(
        self,
        status: int,
        message: str,
        err_type: str = "BadRequestError",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.err_type = err_type
        self.headers = headers

    def response(self) -> web.Response:
        body = {
            "object": "error",
            "message": self.message,
            "type": self.err_type,
            "param": None,
            "code": self.status,
        }
        return web.json_response(body, status=self.status, headers=self.headers)


class _Chunker:
    """HTTP/1.1 chunked framing (or none for HTTP/1.0, which streams until close)."""

    __slots__ = ("chunked",)

    def __init__(self, chunked: bool) -> None:
        self.chunked = chunked

    def frame(self, payload: bytes) -> bytes:
        if not self.chunked:
            return payload
        return b"%x\r\n%s\r\n" % (len(payload), payload)


class _StreamSink:
    """Writes one streaming request's SSE events to its connection; a ``Sink``."""

    __slots__ = ("_transport", "_token", "_first", "_final", "_chunker")

    def __init__(
        self,
        transport: asyncio.BaseTransport,
        chunker: _Chunker,
        token_event: bytes,
        first_prefix: bytes,
        final_events: Callable[[SimRequest], bytes],
    ) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        self._transport = transport
        self._token = chunker.frame(token_event)
        # Chat streams open with a role-only delta, sent with the first token as vLLM does.
        self._first = chunker.frame(first_prefix + token_event)
        self._final = final_events  # serialized once, when the request ends
        self._chunker = chunker

    def _gone(self) -> bool:
        t = self._transport
        return t.is_closing() or t.get_write_buffer_size() > MAX_UNSENT_BYTES

    def token(self, req: SimRequest) -> bool:
        if self._gone():
            return False
        self._transport.write(self._first if req.generated == 1 else self._token)
        return True

    def finish(self, req: SimRequest) -> None:
        if not self._gone():
            self._transport.write(self._chunker.frame(self._final(req)))


#: An SSE event whose JSON is cut off: what a buggy proxy or a crashing worker sends.
MALFORMED_EVENT = b'data: {"id":"cmpl-malformed","object":"text_completion","choices":[{"text\n\n'


class _FaultySink(_StreamSink):
    """A ``_StreamSink`` that stalls after ``stall_after`` tokens or sends a broken event."""

    __slots__ = ("_stall_after", "_garbage")

    def __init__(
        self,
        base: _StreamSink,
        *,
        stall_after: int | None = None,
        malformed: bool = False,
    ) -> None:
        for name in _StreamSink.__slots__:
            setattr(self, name, getattr(base, name))
        self._stall_after = stall_after
        self._garbage = self._chunker.frame(MALFORMED_EVENT) if malformed else b""

    def _stalled(self, req: SimRequest) -> bool:
        return self._stall_after is not None and req.generated > self._stall_after

    def token(self, req: SimRequest) -> bool:
        if self._stalled(req):
            return not self._gone()  # the engine goes on; nothing reaches the client
        if not super().token(req):
            return False
        if self._garbage:
            self._transport.write(self._garbage)
            self._garbage = b""
        return True

    def finish(self, req: SimRequest) -> None:
        if self._gone():
            return
        if self._stall_after is not None:
            # Never the end of the stream; the last token only if it is before the stall.
            if not self._stalled(req):
                self._transport.write(self._first if req.generated == 1 else self._token)
            return
        if self._garbage:
            self._transport.write(self._garbage)
            self._garbage = b""
        super().finish(req)


class SimServer:
    """The aiohttp application around one ``Engine``."""

    def __init__(
        self,
        engine: Engine,
        *,
        model: str,
        profile: Profile,
        faults: Faults | None = None,
        api_key: str | None = None,
    ) -> None:
        self.engine = engine
        self._api_key = api_key
        self.model = model
        self.profile = profile
        self.faults = faults or Faults()
        self.ready = True  # False while an injected slow start lasts
        # Set at shutdown: stalled handlers wait on it, so they do not hold the exit up.
        self._closing = asyncio.Event()
        self.max_model_len = profile.max_model_len
        self.created = int(time.time())
        self.in_flight = 0
        self.peak_in_flight = 0
        self.requests_total = 0

    def app(self) -> web.Application:
        middlewares = [self._check_key] if self._api_key else []
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=middlewares)
        app.add_routes(
            [
                web.post("/v1/completions", self.completions),
                web.post("/v1/chat/completions", self.chat_completions),
                web.get("/health", self.health),
                web.get("/v1/models", self.models),
                web.get("/version", self.version),
                web.get("/metrics", self.metrics),
                web.get("/sim/stats", self.stats),
                web.post("/sim/reset_stats", self.reset_stats),
            ]
        )
        return app

    @web.middleware
    async def _check_key(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        # As vLLM: only the OpenAI routes need the key; /health and /metrics do not.
        if request.path.startswith("/v1/"):
            if request.headers.get("Authorization") != f"Bearer {self._api_key}":
                return web.json_response({"error": "Unauthorized"}, status=401)
        response: web.StreamResponse = await handler(request)
        return response

    # -- simple endpoints -----------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        if not self.ready:
            return web.Response(status=503, text="loading (injected --slow-start)")
        return web.Response(status=200)

    def close(self) -> None:
        """Release the handlers an injected stall holds open."""
        self._closing.set()

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "version": f"{_SLOGATE_VERSION}-sim",
                "profile": self.profile.name,
                "time_scale": self.engine.time_scale,
            }
        )

    async def models(self, request: web.Request) -> web.Response:
        card = {
            "id": self.model,
            "object": "model",
            "created": self.created,
            "owned_by": "vllm",
            "root": self.model,
            "parent": None,
            "max_model_len": self.max_model_len,
            "permission": [
                {
                    "id": f"modelperm-{uuid.uuid4().hex}",
                    "object": "model_permission",
                    "created": self.created,
                    "allow_create_engine": False,
                    "allow_sampling": True,
                    "allow_logprobs": True,
                    "allow_search_indices": False,
                    "allow_view": True,
                    "allow_fine_tuning": False,
                    "organization": "*",
                    "group": None,
                    "is_blocking": False,
                }
            ],
        }
        return web.json_response({"object": "list", "data": [card]})

    async def metrics(self, request: web.Request) -> web.Response:
        s = self.engine.scheduler
        label = f'model_name="{self.model}"'
        usage = s.kv_usage
        lines: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(f"{name}{{{labels}}} {float(value)}" for labels, value in samples)

        metric(
            "vllm:num_requests_running",
            "gauge",
            "Number of requests currently running on GPU.",
            [(label, s.num_running)],
        )
        metric(
            "vllm:num_requests_waiting",
            "gauge",
            "Number of requests waiting to be processed.",
            [(label, len(s.waiting))],
        )
        metric(
            "vllm:gpu_cache_usage_perc",
            "gauge",
            "GPU KV-cache usage. 1 means 100 percent usage.",
            [(label, usage)],
        )
        metric(
            "vllm:kv_cache_usage_perc",
            "gauge",
            "KV-cache usage. 1 means 100 percent usage.",
            [(label, usage)],
        )
        metric(
            "vllm:prompt_tokens_total",
            "counter",
            "Number of prefill tokens processed.",
            [(label, s.prompt_tokens_total)],
        )
        metric(
            "vllm:generation_tokens_total",
            "counter",
            "Number of generation tokens processed.",
            [(label, s.generation_tokens_total)],
        )
        metric(
            "vllm:request_success_total",
            "counter",
            "Count of successfully processed requests.",
            [(f'finished_reason="{reason}",{label}', n) for reason, n in s.finished_total.items()],
        )
        return web.Response(
            body=("\n".join(lines) + "\n").encode(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )

    def _stats(self) -> dict[str, Any]:
        s = self.engine.scheduler
        return {
            "profile": self.profile.name,
            "time_scale": self.engine.time_scale,
            "max_num_seqs": s.max_num_seqs,
            "requests_total": self.requests_total,
            "running": s.num_running,
            "waiting": len(s.waiting),
            "in_flight": self.in_flight,
            "peak_running": s.peak_running,
            "peak_in_flight": self.peak_in_flight,
            "kv_cache_usage": s.kv_usage,
            "prompt_tokens_total": s.prompt_tokens_total,
            "generation_tokens_total": s.generation_tokens_total,
            "aborted_total": s.aborted_total,
            "steps": self.engine.steps,
            # How late the engine ran behind its own clock: near 0 means timings are exact.
            "max_step_lag_ms": round(self.engine.max_lag_ms, 3),
            "lag_resets": self.engine.lag_resets,
        }

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(self._stats())

    async def reset_stats(self, request: web.Request) -> web.Response:
        self.engine.reset_stats()
        self.peak_in_flight = self.in_flight
        return web.json_response(self._stats())

    # -- generation -----------------------------------------------------------------

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    async def _generate(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        req: SimRequest | None = None
        fault: str | None = None
        if self.faults.active:
            n, fault = self.faults.next_request()
            if self.faults.should_crash(n):
                self._crash(n)
        try:
            if not self.ready:
                raise ApiError(503, "the engine is still starting", "ServiceUnavailableError")
            params = self._parse(await self._json_body(request), chat=chat)
            self.requests_total += 1
            # Faults that never reach the engine come before ``req`` exists: the finally
            # clause aborts only requests the engine has seen.
            if fault == "http_500":
                raise ApiError(500, "injected fault: internal server error", "InternalServerError")
            if fault == "http_429":
                raise ApiError(
                    429,
                    "injected fault: too many requests, retry later",
                    "RateLimitError",
                    headers={"Retry-After": "1"},
                )
            if fault == "stall" and not params.stream:
                await self._closing.wait()  # never answered; released only at shutdown
                raise ApiError(500, "the simulator is shutting down", "InternalServerError")
            req = SimRequest(params.prompt_tokens, params.max_tokens, params.ignore_eos)
            if fault == "short_output":
                req.stop_at = stop_point(params.max_tokens)
            if params.stream:
                return await self._stream(request, req, params, chat=chat, fault=fault)
            await self.engine.submit(req)
            if fault == "malformed_sse":
                # A 200 whose JSON body is cut off.
                return web.Response(
                    body=b'{"id":"cmpl-malformed","object":"text_completion","choices":[{"te',
                    content_type="application/json",
                )
            if req.state is not State.FINISHED:
                raise ApiError(
                    500, "request aborted: the simulator is shutting down", "InternalServerError"
                )
            return web.json_response(self._full_response(req, params, chat=chat))
        except ApiError as e:
            return e.response()
        finally:
            # Covers client disconnects: aiohttp cancels the handler and the request
            # leaves the engine, freeing its slot and KV reservation.
            if req is not None:
                self.engine.abort(req)
            self.in_flight -= 1

    def _crash(self, n: int) -> None:
        """Die the way an engine does: at once, every open connection cut, no cleanup."""
        print(
            f"slogate-sim: injected fault --crash-after {self.faults.crash_after}: request {n} "
            f"arrived, killing the process (SIGKILL)",
            file=sys.stderr,
            flush=True,
        )
        os.kill(os.getpid(), signal.SIGKILL)

    async def _stream(
        self,
        request: web.Request,
        req: SimRequest,
        params: _Params,
        *,
        chat: bool,
        fault: str | None = None,
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        chunked = request.version >= HttpVersion11
        if chunked:
            resp.enable_chunked_encoding()
        await resp.prepare(request)
        # Send the headers now, as vLLM does, and before any bytes the engine writes to
        # the transport (aiohttp holds them back until the first write; an empty write
        # flushes them).
        await resp.write(b"")
        transport = request.transport
        if transport is None:  # the client left already
            return resp
        token_event, first_prefix, final = self._stream_events(req, params, chat=chat)
        sink = _StreamSink(transport, _Chunker(chunked), token_event, first_prefix, final)
        if fault == "stall":
            sink = _FaultySink(sink, stall_after=stop_point(params.max_tokens))
        elif fault == "malformed_sse":
            sink = _FaultySink(sink, malformed=True)
        req.sink = sink
        await self.engine.submit(req)
        if fault == "stall":
            # Hung: the connection stays open and silent until the client gives up (its
            # handler is cancelled then) or the simulator shuts down.
            await self._closing.wait()
            transport.close()
            return resp
        if req.state is State.FINISHED and not transport.is_closing():
            await resp.write_eof()
        else:
            # Aborted (client not reading, or shutdown): drop the connection the way a
            # dying engine does; the client sees a stream without [DONE].
            transport.close()
        return resp

    def _stream_events(
        self, req: SimRequest, params: _Params, *, chat: bool
    ) -> tuple[bytes, bytes, Callable[[SimRequest], bytes]]:
        """Pre-serialized SSE events of one request: token, chat prefix, final builder."""
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        created = int(time.time())
        head: dict[str, Any] = {
            "id": rid,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": created,
            "model": self.model,
        }
        include_usage = params.include_usage

        def chunk(choice: dict[str, Any]) -> dict[str, Any]:
            obj = {**head, "choices": [choice]}
            # vLLM: completion chunks always carry "usage": null (exclude_unset=False);
            # chat chunks only when stream_options.include_usage asks for usage.
            if not chat or include_usage:
                obj["usage"] = None
            return obj

        def token_choice(finish_reason: str | None) -> dict[str, Any]:
            if chat:
                c: dict[str, Any] = {
                    "index": 0,
                    "delta": {"content": TOKEN_TEXT},
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
                if finish_reason is not None:
                    c["stop_reason"] = None
                return c
            return {
                "index": 0,
                "text": TOKEN_TEXT,
                "logprobs": None,
                "finish_reason": finish_reason,
                "stop_reason": None,
            }

        token_event = _sse(chunk(token_choice(None)))
        first_prefix = b""
        if chat:
            role = {
                "index": 0,
                "delta": {"role": "assistant", "content": ""},
                "logprobs": None,
                "finish_reason": None,
            }
            first_prefix = _sse(chunk(role))

        def final(r: SimRequest) -> bytes:
            out = [first_prefix] if r.generated == 1 else []
            out.append(_sse(chunk(token_choice(r.finish_reason))))
            if include_usage:
                usage = _usage(r)
                out.append(_sse({**head, "choices": [], "usage": usage}))
            out.append(_SSE_DONE)
            return b"".join(out)

        return token_event, first_prefix, final

    def _full_response(self, req: SimRequest, params: _Params, *, chat: bool) -> dict[str, Any]:
        text = TOKEN_TEXT * req.generated
        created = int(time.time())
        if chat:
            return {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion",
                "created": created,
                "model": self.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "reasoning_content": None,
                            "content": text,
                            "tool_calls": [],
                        },
                        "logprobs": None,
                        "finish_reason": req.finish_reason,
                        "stop_reason": None,
                    }
                ],
                "usage": _usage(req),
                "prompt_logprobs": None,
            }
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "text": text,
                    "logprobs": None,
                    "finish_reason": req.finish_reason,
                    "stop_reason": None,
                    "prompt_logprobs": None,
                }
            ],
            "usage": _usage(req),
        }

    # -- request parsing ------------------------------------------------------------

    @staticmethod
    async def _json_body(request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise ApiError(400, f"request body is not valid JSON: {e}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "request body must be a JSON object")
        return body

    def _parse(self, body: dict[str, Any], *, chat: bool) -> _Params:
        model = body.get("model")
        if model is not None and model != self.model:
            raise ApiError(404, f"The model `{model}` does not exist.", "NotFoundError")
        prompt_tokens = _count_messages(body) if chat else _count_prompt(body)
        stream = _get_bool(body, "stream")
        ignore_eos = _get_bool(body, "ignore_eos")
        n = body.get("n", 1)
        if n not in (None, 1):
            raise ApiError(400, "the simulator supports only n=1")
        max_tokens = _get_int(body, "max_completion_tokens") if chat else None
        if max_tokens is None:
            max_tokens = _get_int(body, "max_tokens")
        if max_tokens is None:
            # vLLM's defaults: 16 for completions, the rest of the context for chat.
            max_tokens = self.max_model_len - prompt_tokens if chat else 16
        if max_tokens < 1:
            raise ApiError(400, f"max_tokens must be at least 1, got {max_tokens}.")
        if prompt_tokens + max_tokens > self.max_model_len:
            raise ApiError(
                400,
                f"This model's maximum context length is {self.max_model_len} tokens. "
                f"However, you requested {prompt_tokens + max_tokens} tokens "
                f"({prompt_tokens} in the messages, {max_tokens} in the completion). "
                "Please reduce the length of the messages or completion.",
            )
        if not self.engine.scheduler.can_ever_admit(prompt_tokens, max_tokens):
            raise ApiError(400, "request needs more KV cache than the simulated engine has")
        options = body.get("stream_options")
        include_usage = False
        if options is not None:
            if not stream:
                raise ApiError(400, "Stream options can only be defined when `stream=True`.")
            if not isinstance(options, dict):
                raise ApiError(400, "stream_options must be an object")
            include_usage = _get_bool(options, "include_usage")
        return _Params(prompt_tokens, max_tokens, stream, ignore_eos, include_usage)


@dataclass(frozen=True, slots=True)
class _Params:
    """What the engine and the response writer need from a request body."""

    prompt_tokens: int
    max_tokens: int
    stream: bool
    ignore_eos: bool
    include_usage: bool


def _usage(req: SimRequest) -> dict[str, int]:
    # Key order as vLLM's UsageInfo serializes it.
    return {
        "prompt_tokens": req.prompt_tokens,
        "total_tokens": req.prompt_tokens + req.generated,
        "completion_tokens": req.generated,
    }


def _get_bool(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ApiError(400, f"`{key}` must be a boolean")
    return value


def _get_int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"`{key}` must be an integer")
    return value


def _count_prompt(body: dict[str, Any]) -> int:
    if "prompt" not in body:
        raise ApiError(400, "field `prompt` is required")
    prompt = body["prompt"]
    # A single prompt as text or token ids, possibly wrapped in a one-element batch.
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]
    if isinstance(prompt, str):
        n = len(prompt.split())
    elif isinstance(prompt, list) and all(
        isinstance(t, int) and not isinstance(t, bool) for t in prompt
    ):
        n = len(prompt)
    elif isinstance(prompt, list):
        raise ApiError(400, "the simulator supports one prompt per request")
    else:
        raise ApiError(400, "`prompt` must be a string or a list of token ids")
    if n == 0:
        raise ApiError(400, "The prompt cannot be empty.")
    return n


def _count_messages(body: dict[str, Any]) -> int:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "field `messages` must be a non-empty list")
    n = 0
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ApiError(400, "each message must be an object with a `role`")
        content = m.get("content")
        if content is None:
            continue
        if isinstance(content, str):
            n += len(content.split())
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    n += len(part["text"].split())
        else:
            raise ApiError(400, "message `content` must be a string or a list of parts")
    return n
