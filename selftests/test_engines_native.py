"""SGLang, Ollama and llama.cpp: wire formats, load against fake servers, probes, commands.

The fake servers replay byte-exact samples of each engine's real responses
(``data/wire/``, each file says where its format comes from), so the real load generator
and the real engine modules are exercised without a GPU.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import real_engine_python
from slogate.config import Settings
from slogate.engines import get_engine
from slogate.engines.launch import ServerEngine, flag_pairs
from slogate.engines.llamacpp import LLAMACPP_METRICS, LlamaCppEngine
from slogate.engines.ollama import OllamaEngine
from slogate.engines.profile import load_profile
from slogate.engines.sglang import KEY_VAR, SglangEngine
from slogate.errors import ConfigError, EngineStartError
from slogate.loadgen.apis import APIS
from slogate.loadgen.dataset import Prompt, WhitespaceTokenizer
from slogate.loadgen.native import NativeStreamResult, parse_ollama_stream
from slogate.loadgen.runner import LoadSpec, run_load
from slogate.loadgen.sse import SSEError, StreamResult
from slogate.server import listening_socket

ROOT = Path(__file__).resolve().parents[1]
WIRE = Path(__file__).parent / "data" / "wire"
TOK = WhitespaceTokenizer(exact=True)
PROBES = yaml.safe_load((WIRE / "probes.yaml").read_text(encoding="utf-8"))


def body_of(name: str) -> bytes:
    """A fixture's body: everything after its leading ``#`` header lines."""
    lines = (WIRE / name).read_bytes().splitlines(keepends=True)
    i = 0
    while i < len(lines) and lines[i].startswith(b"#"):
        i += 1
    return b"".join(lines[i:])


def split_after(body: bytes, sep: bytes) -> list[bytes]:
    """``body`` cut after every ``sep``: the writes an engine makes, one per event."""
    parts = body.split(sep)
    out = [p + sep for p in parts[:-1]]
    return out + ([parts[-1]] if parts[-1] else [])


@dataclass(frozen=True)
class Wire:
    """One streamed fixture and what parsing it must give."""

    name: str
    api: str
    content_type: str
    sep: bytes
    text: str
    chunks: int
    completion_tokens: int
    prompt_tokens: int
    finish_reason: str

    @property
    def body(self) -> bytes:
        return body_of(self.name)

    def parse(self, pieces: list[tuple[int, bytes]]) -> StreamResult:
        return APIS[self.api].parse(pieces, self.content_type)


WIRES = [
    Wire(
        "sglang_generate_stream.sse", "sglang_generate", "text/event-stream", b"\n\n",
        " Paris is the capital of France. 巴黎", 8, 8, 12, "length",
    ),
    Wire(
        "ollama_generate_stream.ndjson", "ollama_generate", "application/x-ndjson", b"\n",
        "<think>\n好的，用户问的是巴黎", 8, 8, 12, "length",
    ),
    Wire(
        "llamacpp_completions_stream.sse", "completions", "text/event-stream", b"\n\n",
        " Paris is the capital of France. 巴黎", 8, 8, 12, "length",
    ),
]  # fmt: skip
WIRE_IDS = [w.api for w in WIRES]


def check(w: Wire, r: StreamResult) -> None:
    assert r.text == w.text
    assert len(r.text_chunk_ns) == w.chunks
    assert (r.completion_tokens, r.prompt_tokens) == (w.completion_tokens, w.prompt_tokens)
    assert r.done and r.finish_reason == w.finish_reason and not r.error


# -- (a) parsers ------------------------------------------------------------------------


@pytest.mark.parametrize("w", WIRES, ids=WIRE_IDS)
def test_each_text_chunk_is_stamped_with_its_own_arrival(w: Wire) -> None:
    events = split_after(w.body, w.sep)
    r = w.parse([(1000 + i, e) for i, e in enumerate(events)])
    check(w, r)
    # the first events carry the tokens; the closing ones ([DONE], usage, done) do not
    assert r.text_chunk_ns == [1000 + i for i in range(w.chunks)]


@pytest.mark.parametrize("w", WIRES, ids=WIRE_IDS)
def test_every_single_split_point_gives_the_same_result(w: Wire) -> None:
    body = w.body
    for i in range(len(body) + 1):
        r = w.parse([(1, body[:i]), (2, body[i:])])
        check(w, r)


@pytest.mark.parametrize("w", WIRES, ids=WIRE_IDS)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_arbitrary_splits_give_the_same_result(w: Wire, data: st.DataObject) -> None:
    body = w.body
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=40)))
    bounds = [0, *cuts, len(body)]
    pieces = [(i, body[a:b]) for i, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False))]
    check(w, w.parse(pieces))


@pytest.mark.parametrize("w", WIRES, ids=WIRE_IDS)
def test_a_stream_cut_short_is_malformed(w: Wire) -> None:
    body = w.body
    last = body.rstrip(w.sep).rfind(w.sep) + len(w.sep)
    with pytest.raises(SSEError):
        w.parse([(1, body[: last + 10])])  # ends inside the last event / line


@pytest.mark.parametrize("w", WIRES, ids=WIRE_IDS)
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_garbage_raises_only_sse_error(w: Wire, data: st.DataObject) -> None:
    body = bytearray(w.body)
    for _ in range(data.draw(st.integers(1, 5))):
        body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
    try:
        w.parse([(1, bytes(body))])
    except SSEError:
        pass


def test_ollama_keeps_its_own_timings() -> None:
    r = parse_ollama_stream([(1, body_of("ollama_generate_stream.ndjson"))])
    assert isinstance(r, NativeStreamResult)
    t = r.server_timings
    assert t["eval_count"] == 8 and t["eval_duration"] == 1742919389
    assert t["prompt_eval_count"] == 12 and t["load_duration"] == 13150159
    assert t["tpot_ms"] == pytest.approx(1742919389 / 8 / 1e6)


def test_error_objects_inside_streams_are_reported() -> None:
    sg = b'data: {"error":{"message":"The input is too long"}}\n\ndata: [DONE]\n\n'
    r = APIS["sglang_generate"].parse([(1, sg)], "text/event-stream")
    assert r.error == "The input is too long" and not r.text_chunk_ns
    ol = b'{"error":"llama runner process has terminated: exit status 2"}\n'
    r = APIS["ollama_generate"].parse([(1, ol)], "application/x-ndjson")
    assert "runner process has terminated" in r.error and not r.done


def test_sglang_abort_is_an_error_and_unchanged_text_is_no_token() -> None:
    meta = '"prompt_tokens":3,"completion_tokens":%d,"cached_tokens":0'
    body = (
        b'data: {"text":"a","meta_info":{"finish_reason":null,' + (meta % 1).encode() + b"}}\n\n"
        b'data: {"text":"a","meta_info":{"finish_reason":null,' + (meta % 2).encode() + b"}}\n\n"
        b'data: {"text":"a","meta_info":{"finish_reason":{"type":"abort","message":"oom"},'
        + (meta % 2).encode()
        + b"}}\n\ndata: [DONE]\n\n"
    )
    r = APIS["sglang_generate"].parse([(1, body[:80]), (2, body[80:])], "text/event-stream")
    assert r.text == "a" and r.text_chunk_ns == [2] and r.completion_tokens == 2
    assert r.finish_reason == "abort" and r.error == "oom"


def test_non_streamed_answers() -> None:
    sg = b'{"text":"hi there","meta_info":{"prompt_tokens":3,"completion_tokens":2}}'
    r = APIS["sglang_generate"].parse([(5, sg)], "application/json")
    assert (r.text, r.completion_tokens, r.done, r.text_chunk_ns) == ("hi there", 2, True, [5])
    ol = b'{"model":"m","response":"hi","done":true,"done_reason":"stop","eval_count":1}'
    r = APIS["ollama_generate"].parse([(5, ol)], "application/json; charset=utf-8")
    assert (r.text, r.completion_tokens, r.done, r.text_chunk_ns) == ("hi", 1, True, [5])


def test_request_bodies() -> None:
    from slogate.loadgen.apis import Request

    req = Request("DeepSeek-R1-Q4_K_M:latest", "hello", 16, ignore_eos=True)
    assert APIS["sglang_generate"].body(req) == {
        "text": "hello",
        "sampling_params": {"max_new_tokens": 16, "ignore_eos": True, "temperature": 0.0},
        "stream": True,
    }
    assert APIS["ollama_generate"].body(req) == {
        "model": "DeepSeek-R1-Q4_K_M:latest",
        "prompt": "hello",
        "stream": True,
        "raw": True,
        "options": {"num_predict": 16, "temperature": 0.0},
    }


# -- fake engines -----------------------------------------------------------------------


@dataclass
class Fake:
    """A fake engine on loopback, run in its own thread and event loop."""

    url: str = ""
    state: dict[str, Any] = field(default_factory=dict)
    bodies: list[dict[str, Any]] = field(default_factory=list)


async def stream(
    request: web.Request, body: bytes, sep: bytes, content_type: str
) -> web.StreamResponse:
    resp = web.StreamResponse(status=200, headers={"Content-Type": content_type})
    await resp.prepare(request)
    for part in split_after(body, sep):
        await resp.write(part)
        await asyncio.sleep(0.002)  # tokens arrive apart, as from a real engine
    await resp.write_eof()
    return resp


def answer(spec: dict[str, Any]) -> web.Response:
    headers = {"Content-Type": spec["content_type"]} if spec["content_type"] else {}
    return web.Response(status=spec["status"], body=spec["body"].encode(), headers=headers)


def sglang_app(fake: Fake) -> web.Application:
    fake.state.update(health="ready")

    async def generate(request: web.Request) -> web.StreamResponse:
        fake.bodies.append(await request.json())
        sse = body_of("sglang_generate_stream.sse")
        return await stream(request, sse, b"\n\n", "text/event-stream; charset=utf-8")

    async def health(request: web.Request) -> web.Response:
        return answer(PROBES["sglang"][fake.state["health"]])

    async def server_info(request: web.Request) -> web.Response:
        return web.json_response({"version": "0.4.3.post2", "tp_size": 8, "api_key": "sk-x"})

    app = web.Application()
    app.router.add_post("/generate", generate)
    app.router.add_get("/health_generate", health)
    app.router.add_get("/get_server_info", server_info)
    return app


def ollama_app(fake: Fake) -> web.Application:
    tags = json.loads(body_of("ollama_api_tags.json"))
    fake.state.update(models=list(tags["models"]), loads=0)

    async def api_tags(request: web.Request) -> web.Response:
        return web.json_response({"models": fake.state["models"]})

    async def generate(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if "prompt" not in body:  # load the model
            fake.state["loads"] += 1
            return await stream(
                request, body_of("ollama_generate_load.ndjson"), b"\n", "application/x-ndjson"
            )
        fake.bodies.append(body)
        nd = body_of("ollama_generate_stream.ndjson")
        return await stream(request, nd, b"\n", "application/x-ndjson")

    async def add_model(request: web.Request) -> web.Response:  # what ollama create does
        name = (await request.json())["name"]
        fake.state["models"].append({"name": name, "model": name})
        return web.json_response({})

    async def version(request: web.Request) -> web.Response:
        return web.json_response({"version": "0.5.11"})

    app = web.Application()
    app.router.add_get("/api/tags", api_tags)
    app.router.add_post("/api/generate", generate)
    app.router.add_post("/test/add-model", add_model)
    app.router.add_get("/api/version", version)
    return app


def llamacpp_app(fake: Fake) -> web.Application:
    fake.state.update(health="ready")

    async def completions(request: web.Request) -> web.StreamResponse:
        fake.bodies.append(await request.json())
        sse = body_of("llamacpp_completions_stream.sse")
        return await stream(request, sse, b"\n\n", "text/event-stream")

    async def health(request: web.Request) -> web.Response:
        return answer(PROBES["llamacpp"][fake.state["health"]])

    async def models(request: web.Request) -> web.Response:
        return answer(PROBES["llama_cpp_python"]["models"])

    async def props(request: web.Request) -> web.Response:
        return web.json_response({"build_info": "b4741-9626d935", "total_slots": 4})

    app = web.Application()
    app.router.add_post("/v1/completions", completions)
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/props", props)
    return app


def serve(make_app: Callable[[Fake], web.Application]) -> Iterator[Fake]:
    fake = Fake()
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    runner: list[web.AppRunner] = []

    async def start() -> None:
        r = web.AppRunner(make_app(fake))
        await r.setup()
        site = web.TCPSite(r, "127.0.0.1", 0)
        await site.start()
        port = r.addresses[0][1]
        fake.url = f"http://127.0.0.1:{port}"
        runner.append(r)
        ready.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(runner[0].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def sglang_server() -> Iterator[Fake]:
    yield from serve(sglang_app)


@pytest.fixture
def ollama_server() -> Iterator[Fake]:
    yield from serve(ollama_app)


@pytest.fixture
def llamacpp_server() -> Iterator[Fake]:
    yield from serve(llamacpp_app)


# -- (b) the real load generator against the fakes --------------------------------------


def measure(url: str, endpoint: str, model: str = "m") -> list[Any]:
    prompts = [Prompt("what is the capital of France ?", 7, 8)] * 6
    spec = LoadSpec(base_url=url, model=model, endpoint=endpoint, concurrency=3)
    result = run_load(spec, prompts, [], TOK)
    assert result.client.peak_in_flight == 3
    return result.records


def assert_measured(records: list[Any]) -> None:
    assert len(records) == 6
    for rec in records:
        assert rec.status == "ok", rec.error
        assert rec.output_tokens == 8 and rec.output_tokens_source == "usage"
        assert rec.prompt_tokens_server == 12
        assert rec.ttft_ns is not None and rec.ttft_ns > 0
        assert len(rec.chunk_ns) == 8 and rec.last_token_ns > rec.first_token_ns
        assert rec.tpot_ns is not None and rec.tpot_ns > 0


def test_load_against_sglang_generate(sglang_server: Fake) -> None:
    records = measure(sglang_server.url, "sglang_generate")
    assert_measured(records)
    assert records[0].text == " Paris is the capital of France. 巴黎"
    assert sglang_server.bodies[0]["sampling_params"]["max_new_tokens"] == 8


def test_load_against_ollama_generate(ollama_server: Fake) -> None:
    records = measure(ollama_server.url, "ollama_generate", "DeepSeek-R1-Q4_K_M:latest")
    assert_measured(records)
    assert records[0].text.startswith("<think>")
    sent = ollama_server.bodies[0]
    assert sent["model"] == "DeepSeek-R1-Q4_K_M:latest" and sent["options"]["num_predict"] == 8


def test_load_against_llamacpp_completions(llamacpp_server: Fake) -> None:
    records = measure(llamacpp_server.url, "completions")
    assert_measured(records)
    assert llamacpp_server.bodies[0]["ignore_eos"] is True


# -- (c) probes -------------------------------------------------------------------------


def free_url() -> str:
    sock = listening_socket()
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    return f"http://127.0.0.1:{port}"


def test_sglang_probe_and_describe(sglang_server: Fake) -> None:
    engine = SglangEngine()
    with httpx.Client() as client:
        assert engine.probe(client, sglang_server.url, "m") is None
        sglang_server.state["health"] = "starting"
        assert "HTTP 503" in (engine.probe(client, sglang_server.url, "m") or "")
        assert "ConnectError" in (engine.probe(client, free_url(), "m") or "")
        info = engine.describe(client, sglang_server.url)
    assert info["version"] == "0.4.3.post2" and info["tp_size"] == 8
    assert "sk-x" not in json.dumps(info)  # server args hold the API key: never recorded


def test_llamacpp_probe_binary_and_python(llamacpp_server: Fake) -> None:
    engine = LlamaCppEngine()
    with httpx.Client() as client:
        assert engine.probe(client, llamacpp_server.url, "m") is None
        llamacpp_server.state["health"] = "loading"
        reason = engine.probe(client, llamacpp_server.url, "m") or ""
        assert "HTTP 503" in reason and "Loading model" in reason
        info = engine.describe(client, llamacpp_server.url)
        assert info["version"] == "b4741-9626d935" and info["total_slots"] == 4
        engine.mode = "python"  # llama_cpp.server: ready once /v1/models answers
        assert engine.probe(client, llamacpp_server.url, "m") is None
        assert "ConnectError" in (engine.probe(client, free_url(), "m") or "")


def wait_ready(engine: OllamaEngine, url: str, model: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client() as client:
        while (reason := engine.probe(client, url, model)) is not None:
            assert time.monotonic() < deadline, reason
            time.sleep(0.02)


def test_ollama_ready_once_the_model_is_listed_and_loaded(ollama_server: Fake) -> None:
    engine = OllamaEngine()
    with httpx.Client() as client:
        first = engine.probe(client, ollama_server.url, "DeepSeek-R1-Q4_K_M") or ""
    assert "loading DeepSeek-R1-Q4_K_M" in first  # no tag means :latest, which is listed
    wait_ready(engine, ollama_server.url, "DeepSeek-R1-Q4_K_M")
    assert ollama_server.state["loads"] == 1
    with httpx.Client() as client:
        assert engine.describe(client, ollama_server.url) == {"version": "0.5.11"}


def test_ollama_model_missing(ollama_server: Fake) -> None:
    engine = OllamaEngine()
    with httpx.Client() as client:
        assert "ConnectError" in (engine.probe(client, free_url(), "qwen2.5:7b") or "")
        reason = engine.probe(client, ollama_server.url, "qwen2.5:7b") or ""
        assert "model qwen2.5:7b is not pulled: run `ollama pull qwen2.5:7b`" in reason
        assert "Modelfile" in reason
        engine.launched = True  # slogate started it: waiting cannot help, fail at once
        with pytest.raises(EngineStartError, match="not pulled"):
            engine.probe(client, ollama_server.url, "qwen2.5:7b")
        assert ollama_server.state["loads"] == 0  # never pulled, never loaded


def test_ollama_creates_the_model_from_the_modelfile(
    ollama_server: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = OllamaEngine()
    engine.modelfile = str(tmp_path / "Modelfile")
    engine._log_dir = tmp_path
    # stands in for `ollama create NAME -f Modelfile`: makes the model appear, slowly
    script = (
        "import sys, time, httpx; time.sleep(0.3); "
        f"httpx.post('{ollama_server.url}/test/add-model', json={{'name': sys.argv[1]}})"
    )
    calls: list[str] = []

    def fake_create(model: str) -> list[str]:
        calls.append(model)
        return [sys.executable, "-c", script, model]

    monkeypatch.setattr(engine, "create_argv", fake_create)
    with httpx.Client() as client:
        assert "creating my-r1 from" in (engine.probe(client, ollama_server.url, "my-r1") or "")
        assert "still running" in (engine.probe(client, ollama_server.url, "my-r1") or "")
    wait_ready(engine, ollama_server.url, "my-r1")
    assert calls == ["my-r1"]  # run once


def test_ollama_create_failure_shows_its_output(
    ollama_server: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = OllamaEngine()
    engine.modelfile = "/nowhere/Modelfile"
    engine._log_dir = tmp_path
    script = "import sys; print('Error: no such file or directory'); sys.exit(1)"
    monkeypatch.setattr(engine, "create_argv", lambda model: [sys.executable, "-c", script])
    with httpx.Client() as client, pytest.raises(EngineStartError) as err:
        for _ in range(500):
            engine.probe(client, ollama_server.url, "my-r1")
            time.sleep(0.01)
    assert "exited with code 1" in str(err.value) and "no such file" in str(err.value)


def test_ollama_create_command_runs_in_the_container() -> None:
    engine = OllamaEngine()
    engine.modelfile = "/models/Modelfile"
    assert engine.create_argv("m:latest") == [
        "ollama",
        "create",
        "m:latest",
        "-f",
        "/models/Modelfile",
    ]
    engine._container = "slogate-ollama-run"
    assert engine.create_argv("m")[:3] == ["docker", "exec", "slogate-ollama-run"]


# -- (d) commands -----------------------------------------------------------------------

# From ../shared/seeds/000_6521c744abd82afb.txt ("sglang 单机测试"), verbatim.
SEED_SGLANG_DOCKER = r"""docker run -itd --privileged \
--net=host \
--cap-add=SYS_PTRACE \
--security-opt seccomp=unconfined \
--tmpfs /dev/shm:rw,nosuid,nodev,exec,size=128g \
-v /ssd1/models:/mnt/models \
--gpus all \
--name sglang-test \
--entrypoint "" \
-w /workspace \
lmsysorg/sglang:ea52b45be1a7 \
/bin/bash"""
SEED_SGLANG_SERVER = r"""nohup python3 -m sglang.launch_server \
--model-path /mnt/models/DeepSeek-R1 \
--host 0.0.0.0 \
--port 8000 \
--tensor-parallel-size 8 \
--trust-remote-code \
--tokenizer-mode auto \
--mem-fraction-static 0.90 \
--context-length 65536 \
--quantization fp8 \
--reasoning-parser deepseek-r1 \
--chunked-prefill-size 4096 > sglang-server.log 2>&1 &"""
SEED_PROFILE = ROOT / "matrices" / "engines" / "sglang-deepseek-r1-h20.yaml"


def shell_words(command: str) -> list[str]:
    """The words of a shell command written over lines ending in a backslash."""
    return shlex.split(command.replace("\\\n", " "))


def normalized(pairs: list[tuple[str, str | None]]) -> Counter[tuple[str, str | None]]:
    aliases = {"--net": "--network"}
    return Counter((aliases.get(k, k), v) for k, v in pairs)


@pytest.mark.skipif(not SEED_PROFILE.exists(), reason="the seed profile is not in this checkout")
def test_sglang_seed_profile_is_the_seed_command_flag_by_flag() -> None:
    s = Settings(engine="sglang", profile=load_profile(SEED_PROFILE), launcher="docker")
    argv, _, name = SglangEngine().command(s, run_id="RUN")
    image = argv.index("lmsysorg/sglang:ea52b45be1a7")
    docker, server = argv[2:image], argv[image + 1 :]

    seed_docker = shell_words(SEED_SGLANG_DOCKER)
    seed_image = seed_docker.index("lmsysorg/sglang:ea52b45be1a7")
    assert seed_docker[seed_image + 1 :] == ["/bin/bash"]  # the container's shell: dropped
    # -itd and --name NAME are the manual workflow's; slogate runs --rm --init --name its own
    want = normalized(flag_pairs(seed_docker[2:seed_image]))
    del want[("-itd", None)], want[("--name", "sglang-test")]
    got = normalized(flag_pairs(docker))
    assert got[("--name", name)] == 1 and name.startswith("slogate-sglang-")
    for own in [("--rm", None), ("--init", None), ("--name", name)]:
        del got[own]
    assert got == want

    seed_server = shell_words(SEED_SGLANG_SERVER)[1:]  # drop nohup
    seed_server = seed_server[: seed_server.index(">")]  # drop the shell redirection
    assert normalized(flag_pairs(server)) == normalized(flag_pairs(seed_server))
    assert server[:3] == ["python3", "-m", "sglang.launch_server"]


def test_sglang_local_command_and_served_name() -> None:
    s = Settings(engine="sglang", model="/m", engine_python="/venv/bin/python",
                 engine_args=("--tp", "2"), show_engine_command=True)  # fmt: skip
    argv, r, _ = SglangEngine().command(s)
    assert argv[:3] == ["/venv/bin/python", "-m", "sglang.launch_server"]
    assert dict(flag_pairs(argv[3:])) == {
        "--model-path": "/m", "--host": "127.0.0.1", "--port": str(r.port), "--tp": "2",
    }  # fmt: skip


def test_sglang_api_key_never_in_argv() -> None:
    s = Settings(engine="sglang", model="/m", api_key="sk-secret", show_engine_command=True)
    engine = SglangEngine()
    argv, _, _ = engine.command(s)
    assert "sk-secret" not in " ".join(argv)
    assert argv[:2] == ["sh", "-c"] and f'--api-key "${KEY_VAR}"' in argv[2]
    launch, _ = engine.launch(s, Path("/tmp/slogate-test/logs"))
    assert launch.env is not None and launch.env[KEY_VAR] == "sk-secret"
    assert "sk-secret" not in " ".join(launch.argv)
    s = Settings(engine="sglang", model="/m", api_key="sk-secret", launcher="docker",
                 image="lmsysorg/sglang:latest", show_engine_command=True)  # fmt: skip
    argv, _, _ = engine.command(s)
    assert "sk-secret" not in " ".join(argv) and ["-e", KEY_VAR] == argv[argv.index("-e") :][:2]


def test_sglang_key_wrapper_really_passes_the_key(tmp_path: Path) -> None:
    import subprocess

    s = Settings(engine="sglang", model="/m", api_key="sk-secret", show_engine_command=True,
                 engine_python=sys.executable)  # fmt: skip
    argv, _, _ = SglangEngine().command(s)
    # run the wrapper with a stand-in for SGLang that prints its own arguments
    probe = [sys.executable, "-c", "import sys; print(sys.argv[1:])"]
    script_argv = argv[:4] + probe + argv[argv.index("--model-path") :]
    out = subprocess.run(script_argv, env={KEY_VAR: "sk-secret"}, capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    assert out.strip().endswith("'--api-key', 'sk-secret']")


def test_llamacpp_commands() -> None:
    engine = LlamaCppEngine()
    argv, r, _ = engine.command(
        Settings(engine="llamacpp", model="/m.gguf", show_engine_command=True)
    )
    assert argv == ["llama-server", "-m", "/m.gguf", "--host", "127.0.0.1", "--port", str(r.port)]
    assert engine.metrics == LLAMACPP_METRICS and engine.api_key_env == "LLAMA_API_KEY"

    s = Settings(engine="llamacpp", model="/m.gguf", engine_python="/venv/bin/python",
                 show_engine_command=True)  # fmt: skip
    argv, r, _ = engine.command(s)
    assert argv[:3] == ["/venv/bin/python", "-m", "llama_cpp.server"]
    assert dict(flag_pairs(argv[3:])) == {
        "--model": "/m.gguf", "--host": "127.0.0.1", "--port": str(r.port),
        "--interrupt-requests": "False",
    }  # fmt: skip
    assert engine.metrics == {} and engine.api_key_env == "API_KEY"

    s = Settings(engine="llamacpp", model="/m.gguf", engine_python="/opt/bin/llama-server",
                 engine_args=("-ngl", "99", "--metrics"), show_engine_command=True)  # fmt: skip
    argv, _, _ = engine.command(s)
    assert argv[:3] == ["/opt/bin/llama-server", "-m", "/m.gguf"] and argv[-3:] == [
        "-ngl", "99", "--metrics",
    ]  # fmt: skip

    s = Settings(engine="llamacpp", model="/models/m.gguf", launcher="docker",
                 image="ghcr.io/ggml-org/llama.cpp:server", show_engine_command=True)  # fmt: skip
    argv, _, _ = engine.command(s)
    image = argv.index("ghcr.io/ggml-org/llama.cpp:server")
    assert argv[image + 1 : image + 3] == ["-m", "/models/m.gguf"]  # the image's entrypoint


def test_ollama_commands(tmp_path: Path) -> None:
    profile = load_profile(ROOT / "matrices" / "engines" / "ollama-deepseek-r1-q4.yaml")
    engine = OllamaEngine()
    argv, r, _ = engine.command(Settings(engine="ollama", profile=profile))
    assert argv == ["ollama", "serve"]
    assert r.env == {
        "OLLAMA_KEEP_ALIVE": "-1", "OLLAMA_NUM_PARALLEL": "16", "OLLAMA_HOST": "127.0.0.1:11434",
    }  # fmt: skip
    assert engine.metrics == {}

    s = Settings(engine="ollama", profile=profile, launcher="docker", image="ollama/ollama")
    argv, r, name = engine.command(s, run_id="RUN")
    assert argv[argv.index("ollama/ollama") + 1 :] == ["serve"]  # entrypoint is /bin/ollama
    assert ["-v", "ollama:/root/.ollama"] == argv[argv.index("-v") :][:2]
    assert ["-e", "OLLAMA_HOST=127.0.0.1:11434"] in [argv[i : i + 2] for i in range(len(argv))]

    modelfile = tmp_path / "Modelfile"
    modelfile.write_text("FROM /data/DeepSeek-R1-Q4_K_M.gguf\n")
    s = Settings(engine="ollama", model="r1:q4", engine_args=("--modelfile", str(modelfile)))
    argv, r, _ = engine.command(s)
    assert argv == ["ollama", "serve"] and engine.modelfile == str(modelfile)

    with pytest.raises(ConfigError, match="takes no arguments"):
        engine.command(Settings(engine="ollama", model="m", engine_args=("--verbose",)))
    with pytest.raises(ConfigError, match="no such file"):
        engine.command(Settings(engine="ollama", model="m", engine_args=("--modelfile", "/no")))


def test_engines_are_registered() -> None:
    for name, cls in [("sglang", SglangEngine), ("ollama", OllamaEngine),
                      ("llamacpp", LlamaCppEngine)]:  # fmt: skip
        engine = get_engine(name)
        assert isinstance(engine, cls) and isinstance(engine, ServerEngine)


# -- (e) failures from the seed logs ----------------------------------------------------

# From ../shared/seeds/000_6521c744abd82afb.txt: SGLang on 8xH20 without enough memory.
SEED_SGLANG_OOM = "\n".join(
    [
        "Loading safetensors checkpoint shards: 100% Completed",
        "163/163[00:56<00:00,2.91it/s]",
        "[2025-03-29 11:31:03 TP5] Scheduler hit an exception: Traceback (most recent call last):",
        'File"/sgl-workspace/sglang/python/sglang/srt/managers/scheduler.py",line 1748,'
        "in run_scheduler_process",
        "scheduler = Scheduler(server_args, port_args, gpu_id, tp_rank, dp_rank)",
        'File"/sgl-workspace/sglang/python/sglang/srt/model_executor/model_runner.py",'
        "line 715,in init_memory_pool",
        "RuntimeError: Not enough memory. Please try to increase --mem-fraction-static.",
    ]
)
# From ../shared/seeds/003_8e11d6b796dc78e4.txt: SGLang in a venv with a too new transformers.
SEED_TRANSFORMERS = (
    "ImportError: cannot import name 'is_valid_list_of_images' from "
    "'transformers.models.mllama.image_processing_mllama' "
    "(/data/sglang/lib/python3.12/site-packages/transformers/models/mllama/"
    "image_processing_mllama.py)"
)
# From ../shared/seeds/000_6521c744abd82afb.txt (the vLLM FAQ; NCCL fails the same way).
SEED_NCCL = (
    "ERROR 03-29 21:10:47 engine. py: 389] NCCL Error 1: unhandled cuda error "
    "(run with NCCL_DEBUG=INFO for details)"
)


def test_diagnose_seed_failures() -> None:
    engine = SglangEngine()
    oom = engine.diagnose(SEED_SGLANG_OOM)
    assert oom is not None and "KV cache pool does not fit" in oom.what
    assert "--mem-fraction-static" in oom.hint and "8x141 GB" in oom.hint
    tf = engine.diagnose(SEED_TRANSFORMERS)
    assert tf is not None and "transformers==4.48.3" in tf.hint
    nccl = engine.diagnose(SEED_NCCL)
    assert nccl is not None and nccl.what.startswith("NCCL failed")
    cuda = engine.diagnose("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate")
    assert cuda is not None and cuda.what == "CUDA ran out of memory"
    missing = engine.diagnose(
        "OSError: /mnt/models/x does not appear to have a file named config.json"
    )
    assert missing is not None and "model path" in missing.what


def test_diagnose_llamacpp_and_ollama() -> None:
    llama = LlamaCppEngine().diagnose(
        "llama_model_load: error loading model: tensor 'blk.0.attn_q.weight' data is not "
        "within the file bounds\nllama_load_model_from_file: failed to load model"
    )
    assert llama is not None and "GGUF" in llama.what
    busy = OllamaEngine().diagnose(
        "Error: listen tcp 127.0.0.1:11434: bind: address already in use"
    )
    assert busy is not None and "systemctl stop ollama" in busy.hint


# -- (f) a real llama.cpp: llama-cpp-python's server on a tiny GGUF made here ------------


@pytest.fixture(scope="module")
def llamacpp_python() -> str:
    return real_engine_python(
        "SLOGATE_LLAMACPP_PYTHON", '"llama-cpp-python[server]" (.ci/install-llamacpp.sh)'
    )


@pytest.mark.realengine
def test_real_llama_cpp_server_through_slogate_launch(llamacpp_python: str, tmp_path: Path) -> None:
    from slogate.engines import running_endpoint
    from slogate.engines.tinygguf import build_tiny_gguf
    from slogate.loadgen.dataset import random_prompts

    model = build_tiny_gguf(tmp_path / "tiny.gguf")
    s = Settings(engine="llamacpp", model=str(model), engine_python=llamacpp_python,
                 engine_args=("--n_ctx", "512"), startup_timeout_s=120,
                 reports_dir=tmp_path)  # fmt: skip
    with running_endpoint(s, tmp_path / "logs") as endpoint:
        assert endpoint.engine == "llamacpp" and endpoint.metrics == {}
        assert endpoint.info["served_models"] == [str(model)]
        pid = endpoint.process.pid if endpoint.process else None
        prompts = random_prompts(TOK, 4, 8, 16, seed=1)
        spec = LoadSpec(base_url=endpoint.base_url, model=endpoint.model, concurrency=2,
                        ignore_eos=False)  # fmt: skip
        records = run_load(spec, prompts, [], TOK).records
    for rec in records:
        assert rec.status == "ok", rec.error
        # no usage in llama_cpp.server's stream: re-counted, and the tiny model emits one
        # whole word per token and never end-of-sequence
        assert rec.output_tokens == 16 and rec.output_tokens_source == "tokenizer"
        assert rec.ttft_ns is not None and rec.ttft_ns > 0 and len(rec.chunk_ns) > 1
    assert pid is not None and (not psutil.pid_exists(pid) or _zombie(pid))  # torn down


def _zombie(pid: int | None) -> bool:
    try:
        return pid is not None and psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True
