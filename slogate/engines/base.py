"""What every engine module answers, and the running endpoint the tests talk to."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from slogate.server import EngineProcess, LogDiagnosis

if TYPE_CHECKING:
    from slogate.config import Settings


@dataclass
class Endpoint:
    """An engine that is up: where to send requests and what it is."""

    engine: str
    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    info: dict[str, Any] = field(default_factory=dict)  # version, profile, command ...
    process: EngineProcess | None = None
    metrics_path: str | None = "/metrics"
    #: series name -> Prometheus metric names that carry it (first found wins)
    metrics: dict[str, tuple[str, ...]] = field(default_factory=dict)
    label: str = ""  # the engine configuration's name when several run in one session

    def check_alive(self) -> None:
        if self.process is not None:
            self.process.check_alive()


@dataclass(frozen=True)
class Launch:
    """How to start an engine: the command, where it will answer, how to stop it."""

    argv: Sequence[str]
    base_url: str
    env: dict[str, str] | None = field(default=None, repr=False)  # may hold secrets
    pass_fds: Sequence[int] = ()
    stop_argv: Sequence[str] | None = None  # e.g. docker rm -f NAME: a container is no child
    served_model: str | None = None


class Engine(Protocol):
    name: str
    metrics: dict[str, tuple[str, ...]]

    def launch(self, settings: Settings, workdir: Path) -> tuple[Launch, list[Any]]:
        """The command to run and any resources (sockets) to close once it has started."""
        ...

    def probe(self, client: httpx.Client, base_url: str, model: str) -> str | None:
        """None when ready, else why not."""
        ...

    def describe(self, client: httpx.Client, base_url: str) -> dict[str, Any]:
        """Version and anything else worth recording about the running engine."""
        ...

    def diagnose(self, log: str) -> LogDiagnosis | None: ...


#: Prometheus series scraped while a case runs, per engine family.
VLLM_METRICS: dict[str, tuple[str, ...]] = {
    "running": ("vllm:num_requests_running",),
    "waiting": ("vllm:num_requests_waiting",),
    "kv_cache_usage": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    "prompt_tokens_total": ("vllm:prompt_tokens_total",),
    "generation_tokens_total": ("vllm:generation_tokens_total",),
}
SGLANG_METRICS: dict[str, tuple[str, ...]] = {
    "running": ("sglang:num_running_reqs",),
    "waiting": ("sglang:num_queue_reqs",),
    "kv_cache_usage": ("sglang:token_usage",),
    "prompt_tokens_total": ("sglang:prompt_tokens_total",),
    "generation_tokens_total": ("sglang:generation_tokens_total",),
}
ANY_METRICS: dict[str, tuple[str, ...]] = {
    k: VLLM_METRICS[k] + SGLANG_METRICS[k] for k in VLLM_METRICS
}

#: Startup failures common to every engine: (pattern, what happened, what to try).
COMMON_FAILURES: list[tuple[str, str, str]] = [
    (
        r"[Aa]ddress already in use|Errno 98",
        "the port is already in use",
        "another server is listening there; stop it or let slogate pick a free port",
    ),
    (
        r"CUDA out of memory|torch\.OutOfMemoryError|OutOfMemoryError",
        "CUDA ran out of memory",
        "lower --gpu-memory-utilization / --mem-fraction-static, --max-model-len or "
        "--max-num-seqs, or use more GPUs (tensor parallel)",
    ),
    (
        r"NCCL error|NCCL Error",
        "NCCL failed (multi-GPU communication)",
        "check the GPUs are visible (--gpus all), give the container enough shared memory "
        "(--shm-size / --ipc=host), set VLLM_HOST_IP/HOST_IP on dual-stack hosts, and rerun "
        "with NCCL_DEBUG=INFO for details",
    ),
]


def diagnose_with(patterns: list[tuple[str, str, str]], log: str) -> LogDiagnosis | None:
    for pattern, what, hint in patterns:
        if re.search(pattern, log):
            return LogDiagnosis(what, hint)
    return None


def fetch_version(client: httpx.Client, url: str) -> str | None:
    """The ``version`` field of a JSON version endpoint, or None if it does not answer."""
    try:
        resp = client.get(url, timeout=5.0)
        if resp.status_code == 200:
            version = resp.json().get("version")
            return None if version is None else str(version)
    except (httpx.HTTPError, ValueError, AttributeError):
        pass
    return None


def http_probe(client: httpx.Client, url: str) -> str | None:
    try:
        resp = client.get(url, timeout=5.0)
    except httpx.HTTPError as exc:
        return f"GET {url}: {type(exc).__name__}"
    return None if resp.status_code == 200 else f"GET {url}: HTTP {resp.status_code}"
