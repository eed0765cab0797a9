"""vLLM: ``python -m vllm.entrypoints.openai.api_server`` (or in ``vllm/vllm-openai``).

Ready means ``/health`` answers 200 *and* one real 1-token completion succeeds: the HTTP
server can answer before the engine core can serve.  The API key goes to the server in
``VLLM_API_KEY``, never on its command line.
"""

from __future__ import annotations

import httpx

from slogate.engines.base import VLLM_METRICS, http_probe
from slogate.engines.launch import Resolved, ServerEngine

MISSING_MODEL = (
    r"does not appear to have a file named config\.json|Repo id must be|HFValidationError|"
    r"Invalid repository ID|is not a valid model identifier|No such file or directory: "
    r"'[^']*config\.json'|Can't load the configuration of|LocalEntryNotFoundError"
)


class VllmEngine(ServerEngine):
    name = "vllm"
    metrics = VLLM_METRICS
    api_key_env = "VLLM_API_KEY"
    failures = [
        (
            r"No available memory for the cache blocks|max seq len .* is larger than the "
            r"maximum number of tokens that can be stored in KV cache|"
            r"needs? .* KV cache .* (is|are) (larger|more) than the available",
            "the KV cache does not fit in the memory left after loading the model",
            "raise --gpu-memory-utilization (e.g. 0.95), lower --max-model-len or "
            "--max-num-seqs, or spread the model over more GPUs (--tensor-parallel-size)",
        ),
        (
            MISSING_MODEL,
            "the model path does not exist or is not a model directory",
            "check --model (inside Docker: the path in the container, under the -v mount) "
            "and that config.json and all weight shards are there",
        ),
        (
            r"Available memory on node \d+ .* is less than desired CPU memory utilization",
            "vLLM's CPU backend could not reserve its KV cache",
            'give it an explicit size: --engine-args="--kv-cache-memory-bytes 268435456" '
            "or the environment variable VLLM_CPU_KVCACHE_SPACE=1 (GiB)",
        ),
        (
            r"error: unrecognized arguments|error: argument",
            "vLLM rejected a command-line argument",
            "check the profile's args and --engine-args against `vllm serve --help` of "
            "this vLLM version (flags are renamed between versions)",
        ),
    ]

    def entry(self, python: str) -> list[str]:
        return [python, "-m", "vllm.entrypoints.openai.api_server"]

    def model_args(self, r: Resolved) -> list[str]:
        args = ["--model", r.model, "--host", r.host, "--port", str(r.port)]
        if r.profile.served_model_name:
            args += ["--served-model-name", r.profile.served_model_name]
        return args

    def probe(self, client: httpx.Client, base_url: str, model: str) -> str | None:
        reason = http_probe(client, f"{base_url}/health")
        if reason:
            return reason
        return completion_probe(client, base_url, model)


def completion_probe(client: httpx.Client, base_url: str, model: str) -> str | None:
    """One real request for one token: the engine can generate, not only answer HTTP."""
    body = {"model": model, "prompt": "ready?", "max_tokens": 1, "temperature": 0.0}
    try:
        resp = client.post(f"{base_url}/v1/completions", json=body, timeout=60)
    except httpx.HTTPError as exc:
        return f"POST /v1/completions: {type(exc).__name__}"
    if resp.status_code != 200:
        return f"POST /v1/completions: HTTP {resp.status_code}: {resp.text[:200]}"
    return None
