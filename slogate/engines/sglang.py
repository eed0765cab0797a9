"""SGLang: ``python -m sglang.launch_server`` (or in ``lmsysorg/sglang``).

Ready means ``GET /health_generate`` answers 200: that route runs a real one-token
generation through the scheduler (``http_server.py``: "Check the health of the inference
server by generating one token"), while ``/health`` in the SGLang releases the user runs
only says the HTTP server is up (newer releases alias both to the generating check).

The API key: SGLang reads it only from ``--api-key`` (no environment variable in
``server_args.py`` or ``environ.py``).  So that the key never appears in an argv slogate
records or logs, the server is started behind ``sh -c 'exec "$@" --api-key
"$SLOGATE_ENGINE_API_KEY"'``: the key travels in the environment (``docker run -e NAME``
without a value for containers) and the shell puts it on SGLang's command line.

Prometheus metrics (``SGLANG_METRICS``) exist only when the profile's args include
``--enable-metrics``; slogate does not add flags the user did not write.
"""

from __future__ import annotations

from typing import Any

import httpx

from slogate.engines.base import SGLANG_METRICS
from slogate.engines.launch import Resolved, ServerEngine
from slogate.engines.vllm import MISSING_MODEL

#: The variable the wrapper shell reads the key from (SGLang itself reads none).
KEY_VAR = "SLOGATE_ENGINE_API_KEY"

#: Server arguments worth recording from /get_server_info (never the whole dict: it
#: holds api_key).
SERVER_INFO_KEYS = (
    "version",
    "model_path",
    "served_model_name",
    "tp_size",
    "dp_size",
    "mem_fraction_static",
    "context_length",
    "chunked_prefill_size",
    "max_running_requests",
    "max_total_num_tokens",
    "quantization",
    "attention_backend",
    "enable_metrics",
)


class SglangEngine(ServerEngine):
    name = "sglang"
    default_port = 30000  # sglang.launch_server's own default
    metrics = SGLANG_METRICS
    api_key_env = KEY_VAR
    failures = [
        (
            r"Not enough memory\. Please try to increase --mem-fraction-static",
            "the KV cache pool does not fit in the GPU memory left after loading the weights",
            "raise --mem-fraction-static (the deployment guide uses 0.90), lower "
            "--context-length, --chunked-prefill-size or --max-running-requests, or use "
            "bigger GPUs: DeepSeek-R1 FP8 needs one node of 8x141 GB (H20-141G or H200)",
        ),
        (
            r"cannot import name 'is_valid_list_of_images'",
            "the installed transformers does not match this SGLang (mllama image processor)",
            "pin it in SGLang's environment: pip install transformers==4.48.3",
        ),
        (
            MISSING_MODEL,
            "the model path does not exist or is not a model directory",
            "check --model (inside Docker: the path in the container, under the -v mount) "
            "and that config.json and all weight shards are there",
        ),
        (
            r"No module named '?sglang'?",
            "SGLang is not installed for this Python",
            "give the interpreter of SGLang's environment with --engine-python (or python: "
            "in the profile), or run the image with --launcher docker",
        ),
        (
            r"error: unrecognized arguments|error: argument",
            "SGLang rejected a command-line argument",
            "check the profile's args and --engine-args against `python -m "
            "sglang.launch_server --help` of this SGLang version",
        ),
    ]

    def entry(self, python: str) -> list[str]:
        return [python, "-m", "sglang.launch_server"]

    def model_args(self, r: Resolved) -> list[str]:
        args = ["--model-path", r.model, "--host", r.host, "--port", str(r.port)]
        if r.profile.served_model_name:
            args += ["--served-model-name", r.profile.served_model_name]
        return args

    def api_key_args(self) -> list[str]:
        """The key flag as the wrapper shell sees it: expanded from the environment."""
        return ["--api-key", f'"${KEY_VAR}"']

    def server_argv(self, r: Resolved, python: str) -> list[str]:
        argv = super().server_argv(r, python)
        if KEY_VAR not in r.secret_env:
            return argv
        script = 'exec "$@" ' + " ".join(self.api_key_args())
        return ["sh", "-c", script, "sglang", *argv]

    def probe(self, client: httpx.Client, base_url: str, model: str) -> str | None:
        url = f"{base_url}/health_generate"
        try:
            # SGLang waits up to SGLANG_HEALTH_CHECK_TIMEOUT (20 s) for the token itself.
            resp = client.get(url, timeout=30.0)
        except httpx.HTTPError as exc:
            return f"GET {url}: {type(exc).__name__}"
        return None if resp.status_code == 200 else f"GET {url}: HTTP {resp.status_code}"

    def describe(self, client: httpx.Client, base_url: str) -> dict[str, Any]:
        info = super().describe(client, base_url)  # /version, where the release has it
        try:
            resp = client.get(f"{base_url}/get_server_info", timeout=10.0)
            server = resp.json() if resp.status_code == 200 else {}
        except (httpx.HTTPError, ValueError):
            server = {}
        if isinstance(server, dict):
            for key in SERVER_INFO_KEYS:
                if server.get(key) is not None and info.get(key) is None:
                    info[key] = server[key]
        return info
