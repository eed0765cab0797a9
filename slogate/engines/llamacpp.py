"""llama.cpp's server, run one of the two ways users run it.

* ``llama-server -m MODEL.gguf --host H --port P`` (the C++ binary, or the
  ``ghcr.io/ggml-org/llama.cpp:server`` image whose entrypoint it is).  Ready when
  ``GET /health`` answers 200; it answers 503 ``Loading model`` until the weights are in.
  ``/v1/models`` is no readiness signal here: it is answered while loading.
* ``python -m llama_cpp.server --model MODEL.gguf --host H --port P``
  (``pip install "llama-cpp-python[server]"``).  It loads the model before it starts
  listening, so ready when ``GET /v1/models`` answers 200.

Which one: when an interpreter is given (``--engine-python`` or ``python:`` in the
profile), ``llama_cpp.server`` under that interpreter; otherwise the ``llama-server``
binary from ``PATH``.  A path whose name contains ``llama-server`` given the same way is
taken as the binary itself.  In Docker with the image's own entrypoint the command is
only the server's arguments.

``llama_cpp.server`` serves one request at a time and by default lets a new request
interrupt the one streaming (``interrupt_requests``), which would cut every stream
short under concurrent load; slogate starts it with ``--interrupt_requests False``
unless the profile sets that flag itself.

API key: ``llama-server`` reads ``LLAMA_API_KEY`` (``common/arg.cpp``: ``--api-key``
``.set_env("LLAMA_API_KEY")``); ``llama_cpp.server``'s pydantic settings read
``API_KEY``.  Metrics: ``llama-server`` serves Prometheus ``/metrics`` only when started
with ``--metrics`` (add it to the profile's args); ``llama_cpp.server`` has none.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from slogate.engines.launch import Resolved, ServerEngine

if TYPE_CHECKING:
    from slogate.config import Settings

#: Prometheus series of llama-server (``tools/server/server.cpp``, ``/metrics``).
LLAMACPP_METRICS: dict[str, tuple[str, ...]] = {
    "running": ("llamacpp:requests_processing",),
    "waiting": ("llamacpp:requests_deferred",),
    # emitted by the builds of early 2025 (b4xxx); later builds dropped the gauge
    "kv_cache_usage": ("llamacpp:kv_cache_usage_ratio",),
    "prompt_tokens_total": ("llamacpp:prompt_tokens_total",),
    "generation_tokens_total": ("llamacpp:tokens_predicted_total",),
}

BINARY = "llama-server"


class LlamaCppEngine(ServerEngine):
    name = "llamacpp"
    default_port = 8080  # llama-server's own default
    default_python = BINARY
    metrics = LLAMACPP_METRICS
    api_key_env: str | None = "LLAMA_API_KEY"
    failures = [
        (
            r"failed to load model|error loading model|llama_model_load: error",
            "llama.cpp could not load the GGUF model",
            "check that --model is one complete .gguf file (split downloads: merge them "
            "with llama-gguf-split --merge, or point at the -00001-of-N shard) and that "
            "this llama.cpp build knows the model's architecture",
        ),
        (
            r"gguf_init_from_file: failed to open|Model path does not exist",
            "the model file does not exist",
            "check --model (inside Docker: the path in the container, under the -v mount)",
        ),
        (
            r"cudaMalloc failed: out of memory|ggml_backend_cuda_buffer_type_alloc_buffer: "
            r"allocating .* failed|failed to allocate .* buffer",
            "GPU memory ran out while loading the model or allocating the KV cache",
            "offload fewer layers (-ngl), lower the context (-c) or --parallel, or use a "
            "smaller quantisation",
        ),
        (
            r"couldn't bind HTTP server socket",
            "the port is already in use",
            "another server is listening there; stop it or let slogate pick a free port",
        ),
        (
            r"No module named '?llama_cpp'?",
            "llama-cpp-python is not installed for this Python",
            'pip install "llama-cpp-python[server]" into the interpreter given with '
            "--engine-python, or drop --engine-python to run the llama-server binary",
        ),
        (
            r"error: (invalid|unknown) argument|error: unrecognized arguments|"
            r"error: argument",
            "llama.cpp rejected a command-line argument",
            "check the profile's args and --engine-args against `llama-server --help` "
            "(or `python -m llama_cpp.server --help`) of the installed version",
        ),
    ]

    def __init__(self) -> None:
        self.mode = "binary"

    # -- which server -------------------------------------------------------------------
    @staticmethod
    def pick_mode(settings: Settings) -> str:
        """``binary`` (llama-server) or ``python`` (llama_cpp.server)."""
        given = settings.engine_python or (settings.profile.python if settings.profile else None)
        if not given or BINARY in Path(given).name:
            return "binary"
        return "python"

    def resolve(self, settings: Settings) -> Resolved:
        self.mode = self.pick_mode(settings)
        binary = self.mode == "binary"
        self.api_key_env = "LLAMA_API_KEY" if binary else "API_KEY"
        self.metrics = LLAMACPP_METRICS if binary else {}
        return super().resolve(settings)

    # -- command ------------------------------------------------------------------------
    def entry(self, python: str) -> list[str]:
        return [python] if self.mode == "binary" else [python, "-m", "llama_cpp.server"]

    def model_args(self, r: Resolved) -> list[str]:
        served = r.profile.served_model_name
        if self.mode == "binary":
            args = ["-m", r.model, "--host", r.host, "--port", str(r.port)]
            return args + (["--alias", served] if served else [])
        args = ["--model", r.model, "--host", r.host, "--port", str(r.port)]
        if served:
            args += ["--model_alias", served]
        if not any(a.split("=")[0] == "--interrupt_requests" for a in r.args):
            args += ["--interrupt_requests", "False"]
        return args

    def server_argv(self, r: Resolved, python: str) -> list[str]:
        # No --trust-remote-code: llama.cpp has no such flag (GGUF carries no code).
        if self.mode == "binary":
            if r.launcher == "docker":
                # The official image's entrypoint is llama-server: give it only arguments,
                # unless the profile replaced the entrypoint.
                entry = [] if r.profile.docker.entrypoint is None else [r.python]
            else:
                entry = [r.python]
        else:
            entry = self.entry(python)
        return entry + self.model_args(r) + list(r.args)

    # -- running ------------------------------------------------------------------------
    def probe(self, client: httpx.Client, base_url: str, model: str) -> str | None:
        path = "/health" if self.mode == "binary" else "/v1/models"
        url = f"{base_url}{path}"
        try:
            resp = client.get(url, timeout=5.0)
        except httpx.HTTPError as exc:
            return f"GET {url}: {type(exc).__name__}"
        if resp.status_code == 200:
            return None
        return f"GET {url}: HTTP {resp.status_code} {_message(resp)}".rstrip()

    def describe(self, client: httpx.Client, base_url: str) -> dict[str, Any]:
        info: dict[str, Any] = {"server": BINARY if self.mode == "binary" else "llama_cpp.server"}
        try:
            data = client.get(f"{base_url}/v1/models", timeout=5.0).json().get("data") or []
            info["served_models"] = [m.get("id") for m in data if isinstance(m, dict)]
        except (httpx.HTTPError, ValueError, AttributeError):
            pass
        if self.mode == "binary":
            try:
                props = client.get(f"{base_url}/props", timeout=5.0).json()
            except (httpx.HTTPError, ValueError):
                props = {}
            if isinstance(props, dict):
                for key in ("build_info", "total_slots", "model_path"):
                    if props.get(key) is not None:
                        info[key] = props[key]
                if info.get("build_info"):
                    info["version"] = info["build_info"]
        return info


def _message(resp: httpx.Response) -> str:
    """llama-server's error text ("Loading model"), if the body carries one."""
    try:
        body = resp.json()
    except ValueError:
        return ""
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return str(err.get("message", ""))
    return str(body.get("status", "")) if isinstance(body, dict) else ""
